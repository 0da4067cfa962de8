"""Writing files so that a kill, a full disk or an error never leaves one half-written.

    with atomic_path(run_dir / "report.md") as tmp:   # write to tmp; it replaces the target on success
        tmp.write_text(text)
    write_atomically(path, text_or_bytes)

The temporary file sits next to the target (same file system, so the rename is atomic) and is
removed when writing fails.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path


class UnsafeOutputError(OSError, ValueError):
    """An output path negaug refuses to write: a symbolic link, a device, a FIFO, a socket. An
    OSError (so that a run stopping on it mid-run says so with its last checkpoint intact) and a
    ValueError (a user error: one line, exit code 2, before any work). Its message names the path."""

    def __str__(self) -> str:
        return str(self.strerror)


def check_path_text(value: str | os.PathLike | None, what: str) -> None:
    """ValueError naming `what` (a flag or a config key) when `value` is an empty or blank path:
    Path("") is the working folder, where negaug would write over the user's own files."""
    if value is not None and not str(os.fspath(value)).strip():
        raise ValueError(f"{what} is empty ({str(os.fspath(value))!r}); give a path")


def check_output_path(path: str | Path, what: str = "output") -> Path:
    """`path` when negaug may create or replace it: absent, or a regular file (not followed if a
    symlink). UnsafeOutputError naming it for a symlink, a device (`/dev/null`), a FIFO or a socket;
    IsADirectoryError for a folder."""
    path = Path(path)
    check_path_text(str(path) if str(path) != "." else "", what)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return path
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder; give a file name", str(path))
    if not stat.S_ISREG(info.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
        raise UnsafeOutputError(errno.EEXIST, f"{what} {path} exists and is {kind}; negaug writes only regular "
                                f"files it creates: remove it or give another path", str(path))
    return path


def open_no_follow(path: str | Path, flags: int, what: str = "file", mode: int = 0o644) -> int:
    """`os.open(path, flags)` that never follows a symlink in the last component and only opens
    (or creates) a regular file with no other hard link (it is written in place: a lock, a log):
    UnsafeOutputError naming `what` otherwise. Returns the fd."""
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnsafeOutputError(errno.ELOOP, f"{what} {path} is a symbolic link; negaug never writes through "
                                    f"one: remove it", str(path)) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:  # a hard link would carry the write to another name
        os.close(fd)
        kind = "not a regular file" if not stat.S_ISREG(info.st_mode) else "a hard link to another file"
        raise UnsafeOutputError(errno.EEXIST, f"{what} {path} is {kind}; remove it", str(path))
    if os.O_NONBLOCK:
        os.set_blocking(fd, True)
    return fd


def create_new_file(path: str | Path) -> Path:
    """Create `path` as a new, empty regular file (a leftover of the same name is removed first;
    a symlink planted there is removed, never followed)."""
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    os.close(open_no_follow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, what: str = "output") -> Iterator[Path]:
    """A temporary path to write; on success it replaces `path` (parent folders are created).
    `path` must be absent or a regular file (`check_output_path`); the temporary file is created
    new, so a symlink planted under its name is never followed."""
    path = check_output_path(path, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = create_new_file(path.with_name(f".{path.name}.tmp-{os.getpid()}"))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomically(path: str | Path, content: str | bytes) -> Path:
    """Write `content` (text as UTF-8) to `path` atomically; returns the path."""
    with atomic_path(path) as tmp:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content, encoding="utf-8")
    return Path(path)


def read_limited(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file `path` (symlinks followed), at most `limit` of them;
    ValueError naming the path for a FIFO, a device (`/dev/zero`), a folder or a larger file, so
    that no user-controlled file can hang negaug or fill its memory. FileNotFoundError passes."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once instead of waiting for a writer
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{what} {path} is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{what} {path} is larger than {limit} bytes ({info.st_size})")
        chunks, size = [], 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise ValueError(f"{what} {path} is larger than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text_limited(path: str | Path, limit: int, what: str = "file") -> str:
    """`read_limited` decoded as UTF-8 (undecodable bytes replaced)."""
    return read_limited(path, limit, what).decode("utf-8", errors="replace")


def require_regular_file(path: str | Path, what: str = "file") -> Path:
    """`path` when it is a regular file (symlinks followed); ValueError naming it for a FIFO, a
    device or a folder (which would hang or fill memory when read), FileNotFoundError when absent."""
    path = Path(path)
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{what} {path} is not a regular file")
    return path


def check_folder(path: str | Path, what: str) -> Path:
    """`path` as a folder negaug may create or write into: ValueError naming `what` (a config key
    or a flag) when it is empty or blank, or it, or the nearest of its parents that exists, is not a folder."""
    check_path_text(path, what)
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "is a file" if existing == path else f"is inside {existing}, which is a file"
        raise ValueError(f"{what}={path} {where}; give a folder")
    return path

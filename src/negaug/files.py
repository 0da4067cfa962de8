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
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write; on success it replaces `path` (parent folders are created)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give a file name", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
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
    or a flag) when it, or the nearest of its parents that exists, is not a folder."""
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "is a file" if existing == path else f"is inside {existing}, which is a file"
        raise ValueError(f"{what}={path} {where}; give a folder")
    return path

"""The `negaug` command: a thin dispatcher over the library.

Each subcommand lives in its own module `negaug.cli.<name>` with `HELP`, `add_arguments(parser)`
and `run(args) -> int`. User errors (`ValueError`, `FileNotFoundError`) end with one line on
stderr and exit code 2; set NEGAUG_DEBUG=1 to see the traceback instead.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator

SUBCOMMANDS = ("train", "eval", "anomaly", "nda", "repro", "compare", "pretrain", "probe")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="negaug", description="Negative Data Augmentation for GANs and contrastive learning")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"negaug.cli.{name}")
        except ModuleNotFoundError as err:  # a subcommand not built yet
            if err.name != f"negaug.cli.{name}":
                raise
            continue
        sub_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from negaug import __version__

        print(__version__)
        return 0
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        check_path_flags(args)
        with threads_of(args):
            return int(args._run(args) or 0)
    except (ValueError, OSError) as err:  # FileNotFoundError, PermissionError, a full disk, a name too long...
        if os.environ.get("NEGAUG_DEBUG"):
            raise
        report_error(err)
        return 2
    except KeyboardInterrupt:
        print("negaug: interrupted", file=sys.stderr)
        return 130


def add_threads_flag(parser: argparse.ArgumentParser) -> None:
    """`--threads N`, which `main` applies for the duration of the command (`threads_of`)."""
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's, one per core; on a machine shared with other "
                             "jobs 1 is often several times faster)")


@contextlib.contextmanager
def threads_of(args: argparse.Namespace) -> Iterator[None]:
    """torch's CPU threads set to `args.threads` (when the command has the flag and it is given)
    while the command runs, and restored after (tests call `main` in one process)."""
    threads = getattr(args, "threads", None)
    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not 1 <= threads <= 256:
        raise ValueError(f"--threads must be from 1 to 256, got {threads}")
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# the flags and arguments that name files or folders (argparse dest -> how the user wrote it)
PATH_FLAGS = {"out": "--out", "output": "--output", "runs_dir": "--runs-dir", "data_root": "--data-root",
              "root": "--data-root", "inception_weights": "--inception-weights", "resume": "--resume", "run": "RUN",
              "generated": "--generated", "reference": "--reference"}


def check_path_flags(args: argparse.Namespace) -> None:
    """An empty or blank path (`--out ""`) is the working folder: refused for every path flag."""
    from negaug.files import check_path_text

    for dest, flag in PATH_FLAGS.items():
        value = getattr(args, dest, None)
        if isinstance(value, str):
            check_path_text(value, flag)


def report_error(err: Exception) -> None:
    """`negaug: error: <one line>` on stderr, once per error, and under torchrun on rank 0 only
    (one line for the run, not one per process)."""
    if getattr(err, "_negaug_reported", False):
        return
    err._negaug_reported = True
    if os.environ.get("RANK", "0") == "0":
        print(f"negaug: error: {one_line(err)}", file=sys.stderr, flush=True)


def one_line(err: Exception) -> str:
    """The first line of an error; an OS error as 'path: what went wrong'."""
    if isinstance(err, OSError) and err.strerror and not isinstance(err, ValueError):  # raised by the OS
        message = f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    else:
        message = str(err)
    return message.splitlines()[0][:500] if message else type(err).__name__


if __name__ == "__main__":
    sys.exit(main())

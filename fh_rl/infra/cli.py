"""Shared command-line plumbing: bad input becomes one clear line and exit code 2."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence


class UsageError(ValueError):
    """Bad user input detected by a command (printed as one line, exit 2)."""


class StorageError(OSError):
    """A file fh_rl must write cannot be written: the disk is full, or the place is read-only.

    Raised by the writers themselves (:mod:`fh_rl.infra.atomic`, the lock files) with a message naming the path;
    nothing partial is left under a final name. One line, exit 2 (the user can free space or write elsewhere).
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


USAGE_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, StorageError)


class RunFailed(RuntimeError):
    """A run failed for a reason outside the user's input (a rollout worker died or hung): one line, exit 1.

    The first line of the message is what the CLI prints; further lines (a
    worker's traceback) appear with ``FH_RL_DEBUG=1``.
    """


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; user errors (and a full or read-only disk, :class:`StorageError`) print
    ``error: <message>`` and return 2.

    A :class:`RunFailed` (a dead or hung rollout worker) or running out of
    memory prints its first line and returns 1. ``KeyboardInterrupt`` returns
    130 after the command has cleaned up. Set ``FH_RL_DEBUG=1`` to get the full
    traceback instead.
    """
    debug = bool(os.environ.get("FH_RL_DEBUG"))
    try:
        code = main(argv)
    except USAGE_ERRORS as exc:
        if debug:
            raise
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except (RunFailed, MemoryError) as exc:
        if debug:
            raise
        lines = str(exc).strip().splitlines()
        what = _one_line(lines[0]) if lines else type(exc).__name__
        if isinstance(exc, MemoryError):
            what = f"out of memory ({what}); lower train.batch_size or the model's sizes"
        print(f"error: {what} (FH_RL_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        if debug or type(exc).__name__ != "OutOfMemoryError":  # torch's, without importing torch here
            raise
        print(f"error: out of memory ({_one_line(str(exc))[:200]}); lower train.batch_size or the model's sizes "
              f"(FH_RL_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)

"""Shared command-line plumbing: bad input becomes one clear line and exit code 2."""

from __future__ import annotations

import os
import sys
from typing import Callable, Sequence

USAGE_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError)


class UsageError(ValueError):
    """Bad user input detected by a command (printed as one line, exit 2)."""


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; user errors print ``error: <message>`` and return 2.

    ``KeyboardInterrupt`` returns 130 after the command has cleaned up. Set
    ``FH_RL_DEBUG=1`` to get the full traceback instead.
    """
    try:
        code = main(argv)
    except USAGE_ERRORS as exc:
        if os.environ.get("FH_RL_DEBUG"):
            raise
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)

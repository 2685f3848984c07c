"""Progress bars that suit where they are written: a live tqdm bar on a terminal, plain lines in a log.

    bar = progress_bar(total=steps, desc="train", unit="step")

On a terminal (or in a notebook) this is tqdm as usual. When the bar's stream
is not a terminal (a log file, ``nohup``, CI), it is a :class:`LineProgress`:
one plain line every :data:`LOG_INTERVAL_S` seconds (and one at the end), with
no carriage returns, so a log holds a few readable lines instead of thousands
of overwritten updates.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm as _tqdm

LOG_INTERVAL_S = 30.0
"""Seconds between two plain progress lines when the output is not a terminal."""

LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%) [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


class _DropBlank:
    """A stream that passes on text but swallows tqdm's bare ``\\n``/``\\r`` cursor moves."""

    def __init__(self, fp: Any) -> None:
        self.fp = fp

    def write(self, s: str) -> None:
        if s.strip():
            self.fp.write(s)
            self.fp.flush()

    def flush(self) -> None:
        self.fp.flush()


class LineProgress(_tqdm):
    """tqdm writing one plain line per ``mininterval`` seconds (default :data:`LOG_INTERVAL_S`): for logs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs["maxinterval"] = kwargs["mininterval"]  # tqdm's monitor would otherwise force a line every 10 s
        kwargs.setdefault("bar_format", LINE_FORMAT if kwargs.get("total") is not None else "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]")
        kwargs["file"] = _DropBlank(kwargs.get("file") or sys.stderr)
        kwargs["dynamic_ncols"] = False
        kwargs["leave"] = True  # the last line stays: it is the summary in the log
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        line = self.__str__() if msg is None else msg
        if line.strip():
            self.fp.write(line.strip() + "\n")
        return True

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)  # shown with the next timed line

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)


def _interactive(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_bar(iterable: Any = None, **kwargs: Any) -> Any:
    """tqdm on a terminal or in a notebook; :class:`LineProgress` (a plain line every ~30 s) otherwise."""
    from tqdm.auto import tqdm as auto_tqdm
    from tqdm.autonotebook import tqdm as notebook_or_std

    stream = kwargs.get("file") or sys.stderr
    in_notebook = notebook_or_std is not _tqdm
    if kwargs.get("disable") or _interactive(stream) or in_notebook:
        return auto_tqdm(iterable, **kwargs)
    return LineProgress(iterable, **kwargs)


def format_rate(value: float) -> str:
    """A rate with sensible precision: three significant digits, never rounded to 0 (``0.0123``, ``4.56``, ``789``)."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"

"""Atomic file writes: a temp file in the target's directory, renamed into place only when complete.

Nothing half-written ever sits under a dataset's, checkpoint's, figure's or report's
final name: an interrupted write leaves the old file (or no file) behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _default_permissions(fd: int) -> None:
    """mkstemp creates files 0600; give the final file the usual ``0666 & ~umask``."""
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path`` (for writers that want a file name, e.g. h5py).

    On success the temp file replaces ``path``; on any exception it is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _default_permissions(fd)
        os.close(fd)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """``open`` a temp file next to ``path``; fsync and rename it onto ``path`` when the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def remove_stale_temps(directory: str | os.PathLike, name: str | None = None, *, recursive: bool = False) -> list[Path]:
    """Remove the temp files :func:`atomic_path` left in ``directory`` when its writer was killed.

    Only call this while holding the lock that covers those files (the run
    directory's, or the dataset file's), so no live writer's temp file is removed.
    ``name``: only the temps of that final file name. Returns the removed paths.
    """
    directory = Path(directory)
    pattern = f".{name}.*.tmp" if name is not None else ".*.tmp"
    found = directory.rglob(pattern) if recursive else directory.glob(pattern)
    removed = []
    for path in sorted(found):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file next to ``path``, then ``os.replace`` (never a half-written checkpoint)."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)

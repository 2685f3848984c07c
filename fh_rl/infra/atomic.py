"""Atomic file writes: a temp file in the target's directory, renamed into place only when complete.

Nothing half-written ever sits under a dataset's, checkpoint's, figure's or report's
final name: an interrupted write leaves the old file (or no file) behind.

A full disk or a read-only place is a :class:`~fh_rl.cli.StorageError` naming the
path (one line, exit 2), raised where the write fails; the temp file is removed.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from fh_rl.infra.cli import StorageError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def free_bytes(directory: str | os.PathLike) -> int:
    """Bytes an unprivileged writer may still use on the filesystem of ``directory`` (or its nearest parent)."""
    directory = Path(directory)
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def _size(n: float) -> str:
    for unit, scale in (("GiB", 2.0**30), ("MiB", 2.0**20), ("KiB", 2.0**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def disk_full(path: str | os.PathLike, need: float | None = None, what: str | None = None) -> StorageError:
    """The error for a write of ``path`` (``what``, in words) that does not fit (``need``: bytes it needs)."""
    path = Path(path)
    try:
        free = f"{_size(free_bytes(path.parent))} free"
    except OSError:
        free = "no space left"
    if need:
        problem = f"the disk is full for it ({free}, it needs about {_size(need)}); nothing was written"
    else:
        problem = f"the disk is full ({free}); nothing under that name was changed"
    return StorageError(f"cannot write {what or path}: {problem}: free some space or write elsewhere", errno.ENOSPC)


def storage_error(exc: OSError, path: str | os.PathLike) -> StorageError | None:
    """A :class:`StorageError` naming ``path`` when ``exc`` says the disk is full or the place read-only, else None."""
    if isinstance(exc, StorageError):
        return exc
    if exc.errno in DISK_FULL:
        return disk_full(path)
    if exc.errno in READ_ONLY:
        where = Path(path).parent
        return StorageError(f"cannot write {path}: {where} is not writable ({exc.strerror or exc}); write elsewhere",
                            exc.errno)
    return None


def check_writable(path: str | os.PathLike, need: float = 64 << 10, *, what: str | None = None) -> None:
    """A :class:`StorageError` now, before long work, when ``path`` could not be written later: its directory
    (or the nearest existing parent) is read-only, or its disk has less than ``need`` bytes free.
    ``what`` names the write in the message (default: ``path``)."""
    directory = Path(path).parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    if not os.access(directory, os.W_OK):
        raise StorageError(f"cannot write {what or path}: {directory} is not writable (read-only); write elsewhere",
                           errno.EROFS)
    if free_bytes(directory) < need:
        raise disk_full(path, need, what)


def ensure_free_space(path: str | os.PathLike, need: float) -> None:
    """A :class:`StorageError` before writing ``path`` when its filesystem has less than ``need`` bytes free
    (for writers that cannot fail cleanly when the disk fills up under them, such as HDF5)."""
    if free_bytes(Path(path).parent) < need:
        raise disk_full(path, need)


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise (storage_error(exc, path) or exc) from None
    try:
        _default_permissions(fd)
        os.close(fd)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        full = storage_error(exc, path) if isinstance(exc, OSError) and exc.errno in DISK_FULL else None  # free space
        if os.path.exists(tmp):                                                                      # before cleaning up
            os.unlink(tmp)
        if full is not None:
            raise full from exc
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
        out = _Recording(f)
        try:
            torch.save(obj, out)
        except RuntimeError:
            if out.error is not None:  # torch reports a failed write as a RuntimeError: raise the OSError it hid
                raise out.error from None
            raise


class _Recording:
    """A file's ``write`` that keeps the OSError it raised (torch.save turns it into a RuntimeError)."""

    def __init__(self, f: IO) -> None:
        self.f, self.error = f, None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.f.flush()

"""One TensorBoard events file per run directory, across resumes and re-evaluations.

``SummaryWriter`` always starts a new ``events.out.tfevents.*`` file. A resumed
run (or ``python -m fh_rl.evaluate``) opens its writer with :func:`open_writer`
instead: the events of the files already there are copied into the new file
first, the old files are then removed, so the directory keeps a single events
file. A resume drops the events logged after its checkpoint (they belong to
steps that are trained again), which is what TensorBoard's ``purge_step``
does for display. Copying stops at a record cut short by a kill; events seen
twice (an earlier copy interrupted before the old file was removed) are kept once.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EVENTS_GLOB = "events.out.tfevents.*"


def read_records(path: str | os.PathLike) -> Iterator[bytes]:
    """The records of a TFRecord file (an events file), stopping at the first truncated or corrupt one."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    with open(path, "rb") as f:
        while True:
            header = f.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            if struct.unpack("<I", header[8:])[0] != masked_crc32c(header[:8]):
                return
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4 or struct.unpack("<I", footer)[0] != masked_crc32c(data):
                return
            yield data


def open_writer(run_dir: str | os.PathLike, *, keep_until_step: int | None = None) -> Any:
    """A ``SummaryWriter`` on ``run_dir`` whose file holds every earlier event of the directory.

    ``keep_until_step``: drop earlier events of later steps (a resume from that step's checkpoint).
    The caller must own the run directory (:func:`fh_rl.infra.locks.hold_run_dir`).
    """
    from tensorboard.compat.proto.event_pb2 import Event
    from torch.utils.tensorboard import SummaryWriter

    run_dir = Path(run_dir)
    old = sorted(run_dir.glob(EVENTS_GLOB))
    _quiet_writer_threads()
    try:
        writer = SummaryWriter(str(run_dir))
    except OSError as exc:  # the new file could not be started (its header is written at once)
        from fh_rl.infra.atomic import storage_error

        raise (storage_error(exc, run_dir / "events.out.tfevents.*") or exc) from None
    _guard(writer)
    if not old:
        return writer
    file_writer = writer._get_file_writer()
    seen: set[bytes] = set()
    for path in old:
        for data in read_records(path):
            event = Event.FromString(data)
            if event.HasField("file_version"):
                continue  # the new file has its own header
            if keep_until_step is not None and event.step > keep_until_step:
                continue
            key = hashlib.blake2b(data, digest_size=16).digest()
            if key in seen:
                continue
            seen.add(key)
            file_writer.add_event(event, walltime=event.wall_time)
    writer.flush()
    _fsync(file_writer.event_writer._file_name)  # the merged file is on disk before its sources go
    for path in old:
        path.unlink()
    return writer


def _fsync(name: str) -> None:
    fd = os.open(name, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- a full disk


def _guard(writer: Any) -> None:
    """Make ``writer``'s file writer raise a :class:`~fh_rl.infra.cli.StorageError` naming the events file when
    its disk is full or read-only (TensorBoard's writer thread hands the plain OSError to the next call)."""
    file_writer = writer._get_file_writer()
    file_writer.__class__ = _guarded_class(type(file_writer))


_GUARDED: dict[type, type] = {}


def _guarded_class(cls: type) -> type:
    if cls in _GUARDED.values():
        return cls
    if cls not in _GUARDED:

        def convert(self: Any, exc: OSError) -> BaseException:
            from fh_rl.infra.atomic import DISK_FULL, _size, free_bytes, storage_error
            from fh_rl.infra.cli import StorageError

            name = getattr(getattr(self, "event_writer", None), "_file_name", None) or self.get_logdir()
            if exc.errno in DISK_FULL:  # an append-only log: its last record may be cut, which readers skip
                return StorageError(f"cannot write {name}: the disk is full ({_size(free_bytes(self.get_logdir()))} "
                                    f"free); the events file may end in a cut record, which a resume drops: free "
                                    f"some space, then resume", exc.errno)
            return storage_error(exc, name) or exc

        def wrap(method: str) -> Any:
            original = getattr(cls, method)

            def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
                try:
                    return original(self, *args, **kwargs)
                except OSError as exc:
                    error = convert(self, exc)
                    if error is exc:
                        raise
                    raise error from None

            guarded.__name__ = method
            return guarded

        _GUARDED[cls] = type(f"Guarded{cls.__name__}", (cls,), {m: wrap(m) for m in ("add_event", "flush", "close")})
    return _GUARDED[cls]


_hook_installed = False


def _quiet_writer_threads() -> None:
    """TensorBoard's writer thread re-raises a failed write, which Python prints as a traceback; the same error
    reaches the main thread at its next write (one line there). A full or read-only disk is therefore not
    printed from the thread; any other exception in any thread still is."""
    import threading

    global _hook_installed
    if _hook_installed:
        return
    from fh_rl.infra.atomic import DISK_FULL, READ_ONLY

    previous = threading.excepthook

    def hook(args: Any) -> None:
        if (type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, OSError)
                and args.exc_value.errno in (*DISK_FULL, *READ_ONLY)):
            return
        previous(args)

    threading.excepthook = hook
    _hook_installed = True

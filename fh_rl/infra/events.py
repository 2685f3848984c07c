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
    writer = SummaryWriter(str(run_dir))
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

"""DQN-Replay on disk: file names, the checkpoint layout, and gzip ``.npy`` streaming.

One checkpoint per suffix N in ``<root>/<Game>/<run>/replay_logs/``: six files
(``$store$_observation_ckpt.N.gz`` uint8 (C, 84, 84), ``$store$_action_ckpt.N.gz``
int32 (C,), ``$store$_reward_ckpt.N.gz`` float32 (C,), ``$store$_terminal_ckpt.N.gz``
uint8 (C,), ``add_count_ckpt.N.gz`` int64 scalar, ``invalid_range_ckpt.N.gz`` int64
(5,)), each a gzip stream holding one ``np.save`` array. ``episode_end_indices``
files (pickles in newer Dopamine) are ignored; nothing is ever unpickled.
The row layout inside the files is described in :mod:`fh_rl.datasets.dqn_replay.plan`
and docs/data.md.
"""

from __future__ import annotations

import os
import re
import threading
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

STORE = "$store$_"
KEYS = ("observation", "action", "reward", "terminal", "add_count", "invalid_range")
FRAME_SHAPE = (84, 84)
PADDING = 3  # Dopamine writes stack_size - 1 = 3 zero rows before every episode
_DTYPES = {
    "observation": np.dtype(np.uint8),
    "action": np.dtype(np.int32),
    "reward": np.dtype(np.float32),
    "terminal": np.dtype(np.uint8),
    "add_count": np.dtype(np.int64),
    "invalid_range": np.dtype(np.int64),
}


def replay_dir(root: str | os.PathLike, game: str, run: int) -> Path:
    """``<root>/<game>/<run>/replay_logs``."""
    return Path(root).expanduser() / game / str(run) / "replay_logs"


def file_name(key: str, suffix: int) -> str:
    """Dopamine's checkpoint file name, e.g. ``$store$_observation_ckpt.3.gz``."""
    prefix = STORE if key in ("observation", "action", "reward", "terminal") else ""
    return f"{prefix}{key}_ckpt.{suffix}.gz"


def discover_suffixes(directory: Path) -> list[int]:
    """The checkpoint suffixes present in ``directory`` (``episode_end_indices`` files ignored), sorted."""
    pattern = re.compile(r"_ckpt\.(\d+)\.gz$")
    found = {int(m.group(1)) for p in directory.iterdir() if (m := pattern.search(p.name)) and "episode_end" not in p.name}
    return sorted(found)


def check_files(directory: Path, suffixes: Sequence[int]) -> None:
    """Raise FileNotFoundError naming the first missing file before any file is read."""
    missing = [directory / file_name(k, s) for s in suffixes for k in KEYS if not (directory / file_name(k, s)).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(
            f"DQN-Replay file missing: {missing[0]}{more}; every suffix needs its observation, action, reward, "
            f"terminal, add_count and invalid_range files"
        )


# --------------------------------------------------------------------------- gzip .npy streaming
_HEADER_LOCK = threading.Lock()
"""One .npy header parsed at a time. numpy reads it with ``ast.literal_eval``, and CPython 3.11's AST
construction keeps its recursion depth in state shared by threads: the loader's worker threads parsing
headers at once can fail with ``SystemError: AST constructor recursion depth mismatch`` (seen in this
project's CI; CPython gh-106905). A header is ~100 bytes, so the lock costs nothing measurable."""


class GzipNpy:
    """Streams the payload of one gzip-compressed ``.npy`` file in fixed-size pieces.

    Uses ``zlib`` directly (gzip wrapper, CRC and length checked at the end)
    so that decompression happens in C with the GIL released.
    """

    RAW_BLOCK = 1 << 20

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple[int | None, ...]) -> None:
        self.path = path
        self._raw = open(path, "rb")
        self._z = zlib.decompressobj(31)
        try:
            with _HEADER_LOCK:  # numpy parses the header with ast.literal_eval: see _HEADER_LOCK
                version = np.lib.format.read_magic(self)
                if version == (1, 0):
                    found_shape, fortran, found_dtype = np.lib.format.read_array_header_1_0(self)
                else:
                    found_shape, fortran, found_dtype = np.lib.format.read_array_header_2_0(self)
        except (ValueError, OSError, EOFError, zlib.error) as exc:
            self.close()
            raise ValueError(f"{path}: not a gzip-compressed .npy array ({exc}); re-download this file") from exc
        if found_dtype.hasobject:
            self.close()
            raise ValueError(f"{path}: holds Python objects (a pickle); refusing to load it")
        if found_dtype != dtype:
            self.close()
            raise ValueError(f"{path}: expected dtype {dtype}, found {found_dtype}; is this a DQN-Replay file?")
        if len(found_shape) != len(shape) or any(s is not None and s != f for s, f in zip(shape, found_shape)):
            self.close()
            want = tuple("C" if s is None else s for s in shape)
            raise ValueError(f"{path}: expected shape {want}, found {found_shape}; is this a DQN-Replay file?")
        if fortran and len(found_shape) > 1:
            self.close()
            raise ValueError(f"{path}: Fortran-ordered array; DQN-Replay files are C-ordered")
        self.shape = tuple(found_shape)
        self.dtype = found_dtype

    # file-like read for numpy's header parser
    def read(self, n: int) -> bytes:
        buf = bytearray(n)
        got = self.readinto(memoryview(buf))
        return bytes(buf[:got])

    def readinto(self, out: memoryview) -> int:
        """Fill ``out`` with decompressed bytes; returns the count (short only at the stream's end)."""
        pos, n = 0, len(out)
        z = self._z
        while pos < n:
            if z.unconsumed_tail:
                data = z.decompress(z.unconsumed_tail, n - pos)
            elif z.eof:
                break
            else:
                raw = self._raw.read(self.RAW_BLOCK)
                if not raw:
                    break
                data = z.decompress(raw, n - pos)
            out[pos : pos + len(data)] = data
            pos += len(data)
        return pos

    def read_exact(self, out: memoryview) -> None:
        try:
            got = self.readinto(out)
        except zlib.error as exc:
            raise ValueError(f"{self.path}: corrupt gzip data ({exc}); re-download this file") from exc
        if got != len(out):
            raise ValueError(f"{self.path}: truncated (the gzip stream ends early); re-download this file")

    def finish(self) -> None:
        """Consume the gzip trailer (checks CRC and length) and close."""
        try:
            z = self._z
            while not z.eof:
                if z.unconsumed_tail:
                    extra = z.decompress(z.unconsumed_tail, 1 << 16)
                else:
                    raw = self._raw.read(self.RAW_BLOCK)
                    if not raw:
                        raise ValueError(f"{self.path}: truncated (no gzip end-of-stream marker); re-download this file")
                    extra = z.decompress(raw, 1 << 16)
                if extra:
                    raise ValueError(f"{self.path}: more data than its .npy header declares; re-download this file")
        except zlib.error as exc:
            raise ValueError(f"{self.path}: corrupt gzip data ({exc}); re-download this file") from exc
        finally:
            self.close()

    def close(self) -> None:
        self._raw.close()

    def read_all(self) -> np.ndarray:
        arr = np.empty(self.shape, self.dtype)
        self.read_exact(memoryview(arr.reshape(-1).view(np.uint8)))
        self.finish()
        return arr


def read_array(path: Path, key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """Read one small DQN-Replay array (terminals, actions, counters) whole, validated."""
    return GzipNpy(path, _DTYPES[key], shape).read_all()


def _consecutive(values: np.ndarray, a: int, b: int) -> bool:
    """Whether ``values[a:b]`` is a run of consecutive integers (sorted, no gaps)."""
    return b > a and int(values[b - 1]) - int(values[a]) == b - a - 1 and bool(np.all(np.diff(values[a:b]) == 1))


def stream_select(
    path: Path, capacity: int, slots: np.ndarray, out: np.ndarray, out_rows: np.ndarray, chunk_bytes: int
) -> None:
    """Copy frames ``slots`` (sorted) of an observation file into ``out[out_rows]``, chunk by chunk."""
    reader = GzipNpy(path, _DTYPES["observation"], (capacity, *FRAME_SHAPE))
    try:
        row_bytes = int(np.prod(FRAME_SHAPE))
        chunk_rows = max(1, chunk_bytes // row_bytes)
        buf = np.empty((chunk_rows, *FRAME_SHAPE), np.uint8)  # the one fixed-size chunk
        last_needed = int(slots[-1]) if len(slots) else -1
        lo = 0
        while lo <= last_needed:
            n = min(chunk_rows, capacity - lo)
            a, b = (int(i) for i in np.searchsorted(slots, [lo, lo + n]))
            r = int(out_rows[a]) if b > a else 0
            if b - a == n and _consecutive(out_rows, a, b) and out.flags.c_contiguous:
                # every row of the chunk is wanted, in order: decompress straight into the output
                reader.read_exact(memoryview(out[r : r + n].reshape(-1)))
            else:
                reader.read_exact(memoryview(buf[:n].reshape(-1)))
                if b > a and _consecutive(slots, a, b) and _consecutive(out_rows, a, b):
                    out[r : r + b - a] = buf[int(slots[a]) - lo : int(slots[a]) - lo + b - a]  # one block copy
                elif b > a:
                    out[out_rows[a:b]] = buf[slots[a:b] - lo]
            lo += n
        if lo < capacity:  # skip the rest, still checking the CRC
            while lo < capacity:
                n = min(chunk_rows, capacity - lo)
                reader.read_exact(memoryview(buf[:n].reshape(-1)))
                lo += n
    except BaseException:
        reader.close()
        raise
    reader.finish()

"""DQN-Replay (Agarwal et al. 2020): an exact reader, a writer, and a subset cache.

On-disk facts (see DESIGN.md, "DQN-Replay on disk"): one checkpoint per suffix
N in ``<root>/<Game>/<run>/replay_logs/``, each array a gzip stream holding one
``np.save`` array. Row g of a run (3 padding rows before every episode
included) lives in slot ``g % C``; a file is saved right after the add that
makes ``add_count % C == C - 1``, so file 0 holds rows 0..C-2 and file k >= 1
holds rows kC-1..(k+1)C-2 in slot order C-1, 0, ..., C-2. The final file is
saved with ``add_count`` set to the cursor c < C and holds slot C-1 (when a
full file precedes it) then slots 0..c-1.

How the reader uses these facts:

* Pass 1 reads only ``add_count`` and the terminal flags of every file (the
  final file's predecessor's actions too, see below), works out each file's
  rows in run order, drops padding rows, stitches episodes across consecutive
  files, and marks episodes cut by a gap (a missing suffix, or an add_count
  jump that skipped a save) or by the end of the data as truncated. An
  episode whose start is not in the loaded files (the first one after a gap,
  or when reading from suffix k > 0) is dropped: its timesteps are unknown.
* The sampled episodes are chosen from that plan (all of them, whole episodes
  at random up to ``max_transitions``, or the paper's protocol).
* Pass 2 streams every needed file once, in parallel threads (zlib releases
  the GIL): the ``.npy`` header is parsed, then the payload is decompressed in
  fixed-size chunks and only the selected rows are copied out, so memory
  stays at the sample's size plus one chunk per worker.

``episode_end_indices`` files (pickles in newer Dopamine) are ignored; nothing
is ever unpickled. Rewards are returned as stored (clipped to [-1, 1]).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import numbers
import os
import re
import shutil
import tempfile
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from fh_rl.atomic import atomic_path
from fh_rl.datasets.trajectory import TrajectoryDataset

STORE = "$store$_"
KEYS = ("observation", "action", "reward", "terminal", "add_count", "invalid_range")
FRAME_SHAPE = (84, 84)
PADDING = 3  # Dopamine writes stack_size - 1 = 3 zero rows before every episode
CACHE_VERSION = 1
PROTOCOLS = ("all", "episodes", "paper")
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


def default_cache_dir() -> Path:
    """``$FH_RL_CACHE`` if set, else ``~/.cache/fh_rl``."""
    return Path(os.environ.get("FH_RL_CACHE", "~/.cache/fh_rl")).expanduser()


# --------------------------------------------------------------------------- gzip .npy streaming
class _GzipNpy:
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
    return _GzipNpy(path, _DTYPES[key], shape).read_all()


def _stream_select(
    path: Path, capacity: int, slots: np.ndarray, out: np.ndarray, out_rows: np.ndarray, chunk_bytes: int
) -> None:
    """Copy frames ``slots`` (sorted) of an observation file into ``out[out_rows]``, chunk by chunk."""
    reader = _GzipNpy(path, _DTYPES["observation"], (capacity, *FRAME_SHAPE))
    try:
        row_bytes = int(np.prod(FRAME_SHAPE))
        chunk_rows = max(1, chunk_bytes // row_bytes)
        buf = np.empty((chunk_rows, *FRAME_SHAPE), np.uint8)  # the one fixed-size chunk
        last_needed = int(slots[-1]) if len(slots) else -1
        lo = 0
        while lo <= last_needed:
            n = min(chunk_rows, capacity - lo)
            reader.read_exact(memoryview(buf[:n].reshape(-1)))
            a, b = np.searchsorted(slots, [lo, lo + n])
            if b > a:
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


# --------------------------------------------------------------------------- plan (pass 1)
@dataclass
class _File:
    suffix: int
    add_count: int
    capacity: int
    kind: str  # "full" | "final"
    g_end: int  # rows of the run written when this file was saved (padding included)
    rows: int  # rows of the run this file holds
    head: bool = False  # final file: slot C-1 holds the row right after the previous file
    break_before: bool = False
    drop: np.ndarray | None = None  # (rows,) bool: padding, or rows of an episode with unknown start
    pad_rows: np.ndarray | None = None  # file-row indices of known padding rows (validated in pass 2)
    real_base: int = 0  # index of this file's first kept row among all kept rows
    real_count: int = 0

    @property
    def is_full(self) -> bool:
        """A full save (file 0 has add_count C - 1 and is full too)."""
        return self.kind == "full" or (self.suffix == 0 and self.add_count == self.capacity - 1)

    @property
    def g_start(self) -> int:
        return self.g_end - self.rows

    def slots(self) -> np.ndarray:
        """File slot of each of this file's rows, in run order."""
        C = self.capacity
        if self.kind == "full":
            return np.concatenate([[C - 1], np.arange(C - 1)])
        c = self.add_count
        head = [C - 1] if self.head else []
        return np.concatenate([np.array(head, dtype=np.int64), np.arange(c)])


def _check_files(directory: Path, suffixes: Sequence[int]) -> None:
    missing = [directory / file_name(k, s) for s in suffixes for k in KEYS if not (directory / file_name(k, s)).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(
            f"DQN-Replay file missing: {missing[0]}{more}; every suffix needs its observation, action, reward, "
            f"terminal, add_count and invalid_range files"
        )


def discover_suffixes(directory: Path) -> list[int]:
    pattern = re.compile(r"_ckpt\.(\d+)\.gz$")
    found = {int(m.group(1)) for p in directory.iterdir() if (m := pattern.search(p.name)) and "episode_end" not in p.name}
    return sorted(found)


def _plan_files(directory: Path, suffixes: list[int], workers: int) -> list[_File]:
    def small(s: int) -> tuple[int, np.ndarray]:
        add_count = int(read_array(directory / file_name("add_count", s), "add_count", ()))
        read_array(directory / file_name("invalid_range", s), "invalid_range", (5,))  # validated, not needed
        terminal = read_array(directory / file_name("terminal", s), "terminal", (None,))
        return add_count, terminal

    with ThreadPoolExecutor(workers) as pool:
        small_arrays = list(pool.map(small, suffixes))
    capacity = len(small_arrays[0][1])
    files: list[_File] = []
    terminals: list[np.ndarray] = []
    for s, (a, term) in zip(suffixes, small_arrays):
        path = directory / file_name("terminal", s)
        if len(term) != capacity:
            raise ValueError(f"{path}: holds {len(term)} rows, other files hold {capacity}; files of different runs?")
        if a < 0:
            raise ValueError(f"{directory / file_name('add_count', s)}: negative add_count {a}")
        if a < capacity:  # final file (cursor) or the run's first full file (a == C - 1)
            if s > 0 and a == capacity - 1:
                warnings.warn(
                    f"{directory / file_name('add_count', s)}: final file saved right after a full one holds no "
                    f"new rows; ignoring suffix {s}",
                    stacklevel=3,
                )
                continue
            f = _File(s, a, capacity, "final", g_end=0, rows=a + (1 if s > 0 else 0), head=s > 0)
        else:
            if a % capacity != capacity - 1:
                raise ValueError(
                    f"{directory / file_name('add_count', s)}: add_count {a} is neither k*C-1 (a full file) "
                    f"nor below C={capacity} (the final file); file is corrupt or not DQN-Replay"
                )
            f = _File(s, a, capacity, "full", g_end=a, rows=capacity)
        files.append(f)
        terminals.append(term)
    # Global positions and gaps.
    for i, f in enumerate(files):
        prev = files[i - 1] if i > 0 else None
        consecutive = prev is not None and prev.suffix == f.suffix - 1
        if f.kind == "final":
            if f.suffix == 0:
                f.g_end = f.add_count
            elif consecutive and prev is not None and prev.kind == "full":
                f.g_end = prev.g_end + 1 + f.add_count
                # Without a skipped save, slots c..C-2 are stale copies of the previous file's.
                c = f.add_count
                stale_same = np.array_equal(terminals[i][c : capacity - 1], terminals[i - 1][c : capacity - 1])
                if stale_same:
                    pa = read_array(directory / file_name("action", prev.suffix), "action", (capacity,))
                    fa = read_array(directory / file_name("action", f.suffix), "action", (capacity,))
                    stale_same = np.array_equal(pa[c : capacity - 1], fa[c : capacity - 1])
                if not stale_same:  # a save was skipped: only slots 0..c-1 are known rows
                    f.break_before, f.head = True, False
                    f.rows = c
                    f.g_end = prev.g_end + capacity + 1 + c  # unknown; only needs to break contiguity
            else:
                f.g_end = f.suffix * capacity + f.add_count  # previous file not loaded: a gap anyway
        if i == 0:
            f.break_before = True  # a segment starts here (its padding is known only at the run's start)
        else:
            f.break_before = f.break_before or not (consecutive and f.g_start == prev.g_end)
    # Padding and unknown-start rows, carried across files.
    UNKNOWN = -1
    pad_left = UNKNOWN
    real_base = 0
    for f, term_slots in zip(files, terminals):
        term = term_slots[f.slots()].astype(bool)  # (rows,) in run order
        n = len(term)
        if f.break_before:
            pad_left = PADDING if f.g_start == 0 else UNKNOWN
        drop = np.zeros(n, bool)
        t = np.flatnonzero(term)
        known_pads = [np.arange(min(pad_left, n))] if pad_left != UNKNOWN else []
        if pad_left == UNKNOWN:
            if len(t) == 0:
                drop[:] = True
            else:
                drop[: t[0] + 1] = True  # the episode whose start is not loaded
        pad_idx = (t[:, None] + np.arange(1, PADDING + 1)).reshape(-1)  # (3 * terminals,)
        known_pads.append(pad_idx[pad_idx < n])
        pads = np.concatenate(known_pads).astype(np.int64)
        if term[pads].any():
            bad = int(pads[np.flatnonzero(term[pads])[0]])
            raise ValueError(
                f"{directory / file_name('terminal', f.suffix)}: row {bad} (slot {int(f.slots()[bad])}) should be "
                f"padding but is terminal; the file's slot order does not match DQN-Replay's"
            )
        drop[pads] = True
        if pad_left == UNKNOWN and len(t) == 0:
            next_left = UNKNOWN
        else:
            end = (t[-1] + 1 + PADDING) if len(t) else (pad_left if pad_left != UNKNOWN else 0)
            if len(t) and pad_left != UNKNOWN:
                end = max(end, pad_left)
            next_left = max(0, int(end) - n)
        pad_left = next_left
        f.drop, f.pad_rows = drop, pads
        f.real_base, f.real_count = real_base, int(n - drop.sum())
        real_base += f.real_count
        f._term_kept = term[~drop]  # type: ignore[attr-defined]
    return files


def _episode_table(files: list[_File]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Episodes over the kept rows of all files: (starts, ends, terminated)."""
    ends_term, breaks = [], []
    for f in files:
        if f.break_before:
            breaks.append(f.real_base)
        ends_term.append(f.real_base + np.flatnonzero(f._term_kept) + 1)  # type: ignore[attr-defined]
        del f._term_kept  # type: ignore[attr-defined]
    total = files[-1].real_base + files[-1].real_count if files else 0
    term_ends = np.concatenate(ends_term) if ends_term else np.zeros(0, np.int64)
    bounds = np.unique(np.concatenate([[0, total], term_ends, breaks]).astype(np.int64))
    starts, ends = bounds[:-1], bounds[1:]
    terminated = np.isin(ends, term_ends)
    keep = ends > starts
    return starts[keep], ends[keep], terminated[keep]


# --------------------------------------------------------------------------- selection
def _select_random(
    starts: np.ndarray, ends: np.ndarray, terminated: np.ndarray, max_transitions: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(starts))
    lengths = (ends - starts)[order]
    cum = np.cumsum(lengths)
    n = int(np.searchsorted(cum, max_transitions) + 1) if cum[-1] > max_transitions else len(order)
    chosen = np.sort(order[:n])
    s, e, term = starts[chosen], ends[chosen].copy(), terminated[chosen].copy()
    cut = np.zeros(len(chosen), bool)
    excess = int((e - s).sum()) - max_transitions
    if excess > 0:  # cut the last-drawn episode so the sample has exactly max_transitions
        j = int(np.flatnonzero(chosen == order[n - 1])[0])
        e[j] -= excess
        term[j], cut[j] = False, True
    return s, e, term, cut


def _select_paper(
    files: list[_File],
    starts: np.ndarray,
    ends: np.ndarray,
    terminated: np.ndarray,
    num_steps: int,
    num_buffers: int,
    trajectories_per_buffer: int,
    seed: int,
) -> np.ndarray:
    """The DT paper's protocol, without its pitfalls.

    Buffers are drawn uniformly among the last ``num_buffers`` full files; each
    visit takes the next ``trajectories_per_buffer`` complete episodes that
    start in that buffer, continuing where the last visit stopped, until
    ``num_steps`` transitions are collected. Unlike the original script, no
    buffer is re-read per visit, buffers are not cut at 100,000 steps, episodes
    stitched across files are whole, and exactly ``trajectories_per_buffer``
    episodes are taken per visit.
    """
    full = [i for i, f in enumerate(files) if f.is_full]
    candidates = full[-num_buffers:]
    bases = np.array([f.real_base for f in files])
    home = np.searchsorted(bases, starts, side="right") - 1  # file holding each episode's first row
    per_file = {i: np.flatnonzero((home == i) & terminated) for i in candidates}
    cursor = {i: 0 for i in candidates}
    rng = np.random.default_rng(seed)
    live = [i for i in candidates if len(per_file[i])]
    chosen: list[np.ndarray] = []
    total = 0
    while total < num_steps and live:
        i = live[int(rng.integers(len(live)))]
        take = per_file[i][cursor[i] : cursor[i] + trajectories_per_buffer]
        cursor[i] += len(take)
        chosen.append(take)
        total += int((ends[take] - starts[take]).sum())
        if cursor[i] >= len(per_file[i]):
            live.remove(i)
    if total < num_steps:
        warnings.warn(f"paper protocol: the buffers hold only {total} transitions of complete episodes (< {num_steps})", stacklevel=3)
    if not chosen:
        raise ValueError("paper protocol: the chosen buffers contain no complete episode")
    return np.sort(np.concatenate(chosen))


# --------------------------------------------------------------------------- pass 2
def _read_file_rows(
    directory: Path,
    f: _File,
    sel_starts: np.ndarray,
    sel_ends: np.ndarray,
    out_offsets: np.ndarray,
    out: dict[str, np.ndarray],
    chunk_bytes: int,
) -> None:
    lo, hi = f.real_base, f.real_base + f.real_count
    s = np.clip(sel_starts, lo, hi)
    e = np.clip(sel_ends, lo, hi)
    n = e - s
    keep = n > 0
    if not keep.any():
        return
    s, n, o = s[keep], n[keep], out_offsets[keep] + (s[keep] - sel_starts[keep])
    within = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    local_real = np.repeat(s - lo, n) + within  # kept-row index within this file
    out_rows = np.repeat(o, n) + within  # destination rows
    file_rows = np.flatnonzero(~f.drop)[local_real]  # (M_f,) row index in run order
    slots = f.slots()[file_rows]
    order = np.argsort(slots, kind="stable")
    slots, out_rows = slots[order], out_rows[order]
    C = f.capacity
    actions = read_array(directory / file_name("action", f.suffix), "action", (C,))
    rewards = read_array(directory / file_name("reward", f.suffix), "reward", (C,))
    _validate_padding(directory, f, actions, rewards)
    _validate_rows(directory, f, actions[slots], rewards[slots], slots)
    out["actions"][out_rows] = actions[slots]
    out["rewards"][out_rows] = rewards[slots]
    del actions, rewards
    _stream_select(directory / file_name("observation", f.suffix), C, slots, out["observations"], out_rows, chunk_bytes)


def _validate_rows(directory: Path, f: _File, actions: np.ndarray, rewards: np.ndarray, slots: np.ndarray) -> None:
    """What DQN-Replay data can get wrong in the rows kept: a non-finite reward, a negative action id."""
    from fh_rl.datasets.validate import check_finite

    check_finite(rewards, source=directory / file_name("reward", f.suffix), key="reward", rows=slots)
    if len(actions) and actions.min() < 0:
        i = int(np.argmax(actions < 0))
        raise ValueError(
            f"{directory / file_name('action', f.suffix)}: 'action' is {int(actions[i])} at row {int(slots[i])}; "
            f"action ids are >= 0"
        )


def _validate_padding(directory: Path, f: _File, actions: np.ndarray, rewards: np.ndarray) -> None:
    """Padding rows must hold action 0 and reward 0; anything else means the slot order is wrong."""
    pad_slots = f.slots()[f.pad_rows]
    if np.any(actions[pad_slots] != 0) or np.any(rewards[pad_slots] != 0):
        bad = int(pad_slots[np.flatnonzero((actions[pad_slots] != 0) | (rewards[pad_slots] != 0))[0]])
        raise ValueError(
            f"{directory / file_name('action', f.suffix)}: slot {bad} should be a padding row (action 0, reward 0); "
            f"the file's slot order does not match DQN-Replay's"
        )


# --------------------------------------------------------------------------- cache
def _cache_key(directory: Path, suffixes: Sequence[int], params: dict[str, Any]) -> str:
    stats = []
    for s in suffixes:
        for k in KEYS:
            st = (directory / file_name(k, s)).stat()
            stats.append([file_name(k, s), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"version": CACHE_VERSION, "dir": str(directory.resolve()), "params": params, "files": stats}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


_CACHE_ARRAYS = ("observations", "actions", "rewards", "offsets", "terminated", "truncated")


def _load_cache(path: Path) -> dict[str, np.ndarray] | None:
    if not (path / "meta.json").is_file():
        return None
    try:
        return {k: np.load(path / f"{k}.npy", mmap_mode="r" if k == "observations" else None, allow_pickle=False) for k in _CACHE_ARRAYS}
    except (OSError, ValueError) as exc:
        raise ValueError(f"cached subset {path} is unreadable ({exc}); delete that directory to rebuild it") from exc


def _save_cache(path: Path, flat: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        for k in _CACHE_ARRAYS:
            np.save(tmp / f"{k}.npy", flat[k], allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True, allow_nan=False))
        try:
            os.replace(tmp, path)
        except OSError:  # another process cached it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- public reader
def load_dqn_replay(
    root: str | os.PathLike,
    game: str,
    run: int = 1,
    suffixes: Iterable[int] | None = None,
    max_transitions: int | None = None,
    seed: int = 0,
    *,
    protocol: str | None = None,
    num_buffers: int = 50,
    trajectories_per_buffer: int = 10,
    workers: int | None = None,
    cache: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    chunk_bytes: int = 4 << 20,
    time_limit: int | None = 27_000,
    progress: bool = True,
) -> TrajectoryDataset:
    """Read a DQN-Replay run exactly, in bounded memory, into a frame dataset (frame_stack 4).

    Args:
        root: data root holding ``<game>/<run>/replay_logs``.
        game: game directory name, e.g. ``"Breakout"``.
        run: run number (1..5 in the published data).
        suffixes: checkpoint suffixes to read (default: all present). A suffix
            missing from a consecutive range is a gap: episodes across it are
            cut, not joined.
        max_transitions: sample size. ``protocol="episodes"`` (the default when
            set): whole episodes drawn at random, the last one cut to fit
            (marked truncated). ``protocol="paper"``: the number of steps to
            collect (default 500,000).
        seed: seed of the episode / buffer draws.
        protocol: ``"all"`` (every episode; default without ``max_transitions``),
            ``"episodes"`` or ``"paper"`` (see :func:`_select_paper`).
        num_buffers: paper protocol: buffers drawn among the last this many full files.
        trajectories_per_buffer: paper protocol: complete episodes taken per visit.
        workers: threads decompressing files in parallel (default: min(4, CPUs)).
        cache: keep the sample as uncompressed memory-mapped ``.npy`` files
            keyed by these arguments and the source files' sizes and dates.
            ``None`` (default): cache when a subset is sampled.
        cache_dir: where caches go (default :func:`default_cache_dir`); never
            next to the data.
        chunk_bytes: decompressed bytes of observation payload held per worker.
        time_limit: Dopamine also sets the terminal flag when an episode hits its
            27,000-step cap; a terminal episode of exactly this many steps is
            marked truncated (time limit), not terminated. ``None`` keeps the flag.
        progress: show a progress bar.
    """
    directory = replay_dir(root, game, run)
    hint = f"fetch it with `python -m fh_rl.datasets.download {game} --run {run} --root {root}`"
    if not directory.is_dir():
        raise FileNotFoundError(f"no DQN-Replay directory {directory}; {hint}")
    present = discover_suffixes(directory)
    if not present:
        raise FileNotFoundError(f"{directory} holds no DQN-Replay checkpoint files (*_ckpt.<N>.gz); {hint}")
    wanted = present if suffixes is None else sorted({int(s) for s in suffixes})
    if not wanted:
        raise ValueError("suffixes is empty; pass None to read every file present")
    _check_files(directory, wanted)
    if protocol is None:
        protocol = "all" if max_transitions is None else "episodes"
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    if protocol == "paper" and max_transitions is None:
        max_transitions = 500_000
    if protocol == "episodes" and max_transitions is None:
        raise ValueError("protocol='episodes' needs max_transitions")
    if max_transitions is not None:
        if isinstance(max_transitions, bool) or not isinstance(max_transitions, numbers.Integral) or max_transitions < 1:
            raise ValueError(f"max_transitions must be a positive int, got {max_transitions!r}")
        max_transitions = int(max_transitions)
    workers = workers or min(4, os.cpu_count() or 1)
    params = {
        "game": game, "run": run, "suffixes": wanted, "max_transitions": max_transitions, "seed": seed,
        "protocol": protocol, "num_buffers": num_buffers, "trajectories_per_buffer": trajectories_per_buffer,
        "time_limit": time_limit,
    }
    name = f"dqn-replay/{game}/{run}"
    use_cache = (protocol != "all") if cache is None else cache
    cache_path = None
    if use_cache:
        key = _cache_key(directory, wanted, params)
        cache_path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        cache_path = cache_path / "dqn_replay" / f"{game}-{run}-{key}"
        cached = _load_cache(cache_path)
        if cached is not None:
            from fh_rl.datasets.validate import check_finite

            check_finite(cached["rewards"], source=cache_path / "rewards.npy", key="rewards")  # a cache from older code
            return TrajectoryDataset(cached, frame_stack=4, name=name, source={**params, "root": str(root), "cache": str(cache_path)})

    files = _plan_files(directory, wanted, workers)
    if not files:
        raise ValueError(f"{directory}: no usable checkpoint among suffixes {wanted}")
    starts, ends, terminated = _episode_table(files)
    if len(starts) == 0:
        raise ValueError(f"{directory}: suffixes {wanted} contain no episode with a known start; read more files")
    ended = terminated  # ends at a terminal row (game over or the step cap)
    if protocol == "episodes":
        starts, ends, ended, _ = _select_random(starts, ends, ended, max_transitions, seed)
    elif protocol == "paper":
        pick = _select_paper(files, starts, ends, ended, max_transitions, num_buffers, trajectories_per_buffer, seed)
        starts, ends, ended = starts[pick], ends[pick], ended[pick]
    terminated = ended if time_limit is None else ended & ((ends - starts) != time_limit)
    truncated = ~terminated
    lengths = ends - starts
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    total = int(offsets[-1])
    out = {
        "observations": np.empty((total, *FRAME_SHAPE), np.uint8),
        "actions": np.empty(total, np.int64),
        "rewards": np.empty(total, np.float32),
    }
    needed = [f for f in files if np.any((np.minimum(ends, f.real_base + f.real_count) - np.maximum(starts, f.real_base)) > 0)]
    bar = tqdm(total=len(needed), desc=f"reading {game} run {run}", unit="file", disable=not progress)
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(_read_file_rows, directory, f, starts, ends, offsets[:-1], out, chunk_bytes) for f in needed]
        try:
            for fut in futures:
                fut.result()
                bar.update(1)
        finally:
            for fut in futures:
                fut.cancel()
            bar.close()
    flat = {**out, "offsets": offsets, "terminated": terminated.astype(bool), "truncated": truncated.astype(bool)}
    source = {**params, "root": str(root)}
    if cache_path is not None:
        _save_cache(cache_path, flat, {"params": params, "key": cache_path.name})
        source["cache"] = str(cache_path)
    return TrajectoryDataset(flat, frame_stack=4, name=name, source=source)


# --------------------------------------------------------------------------- writer
class DQNReplayWriter:
    """Writes the layout Dopamine's ``OutOfGraphLoggedReplayBuffer`` writes.

    ``add`` follows Dopamine's replay buffer: before the first row and after
    every terminal row it writes 3 padding rows (zero frame, action 0, reward
    0, not terminal) together with the row, all in one add; after an add that
    leaves ``add_count % C == C - 1`` the whole buffer is saved as the next
    suffix. ``close`` saves the final partial file with ``add_count`` set to
    the cursor (as ``log_final_buffer`` does). Rewards are stored as given
    (Dopamine's agents store clipped rewards). Each file is written to a
    temporary name in the same directory and renamed into place.

    Args:
        root: data root; files go to ``<root>/<game>/<run>/replay_logs``.
        game: game directory name.
        run: run number.
        capacity: C, rows per file (1,000,000 in the published data).
    """

    def __init__(self, root: str | os.PathLike, game: str, run: int, capacity: int = 1_000_000) -> None:
        if not isinstance(capacity, int) or capacity < PADDING + 2:
            raise ValueError(f"capacity must be an int >= {PADDING + 2}, got {capacity!r}")
        self.directory = replay_dir(root, game, run)
        if self.directory.is_dir() and discover_suffixes(self.directory):
            raise FileExistsError(f"{self.directory} already holds DQN-Replay files; write to an empty directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.capacity = capacity
        self.add_count = 0
        self.log_count = 0
        self._store = {
            "observation": np.zeros((capacity, *FRAME_SHAPE), np.uint8),
            "action": np.zeros(capacity, np.int32),
            "reward": np.zeros(capacity, np.float32),
            "terminal": np.zeros(capacity, np.uint8),
        }
        self._closed = False

    def cursor(self) -> int:
        return self.add_count % self.capacity

    def _add_row(self, observation: Any, action: int, reward: float, terminal: bool) -> None:
        c = self.cursor()
        self._store["observation"][c] = observation
        self._store["action"][c] = action
        self._store["reward"][c] = reward
        self._store["terminal"][c] = terminal
        self.add_count += 1

    def add(self, observation: np.ndarray, action: int, reward: float, terminal: bool) -> None:
        """Append one step (an 84x84 uint8 frame, its action, reward, and terminal flag)."""
        if self._closed:
            raise ValueError("DQNReplayWriter is closed")
        obs = np.asarray(observation)
        if obs.shape != FRAME_SHAPE or obs.dtype != np.uint8:
            raise ValueError(f"observation must be a uint8 {FRAME_SHAPE} frame, got {obs.dtype} {obs.shape}")
        if self.add_count == 0 or self._store["terminal"][self.cursor() - 1] == 1:
            for _ in range(PADDING):
                self._add_row(0, 0, 0.0, False)
        self._add_row(obs, int(action), float(reward), bool(terminal))
        if self.cursor() == self.capacity - 1:
            self._save(self.add_count)

    def _invalid_range(self) -> np.ndarray:
        # Dopamine's invalid_range(cursor, C, stack_size=4, update_horizon=1)
        return np.array([(self.cursor() - 1 + i) % self.capacity for i in range(PADDING + 2)], dtype=np.int64)

    def _save(self, add_count: int) -> None:
        arrays = {
            **self._store,
            "add_count": np.array(add_count, dtype=np.int64),
            "invalid_range": self._invalid_range(),
        }
        # All six files are written to temp names first and renamed together at the end of the
        # block; on any error every temp file is removed. A reader never sees a half-written file.
        with ExitStack() as stack:
            for key in KEYS:
                tmp = stack.enter_context(atomic_path(self.directory / file_name(key, self.log_count)))
                with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as gz:
                    np.save(gz, arrays[key], allow_pickle=False)
        self.log_count += 1

    def close(self) -> None:
        """Save the final partial file (add_count = cursor), as Dopamine's ``log_final_buffer``."""
        if self._closed:
            return
        self._closed = True
        if self.add_count > 0:
            self._save(self.cursor())

    def __enter__(self) -> "DQNReplayWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

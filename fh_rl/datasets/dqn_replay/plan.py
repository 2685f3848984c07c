"""Pass 1: where each file's rows sit in the run, and the episodes they form.

Row g of a run (3 padding rows before every episode included) lives in slot
``g % C``; a file is saved right after the add that makes
``add_count % C == C - 1``, so file 0 holds rows 0..C-2 and file k >= 1 holds
rows kC-1..(k+1)C-2 in slot order C-1, 0, ..., C-2. The final file is saved
with ``add_count`` set to the cursor c < C and holds slot C-1 (when a full
file precedes it) then slots 0..c-1; slots c..C-2 are stale copies.

:func:`plan_files` reads only ``add_count`` and the terminal flags of every
file (the final file's predecessor's actions too), works out each file's rows
in run order, drops padding rows, stitches episodes across consecutive files,
and marks where a gap (a missing suffix, or an add_count jump that skipped a
save) breaks them. :func:`episode_table` turns that into episodes. An episode
whose start is not in the loaded files (the first one after a gap, or when
reading from suffix k > 0) is dropped: its timesteps are unknown.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fh_rl.datasets.dqn_replay.format import PADDING, file_name, read_array

UNKNOWN = -1  # padding rows still to come at a file's start: not known after a gap


@dataclass
class FilePlan:
    """One checkpoint file: its place in the run and which of its rows are data."""

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
    term_kept: np.ndarray | None = None  # (real_count,) terminal flags of the kept rows; freed by episode_table

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


def plan_files(directory: Path, suffixes: list[int], workers: int) -> list[FilePlan]:
    """Plan the files of ``suffixes`` (sorted): kinds, run positions, gaps, and dropped rows."""
    small_arrays = _read_counts_and_terminals(directory, suffixes, workers)
    files, terminals = _classify_files(directory, suffixes, small_arrays)
    _place_in_run(directory, files, terminals)
    _mark_dropped_rows(directory, files, terminals)
    return files


def _read_counts_and_terminals(directory: Path, suffixes: list[int], workers: int) -> list[tuple[int, np.ndarray]]:
    def small(s: int) -> tuple[int, np.ndarray]:
        add_count = int(read_array(directory / file_name("add_count", s), "add_count", ()))
        read_array(directory / file_name("invalid_range", s), "invalid_range", (5,))  # validated, not needed
        terminal = read_array(directory / file_name("terminal", s), "terminal", (None,))
        return add_count, terminal

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(small, suffixes))


def _classify_files(
    directory: Path, suffixes: list[int], small_arrays: list[tuple[int, np.ndarray]]
) -> tuple[list[FilePlan], list[np.ndarray]]:
    """A full or final file per suffix, from its add_count; returns the files and their terminal flags (by slot)."""
    capacity = len(small_arrays[0][1])
    files: list[FilePlan] = []
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
                    stacklevel=4,  # load_dqn_replay's caller (via plan_files)
                )
                continue
            f = FilePlan(s, a, capacity, "final", g_end=0, rows=a + (1 if s > 0 else 0), head=s > 0)
        else:
            if a % capacity != capacity - 1:
                raise ValueError(
                    f"{directory / file_name('add_count', s)}: add_count {a} is neither k*C-1 (a full file) "
                    f"nor below C={capacity} (the final file); file is corrupt or not DQN-Replay"
                )
            f = FilePlan(s, a, capacity, "full", g_end=a, rows=capacity)
        files.append(f)
        terminals.append(term)
    return files, terminals


def _place_in_run(directory: Path, files: list[FilePlan], terminals: list[np.ndarray]) -> None:
    """Set each file's run position (``g_end``) and ``break_before`` where it does not continue the previous one."""
    capacity = files[0].capacity if files else 0
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


def _mark_dropped_rows(directory: Path, files: list[FilePlan], terminals: list[np.ndarray]) -> None:
    """Mark padding rows and rows of an episode with an unknown start, carrying the count across files."""
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
        f.term_kept = term[~drop]


def episode_table(files: list[FilePlan]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Episodes over the kept rows of all files: (starts, ends, terminated), each (E,)."""
    ends_term, breaks = [], []
    for f in files:
        if f.break_before:
            breaks.append(f.real_base)
        assert f.term_kept is not None, "episode_table needs plan_files' output, once"
        ends_term.append(f.real_base + np.flatnonzero(f.term_kept) + 1)
        f.term_kept = None
    total = files[-1].real_base + files[-1].real_count if files else 0
    term_ends = np.concatenate(ends_term) if ends_term else np.zeros(0, np.int64)
    bounds = np.unique(np.concatenate([[0, total], term_ends, breaks]).astype(np.int64))
    starts, ends = bounds[:-1], bounds[1:]
    terminated = np.isin(ends, term_ends)
    keep = ends > starts
    return starts[keep], ends[keep], terminated[keep]

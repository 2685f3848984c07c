"""``load_dqn_replay``: check, plan (pass 1), select, read the selected rows (pass 2), cache.

Pass 2 streams every needed file once, in parallel threads (zlib releases the
GIL): the ``.npy`` header is parsed, then the payload is decompressed in
fixed-size chunks and only the selected rows are copied out, so memory stays
at the sample's size plus one chunk per worker.
"""

from __future__ import annotations

import numbers
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import numpy as np
from fh_rl.infra.progress import progress_bar

from fh_rl.datasets.dqn_replay.cache import load_cache, save_cache, subset_cache_path
from fh_rl.datasets.dqn_replay.format import (
    FRAME_SHAPE,
    check_files,
    discover_suffixes,
    file_name,
    read_array,
    replay_dir,
    stream_select,
)
from fh_rl.datasets.dqn_replay.plan import FilePlan, episode_table, plan_files
from fh_rl.datasets.dqn_replay.selection import PROTOCOLS, select_episodes
from fh_rl.datasets.trajectory import TrajectoryDataset
from fh_rl.datasets.validate import check_finite, check_magnitude


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
            ``"episodes"`` or ``"paper"`` (see
            :func:`fh_rl.datasets.dqn_replay.selection.select_paper`).
        num_buffers: paper protocol: buffers drawn among the last this many full files.
        trajectories_per_buffer: paper protocol: complete episodes taken per visit.
        workers: threads decompressing files in parallel (default: one per file to read, at most the
            number of CPUs; one file is one gzip stream and cannot be split).
        cache: keep the sample as uncompressed memory-mapped ``.npy`` files
            keyed by these arguments and the source files' sizes and dates.
            ``None`` (default): cache when a subset is sampled.
        cache_dir: where caches go (default :func:`~fh_rl.datasets.dqn_replay.cache.default_cache_dir`); never
            next to the data.
        chunk_bytes: decompressed bytes of observation payload held per worker.
        time_limit: Dopamine also sets the terminal flag when an episode hits its
            27,000-step cap; a terminal episode of exactly this many steps is
            marked truncated (time limit), not terminated. ``None`` keeps the flag.
        progress: show a progress bar.
    """
    directory = replay_dir(root, game, run)
    hint = (f"collect a small one locally with `python -m fh_rl.datasets.collect atari --game {game} --steps 50000 "
            f"--out {root} --run {run}` (docs/atari_local.md), or fetch the published run (~50 GB per game) with "
            f"`python -m fh_rl.datasets.download {game} --run {run} --root {root}`")
    wanted = _wanted_suffixes(directory, suffixes, hint)
    protocol, max_transitions = _resolve_protocol(protocol, max_transitions)
    workers = workers or max(1, min(len(wanted), os.cpu_count() or 1))
    params = {
        "game": game, "run": run, "suffixes": wanted, "max_transitions": max_transitions, "seed": seed,
        "protocol": protocol, "num_buffers": num_buffers, "trajectories_per_buffer": trajectories_per_buffer,
        "time_limit": time_limit,
    }
    name = f"dqn-replay/{game}/{run}"
    use_cache = (protocol != "all") if cache is None else cache
    cache_path = None
    if use_cache:
        cache_path = subset_cache_path(cache_dir, directory, wanted, params)
        cached = load_cache(cache_path)
        if cached is not None:
            check_finite(cached["rewards"], source=cache_path / "rewards.npy", key="rewards")  # a cache from older code
            return TrajectoryDataset(cached, frame_stack=4, name=name, source={**params, "root": str(root), "cache": str(cache_path)},
                                     reward_transform="clip")

    files = plan_files(directory, wanted, workers)
    if not files:
        raise ValueError(f"{directory}: no usable checkpoint among suffixes {wanted}")
    starts, ends, terminated = episode_table(files)
    if len(starts) == 0:
        raise ValueError(f"{directory}: suffixes {wanted} contain no episode with a known start; read more files")
    starts, ends, ended = select_episodes(
        files, starts, ends, terminated, protocol, max_transitions, seed, num_buffers, trajectories_per_buffer
    )
    terminated = ended if time_limit is None else ended & ((ends - starts) != time_limit)
    offsets = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64)
    out = read_rows(directory, files, starts, ends, offsets, workers, chunk_bytes, f"reading {game} run {run}", progress)
    flat = {**out, "offsets": offsets, "terminated": terminated.astype(bool), "truncated": (~terminated).astype(bool)}
    source = {**params, "root": str(root)}
    if cache_path is not None:
        save_cache(cache_path, flat, {"params": params, "key": cache_path.name})
        source["cache"] = str(cache_path)
    return TrajectoryDataset(flat, frame_stack=4, name=name, source=source, reward_transform="clip")


def _wanted_suffixes(directory: Path, suffixes: Iterable[int] | None, hint: str) -> list[int]:
    """The sorted suffixes to read (default: all present), every one of their files checked to exist."""
    if not directory.is_dir():
        raise FileNotFoundError(f"no DQN-Replay directory {directory}; {hint}")
    present = discover_suffixes(directory)
    if not present:
        raise FileNotFoundError(f"{directory} holds no DQN-Replay checkpoint files (*_ckpt.<N>.gz); {hint}")
    wanted = present if suffixes is None else sorted({int(s) for s in suffixes})
    if not wanted:
        raise ValueError("suffixes is empty; pass None to read every file present")
    check_files(directory, wanted)
    return wanted


def _resolve_protocol(protocol: str | None, max_transitions: int | None) -> tuple[str, int | None]:
    """The protocol's name and sample size, defaults filled in and checked."""
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
    return protocol, max_transitions


# --------------------------------------------------------------------------- pass 2
def read_rows(
    directory: Path,
    files: list[FilePlan],
    starts: np.ndarray,
    ends: np.ndarray,
    offsets: np.ndarray,
    workers: int,
    chunk_bytes: int,
    desc: str,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Observations, actions and rewards of the selected episodes (kept-row ranges [starts, ends)), concatenated."""
    total = int(offsets[-1])
    out = {
        "observations": np.empty((total, *FRAME_SHAPE), np.uint8),
        "actions": np.empty(total, np.int64),
        "rewards": np.empty(total, np.float32),
    }
    needed = [f for f in files if np.any((np.minimum(ends, f.real_base + f.real_count) - np.maximum(starts, f.real_base)) > 0)]
    bar = progress_bar(total=len(needed), desc=desc, unit="file", disable=not progress)
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
    return out


def _read_file_rows(
    directory: Path,
    f: FilePlan,
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
    stream_select(directory / file_name("observation", f.suffix), C, slots, out["observations"], out_rows, chunk_bytes)


def _validate_rows(directory: Path, f: FilePlan, actions: np.ndarray, rewards: np.ndarray, slots: np.ndarray) -> None:
    """What DQN-Replay data can get wrong in the rows kept: a non-finite or overflowing reward, a negative action id."""
    check_finite(rewards, source=directory / file_name("reward", f.suffix), key="reward", rows=slots)
    check_magnitude(rewards, source=directory / file_name("reward", f.suffix), key="reward", rows=slots)
    if len(actions) and actions.min() < 0:
        i = int(np.argmax(actions < 0))
        raise ValueError(
            f"{directory / file_name('action', f.suffix)}: 'action' is {int(actions[i])} at row {int(slots[i])}; "
            f"action ids are >= 0"
        )


def _validate_padding(directory: Path, f: FilePlan, actions: np.ndarray, rewards: np.ndarray) -> None:
    """Padding rows must hold action 0 and reward 0; anything else means the slot order is wrong."""
    pad_slots = f.slots()[f.pad_rows]
    if np.any(actions[pad_slots] != 0) or np.any(rewards[pad_slots] != 0):
        bad = int(pad_slots[np.flatnonzero((actions[pad_slots] != 0) | (rewards[pad_slots] != 0))[0]])
        raise ValueError(
            f"{directory / file_name('action', f.suffix)}: slot {bad} should be a padding row (action 0, reward 0); "
            f"the file's slot order does not match DQN-Replay's"
        )

"""Which episodes a sample takes: every one, whole episodes at random, or the DT paper's protocol."""

from __future__ import annotations

import sys

import numpy as np

from fh_rl.datasets.dqn_replay.plan import FilePlan

PROTOCOLS = ("all", "episodes", "paper")


def select_episodes(
    files: list[FilePlan],
    starts: np.ndarray,
    ends: np.ndarray,
    terminated: np.ndarray,
    protocol: str,
    max_transitions: int | None,
    seed: int,
    num_buffers: int,
    trajectories_per_buffer: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The episodes ``protocol`` samples from the episode table: (starts, ends, ended), each (E',).

    ``ended`` marks episodes that end at a terminal row (game over or the step cap).
    """
    if protocol == "episodes":
        assert max_transitions is not None
        starts, ends, terminated, _ = select_random(starts, ends, terminated, max_transitions, seed)
    elif protocol == "paper":
        assert max_transitions is not None
        pick = select_paper(files, starts, ends, terminated, max_transitions, num_buffers, trajectories_per_buffer, seed)
        starts, ends, terminated = starts[pick], ends[pick], terminated[pick]
    return starts, ends, terminated


def select_random(
    starts: np.ndarray, ends: np.ndarray, terminated: np.ndarray, max_transitions: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Whole episodes in a random order (``seed``) until ``max_transitions``, the last one cut to fit.

    Returns the chosen (starts, ends, terminated, cut), in run order; the cut episode is not terminated.
    """
    order = np.random.default_rng(seed).permutation(len(starts))
    lengths = (ends - starts)[order]
    cum = np.cumsum(lengths)
    n = int(np.searchsorted(cum, max_transitions) + 1) if cum[-1] > max_transitions else len(order)
    if cum[-1] < max_transitions:
        print(f"note: dataset.max_transitions asks for {max_transitions:,} transitions; the run holds {int(cum[-1]):,}: "
              f"using all of them", file=sys.stderr)
    chosen = np.sort(order[:n])
    s, e, term = starts[chosen], ends[chosen].copy(), terminated[chosen].copy()
    cut = np.zeros(len(chosen), bool)
    excess = int((e - s).sum()) - max_transitions
    if excess > 0:  # cut the last-drawn episode so the sample has exactly max_transitions
        j = int(np.flatnonzero(chosen == order[n - 1])[0])
        e[j] -= excess
        term[j], cut[j] = False, True
    return s, e, term, cut


def select_paper(
    files: list[FilePlan],
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
    if total < num_steps:  # a local or partial dataset: one line, not a warning with a source path
        print(f"note: dataset.max_transitions asks for {num_steps:,} transitions; the buffers hold {total:,} in "
              f"complete episodes: using those", file=sys.stderr)
    if not chosen:
        raise ValueError("paper protocol: the chosen buffers contain no complete episode")
    return np.sort(np.concatenate(chosen))

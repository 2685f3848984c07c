"""Vectorised batch samplers over a :class:`TrajectoryDataset`.

Both samplers draw with a ``numpy.random.Generator`` seeded by ``seed`` and
expose its state through ``state_dict()`` / ``load_state_dict()``, so a resumed
training run draws exactly the same batches as an uninterrupted one.

Anchoring: every transition of the dataset is equally likely to be the *last*
step of a window (and to be the sampled step of a transition batch). Windows
whose last step is fewer than K steps into its episode are left-padded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fh_rl.datasets.batch import TransitionBatch, WindowBatch
from fh_rl.datasets.trajectory import TrajectoryDataset


def _check_common(dataset: Any, batch_size: int) -> None:
    if not isinstance(dataset, TrajectoryDataset):
        raise TypeError(f"expected a TrajectoryDataset, got {type(dataset).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def _stacked_frames(dataset: TrajectoryDataset, last: np.ndarray, count: int) -> np.ndarray:
    """Frames ``last-count+1 .. last`` of each row's own episode, zeros before its start.

    ``last``: (B,) flat indices. Returns (B, count, H, W) uint8, oldest first.
    """
    idx = last[:, None] - (count - 1) + np.arange(count)  # (B, count) flat frame indices
    valid = idx >= dataset.episode_start[last][:, None]  # (B, count), False before the episode's start
    frames = dataset.observations[np.where(valid, idx, 0)]  # (B, count, H, W)
    frames[~valid] = 0
    return frames


def _check_shard(shard: tuple[int, int], batch_size: int) -> slice:
    """The rows of a global batch that rank ``shard[0]`` of ``shard[1]`` keeps (contiguous, disjoint)."""
    try:
        rank, world = (int(x) for x in shard)
    except (TypeError, ValueError):
        raise TypeError(f"shard must be a (rank, world_size) pair of ints, got {shard!r}") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard {shard!r} must satisfy 0 <= rank < world_size")
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} (the global batch) must be divisible by world_size {world}")
    b = batch_size // world
    return slice(rank * b, (rank + 1) * b)


class _RngState:
    rng: np.random.Generator

    def state_dict(self) -> dict[str, Any]:
        """The generator state (a plain dict; safe to store in a checkpoint)."""
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or "bit_generator" not in state:
            raise ValueError("sampler state must be a dict from state_dict() with key 'bit_generator'")
        self.rng.bit_generator.state = state["bit_generator"]


class WindowSampler(_RngState):
    """Decision Transformer windows of K consecutive steps of one episode.

    Each transition is equally likely to be a window's last step; positions
    before the episode's start are padding (``mask`` False, zeros). For frame
    datasets a window carries its ``K + 3`` unique frames (``frame_stack`` 4),
    see :class:`~fh_rl.datasets.batch.WindowBatch`.

    Args:
        dataset: the trajectories.
        context_len: K, steps per window.
        batch_size: B, windows per batch.
        seed: seed of the sampler's generator.
        shard: ``(rank, world_size)`` for data-parallel training: every rank
            draws the same global batch of ``batch_size`` windows and returns
            its own contiguous ``batch_size / world_size`` of them, so the
            ranks' shares are disjoint and together are the 1-process batch.
    """

    def __init__(
        self, dataset: TrajectoryDataset, context_len: int, batch_size: int, seed: int = 0,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        _check_common(dataset, batch_size)
        self.rows = _check_shard(shard, batch_size)
        if not isinstance(context_len, int) or context_len < 1:
            raise ValueError(f"context_len must be a positive int, got {context_len!r}")
        self.dataset = dataset
        self.context_len = context_len
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def sample(self) -> WindowBatch:
        ds, K, B = self.dataset, self.context_len, self.batch_size
        last = self.rng.integers(0, ds.num_transitions, size=B)[self.rows]  # (B,) -> (B/P,) each window's last step
        idx = last[:, None] - (K - 1) + np.arange(K)  # (B, K) flat step indices
        mask = idx >= ds.episode_start[last][:, None]  # (B, K)
        safe = np.where(mask, idx, 0)  # (B, K) padding points at row 0, zeroed below
        if ds.is_frames:
            states = _stacked_frames(ds, last, K + ds.frame_stack - 1)  # (B, K+3, H, W) uint8
        else:
            states = ds.observations[safe]  # (B, K, S)
            states[~mask] = 0
        actions = ds.actions[safe]  # (B, K) or (B, K, A)
        actions[~mask] = 0
        rtg = np.where(mask, ds.returns_to_go[safe], np.float32(0))  # (B, K)
        timesteps = np.where(mask, ds.timesteps[safe], 0)  # (B, K)
        return WindowBatch(
            states=torch.from_numpy(states),
            actions=torch.from_numpy(actions),
            returns_to_go=torch.from_numpy(rtg.astype(np.float32, copy=False)),
            timesteps=torch.from_numpy(timesteps.astype(np.int64, copy=False)),
            mask=torch.from_numpy(mask),
        )


class TransitionSampler(_RngState):
    """Single steps for behavior cloning, uniform over transitions.

    Frame datasets return ``(B, frame_stack, H, W)`` uint8 stacks (newest last,
    zeros before the episode's start); vector datasets ``(B, S)`` float32.

    Args:
        dataset: the trajectories.
        batch_size: B, transitions per batch.
        seed: seed of the sampler's generator.
        shard: ``(rank, world_size)``: keep this rank's share of the global batch (see :class:`WindowSampler`).
    """

    def __init__(self, dataset: TrajectoryDataset, batch_size: int, seed: int = 0, shard: tuple[int, int] = (0, 1)) -> None:
        _check_common(dataset, batch_size)
        self.rows = _check_shard(shard, batch_size)
        self.dataset = dataset
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def sample(self) -> TransitionBatch:
        ds = self.dataset
        rows = self.rng.integers(0, ds.num_transitions, size=self.batch_size)[self.rows]  # (B,) -> (B/P,)
        if ds.is_frames:
            states = _stacked_frames(ds, rows, ds.frame_stack)  # (B, 4, H, W)
        else:
            states = ds.observations[rows]  # (B, S)
        return TransitionBatch(states=torch.from_numpy(states), actions=torch.from_numpy(ds.actions[rows]))

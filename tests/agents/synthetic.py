"""Tiny learnable trajectories in real TrajectoryDatasets (the action is a function of the state)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from fh_rl.datasets import Episode, TrajectoryDataset
from fh_rl.envs.codecs import make_codec


def codec_for(kind: str):
    """``discrete`` / ``frames``: 6 actions; ``box``: 2 dims in [-2, 2] x [0, 1], 8 bins."""
    if kind == "box":
        return make_codec(gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)), num_bins=8)
    return make_codec(gym.spaces.Discrete(6))


def synthetic_dataset(kind: str, episodes: int = 12, length: int = 9, seed: int = 0) -> TrajectoryDataset:
    """Episodes whose action is determined by the current state: a learnable, non-trivial target."""
    rng = np.random.default_rng(seed)
    eps = []
    for _ in range(episodes):
        if kind == "frames":
            obs = rng.integers(0, 256, (length, 84, 84), dtype=np.uint8)
            signal = obs[:, :8, :8].mean((1, 2)) / 255.0  # (L,) in [0, 1]
        else:
            obs = rng.normal(size=(length, 3)).astype(np.float32)
            signal = 1 / (1 + np.exp(-2 * obs[:, 0]))
        if kind == "box":
            actions = np.stack([-2 + 4 * signal, signal], axis=1).astype(np.float32)  # (L, 2)
        else:
            actions = np.minimum((signal * 6).astype(np.int64), 5)  # (L,)
        rewards = rng.normal(size=length).astype(np.float32)
        eps.append(Episode(obs, actions, rewards, terminated=True))
    return TrajectoryDataset(eps, frame_stack=4 if kind == "frames" else 1, name=f"synthetic-{kind}")

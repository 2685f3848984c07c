"""Simple policies implementing :class:`fh_rl.envs.policy.Policy` (baselines, benchmarks, tests)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class RandomPolicy:
    """Uniformly random actions from an action space (the "random" of normalised scores).

    One generator serves all slots, so the actions an episode gets depend on
    which episodes run beside it; use it for baselines and speed, not for
    comparing worker counts.
    """

    def __init__(self, action_space: gym.Space, seed: int | None = None) -> None:
        if not isinstance(action_space, (gym.spaces.Discrete, gym.spaces.Box)):
            raise TypeError(f"RandomPolicy needs a Discrete or Box action space, got {action_space}")
        self.action_space = action_space
        self.rng = np.random.default_rng(seed)

    def begin(self, slots: np.ndarray, observations: np.ndarray) -> None:
        pass

    def act(self, slots: np.ndarray, observations: np.ndarray) -> np.ndarray:
        n = len(slots)
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            return space.start + self.rng.integers(0, space.n, size=n)
        return self.rng.uniform(space.low, space.high, size=(n, *space.shape)).astype(space.dtype)

    def observe(self, slots: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        pass

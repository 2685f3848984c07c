"""The interface between rollout workers and whatever chooses actions, and a random baseline.

``fh_rl.envs.evaluate`` runs many episodes at once and calls the policy once
per environment step with the batch of live observations. Each live episode
occupies a *slot* (an integer id, stable for the episode's lifetime and
reused after it ends), so a policy can keep per-episode state such as a
Decision Transformer's context, its returns-to-go and timesteps.

Call order for one slot: ``begin([slot], ...)`` when an episode starts, then
repeatedly ``act`` (with this slot among others) and ``observe`` with the
reward its action earned, until the episode ends; then the slot may be begun
again for a new episode.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np


@runtime_checkable
class Policy(Protocol):
    def begin(self, slots: np.ndarray, observations: np.ndarray) -> None:
        """New episodes start in ``slots`` (int array (n,)); ``observations``
        (n, ...) are their first observations. Reset per-episode state."""

    def act(self, slots: np.ndarray, observations: np.ndarray) -> np.ndarray:
        """Return environment actions for the live episodes in ``slots``
        ((n,) int for discrete, (n, A) float for Box spaces). ``observations``
        (n, ...) are their current observations."""

    def observe(self, slots: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        """The actions last returned for ``slots`` earned raw environment
        ``rewards`` (n,) float; ``dones`` (n,) bool marks episodes that ended
        (terminated or truncated) with that step."""


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

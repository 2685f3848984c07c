"""Dataset variants: data whose action structure a config sets, made from a base dataset.

Each is a deterministic function of the base dataset, the variant's settings and
``dataset.variant_seed``, so every run of a variant trains on the same data
(:mod:`fh_rl.build` applies them; the run's config, manifest and a study's
records name them):

- ``dataset.action_noise`` s: every recorded action relabelled as a + e,
  e ~ N(0, (s * half_range)^2) per action dimension, clipped to the bounds:
  the conditional action density becomes wide and smooth.
- ``dataset.two_modes``: a seeded half of the episodes mirrored through the
  environment's symmetry (:data:`MIRRORS`; Pendulum-v1: theta -> -theta,
  omega -> -omega, torque -> -torque). A mirrored episode is exactly an episode
  of the mirror-image policy (the behaviour policy applied to the mirrored state,
  its torque negated) from the mirrored start, and Pendulum's start
  distribution is symmetric, so the data is the behaviour policy and its
  mirror image in equal parts, with the same size and returns as the base.
- ``dataset.episode_fraction``: training on a seeded fraction of the training
  split's episodes (the held-out split is untouched).

The order is mirror, then noise (on the whole dataset, before the held-out
split, so held-out NLL is measured on the same kind of data), then the split,
then the episode fraction of the training split.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fh_rl.datasets.trajectory import TrajectoryDataset

MIRRORS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # observation (cos theta, sin theta, theta_dot) -> (cos, -sin, -theta_dot); torque -> -torque.
    # The reward (theta^2 + 0.1 theta_dot^2 + 0.001 u^2) is unchanged, so returns are too.
    "Pendulum-v1": ((1.0, -1.0, -1.0), (-1.0,)),
}
"""Environments with a known mirror symmetry: (observation signs, action signs)."""

_NOISE, _MIRROR, _FRACTION = 1, 2, 3  # one independent stream of variant_seed per variant


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def _with(dataset: TrajectoryDataset, observations: np.ndarray, actions: np.ndarray, name: str) -> TrajectoryDataset:
    return TrajectoryDataset(
        {"observations": observations, "actions": actions, "rewards": dataset.rewards, "offsets": dataset.offsets,
         "terminated": dataset.terminated, "truncated": dataset.truncated},
        frame_stack=dataset.frame_stack, name=name, source=dataset.source, reward_transform=dataset.reward_transform,
    )


def mirror_half(dataset: TrajectoryDataset, env_name: str, seed: int = 0) -> TrajectoryDataset:
    """The dataset with a seeded half of its episodes (floor(E / 2)) mirrored through ``env_name``'s symmetry."""
    if env_name not in MIRRORS:
        raise ValueError(f"dataset.two_modes needs a known mirror symmetry of the environment; {env_name!r} has none "
                         f"(known: {', '.join(MIRRORS)})")
    obs_sign, act_sign = (np.asarray(s, dtype=np.float32) for s in MIRRORS[env_name])
    if dataset.actions.ndim != 2 or dataset.observations.shape[1:] != obs_sign.shape \
            or dataset.actions.shape[1:] != act_sign.shape:
        raise ValueError(f"dataset.two_modes: {env_name}'s symmetry maps observations of shape {obs_sign.shape} and "
                         f"actions of shape {act_sign.shape}; the data has {dataset.observations.shape[1:]} and "
                         f"{dataset.actions.shape[1:]}")
    E = len(dataset)
    flip = np.zeros(E, dtype=bool)
    flip[_rng(seed, _MIRROR).permutation(E)[: E // 2]] = True
    rows = np.repeat(flip, np.diff(dataset.offsets))  # (N,) True on the mirrored episodes' steps
    obs = np.where(rows[:, None], dataset.observations * obs_sign, dataset.observations).astype(dataset.observations.dtype)
    act = np.where(rows[:, None], dataset.actions * act_sign, dataset.actions).astype(dataset.actions.dtype)
    return _with(dataset, obs, act, f"{dataset.name}+two_modes")


def add_action_noise(dataset: TrajectoryDataset, scale: float, low: np.ndarray, high: np.ndarray,
                     seed: int = 0) -> TrajectoryDataset:
    """Actions relabelled as a + e, e ~ N(0, (scale * (high - low) / 2)^2), clipped to [low, high]."""
    if dataset.actions.ndim != 2:
        raise ValueError("dataset.action_noise needs continuous (Box) actions; this dataset's actions are discrete")
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    half = (high - low) / 2
    noise = _rng(seed, _NOISE).standard_normal(dataset.actions.shape) * (scale * half)
    act = np.clip(dataset.actions.astype(np.float64) + noise, low, high).astype(dataset.actions.dtype)
    return _with(dataset, dataset.observations, act, f"{dataset.name}+noise{scale:g}")


def episode_fraction(dataset: TrajectoryDataset, fraction: float, seed: int = 0) -> TrajectoryDataset:
    """A seeded ``fraction`` of the episodes (round(fraction * E), at least 1), in their original order."""
    if fraction >= 1.0:
        return dataset
    E = len(dataset)
    n = max(1, int(round(fraction * E)))
    ids = np.sort(_rng(seed, _FRACTION).choice(E, size=n, replace=False))
    return dataset.subset(ids, name=f"{dataset.name}:{fraction:g}")


def apply_variant(dataset: TrajectoryDataset, cfg: Any, env_name: str, action_space: Any = None) -> TrajectoryDataset:
    """The whole-dataset variants of ``cfg`` (a :class:`fh_rl.config.DatasetConfig`): mirror, then action noise.
    ``action_space`` (a Box) gives the noise scale and the clip bounds."""
    if cfg.two_modes:
        dataset = mirror_half(dataset, env_name, cfg.variant_seed)
    if cfg.action_noise > 0:
        if action_space is None or not hasattr(action_space, "low"):
            raise ValueError(f"dataset.action_noise needs a Box action space; {env_name} has {action_space}")
        dataset = add_action_noise(dataset, cfg.action_noise, action_space.low, action_space.high, cfg.variant_seed)
    return dataset


def variant_of(cfg: Any) -> dict[str, Any]:
    """The variant settings of a :class:`fh_rl.config.DatasetConfig` (what a manifest records)."""
    return {"action_noise": cfg.action_noise, "two_modes": cfg.two_modes, "episode_fraction": cfg.episode_fraction,
            "variant_seed": cfg.variant_seed, "split_seed": cfg.split_seed}

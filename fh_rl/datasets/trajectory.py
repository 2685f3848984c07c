"""Episodes and the flat trajectory store that the samplers index into.

A :class:`TrajectoryDataset` keeps every episode's steps in one set of flat
arrays (``observations``, ``actions``, ``rewards``, ...) plus episode offsets,
so samplers gather whole batches with one fancy-indexing call instead of
looping over episodes. Frame datasets (Atari) store each 84x84 frame once;
stacks of ``frame_stack`` frames are built by index when sampling.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

REWARD_TRANSFORMS = ("none", "clip")
"""How a dataset's stored rewards relate to the environment's: as given, or sign-clipped to [-1, 1]."""


def transform_reward(rewards, transform: str):
    """Apply a dataset's reward transform to raw rewards (``clip``: to [-1, 1], as DQN-Replay stores them)."""
    if transform == "none":
        return rewards
    if transform == "clip":
        return np.clip(rewards, -1.0, 1.0)
    raise ValueError(f"unknown reward transform {transform!r}; expected one of {REWARD_TRANSFORMS}")


@dataclass
class Episode:
    """One episode.

    Fields:
        observations: ``(T, S)`` float32 vectors, or ``(T, H, W)`` uint8 single
            frames for frame datasets (stacking happens when sampling).
        actions: ``(T,)`` int64 discrete or ``(T, A)`` float32 continuous actions.
        rewards: ``(T,)`` float32 rewards (as stored; DQN-Replay's are clipped).
        terminated: the episode ended in a terminal state (game over).
        truncated: the episode was cut (time limit, end of the data, or a gap in
            the files); its true end is not in the data.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool = False
    truncated: bool = False

    def __len__(self) -> int:
        return int(self.rewards.shape[0])


def _returns_to_go(rewards: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-episode reverse cumulative sum of ``rewards`` (flat), vectorised.

    rtg[i] = sum of rewards from i to its episode's end = (total cumsum at the
    episode's end) - (cumsum before i). Computed in float64 to keep long
    episodes exact, returned as float32.
    """
    csum = np.cumsum(rewards, dtype=np.float64)  # (N,)
    ends = offsets[1:] - 1  # last flat index of every episode
    lengths = np.diff(offsets)
    episode_total = np.repeat(csum[ends] if len(ends) else np.zeros(0), lengths)  # (N,)
    before = np.concatenate([[0.0], csum[:-1]])  # cumsum strictly before i
    return (episode_total - before).astype(np.float32)


class TrajectoryDataset:
    """Episodes stored as flat arrays plus episode offsets.

    Args:
        episodes: the episodes, in order. Either a sequence of :class:`Episode`
            or a dict of flat arrays with keys ``observations``, ``actions``,
            ``rewards``, ``offsets`` (E+1 int64), ``terminated`` (E bool),
            ``truncated`` (E bool), as produced by the loaders (lets a loader
            hand over memory-mapped arrays without copying).
        frame_stack: 1 for vector states; 4 for Atari frames (observations are
            single ``(H, W)`` uint8 frames, a state stacks frames i-3..i of the
            same episode, zeros before its start, newest last).
        name: a human-readable name (used in logs and run manifests).
        source: free-form description of where the data came from (paths,
            sampling parameters), recorded in run manifests.
        reward_transform: how the stored rewards relate to the environment's
            (:data:`REWARD_TRANSFORMS`): ``none``, or ``clip`` when the loader
            knows they were sign-clipped (DQN-Replay). Agents trained on the
            data apply the same transform to live rewards at evaluation.
    """

    def __init__(
        self,
        episodes: Sequence[Episode] | dict[str, np.ndarray],
        *,
        frame_stack: int = 1,
        name: str = "",
        source: Any = None,
        reward_transform: str = "none",
    ) -> None:
        if not isinstance(frame_stack, int) or frame_stack < 1:
            raise ValueError(f"frame_stack must be a positive int, got {frame_stack!r}")
        if reward_transform not in REWARD_TRANSFORMS:
            raise ValueError(f"reward_transform must be one of {REWARD_TRANSFORMS}, got {reward_transform!r}")
        self.reward_transform = reward_transform
        self.frame_stack = frame_stack
        self.name = name
        self.source = source
        if isinstance(episodes, dict):
            flat = episodes
        else:
            flat = self._concatenate(list(episodes))
        self.observations: np.ndarray = flat["observations"]
        self.actions: np.ndarray = flat["actions"]
        self.rewards: np.ndarray = np.asarray(flat["rewards"], dtype=np.float32)
        self.offsets: np.ndarray = np.asarray(flat["offsets"], dtype=np.int64)
        self.terminated: np.ndarray = np.asarray(flat["terminated"], dtype=bool)
        self.truncated: np.ndarray = np.asarray(flat["truncated"], dtype=bool)
        self._validate()
        lengths = np.diff(self.offsets)
        # Per-step episode index and episode start, for vectorised sampling.
        self.episode_index = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)  # (N,)
        self.episode_start = self.offsets[:-1][self.episode_index]  # (N,)
        self.timesteps = np.arange(self.num_transitions, dtype=np.int64) - self.episode_start  # (N,)
        self.returns_to_go = _returns_to_go(self.rewards, self.offsets)  # (N,) float32
        self._hash: str | None = None
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None

    # ------------------------------------------------------------------ build
    @staticmethod
    def _concatenate(episodes: list[Episode]) -> dict[str, np.ndarray]:
        if not episodes:
            raise ValueError("TrajectoryDataset needs at least one episode, got none")
        for i, ep in enumerate(episodes):
            n = len(ep.rewards)
            if n == 0:
                raise ValueError(f"episode {i} is empty; drop empty episodes before building a dataset")
            if len(ep.observations) != n or len(ep.actions) != n:
                raise ValueError(
                    f"episode {i}: observations ({len(ep.observations)}), actions ({len(ep.actions)}) "
                    f"and rewards ({n}) must have the same length"
                )
        lengths = np.array([len(ep.rewards) for ep in episodes], dtype=np.int64)
        return {
            "observations": np.concatenate([ep.observations for ep in episodes]),
            "actions": np.concatenate([ep.actions for ep in episodes]),
            "rewards": np.concatenate([ep.rewards for ep in episodes]).astype(np.float32),
            "offsets": np.concatenate([[0], np.cumsum(lengths)]),
            "terminated": np.array([bool(ep.terminated) for ep in episodes]),
            "truncated": np.array([bool(ep.truncated) for ep in episodes]),
        }

    def _validate(self) -> None:
        n = self.num_transitions
        if self.offsets.ndim != 1 or len(self.offsets) < 2 or self.offsets[0] != 0 or np.any(np.diff(self.offsets) <= 0):
            raise ValueError("offsets must start at 0 and increase strictly (no empty episodes)")
        for key in ("observations", "actions", "rewards"):
            if len(getattr(self, key)) != n:
                raise ValueError(f"{key} has {len(getattr(self, key))} rows, expected {n} (offsets[-1])")
        e = len(self.offsets) - 1
        if self.terminated.shape != (e,) or self.truncated.shape != (e,):
            raise ValueError(f"terminated/truncated must have shape ({e},), one flag per episode")
        if self.frame_stack > 1 and (self.observations.ndim != 3 or self.observations.dtype != np.uint8):
            raise ValueError(
                f"frame_stack={self.frame_stack} expects single uint8 frames (N, H, W), "
                f"got {self.observations.dtype} {self.observations.shape}"
            )
        if self.actions.ndim == 1:
            if not np.issubdtype(self.actions.dtype, np.integer):
                raise TypeError(f"1-D actions must be integer (discrete), got {self.actions.dtype}")
            if self.actions.dtype != np.int64:
                self.actions = self.actions.astype(np.int64)
        elif self.actions.ndim == 2:
            if self.actions.dtype != np.float32:
                self.actions = self.actions.astype(np.float32)
        else:
            raise ValueError(f"actions must be (N,) discrete or (N, A) continuous, got shape {self.actions.shape}")
        if self.frame_stack == 1 and self.observations.ndim == 2 and self.observations.dtype != np.float32:
            self.observations = self.observations.astype(np.float32)

    # ------------------------------------------------------------- accessors
    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_transitions(self) -> int:
        return int(self.offsets[-1])

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode, float64 ``(E,)``."""
        csum = np.concatenate([[0.0], np.cumsum(self.rewards, dtype=np.float64)])
        return csum[self.offsets[1:]] - csum[self.offsets[:-1]]

    def episode(self, i: int) -> Episode:
        """Episode ``i`` as views into the flat arrays (no copy)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"episode index {i} out of range for {len(self)} episodes")
        i %= len(self)
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return Episode(
            self.observations[lo:hi],
            self.actions[lo:hi],
            self.rewards[lo:hi],
            bool(self.terminated[i]),
            bool(self.truncated[i]),
        )

    def episodes(self) -> list[Episode]:
        """All episodes as views into the flat arrays."""
        return [self.episode(i) for i in range(len(self))]

    def stats(self) -> dict[str, float | int]:
        r = self.episode_returns
        return {
            "episodes": len(self),
            "transitions": self.num_transitions,
            "return_min": float(r.min()),
            "return_mean": float(r.mean()),
            "return_max": float(r.max()),
        }

    @property
    def is_frames(self) -> bool:
        return self.frame_stack > 1

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Shape of one state: ``(frame_stack, H, W)`` for frames, ``(S,)`` for vectors."""
        if self.is_frames:
            return (self.frame_stack, *self.observations.shape[1:])
        return tuple(self.observations.shape[1:])

    @property
    def is_discrete(self) -> bool:
        return self.actions.ndim == 1

    @property
    def action_dims(self) -> int:
        """A: 1 for a discrete action, the Box dimension for continuous actions."""
        return 1 if self.is_discrete else int(self.actions.shape[1])

    def _vector_only(self, what: str) -> None:
        if self.is_frames or self.observations.ndim != 2:
            raise ValueError(f"{what} is defined for vector states (N, S); this dataset has {self.observations.shape}")

    def state_mean(self) -> np.ndarray:
        """Per-feature mean of vector states, float32 ``(S,)``."""
        self._vector_only("state_mean")
        if self._mean is None:
            self._mean = self.observations.mean(axis=0, dtype=np.float64).astype(np.float32)
        return self._mean

    def state_std(self, eps: float = 1e-6) -> np.ndarray:
        """Per-feature standard deviation of vector states (floored at ``eps``), float32 ``(S,)``."""
        self._vector_only("state_std")
        if self._std is None:
            self._std = self.observations.std(axis=0, dtype=np.float64).astype(np.float32)
        return np.maximum(self._std, eps)

    # ------------------------------------------------------------- subsets
    def subset(self, episode_ids: Sequence[int] | np.ndarray, name: str | None = None) -> "TrajectoryDataset":
        """A new dataset with the given episodes (copied), in the given order."""
        ids = np.asarray(episode_ids, dtype=np.int64)
        if ids.size == 0:
            raise ValueError("subset needs at least one episode")
        lengths = np.diff(self.offsets)[ids]
        # Flat row indices of the chosen episodes: start of each + arange within.
        starts = np.repeat(self.offsets[ids], lengths)
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows = starts + within  # (N_subset,)
        return TrajectoryDataset(
            {
                "observations": self.observations[rows],
                "actions": self.actions[rows],
                "rewards": self.rewards[rows],
                "offsets": np.concatenate([[0], np.cumsum(lengths)]),
                "terminated": self.terminated[ids],
                "truncated": self.truncated[ids],
            },
            frame_stack=self.frame_stack,
            name=self.name if name is None else name,
            source=self.source,
            reward_transform=self.reward_transform,
        )

    def split(self, val_fraction: float, seed: int = 0) -> tuple["TrajectoryDataset", "TrajectoryDataset"]:
        """Split by whole episodes into (train, val); val gets ``round(val_fraction * E)`` episodes (>= 1)."""
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if len(self) < 2:
            raise ValueError(f"cannot split a dataset of {len(self)} episode(s); need at least 2")
        n_val = min(len(self) - 1, max(1, int(round(val_fraction * len(self)))))
        perm = np.random.default_rng(seed).permutation(len(self))
        val_ids, train_ids = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        return self.subset(train_ids, name=f"{self.name}:train"), self.subset(val_ids, name=f"{self.name}:val")

    def content_hash(self) -> str:
        """A stable hex digest of the data (arrays, episode structure, frame_stack)."""
        if self._hash is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(f"fh_rl-trajectories-v1 frame_stack={self.frame_stack}".encode())
            for key in ("observations", "actions", "rewards", "offsets", "terminated", "truncated"):
                arr = getattr(self, key)
                h.update(f"{key}:{arr.dtype.str}:{arr.shape}".encode())
                flat = arr.reshape(len(arr), -1) if arr.ndim > 1 else arr
                step = max(1, (8 << 20) // max(1, flat[:1].nbytes))  # hash ~8 MB at a time
                for lo in range(0, len(flat), step):
                    h.update(np.ascontiguousarray(flat[lo : lo + step]).tobytes())
            self._hash = h.hexdigest()
        return self._hash

    def __repr__(self) -> str:
        return (
            f"TrajectoryDataset(name={self.name!r}, episodes={len(self)}, transitions={self.num_transitions}, "
            f"state_shape={self.state_shape}, discrete={self.is_discrete})"
        )

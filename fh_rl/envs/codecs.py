"""Action codecs: environment actions <-> bins, at the model boundary.

Datasets keep environment action ids / values; a codec converts whole batches
(numpy arrays or torch tensors, any leading shape) to the bins a head predicts
and back. Letters: A action dimensions (1 for a discrete action), K bins.

- :class:`DiscreteCodec`: a permutation of ``Discrete(K)`` so that neighbouring
  bins are similar actions (``ordering="joystick"``: the paper's direction
  order, :data:`JOYSTICK_ORDER`), or the identity.
- :class:`BoxCodec`: each of the A dimensions of a Box quantised into K equal
  bins over ``[low, high]``; decoding gives the bin centre, or a uniform sample
  within the bin. For heads that score continuous actions it also scales
  actions to [-1, 1] and back (``to_unit`` / ``from_unit``), and gives the
  bins' edges on that scale (``unit_bin_edges``) for comparing heads in bins.

``codec.config()`` is a JSON-serialisable dict saved in checkpoints;
``codec_from_config(config)`` rebuilds the codec without an environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:  # the codec runs in rollout workers, which do not import torch
    import torch

JOYSTICK_ORDER = (
    "NOOP", "LEFT", "UPLEFT", "UP", "UPRIGHT", "RIGHT", "DOWNRIGHT", "DOWN", "DOWNLEFT",
    "LEFTFIRE", "UPLEFTFIRE", "UPFIRE", "UPRIGHTFIRE", "RIGHTFIRE", "DOWNRIGHTFIRE", "DOWNFIRE",
    "DOWNLEFTFIRE",
    "FIRE",
)  # fmt: skip
"""The paper's order of the 18 ALE joystick actions: directions going round,
then the same eight with FIRE, then FIRE."""

DEFAULT_BOX_BINS = 64
"""Bins per dimension when ``make_codec`` is given a Box space and no ``num_bins``."""


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def joystick_order(action_meanings: Sequence[str]) -> list[int]:
    """Environment action ids in the paper's joystick order, for any action set.

    ``action_meanings[i]`` is the meaning of env action i (ALE's
    ``get_action_meanings()``); the result lists env action ids sorted by the
    position of their meaning in :data:`JOYSTICK_ORDER`.
    """
    rank = {m: i for i, m in enumerate(JOYSTICK_ORDER)}
    unknown = [m for m in action_meanings if m not in rank]
    if unknown:
        raise ValueError(
            f"action meanings {unknown} are not ALE joystick actions; the joystick ordering "
            f"knows {list(JOYSTICK_ORDER)}: use ordering='identity' for this action set"
        )
    if len(set(action_meanings)) != len(action_meanings):
        raise ValueError(f"action meanings repeat: {list(action_meanings)}")
    return sorted(range(len(action_meanings)), key=lambda i: rank[action_meanings[i]])


class ActionCodec:
    """Base class. ``num_bins`` (K) bins per dimension, ``action_dims`` (A) dimensions.

    ``continuous``: the actions lie on a scale (a Box), so ``to_unit``,
    ``from_unit`` and ``unit_bin_edges`` exist; False for discrete actions.
    """

    num_bins: int
    action_dims: int
    continuous: bool = False
    _torch_tables: dict[Any, tuple]  # device -> _numpy_tables() as tensors

    def encode(self, env_actions):
        raise NotImplementedError

    def decode(self, bins, rng=None, within_bin=None):
        raise NotImplementedError

    def describe(self) -> str:
        """The action space in words, for messages (``Discrete(6)``, ``Box(A=1)``)."""
        raise NotImplementedError

    def _no_scale(self):
        raise ValueError(
            f"{self.describe()} actions have no continuous scale: heads that score continuous actions "
            f"(mse, gaussian) need a Box action space; use a head that scores bins"
        )

    def to_unit(self, env_actions):
        self._no_scale()

    def from_unit(self, unit_actions):
        self._no_scale()

    def unit_bin_edges(self):
        """The K + 1 bin edges on the [-1, 1] scale of ``to_unit`` (None: discrete actions have no scale)."""
        return None

    def config(self) -> dict:
        raise NotImplementedError

    def _numpy_tables(self) -> tuple[np.ndarray, ...]:
        """The lookup arrays ``encode`` and ``decode`` use."""
        raise NotImplementedError

    def _tables(self, like):
        """:meth:`_numpy_tables`, as tensors on ``like``'s device (built once per device) when ``like`` is one."""
        if not _is_torch(like):
            return self._numpy_tables()
        import torch

        key = like.device
        if key not in self._torch_tables:
            self._torch_tables[key] = tuple(torch.as_tensor(t, device=like.device) for t in self._numpy_tables())
        return self._torch_tables[key]

    def _check_bins(self, bins):
        """Validate (..., A) integer bins; returns them unchanged."""
        if bins.ndim < 1 or bins.shape[-1] != self.action_dims:
            raise ValueError(
                f"bins must have shape (..., A) with A = {self.action_dims}, got {tuple(bins.shape)}"
            )
        if bins.numel() if _is_torch(bins) else bins.size:
            lo, hi = int(bins.min()), int(bins.max())
            if lo < 0 or hi >= self.num_bins:
                raise ValueError(f"bins must lie in [0, {self.num_bins - 1}], found values in [{lo}, {hi}]")
        return bins


class DiscreteCodec(ActionCodec):
    """Bin b is environment action ``order[b]``.

    Args:
        order: a permutation of ``range(K)``.
        ordering: the name of the ordering ("identity", "joystick"), for the config.
        action_meanings: optional meanings of env actions, kept in the config.
    """

    def __init__(self, order: Sequence[int], ordering: str = "custom", action_meanings: Sequence[str] | None = None):
        order = np.asarray(order, dtype=np.int64)
        if order.ndim != 1 or sorted(order.tolist()) != list(range(len(order))):
            raise ValueError(f"order must be a permutation of range(K), got {order.tolist()}")
        self.num_bins = len(order)
        self.action_dims = 1
        self.ordering = ordering
        self.action_meanings = list(action_meanings) if action_meanings is not None else None
        self.order = order  # (K,) bin -> env action
        self.inverse = np.argsort(order)  # (K,) env action -> bin
        self._torch_tables: dict[Any, tuple] = {}

    def _numpy_tables(self) -> tuple[np.ndarray, ...]:
        return self.order, self.inverse

    def encode(self, env_actions):
        """Env actions (...) ints -> bins (..., 1) int64 (numpy in, numpy out; torch in, torch out)."""
        torch_in = _is_torch(env_actions)
        if not torch_in:
            env_actions = np.asarray(env_actions)
        integer = (
            not (env_actions.dtype.is_floating_point or env_actions.dtype.is_complex)
            if torch_in
            else np.issubdtype(env_actions.dtype, np.integer)
        )
        if not integer:
            raise TypeError(f"discrete actions must be integers, got dtype {env_actions.dtype}")
        if (env_actions.numel() if torch_in else env_actions.size):
            lo, hi = int(env_actions.min()), int(env_actions.max())
            if lo < 0 or hi >= self.num_bins:
                raise ValueError(f"discrete actions must lie in [0, {self.num_bins - 1}], found [{lo}, {hi}]")
        _, inverse = self._tables(env_actions)
        return inverse[env_actions.long() if torch_in else env_actions.astype(np.int64)][..., None]

    def decode(self, bins, rng=None, within_bin=None):
        """Bins (..., 1) -> env actions (...) int64 (``rng`` and ``within_bin`` do not apply)."""
        torch_in = _is_torch(bins)
        bins = self._check_bins(bins if torch_in else np.asarray(bins))
        order, _ = self._tables(bins)
        return order[bins[..., 0].long() if torch_in else bins[..., 0].astype(np.int64)]

    def describe(self) -> str:
        return f"Discrete({self.num_bins})"

    def config(self) -> dict:
        return {
            "type": "discrete",
            "order": self.order.tolist(),
            "ordering": self.ordering,
            "action_meanings": self.action_meanings,
        }

    def __repr__(self) -> str:
        return f"DiscreteCodec(K={self.num_bins}, ordering={self.ordering!r})"


class BoxCodec(ActionCodec):
    """Each dimension of a Box quantised into K equal bins over [low, high].

    With ``margin_bins`` = m > 0 the head sees K + 2m bins: m bins of the same
    width on each side beyond the bounds, never a target, decoding to the
    nearest bound's bin. The Fourier head's density is periodic on [-1, 1]
    (p(-1) = p(1)), so without a margin a peak at one bound (a saturated
    torque) also lifts the bins at the other bound; the margin keeps the two
    extremes apart.

    Args:
        low, high: (A,) finite bounds with low < high.
        num_bins: K, bins over [low, high].
        sample_within_bin: decode to a uniform sample within the bin (when an
            ``rng`` is given to ``decode``) instead of the bin centre.
        margin_bins: m, extra bins beyond each bound (``num_bins`` then reports K + 2m).
    """

    continuous = True

    def __init__(self, low, high, num_bins: int, sample_within_bin: bool = False, margin_bins: int = 0):
        low = np.asarray(low, dtype=np.float64).reshape(-1)
        high = np.asarray(high, dtype=np.float64).reshape(-1)
        if low.shape != high.shape or low.size == 0:
            raise ValueError(f"low and high must have the same non-empty shape, got {low.shape} and {high.shape}")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(
                f"Box action bounds must be finite to quantise them, got low={low.tolist()} high={high.tolist()}; "
                f"wrap the env in gymnasium.wrappers.RescaleAction or ClipAction first"
            )
        if np.any(high <= low):
            raise ValueError(f"Box action bounds need low < high, got low={low.tolist()} high={high.tolist()}")
        if not isinstance(num_bins, (int, np.integer)) or num_bins < 2:
            raise ValueError(f"num_bins must be an int >= 2, got {num_bins!r}")
        if not isinstance(margin_bins, (int, np.integer)) or margin_bins < 0:
            raise ValueError(f"margin_bins must be an int >= 0, got {margin_bins!r}")
        self.action_bins = int(num_bins)  # K, over [low, high]
        self.margin_bins = int(margin_bins)
        self.num_bins = self.action_bins + 2 * self.margin_bins  # what the head sees
        self.action_dims = low.size
        self.low = low
        self.high = high
        self.width = (high - low) / self.action_bins  # (A,)
        self.sample_within_bin = bool(sample_within_bin)
        self._torch_tables: dict[Any, tuple] = {}

    def _numpy_tables(self) -> tuple[np.ndarray, ...]:
        return self.low, self.width

    def encode(self, env_actions):
        """Env actions (..., A) -> bins (..., A) int64; values outside [low, high] are clipped to the end bins
        (the training data is checked against the bounds when it is loaded); NaN/inf is a ValueError."""
        torch_in = _is_torch(env_actions)
        if not torch_in:
            env_actions = np.asarray(env_actions)
        if env_actions.ndim < 1 or env_actions.shape[-1] != self.action_dims:
            raise ValueError(
                f"Box actions must have shape (..., A) with A = {self.action_dims}, got {tuple(env_actions.shape)}"
            )
        finite = bool(env_actions.isfinite().all()) if torch_in else bool(np.isfinite(env_actions).all())
        if not finite:
            raise ValueError(
                "Box actions must be finite to quantise them, got NaN or infinity; no bin stands for a "
                "non-finite action (the dataset loaders reject such rows)"
            )
        low, width = self._tables(env_actions)
        m, K = self.margin_bins, self.action_bins
        if torch_in:
            bins = ((env_actions.double() - low) / width).floor().long()
            return bins.clamp_(0, K - 1) + m
        bins = np.floor((env_actions.astype(np.float64) - low) / width).astype(np.int64)
        return np.clip(bins, 0, K - 1) + m

    def decode(self, bins, rng=None, within_bin=None):
        """Bins (..., A) -> env actions (..., A) float32: the bin centre, or a
        uniform sample within the bin when ``within_bin`` (None: the codec's
        ``sample_within_bin``) and ``rng`` (numpy Generator, or torch Generator
        for torch input) is given."""
        torch_in = _is_torch(bins)
        bins = self._check_bins(bins if torch_in else np.asarray(bins))
        low, width = self._tables(bins)
        m, K = self.margin_bins, self.action_bins
        sample = (self.sample_within_bin if within_bin is None else within_bin) and rng is not None
        if torch_in:
            import torch

            inner = (bins - m).clamp(0, K - 1)  # margin bins decode to the nearest bound's bin
            offset = torch.rand(bins.shape, generator=rng, dtype=torch.float64, device=bins.device) if sample else 0.5
            return (low + (inner.double() + offset) * width).float()
        inner = np.clip(bins - m, 0, K - 1)
        offset = rng.random(bins.shape) if sample else 0.5
        return (low + (inner + offset) * width).astype(np.float32)

    # ------------------------------------------------------------------ the [-1, 1] scale (continuous heads)

    def describe(self) -> str:
        return f"Box(A={self.action_dims})"

    def _check_actions(self, actions, what: str):
        if actions.ndim < 1 or actions.shape[-1] != self.action_dims:
            raise ValueError(f"{what} must have shape (..., A) with A = {self.action_dims}, got {tuple(actions.shape)}")

    def to_unit(self, env_actions):
        """Env actions (..., A) -> (..., A) float32 in [-1, 1] (low -> -1, high -> 1; clipped)."""
        torch_in = _is_torch(env_actions)
        if not torch_in:
            env_actions = np.asarray(env_actions)
        self._check_actions(env_actions, "Box actions")
        low, width = self._tables(env_actions)
        span = width * self.action_bins  # high - low, (A,)
        if torch_in:
            return (2.0 * (env_actions.double() - low) / span - 1.0).clamp_(-1.0, 1.0).float()
        return np.clip(2.0 * (env_actions.astype(np.float64) - low) / span - 1.0, -1.0, 1.0).astype(np.float32)

    def from_unit(self, unit_actions):
        """(..., A) values in [-1, 1] -> env actions (..., A) float32 (values outside are clipped)."""
        torch_in = _is_torch(unit_actions)
        if not torch_in:
            unit_actions = np.asarray(unit_actions)
        self._check_actions(unit_actions, "actions on the [-1, 1] scale")
        low, width = self._tables(unit_actions)
        span = width * self.action_bins
        if torch_in:
            return (low + (unit_actions.double().clamp(-1.0, 1.0) + 1.0) * 0.5 * span).float()
        return (low + (np.clip(unit_actions.astype(np.float64), -1.0, 1.0) + 1.0) * 0.5 * span).astype(np.float32)

    def unit_bin_edges(self) -> torch.Tensor:
        """(K + 2m + 1,) float64 edges of the head's bins on the [-1, 1] scale of ``to_unit``:
        the K bins over [low, high] span [-1, 1]; margin bins lie beyond. A torch tensor on the default
        device, so that a model built on the meta device (the memory preflight) allocates nothing."""
        import torch

        m, K = self.margin_bins, self.action_bins
        return -1.0 + 2.0 * (torch.arange(K + 2 * m + 1, dtype=torch.float64) - m) / K

    def config(self) -> dict:
        return {
            "type": "box",
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "num_bins": self.action_bins,
            "sample_within_bin": self.sample_within_bin,
            "margin_bins": self.margin_bins,
        }

    def __repr__(self) -> str:
        return (
            f"BoxCodec(A={self.action_dims}, K={self.action_bins}, margin_bins={self.margin_bins}, "
            f"sample_within_bin={self.sample_within_bin})"
        )


def make_codec(
    action_space: gym.Space,
    num_bins: int | None = None,
    ordering: str = "identity",
    action_meanings: Sequence[str] | None = None,
    sample_within_bin: bool = False,
    margin_bins: int = 0,
) -> ActionCodec:
    """The codec for an action space.

    Args:
        action_space: ``Discrete`` or ``Box``.
        num_bins: Box: bins per dimension (default :data:`DEFAULT_BOX_BINS`);
            Discrete: None or the number of actions.
        ordering: Discrete: "identity" or "joystick" (needs ``action_meanings``,
            e.g. ``env.unwrapped.get_action_meanings()``).
        action_meanings: meanings of the discrete env actions.
        sample_within_bin: Box: decode to a uniform sample within the bin.
        margin_bins: Box: extra never-target bins beyond each bound (see :class:`BoxCodec`).
    """
    if isinstance(action_space, gym.spaces.Discrete):
        n = int(action_space.n)
        if action_space.start != 0:
            raise ValueError(f"Discrete action spaces must start at 0, got start={action_space.start}")
        if num_bins is not None and num_bins != n:
            raise ValueError(f"num_bins={num_bins} but the Discrete space has {n} actions; leave num_bins=None")
        if action_meanings is not None and len(action_meanings) != n:
            raise ValueError(f"{len(action_meanings)} action meanings for {n} actions")
        if ordering == "identity":
            return DiscreteCodec(range(n), "identity", action_meanings)
        if ordering == "joystick":
            if action_meanings is None:
                raise ValueError("ordering='joystick' needs action_meanings (env.unwrapped.get_action_meanings())")
            return DiscreteCodec(joystick_order(action_meanings), "joystick", action_meanings)
        raise ValueError(f"unknown ordering {ordering!r}; choose 'identity' or 'joystick'")
    if isinstance(action_space, gym.spaces.Box):
        if ordering != "identity":
            raise ValueError(f"ordering={ordering!r} applies to Discrete action spaces only")
        return BoxCodec(
            action_space.low,
            action_space.high,
            DEFAULT_BOX_BINS if num_bins is None else num_bins,
            sample_within_bin,
            margin_bins,
        )
    raise TypeError(f"no action codec for {type(action_space).__name__} action spaces; expected Discrete or Box")


def codec_from_config(config: dict) -> ActionCodec:
    """Rebuild a codec from ``codec.config()``."""
    if not isinstance(config, dict) or config.get("type") not in ("discrete", "box"):
        raise ValueError(f"not an action codec config (needs type 'discrete' or 'box'): {config!r}")
    if config["type"] == "discrete":
        return DiscreteCodec(config["order"], config.get("ordering", "custom"), config.get("action_meanings"))
    return BoxCodec(
        config["low"],
        config["high"],
        config["num_bins"],
        config.get("sample_within_bin", False),
        config.get("margin_bins", 0),
    )


def make_env_codec(
    env_name: str,
    num_bins: int | None = None,
    ordering: str = "identity",
    sample_within_bin: bool = False,
) -> ActionCodec:
    """``make_codec`` for an environment by name (Atari action meanings filled in)."""
    from fh_rl.envs.make import make_env

    env = make_env(env_name)
    try:
        meanings = env.unwrapped.get_action_meanings() if hasattr(env.unwrapped, "get_action_meanings") else None
        return make_codec(env.action_space, num_bins, ordering, meanings, sample_within_bin)
    finally:
        env.close()

"""The contract every action head follows, and the head registry."""

from __future__ import annotations

import difflib
import inspect
from typing import NamedTuple

import torch
from torch import nn

from fh_rl.registry import Registry

HEADS: Registry[type["Head"]] = Registry("head", entry_point_group="fh_rl.heads")


class HeadOutput(NamedTuple):
    """What a head returns.

    log_probs: ``(..., A, K)`` log-probabilities over K bins for each of A
        action dimensions, used as they are by the loss (the negative
        log-probability of the target bin). ``exp(log_probs)`` sums to 1 over
        the K bins up to the head's floor: exactly 1 for the linear and GMM
        heads, ``1 + K * eps`` for the Fourier head, which returns
        ``log(pmf + eps)`` as the paper does. :func:`normalized_pmf` gives a
        pmf that sums to 1 for any head.
    regularization: scalar tensor to add to the training loss (zero for heads
        without a regulariser).
    """

    log_probs: torch.Tensor
    regularization: torch.Tensor


def normalized_pmf(log_probs: torch.Tensor) -> torch.Tensor:
    """``(..., K)`` log-probabilities -> float32 pmf summing to exactly 1 over the last dimension."""
    pmf = log_probs.float().exp()
    return pmf / pmf.sum(-1, keepdim=True)


class Head(nn.Module):
    """Base class: maps ``h (..., D)`` to a distribution over K bins per action dimension.

    Bins are K equal cells of [-1, 1]; ``bin_centers`` (K,) is a buffer.
    Subclasses implement ``forward(h) -> HeadOutput`` without side effects.
    """

    def __init__(self, in_features: int, num_bins: int, action_dims: int = 1) -> None:
        super().__init__()
        for label, value in (("in_features", in_features), ("num_bins", num_bins), ("action_dims", action_dims)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        if num_bins < 2:
            raise ValueError(f"num_bins must be at least 2, got {num_bins}")
        self.in_features = in_features
        self.num_bins = num_bins
        self.action_dims = action_dims
        centers = -1.0 + (2.0 * torch.arange(num_bins, dtype=torch.float64) + 1.0) / num_bins
        self.register_buffer("bin_centers", centers.float(), persistent=False)

    def _check_input(self, h: torch.Tensor) -> None:
        if h.dim() < 1 or h.shape[-1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (..., {self.in_features}), "
                f"got {tuple(h.shape)}"
            )

    @staticmethod
    def _full_precision(x: torch.Tensor) -> torch.Tensor:
        """Half-precision (autocast) activations to float32; float32/float64 unchanged."""
        return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x

    def _zero(self, h: torch.Tensor) -> torch.Tensor:
        return h.new_zeros((), dtype=torch.float32)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_bins={self.num_bins}, action_dims={self.action_dims}"


def register_head(name: str):
    """Class decorator adding a :class:`Head` subclass to the registry under ``name``."""

    return HEADS.class_decorator(name, Head, "fh_rl.heads.Head")


def available_heads() -> list[str]:
    """Names of all registered heads (including entry-point plugins)."""
    return HEADS.names()


def head_params(name: str) -> dict[str, object]:
    """The keyword parameters (with defaults) a head accepts beyond the shared ones."""
    cls = HEADS.get(name)
    sig = inspect.signature(cls.__init__)
    shared = {"self", "in_features", "num_bins", "action_dims"}
    return {
        p.name: (None if p.default is inspect.Parameter.empty else p.default)
        for p in sig.parameters.values()
        if p.name not in shared and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def build_head(name: str, in_features: int, num_bins: int, action_dims: int = 1, **params) -> Head:
    """Build the head registered as ``name``.

    Raises ValueError for an unknown head name (listing the known ones and
    the closest match) or a parameter the head does not take.
    """
    cls = HEADS.get(name)
    known = head_params(name)
    unknown = sorted(set(params) - set(known))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(known), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"head {name!r} has no parameter {unknown[0]!r}{hint}; its parameters are: "
            f"{', '.join(sorted(known)) or '(none)'}"
        )
    return cls(in_features, num_bins, action_dims, **params)

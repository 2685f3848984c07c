"""The contract every action head follows, and the head registry.

A head either scores bins or scores continuous actions (``Head.scores``):

- ``"bins"`` (quantized heads: linear, fourier, chebyshev, gmm): ``head(h)`` returns a
  :class:`HeadOutput` whose ``log_probs`` ``(..., A, K)`` is a log-pmf over K
  bins per action dimension; the action the head works with is a bin index
  (int64), made from an environment action by the action codec's ``encode``.
- ``"continuous"`` (mse, gaussian): ``head(h)`` returns a
  :class:`ContinuousOutput` (a location and, for a distribution, a scale
  before a tanh); the action is a float in [-1, 1] per dimension (the Box
  scaled to [-1, 1] by the codec's ``to_unit``). These need a Box action space.

Agents never branch on the kind: they call the same methods on every head,
and each kind implements them in its own terms:

- ``loss(out, targets)`` ``(..., A)``: the per-dimension training objective
  (``objective`` names it: ``nll`` of the bin, ``nll_density`` of the action,
  ``mse``);
- ``mode(out)`` / ``sample(out, generator)`` ``(..., A)``: the action at
  evaluation (argmax bin / tanh(mean)) or drawn from the distribution;
- ``density(h, x)`` ``(..., A, P)``: the head's continuous density on its
  [-1, 1] scale at points ``x (P,)``, for heads that have one (the hook the
  ``mode`` decoding uses; the base class returns None);
- ``bin_log_probs(out, edges)`` ``(..., A, K)``: the log-pmf over the action
  codec's bins (the quantized heads' own output; the discretised Gaussian;
  None for a point prediction), so that held-out NLL, accuracy and smoothness
  compare heads in one unit;
- ``encode_actions(codec, actions)`` / ``decode_actions(codec, x)``:
  environment actions to and from what the head scores; ``to_bins(codec, x)``
  the codec's bins of what the head scores (for accuracy).
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from fh_rl.infra.registry import Registry

HEADS: Registry[type[Head]] = Registry("head", entry_point_group="fh_rl.heads")


class HeadOutput(NamedTuple):
    """What a head that scores bins returns.

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


class ContinuousOutput(NamedTuple):
    """What a head that scores continuous actions returns (actions in [-1, 1] per dimension).

    mean: ``(..., A)`` location before the tanh; ``tanh(mean)`` is the action at evaluation.
    log_std: ``(..., A)`` log standard deviation before the tanh, or None for a point prediction.
    regularization: scalar tensor to add to the training loss.
    """

    mean: torch.Tensor
    log_std: torch.Tensor | None
    regularization: torch.Tensor


class Head(nn.Module):
    """Base class of every head, and the behaviour of heads that score bins.

    Maps ``h (..., D)`` to a distribution over K bins per action dimension.
    Bins are K equal cells of [-1, 1]; ``bin_centers`` (K,) is a buffer.
    Subclasses implement ``forward(h) -> HeadOutput`` without side effects;
    heads that score continuous actions derive from :class:`ContinuousHead`.
    """

    scores: ClassVar[str] = "bins"
    """What the head scores: ``bins`` (a log-pmf over K bins) or ``continuous`` (actions in [-1, 1])."""
    objective: ClassVar[str] = "nll"
    """The name of :meth:`loss` (TensorBoard ``train/<objective>``): ``nll`` here, the NLL of the target bin."""
    action_dtype: ClassVar[torch.dtype] = torch.int64
    """dtype of the actions the head scores (bins)."""

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

    def _set_series(self, num_frequencies: int, regularization_gamma: float, init_scale: float, eps: float) -> None:
        """Check and keep the settings every series-density head shares (``fourier``, ``chebyshev``): the degree N,
        the smoothness prior's gamma, the initial scale-down of the coefficient layer and the pmf's eps."""
        if not isinstance(num_frequencies, int) or isinstance(num_frequencies, bool) or num_frequencies < 1:
            raise ValueError(f"num_frequencies must be a positive integer, got {num_frequencies!r}")
        if regularization_gamma < 0:
            raise ValueError(f"regularization_gamma must be >= 0, got {regularization_gamma}")
        if init_scale <= 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.num_frequencies = num_frequencies
        self.regularization_gamma = float(regularization_gamma)
        self.init_scale = float(init_scale)
        self.eps = float(eps)

    def _zero(self, h: torch.Tensor) -> torch.Tensor:
        return h.new_zeros((), dtype=torch.float32)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_bins={self.num_bins}, action_dims={self.action_dims}"

    # ------------------------------------------------------------------ what agents call (bins)

    def loss(self, out: HeadOutput, targets: torch.Tensor) -> torch.Tensor:
        """Per-dimension training loss ``(..., A)``: minus the log-probability of the target bins ``(..., A)``."""
        return -out.log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    def mode(self, out: HeadOutput) -> torch.Tensor:
        """The most likely bin ``(..., A)`` int64 (the ``argmax`` decoding)."""
        return out.log_probs.argmax(dim=-1)

    def sample(self, out: HeadOutput, generator: torch.Generator | None = None) -> torch.Tensor:
        """A bin ``(..., A)`` int64 drawn from the pmf."""
        *lead, A, K = out.log_probs.shape
        probs = out.log_probs.float().exp().reshape(-1, K)  # (..., A, K) -> (rows, K); multinomial normalises
        return torch.multinomial(probs, 1, generator=generator).reshape(*lead, A)

    def density(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
        """The head's continuous density at points ``x (P,)`` of its [-1, 1] scale, ``(..., A, P)`` from hidden
        states ``h (..., D)``; any positive scale factor per row is allowed (only its shape is used).

        The hook for heads whose pmf comes from a density on [-1, 1] (``fourier``, ``gmm``, ``gaussian``): the
        ``mode`` decoding (:mod:`fh_rl.heads.decoding`) takes its maximiser on a fine grid. Heads without one
        (``linear``, ``mse``) keep this default, None, and ``mode`` is refused for them. For a head that scores
        bins, the scale is its bins' (K equal cells of [-1, 1], margin bins included).
        """
        return None

    def bin_log_probs(self, out: HeadOutput, edges: torch.Tensor | None = None) -> torch.Tensor | None:
        """Log-pmf ``(..., A, K)`` over the bins: the head's own output (its bins are the codec's bins;
        ``edges`` is for heads that score continuous actions)."""
        return out.log_probs

    def encode_actions(self, codec: Any, actions: Any) -> Any:
        """Environment actions -> the bins this head scores (``codec.encode``)."""
        return codec.encode(actions)

    def decode_actions(self, codec: Any, bins: Any, rng: Any = None) -> Any:
        """Bins -> environment actions (``codec.decode``: the bin centre, or a sample within the bin with ``rng``)."""
        return codec.decode(bins, rng=rng)

    def to_bins(self, codec: Any, bins: Any) -> Any:
        """The codec's bins ``(..., A)`` of actions this head scores: these are bins already."""
        return bins


class ContinuousHead(Head):
    """Base class of heads that score continuous actions: ``h (..., D)`` -> :class:`ContinuousOutput`.

    The actions are the Box scaled to [-1, 1] per dimension (``codec.to_unit``);
    the evaluation action is ``tanh(mean)``. ``num_bins`` is kept for
    :meth:`bin_log_probs`, whose default bins are the K equal cells of [-1, 1].
    Subclasses implement ``forward`` and :meth:`loss`, and a distribution's
    :meth:`sample` and :meth:`bin_log_probs`.
    """

    scores: ClassVar[str] = "continuous"
    action_dtype: ClassVar[torch.dtype] = torch.float32

    def __init__(self, in_features: int, num_bins: int, action_dims: int = 1) -> None:
        super().__init__(in_features, num_bins, action_dims)
        self.register_buffer("bin_edges", torch.linspace(-1.0, 1.0, num_bins + 1), persistent=False)

    def loss(self, out: ContinuousOutput, targets: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def mode(self, out: ContinuousOutput) -> torch.Tensor:
        """The action at evaluation ``(..., A)`` in [-1, 1]: ``tanh(mean)``."""
        return torch.tanh(out.mean)

    def sample(self, out: ContinuousOutput, generator: torch.Generator | None = None) -> torch.Tensor:
        """A point prediction has nothing to sample: the mode."""
        return self.mode(out)

    def mean_action(self, out: ContinuousOutput) -> torch.Tensor:
        """The mean of the action's distribution ``(..., A)`` (the ``mean`` decoding); a point prediction: itself."""
        return self.mode(out)

    def median_action(self, out: ContinuousOutput) -> torch.Tensor:
        """The median of the action's distribution ``(..., A)``: ``tanh(mean)`` (tanh is monotone)."""
        return torch.tanh(out.mean)

    def bin_log_probs(self, out: ContinuousOutput, edges: torch.Tensor | None = None) -> torch.Tensor | None:
        """None: a point prediction has no pmf."""
        return None

    def encode_actions(self, codec: Any, actions: Any) -> Any:
        """Environment actions -> values in [-1, 1] (``codec.to_unit``; needs a Box action space)."""
        return codec.to_unit(actions)

    def decode_actions(self, codec: Any, actions: Any, rng: Any = None) -> Any:
        """Values in [-1, 1] -> environment actions (``codec.from_unit``)."""
        return codec.from_unit(actions)

    def to_bins(self, codec: Any, actions: Any) -> Any:
        """The codec's bins ``(..., A)`` that values in [-1, 1] fall in."""
        return codec.encode(codec.from_unit(actions))


def register_head(name: str):
    """Class decorator adding a :class:`Head` subclass to the registry under ``name``."""

    return HEADS.class_decorator(name, Head, "fh_rl.heads.Head")


def available_heads(scores: str | None = None) -> list[str]:
    """Names of all registered heads (including entry-point plugins); ``scores="bins"`` or
    ``"continuous"`` keeps the heads of that kind."""
    if scores not in (None, "bins", "continuous"):
        raise ValueError(f"scores must be None, 'bins' or 'continuous', got {scores!r}")
    return [n for n in HEADS.names() if scores is None or head_scores(n) == scores]


def head_scores(name: str) -> str:
    """What the head registered as ``name`` scores: ``bins`` or ``continuous`` (ValueError for an unknown name)."""
    return getattr(HEADS.get(name), "scores", "bins")


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

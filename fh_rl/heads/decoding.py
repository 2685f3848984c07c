"""Decodings: how one action is read from a head's output at evaluation (``eval.decode``).

A head gives a distribution over bins (or a continuous one); acting needs one
action per step. That choice changes returns as much as the head does
(docs/results_sampled.md), so it is a named, registered option:

- ``argmax``: the most likely bin's centre (a continuous head: ``tanh(mean)``);
- ``sample``: a bin drawn from the pmf (a continuous head: a draw from its distribution);
- ``mean``: the expected action ``sum_b p_b * centre_b`` (Box actions only);
- ``median``: the median of the pmf read as a histogram over the bins (Box actions only);
- ``mode``: the maximiser of the head's continuous density on a fine grid, finer than a bin
  (heads with a :meth:`~fh_rl.heads.Head.density`: ``fourier``, ``gmm``, ``gaussian``, ...);
- the modifier ``+within_bin`` (``argmax+within_bin``, ``sample+within_bin``): the chosen bin is
  decoded to a uniform draw within it instead of its centre (Box actions, heads that score bins).

A decoding returns, per row, either bins ``(n, A)`` int64 (the head's own bins;
decoded by the action codec) or values ``(n, A)`` float in [-1, 1] on the
codec's unit scale (``codec.to_unit``: the K bins over ``[low, high]`` span
[-1, 1]; margin bins lie beyond). :class:`~fh_rl.agents.inference.AgentPolicy`
turns either into environment actions and feeds the Decision Transformer the
bin the taken action falls in.

Add one in a few lines::

    from fh_rl.heads.decoding import Decoding, register_decoding

    @register_decoding("p90")
    class P90(Decoding):
        \"\"\"The 90th percentile of each dimension's pmf.\"\"\"
        needs_box = True

        def bins(self, ctx):
            cdf = ctx.pmf().cumsum(-1)                      # (n, A, K)
            return (cdf < 0.9).sum(-1).clamp(max=cdf.shape[-1] - 1)   # bins (n, A)

then ``--decode p90`` or ``eval.decode: [argmax, p90]``; other packages
register through the entry-point group ``fh_rl.decodings``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from fh_rl.heads.base import Head, normalized_pmf
from fh_rl.infra.registry import Registry

DECODINGS: Registry[type[Decoding]] = Registry("decoding", entry_point_group="fh_rl.decodings")
WITHIN_BIN = "within_bin"
"""The modifier: ``<decoding>+within_bin``."""
MODE_POINTS_PER_BIN = 16
"""``mode`` evaluates the density at this many points per head bin (grid step = bin width / 16)."""
GAUSS_HERMITE_NODES = 64
"""Nodes of the Gauss-Hermite rule for the squashed Gaussian's mean (exact to float32 rounding)."""


@dataclass
class DecodeContext:
    """What a decoding reads for one batch of rows: the head, its output, the hidden state it came from and
    the action codec. ``pmf()`` is the normalised pmf ``(n, A, K)`` of a head that scores bins."""

    head: Head
    out: Any
    """The head's output: a HeadOutput (log_probs ``(n, A, K)``) or a ContinuousOutput."""
    h: torch.Tensor | None
    """The hidden state ``(n, D)`` the head was applied to (needed by ``mode``)."""
    codec: Any
    generator: torch.Generator | None = None

    def pmf(self) -> torch.Tensor:
        return normalized_pmf(self.out.log_probs)


class Decoding:
    """Base class: reads one action per row from a head's output.

    Subclasses implement :meth:`bins` (heads that score bins) and, when they mean something for heads that
    score continuous actions (``mse``, ``gaussian``), :meth:`continuous`. Class attributes say where the
    decoding applies; :meth:`check` turns them into one-line errors before any episode runs.
    """

    random: ClassVar[bool] = False
    """The action is drawn at random (recorded as ``sample`` in eval.json, and uses the policy's generator)."""
    needs_box: ClassVar[bool] = False
    """Needs an ordered action scale (Box actions): refused for Discrete."""
    needs_density: ClassVar[bool] = False
    """Needs :meth:`Head.density`: refused for heads without a continuous density."""
    chooses_bin: ClassVar[bool] = False
    """Returns one of the head's bins (so ``+within_bin`` applies)."""
    registry_name: ClassVar[str] = ""

    def check(self, head: Head, codec: Any) -> str | None:
        """Why this decoding cannot act for ``head`` and ``codec`` (a phrase), or None when it can."""
        name = self.registry_name
        if self.needs_box and not codec.continuous:
            return f"decoding {name!r} needs Box actions (an ordered scale), but the actions are {codec.describe()}"
        if self.needs_density and not has_density(head):
            return f"decoding {name!r} needs a head with a continuous density, but head {_head_name(head)!r} has none"
        if head.scores == "continuous" and type(self).continuous is Decoding.continuous:
            return f"decoding {name!r} has no meaning for head {_head_name(head)!r}, which scores continuous actions"
        return None

    def bins(self, ctx: DecodeContext) -> torch.Tensor:
        """Bins ``(n, A)`` int64, or values ``(n, A)`` float on the codec's [-1, 1] unit scale."""
        raise NotImplementedError

    def continuous(self, ctx: DecodeContext) -> torch.Tensor:
        """Values ``(n, A)`` in [-1, 1] for a head that scores continuous actions."""
        raise NotImplementedError

    def __call__(self, ctx: DecodeContext) -> torch.Tensor:
        return self.continuous(ctx) if ctx.head.scores == "continuous" else self.bins(ctx)


def register_decoding(name: str):
    """Class decorator adding a :class:`Decoding` subclass to the registry under ``name``."""
    if "+" in name:
        raise ValueError(f"decoding names cannot contain '+' (it adds a modifier), got {name!r}")
    return DECODINGS.class_decorator(name, Decoding, "fh_rl.heads.decoding.Decoding")


def _head_name(head: Head) -> str:
    return getattr(head, "registry_name", type(head).__name__)


def has_density(head: Head) -> bool:
    """Whether the head overrides :meth:`Head.density` (a continuous density on its [-1, 1] scale)."""
    return type(head).density is not Head.density


# ----------------------------------------------------------------------------- built-ins


@register_decoding("argmax")
class Argmax(Decoding):
    """The most likely bin (its centre; ``+within_bin``: a uniform draw in it); a continuous head: ``tanh(mean)``."""

    chooses_bin = True

    def bins(self, ctx: DecodeContext) -> torch.Tensor:
        return ctx.head.mode(ctx.out)

    def continuous(self, ctx: DecodeContext) -> torch.Tensor:
        return ctx.head.mode(ctx.out)


@register_decoding("sample")
class Sample(Decoding):
    """A bin drawn from the pmf; a continuous head: a draw from its distribution (``mse``: its point)."""

    random = True
    chooses_bin = True

    def bins(self, ctx: DecodeContext) -> torch.Tensor:
        return ctx.head.sample(ctx.out, ctx.generator)

    def continuous(self, ctx: DecodeContext) -> torch.Tensor:
        return ctx.head.sample(ctx.out, ctx.generator)


@register_decoding("mean")
class Mean(Decoding):
    """The expected action ``sum_b p_b * centre_b`` (margin bins count as the end bins they decode to);
    a continuous head: the mean of its distribution (``gaussian``: E[tanh(u)]; ``mse``: its point)."""

    needs_box = True

    def bins(self, ctx: DecodeContext) -> torch.Tensor:
        centres = unit_bin_centres(ctx.codec, ctx.out.log_probs.device)  # (K,)
        return (ctx.pmf().double() * centres).sum(-1).float()  # (n, A, K) -> (n, A)

    def continuous(self, ctx: DecodeContext) -> torch.Tensor:
        return ctx.head.mean_action(ctx.out)


@register_decoding("median")
class Median(Decoding):
    """The median of the pmf read as a histogram (uniform within each bin), the midpoint where the CDF is
    flat at 1/2; clipped to [low, high]. A continuous head: its median (``tanh(mean)``)."""

    needs_box = True

    def bins(self, ctx: DecodeContext) -> torch.Tensor:
        pmf = ctx.pmf().double()
        edges = ctx.codec.unit_bin_edges().to(pmf.device)  # (K + 1,)
        lower = _first_crossing(pmf, edges)
        upper = -_first_crossing(pmf.flip(-1), -edges.flip(0))  # the last x with CDF <= 1/2, from the right
        return ((lower + upper) / 2).clamp(-1.0, 1.0).float()

    def continuous(self, ctx: DecodeContext) -> torch.Tensor:
        return ctx.head.median_action(ctx.out)


def _first_crossing(pmf: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """The smallest x with CDF(x) >= 1/2 of a histogram ``pmf (..., K)`` over ascending ``edges (K + 1,)``."""
    cdf = pmf.cumsum(-1)  # (..., K): CDF at each bin's right edge
    K = pmf.shape[-1]
    b = (cdf < 0.5 - 1e-12).sum(-1, keepdim=True).clamp(max=K - 1)  # (..., 1): the bin where it reaches 1/2
    before = torch.where(b > 0, cdf.gather(-1, (b - 1).clamp(min=0)), torch.zeros_like(b, dtype=cdf.dtype))
    mass = pmf.gather(-1, b)
    frac = ((0.5 - before) / mass.clamp(min=1e-300)).clamp(0.0, 1.0)
    left, width = edges[b], edges[b + 1] - edges[b]
    return (left + frac * width).squeeze(-1)


@register_decoding("mode")
class Mode(Decoding):
    """The maximiser of the head's continuous density on a grid of :data:`MODE_POINTS_PER_BIN` points per bin
    (sub-bin resolution), clipped to [low, high]."""

    needs_box = True
    needs_density = True

    def bins(self, ctx: DecodeContext) -> torch.Tensor:
        head, K = ctx.head, ctx.head.num_bins
        G = K * MODE_POINTS_PER_BIN
        device = ctx.h.device
        grid = -1.0 + (2.0 * torch.arange(G, dtype=torch.float64, device=device) + 1.0) / G  # cell centres of [-1, 1]
        best = grid[head.density(ctx.h, grid.float()).argmax(-1)]  # (n, A) on the head's scale
        # The head's K bins are the codec's bins (margin bins included): head scale -> bins -> unit scale.
        m, inner = ctx.codec.margin_bins, ctx.codec.action_bins
        position = (best + 1.0) / 2.0 * K - m  # in bins from the low bound
        return (-1.0 + 2.0 * position / inner).clamp(-1.0, 1.0).float()

    def continuous(self, ctx: DecodeContext) -> torch.Tensor:
        G = ctx.head.num_bins * MODE_POINTS_PER_BIN
        grid = -1.0 + (2.0 * torch.arange(G, dtype=torch.float64, device=ctx.h.device) + 1.0) / G
        return grid[ctx.head.density(ctx.h, grid.float()).argmax(-1)].float()


def unit_bin_centres(codec: Any, device: torch.device | None = None) -> torch.Tensor:
    """(K,) float64 centres of the head's bins on the codec's unit scale, each margin bin at the end bin's
    centre (where ``codec.decode`` puts it)."""
    m, inner = codec.margin_bins, codec.action_bins
    b = (torch.arange(codec.num_bins, dtype=torch.float64, device=device) - m).clamp(0, inner - 1)
    return -1.0 + (2.0 * b + 1.0) / inner


def squashed_gaussian_mean(mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """E[tanh(u)], u ~ N(mean, exp(log_std)^2), elementwise, by a :data:`GAUSS_HERMITE_NODES`-node Gauss-Hermite rule."""
    import numpy as np

    z, w = np.polynomial.hermite_e.hermegauss(GAUSS_HERMITE_NODES)  # weight exp(-z^2 / 2)
    z = torch.as_tensor(z, dtype=torch.float64, device=mean.device)
    w = torch.as_tensor(w / math.sqrt(2 * math.pi), dtype=torch.float64, device=mean.device)
    u = mean.double()[..., None] + log_std.double().exp()[..., None] * z  # (..., nodes)
    return (torch.tanh(u) * w).sum(-1).to(mean.dtype)


# ----------------------------------------------------------------------------- names -> decoders


@dataclass(frozen=True)
class Decoder:
    """A parsed ``eval.decode`` entry: the registered decoding and whether ``+within_bin`` modifies it."""

    decoding: Decoding
    within_bin: bool = False

    @property
    def name(self) -> str:
        return self.decoding.registry_name + (f"+{WITHIN_BIN}" if self.within_bin else "")

    @property
    def random(self) -> bool:
        return self.decoding.random

    def check(self, head: Head, codec: Any) -> None:
        """ValueError (one line, listing what is available) when this decoding cannot act for ``head``/``codec``."""
        reason = self.decoding.check(head, codec)
        if reason is None and self.within_bin:
            if not self.decoding.chooses_bin:
                reason = f"{WITHIN_BIN} modifies decodings that choose a bin, not {self.decoding.registry_name!r}"
            elif not codec.continuous or head.scores != "bins":
                reason = (f"{WITHIN_BIN} needs Box actions and a head that scores bins "
                          f"({codec.describe()} actions, head {_head_name(head)!r})")
        if reason is not None:
            raise ValueError(f"{reason}; available here: {', '.join(available_decodings(head, codec))}")

    def __call__(self, ctx: DecodeContext) -> torch.Tensor:
        return self.decoding(ctx)


def parse_decoder(spec: str | Decoder) -> Decoder:
    """``"mean"``, ``"sample+within_bin"`` -> a :class:`Decoder`; ValueError naming the known decodings."""
    if isinstance(spec, Decoder):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a decoding must be a name such as 'argmax', got {spec!r}; known: {', '.join(DECODINGS.names())}")
    name, *mods = [p.strip() for p in spec.split("+")]
    cls = DECODINGS.get(name)
    bad = [m for m in mods if m != WITHIN_BIN]
    if bad or len(mods) > 1:
        raise ValueError(f"unknown decoding modifier {'+'.join(mods)!r} in {spec!r}; the only modifier is "
                         f"'+{WITHIN_BIN}' (e.g. 'sample+{WITHIN_BIN}')")
    return Decoder(cls(), within_bin=bool(mods))


def parse_decoders(specs: str | Decoder | list | tuple) -> list[Decoder]:
    """One decoding or a list (``"argmax,mean"`` too) -> decoders, in order; a name given twice is an error."""
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    elif isinstance(specs, Decoder):
        specs = [specs]
    decoders = [parse_decoder(s) for s in specs]
    if not decoders:
        raise ValueError(f"no decoding given; known: {', '.join(DECODINGS.names())}")
    names = [d.name for d in decoders]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"decoding {dup[0]!r} is listed twice; list each decoding once")
    return decoders


def available_decodings(head: Head | None = None, codec: Any = None) -> list[str]:
    """Registered decoding names (with ``+within_bin`` forms), only those that apply to ``head`` and ``codec``
    when given."""
    out = []
    for name in DECODINGS.names():
        decoding = DECODINGS.get(name)()
        if head is None or decoding.check(head, codec) is None:
            out.append(name)
            if decoding.chooses_bin and (head is None or (codec.continuous and head.scores == "bins")):
                out.append(f"{name}+{WITHIN_BIN}")
    return out

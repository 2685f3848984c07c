"""Heads that score continuous actions: the original DT's regression head and a squashed Gaussian.

Actions are the Box scaled to [-1, 1] per dimension (``codec.to_unit``); A is
the number of action dimensions. Both heads put a tanh after a linear layer,
so the evaluation action ``tanh(mean)`` always lies in [-1, 1].

- ``mse`` (Chen et al. 2021, the DT's gym code): ``a = tanh(W h + b)``,
  trained by the squared error ``(a - y)^2`` against the dataset action ``y``,
  averaged over dimensions; deterministic at evaluation.
- ``gaussian`` (the tanh-squashed diagonal Gaussian of SAC and most
  offline-RL libraries): ``u ~ N(mu, sigma^2)``, ``a = tanh(u)``, with
  ``[mu, log sigma] = W h + b`` and ``log sigma`` clamped to
  ``[min_log_std, max_log_std]``. Trained by the exact negative log-density of
  the dataset action, change of variables included:
  ``-log p(y) = -log N(atanh y; mu, sigma^2) + log(1 - y^2)``, with ``y``
  moved ``boundary_eps`` inside (-1, 1) so that saturated actions stay finite.
  At evaluation the action is ``tanh(mu)`` (the median of the squashed
  distribution), or a sample with ``eval.decode: sample`` (:mod:`fh_rl.heads.decoding`).

The squashed Gaussian's mass in a bin [e_j, e_j+1] is exact:
``Phi((atanh e_j+1 - mu) / sigma) - Phi((atanh e_j - mu) / sigma)`` (tanh is
monotone), computed in log space, stable in both tails. That is the
discretised likelihood over the same bins as the quantized heads, so its
held-out NLL, accuracy and smoothness compare with theirs in the same units.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fh_rl.heads.base import ContinuousHead, ContinuousOutput, register_head


@register_head("mse")
class MSEHead(ContinuousHead):
    """The original Decision Transformer's continuous head: ``tanh(linear(h))``, trained by squared error.

    A point prediction: every decoding but ``mode`` gives the point, and it has no pmf
    (held-out NLL and smoothness are left blank for it).
    """

    objective = "mse"

    def __init__(self, in_features: int, num_bins: int, action_dims: int = 1) -> None:
        super().__init__(in_features, num_bins, action_dims)
        self.proj = nn.Linear(in_features, action_dims)

    def forward(self, h: torch.Tensor) -> ContinuousOutput:
        self._check_input(h)
        mean = self._full_precision(self.proj(h))  # (..., A), float32 even under autocast
        return ContinuousOutput(mean, None, self._zero(h))

    def loss(self, out: ContinuousOutput, targets: torch.Tensor) -> torch.Tensor:
        """Squared error ``(tanh(mean) - y)^2`` per dimension ``(..., A)``, targets y in [-1, 1]."""
        return (torch.tanh(out.mean) - targets.to(out.mean.dtype)).square()


@register_head("gaussian")
class GaussianHead(ContinuousHead):
    """A tanh-squashed diagonal Gaussian, trained by the exact log-likelihood of the dataset action.

    Args:
        min_log_std, max_log_std: bounds of ``log sigma`` (before the tanh).
        boundary_eps: targets are clamped to ``[-1 + eps, 1 - eps]`` before ``atanh``.
    """

    objective = "nll_density"

    def __init__(
        self,
        in_features: int,
        num_bins: int,
        action_dims: int = 1,
        *,
        min_log_std: float = -5.0,
        max_log_std: float = 2.0,
        boundary_eps: float = 1e-6,
    ) -> None:
        super().__init__(in_features, num_bins, action_dims)
        if not min_log_std < max_log_std:
            raise ValueError(f"min_log_std must be < max_log_std, got {min_log_std} and {max_log_std}")
        if not 0 < boundary_eps < 1:
            raise ValueError(f"boundary_eps must be in (0, 1), got {boundary_eps}")
        self.min_log_std = float(min_log_std)
        self.max_log_std = float(max_log_std)
        self.boundary_eps = float(boundary_eps)
        self.proj = nn.Linear(in_features, action_dims * 2)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, log_std in [{self.min_log_std}, {self.max_log_std}]"

    def forward(self, h: torch.Tensor) -> ContinuousOutput:
        self._check_input(h)
        params = self._full_precision(self.proj(h)).unflatten(-1, (self.action_dims, 2))  # (..., 2A) -> (..., A, 2)
        log_std = params[..., 1].clamp(self.min_log_std, self.max_log_std)
        return ContinuousOutput(params[..., 0], log_std, self._zero(h))

    def loss(self, out: ContinuousOutput, targets: torch.Tensor) -> torch.Tensor:
        """``-log p(y)`` per dimension ``(..., A)``: the density of the squashed Gaussian at y in [-1, 1]."""
        y = targets.to(out.mean.dtype).clamp(-1.0 + self.boundary_eps, 1.0 - self.boundary_eps)
        z = (torch.atanh(y) - out.mean) * torch.exp(-out.log_std)  # standardised pre-tanh value
        log_normal = -0.5 * z.square() - out.log_std - 0.5 * math.log(2 * math.pi)
        log_jacobian = torch.log1p(-y) + torch.log1p(y)  # log(1 - y^2) = log |d tanh(u) / du|
        return log_jacobian - log_normal

    def sample(self, out: ContinuousOutput, generator: torch.Generator | None = None) -> torch.Tensor:
        """``tanh(mean + sigma * noise)`` ``(..., A)``."""
        noise = torch.randn(out.mean.shape, generator=generator, dtype=out.mean.dtype, device=out.mean.device)
        return torch.tanh(out.mean + torch.exp(out.log_std) * noise)

    def mean_action(self, out: ContinuousOutput) -> torch.Tensor:
        """E[tanh(u)] ``(..., A)``, u ~ N(mu, sigma^2): the squashed Gaussian's mean (Gauss-Hermite quadrature);
        ``tanh(mu)`` is its median."""
        from fh_rl.heads.decoding import squashed_gaussian_mean

        return squashed_gaussian_mean(out.mean, out.log_std)

    def density(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The squashed Gaussian's density ``(..., A, P)`` at points ``x (P,)`` in (-1, 1) (0 at the bounds)."""
        out = self(h)
        with torch.autocast(device_type=out.mean.device.type, enabled=False):
            y = x.to(out.mean.device, torch.float64)
            inside = y.abs() < 1
            u = torch.atanh(y.clamp(-1 + 1e-12, 1 - 1e-12))  # (P,)
            mean, log_std = out.mean.double()[..., None], out.log_std.double()[..., None]
            log_p = -0.5 * ((u - mean) * torch.exp(-log_std)).square() - log_std - torch.log1p(-y.square())
            return torch.where(inside, log_p.exp(), torch.zeros_like(log_p)).float()

    def bin_log_probs(self, out: ContinuousOutput, edges: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log-mass ``(..., A, K)`` of the squashed Gaussian in each bin.

        ``edges`` (K+1,) ascending, in [-1, 1] coordinates (bins beyond [-1, 1] get zero mass);
        default: the K equal cells of [-1, 1].
        """
        edges = self.bin_edges if edges is None else edges
        with torch.autocast(device_type=out.mean.device.type, enabled=False):
            mean, log_std = out.mean.float(), out.log_std.float()
            u = torch.atanh(edges.float().clamp(-1.0, 1.0))  # (K+1,), +-inf at the bounds
            z = (u - mean[..., None]) * torch.exp(-log_std)[..., None]  # (..., A, K+1)
            return log_ndtr_difference(z[..., :-1], z[..., 1:])


def log_ndtr_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(Phi(b) - Phi(a))`` for ``a <= b`` elementwise; ``-inf`` where ``a == b``.

    Both tails stay accurate: above zero the difference is taken as
    ``Phi(-a) - Phi(-b)``, so the subtraction is always of two lower-tail values.
    """
    flip = (a + b) > 0
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_hi = torch.special.log_ndtr(hi)
    x = torch.special.log_ndtr(lo) - log_hi  # <= 0
    log1mexp = torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))
    return torch.where(a < b, log_hi + log1mexp, torch.full_like(a, -math.inf))

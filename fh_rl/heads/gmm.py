"""Gaussian-mixture head: the Fourier head paper's other baseline."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fh_rl.heads.base import Head, HeadOutput, register_head


@register_head("gmm")
class GMMHead(Head):
    """M Gaussians on [-1, 1]; the mixture density at the bin centres, normalised.

    A linear layer gives per action dimension M mixture logits, M means and M
    scales (softplus + ``min_scale``). The log-density at each bin centre is a
    logsumexp over components, normalised over bins with a log-softmax, so the
    output is an exact log-pmf and stays finite far from every component.

    Args:
        num_components: M, the number of mixture components.
        min_scale: lower bound of each component's standard deviation.
    """

    def __init__(
        self,
        in_features: int,
        num_bins: int,
        action_dims: int = 1,
        *,
        num_components: int = 4,
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__(in_features, num_bins, action_dims)
        if not isinstance(num_components, int) or isinstance(num_components, bool) or num_components < 1:
            raise ValueError(f"num_components must be a positive integer, got {num_components!r}")
        if min_scale <= 0:
            raise ValueError(f"min_scale must be > 0, got {min_scale}")
        self.num_components = num_components
        self.min_scale = float(min_scale)
        self.proj = nn.Linear(in_features, action_dims * 3 * num_components)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_components={self.num_components}"

    def _log_density(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Log of the mixture density ``(..., A, P)`` at points ``x (P,)``."""
        self._check_input(h)
        M = self.num_components
        params = self._full_precision(self.proj(h)).unflatten(-1, (self.action_dims, 3, M))  # (..., A*3M) -> (..., A, 3, M)
        with torch.autocast(device_type=params.device.type, enabled=False):
            log_w = torch.log_softmax(params[..., 0, :], dim=-1)  # (..., A, M)
            mean = params[..., 1, :]
            scale = F.softplus(params[..., 2, :]) + self.min_scale
            z = (x.to(params.dtype)[:, None] - mean[..., None, :]) / scale[..., None, :]  # (..., A, P, M)
            log_n = -0.5 * z.square() - torch.log(scale[..., None, :]) - 0.5 * math.log(2 * math.pi)
            return torch.logsumexp(log_w[..., None, :] + log_n, dim=-1)  # (..., A, P)

    def forward(self, h: torch.Tensor) -> HeadOutput:
        log_probs = torch.log_softmax(self._log_density(h, self.bin_centers), dim=-1)  # (..., A, K)
        return HeadOutput(log_probs, self._zero(h))

    def density(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The mixture density ``(..., A, P)`` at points ``x (P,)`` of [-1, 1] (mass outside [-1, 1] is not
        renormalised: only its maximiser is used)."""
        if x.dim() != 1:
            raise ValueError(f"density expects points of shape (P,), got {tuple(x.shape)}")
        return self._log_density(h, x).exp()

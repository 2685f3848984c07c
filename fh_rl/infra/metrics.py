"""Metrics on predicted action distributions shared by training, benchmarks and comparison."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=16)
def _smoothing_operator(num_bins: int, num_scales: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """(I - G_s) for s = 1..num_scales as a (S, K, K) float64 tensor, and weights w_s (S,).

    G_s is scipy's ``gaussian_filter1d(sigma=s, mode="wrap", radius=K-1)`` as a
    circulant matrix: taps j = -(K-1)..K-1 with weight exp(-j^2 / 2s^2),
    normalised to sum 1, landing on bin (i + j) mod K.
    """
    K = num_bins
    j = np.arange(-(K - 1), K)
    ops = np.empty((num_scales, K, K))
    for s in range(1, num_scales + 1):
        taps = np.exp(-0.5 * (j / s) ** 2)
        taps /= taps.sum()
        g = np.zeros((K, K))
        for i in range(K):
            np.add.at(g[i], (i + j) % K, taps)
        ops[s - 1] = np.eye(K) - g
    s = np.arange(1, num_scales + 1)
    weights = 6.0 / (math.pi**2 * s**2)
    return torch.from_numpy(ops), torch.from_numpy(weights)


def smoothness(pmf: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The Fourier head paper's smoothness metric of pmfs ``(..., K)``; returns ``(...)``.

    S(m) = sum_{s=1..100} w_s || m - G_s(m) ||_2, w_s = 6 / (pi^2 s^2), G_s a
    Gaussian filter of standard deviation s with wrap-around boundary and
    radius K - 1. Lower is smoother; a constant pmf scores 0.
    """
    m = torch.as_tensor(pmf)
    if m.dim() < 1 or m.shape[-1] < 2:
        raise ValueError(f"smoothness expects pmfs of shape (..., K) with K >= 2, got {tuple(m.shape)}")
    ops, weights = _smoothing_operator(int(m.shape[-1]))
    ops = ops.to(m.device, torch.float64)
    diff = torch.einsum("skl,...l->...sk", ops, m.detach().to(torch.float64))  # (..., S, K)
    return (diff.norm(dim=-1) * weights.to(m.device)).sum(dim=-1)  # (...)

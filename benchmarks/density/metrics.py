"""The benchmark's metrics: KL to the true pmf, squared error of the expected bin value, smoothness."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.density.data import bin_centers
from fh_rl.infra.metrics import smoothness


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) per row of ``(..., K)`` pmfs, in nats; terms with p_k = 0 count 0.

    q is floored at the smallest positive float64 so that a q_k = 0 under p_k > 0
    gives a large finite value instead of inf.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.maximum(np.asarray(q, dtype=np.float64), np.finfo(np.float64).tiny)
    safe_p = np.where(p > 0, p, 1.0)
    return np.where(p > 0, p * (np.log(safe_p) - np.log(q)), 0.0).sum(axis=-1)


def expected_value(pmf: np.ndarray) -> np.ndarray:
    """E[c] under pmfs ``(..., K)`` with c the bin centres."""
    return np.asarray(pmf, dtype=np.float64) @ bin_centers(pmf.shape[-1])


def score(target: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """The benchmark's three metrics for true pmfs and predicted pmfs ``(B, K)``."""
    return {
        "kl": float(kl_divergence(target, predicted).mean()),
        "mse": float(np.mean((expected_value(predicted) - expected_value(target)) ** 2)),
        "smoothness": float(smoothness(torch.from_numpy(np.asarray(predicted, dtype=np.float64))).mean()),
    }


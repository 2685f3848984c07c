import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from fh_rl.infra.metrics import smoothness


def scipy_smoothness(m: np.ndarray) -> float:
    K = m.shape[-1]
    return sum(
        6 / (np.pi**2 * s**2) * np.linalg.norm(m - gaussian_filter1d(m, s, mode="wrap", radius=K - 1))
        for s in range(1, 101)
    )


@pytest.mark.parametrize("K", [2, 18, 50, 256])
def test_smoothness_matches_scipy_definition(K):
    rng = np.random.default_rng(K)
    m = rng.random((3, K))
    m /= m.sum(-1, keepdims=True)
    got = smoothness(torch.from_numpy(m))
    assert got.shape == (3,)
    for i in range(3):
        assert got[i].item() == pytest.approx(scipy_smoothness(m[i]), rel=1e-9, abs=1e-12)


def test_constant_pmf_scores_zero_and_spikes_score_higher():
    flat = np.full(50, 1 / 50)
    spike = np.zeros(50)
    spike[10] = 1
    bump = np.exp(-0.5 * ((np.arange(50) - 10) / 4) ** 2)
    bump /= bump.sum()
    assert smoothness(flat).item() == pytest.approx(0, abs=1e-12)
    assert smoothness(spike).item() > smoothness(bump).item() > 0


def test_smoothness_rejects_scalars():
    with pytest.raises(ValueError, match=r"expects pmfs of shape \(\.\.\., K\) with K >= 2, got \(\)"):
        smoothness(torch.tensor(1.0))

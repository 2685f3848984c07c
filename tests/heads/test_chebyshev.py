"""The Chebyshev head's math against numpy's Chebyshev series in float64, and what it is for: no wrap-around.

Shapes, normalisation, gradients, bf16 autocast and side effects are covered for every registered head by
tests/heads/test_heads.py; the agents (DT, BC; Discrete, Box, frames) by tests/agents/test_agents.py.
"""

import numpy as np
import pytest
import torch
from numpy.polynomial import chebyshev as npcheb

from fh_rl.heads import ChebyshevHead, FourierHead, build_head
from fh_rl.heads.chebyshev import chebyshev_basis, chebyshev_integrals, chebyshev_matrices

D = 12


def gauss_legendre_bin_masses(coef: np.ndarray, num_bins: int, nodes: int = 40) -> np.ndarray:
    """Integral of f^2 over each of K equal bins of [-1, 1], f = sum_k coef[..., k] T_k, by Gauss-Legendre per bin."""
    g, w = np.polynomial.legendre.leggauss(nodes)
    edges = np.linspace(-1.0, 1.0, num_bins + 1)
    out = np.zeros((*coef.shape[:-1], num_bins))
    for j in range(num_bins):
        a, b = edges[j], edges[j + 1]
        x = (a + b) / 2 + (b - a) / 2 * g
        f = npcheb.chebval(x, np.moveaxis(coef, -1, 0))  # (..., nodes)
        out[..., j] = (f**2 * w).sum(-1) * (b - a) / 2
    return out


def test_integrals_of_chebyshev_polynomials_match_numpy():
    e = torch.linspace(-1, 1, 23, dtype=torch.float64)
    ours = chebyshev_integrals(e, 12)
    for m in range(13):
        unit = np.zeros(m + 1)
        unit[m] = 1.0
        np.testing.assert_allclose(ours[m].numpy(), npcheb.chebval(e.numpy(), npcheb.chebint(unit, lbnd=-1)), atol=1e-14)
    x = torch.tensor([-1.0, -0.3, 0.5, 1.0], dtype=torch.float64)
    np.testing.assert_allclose(chebyshev_basis(x, 5).numpy(), np.stack([np.cos(k * np.arccos(x)) for k in range(6)]),
                               atol=1e-14)  # fmt: skip


@pytest.mark.parametrize("N, K", [(1, 2), (8, 18), (16, 96)])
def test_integral_mode_matches_float64_quadrature(N, K):
    torch.manual_seed(0)
    head = ChebyshevHead(D, K, action_dims=2, num_frequencies=N, bin_mass="integral").double()
    h = torch.randn(3, 4, D, dtype=torch.float64)
    coef = head.coefficients(h)  # (3, 4, 2, N+1)
    masses = gauss_legendre_bin_masses(coef.detach().numpy(), K)
    Z = masses.sum(-1)
    np.testing.assert_allclose(head.pmf(h).detach().numpy(), masses / Z[..., None], atol=1e-8, rtol=0)
    np.testing.assert_allclose(head(h).log_probs.exp().detach().numpy(), masses / Z[..., None] + head.eps, atol=1e-8)
    # Z in closed form (numpy's chebint of the squared series) and the density integrating to 1
    closed = [npcheb.chebval(1.0, npcheb.chebint(npcheb.chebmul(c, c), lbnd=-1)) for c in coef.detach().reshape(-1, N + 1).numpy()]
    np.testing.assert_allclose(head.normaliser(coef).detach().reshape(-1).numpy(), closed, rtol=1e-12)
    g, w = np.polynomial.legendre.leggauss(2 * N + 2)
    p = head.density(h, torch.from_numpy(g)).detach().numpy()
    np.testing.assert_allclose(p @ w, 1.0, atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_centre_mode_is_f_squared_at_the_centres(dtype, tol):
    torch.manual_seed(1)
    K, N = 50, 12
    head = ChebyshevHead(D, K, action_dims=3, num_frequencies=N).to(dtype)
    h = torch.randn(7, D, dtype=dtype)
    coef = head.coefficients(h).detach().double().numpy()
    centres = -1 + (2 * np.arange(K) + 1) / K
    f2 = npcheb.chebval(centres, np.moveaxis(coef, -1, 0)) ** 2
    pmf = head.pmf(h)
    assert pmf.dtype == dtype
    np.testing.assert_allclose(pmf.detach().double().numpy(), f2 / f2.sum(-1, keepdims=True), atol=tol, rtol=0)
    torch.testing.assert_close(pmf.sum(-1), torch.ones(7, 3, dtype=dtype), atol=1e-6, rtol=0)


@pytest.mark.parametrize("bin_mass", ["centre", "integral"])
def test_pmf_sums_to_one_in_float32_and_under_autocast(bin_mass):
    head = build_head("chebyshev", D, 96, action_dims=2, num_frequencies=16, bin_mass=bin_mass, regularization_gamma=1e-3)
    h = torch.randn(64, D) * 3
    pmf = head.pmf(h)
    assert pmf.dtype == torch.float32 and (pmf >= 0).all()
    torch.testing.assert_close(pmf.sum(-1), torch.ones(64, 2), atol=1e-6, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(h)
    assert out.log_probs.dtype == torch.float32 and out.regularization.dtype == torch.float32


def test_regularizer_is_the_weighted_dirichlet_energy_of_f_squared():
    torch.manual_seed(2)
    N, gamma = 6, 0.3
    head = ChebyshevHead(D, 18, action_dims=2, num_frequencies=N, regularization_gamma=gamma).double()
    h = torch.randn(5, D, dtype=torch.float64)
    coef = head.coefficients(h).detach().reshape(-1, N + 1).numpy()
    # integral_{-1}^{1} P'(x)^2 sqrt(1 - x^2) dx, P = f^2, by Gauss-Chebyshev (weight 1/sqrt(1-x^2)) on (1 - x^2) P'^2
    x, w = npcheb.chebgauss(4 * N + 4)
    energy = [(npcheb.chebval(x, npcheb.chebder(npcheb.chebmul(c, c))) ** 2 * (1 - x**2) * w).sum() for c in coef]
    torch.testing.assert_close(head(h).regularization, torch.tensor(gamma * np.mean(energy), dtype=torch.float64),
                               rtol=1e-12, atol=0)  # fmt: skip
    # ... which is (pi / 2) sum_m m^2 d_m^2 for P = sum_m d_m T_m
    d = [npcheb.chebmul(c, c) for c in coef]
    np.testing.assert_allclose(energy, [np.pi / 2 * (np.arange(len(dm)) ** 2 * dm**2).sum() for dm in d], rtol=1e-12)
    assert ChebyshevHead(D, 18, num_frequencies=N)(h.float()).regularization == 0  # gamma 0: no term


@pytest.mark.parametrize("bin_mass", ["centre", "integral"])
def test_gradcheck_float64(bin_mass):
    torch.manual_seed(3)
    head = ChebyshevHead(5, 9, action_dims=2, num_frequencies=4, bin_mass=bin_mass, regularization_gamma=0.1).double()
    h = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)

    def f(h, weight, bias):
        out = torch.func.functional_call(head, {"proj.weight": weight, "proj.bias": bias}, (h,))
        return out.log_probs, out.regularization

    assert torch.autograd.gradcheck(f, (h, head.proj.weight.detach().clone().requires_grad_(),
                                        head.proj.bias.detach().clone().requires_grad_()))  # fmt: skip


def test_starts_near_uniform_and_its_coefficient_layout():
    torch.manual_seed(4)
    head = ChebyshevHead(32, 50, action_dims=2, num_frequencies=12)
    assert head.proj.out_features == 2 * 13
    torch.testing.assert_close(head.proj.bias.view(2, 13)[:, 0], torch.full((2,), 0.1))
    assert head.proj.bias.view(2, 13)[:, 1:].abs().max() < 0.01
    h = torch.randn(200, 32).relu()
    ratio = head.pmf(h) * 50  # pmf / uniform
    assert ratio.min() > 0.15 and ratio.max() < 3  # measured: 0.25 to 2.3 (0.86 to 1.14 on the density benchmark's MLP)
    fourier = FourierHead(32, 50, action_dims=2, num_frequencies=12).pmf(h) * 50
    assert fourier.min() < 0.01 and fourier.max() > 5  # the Fourier head's /100 starts far from uniform (0 to 7x)


def fitted_mass_in_first_quarter(head, steps: int = 400) -> float:
    """Fit ``head`` (96 bins) to a point mass in the last bin (Adam, fixed input); its mass in the first 24 bins."""
    torch.manual_seed(0)
    h = torch.randn(1, 8)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        out = head(h)
        (-out.log_probs[..., -1].mean()).backward()
        opt.step()
    return float(head.pmf(h)[0, 0, :24].sum().detach())


def test_no_wrap_around_unlike_the_fourier_head():
    torch.manual_seed(0)
    fourier = fitted_mass_in_first_quarter(FourierHead(8, 96, num_frequencies=16))
    for bin_mass in ("centre", "integral"):
        torch.manual_seed(0)
        assert fitted_mass_in_first_quarter(ChebyshevHead(8, 96, num_frequencies=16, bin_mass=bin_mass)) < 0.01
    assert fourier > 0.3  # the periodic density puts the mass at +1 back at -1 (measured: about 40%)


def test_under_torch_func_transforms_like_the_density_benchmark():
    heads = [ChebyshevHead(D, 18, num_frequencies=5, regularization_gamma=1e-2, bin_mass=m) for m in ("centre", "integral")]
    for head in heads:
        params = {k: torch.stack([v, v * 1.5]) for k, v in head.named_parameters()}
        buffers = {k: torch.stack([v, v]) for k, v in head.named_buffers()}
        h = torch.randn(2, 4, D)

        def loss(p, b, x, head=head):
            log_probs, reg = torch.func.functional_call(head, (p, b), (x,))
            return -log_probs[..., 0].mean() + reg

        batched = torch.func.vmap(torch.func.grad(loss))(params, buffers, h)
        for m in range(2):
            p = {k: v[m].detach().requires_grad_() for k, v in params.items()}
            loss(p, dict(head.named_buffers()), h[m]).backward()
            for k in p:
                torch.testing.assert_close(batched[k][m], p[k].grad, rtol=1e-4, atol=1e-6)


def test_bad_parameters_are_clear_errors():
    with pytest.raises(ValueError, match="bin_mass must be one of centre, integral, got 'edges'"):
        build_head("chebyshev", D, 18, bin_mass="edges")
    with pytest.raises(ValueError, match="num_frequencies must be a positive integer, got 0"):
        build_head("chebyshev", D, 18, num_frequencies=0)
    with pytest.raises(ValueError, match="regularization_gamma must be >= 0"):
        build_head("chebyshev", D, 18, regularization_gamma=-1.0)


def test_matrices_are_buffers_not_saved():
    head = ChebyshevHead(D, 18, num_frequencies=3)
    assert set(head.state_dict()) == {"proj.weight", "proj.bias"}
    mats = chebyshev_matrices(3, 18)
    assert mats["centre_basis"].shape == (4, 18) and mats["node_basis"].shape == (4, 7)
    assert mats["mass_matrix"].shape == (7, 18) and mats["smooth"].shape == (7, 7)

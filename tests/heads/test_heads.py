import math

import numpy as np
import pytest
import torch

from fh_rl.heads import (
    HEADS,
    ContinuousOutput,
    FourierHead,
    Head,
    HeadOutput,
    available_heads,
    build_head,
    head_scores,
    register_head,
)
from fh_rl.heads.continuous import log_ndtr_difference
from fh_rl.heads.fourier import smoothness_matrices

D, K = 12, 18
SHAPES = [(), (3,), (3, 4)]


def _eps(head: Head) -> float:
    return getattr(head, "eps", 0.0)


def _tensors(out) -> list[torch.Tensor]:
    """The distribution's tensors of a head output, whatever the head scores."""
    return [t for t in out[:-1] if t is not None]


@pytest.mark.parametrize("name", available_heads("bins"))
@pytest.mark.parametrize("lead", SHAPES)
@pytest.mark.parametrize("action_dims", [1, 6])
def test_contract(name, lead, action_dims):
    torch.manual_seed(0)
    head = build_head(name, D, K, action_dims=action_dims)
    h = torch.randn(*lead, D)
    out = head(h)
    assert isinstance(out, HeadOutput)
    assert out.log_probs.shape == (*lead, action_dims, K)
    assert out.log_probs.dtype == torch.float32
    assert out.regularization.dim() == 0 and torch.isfinite(out.regularization)
    mass = out.log_probs.exp().sum(-1)
    torch.testing.assert_close(mass, torch.ones_like(mass), atol=K * _eps(head) + 1e-5, rtol=0)
    # every parameter receives a gradient through the NLL
    target = torch.randint(K, (*lead, action_dims))
    nll = -out.log_probs.gather(-1, target[..., None]).mean() + out.regularization
    nll.backward()
    for pname, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient for {pname}"


@pytest.mark.parametrize("name", available_heads("continuous"))
@pytest.mark.parametrize("lead", SHAPES)
@pytest.mark.parametrize("action_dims", [1, 6])
def test_continuous_contract(name, lead, action_dims):
    torch.manual_seed(0)
    head = build_head(name, D, K, action_dims=action_dims)
    assert head.scores == head_scores(name) == "continuous" and head.action_dtype == torch.float32
    h = torch.randn(*lead, D)
    out = head(h)
    assert isinstance(out, ContinuousOutput)
    assert out.mean.shape == (*lead, action_dims) and out.mean.dtype == torch.float32
    assert out.log_std is None or out.log_std.shape == out.mean.shape
    assert out.regularization.dim() == 0 and torch.isfinite(out.regularization)
    for action in (head.mode(out), head.sample(out, torch.Generator().manual_seed(0))):
        assert action.shape == (*lead, action_dims) and action.abs().max() <= 1
    log_probs = head.bin_log_probs(out)
    if log_probs is not None:
        assert log_probs.shape == (*lead, action_dims, K)
        torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(*lead, action_dims), atol=1e-5, rtol=0)
    # every parameter receives a gradient through the loss, also at actions on the bounds
    targets = torch.rand(*lead, action_dims) * 2 - 1
    targets.view(-1)[0] = 1.0
    loss = head.loss(out, targets)
    assert loss.shape == (*lead, action_dims) and torch.isfinite(loss).all()
    (loss.mean() + out.regularization).backward()
    for pname, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient for {pname}"


@pytest.mark.parametrize("name", available_heads())
def test_no_side_effects_and_deterministic(name):
    head = build_head(name, D, K, action_dims=2)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    h = torch.randn(5, D)
    a, b = head(h), head(h)
    for x, y in zip(_tensors(a), _tensors(b), strict=True):
        torch.testing.assert_close(x, y)
    for k, v in head.state_dict().items():
        torch.testing.assert_close(v, before[k])


@pytest.mark.parametrize("name", available_heads())
def test_wrong_input_width_is_a_clear_error(name):
    head = build_head(name, D, K)
    with pytest.raises(ValueError, match=r"expects input of shape \(\.\.\., 12\), got \(2, 5\)"):
        head(torch.randn(2, 5))


@pytest.mark.parametrize("name", available_heads())
def test_bf16_autocast_keeps_float32_distribution(name):
    head = build_head(name, D, K, action_dims=3)
    h = torch.randn(4, D)
    ref = head(h)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(h)
        log_probs = head.bin_log_probs(out)
    assert all(t.dtype == torch.float32 for t in _tensors(out))
    # only the input projection runs in bf16: the distribution stays close
    if log_probs is not None:
        assert log_probs.dtype == torch.float32
        assert (log_probs.exp() - head.bin_log_probs(ref).exp()).abs().max() < 2e-2
    assert (head.mode(out).float() - head.mode(ref).float()).abs().max() <= (0 if head.scores == "bins" else 2e-2)


@pytest.mark.parametrize("name", available_heads("bins"))
def test_bin_heads_mode_sample_and_loss(name):
    head = build_head(name, D, K, action_dims=2)
    out = head(torch.randn(5, D))
    torch.testing.assert_close(head.mode(out), out.log_probs.argmax(-1))
    targets = torch.randint(K, (5, 2))
    torch.testing.assert_close(head.loss(out, targets), -out.log_probs.gather(-1, targets[..., None])[..., 0])
    assert head.bin_log_probs(out, torch.linspace(-3, 3, 7)) is out.log_probs  # its bins are the codec's
    draws = torch.stack([head.sample(out, torch.Generator().manual_seed(s)) for s in range(4000)])  # (S, 5, 2)
    freq = torch.nn.functional.one_hot(draws, K).double().mean(0)
    pmf = out.log_probs.exp().double()
    torch.testing.assert_close(freq, pmf / pmf.sum(-1, keepdim=True), atol=0.03, rtol=0)


# ----------------------------------------------------------------- Fourier math


def direct_fourier_pmf(coef: np.ndarray, num_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """docs/heads.md ("The Fourier head") steps 2-5 literally, float64: returns (pmf, r) for coef (rows, 2(N+1))."""
    n1 = coef.shape[-1] // 2
    a = coef[:, :n1] + 1j * coef[:, n1:]
    N = n1 - 1
    r = np.zeros((a.shape[0], n1), dtype=complex)
    for k in range(n1):
        for j in range(n1 - k):
            r[:, k] += a[:, j + k] * np.conj(a[:, j])
    c = r / r[:, :1].real
    x = -1 + (2 * np.arange(num_bins) + 1) / num_bins
    p = 0.5 + np.real(sum(c[:, k : k + 1] * np.exp(1j * np.pi * k * x) for k in range(1, N + 1)))
    return p / p.sum(-1, keepdims=True), r


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
@pytest.mark.parametrize("N", [1, 8, 32])
def test_fourier_pmf_matches_design_formula(dtype, tol, N):
    torch.manual_seed(N)
    head = FourierHead(D, K, num_frequencies=N, init_scale=1.0).to(dtype)
    h = torch.randn(64, D, dtype=dtype)
    coef = head.coefficients(h)
    assert coef.dtype == dtype
    expected, _ = direct_fourier_pmf(coef.double().detach().numpy().reshape(-1, 2 * (N + 1)), K)
    pmf = head.pmf(h).reshape(-1, K).detach()
    assert pmf.dtype == dtype
    assert np.abs(pmf.double().numpy() - expected).max() <= tol
    log_probs = head(h).log_probs.reshape(-1, K).detach().double()
    assert np.abs(log_probs.exp().numpy() - 1e-5 - expected).max() <= max(tol, 1e-5)


def test_fourier_coefficient_layout_and_init():
    N = 8
    head = FourierHead(D, K, num_frequencies=N)
    assert isinstance(head.proj, torch.nn.Linear)
    assert head.proj.out_features == 2 * (N + 1) and head.proj.in_features == D
    ref = torch.nn.Linear(D, 2 * (N + 1))  # default init bound 1/sqrt(D), divided by 100
    bound = 1 / math.sqrt(D) / 100
    assert head.proj.weight.abs().max() <= bound and head.proj.bias.abs().max() <= bound
    assert head.proj.weight.abs().max() > bound / 10
    del ref
    # outputs [Re a_0..Re a_N, Im a_0..Im a_N]: a real-only a_0 gives a uniform pmf
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.zero_()
        head.proj.bias[0] = 1.0
    pmf = head.pmf(torch.randn(2, D))
    torch.testing.assert_close(pmf, torch.full_like(pmf, 1 / K))
    # a_0 = 1, a_1 = i (an imaginary part at index N+1+1) shifts mass: p(x) ∝ |1 + i e^{i pi x}|^2
    with torch.no_grad():
        head.proj.bias[N + 2] = 1.0
    x = head.bin_centers.double()
    expected = (1 + 1j * torch.exp(1j * math.pi * x)).abs() ** 2
    torch.testing.assert_close((expected / expected.sum()).float()[None], head.pmf(torch.zeros(D)).detach())


def test_fourier_bin_centers_buffer():
    head = FourierHead(D, 4)
    torch.testing.assert_close(head.bin_centers, torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert "bin_centers" in dict(head.named_buffers())


@pytest.mark.parametrize("action_dims", [1, 3])
def test_fourier_regularization_matches_formula(action_dims):
    N, gamma = 6, 1e-3
    torch.manual_seed(1)
    head = FourierHead(D, K, action_dims, num_frequencies=N, regularization_gamma=gamma, init_scale=1.0)
    h = torch.randn(7, 2, D)
    out = head(h)
    coef = head.coefficients(h).double().detach().numpy().reshape(-1, 2 * (N + 1))
    _, r = direct_fourier_pmf(coef, K)
    k = np.arange(N + 1)
    expected = gamma * 2 * np.mean(np.sum(2 * np.pi**2 * k**2 * np.abs(r) ** 2, axis=-1))
    assert out.regularization.item() == pytest.approx(expected, rel=1e-5)
    # gamma = 0 skips the regulariser entirely
    head.regularization_gamma = 0.0
    assert head(h).regularization.item() == 0.0


def test_fourier_density_nonnegative_and_integrates_to_one():
    torch.manual_seed(2)
    head = FourierHead(D, K, 2, num_frequencies=16, init_scale=1.0)
    with torch.no_grad():
        head.proj.weight.mul_(1e3)  # large random coefficients
    x = torch.linspace(-1, 1, 4001)
    p = head.density(torch.randn(10, D), x)  # (10, 2, P)
    assert p.shape == (10, 2, 4001)
    assert (p >= 0).all()
    integral = torch.trapezoid(p.double(), x.double(), dim=-1)
    torch.testing.assert_close(integral, torch.ones_like(integral), atol=1e-4, rtol=0)
    # the pmf is the density at the bin centres, normalised
    d = head.density(torch.zeros(D), head.bin_centers)
    torch.testing.assert_close(d / d.sum(-1, keepdim=True), head.pmf(torch.zeros(D)), atol=1e-6, rtol=0)


def test_fourier_has_no_row_loop_or_grouped_conv():
    import inspect

    import fh_rl.heads.fourier as mod

    src = inspect.getsource(mod)
    assert "conv1d" not in src and "groups=" not in src
    assert "for " not in inspect.getsource(FourierHead.forward)


def test_gmm_mixture_matches_direct_evaluation():
    torch.manual_seed(3)
    head = build_head("gmm", D, K, num_components=3)
    h = torch.randn(4, D)
    out = head(h).log_probs[:, 0].exp().detach().double()
    params = head.proj(h).detach().double().reshape(4, 3, 3)
    w = torch.softmax(params[:, 0], -1)
    mu, s = params[:, 1], torch.nn.functional.softplus(params[:, 2]) + 1e-3
    x = head.bin_centers.double()
    dens = (w[:, None, :] * torch.exp(-0.5 * ((x[None, :, None] - mu[:, None]) / s[:, None]) ** 2) / s[:, None]).sum(-1)
    torch.testing.assert_close(out, dens / dens.sum(-1, keepdim=True), atol=1e-6, rtol=0)


# ----------------------------------------------------------------- continuous heads


def test_mse_head_is_tanh_of_a_linear_map_with_squared_error():
    head = build_head("mse", D, K, action_dims=3)
    h = torch.randn(4, D)
    out = head(h)
    assert out.log_std is None and head.objective == "mse"
    expected = torch.tanh(h @ head.proj.weight.T + head.proj.bias)
    torch.testing.assert_close(head.mode(out), expected)
    torch.testing.assert_close(head.sample(out, torch.Generator().manual_seed(1)), expected)  # deterministic
    y = torch.rand(4, 3) * 2 - 1
    torch.testing.assert_close(head.loss(out, y), (expected - y) ** 2)
    assert head.bin_log_probs(out) is None  # a point prediction has no pmf


def _gaussian(action_dims=2, seed=0, **params):
    torch.manual_seed(seed)
    head = build_head("gaussian", D, K, action_dims=action_dims, **params)
    return head, head(torch.randn(6, D))


def test_gaussian_density_integrates_to_one_and_matches_the_change_of_variables():
    head, out = _gaussian(boundary_eps=1e-12, max_log_std=0.5)
    u = torch.linspace(-12, 12, 100_001, dtype=torch.float64)  # y = tanh(u): the grid follows the mass near +-1
    y = torch.tanh(u)
    out64 = ContinuousOutput(out.mean.detach().double(), out.log_std.detach().double(), out.regularization)
    nll = head.loss(ContinuousOutput(out64.mean[..., None], out64.log_std[..., None], out.regularization), y)  # (6, 2, P)
    density = torch.exp(-nll)
    integral = torch.trapezoid(density * (1 - y**2), u, dim=-1)  # dy = (1 - y^2) du
    torch.testing.assert_close(integral, torch.ones(6, 2, dtype=torch.float64), atol=1e-6, rtol=0)
    y = y[1000:-1000]  # away from the float64 rounding of tanh to +-1
    density = density[..., 1000:-1000]
    # p(y) = N(atanh y; mu, sigma) / (1 - y^2), written out directly
    mu, sigma = out64.mean[0, 0], out64.log_std[0, 0].exp()
    u = torch.atanh(y)
    direct = torch.exp(-0.5 * ((u - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi)) / (1 - y**2)
    torch.testing.assert_close(density[0, 0], direct, rtol=1e-9, atol=1e-12)


def test_gaussian_bins_are_the_exact_discretisation():
    head, out = _gaussian()
    log_probs = head.bin_log_probs(out)  # (6, 2, K) over the K cells of [-1, 1]
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(6, 2), atol=1e-5, rtol=0)
    # Monte Carlo of tanh(N(mu, sigma)): the same bin frequencies
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([head.sample(out, gen) for _ in range(20_000)])  # (S, 6, 2)
    freq = torch.stack([torch.histc(draws[:, i, a], K, -1, 1) for i in range(6) for a in range(2)]).reshape(6, 2, K)
    torch.testing.assert_close(freq / len(draws), log_probs.exp().detach(), atol=0.015, rtol=0)
    # Margin bins beyond [-1, 1] get no mass; the inner bins are unchanged.
    edges = torch.linspace(-1 - 4 / K, 1 + 4 / K, K + 5)  # two margin bins on each side
    with_margin = head.bin_log_probs(out, edges)
    assert with_margin.shape == (6, 2, K + 4)
    assert torch.isneginf(with_margin[..., :2]).all() and torch.isneginf(with_margin[..., -2:]).all()
    torch.testing.assert_close(with_margin[..., 2:-2], log_probs, atol=1e-5, rtol=1e-5)


def test_gaussian_mode_sample_and_bounds():
    head, out = _gaussian(min_log_std=-3.0, max_log_std=0.5)
    torch.testing.assert_close(head.mode(out), torch.tanh(out.mean))
    assert out.log_std.min() >= -3.0 and out.log_std.max() <= 0.5
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    torch.testing.assert_close(head.sample(out, g1), head.sample(out, g2))  # seeded
    with pytest.raises(ValueError, match="min_log_std must be < max_log_std"):
        build_head("gaussian", D, K, min_log_std=1.0, max_log_std=1.0)
    with pytest.raises(ValueError, match=r"boundary_eps must be in \(0, 1\)"):
        build_head("gaussian", D, K, boundary_eps=0.0)


def test_log_ndtr_difference_is_accurate_in_both_tails():
    mpmath = pytest.importorskip("mpmath")  # installed with torch (through sympy)
    mpmath.mp.dps = 60

    def phi(x):
        return mpmath.mpf(0) if x == -math.inf else mpmath.mpf(1) if x == math.inf else mpmath.ncdf(x)

    a = [-40.0, -9.0, -1.0, 0.5, 8.0, 30.0, -math.inf, 2.0, -math.inf]
    b = [-39.0, -8.5, 1.0, 0.6, 8.5, 31.0, math.inf, math.inf, -5.0]
    got = log_ndtr_difference(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    ref = [float(mpmath.log(phi(-x) - phi(-y) if x > 0 else phi(y) - phi(x))) for x, y in zip(a, b, strict=True)]  # 60 digits
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-12)
    empty = log_ndtr_difference(torch.tensor([math.inf, 3.0]), torch.tensor([math.inf, 3.0]))
    assert torch.isneginf(empty).all()  # empty bins (e.g. margins beyond [-1, 1])


def test_available_heads_by_kind():
    assert {"linear", "fourier", "gmm"} <= set(available_heads("bins"))
    assert {"mse", "gaussian"} <= set(available_heads("continuous"))
    assert sorted(available_heads("bins") + available_heads("continuous")) == available_heads()
    with pytest.raises(ValueError, match="scores must be"):
        available_heads("box")


# ----------------------------------------------------------------- registry


def test_unknown_head_lists_known_and_closest():
    with pytest.raises(ValueError, match=r"unknown head 'fourer'; did you mean 'fourier'\? Known heads: .*fourier.*gmm.*linear"):
        build_head("fourer", D, K)


def test_unknown_parameter_is_named():
    with pytest.raises(ValueError, match=r"head 'fourier' has no parameter 'num_frequency' \(did you mean 'num_frequencies'\?\)"):
        build_head("fourier", D, K, num_frequency=8)


def test_bad_parameter_values():
    with pytest.raises(ValueError, match="num_frequencies must be a positive integer"):
        build_head("fourier", D, K, num_frequencies=0)
    with pytest.raises(ValueError, match="num_bins must be at least 2"):
        build_head("linear", D, 1)


def test_register_twice_is_an_error():
    @register_head("_test_dummy")
    class Dummy(Head):
        def forward(self, h):
            raise NotImplementedError

    try:
        assert "_test_dummy" in available_heads()
        with pytest.raises(ValueError, match="head '_test_dummy' is already registered"):
            register_head("_test_dummy")(Dummy)
        with pytest.raises(TypeError, match="expects a subclass of fh_rl.heads.Head"):
            register_head("_test_other")(object)
    finally:
        HEADS._entries.pop("_test_dummy", None)


def test_entry_point_heads_are_registered(monkeypatch):
    from importlib import metadata

    from fh_rl.infra.registry import Registry

    class FakeEP:
        name = "plugin_head"

        def load(self):
            return FourierHead

    reg = Registry("head", entry_point_group="fh_rl.heads")
    monkeypatch.setattr(metadata, "entry_points", lambda group: [FakeEP()] if group == "fh_rl.heads" else [])
    assert "plugin_head" in reg.names()
    assert reg.get("plugin_head") is FourierHead


def test_fourier_regularization_matches_formula_at_32_frequencies():
    N, gamma = 32, 1e-2
    torch.manual_seed(3)
    head = FourierHead(D, K, 2, num_frequencies=N, regularization_gamma=gamma, init_scale=1.0).double()
    h = torch.randn(5, D, dtype=torch.float64)
    coef = head.coefficients(h).detach().numpy().reshape(-1, 2 * (N + 1))
    _, r = direct_fourier_pmf(coef, K)
    k = np.arange(N + 1)
    expected = gamma * 2 * np.mean(np.sum(2 * np.pi**2 * k**2 * np.abs(r) ** 2, axis=-1))
    assert head(h).regularization.item() == pytest.approx(expected, rel=1e-10)  # float64 matrices


@pytest.mark.parametrize("N", [1, 2, 8, 10, 11, 32])
def test_fourier_regularization_gradient_matches_the_definition(N):
    """The hand-written backward equals autograd through r_k = sum_j a_{j+k} conj(a_j), in float64."""
    torch.manual_seed(N)
    head = FourierHead(D, K, 3, num_frequencies=N, regularization_gamma=0.5, init_scale=1.0)
    coef = torch.randn(4, 5, 3, 2 * (N + 1), dtype=torch.float64, requires_grad=True)
    k = torch.arange(N + 1, dtype=torch.float64)
    by_definition = 0.5 * 2 * ((head.autocorrelation(coef).abs() ** 2) * 2 * math.pi**2 * k**2).sum(-1).mean()
    ours = head.regularization(coef)
    assert ours.dtype == torch.float64
    assert ours.item() == pytest.approx(by_definition.item(), rel=1e-10)
    expected, = torch.autograd.grad(by_definition, coef)
    got, = torch.autograd.grad(ours, coef)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(head.regularization, (coef[:1, :2].detach().requires_grad_(True),))


def test_fourier_regularization_takes_strided_coefficients():
    """The penalty reads Re a and Im a as transposed columns: any layout of the rows gives the same value and gradient."""
    torch.manual_seed(1)
    N = 12
    head = FourierHead(D, K, 2, num_frequencies=N, regularization_gamma=0.5).double()
    wide = torch.randn(6, 2, 4 * (N + 1), dtype=torch.float64)
    strided = wide[..., ::2].detach().requires_grad_(True)  # last-dimension stride 2
    transposed = strided.detach().transpose(0, 1).contiguous().transpose(0, 1).requires_grad_(True)
    dense = strided.detach().contiguous().requires_grad_(True)
    values = [head.regularization(c) for c in (strided, transposed, dense)]
    grads = [torch.autograd.grad(v, c)[0] for v, c in zip(values, (strided, transposed, dense), strict=True)]
    for v, g in zip(values[:2], grads[:2], strict=True):
        assert v.item() == pytest.approx(values[2].item(), rel=1e-12)
        torch.testing.assert_close(g, grads[2], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("N", [1, 5, 16])
def test_whole_grid_form_equals_the_penalty(N):
    """p^T Q p over |A|^2 on all 2N+1 grid points (the plain form the benchmark times) is the same penalty."""
    torch.manual_seed(N)
    head = FourierHead(D, K, 1, num_frequencies=N, regularization_gamma=1.0)
    coef = torch.randn(7, 1, 2 * (N + 1), dtype=torch.float64)
    basis, q = smoothness_matrices(N, whole_grid=True).values()
    M = 2 * N + 1
    z = coef.reshape(7, -1) @ basis
    p = z[:, :M] ** 2 + z[:, M:] ** 2
    plain = 2.0 * torch.einsum("rm,mn,rn->", p, q, p) / 7
    assert head.regularization(coef).item() == pytest.approx(plain.item(), rel=1e-10)


@pytest.mark.parametrize("N", [4, 12])
def test_fourier_regularization_under_torch_func_transforms(N):
    """vmap and grad (the density benchmark stacks runs with vmap) give the same values and gradients."""
    torch.manual_seed(N)
    head = FourierHead(D, K, 2, num_frequencies=N, regularization_gamma=0.3).double()
    coefs = torch.randn(3, 5, 2, 2 * (N + 1), dtype=torch.float64)
    one_by_one = torch.stack([head.regularization(c) for c in coefs])
    torch.testing.assert_close(torch.func.vmap(head.regularization)(coefs), one_by_one, rtol=1e-12, atol=0)
    c = coefs[0].clone().requires_grad_(True)
    expected, = torch.autograd.grad(head.regularization(c), c)
    torch.testing.assert_close(torch.func.grad(head.regularization)(coefs[0]), expected, rtol=1e-10, atol=1e-14)


def test_fourier_regularization_in_float32_and_under_autocast():
    torch.manual_seed(0)
    head = FourierHead(D, K, 2, num_frequencies=32, regularization_gamma=1e-3)
    h = torch.randn(6, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(h)
        coef = head.coefficients(h)  # bf16 matmul, returned in float32
        reg = head.regularization(coef)
    assert coef.dtype == reg.dtype == out.regularization.dtype == torch.float32
    assert reg.item() == out.regularization.item()
    assert reg.item() == pytest.approx(head.regularization(coef.double()).item(), rel=1e-5)

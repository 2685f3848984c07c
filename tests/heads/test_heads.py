import math

import numpy as np
import pytest
import torch

from fh_rl.heads import (
    HEADS,
    FourierHead,
    Head,
    HeadOutput,
    available_heads,
    build_head,
    register_head,
)

D, K = 12, 18
SHAPES = [(), (3,), (3, 4)]


def _eps(head: Head) -> float:
    return getattr(head, "eps", 0.0)


@pytest.mark.parametrize("name", available_heads())
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


@pytest.mark.parametrize("name", available_heads())
def test_no_side_effects_and_deterministic(name):
    head = build_head(name, D, K, action_dims=2)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    h = torch.randn(5, D)
    a, b = head(h), head(h)
    torch.testing.assert_close(a.log_probs, b.log_probs)
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
    ref = head(h).log_probs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(h)
    assert out.log_probs.dtype == torch.float32
    # only the input projection runs in bf16: the distribution stays close
    assert (out.log_probs.exp() - ref.exp()).abs().max() < 2e-2


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

    from fh_rl.registry import Registry

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
    assert head(h).regularization.item() == pytest.approx(expected, rel=1e-6)  # float32 buffers

"""A non-periodic density head: a squared Chebyshev series on [-1, 1] (not in the Fourier head paper).

The Fourier head's density is a trigonometric polynomial in pi x, so it is
periodic on [-1, 1]: mass put near +1 also appears near -1. This head keeps
its construction (a density that is a square, hence non-negative, with
a smoothness prior) on polynomials instead, which have no wrap-around.

For one output distribution over K bins with degree N:

1. a linear layer maps h to N+1 reals c_0..c_N (weight and bias divided by
   ``init_scale``, then the bias of c_0 set to ``C0_INIT`` = 0.1: f = 0.1 plus
   terms of about 0.005 each, so the head starts near the uniform density,
   yet at a scale small enough that Adam reshapes it as fast as the Fourier
   head's; a bias of 1 is more uniform still but learns markedly slower);
2. f(x) = sum_{k=0..N} c_k T_k(x), T_k the Chebyshev polynomials
   (T_k(cos theta) = cos(k theta));
3. p(x) = f(x)^2 / Z with Z = integral of f^2 over [-1, 1];
4. pmf: ``bin_mass="centre"`` (default, the Fourier head paper's convention):
   p at the K bin centres divided by its sum; ``bin_mass="integral"``: the
   exact integral of p over each bin; log_probs = log(pmf + eps);
5. regularisation = gamma * mean over rows of
   integral_{-1}^{1} P'(x)^2 sqrt(1 - x^2) dx with P = f^2 (unnormalised).

Derivation. The product rule T_j T_k = (T_{j+k} + T_{|j-k|}) / 2 makes
P = f^2 a Chebyshev series of degree 2N, P = sum_{m=0..2N} d_m T_m with
d_m = (sum_{j+k=m} c_j c_k + sum_{|j-k|=m} c_j c_k) / 2, a fixed bilinear map
of c. Integrals from -1 are known in closed form: I_0(x) = x + 1,
I_1(x) = (x^2 - 1) / 2 and, for m >= 2, I_m(x) = F_m(x) - F_m(-1) with
F_m = (T_{m+1} / (m+1) - T_{m-1} / (m-1)) / 2; over [-1, 1] the integral of
T_m is 2 / (1 - m^2) for even m and 0 for odd m. So
Z = sum_{m even} 2 d_m / (1 - m^2), and the mass of bin [e_j, e_{j+1}] is
sum_m d_m (I_m(e_{j+1}) - I_m(e_j)): a fixed (2N+1, K) matrix J applied to d.
p >= 0 (a square over a positive Z; Z = 0 only for c = 0), integrates to 1,
and p(-1) = f(-1)^2 / Z and p(1) = f(1)^2 / Z are unrelated: nothing wraps.

Implementation. Centre mode: normalising over the bins cancels Z, so the pmf
is f^2 at the centres over its sum, and f there is one matmul of c with the
fixed (N+1, K) matrix T_k(x_j): half the Fourier head's (2(N+1), 2K) cos/sin
matmul, the same squared-magnitude normalisation. Integral mode never forms
the (N+1)^2 products of d: P has degree 2N, so its coefficients are the exact
discrete cosine transform of its values at the M = 2N+1 Chebyshev-Gauss points
y_q = cos(pi (q + 1/2) / M) (discrete orthogonality of T_0..T_{M-1} there:
d_m = (2 - [m = 0]) / M sum_q P(y_q) T_m(y_q)). Folding that transform C into
J gives one fixed (M, K) matrix W = C J: f(y) is one (N+1, M) matmul, the bin
masses are f(y)^2 @ W, and they sum to Z exactly because the bins tile
[-1, 1]. Rounding can leave a mass a few ulps below 0 where P vanishes; it is
clamped at 0.

Regulariser. Under x = cos theta, P(cos theta) = sum_m d_m cos(m theta), so
integral_0^pi (dP/dtheta)^2 dtheta = (pi / 2) sum_m m^2 d_m^2; with
dP/dtheta = -P'(x) sin theta and dtheta = dx / sin theta it equals
integral_{-1}^{1} P'(x)^2 sqrt(1 - x^2) dx. It plays the Fourier head's role:
that head's penalty, gamma * 2 * mean sum_k 2 pi^2 k^2 |r_k|^2, is
gamma * mean integral_{-1}^{1} P'(x)^2 dx for its P = |A|^2. The weight
sqrt(1 - x^2) leaves steep features at the bounds (where the polynomial's
resolution is finest, and where saturated actions are) nearly free. Computed
as || f(y)^2 @ C diag(sqrt(pi / 2) m) ||^2 per row, through autograd.

Resolution: in theta, P is a cosine series of degree 2N, so it resolves
features about pi / (2N) wide in theta; in x that is about pi / (2N) near the
centre (Fourier at the same N: 1 / N, about 1.6x finer there) and about
(pi / (2N))^2 / 2 at the bounds (much finer).

All density math runs in float32 (float64 for float64 inputs), also under
autocast, in plain tensor ops (``torch.func`` transforms work).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fh_rl.heads.base import Head, HeadOutput, register_head

BIN_MASSES = ("centre", "integral")
C0_INIT = 0.1  # the bias of c_0 at initialisation (module docstring)


def chebyshev_basis(points: torch.Tensor, degree: int) -> torch.Tensor:
    """``(degree+1, P)`` matrix of T_k(x) at ``points`` (P,) in [-1, 1], by the three-term recurrence in float64."""
    x = points.to(torch.float64)
    rows = [torch.ones_like(x), x]
    for _ in range(2, degree + 1):
        rows.append(2.0 * x * rows[-1] - rows[-2])
    return torch.stack(rows[: degree + 1]).to(points.dtype)


def chebyshev_integrals(edges: torch.Tensor, degree: int) -> torch.Tensor:
    """``(degree+1, P)``: I_m(e) = integral from -1 to e of T_m, m = 0..degree, float64 (module docstring)."""
    e = edges.to(torch.float64)
    T = chebyshev_basis(e, degree + 1)  # (degree+2, P)
    out = torch.empty(degree + 1, e.shape[0], dtype=torch.float64)
    out[0] = e + 1.0
    if degree >= 1:
        out[1] = (e.square() - 1.0) / 2.0
    for m in range(2, degree + 1):
        at_minus_one = ((-1.0) ** (m + 1) / (m + 1) - (-1.0) ** (m - 1) / (m - 1)) / 2.0
        out[m] = (T[m + 1] / (m + 1) - T[m - 1] / (m - 1)) / 2.0 - at_minus_one
    return out


def chebyshev_matrices(degree: int, num_bins: int) -> dict[str, torch.Tensor]:
    """Fixed float64 matrices of the head (module docstring), by buffer name, for K = ``num_bins`` equal bins.

    ``centre_basis`` (N+1, K): T_k at the bin centres. ``node_basis`` (N+1, M): T_k at the M = 2N+1
    Chebyshev-Gauss points y_q. ``mass_matrix`` (M, K): W = C J, with ``P(y) @ W`` the exact mass of P
    (degree <= 2N) in each bin. ``smooth`` (M, M): C diag(sqrt(pi/2) m), with ``||P(y) @ smooth||^2``
    the regulariser's integral of P'(x)^2 sqrt(1 - x^2).
    """
    N, K, M = degree, num_bins, 2 * degree + 1
    centres = -1.0 + (2.0 * torch.arange(K, dtype=torch.float64) + 1.0) / K
    edges = torch.linspace(-1.0, 1.0, K + 1, dtype=torch.float64)
    y = torch.cos(math.pi * (torch.arange(M, dtype=torch.float64) + 0.5) / M)
    T_y = chebyshev_basis(y, M - 1)  # (M, M): T_m(y_q), m = 0..2N
    C = T_y.T * 2.0 / M  # (q, m): d = P(y) @ C
    C[:, 0] /= 2.0
    integrals = chebyshev_integrals(edges, M - 1)  # (M, K+1)
    J = integrals[:, 1:] - integrals[:, :-1]  # (M, K): integral of T_m over each bin
    m = torch.arange(M, dtype=torch.float64)
    return {
        "centre_basis": chebyshev_basis(centres, N),
        "node_basis": T_y[: N + 1],
        "mass_matrix": C @ J,
        "smooth": C * (math.sqrt(math.pi / 2.0) * m),
    }


@register_head("chebyshev")
class ChebyshevHead(Head):
    """Chebyshev head: a learned, smooth, non-periodic density on [-1, 1], p = f^2 / Z, quantised into K bins.

    Args:
        num_frequencies: N, the degree of f = sum_{k<=N} c_k T_k (in theta = arccos x, the
            highest frequency: cos(N theta)); the same key as the Fourier head's, so a sweep's
            ``head.num_frequencies`` serves both.
        regularization_gamma: weight of the smoothness prior (the integral of P'^2 sqrt(1 - x^2),
            the Fourier head's analogue); 0 disables it and skips its computation.
        init_scale: the coefficient layer's weight and bias are divided by this at initialisation,
            then the bias of c_0 is set to 0.1 (f = 0.1 + small: near the uniform density).
        eps: added to the pmf before the log (as the Fourier head's).
        bin_mass: ``centre``: p at the bin centres, normalised (the paper's convention);
            ``integral``: the exact integral of p over each bin.
    """

    def __init__(
        self,
        in_features: int,
        num_bins: int,
        action_dims: int = 1,
        *,
        num_frequencies: int = 8,
        regularization_gamma: float = 0.0,
        init_scale: float = 100.0,
        eps: float = 1e-5,
        bin_mass: str = "centre",
    ) -> None:
        super().__init__(in_features, num_bins, action_dims)
        self._set_series(num_frequencies, regularization_gamma, init_scale, eps)
        if bin_mass not in BIN_MASSES:
            raise ValueError(f"bin_mass must be one of {', '.join(BIN_MASSES)}, got {bin_mass!r}")
        self.bin_mass = bin_mass
        self.proj = nn.Linear(in_features, action_dims * (num_frequencies + 1))
        with torch.no_grad():
            self.proj.weight.div_(init_scale)
            self.proj.bias.div_(init_scale)
            self.proj.bias.view(action_dims, num_frequencies + 1)[:, 0] = C0_INIT  # f = 0.1 + small: near uniform
        for name, value in chebyshev_matrices(num_frequencies, num_bins).items():
            self.register_buffer(name, value, persistent=False)  # float64; cast where used

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_frequencies={self.num_frequencies}, "
            f"regularization_gamma={self.regularization_gamma}, bin_mass={self.bin_mass!r}"
        )

    def coefficients(self, h: torch.Tensor) -> torch.Tensor:
        """``(..., A, N+1)`` Chebyshev coefficients c_0..c_N of f per dimension (float32 or float64)."""
        self._check_input(h)
        coef = self._full_precision(self.proj(h))  # (..., A*(N+1))
        return coef.unflatten(-1, (self.action_dims, self.num_frequencies + 1))  # -> (..., A, N+1)

    def _pmf_from_coefficients(self, coef: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=coef.device.type, enabled=False):
            coef = self._full_precision(coef)
            if self.bin_mass == "centre":
                power = (coef @ self.centre_basis.to(coef.dtype)).square()  # f(x_j)^2, (..., A, K)
            else:
                at_nodes = (coef @ self.node_basis.to(coef.dtype)).square()  # P(y_q), (..., A, M)
                power = (at_nodes @ self.mass_matrix.to(coef.dtype)).clamp_min(0.0)  # bin masses, (..., A, K)
            return power / power.sum(dim=-1, keepdim=True)

    def pmf(self, h: torch.Tensor) -> torch.Tensor:
        """Exact pmf ``(..., A, K)`` (without the ``eps`` of ``log_probs``)."""
        return self._pmf_from_coefficients(self.coefficients(h))

    def regularization(self, coef: torch.Tensor) -> torch.Tensor:
        """gamma * mean over rows (every (..., A)) of the integral of P'(x)^2 sqrt(1 - x^2) over [-1, 1]."""
        with torch.autocast(device_type=coef.device.type, enabled=False):
            coef = self._full_precision(coef)
            rows = coef.reshape(-1, coef.shape[-1])  # (R, N+1)
            weighted = (rows @ self.node_basis.to(coef.dtype)).square() @ self.smooth.to(coef.dtype)  # (R, M)
            return self.regularization_gamma * weighted.square().sum() / rows.shape[0]

    def forward(self, h: torch.Tensor) -> HeadOutput:
        coef = self.coefficients(h)
        pmf = self._pmf_from_coefficients(coef)
        log_probs = torch.log(pmf + self.eps)
        if self.regularization_gamma > 0:
            reg = self.regularization(coef)
        else:
            reg = self._zero(h)
        return HeadOutput(log_probs, reg)

    def normaliser(self, coef: torch.Tensor) -> torch.Tensor:
        """Z = integral of f^2 over [-1, 1], ``(..., A)``, from coefficients ``(..., A, N+1)``."""
        coef = self._full_precision(coef)
        at_nodes = (coef @ self.node_basis.to(coef.dtype)).square()
        return at_nodes @ self.mass_matrix.to(coef.dtype).sum(-1)

    def density(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The continuous density p(x) = f(x)^2 / Z at points ``x`` (P,) in [-1, 1]: shape (..., A, P). For plots."""
        if x.dim() != 1:
            raise ValueError(f"density expects points of shape (P,), got {tuple(x.shape)}")
        coef = self.coefficients(h)
        with torch.autocast(device_type=coef.device.type, enabled=False):
            basis = chebyshev_basis(x.to(coef.device, coef.dtype), self.num_frequencies)
            return (coef @ basis).square() / self.normaliser(coef)[..., None]

"""The Fourier head of Gillman et al. 2024 (arXiv 2410.22269).

For one output distribution over K bins with N frequencies:

1. a linear layer maps h to 2(N+1) reals ``[Re a_0..Re a_N, Im a_0..Im a_N]``
   (weight and bias divided by ``init_scale`` at initialisation);
2. r_k = sum_j a_{j+k} conj(a_j), k = 0..N (autocorrelation);
3. c_k = r_k / r_0;
4. p(x) = 1/2 + Re sum_{k=1..N} c_k exp(i pi k x), a density on [-1, 1];
5. pmf = p(bin centres) / sum, log_probs = log(pmf + eps);
6. regularisation = gamma * 2 * mean_rows sum_k 2 pi^2 k^2 |r_k|^2.

Implementation: with A(x) = sum_j a_j exp(i pi j x), steps 2-4 equal
p(x) = |A(x)|^2 / (2 r_0) (Fejer-Riesz), and the 2 r_0 cancels in step 5. So
``[Re A, Im A]`` at the K bin centres is one real matmul of the coefficients
with a fixed (2(N+1), 2K) cos/sin matrix, and the pmf is the normalised
squared magnitude: no autocorrelation, no complex numbers, no loop over rows.
The autocorrelation is needed only for the regulariser (only when gamma > 0).
|A(x)|^2 = P(x) = sum_{|k|<=N} r_k exp(i pi k x) is a trigonometric polynomial
of degree N, so the r_k are the exact DFT of P at M = 2N+1 equispaced points of
one period (no aliasing since 2N < M), and sum_k w_k |r_k|^2 is a fixed
quadratic form p^T Q p of those samples. On the grid x_m = 2m/M, m = -N..N,
which is symmetric about 0, P splits into an even part E and an odd part O,
each known on the N+1 points x >= 0 from four real products Cu, Su, Cv, Sv
(cos/sin sums of Re a and Im a): E = Cu^2 + Su^2 + Cv^2 + Sv^2 and
O = 2 (Su Cv - Cu Sv). Q does not mix them, so the penalty is
E^T Qe E + O^T Qo O with two (N+1)-square matrices: about a quarter of the
work of evaluating P on the whole grid and taking its DFT. Its backward is
written by hand: small real matmuls (Re a and Im a share one [cos; sin]
block; the two forms are one batched matmul), no complex autograd, no FFT.
It works frequency-major, (N+1, rows), so its elementwise products run along
the rows in long contiguous strips. On a CPU it is faster than the plain form
p^T Q p on the whole grid through autograd from N = 8 up (about 2x at
N = 32) and at most ~0.25 ms slower below, at the Atari DT shape
(``benchmarks/heads.py --regulariser``); one exact form serves every N.
All density math runs in float32 (float64 for float64 inputs),
also under autocast.

Note: with ``eps > 0`` the returned log-probabilities exponentiate to
``pmf + eps``, which sums to ``1 + K * eps`` (the paper's choice, kept for
exactness); :meth:`FourierHead.pmf` gives the exact pmf.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from fh_rl.heads.base import Head, HeadOutput, register_head


def fourier_basis(points: torch.Tensor, num_frequencies: int) -> torch.Tensor:
    """Real matrix M (2(N+1), 2P) with ``[Re a, Im a] @ M = [Re A(x), Im A(x)]``.

    ``points`` (P,) in [-1, 1]; computed in float64 then returned as given dtype.
    """
    x = points.to(torch.float64)
    k = torch.arange(num_frequencies + 1, dtype=torch.float64)
    angle = math.pi * k[:, None] * x[None, :]  # (N+1, P)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Re A = sum_j Re a_j cos - Im a_j sin ;  Im A = sum_j Re a_j sin + Im a_j cos
    top = torch.cat([cos, sin], dim=1)  # rows for Re a_j: (N+1, 2P)
    bottom = torch.cat([-sin, cos], dim=1)  # rows for Im a_j: (N+1, 2P)
    return torch.cat([top, bottom], dim=0).to(points.dtype)  # (2(N+1), 2P)


def smoothness_matrices(num_frequencies: int, whole_grid: bool = False) -> dict[str, torch.Tensor]:
    """Fixed float64 matrices of the exact penalty sum_{k=1..N} 2 pi^2 k^2 |r_k|^2 (module docstring), by buffer name.

    ``reg_basis`` (2(N+1), N+1), the [cos; sin] block with ``reg_basis @ Re a = [Cu; Su]`` and
    ``reg_basis @ Im a = [Cv; Sv]``, the cos and sin sums of Re a and Im a at x_m = 2m/M, m = 0..N
    (M = 2N+1); ``reg_forms`` (2, N+1, N+1), the even and odd forms, with the penalty
    E^T even E + O'^T odd O' for E = Cu^2 + Su^2 + Cv^2 + Sv^2 and O' = Su Cv - Cu Sv.
    With ``whole_grid`` (the plain form, for tests and benchmarks): ``reg_grid_basis`` (2(N+1), 2M)
    gives ``[Re A, Im A]`` at the M grid points and ``reg_grid_form`` Q (M, M) makes the penalty
    p^T Q p for p = |A|^2 there.
    """
    N, N1, M = num_frequencies, num_frequencies + 1, 2 * num_frequencies + 1
    m = torch.arange(-N, N + 1, dtype=torch.float64)
    x = 2.0 * m / M  # one period, symmetric about 0
    k = torch.arange(1, N1, dtype=torch.float64)
    # |r_k|^2 = (1/M^2) sum_{m,m'} p_m p_m' cos(pi k (x_m - x_m')): the penalty is p^T Q p, and Q
    # depends on m - m' alone: tabulate its 2M-1 values, then index (no (M, M, N) intermediate)
    shift = torch.arange(-(M - 1), M, dtype=torch.float64)
    by_shift = (2.0 * math.pi**2 * k**2 * torch.cos(2.0 * math.pi * shift[:, None] * k / M)).sum(-1) / M**2
    Q = by_shift[(m[:, None] - m[None, :]).long() + (M - 1)]
    if whole_grid:
        return {"reg_grid_basis": fourier_basis(x, N), "reg_grid_form": Q}
    rows = torch.arange(M)
    fold_even = torch.zeros(M, N1, dtype=torch.float64)  # the even part of p at +-x_a is E_a
    fold_even[rows, m.abs().long()] = 1.0
    fold_odd = torch.zeros(M, N1, dtype=torch.float64)  # the odd part at +-x_a is +-2 O'_a (O'_0 = 0)
    fold_odd[rows, m.abs().long()] = 2.0 * torch.sign(m)
    even, odd = fold_even.T @ Q @ fold_even, fold_odd.T @ Q @ fold_odd
    angle = math.pi * x[N:, None] * torch.arange(N1, dtype=torch.float64)[None, :]  # (x_a >= 0, j)
    cos_sin = torch.cat([torch.cos(angle), torch.sin(angle)], dim=0)  # (2(N+1), N+1)
    return {"reg_basis": cos_sin, "reg_forms": torch.stack([even, odd])}


@functools.lru_cache(maxsize=8)
def _whole_grid_matrices(num_frequencies: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """``smoothness_matrices(N, whole_grid=True)`` on ``device`` in ``dtype``, built once."""
    return tuple(m.to(device, dtype) for m in smoothness_matrices(num_frequencies, whole_grid=True).values())


class _SmoothnessPenalty(torch.autograd.Function):
    """Sum over rows of sum_k 2 pi^2 k^2 |r_k|^2 from rows ``[Re a, Im a]`` (R, 2(N+1)); hand backward.

    Frequency-major: the cos/sin sums are laid out (N+1, R), so every elementwise
    product runs along the rows in long contiguous strips, and the matmuls read
    Re a and Im a as transposed columns of ``coef`` and write the gradient's two
    halves in place (no transposing copies).
    """

    @staticmethod
    def forward(ctx, coef, basis, forms):  # type: ignore[override]
        N1, R = basis.shape[1], coef.shape[0]
        y = coef.new_empty(2, 2 * N1, R)  # [Re a | Im a][cos | sin at x_a >= 0][rows]
        torch.mm(basis, coef[:, :N1].t(), out=y[0])
        torch.mm(basis, coef[:, N1:].t(), out=y[1])
        cu, su, cv, sv = y.view(4, N1, R).unbind(0)
        eo = y.new_empty(2, N1, R)  # E and O' side by side: one batched matmul for both forms
        e, o = eo[0], eo[1]
        torch.mul(cu, cu, out=e).addcmul_(su, su).addcmul_(cv, cv).addcmul_(sv, sv)
        torch.mul(su, cv, out=o).addcmul_(cu, sv, value=-1.0)
        # [2 Q_even, Q_odd]: the backward's relative factor 2 rides on a tiny matrix, not on (N+1, R) tensors
        q = torch.bmm(torch.cat([forms[:1] * 2.0, forms[1:]]), eo)
        ctx.save_for_backward(y, q, basis)
        return 0.5 * torch.dot(e.view(-1), q[0].view(-1)) + torch.dot(o.view(-1), q[1].view(-1))

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        y, q, basis = ctx.saved_tensors
        N1, R = basis.shape[1], y.shape[2]
        cu, su, cv, sv = y.view(4, N1, R).unbind(0)
        # d/dE = 2 Q_e E = q[0], d/dO' = 2 Q_o O' = 2 q[1]; with dE/dy = 2 y and dO'/dy = +-y', the gradient
        # wrt y is 2 (y q[0] +- y' q[1]): that 2 and the incoming grad scale the tiny basis below
        de, do = q[0], q[1]
        dy = torch.empty_like(y)
        dcu, dsu, dcv, dsv = dy.view(4, N1, R).unbind(0)
        torch.mul(cu, de, out=dcu).addcmul_(sv, do, value=-1.0)
        torch.mul(su, de, out=dsu).addcmul_(cv, do)
        torch.mul(cv, de, out=dcv).addcmul_(su, do)
        torch.mul(sv, de, out=dsv).addcmul_(cu, do, value=-1.0)
        scaled = basis * (2.0 * grad)
        dcoef = dy.new_empty(R, 2 * N1)
        torch.mm(dy[0].t(), scaled, out=dcoef[:, :N1])
        torch.mm(dy[1].t(), scaled, out=dcoef[:, N1:])
        return dcoef, None, None


@register_head("fourier")
class FourierHead(Head):
    """Fourier head: a learned, smooth density on [-1, 1] quantised into K bins.

    Args:
        num_frequencies: N, the number of frequencies (the paper's Atari
            setting is 8).
        regularization_gamma: weight of the smoothness prior (paper: 1e-6);
            0 disables it and skips its computation.
        init_scale: the coefficient layer's weight and bias are divided by
            this at initialisation (the paper's standalone head: 100; its Atari
            DT overwrites it with N(0, 0.02): ``agent.init: reference``).
        eps: added to the pmf before the log (paper: 1e-5).
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
    ) -> None:
        super().__init__(in_features, num_bins, action_dims)
        self._set_series(num_frequencies, regularization_gamma, init_scale, eps)
        n_coef = 2 * (num_frequencies + 1)
        self.proj = nn.Linear(in_features, action_dims * n_coef)
        with torch.no_grad():
            self.proj.weight.div_(init_scale)
            self.proj.bias.div_(init_scale)
        self.register_buffer("basis", fourier_basis(self.bin_centers, num_frequencies), persistent=False)
        for name, value in smoothness_matrices(num_frequencies).items():
            self.register_buffer(name, value, persistent=False)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_frequencies={self.num_frequencies}, "
            f"regularization_gamma={self.regularization_gamma}"
        )

    def coefficients(self, h: torch.Tensor) -> torch.Tensor:
        """``(..., A, 2(N+1))`` ``[Re a_0..Re a_N, Im a_0..Im a_N]`` per dimension (float32 or float64)."""
        self._check_input(h)
        coef = self._full_precision(self.proj(h))  # (..., A*2(N+1))
        return coef.unflatten(-1, (self.action_dims, 2 * (self.num_frequencies + 1)))  # -> (..., A, 2(N+1))

    def _pmf_from_coefficients(self, coef: torch.Tensor) -> torch.Tensor:
        K = self.num_bins
        with torch.autocast(device_type=coef.device.type, enabled=False):
            coef = self._full_precision(coef)
            re_im = coef @ self.basis.to(coef.dtype)  # (..., A, 2(N+1)) @ (2(N+1), 2K) -> (..., A, 2K)
            power = re_im[..., :K].square() + re_im[..., K:].square()  # |A(x_k)|^2, (..., A, K)
            return power / power.sum(dim=-1, keepdim=True)

    def pmf(self, h: torch.Tensor) -> torch.Tensor:
        """Exact pmf ``(..., A, K)`` (without the ``eps`` of ``log_probs``)."""
        return self._pmf_from_coefficients(self.coefficients(h))

    def autocorrelation(self, coef: torch.Tensor) -> torch.Tensor:
        """Complex r_k = sum_j a_{j+k} conj(a_j), k = 0..N, shape (..., A, N+1), by the definition.

        For inspection and tests; training never forms it (see :meth:`regularization`).
        """
        coef = self._full_precision(coef)
        N1 = self.num_frequencies + 1
        a = torch.complex(coef[..., :N1], coef[..., N1:])
        return torch.stack([(a[..., k:] * a[..., : N1 - k].conj()).sum(-1) for k in range(N1)], dim=-1)

    def regularization(self, coef: torch.Tensor) -> torch.Tensor:
        """gamma * 2 * mean over rows of sum_k 2 pi^2 k^2 |r_k|^2 (rows: every (..., A)), exactly."""
        with torch.autocast(device_type=coef.device.type, enabled=False):
            coef = self._full_precision(coef)
            rows = coef.reshape(-1, coef.shape[-1])
            if torch._C._are_functorch_transforms_active():  # torch.func.vmap / grad: no custom Function there
                total = self._whole_grid_penalty(rows)
            else:
                total = _SmoothnessPenalty.apply(rows, self.reg_basis.to(coef.dtype), self.reg_forms.to(coef.dtype))
            return self.regularization_gamma * 2.0 * total / rows.shape[0]

    def _whole_grid_penalty(self, rows: torch.Tensor) -> torch.Tensor:
        """Sum over rows of the penalty as p^T Q p on the whole grid, in plain ops (for torch.func transforms).

        Exact like the fast form; about its cost below N = 8, ~2x at N = 32. Its matrices are built on first
        use (and cached), not kept as buffers.
        """
        basis, q = _whole_grid_matrices(self.num_frequencies, rows.device, rows.dtype)
        M = q.shape[0]
        z = rows @ basis  # [Re A, Im A] at the M grid points
        p = z[:, :M].square() + z[:, M:].square()
        return torch.dot(p.reshape(-1), (p @ q).reshape(-1))

    def forward(self, h: torch.Tensor) -> HeadOutput:
        coef = self.coefficients(h)
        pmf = self._pmf_from_coefficients(coef)
        log_probs = torch.log(pmf + self.eps)
        if self.regularization_gamma > 0:
            reg = self.regularization(coef)
        else:
            reg = self._zero(h)
        return HeadOutput(log_probs, reg)

    def density(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The continuous density p(x) on [-1, 1] at points ``x`` (P,): shape (..., A, P).

        p(x) = |A(x)|^2 / (2 r_0) integrates to 1 over [-1, 1]. For plots.
        """
        if x.dim() != 1:
            raise ValueError(f"density expects points of shape (P,), got {tuple(x.shape)}")
        coef = self.coefficients(h)
        P = x.shape[0]
        with torch.autocast(device_type=coef.device.type, enabled=False):
            basis = fourier_basis(x.to(coef.device, coef.dtype), self.num_frequencies)
            re_im = coef @ basis  # (..., A, 2P)
            power = re_im[..., :P].square() + re_im[..., P:].square()
            r0 = coef.square().sum(dim=-1, keepdim=True)  # sum_j |a_j|^2
            return power / (2.0 * r0)

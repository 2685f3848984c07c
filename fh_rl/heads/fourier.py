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
The autocorrelation is needed only for the regulariser (only when gamma > 0):
|A(x)|^2 = sum_{|k|<=N} r_k exp(i pi k x) is a trigonometric polynomial of degree
N, so its r_k are the exact DFT of M = 2N+1 equispaced samples of |A|^2 (no
aliasing since 2N < M). That is a fixed bilinear map made of two small real
matmuls (samples, then the DFT), with no complex autograd and no FFT call.
All density math runs in float32 (float64 for float64 inputs),
also under autocast.

Note: with ``eps > 0`` the returned log-probabilities exponentiate to
``pmf + eps``, which sums to ``1 + K * eps`` (the paper's choice, kept for
exactness); :meth:`FourierHead.pmf` gives the exact pmf.
"""

from __future__ import annotations

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
        if not isinstance(num_frequencies, int) or isinstance(num_frequencies, bool) or num_frequencies < 1:
            raise ValueError(f"num_frequencies must be a positive integer, got {num_frequencies!r}")
        if regularization_gamma < 0:
            raise ValueError(f"regularization_gamma must be >= 0, got {regularization_gamma}")
        if init_scale <= 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.num_frequencies = num_frequencies
        self.regularization_gamma = float(regularization_gamma)
        self.init_scale = float(init_scale)
        self.eps = float(eps)
        n_coef = 2 * (num_frequencies + 1)
        self.proj = nn.Linear(in_features, action_dims * n_coef)
        with torch.no_grad():
            self.proj.weight.div_(init_scale)
            self.proj.bias.div_(init_scale)
        self.register_buffer("basis", fourier_basis(self.bin_centers, num_frequencies), persistent=False)
        k = torch.arange(num_frequencies + 1, dtype=torch.float64)
        self.register_buffer("reg_weights", (2.0 * math.pi**2 * k**2).float(), persistent=False)
        # Autocorrelation as the DFT of M = 2N+1 equispaced samples of |A(x)|^2 on [-1, 1).
        M = 2 * num_frequencies + 1
        x = -1.0 + 2.0 * torch.arange(M, dtype=torch.float64) / M
        self.register_buffer("sample_basis", fourier_basis(x, num_frequencies).float(), persistent=False)
        angle = math.pi * x[:, None] * k[None, :]  # (M, N+1)
        dft = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1) / M  # (M, 2(N+1)): -> [Re r_k, Im r_k]
        self.register_buffer("sample_dft", dft.float(), persistent=False)

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

    def _autocorrelation_parts(self, coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Re r_k, Im r_k), k = 0..N, each (..., A, N+1): the DFT of samples of |A(x)|^2."""
        N1, M = self.num_frequencies + 1, 2 * self.num_frequencies + 1
        with torch.autocast(device_type=coef.device.type, enabled=False):
            coef = self._full_precision(coef)
            re_im = coef @ self.sample_basis.to(coef.dtype)  # (..., A, 2(N+1)) -> (..., A, 2M)
            power = re_im[..., :M].square() + re_im[..., M:].square()  # |A(x_m)|^2, (..., A, M)
            r = power @ self.sample_dft.to(coef.dtype)  # (..., A, M) -> (..., A, 2(N+1))
            return r[..., :N1], r[..., N1:]

    def autocorrelation(self, coef: torch.Tensor) -> torch.Tensor:
        """Complex r_k = sum_j a_{j+k} conj(a_j), k = 0..N, shape (..., A, N+1)."""
        re, im = self._autocorrelation_parts(coef)
        return torch.complex(re, im)

    def regularization(self, coef: torch.Tensor) -> torch.Tensor:
        """gamma * 2 * mean over rows of sum_k 2 pi^2 k^2 |r_k|^2 (rows: every (..., A))."""
        re, im = self._autocorrelation_parts(coef)
        per_row = ((re.square() + im.square()) * self.reg_weights.to(re.dtype)).sum(dim=-1)  # (..., A)
        return self.regularization_gamma * 2.0 * per_row.mean()

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

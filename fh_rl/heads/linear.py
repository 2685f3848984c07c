"""Linear softmax head: the usual classification layer."""

from __future__ import annotations

import torch
from torch import nn

from fh_rl.heads.base import Head, HeadOutput, register_head


@register_head("linear")
class LinearHead(Head):
    """Logits from a linear layer, log-softmax over the K bins.

    One linear map per action dimension; they are stored as one
    ``nn.Linear(D, A*K)`` (the rows of dimension a are ``a*K .. (a+1)*K-1``),
    which is the same function as A separate layers and a single matmul.

    Args:
        bias: give the layer a bias (the Fourier head paper's Atari DT has none:
            ``bias: false`` in ``configs/atari/seaquest-paper.yaml``).
    """

    def __init__(self, in_features: int, num_bins: int, action_dims: int = 1, *, bias: bool = True) -> None:
        super().__init__(in_features, num_bins, action_dims)
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be true or false, got {bias!r}")
        self.proj = nn.Linear(in_features, action_dims * num_bins, bias=bias)

    def forward(self, h: torch.Tensor) -> HeadOutput:
        self._check_input(h)
        logits = self._full_precision(self.proj(h))  # (..., A*K), float32 even under autocast
        logits = logits.unflatten(-1, (self.action_dims, self.num_bins))  # (..., A*K) -> (..., A, K)
        return HeadOutput(torch.log_softmax(logits, dim=-1), self._zero(h))

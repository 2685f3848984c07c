"""Action heads: hidden state -> distribution over K bins, or over continuous actions, per action dimension.

Build by name::

    head = build_head("fourier", in_features=128, num_bins=18, num_frequencies=8)
    log_probs, reg = head(h)          # (..., A, K), scalar

Heads that score continuous actions (``mse``, ``gaussian``; ``head.scores ==
"continuous"``) return a :class:`ContinuousOutput` instead; see
:mod:`fh_rl.heads.base` for the methods every head offers agents.

Register your own with ``@register_head("name")`` on a :class:`Head` subclass,
or from another package through the entry-point group ``fh_rl.heads``.
"""

from fh_rl.heads.base import (
    HEADS,
    ContinuousHead,
    ContinuousOutput,
    Head,
    HeadOutput,
    available_heads,
    build_head,
    head_params,
    head_scores,
    normalized_pmf,
    register_head,
)
from fh_rl.heads.chebyshev import ChebyshevHead
from fh_rl.heads.continuous import GaussianHead, MSEHead
from fh_rl.heads.fourier import FourierHead
from fh_rl.heads.gmm import GMMHead
from fh_rl.heads.linear import LinearHead

__all__ = [
    "ChebyshevHead",
    "HEADS",
    "ContinuousHead",
    "ContinuousOutput",
    "FourierHead",
    "GaussianHead",
    "GMMHead",
    "Head",
    "HeadOutput",
    "LinearHead",
    "MSEHead",
    "available_heads",
    "build_head",
    "head_params",
    "head_scores",
    "normalized_pmf",
    "register_head",
]

"""Drawing: the TensorBoard pmf image of the training loop and matplotlib figures saved atomically.

``pmf_image`` draws with numpy alone (no plotting library in the training
loop); figure code (``fh_rl.compare``, ``benchmarks/density``) gets pyplot from
:func:`pyplot` (the non-interactive Agg backend) and writes with :func:`save_figure`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fh_rl.atomic import atomic_open


def pmf_image(pmf: torch.Tensor, targets: torch.Tensor, count: int = 8, height: int = 48) -> np.ndarray:
    """A (3, H, W) uint8 image: bar charts of ``count`` predicted pmfs (first action dim), one per row.

    Bars are blue, scaled to each pmf's maximum; the target bin's column is
    tinted red. Drawn with numpy (no plotting library in the training loop).
    """
    count = min(count, pmf.shape[0])
    K = pmf.shape[-1]
    px = max(1, 256 // K)  # pixels per bin
    p = pmf[:count, 0].float().cpu().numpy()  # (count, K)
    p = p / np.maximum(p.max(axis=1, keepdims=True), 1e-12)
    rows = np.arange(height)[::-1][None, :, None]  # (1, H, 1) pixel height from the bottom
    filled = rows < np.round(p * height)[:, None, :]  # (count, H, K)
    img = np.full((count, height, K, 3), 255, dtype=np.uint8)
    img[filled] = (31, 119, 180)
    tgt = targets[:count, 0].cpu().numpy()
    img[np.arange(count), :, tgt] = np.where(filled[np.arange(count), :, tgt][..., None], (214, 39, 40), (250, 200, 200))
    img[:, -1] = 0  # a dark baseline separating rows
    img = np.repeat(img, px, axis=2).reshape(count * height, K * px, 3)  # (count, H, K*px, 3) -> (count*H, W, 3)
    return img.transpose(2, 0, 1)  # (3, H_total, W)


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (figures go to files, never to a window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically, then close it (frees its memory)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return path

"""Drawing: predicted pmfs over labelled action bins, and matplotlib figures saved atomically.

:func:`draw_pmfs` is the one way a pmf is drawn: TensorBoard's ``val/pmf``
images (:func:`pmf_image`) and ``compare``'s pmf figures both use it, with the
bins labelled by :func:`bin_axis` (Atari action names, Box action values) and
the dataset's action marked. Figure code gets pyplot from :func:`pyplot` (the
non-interactive Agg backend) and writes with :func:`save_figure`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fh_rl.infra.atomic import atomic_open


@dataclass(frozen=True)
class BinAxis:
    """How one action dimension's K bins read on a plot: action names (discrete) or action values (Box)."""

    labels: list[str]
    """One label per bin: the action's name (Atari: NOOP, FIRE, ...) or its value (the bin centre)."""
    values: np.ndarray | None = None
    """Box: the bins' centres in action units (the x positions); None: bins are categories 0..K-1."""
    bounds: tuple[float, float] | None = None
    """Box: the action bounds; bins beyond them (``env.margin_bins``) are shaded as never-target."""
    title: str = "action bin"
    """The x-axis title."""

    @property
    def x(self) -> np.ndarray:
        return self.values if self.values is not None else np.arange(len(self.labels))


def bin_axis(codec: Any = None, num_bins: int | None = None, dim: int = 0) -> BinAxis:
    """The :class:`BinAxis` of an action codec's dimension ``dim`` (plain bin numbers without a codec)."""
    if codec is None:
        return BinAxis([str(b) for b in range(int(num_bins or 0))])
    if hasattr(codec, "order"):  # DiscreteCodec: bin b is env action order[b]
        meanings = codec.action_meanings
        names = [meanings[a] if meanings else f"action {a}" for a in codec.order.tolist()]
        return BinAxis(names, title=f"action ({codec.ordering} order)")
    m = codec.margin_bins
    low, width = float(codec.low[dim]), float(codec.width[dim])
    centres = low + (np.arange(codec.num_bins) - m + 0.5) * width  # margin bins sit beyond the bounds
    what = "action" if codec.action_dims == 1 else f"action[{dim}]"
    return BinAxis([f"{c:.3g}" for c in centres], centres, (low, float(codec.high[dim])), f"{what} value")


def draw_pmfs(ax: Any, axis: BinAxis, pmfs: Sequence[tuple[str, np.ndarray]], target: int | None = None,
              title: str | None = None, points: Sequence[tuple[str, int]] = ()) -> None:
    """Draw predicted pmfs ``(label, (K,))`` over ``axis`` on a matplotlib ``ax``; mark the dataset action ``target``.

    One pmf is drawn as bars, several as overlaid lines (heads side by side).
    ``points`` ``(label, bin)`` are heads without a pmf (point predictions): a dotted line at their bin.
    The shared plotting code of TensorBoard's ``val/pmf`` images and ``compare``'s figures.
    """
    x = axis.x
    width = float(np.min(np.diff(x))) if len(x) > 1 else 1.0
    if axis.bounds is not None and len(x) and (x[0] < axis.bounds[0] or x[-1] > axis.bounds[1]):
        for lo, hi in ((x[0] - width / 2, axis.bounds[0]), (axis.bounds[1], x[-1] + width / 2)):
            ax.axvspan(lo, hi, color="0.9", lw=0, zorder=0)
    if len(pmfs) == 1:  # one filled step artist: 8 panels of ~100 separate bars took seconds to draw
        edges = np.concatenate([x - width / 2, x[-1:] + width / 2]) if len(x) else np.zeros(1)
        p = np.asarray(pmfs[0][1], dtype=float)
        ax.stairs(p, edges, fill=True, color="#1f77b4", label=pmfs[0][0] or None)
        if 1 < len(x) <= 32:  # few bins: white separators (one artist) keep them apart
            ax.vlines(edges[1:-1], 0, np.maximum(p[:-1], p[1:]), colors="white", lw=1.0)
    else:
        for label, pmf in pmfs:
            ax.plot(x, pmf, lw=1.4, marker="o" if axis.values is None else None, ms=3, label=label)
    for j, (label, b) in enumerate(points):  # colours continue the lines' cycle
        ax.axvline(x[int(b)], color=f"C{len(pmfs) + j}", ls=":", lw=1.8, label=f"{label}, point prediction")
    if target is not None:
        ax.axvline(x[int(target)], color="#d62728", ls="--", lw=2.0, label=f"dataset action ({axis.labels[int(target)]})")
    if axis.values is None:
        ax.set_xticks(x, axis.labels, rotation=90, fontsize=7 if len(x) > 8 else 8)
    ax.set_xlabel(axis.title, fontsize=8)
    ax.set_ylabel("probability", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title, fontsize=9)


def pmf_image(pmf: torch.Tensor, targets: torch.Tensor, axis: BinAxis | None = None, count: int = 8) -> np.ndarray:
    """A (3, H, W) uint8 image of ``count`` predicted pmfs (first action dimension), one panel each, with axes,
    bin labels and the dataset action marked (TensorBoard's ``val/pmf``; :func:`draw_pmfs`)."""
    plt = pyplot()
    count = min(count, pmf.shape[0])
    p = pmf[:count, 0].float().cpu().numpy()  # (count, A, K) -> (count, K)
    tgt = targets[:count, 0].cpu().numpy()
    axis = axis or bin_axis(num_bins=p.shape[-1])
    cols = 2 if count > 1 else 1
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, dpi=90)
    try:
        for i, ax in enumerate(axes.flat):
            if i >= count:
                ax.axis("off")
                continue
            draw_pmfs(ax, axis, [("", p[i])], int(tgt[i]), title=f"held-out step {i + 1}")
        axes.flat[0].legend(fontsize=7, loc="upper right")
        # Fixed margins in inches (tight_layout renders every label once more just to measure it: as long
        # as the drawing itself). Below each panel: tick labels (rotated bin names need their length) and
        # the axis title; above: the panel title. The figure grows to fit them around 3.6 x 1.8 in panels.
        below = 0.5 if axis.values is not None else 0.45 + 0.065 * max((len(label) for label in axis.labels), default=1)
        above, left, right, between, panel_w, panel_h = 0.3, 0.6, 0.15, 0.6, 3.6, 1.8
        width_in = left + right + cols * panel_w + (cols - 1) * between
        height_in = rows * (panel_h + below + above)
        fig.set_size_inches(width_in, height_in)
        fig.subplots_adjust(left=left / width_in, right=1 - right / width_in, bottom=below / height_in,
                            top=1 - above / height_in, wspace=between / panel_w, hspace=(below + above) / panel_h)
        fig.canvas.draw()
        img = np.asarray(fig.canvas.buffer_rgba())[..., :3]  # (H, W, 3)
    finally:
        plt.close(fig)
    return np.ascontiguousarray(img.transpose(2, 0, 1))  # (3, H, W)


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

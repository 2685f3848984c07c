"""The TensorBoard custom-scalars layout that overlays every run's metric in one chart."""

from __future__ import annotations

from pathlib import Path

CUSTOM_SCALARS_LAYOUT = {
    "evaluation (all runs overlaid)": {
        "return mean": ["Multiline", [r"eval/return_mean/.*"]],
        "normalised return": ["Multiline", [r"eval/normalized/.*"]],
    },
    "validation (all runs overlaid)": {
        "held-out NLL over the bins (pmf)": ["Multiline", [r"val/nll$"]],
        "held-out NLL of the action (density on [-1, 1])": ["Multiline", [r"val/nll_density$"]],
        "held-out accuracy": ["Multiline", [r"val/accuracy$"]],
        "held-out smoothness": ["Multiline", [r"val/smoothness$"]],
        "held-out action MSE ([-1, 1] scale)": ["Multiline", [r"val/action_mse$"]],
    },
    "training (all runs overlaid)": {
        "loss": ["Multiline", [r"train/loss$"]],
        "NLL over the bins (pmf)": ["Multiline", [r"train/nll$"]],
        "NLL of the action (density)": ["Multiline", [r"train/nll_density$"]],
        "squared error (mse head)": ["Multiline", [r"train/mse$"]],
        "head regularisation": ["Multiline", [r"train/regularization$"]],
    },
}
"""One chart per metric; each chart overlays that metric of every run under the logdir (heads side by side)."""

LAYOUT_SUFFIX = ".fh_rl-layout"


def write_custom_scalars(root: str | Path) -> Path:
    """Write the custom-scalars layout into ``root`` once (``tensorboard --logdir root`` opens it)."""
    from torch.utils.tensorboard import SummaryWriter

    root = Path(root)
    existing = sorted(root.glob(f"events.out.tfevents.*{LAYOUT_SUFFIX}"))
    if existing:
        return existing[0]
    with SummaryWriter(str(root), filename_suffix=LAYOUT_SUFFIX) as writer:
        writer.add_custom_scalars(CUSTOM_SCALARS_LAYOUT)
        path = Path(writer.file_writer.event_writer._file_name)
    return path


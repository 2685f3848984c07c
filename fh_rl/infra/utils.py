"""Small shared helpers: seeding, devices."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str, what: str = "train.device") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as given (checked; ``what`` names the setting)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{what} {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} is {name!r} but CUDA is not available here; use {what}=cpu or auto"
                         if "." in what else f"{what} is {name!r} but CUDA is not available here; use {what} cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{what} is {name!r} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device

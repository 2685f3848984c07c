"""Small shared helpers: atomic file writes, seeding, devices."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from fh_rl.atomic import atomic_open, atomic_write_bytes, atomic_write_text  # noqa: F401 (re-exported)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file next to ``path``, then ``os.replace`` (never a half-written checkpoint)."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device is {name!r} but CUDA is not available here; use train.device=cpu or auto")
    return device

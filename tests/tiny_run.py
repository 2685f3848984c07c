"""A tiny real training config for CLI-level tests, on the ``pendulum_hdf5`` fixture's data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def write_tiny_config(directory: Path, dataset: Path, **train) -> Path:
    """Write ``tiny.yaml`` (a tiny DT on ``dataset``, the ``pendulum_hdf5`` fixture; dropout off, no eval workers)."""
    cfg = {
        "seed": 0,
        "env": {"name": "Pendulum-v1", "num_bins": 16},
        "dataset": {"format": "hdf5", "path": str(dataset), "val_fraction": 0.25},
        "agent": {"name": "dt", "embed_dim": 16, "n_layer": 1, "n_head": 2, "context_len": 4, "max_timestep": 200,
                  "dropout": 0.0},
        "head": {"name": "fourier", "num_frequencies": 4, "regularization_gamma": 1e-3},
        "train": {"steps": 6, "batch_size": 8, "log_every": 1, "val_every": 3, "val_batches": 2,
                  "checkpoint_every": 3, "warmup_tokens": 16, "pmf_states": 0, "threads": 1, "device": "cpu", **train},
        "eval": {"episodes": 1, "workers": 0, "target_quantile": 0.75, "decode": "argmax"},
    }
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def child_env() -> dict[str, str]:
    """The environment of a subprocess that imports this checkout, one thread per process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["OMP_NUM_THREADS"] = "1"
    return env


PYTHON = sys.executable

"""A tiny real training setup for CLI-level tests: 8 short random Pendulum-v1 episodes (HDF5) and a DT config."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent


def write_tiny_config(directory: Path, **train) -> Path:
    """Write ``p.hdf5`` and ``tiny.yaml`` (dropout off, no eval workers) into ``directory``; returns the YAML path."""
    from fh_rl.datasets import Episode, TrajectoryDataset, write_hdf5

    env = gym.make("Pendulum-v1")
    env.action_space.seed(0)
    episodes = []
    for i in range(8):
        obs, _ = env.reset(seed=i)
        O, A, R = [], [], []
        for _ in range(25):
            a = env.action_space.sample()
            O.append(obs)
            A.append(a)
            obs, r, *_ = env.step(a)
            R.append(r)
        episodes.append(Episode(np.array(O, np.float32), np.array(A, np.float32), np.array(R, np.float32), False, True))
    write_hdf5(directory / "p.hdf5", TrajectoryDataset(episodes, name="pendulum-tiny"))
    cfg = {
        "seed": 0,
        "env": {"name": "Pendulum-v1", "num_bins": 16},
        "dataset": {"format": "hdf5", "path": str(directory / "p.hdf5"), "val_fraction": 0.25},
        "agent": {"name": "dt", "embed_dim": 16, "n_layer": 1, "n_head": 2, "context_len": 4, "max_timestep": 200,
                  "dropout": 0.0},
        "head": {"name": "fourier", "num_frequencies": 4, "regularization_gamma": 1e-3},
        "train": {"steps": 6, "batch_size": 8, "log_every": 1, "val_every": 3, "val_batches": 2,
                  "checkpoint_every": 3, "warmup_tokens": 16, "pmf_states": 0, "threads": 1, "device": "cpu", **train},
        "eval": {"episodes": 1, "workers": 0, "target_quantile": 0.75, "sample": False},
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

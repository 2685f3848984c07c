"""The smallest real run: a one-layer Decision Transformer on Pendulum-v1, for smoke tests.

Tests, the fault campaign (``benchmarks/faults.py``) and anyone checking an installation use it:

    cfg = tiny_config("datasets/pendulum-tiny.hdf5", train={"steps": 20}, eval={"episodes": 2})
    load_config(write_tiny_config(tmp_dir, data))

It trains in about a second on one CPU thread. Each keyword replaces or adds keys of its section.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

TINY: dict[str, Any] = {
    "seed": 0,
    "env": {"name": "Pendulum-v1", "num_bins": 16},
    "dataset": {"format": "hdf5", "val_fraction": 0.25},
    "agent": {"name": "dt", "embed_dim": 16, "n_layer": 1, "n_head": 2, "context_len": 4, "max_timestep": 200,
              "dropout": 0.0},
    "head": {"name": "fourier", "num_frequencies": 4, "regularization_gamma": 1e-3},
    "train": {"steps": 6, "batch_size": 8, "log_every": 1, "val_every": 3, "val_batches": 2,
              "checkpoint_every": 3, "warmup_tokens": 16, "pmf_states": 0, "threads": 1, "device": "cpu"},
    "eval": {"episodes": 1, "workers": 0, "target_quantile": 0.75, "decode": "argmax"},
}


def tiny_config(dataset: str | Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """The tiny run on ``dataset`` (a Pendulum-v1 HDF5 file) as a nested dict, sections updated by ``sections``."""
    cfg = copy.deepcopy(TINY)
    cfg["dataset"]["path"] = str(dataset)
    for name, values in sections.items():
        if name not in cfg or not isinstance(cfg[name], dict):
            raise ValueError(f"tiny_config: unknown section {name!r}; sections: "
                             f"{', '.join(k for k, v in cfg.items() if isinstance(v, dict))}")
        cfg[name].update(values)
    return cfg


def write_tiny_config(directory: str | Path, dataset: str | Path, name: str = "tiny.yaml",
                      **sections: dict[str, Any]) -> Path:
    """Write :func:`tiny_config` to ``directory/name`` and return its path."""
    path = Path(directory) / name
    path.write_text(yaml.safe_dump(tiny_config(dataset, **sections)))
    return path

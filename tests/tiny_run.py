"""A tiny real training config for CLI-level tests, on the ``pendulum_hdf5`` fixture's data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fh_rl.config.tiny import write_tiny_config as _write

REPO = Path(__file__).resolve().parent.parent


def write_tiny_config(directory: Path, dataset: Path, **train) -> Path:
    """Write ``tiny.yaml`` (:func:`fh_rl.config.tiny.tiny_config` on the ``pendulum_hdf5`` fixture), ``train`` updated."""
    return _write(directory, dataset, train=train)


def child_env() -> dict[str, str]:
    """The environment of a subprocess that imports this checkout, one thread per process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["OMP_NUM_THREADS"] = "1"
    return env


PYTHON = sys.executable

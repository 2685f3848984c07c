"""fh_rl.datasets: offline trajectories (DQN-Replay, HDF5), and batch samplers for the agents.

Names are imported lazily, so that ``python -m fh_rl.datasets.download`` and
the readers start without importing torch (only the samplers and batches need it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Episode": "fh_rl.datasets.trajectory",
    "TrajectoryDataset": "fh_rl.datasets.trajectory",
    "WindowBatch": "fh_rl.datasets.batch",
    "TransitionBatch": "fh_rl.datasets.batch",
    "WindowSampler": "fh_rl.datasets.sampling",
    "TransitionSampler": "fh_rl.datasets.sampling",
    "load_dqn_replay": "fh_rl.datasets.dqn_replay",
    "DQNReplayWriter": "fh_rl.datasets.dqn_replay",
    "load_hdf5": "fh_rl.datasets.hdf5",
    "write_hdf5": "fh_rl.datasets.hdf5",
    "load_minari": "fh_rl.datasets.hdf5",
    "write_minari": "fh_rl.datasets.hdf5",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from fh_rl.datasets.batch import TransitionBatch, WindowBatch
    from fh_rl.datasets.dqn_replay import DQNReplayWriter, load_dqn_replay
    from fh_rl.datasets.hdf5 import load_hdf5, load_minari, write_hdf5, write_minari
    from fh_rl.datasets.sampling import TransitionSampler, WindowSampler
    from fh_rl.datasets.trajectory import Episode, TrajectoryDataset


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fh_rl.datasets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

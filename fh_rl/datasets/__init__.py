"""fh_rl.datasets: offline trajectories (DQN-Replay, HDF5), and batch samplers for the agents."""

from fh_rl.datasets.batch import TransitionBatch, WindowBatch
from fh_rl.datasets.dqn_replay import DQNReplayWriter, load_dqn_replay
from fh_rl.datasets.hdf5 import load_hdf5, load_minari, write_hdf5
from fh_rl.datasets.sampling import TransitionSampler, WindowSampler
from fh_rl.datasets.trajectory import Episode, TrajectoryDataset

__all__ = [
    "Episode",
    "TrajectoryDataset",
    "WindowBatch",
    "TransitionBatch",
    "WindowSampler",
    "TransitionSampler",
    "load_dqn_replay",
    "DQNReplayWriter",
    "load_hdf5",
    "write_hdf5",
    "load_minari",
]

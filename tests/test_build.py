"""The build layer: statistics from the training split, the dataset's reward transform, held-out batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_run import write_tiny_config

from fh_rl.build import build, held_out_batches
from fh_rl.config import load_config
from fh_rl.datasets import TrajectoryDataset, load_dqn_replay, load_hdf5

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "dqn-replay"  # written by Dopamine's own replay logger


def test_rtg_scale_and_state_statistics_come_from_the_training_split(tmp_path, pendulum_hdf5):
    data = load_hdf5(pendulum_hdf5)
    biggest = int(np.argmax(np.abs(data.episode_returns)))
    # A seed whose held-out split holds the episode with the largest |return|: the full data's scale would differ.
    seed = next(s for s in range(100) if biggest not in _train_episode_returns_index(data, s))
    cfg = load_config(write_tiny_config(tmp_path, pendulum_hdf5), seed=seed)
    built = build(cfg, progress=False)
    train_max = float(np.abs(built.train.episode_returns).max())
    assert float(built.agent.rtg_scale) == pytest.approx(train_max)
    assert train_max < float(np.abs(data.episode_returns).max())
    assert built.val is not None and len(built.train) + len(built.val) == len(data)
    torch.testing.assert_close(built.agent.state_dict()["state_encoder.state_mean"], torch.from_numpy(built.train.state_mean()))
    fixed = build(load_config(write_tiny_config(tmp_path, pendulum_hdf5), overrides=["dataset.rtg_scale=7.5"]),
                  progress=False)
    assert float(fixed.agent.rtg_scale) == 7.5


def _train_episode_returns_index(data: TrajectoryDataset, seed: int) -> set[int]:
    """Indices (in ``data``) of the episodes that ``split(0.25, seed)`` puts in the training split."""
    train, _ = data.split(0.25, seed)
    returns = list(np.asarray(data.episode_returns))
    return {returns.index(r) for r in np.asarray(train.episode_returns)}


def test_the_dataset_declares_its_reward_transform(tmp_path, pendulum_hdf5):
    assert load_hdf5(pendulum_hdf5).reward_transform == "none"
    replay = load_dqn_replay(FIXTURE, "Breakout", progress=False)
    assert replay.reward_transform == "clip"  # DQN-Replay stores clipped rewards
    train, val = replay.split(0.3, seed=0)
    assert train.reward_transform == val.reward_transform == "clip"
    for _ in range(2):  # the first call writes the cache, the second reads it
        sampled = load_dqn_replay(FIXTURE, "Breakout", max_transitions=300, cache=True, cache_dir=tmp_path,
                                  progress=False)
        assert sampled.reward_transform == "clip"
    with pytest.raises(ValueError, match="reward_transform must be one of"):
        TrajectoryDataset(replay.subset([0]).episodes(), reward_transform="tanh")


def test_held_out_batches_are_the_ones_build_makes(tmp_path, pendulum_hdf5):
    cfg = load_config(write_tiny_config(tmp_path, pendulum_hdf5))
    made = build(cfg, progress=False).val_batches
    light = held_out_batches(cfg, progress=False)
    assert len(made) == len(light) == cfg.train.val_batches
    for a, b in zip(made, light, strict=True):
        torch.testing.assert_close(a.states, b.states)
        torch.testing.assert_close(a.actions, b.actions)

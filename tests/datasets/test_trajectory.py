"""TrajectoryDataset: flat storage, returns-to-go, timesteps, splits, hashing."""

from __future__ import annotations

import numpy as np
import pytest

from fh_rl.datasets import Episode, TrajectoryDataset


def _episodes(seed=0, n=6, S=3, continuous=False):
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(n):
        T = int(rng.integers(1, 30))
        acts = rng.normal(size=(T, 2)).astype(np.float32) if continuous else rng.integers(0, 5, size=T)
        eps.append(Episode(rng.normal(size=(T, S)).astype(np.float32), acts, rng.normal(size=T).astype(np.float32),
                           terminated=i % 2 == 0, truncated=i % 2 == 1))
    return eps


def test_flat_arrays_returns_to_go_and_timesteps():
    eps = _episodes()
    ds = TrajectoryDataset(eps, name="toy")
    assert len(ds) == len(eps) and ds.num_transitions == sum(len(e) for e in eps)
    rtg = np.concatenate([[e.rewards[t:].sum(dtype=np.float64) for t in range(len(e))] for e in eps])
    np.testing.assert_allclose(ds.returns_to_go, rtg, rtol=1e-5, atol=1e-5)
    assert ds.returns_to_go.dtype == np.float32
    assert np.array_equal(ds.timesteps, np.concatenate([np.arange(len(e)) for e in eps]))
    np.testing.assert_allclose(ds.episode_returns, [e.rewards.sum(dtype=np.float64) for e in eps], rtol=1e-6)
    for a, b in zip(ds.episodes(), eps):
        assert np.array_equal(a.observations, b.observations) and np.array_equal(a.actions, b.actions)
        assert (a.terminated, a.truncated) == (b.terminated, b.truncated)
    st = ds.stats()
    assert st["episodes"] == len(eps) and st["transitions"] == ds.num_transitions
    assert st["return_min"] <= st["return_mean"] <= st["return_max"]
    assert ds.state_shape == (3,) and ds.is_discrete and ds.action_dims == 1
    assert ds.actions.dtype == np.int64
    np.testing.assert_allclose(ds.state_mean(), np.concatenate([e.observations for e in eps]).mean(0), rtol=1e-5)
    assert ds.state_std().shape == (3,)


def test_continuous_actions_and_frames():
    ds = TrajectoryDataset(_episodes(continuous=True))
    assert not ds.is_discrete and ds.action_dims == 2 and ds.actions.dtype == np.float32
    frames = TrajectoryDataset([Episode(np.zeros((5, 84, 84), np.uint8), np.zeros(5, np.int64), np.zeros(5, np.float32))], frame_stack=4)
    assert frames.state_shape == (4, 84, 84)
    with pytest.raises(ValueError, match="state_mean is defined for vector states"):
        frames.state_mean()


def test_split_by_whole_episodes_and_hash():
    ds = TrajectoryDataset(_episodes(n=20))
    train, val = ds.split(0.25, seed=1)
    assert len(train) + len(val) == 20 and len(val) == 5
    assert train.num_transitions + val.num_transitions == ds.num_transitions
    originals = {e.observations.tobytes() for e in ds.episodes()}
    assert {e.observations.tobytes() for e in train.episodes() + val.episodes()} == originals
    assert ds.split(0.25, seed=1)[1].content_hash() == val.content_hash()
    assert ds.content_hash() == TrajectoryDataset(_episodes(n=20)).content_hash()
    assert ds.content_hash() != TrajectoryDataset(_episodes(seed=1, n=20)).content_hash()
    with pytest.raises(ValueError, match="val_fraction must be in"):
        ds.split(1.5)


def test_bad_input():
    with pytest.raises(ValueError, match="at least one episode"):
        TrajectoryDataset([])
    with pytest.raises(ValueError, match="same length"):
        TrajectoryDataset([Episode(np.zeros((3, 2), np.float32), np.zeros(2, np.int64), np.zeros(3, np.float32))])
    with pytest.raises(ValueError, match="frame_stack=4 expects single uint8 frames"):
        TrajectoryDataset(_episodes(), frame_stack=4)

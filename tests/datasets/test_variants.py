"""Dataset variants (action noise, two behaviour modes, episode fraction) and the fixed held-out split."""

import json

import gymnasium as gym
import numpy as np
import pytest

from fh_rl.build import build, held_out_batches, split_dataset
from fh_rl.config import config_from_dict
from fh_rl.config.tiny import tiny_config
from fh_rl.datasets import load_hdf5
from fh_rl.datasets.variants import add_action_noise, apply_variant, episode_fraction, mirror_half


def _raw(path, seed=0, **dataset):
    raw = tiny_config(path)
    raw["dataset"].update(dataset)
    return {**raw, "seed": seed}


def _cfg(path, **dataset):
    return config_from_dict(_raw(path, **dataset))


def test_mirrored_half_is_the_mirror_policys_data(pendulum_hdf5):
    base = load_hdf5(pendulum_hdf5)
    two = mirror_half(base, "Pendulum-v1", seed=3)
    lengths = np.diff(base.offsets)
    flipped = [e for e in range(len(base)) if not np.array_equal(two.actions[base.offsets[e]:base.offsets[e + 1]],
                                                                   base.actions[base.offsets[e]:base.offsets[e + 1]])]
    assert len(flipped) == len(base) // 2
    rows = np.repeat(np.isin(np.arange(len(base)), flipped), lengths)
    np.testing.assert_array_equal(two.actions[rows], -base.actions[rows])
    np.testing.assert_array_equal(two.observations[rows], base.observations[rows] * np.float32([1, -1, -1]))
    np.testing.assert_array_equal(two.observations[~rows], base.observations[~rows])
    np.testing.assert_array_equal(two.episode_returns, base.episode_returns)
    # A mirrored episode is an episode of the environment: replaying its torques from its mirrored start
    # reproduces its states and rewards.
    e = flipped[0]
    env = gym.make("Pendulum-v1")
    env.reset(seed=0)
    cos, sin, omega = two.observations[base.offsets[e]]
    env.unwrapped.state = np.array([np.arctan2(sin, cos), omega], dtype=np.float64)
    for t in range(base.offsets[e], base.offsets[e + 1] - 1):
        obs, reward, *_ = env.step(two.actions[t])
        np.testing.assert_allclose(obs, two.observations[t + 1], atol=1e-4)
        assert reward == pytest.approx(float(two.rewards[t]), abs=1e-3)
    # Seeded: the same seed picks the same half, another seed another half.
    np.testing.assert_array_equal(mirror_half(base, "Pendulum-v1", seed=3).actions, two.actions)
    assert not np.array_equal(mirror_half(base, "Pendulum-v1", seed=4).actions, two.actions)
    with pytest.raises(ValueError, match="two_modes needs a known mirror symmetry.*'CartPole-v1'.*Pendulum-v1"):
        mirror_half(base, "CartPole-v1")


def test_action_noise_has_the_stated_scale_and_stays_in_bounds(pendulum_hdf5):
    base = load_hdf5(pendulum_hdf5)
    low, high = np.float32([-2.0]), np.float32([2.0])
    noisy = add_action_noise(base, 0.05, low, high, seed=0)
    diff = (noisy.actions - base.actions)[np.abs(base.actions) < 1.5]  # far from the bounds: no clipping
    assert diff.std() == pytest.approx(0.05 * 2.0, rel=0.15) and abs(diff.mean()) < 0.03
    wide = add_action_noise(base, 0.5, low, high, seed=0)
    assert wide.actions.min() >= -2.0 and wide.actions.max() <= 2.0 and (np.abs(wide.actions) == 2.0).mean() > 0.05
    np.testing.assert_array_equal(add_action_noise(base, 0.05, low, high, seed=0).actions, noisy.actions)
    np.testing.assert_array_equal(noisy.rewards, base.rewards)
    cfg = _cfg(pendulum_hdf5)  # noise 0 and one mode: the data as recorded
    assert apply_variant(base, cfg.dataset, "Pendulum-v1", gym.make("Pendulum-v1").action_space) is base


def test_episode_fraction_picks_the_same_episodes_for_every_run(pendulum_hdf5):
    base = load_hdf5(pendulum_hdf5)
    part = episode_fraction(base, 0.25, seed=0)
    assert len(part) == 2 and part.num_transitions == 50
    np.testing.assert_array_equal(episode_fraction(base, 0.25, seed=0).observations, part.observations)
    assert episode_fraction(base, 1.0, seed=0) is base
    assert len(episode_fraction(base, 0.01, seed=0)) == 1  # at least one episode


def test_fixed_split_seed_holds_out_the_same_episodes_for_every_run_seed(pendulum_hdf5):
    data = load_hdf5(pendulum_hdf5)

    def val_returns(seed, **dataset):
        cfg = config_from_dict(_raw(pendulum_hdf5, seed, **dataset))
        return split_dataset(cfg, data)[1].episode_returns.tolist()

    assert val_returns(0, split_seed=7) == val_returns(1, split_seed=7) == val_returns(2, split_seed=7)
    assert len({tuple(val_returns(s)) for s in range(4)}) > 1  # default: the split follows the run seed
    # The episode fraction cuts the training split only; the held-out split stays.
    cfg = config_from_dict(_raw(pendulum_hdf5, 1, split_seed=7, episode_fraction=0.5))
    train, val = split_dataset(cfg, data)
    assert val.episode_returns.tolist() == val_returns(0, split_seed=7) and len(train) == 3  # 6 training episodes / 2


def test_bad_variant_settings_are_one_line_errors(pendulum_hdf5):
    with pytest.raises(ValueError, match="dataset.episode_fraction must be in"):
        _cfg(pendulum_hdf5, episode_fraction=0)
    with pytest.raises(ValueError, match="dataset.action_noise must be in"):
        _cfg(pendulum_hdf5, action_noise=-0.1)


def test_a_run_trains_on_its_variant_and_its_manifest_says_which(pendulum_hdf5, tmp_path):
    from fh_rl.train import dataset_identity

    cfg = _cfg(pendulum_hdf5, action_noise=0.5, two_modes=True, episode_fraction=0.5, split_seed=1)
    built = build(cfg, progress=False)
    base = load_hdf5(pendulum_hdf5)
    assert built.dataset.content_hash() != base.content_hash()
    assert len(built.val) == 2 and len(built.train) == 3
    identity = dataset_identity(cfg, built.dataset, built.train, built.val)
    assert identity["variant"] == {"action_noise": 0.5, "two_modes": True, "episode_fraction": 0.5, "variant_seed": 0,
                                   "split_seed": 1}
    json.dumps(identity)  # plain JSON for the manifest
    # Held-out batches rebuilt for a figure see the same variant as training did.
    again = held_out_batches(cfg, progress=False)
    np.testing.assert_array_equal(again[0].actions, built.val_batches[0].actions)

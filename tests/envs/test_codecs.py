"""Action codecs: joystick order, round trips (numpy and torch, any leading shape), configs, errors."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from fh_rl.envs import BoxCodec, codec_from_config, joystick_order, make_codec, make_env, make_env_codec

LEADING = [(), (5,), (2, 3)]

# The paper's order written out by hand as Seaquest env action ids
# (ALE ids: NOOP 0, FIRE 1, UP 2, RIGHT 3, LEFT 4, DOWN 5, UPRIGHT 6, UPLEFT 7,
# DOWNRIGHT 8, DOWNLEFT 9, UPFIRE 10, RIGHTFIRE 11, LEFTFIRE 12, DOWNFIRE 13,
# UPRIGHTFIRE 14, UPLEFTFIRE 15, DOWNRIGHTFIRE 16, DOWNLEFTFIRE 17):
# NOOP, LEFT, UPLEFT, UP, UPRIGHT, RIGHT, DOWNRIGHT, DOWN, DOWNLEFT,
# the same eight with FIRE, then FIRE.
SEAQUEST_PAPER_ORDER = [0, 4, 7, 2, 6, 3, 8, 5, 9, 12, 15, 10, 14, 11, 16, 13, 17, 1]


def test_seaquest_joystick_order_is_the_papers():
    env = make_env("Seaquest")
    codec = make_codec(env.action_space, ordering="joystick", action_meanings=env.unwrapped.get_action_meanings())
    assert codec.num_bins == 18 and codec.action_dims == 1
    assert codec.decode(np.arange(18)[:, None]).tolist() == SEAQUEST_PAPER_ORDER
    assert codec.encode(np.array(SEAQUEST_PAPER_ORDER))[:, 0].tolist() == list(range(18))


def test_codec_for_env_by_name():
    codec = make_env_codec("ALE/Seaquest-v5", ordering="joystick")
    assert codec.decode(np.arange(18)[:, None]).tolist() == SEAQUEST_PAPER_ORDER
    hopper = make_env_codec("Hopper-v5", num_bins=8)
    assert (hopper.action_dims, hopper.num_bins) == (3, 8)
    np.testing.assert_allclose(hopper.low, -1.0)


def test_joystick_order_for_minimal_action_sets():
    # Breakout: NOOP, FIRE, RIGHT, LEFT -> NOOP, LEFT, RIGHT, FIRE.
    assert joystick_order(["NOOP", "FIRE", "RIGHT", "LEFT"]) == [0, 3, 2, 1]
    # Pong: NOOP FIRE RIGHT LEFT RIGHTFIRE LEFTFIRE
    meanings = make_env("Pong").unwrapped.get_action_meanings()
    order = [meanings[i] for i in joystick_order(meanings)]
    assert order == ["NOOP", "LEFT", "RIGHT", "LEFTFIRE", "RIGHTFIRE", "FIRE"]
    with pytest.raises(ValueError, match=r"\['JUMP'\] are not ALE joystick actions"):
        joystick_order(["NOOP", "JUMP"])


@pytest.mark.parametrize("ordering", ["identity", "joystick"])
@pytest.mark.parametrize("leading", LEADING)
def test_discrete_round_trip_numpy_and_torch(ordering, leading):
    meanings = ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN"]
    codec = make_codec(gym.spaces.Discrete(6), ordering=ordering, action_meanings=meanings)
    actions = np.random.default_rng(0).integers(0, 6, size=leading)
    bins = codec.encode(actions)
    assert isinstance(bins, np.ndarray) and bins.dtype == np.int64 and bins.shape == (*leading, 1)
    np.testing.assert_array_equal(codec.decode(bins), actions)
    tbins = codec.encode(torch.as_tensor(actions))
    assert isinstance(tbins, torch.Tensor) and tbins.dtype == torch.int64
    np.testing.assert_array_equal(tbins.numpy(), bins)
    decoded = codec.decode(tbins)
    assert isinstance(decoded, torch.Tensor)
    np.testing.assert_array_equal(decoded.numpy(), actions)
    if ordering == "identity":
        np.testing.assert_array_equal(bins[..., 0], actions)


@pytest.mark.parametrize("leading", LEADING)
def test_box_round_trip(leading):
    space = gym.spaces.Box(np.array([-1, 0, -2], np.float32), np.array([1, 10, 2], np.float32), dtype=np.float32)
    codec = make_codec(space, num_bins=16)
    assert (codec.num_bins, codec.action_dims) == (16, 3)
    rng = np.random.default_rng(1)
    actions = rng.uniform(space.low, space.high, size=(*leading, 3)).astype(np.float32)
    bins = codec.encode(actions)
    assert bins.dtype == np.int64 and bins.shape == (*leading, 3)
    assert bins.min() >= 0 and bins.max() < 16
    centres = codec.decode(bins)
    assert centres.dtype == np.float32 and centres.shape == actions.shape
    width = (space.high - space.low) / 16
    assert np.all(np.abs(centres - actions) <= width / 2 + 1e-6)
    np.testing.assert_array_equal(codec.encode(centres), bins)
    # torch in, torch out, same bins
    tbins = codec.encode(torch.as_tensor(actions))
    np.testing.assert_array_equal(tbins.numpy(), bins)
    np.testing.assert_allclose(codec.decode(tbins).numpy(), centres, rtol=1e-6)


def test_box_bin_edges_bounds_and_sampling():
    codec = BoxCodec([-1.0], [1.0], num_bins=4, sample_within_bin=True)
    edges = np.array([[-1.0], [-0.5], [0.0], [0.5], [1.0], [-5.0], [5.0]])
    assert codec.encode(edges)[:, 0].tolist() == [0, 1, 2, 3, 3, 0, 3]
    np.testing.assert_allclose(codec.decode(np.arange(4)[:, None])[:, 0], [-0.75, -0.25, 0.25, 0.75])
    bins = np.repeat(np.arange(4), 500)[:, None]
    samples = codec.decode(bins, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(codec.encode(samples), bins)  # every sample stays in its bin
    assert samples[bins[:, 0] == 0].std() > 0.1  # spread over the bin, not its centre
    tsamples = codec.decode(torch.as_tensor(bins), rng=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(codec.encode(tsamples).numpy(), bins)
    # Without an rng decoding is deterministic: the centre.
    np.testing.assert_allclose(codec.decode(np.array([[2]])), [[0.25]])


def test_box_margin_bins_are_never_targets_and_decode_to_the_bounds():
    codec = BoxCodec([-2.0], [2.0], num_bins=4, margin_bins=3)
    assert codec.num_bins == 4 + 2 * 3 and codec.action_bins == 4
    actions = np.array([[-2.0], [-1.5], [-0.5], [0.5], [1.99], [2.0], [-9.0], [9.0]])
    bins = codec.encode(actions)[:, 0]
    assert bins.tolist() == [3, 3, 4, 5, 6, 6, 3, 6]  # inner bins 3..6 only
    np.testing.assert_array_equal(codec.encode(torch.as_tensor(actions)).numpy()[:, 0], bins)
    # every head bin decodes; margin bins give the nearest bound's bin centre
    decoded = codec.decode(np.arange(10)[:, None])[:, 0]
    np.testing.assert_allclose(decoded, [-1.5, -1.5, -1.5, -1.5, -0.5, 0.5, 1.5, 1.5, 1.5, 1.5])
    np.testing.assert_allclose(codec.decode(torch.arange(10)[:, None]).numpy()[:, 0], decoded)
    np.testing.assert_array_equal(codec.encode(codec.decode(bins[:, None])), bins[:, None])
    with pytest.raises(ValueError, match="margin_bins must be an int >= 0"):
        BoxCodec([-1.0], [1.0], num_bins=4, margin_bins=-1)


@pytest.mark.parametrize(
    "space, kwargs",
    [
        (gym.spaces.Box(-2.0, 2.0, (1,)), {"num_bins": 16, "margin_bins": 4}),
        (gym.spaces.Discrete(18), {"ordering": "joystick", "action_meanings": make_env("Seaquest").unwrapped.get_action_meanings()}),
        (gym.spaces.Box(-1.0, 1.0, (6,)), {"num_bins": 32, "sample_within_bin": True}),
    ],
)
def test_config_round_trip(space, kwargs):
    codec = make_codec(space, **kwargs)
    config = json.loads(json.dumps(codec.config()))
    rebuilt = codec_from_config(config)
    assert type(rebuilt) is type(codec) and rebuilt.config() == codec.config()
    bins = np.random.default_rng(0).integers(0, codec.num_bins, size=(7, codec.action_dims))
    np.testing.assert_array_equal(rebuilt.decode(bins), codec.decode(bins))


def test_codec_errors():
    discrete = make_codec(gym.spaces.Discrete(4))
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\], found \[0, 4\]"):
        discrete.encode(np.array([0, 4]))
    with pytest.raises(TypeError, match="must be integers"):
        discrete.encode(np.array([0.5]))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., A\) with A = 1, got \(3,\)"):
        discrete.decode(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="num_bins=5 but the Discrete space has 4"):
        make_codec(gym.spaces.Discrete(4), num_bins=5)
    with pytest.raises(ValueError, match="needs action_meanings"):
        make_codec(gym.spaces.Discrete(4), ordering="joystick")
    with pytest.raises(ValueError, match="must be finite"):
        make_codec(gym.spaces.Box(-np.inf, np.inf, (2,)))
    box = make_codec(gym.spaces.Box(-1.0, 1.0, (2,)), num_bins=8)
    with pytest.raises(ValueError, match=r"A = 2, got \(4, 3\)"):
        box.encode(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"must lie in \[0, 7\]"):
        box.decode(np.array([[0, 8]]))
    with pytest.raises(TypeError, match="MultiBinary"):
        make_codec(gym.spaces.MultiBinary(3))
    with pytest.raises(ValueError, match="not an action codec config"):
        codec_from_config({"type": "tree"})


# ----------------------------------------------------------------- the [-1, 1] scale of heads that score continuous actions


def test_box_unit_scale_round_trip_clip_and_torch():
    codec = make_codec(gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32)), num_bins=4)
    actions = np.array([[-2.0, 0.0], [0.0, 5.0], [2.0, 10.0], [1.0, 2.5]], np.float32)
    unit = codec.to_unit(actions)
    np.testing.assert_allclose(unit, [[-1, -1], [0, 0], [1, 1], [0.5, -0.5]])
    assert unit.dtype == np.float32
    np.testing.assert_allclose(codec.from_unit(unit), actions, atol=1e-6)
    np.testing.assert_allclose(codec.to_unit(np.array([[5.0, -1.0]])), [[1, -1]])  # outside the Box: clipped
    np.testing.assert_allclose(codec.from_unit(np.array([[1.5, -3.0]])), [[2, 0]])
    t = torch.as_tensor(actions)
    assert torch.equal(codec.to_unit(t), torch.as_tensor(unit))
    assert codec.from_unit(codec.to_unit(t)).dtype == torch.float32
    with pytest.raises(ValueError, match=r"must have shape \(\.\.\., A\) with A = 2"):
        codec.to_unit(np.zeros(3))


def test_unit_bin_edges_are_the_codec_bins():
    codec = make_codec(gym.spaces.Box(-2.0, 2.0, (1,)), num_bins=4, margin_bins=2)
    edges = codec.unit_bin_edges()
    np.testing.assert_allclose(edges, [-2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2])  # K + 2m + 1, margins beyond +-1
    a = np.random.default_rng(0).uniform(-2, 2, (500, 1)).astype(np.float32)
    by_edges = np.searchsorted(edges, codec.to_unit(a)[:, 0], side="right") - 1
    np.testing.assert_array_equal(by_edges, codec.encode(a)[:, 0])


def test_discrete_actions_have_no_unit_scale():
    codec = make_codec(gym.spaces.Discrete(6))
    assert not codec.continuous and codec.unit_bin_edges() is None
    with pytest.raises(ValueError, match=r"Discrete\(6\) actions have no continuous scale: .*need a Box action space"):
        codec.to_unit(np.array([1]))

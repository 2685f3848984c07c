"""make_env against the real ALE and MuJoCo: shapes, stacking, protocols, caps, names."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fh_rl.envs import (
    ATARI_MAX_EPISODE_STEPS,
    canonical_env_name,
    env_kind,
    make_env,
    resolve_protocol,
)


def ale(env):
    return env.unwrapped.ale


@pytest.mark.parametrize("name", ["Seaquest", "ALE/Seaquest-v5", "seaquest"])
def test_atari_observations_are_uint8_stacks_newest_last(name):
    env = make_env(name)
    assert env.observation_space.shape == (4, 84, 84)
    assert env.observation_space.dtype == np.uint8
    obs, _ = env.reset(seed=3)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    # Zeros before the episode's first frame, like the DQN-Replay states.
    assert not obs[:3].any()
    # The newest frame is ALE's grayscale screen resized with INTER_AREA.
    expected = cv2.resize(ale(env).getScreenGrayscale(), (84, 84), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(obs[-1], expected)
    frames = [obs[-1]]
    rng = np.random.default_rng(0)
    for _ in range(12):
        prev = obs
        obs, *_ = env.step(int(rng.integers(env.action_space.n)))
        np.testing.assert_array_equal(obs[:-1], prev[1:])  # shifted by one, newest last
        frames.append(obs[-1])
    np.testing.assert_array_equal(obs, np.stack(frames[-4:]))
    assert any(not np.array_equal(a, b) for a, b in zip(frames, frames[1:], strict=False))


def test_dqn_replay_protocol_settings_in_effect():
    env = make_env("Seaquest")
    assert resolve_protocol("Seaquest", None) == "dqn-replay"
    assert ale(env).getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert env.action_space.n == len(env.unwrapped.get_action_meanings())  # minimal set
    _, info = env.reset(seed=0)
    assert info["episode_frame_number"] == 0  # no no-op starts
    for step in range(1, 6):
        _, _, _, _, info = env.step(0)
        assert info["episode_frame_number"] == 4 * step  # one frame skip of 4, not 4 x 4
    assert env.get_wrapper_attr("_max_episode_steps") == ATARI_MAX_EPISODE_STEPS == 27_000
    assert env.get_wrapper_attr("terminal_on_life_loss") is False


def test_dt_paper_protocol_settings_in_effect():
    env = make_env("Breakout", protocol="dt-paper")
    assert ale(env).getFloat("repeat_action_probability") == 0.0
    starts = set()
    for seed in range(6):
        _, info = env.reset(seed=seed)
        assert 1 <= info["episode_frame_number"] <= 30  # 1..30 no-op frames
        starts.add(info["episode_frame_number"])
        _, _, _, _, info2 = env.step(0)
        assert info2["episode_frame_number"] == info["episode_frame_number"] + 4
    assert len(starts) > 1


def test_dt_paper_code_protocol_settings_in_effect():
    """The DT/Fourier-head papers' evaluation code: no sticky actions, 0..29 no-op frames, INTER_LINEAR resize."""
    import cv2

    env = make_env("Breakout", protocol="dt-paper-code")
    assert ale(env).getFloat("repeat_action_probability") == 0.0
    starts = set()
    for seed in range(40):
        obs, info = env.reset(seed=seed)
        assert 0 <= info["episode_frame_number"] <= 29
        starts.add(info["episode_frame_number"])
    assert 0 in starts and len(starts) > 10
    screen = ale(env).getScreenGrayscale()
    np.testing.assert_array_equal(obs[-1], cv2.resize(screen, (84, 84), interpolation=cv2.INTER_LINEAR))
    assert not np.array_equal(obs[-1], cv2.resize(screen, (84, 84), interpolation=cv2.INTER_AREA))
    _, _, _, _, info2 = env.step(0)
    assert info2["episode_frame_number"] == info["episode_frame_number"] + 4


def test_minimal_action_set():
    assert make_env("Breakout").unwrapped.get_action_meanings() == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert make_env("Pong").action_space.n == 6


def test_same_seed_same_trajectory_with_sticky_actions():
    def run(seed):
        env = make_env("Seaquest")
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for t in range(60):
            obs, *_ = env.step(t % env.action_space.n)
            out.append(obs)
        return np.stack(out)

    a, b, c = run(5), run(5), run(6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_episode_cap_truncates_at_exactly_max_episode_steps():
    env = make_env("Breakout", max_episode_steps=40)
    env.reset(seed=0)
    for step in range(1, 41):
        _, _, terminated, truncated, info = env.step(0)  # NOOP never launches the ball
        assert not terminated
        assert truncated == (step == 40)
    assert info["episode_frame_number"] == 160


@pytest.mark.slow
def test_default_cap_is_27000_steps():
    env = make_env("Breakout")
    env.reset(seed=0)
    steps, truncated, terminated = 0, False, False
    while not (truncated or terminated):
        _, _, terminated, truncated, info = env.step(0)
        steps += 1
    assert (steps, truncated, terminated) == (27_000, True, False)
    assert info["episode_frame_number"] == 108_000


def test_losing_a_life_does_not_terminate():
    env = make_env("Breakout")
    env.reset(seed=0)
    lives = ale(env).lives()
    rng = np.random.default_rng(0)
    for _ in range(5000):
        _, _, terminated, truncated, info = env.step(int(rng.integers(4)))
        if info["lives"] < lives:
            assert not terminated and not truncated
            return
    pytest.fail("no life lost in 5000 random steps")


def test_names_and_kinds():
    assert env_kind("Seaquest") == env_kind("ALE/Pong-v5") == "atari"
    assert env_kind("HalfCheetah-v5") == "mujoco"
    assert env_kind("Pendulum-v1") == "control"
    assert canonical_env_name("ALE/SpaceInvaders-v5") == "SpaceInvaders"
    assert canonical_env_name("space_invaders") == "SpaceInvaders"
    assert canonical_env_name("Hopper-v5") == "Hopper-v5"


def test_bad_names_and_options():
    with pytest.raises(ValueError, match="did you mean the Atari game 'Seaquest'"):
        make_env("Seaquestt")
    with pytest.raises(ValueError, match="only v5 ids"):
        make_env("ALE/Seaquest-v4")
    with pytest.raises(ValueError, match="unknown Atari protocol 'paper'"):
        make_env("Seaquest", protocol="paper")
    with pytest.raises(ValueError, match="applies to Atari only"):
        make_env("Pendulum-v1", protocol="dt-paper")
    with pytest.raises(ValueError, match=r"unknown Atari option\(s\) \['frameskip'\]"):
        make_env("Seaquest", frameskip=4)


def test_mujoco_observation_normalisation():
    raw = make_env("HalfCheetah-v5")
    obs_raw, _ = raw.reset(seed=1)
    mean = np.linspace(-1, 1, 17).astype(np.float32)
    std = np.linspace(0.5, 2, 17).astype(np.float32)
    env = make_env("HalfCheetah-v5", obs_mean=mean, obs_std=std)
    obs, _ = env.reset(seed=1)
    assert obs.dtype == np.float32 and obs.shape == (17,)
    np.testing.assert_allclose(obs, (obs_raw - mean) / std, rtol=1e-5)
    action = np.full(6, 0.3, dtype=np.float32)
    np.testing.assert_allclose(env.step(action)[0], (raw.step(action)[0] - mean) / std, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"obs_mean has shape \(3,\) but the observations .* have shape \(17,\)"):
        make_env("HalfCheetah-v5", obs_mean=np.zeros(3), obs_std=np.ones(3))
    with pytest.raises(ValueError, match="pass both obs_mean and obs_std"):
        make_env("HalfCheetah-v5", obs_mean=mean)


def test_mujoco_warnings_go_to_logging_not_a_log_file(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("WARNING", logger="mujoco"):
        make_env("HalfCheetah-v5").reset(seed=0)  # its XML uses a deprecated attribute
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert any("settotalmass" in r.getMessage() for r in caplog.records)


def test_control_env_passes_kwargs_to_gym():
    env = make_env("Pendulum-v1", max_episode_steps=7)
    env.reset(seed=0)
    for _ in range(1, 8):
        *_, truncated, _ = env.step(np.zeros(1, dtype=np.float32))
    assert truncated

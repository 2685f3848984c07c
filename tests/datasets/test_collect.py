"""Collectors: SB3 agents logging real environments into the formats fh_rl reads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from fh_rl.datasets import load_dqn_replay, load_hdf5
from fh_rl.datasets.collect import collect_atari, collect_control
from fh_rl.envs import make_env

REPO = Path(__file__).resolve().parents[2]


def test_control_collection_is_d4rl_and_loads(tmp_path):
    out = tmp_path / "pendulum.hdf5"
    collect_control("Pendulum-v1", 300, out, expert_episodes=2, medium_episodes=1, learning_starts=100,
                    seed=1, progress=False)
    with h5py.File(out, "r") as f:  # h5py alone shows the D4RL layout
        assert {"observations", "actions", "rewards", "terminals", "timeouts"} <= set(f.keys())
        assert f["observations"].shape == (300 + 200 + 400, 3)
        assert f["actions"].shape == (900, 1) and f["actions"].dtype == np.float32
        assert f["observations"].compression == "gzip"
        part = f["infos/part"][()]
        meta = dict(f["metadata"].attrs)
    # replay: 200-step episode + the 100 steps cut by the end of training; medium 1 x 200; expert 2 x 200
    np.testing.assert_array_equal(np.bincount(part), [300, 200, 400])
    data = load_hdf5(out)
    assert len(data) == 2 + 1 + 2
    assert data.num_transitions == 900
    assert np.all(np.abs(data.actions) <= 2.0)  # Pendulum's torque bounds: env actions, not SB3's [-1, 1] scaling
    assert data.truncated.all() and not data.terminated.any()  # Pendulum only truncates
    returns = data.episode_returns
    assert meta["replay_episodes"] == 2 and meta["expert_episodes"] == 2 and meta["medium_episodes"] == 1
    assert meta["expert_return_mean"] == pytest.approx(returns[3:].mean(), rel=1e-5)
    assert meta["medium_return_mean"] == pytest.approx(returns[2], rel=1e-5)
    assert meta["env_id"] == "Pendulum-v1" and meta["sac_steps"] == 300
    assert meta["algorithm"] == "SAC" and meta["steps"] == 300 and meta["random_episodes"] == 10
    assert -1800 < meta["random_return_mean"] < -600  # Pendulum-v1 under random torques: about -1200
    from fh_rl.datasets.collect import summary

    text = summary(out)  # what the command prints at the end, for Box actions too
    assert "Pendulum-v1, SAC for 300 steps" in text and "900 transitions" in text
    for part, episodes, rows in (("replay", 2, 300), ("medium", 1, 200), ("expert", 2, 400)):
        assert re.search(rf"{part}\s+{episodes}\s+{rows}\s+{meta[part + '_return_mean']:.1f}", text), (part, text)
    assert re.search(rf"random\s+10\s+-\s+{meta['random_return_mean']:.1f}", text)
    # observations are what the env produced: the first replay obs is a seeded reset of Pendulum
    assert np.allclose(np.linalg.norm(data.observations[:, :2], axis=1), 1.0, atol=1e-5)  # (cos, sin)
    with pytest.raises(FileExistsError, match="already exists"):
        collect_control("Pendulum-v1", 300, out, progress=False)


def test_control_collection_of_a_discrete_env_uses_ppo(tmp_path, capsys):
    from fh_rl.datasets.collect import main

    out = tmp_path / "cartpole.hdf5"
    assert main(["control", "--env", "CartPole-v1", "--steps", "300", "--expert-episodes", "2", "--medium-episodes", "1",
                 "--seed", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    with h5py.File(out, "r") as f:
        assert {"observations", "actions", "rewards", "terminals", "timeouts"} <= set(f.keys())
        assert f["actions"].dtype == np.int64 and f["actions"].ndim == 1
        assert set(np.unique(f["actions"][()]).tolist()) <= {0, 1}
        part = f["infos/part"][()]
        meta = dict(f["metadata"].attrs)
    data = load_hdf5(out)
    assert data.actions.dtype == np.int64 and data.state_shape == (4,)
    counts = np.bincount(part, minlength=3)
    assert counts[0] == 300 == meta["steps"]  # PPO's rollouts of min(2048, steps) steps: exactly 300 here
    assert meta["algorithm"] == "PPO" and meta["env_id"] == "CartPole-v1" and "sac_steps" not in meta
    returns = data.episode_returns
    ends = np.cumsum(np.diff(data.offsets))
    first_medium = int(np.searchsorted(ends, counts[0], side="right"))
    assert meta["medium_return_mean"] == pytest.approx(returns[first_medium], rel=1e-6)
    assert meta["expert_return_mean"] == pytest.approx(returns[-2:].mean(), rel=1e-6)
    assert data.terminated[:first_medium - 1].all()  # CartPole's replay episodes end by falling over
    assert meta["random_episodes"] == 10 and 8 < meta["random_return_mean"] < 60  # CartPole-v1, random: ~22
    for word in ("PPO", "replay", "medium", "expert", "random", f"{meta['random_return_mean']:.1f}",
                 f"{meta['expert_return_mean']:.1f}", f"{int(counts[0]):,}"):
        assert word in printed, (word, printed)


def test_control_collection_refuses_what_it_cannot_learn(tmp_path):
    with pytest.raises(ValueError, match="Discrete actions, which collect control learns with PPO, not SAC"):
        collect_control("CartPole-v1", 100, tmp_path / "x.hdf5", algorithm="sac", progress=False)
    with pytest.raises(ValueError, match="is an Atari game: collect its data with `collect atari"):
        collect_control("Breakout", 100, tmp_path / "x.hdf5", progress=False)
    with pytest.raises(ValueError, match="unknown environment 'CartPole-v9'"):
        collect_control("CartPole-v9", 100, tmp_path / "x.hdf5", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_control_collection_interrupted_leaves_nothing(tmp_path, monkeypatch):
    import fh_rl.datasets.collect as collect

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(collect, "rollout_episodes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        collect_control("Pendulum-v1", 150, tmp_path / "x.hdf5", expert_episodes=1, learning_starts=100, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_atari_collection_matches_what_the_agent_saw(tmp_path):
    seen: list[tuple[np.ndarray, int, float, bool]] = []
    run_dir = collect_atari("Breakout", 1500, tmp_path, capacity=400, seed=3, learning_starts=200, progress=False,
                            on_transition=lambda *row: seen.append((row[0].copy(), *row[1:])))
    assert run_dir == tmp_path / "Breakout" / "1"
    files = sorted(p.name for p in (run_dir / "replay_logs").iterdir())
    assert "$store$_observation_ckpt.3.gz" in files  # several files: episodes cross file boundaries
    assert not any(p.name.startswith(".partial") for p in tmp_path.iterdir())

    # 1) an independent replay of the logged actions in a fresh env reproduces the logged frames and rewards
    env = make_env("Breakout", protocol="dqn-replay")
    obs, _ = env.reset(seed=3)
    for t, (frame, action, reward, terminal) in enumerate(seen):
        np.testing.assert_array_equal(frame, obs[-1], err_msg=f"frame {t}")
        obs, raw, terminated, truncated, _ = env.step(action)
        assert reward == np.clip(raw, -1, 1), t
        assert terminal == (terminated or truncated), t
        if terminal:
            obs, _ = env.reset()

    # 2) the DQN-Replay reader gives back exactly those rows, split into episodes at the terminals
    data = load_dqn_replay(tmp_path, "Breakout", 1, progress=False, cache=False)
    frames = np.stack([s[0] for s in seen])
    np.testing.assert_array_equal(data.observations, frames)
    np.testing.assert_array_equal(data.actions, [s[1] for s in seen])
    np.testing.assert_array_equal(data.rewards, np.array([s[2] for s in seen], np.float32))
    n_terminal = sum(s[3] for s in seen)
    assert int(data.terminated.sum()) == n_terminal and len(data) == n_terminal + (not seen[-1][3])
    assert data.truncated[-1] == (not seen[-1][3])

    side = json.loads((run_dir / "episode_returns.json").read_text())
    assert len(side["episode_returns"]) == n_terminal
    assert side["episode_lengths"] == list(np.diff(data.offsets)[: n_terminal])
    # raw game scores are at least the clipped sums (Breakout rewards are positive)
    assert all(r >= c - 1e-6 for r, c in zip(side["episode_returns"], data.episode_returns))


@pytest.mark.slow
def test_atari_collection_interrupted_leaves_nothing(tmp_path):
    def stop(frame, action, reward, terminal, count=[0]):
        count[0] += 1
        if count[0] == 700:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        collect_atari("Breakout", 2000, tmp_path, capacity=300, learning_starts=100, progress=False, on_transition=stop)
    assert list(tmp_path.iterdir()) == []  # no partial files a reader could take for a run


def test_collect_cli_errors_exit_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    bad = [
        (["control", "--env", "FrozenLake-v1", "--steps", "10", "--out", str(tmp_path / "c.hdf5")], "vector observations"),
        (["control", "--env", "Pendulum-v1", "--steps", "0", "--out", str(tmp_path / "c.hdf5")], "steps must be a positive"),
        (["atari", "--game", "Pendulum-v1", "--steps", "10", "--out", str(tmp_path)], "needs an Atari game"),
    ]
    for args, message in bad:
        proc = subprocess.run([sys.executable, "-m", "fh_rl.datasets.collect", *args], env=env, capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []

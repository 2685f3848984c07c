"""Parallel evaluation with real environments: determinism across W, the policy contract, failures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fh_rl.envs import EvalResult, RandomPolicy, RolloutError, evaluate, make_env, normalized_score

FAULTY = "tests.envs.faulty_env:Faulty-v0"


def live_workers() -> list[int]:
    """Pids of this process's rollout workers that still exist (zombies included)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"fh_rl.envs._worker" in cmdline:
            pids.append(int(proc.name))
    return pids


class PixelPolicy:
    """Deterministic in the observation history of its own episode (not in the batch):
    the action mixes the newest frame with the slot's running reward, and it checks
    the Policy call order for every slot."""

    def __init__(self, n_actions: int) -> None:
        self.n = n_actions
        self.live: dict[int, float] = {}  # slot -> return so far
        self.waiting: set[int] = set()  # slots that acted and await observe
        self.begun = self.ended = 0
        self.max_slot = -1

    def begin(self, slots, observations):
        assert slots.dtype == np.int64 and len(slots) == len(observations)
        for s in slots.tolist():
            assert s not in self.live, "slot begun twice"
            self.live[s] = 0.0
        self.begun += len(slots)
        self.max_slot = max(self.max_slot, int(slots.max()))

    def act(self, slots, observations):
        assert len(set(slots.tolist())) == len(slots)
        assert set(slots.tolist()) == set(self.live), "act must get every live slot"
        assert not self.waiting
        self.waiting = set(slots.tolist())
        newest = observations[:, -1].reshape(len(slots), -1).astype(np.int64)  # (n, 84*84)
        ret = np.array([self.live[s] for s in slots.tolist()])
        return (newest[:, ::97].sum(axis=1) + ret.astype(np.int64)) % self.n

    def observe(self, slots, rewards, dones):
        assert set(slots.tolist()) == self.waiting
        self.waiting = set()
        for s, r, d in zip(slots.tolist(), rewards, dones, strict=True):
            self.live[s] += r
            if d:
                del self.live[s]
                self.ended += 1


def reference_returns(env_name, episodes, seed, env_kwargs):
    """One env, one episode at a time, no workers."""
    env = make_env(env_name, **env_kwargs)
    returns, lengths = [], []
    for i in range(episodes):
        policy = PixelPolicy(env.action_space.n)
        obs, _ = env.reset(seed=seed + i)
        policy.begin(np.array([0]), obs[None])
        total, steps, done = 0.0, 0, False
        while not done:
            action = policy.act(np.array([0]), obs[None])[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            policy.observe(np.array([0]), np.array([reward]), np.array([done]))
            total, steps = total + reward, steps + 1
        returns.append(total)
        lengths.append(steps)
    return np.array(returns), np.array(lengths)


def test_returns_do_not_depend_on_workers():
    kwargs = {"max_episode_steps": 100}
    expected_returns, expected_lengths = reference_returns("Seaquest", 4, 10, kwargs)
    assert len(set(expected_returns.tolist())) > 1  # the episodes really differ
    for workers, per_worker in [(1, 1), (2, 1), (2, 2)]:
        policy = PixelPolicy(18)
        result = evaluate(
            policy, "Seaquest", 4, workers=workers, seed=10, env_kwargs=kwargs,
            progress=False, envs_per_worker=per_worker,
        )  # fmt: skip
        assert isinstance(result, EvalResult)
        np.testing.assert_array_equal(result.returns, expected_returns)
        np.testing.assert_array_equal(result.lengths, expected_lengths)
        np.testing.assert_array_equal(result.seeds, np.arange(10, 14))
        assert result.env == "Seaquest" and result.protocol == "dqn-replay"
        assert policy.begun == policy.ended == 4 and not policy.live
        assert policy.max_slot < workers * per_worker
    assert result.returns.dtype == np.float64
    assert result.normalized[0] == pytest.approx(normalized_score("Seaquest", result.returns[0]))
    assert live_workers() == []


def test_mujoco_box_actions_in_process_and_workers():
    env = make_env("Hopper-v5")
    a = evaluate(RandomPolicy(env.action_space, 0), "Hopper-v5", 3, workers=0, progress=False)
    b = evaluate(RandomPolicy(env.action_space, 0), "Hopper-v5", 3, workers=1, progress=False)
    np.testing.assert_array_equal(a.returns, b.returns)  # one slot: same action stream
    assert a.protocol is None and a.summary()["episodes"] == 3 and "normalized_mean" in a.summary()

    class Recording(RandomPolicy):
        def begin(self, slots, observations):
            self.first = observations

    raw = make_env("Hopper-v5").reset(seed=7)[0]
    policy = Recording(env.action_space, 0)
    stats = {"obs_mean": np.full(11, 0.5), "obs_std": np.full(11, 2.0)}
    evaluate(policy, "Hopper-v5", 1, workers=1, seed=7, env_kwargs=stats, progress=False)
    assert policy.first.dtype == np.float32
    np.testing.assert_allclose(policy.first[0], (raw - 0.5) / 2.0, rtol=1e-5)


def test_crashing_env_is_reported_with_env_and_episode():
    with pytest.raises(RolloutError, match=r"Faulty-v0: episode 3 failed in rollout worker \d while stepping: "
                       r"RuntimeError: simulated crash at step 5"):  # fmt: skip
        evaluate(RandomPolicy(make_env(FAULTY).action_space, 0), FAULTY, 6, workers=2, progress=False,
                 env_kwargs={"fault": "raise", "fault_seed": 3})  # fmt: skip
    assert live_workers() == []


def test_dying_worker_is_reported():
    with pytest.raises(RolloutError, match=r"worker \d \(pid \d+\) died with exit code 3 while stepping episode\(s\) .*2 \(seed 2\)"):
        evaluate(RandomPolicy(make_env(FAULTY).action_space, 0), FAULTY, 4, workers=2, progress=False,
                 env_kwargs={"fault": "exit", "fault_seed": 2})  # fmt: skip
    assert live_workers() == []


def test_hanging_worker_is_reported():
    with pytest.raises(RolloutError, match=r"did not answer within 1 s while stepping episode\(s\) 1 \(seed 1\)"):
        evaluate(RandomPolicy(make_env(FAULTY).action_space, 0), FAULTY, 2, workers=2, progress=False,
                 step_timeout=1.0, env_kwargs={"fault": "hang", "fault_seed": 1})  # fmt: skip
    assert live_workers() == []


def test_worker_failing_to_start_is_reported_and_cleaned_up():
    kwargs = {"fault": "init-in-worker", "parent_pid": os.getpid()}
    with pytest.raises(RolloutError, match=r"Faulty-v0: \(no episode yet.*\) failed in rollout worker \d while "
                       r"starting: RuntimeError: simulated failure building the env in a worker"):  # fmt: skip
        evaluate(RandomPolicy(make_env(FAULTY).action_space, 0), FAULTY, 2, workers=2, progress=False,
                 env_kwargs=kwargs)  # fmt: skip
    assert live_workers() == []


def test_bad_env_options_are_user_errors():
    with pytest.raises(ValueError, match=r"unknown Atari option\(s\) \['frame_skip'\]"):
        evaluate(RandomPolicy(make_env("Pong").action_space), "Pong", 2, workers=2, env_kwargs={"frame_skip": 4})
    assert live_workers() == []


def test_faulty_env_without_fault_runs():
    class Watching(RandomPolicy):
        workers_seen = 0

        def act(self, slots, observations):
            self.workers_seen = max(self.workers_seen, len(live_workers()))
            return super().act(slots, observations)

    policy = Watching(make_env(FAULTY).action_space, 0)
    result = evaluate(policy, FAULTY, 7, workers=2, envs_per_worker=2, progress=False)
    assert policy.workers_seen == 2 and live_workers() == []
    np.testing.assert_array_equal(result.returns, np.full(7, 20.0))
    np.testing.assert_array_equal(result.lengths, np.full(7, 20))


def test_bad_arguments():
    policy = RandomPolicy(make_env(FAULTY).action_space, 0)
    with pytest.raises(TypeError, match="environment name"):
        evaluate(policy, make_env(FAULTY), 2)
    with pytest.raises(ValueError, match="episodes must be a positive int"):
        evaluate(policy, FAULTY, 0)
    with pytest.raises(TypeError, match="has no begin"):
        evaluate(object(), FAULTY, 1)

    class Short(RandomPolicy):
        def act(self, slots, observations):
            return super().act(slots, observations)[:1]

    with pytest.raises(ValueError, match=r"shape \(1,\) for 2 observations; expected \(2,\)"):
        evaluate(Short(policy.action_space), FAULTY, 4, workers=1, envs_per_worker=2, progress=False)

    class Floats(RandomPolicy):
        def act(self, slots, observations):
            return super().act(slots, observations).astype(np.float32)

    with pytest.raises(TypeError, match="float32 actions for a Discrete\(2\) action space"):
        evaluate(Floats(policy.action_space), FAULTY, 2, workers=0, progress=False)
    assert live_workers() == []


CTRL_C_SCRIPT = """
import signal
import sys
from fh_rl.envs import RandomPolicy, evaluate, make_env

# A terminal's foreground process has Ctrl-C at its default; a test runner started in the background
# (``nohup pytest &``) passes SIGINT down ignored, and Python then never raises KeyboardInterrupt.
signal.signal(signal.SIGINT, signal.default_int_handler)

class Announce(RandomPolicy):
    def act(self, slots, observations):
        print("stepping", flush=True)
        return super().act(slots, observations)

evaluate(Announce(make_env(sys.argv[1]).action_space), sys.argv[1], 4, workers=2, progress=False,
         env_kwargs={"fault": "hang", "fault_seed": 0, "fault_step": 3})
"""


def test_ctrl_c_stops_all_workers():
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, FAULTY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "stepping"
    time.sleep(0.5)  # episode 0's worker is now hanging in step 3
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # nothing of the process group survives
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail("rollout workers survived Ctrl-C")

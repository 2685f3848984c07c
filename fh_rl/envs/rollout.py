"""Parallel evaluation: W worker processes step environments, the policy batches.

The policy lives in the calling process; workers only step environments. Each
worker holds E environments (``envs_per_worker``), one per *slot*; global slot
``w * E + l`` is environment ``l`` of worker ``w``. Every step the policy is
called once with the observations of all live episodes across all workers,
then every worker steps its environments with the returned actions, in
parallel. Episode i is always reset with seed ``seed + i`` (which seeds ALE's
sticky actions and no-op starts, and MuJoCo's initial state), so its return
does not depend on W or E as long as the policy's action for an observation
history does not depend on the batch around it.

Workers are fresh interpreters (``python -m fh_rl.envs._worker``) that import
only fh_rl.envs and the environment libraries: not torch, and not the calling
script (no ``if __name__ == "__main__"`` guard needed). They talk to this
process over socket pairs (Linux and macOS).

Failures are never silent: an exception in a worker, a worker that dies, or a
worker that does not answer within ``step_timeout`` seconds raises
:class:`RolloutError` naming the environment and the episode(s) it was running.
On any error or Ctrl-C every worker is terminated before the exception
propagates (workers ignore SIGINT themselves, so one Ctrl-C stops cleanly).
"""

from __future__ import annotations

import math
import multiprocessing.connection
import os
import socket
import subprocess
import sys
import time
import traceback
from multiprocessing.connection import Connection
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from fh_rl.cli import RunFailed
from fh_rl.envs.make import canonical_env_name, make_env, resolve_protocol
from fh_rl.envs.policy import Policy
from fh_rl.envs.scores import normalized_score

MAX_AUTO_ENVS_PER_WORKER = 16
"""Cap on the default number of environments per worker."""
STARTUP_TIMEOUT = 120.0
"""Seconds a worker may take to start and build its environments."""


class RolloutError(RunFailed):
    """An environment failed, hung or died during evaluation (a RuntimeError; the CLIs print its first line)."""


@dataclass
class EvalResult:
    """Per-episode results of :func:`evaluate`, indexed by episode."""

    env: str
    """Canonical environment name (``canonical_env_name``)."""
    protocol: str | None
    """Atari protocol used ("dqn-replay", "dt-paper"), None for other envs."""
    returns: np.ndarray
    """(episodes,) float64 raw (unclipped) environment returns."""
    lengths: np.ndarray
    """(episodes,) int64 agent steps per episode."""
    seeds: np.ndarray
    """(episodes,) int64 reset seed of each episode (``seed + i``)."""
    wall_seconds: float = 0.0
    """Wall-clock time of the evaluation, worker start-up included."""
    startup_seconds: float = 0.0
    """Part of ``wall_seconds`` spent starting workers and building environments."""
    run_seconds: float = 0.0
    """Part of ``wall_seconds`` spent running episodes (start-up and shut-down excluded)."""
    policy_seconds: float = 0.0
    """Time spent inside the policy's begin/act/observe."""
    env_kwargs: dict = field(default_factory=dict)
    """Extra options the environments were made with."""

    @property
    def steps(self) -> int:
        return int(self.lengths.sum())

    @property
    def steps_per_second(self) -> float:
        """Environment steps per second while running episodes (resets included)."""
        return self.steps / max(self.run_seconds, 1e-9)

    @property
    def normalized(self) -> np.ndarray | None:
        """(episodes,) normalised scores, or None without reference scores for the env."""
        if normalized_score(self.env, 0.0) is None:
            return None
        return np.array([normalized_score(self.env, r) for r in self.returns], dtype=np.float64)

    def summary(self) -> dict[str, Any]:
        """Mean/std of returns (and normalised scores), JSON-serialisable."""
        out: dict[str, Any] = {
            "env": self.env,
            "protocol": self.protocol,
            "episodes": len(self.returns),
            "return_mean": float(self.returns.mean()),
            "return_std": float(self.returns.std()),
            "length_mean": float(self.lengths.mean()),
        }
        norm = self.normalized
        if norm is not None:
            out["normalized_mean"] = float(norm.mean())
            out["normalized_std"] = float(norm.std())
        return out


class _EnvRunner:
    """The environments of one worker; also used in-process when ``workers=0``."""

    def __init__(self, env_name: str, protocol: str | None, env_kwargs: dict, n_envs: int) -> None:
        self.envs = [make_env(env_name, protocol=protocol, **env_kwargs) for _ in range(n_envs)]
        self.episodes: list[int | None] = [None] * n_envs
        self.current: int | None = None  # episode being reset/stepped, for error reports

    def reset(self, requests: list[tuple[int, int, int]]) -> np.ndarray:
        """``requests``: (local slot, episode, seed) -> first observations (n, ...)."""
        observations = []
        for local, episode, seed in requests:
            self.current = self.episodes[local] = episode
            obs, _ = self.envs[local].reset(seed=seed)
            observations.append(obs)
        self.current = None
        return np.stack(observations)

    def step(self, locals_: list[int], actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step envs ``locals_`` with ``actions`` -> (observations, rewards, dones)."""
        observations, rewards, dones = [], np.empty(len(locals_)), np.empty(len(locals_), dtype=bool)
        for i, local in enumerate(locals_):
            self.current = self.episodes[local]
            obs, reward, terminated, truncated, _ = self.envs[local].step(actions[i])
            observations.append(obs)
            rewards[i] = reward
            dones[i] = terminated or truncated
        self.current = None
        return np.stack(observations), rewards, dones

    def handle(self, message: tuple) -> tuple:
        try:
            if message[0] == "reset":
                return ("ok", self.reset(message[1]))
            if message[0] == "step":
                return ("ok", self.step(message[1], message[2]))
            raise ValueError(f"unknown worker command {message[0]!r}")
        except Exception:
            return ("error", self.current, traceback.format_exc())

    def close(self) -> None:
        for env in self.envs:
            env.close()


def serve(conn, env_name: str, protocol: str | None, env_kwargs: dict, n_envs: int) -> None:
    """A worker's loop: build ``n_envs`` environments, then answer commands until "close"."""
    try:
        runner = _EnvRunner(env_name, protocol, env_kwargs, n_envs)
    except Exception:
        conn.send(("error", None, traceback.format_exc()))
        return
    conn.send(("ok", runner.envs[0].action_space))
    try:
        while True:
            message = conn.recv()
            if message[0] == "close":
                break
            conn.send(runner.handle(message))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # parent went away
    finally:
        runner.close()


def _worker_environ() -> dict[str, str]:
    """The parent's environment, with its import path, so workers import the same fh_rl."""
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) if p else os.getcwd() for p in sys.path)
    return environ


class _WorkerPool:
    """W worker processes (or one in-process runner when ``workers == 0``)."""

    def __init__(self, env_name, protocol, env_kwargs, workers, n_envs, timeout, describe) -> None:
        self.inline = workers == 0
        self.timeout = timeout
        self.describe = describe  # worker index -> "episode(s) ..." for messages
        self.env_name = env_name
        self.processes: list[subprocess.Popen] = []
        self.conns: list = []
        self._replies: dict[int, tuple] = {}
        if self.inline:
            self.runner = _EnvRunner(env_name, protocol, env_kwargs, n_envs)
            self.action_space = self.runner.envs[0].action_space
            return
        try:
            self._start(env_name, protocol, env_kwargs, workers, n_envs)
        except BaseException:
            self.close(graceful=False)
            raise

    def _start(self, env_name, protocol, env_kwargs, workers, n_envs) -> None:
        environ = _worker_environ()
        for w in range(workers):
            parent, child = socket.socketpair()
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "fh_rl.envs._worker", str(child.fileno())],
                    pass_fds=(child.fileno(),),
                    stdin=subprocess.DEVNULL,
                    env=environ,
                )
            finally:
                child.close()  # the worker holds its own copy; a dead worker reads as EOF here
            self.processes.append(proc)
            self.conns.append(Connection(parent.detach()))
            self.conns[-1].send((env_name, protocol, env_kwargs, n_envs))
        self.action_space = self.gather(range(workers), "starting", max(self.timeout, STARTUP_TIMEOUT))[0]

    def send(self, w: int, message: tuple) -> None:
        if self.inline:
            self._replies[w] = self.runner.handle(message)
            return
        try:
            self.conns[w].send(message)
        except OSError:
            raise RolloutError(self._died(w, "sending to")) from None

    def _died(self, w: int, doing: str) -> str:
        proc = self.processes[w]
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            pass
        return (
            f"{self.env_name}: rollout worker {w} (pid {proc.pid}) died with exit code {proc.returncode} "
            f"while {doing} {self.describe(w)}"
        )

    def _check(self, w: int, reply: tuple, doing: str) -> Any:
        if reply[0] == "ok":
            return reply[1]
        _, episode, tb = reply
        where = f"episode {episode}" if episode is not None else self.describe(w)
        last = tb.strip().splitlines()[-1]
        raise RolloutError(
            f"{self.env_name}: {where} failed in rollout worker {w} while {doing}: {last}\n"
            f"--- worker traceback ---\n{tb}"
        )

    def gather(self, workers, doing: str, timeout: float | None = None) -> dict[int, Any]:
        """Replies of ``workers`` (each sent one message), raising on error, death or timeout."""
        workers = list(workers)
        if self.inline:
            return {w: self._check(w, self._replies.pop(w), doing) for w in workers}
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        pending = {self.conns[w]: w for w in workers}
        replies = {}
        while pending:
            ready = multiprocessing.connection.wait(list(pending), timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                w = min(pending.values())
                raise RolloutError(
                    f"{self.env_name}: rollout worker {w} did not answer within {timeout:g} s while {doing} "
                    f"{self.describe(w)} (raise step_timeout if one step can legitimately take longer)"
                )
            for conn in ready:
                w = pending.pop(conn)
                try:
                    reply = conn.recv()
                except (EOFError, OSError):
                    raise RolloutError(self._died(w, doing)) from None
                replies[w] = self._check(w, reply, doing)
        return replies

    def close(self, graceful: bool) -> None:
        if self.inline:
            self.runner.close()
            return
        if graceful:
            for conn in self.conns:
                try:
                    conn.send(("close",))
                except OSError:
                    pass
        deadline = time.monotonic() + (5.0 if graceful else 0.0)
        for proc in self.processes:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for conn in self.conns:
            conn.close()


def _check_actions(actions: np.ndarray, n: int, space: gym.Space) -> np.ndarray:
    """Validate the policy's actions for n slots against the env's action space."""
    if isinstance(space, gym.spaces.Discrete):
        expected = (n,)
        if actions.shape == expected and not np.issubdtype(actions.dtype, np.integer):
            raise TypeError(
                f"policy.act returned {actions.dtype} actions for a {space} action space; return env action "
                f"ids as integers (decode the model's bins with its ActionCodec)"
            )
    else:
        expected = (n, *space.shape)
    if actions.shape != expected:
        raise ValueError(
            f"policy.act returned actions of shape {actions.shape} for {n} observations; expected {expected} "
            f"(one action per slot for {space})"
        )
    return actions


def evaluate(
    policy: Policy,
    env: str,
    episodes: int,
    workers: int = 1,
    seed: int = 0,
    protocol: str | None = None,
    env_kwargs: dict | None = None,
    progress: bool = True,
    step_timeout: float = 60.0,
    envs_per_worker: int | None = None,
) -> EvalResult:
    """Run ``episodes`` episodes of ``env`` with ``policy`` and return per-episode results.

    Args:
        policy: implements :class:`fh_rl.envs.policy.Policy`; called in this process.
        env: environment name, as for :func:`fh_rl.envs.make_env` (workers build their own).
        episodes: number of episodes; episode i is reset with seed ``seed + i``.
        workers: worker processes W (capped at the number of episode slots
            needed); 0 steps the environments in this process (debugging).
        seed: seed of episode 0 (non-negative).
        protocol: Atari protocol (see ``make_env``); None: the default.
        env_kwargs: extra ``make_env`` keyword arguments (picklable).
        progress: show a progress bar of episodes done.
        step_timeout: seconds a worker may take for one step (or reset) of its
            environments before it is reported as hung.
        envs_per_worker: environments E per worker, stepped one after another;
            W * E episodes run at once, which amortises the per-step policy
            call and inter-process traffic. Default: enough to run all
            episodes at once, at most :data:`MAX_AUTO_ENVS_PER_WORKER`.
    """
    if not isinstance(env, str):
        raise TypeError(f"env must be an environment name (workers build their own envs), got {type(env).__name__}")
    if not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    if not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"workers must be an int >= 0 (0 runs in-process), got {workers!r}")
    if envs_per_worker is None:
        envs_per_worker = min(MAX_AUTO_ENVS_PER_WORKER, math.ceil(episodes / max(workers, 1)))
    if not isinstance(envs_per_worker, (int, np.integer)) or envs_per_worker < 1:
        raise ValueError(f"envs_per_worker must be a positive int or None, got {envs_per_worker!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not step_timeout > 0:
        raise ValueError(f"step_timeout must be positive, got {step_timeout!r}")
    for method in ("begin", "act", "observe"):
        if not callable(getattr(policy, method, None)):
            raise TypeError(
                f"policy {type(policy).__name__} has no {method}() method; implement fh_rl.envs.policy.Policy"
            )
    env_kwargs = dict(env_kwargs or {})
    name = canonical_env_name(env)
    protocol = resolve_protocol(env, protocol)
    make_env(env, protocol=protocol, **env_kwargs).close()  # bad options fail here, as ValueError/TypeError

    W = min(workers, episodes)
    E = min(envs_per_worker, math.ceil(episodes / max(W, 1)))
    n_workers = max(W, 1)
    n_slots = n_workers * E

    returns = np.zeros(episodes, dtype=np.float64)
    lengths = np.zeros(episodes, dtype=np.int64)
    seeds = seed + np.arange(episodes, dtype=np.int64)
    slot_episode = np.full(n_slots, -1, dtype=np.int64)  # (n_slots,) episode running in each slot, -1 free
    live_locals: list[list[int]] = [[] for _ in range(n_workers)]  # per worker: live local slots
    live_obs: list[np.ndarray | None] = [None] * n_workers  # per worker: (len(live_locals[w]), ...) observations
    next_episode = 0
    policy_seconds = 0.0

    def describe(w: int) -> str:
        eps = [int(e) for e in slot_episode[w * E : (w + 1) * E] if e >= 0]
        if not eps:
            return f"(no episode yet; env {env!r})"
        return "episode(s) " + ", ".join(f"{e} (seed {seed + e})" for e in eps)

    start = time.perf_counter()
    bar = tqdm(total=episodes, desc=f"eval {name}", unit="ep", disable=not progress, leave=False)
    pool = None
    ok = False
    try:
        pool = _WorkerPool(env, protocol, env_kwargs, W, E, float(step_timeout), describe)
        startup_seconds = time.perf_counter() - start
        while True:
            # Start new episodes in free slots, all workers in parallel.
            requests: dict[int, list[tuple[int, int, int]]] = {}
            for slot in np.flatnonzero(slot_episode < 0):
                if next_episode >= episodes:
                    break
                w, local = divmod(int(slot), E)
                slot_episode[slot] = next_episode
                requests.setdefault(w, []).append((local, next_episode, int(seeds[next_episode])))
                next_episode += 1
            for w, reqs in requests.items():
                pool.send(w, ("reset", reqs))
            if requests:
                first = pool.gather(requests, "resetting")
                new_slots = []
                for w, reqs in requests.items():
                    live_locals[w] += [local for local, _, _ in reqs]
                    live_obs[w] = first[w] if live_obs[w] is None else np.concatenate([live_obs[w], first[w]])
                    new_slots += [w * E + local for local, _, _ in reqs]
                t = time.perf_counter()
                policy.begin(np.asarray(new_slots, dtype=np.int64), np.concatenate([first[w] for w in requests]))
                policy_seconds += time.perf_counter() - t

            active = [w for w in range(n_workers) if live_locals[w]]
            if not active:
                break
            # One policy call for every live episode.
            slots = np.asarray([w * E + local for w in active for local in live_locals[w]], dtype=np.int64)
            obs = np.concatenate([live_obs[w] for w in active])  # (n, ...) in slot order
            t = time.perf_counter()
            actions = policy.act(slots, obs)
            policy_seconds += time.perf_counter() - t
            if type(actions).__module__.startswith("torch"):
                actions = actions.detach().cpu().numpy()
            actions = _check_actions(np.asarray(actions), len(slots), pool.action_space)
            offset = 0
            for w in active:
                n = len(live_locals[w])
                pool.send(w, ("step", live_locals[w], actions[offset : offset + n]))
                offset += n
            stepped = pool.gather(active, "stepping")
            rewards = np.concatenate([stepped[w][1] for w in active])
            dones = np.concatenate([stepped[w][2] for w in active])
            episode_ids = slot_episode[slots]
            np.add.at(returns, episode_ids, rewards)
            np.add.at(lengths, episode_ids, 1)
            t = time.perf_counter()
            policy.observe(slots, rewards, dones)
            policy_seconds += time.perf_counter() - t
            for w in active:
                keep = ~stepped[w][2]
                ended = [local for local, k in zip(live_locals[w], keep) if not k]
                for local in ended:
                    slot_episode[w * E + local] = -1
                live_locals[w] = [local for local, k in zip(live_locals[w], keep) if k]
                live_obs[w] = stepped[w][0][keep]
            if dones.any():
                bar.update(int(dones.sum()))
                done_so_far = np.isin(np.arange(episodes), slot_episode, invert=True)[:next_episode]
                bar.set_postfix(mean_return=f"{returns[:next_episode][done_so_far].mean():.1f}")
        run_seconds = time.perf_counter() - start - startup_seconds
        ok = True
    finally:
        bar.close()
        if pool is not None:
            pool.close(graceful=ok)
    return EvalResult(
        env=name,
        protocol=protocol,
        returns=returns,
        lengths=lengths,
        seeds=seeds,
        wall_seconds=time.perf_counter() - start,
        startup_seconds=startup_seconds,
        run_seconds=run_seconds,
        policy_seconds=policy_seconds,
        env_kwargs=env_kwargs,
    )

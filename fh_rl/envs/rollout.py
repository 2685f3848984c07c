"""Parallel evaluation: W worker processes step environments, the policy batches.

The policy lives in the calling process; workers (:mod:`fh_rl.envs.workers`)
only step environments. Each worker holds E environments (``envs_per_worker``),
one per *slot*; global slot ``w * E + l`` is environment ``l`` of worker ``w``.
Every step the policy is called once with the observations of all live
episodes across all workers, then every worker steps its environments with the
returned actions, in parallel. Episode i is always reset with seed ``seed + i``
(which seeds ALE's sticky actions and no-op starts, and MuJoCo's initial
state), so its return does not depend on W or E as long as the policy's action
for an observation history does not depend on the batch around it.

Failures are never silent: an exception in a worker, a worker that dies, or a
worker that does not answer within ``step_timeout`` seconds raises
:class:`RolloutError` naming the environment and the episode(s) it was running.
On any error or Ctrl-C every worker is terminated before the exception
propagates (workers ignore SIGINT themselves, so one Ctrl-C stops cleanly).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from fh_rl.envs.make import canonical_env_name, make_env, resolve_protocol
from fh_rl.envs.policy import Policy
from fh_rl.envs.scores import normalized_score
from fh_rl.envs.workers import STARTUP_TIMEOUT, RolloutError, WorkerPool
from fh_rl.infra.progress import progress_bar

__all__ = ["MAX_AUTO_ENVS_PER_WORKER", "STARTUP_TIMEOUT", "EvalResult", "RolloutError", "evaluate"]

MAX_AUTO_ENVS_PER_WORKER = 16
"""Cap on the default number of environments per worker."""


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
    envs_per_worker = _check_arguments(policy, env, episodes, workers, seed, step_timeout, envs_per_worker)
    env_kwargs = dict(env_kwargs or {})
    name = canonical_env_name(env)
    protocol = resolve_protocol(env, protocol)
    make_env(env, protocol=protocol, **env_kwargs).close()  # bad options fail here, as ValueError/TypeError

    W = min(workers, episodes)
    E = min(envs_per_worker, math.ceil(episodes / max(W, 1)))
    rollout = _Rollout(policy, env, episodes, seed, n_workers=max(W, 1), envs_per_worker=E)
    start = time.perf_counter()
    bar = progress_bar(total=episodes, desc=f"eval {name}", unit="ep", disable=not progress, leave=False)
    pool = None
    ok = False
    try:
        pool = WorkerPool(env, protocol, env_kwargs, W, E, float(step_timeout), rollout.describe)
        startup_seconds = time.perf_counter() - start
        rollout.run(pool, bar)
        run_seconds = time.perf_counter() - start - startup_seconds
        ok = True
    finally:
        bar.close()
        if pool is not None:
            pool.close(graceful=ok)
    return EvalResult(
        env=name,
        protocol=protocol,
        returns=rollout.returns,
        lengths=rollout.lengths,
        seeds=rollout.seeds,
        wall_seconds=time.perf_counter() - start,
        startup_seconds=startup_seconds,
        run_seconds=run_seconds,
        policy_seconds=rollout.policy_seconds,
        env_kwargs=env_kwargs,
    )


def _check_arguments(
    policy: Any, env: Any, episodes: Any, workers: Any, seed: Any, step_timeout: Any, envs_per_worker: Any
) -> int:
    """Raise TypeError/ValueError on a bad argument of :func:`evaluate`; returns ``envs_per_worker`` resolved."""
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
    return envs_per_worker


class _Rollout:
    """The episodes of one :func:`evaluate` call: which runs in which slot, live observations, results.

    Slot ``w * E + l`` is environment ``l`` of worker ``w``; a free slot takes
    the next episode, so episode i always starts with seed ``seed + i``.
    """

    def __init__(self, policy: Policy, env: str, episodes: int, seed: int, n_workers: int, envs_per_worker: int) -> None:
        self.policy, self.env, self.episodes, self.seed, self.E = policy, env, episodes, seed, envs_per_worker
        self.returns = np.zeros(episodes, dtype=np.float64)
        self.lengths = np.zeros(episodes, dtype=np.int64)
        self.seeds = seed + np.arange(episodes, dtype=np.int64)
        self.slot_episode = np.full(n_workers * envs_per_worker, -1, dtype=np.int64)  # (n_slots,) episode per slot, -1 free
        self.live_locals: list[list[int]] = [[] for _ in range(n_workers)]  # per worker: live local slots
        self.live_obs: list[np.ndarray | None] = [None] * n_workers  # per worker: (len(live_locals[w]), ...) observations
        self.next_episode = 0
        self.policy_seconds = 0.0

    def describe(self, w: int) -> str:
        """The episodes worker ``w`` is running, for error messages."""
        eps = [int(e) for e in self.slot_episode[w * self.E : (w + 1) * self.E] if e >= 0]
        if not eps:
            return f"(no episode yet; env {self.env!r})"
        return "episode(s) " + ", ".join(f"{e} (seed {self.seed + e})" for e in eps)

    def run(self, pool: WorkerPool, bar: Any) -> None:
        """Run every episode to its end."""
        while True:
            self._start_episodes(pool)
            active = [w for w in range(len(self.live_locals)) if self.live_locals[w]]
            if not active:
                return
            dones = self._step(pool, active)
            if dones.any():
                bar.update(int(dones.sum()))
                done_so_far = np.isin(np.arange(self.episodes), self.slot_episode, invert=True)[: self.next_episode]
                bar.set_postfix(mean_return=f"{self.returns[: self.next_episode][done_so_far].mean():.1f}")

    def _policy_call(self, method: Any, *args: Any) -> Any:
        t = time.perf_counter()
        out = method(*args)
        self.policy_seconds += time.perf_counter() - t
        return out

    def _start_episodes(self, pool: WorkerPool) -> None:
        """Reset the next episodes in the free slots, all workers in parallel, and begin them in the policy."""
        requests: dict[int, list[tuple[int, int, int]]] = {}  # worker -> [(local slot, episode, seed)]
        for slot in np.flatnonzero(self.slot_episode < 0):
            if self.next_episode >= self.episodes:
                break
            w, local = divmod(int(slot), self.E)
            self.slot_episode[slot] = self.next_episode
            requests.setdefault(w, []).append((local, self.next_episode, int(self.seeds[self.next_episode])))
            self.next_episode += 1
        if not requests:
            return
        for w, reqs in requests.items():
            pool.send(w, ("reset", reqs))
        first = pool.gather(requests, "resetting")
        new_slots = []
        for w, reqs in requests.items():
            self.live_locals[w] += [local for local, _, _ in reqs]
            self.live_obs[w] = first[w] if self.live_obs[w] is None else np.concatenate([self.live_obs[w], first[w]])
            new_slots += [w * self.E + local for local, _, _ in reqs]
        self._policy_call(self.policy.begin, np.asarray(new_slots, dtype=np.int64), np.concatenate([first[w] for w in requests]))

    def _step(self, pool: WorkerPool, active: list[int]) -> np.ndarray:
        """One policy call for every live episode, then one step of each, workers in parallel; returns dones (n,)."""
        E = self.E
        slots = np.asarray([w * E + local for w in active for local in self.live_locals[w]], dtype=np.int64)
        obs = np.concatenate([self.live_obs[w] for w in active])  # (n, ...) in slot order
        actions = self._policy_call(self.policy.act, slots, obs)
        if type(actions).__module__.startswith("torch"):
            actions = actions.detach().cpu().numpy()
        actions = _check_actions(np.asarray(actions), len(slots), pool.action_space)
        offset = 0
        for w in active:
            n = len(self.live_locals[w])
            pool.send(w, ("step", self.live_locals[w], actions[offset : offset + n]))
            offset += n
        stepped = pool.gather(active, "stepping")  # worker -> (observations, rewards, dones)
        rewards = np.concatenate([stepped[w][1] for w in active])
        dones = np.concatenate([stepped[w][2] for w in active])
        episode_ids = self.slot_episode[slots]
        np.add.at(self.returns, episode_ids, rewards)
        np.add.at(self.lengths, episode_ids, 1)
        self._policy_call(self.policy.observe, slots, rewards, dones)
        for w in active:
            keep = ~stepped[w][2]
            for local, k in zip(self.live_locals[w], keep, strict=True):
                if not k:
                    self.slot_episode[w * E + local] = -1
            self.live_locals[w] = [local for local, k in zip(self.live_locals[w], keep, strict=True) if k]
            self.live_obs[w] = stepped[w][0][keep]
        return dones

"""Make offline datasets locally with Stable-Baselines3 agents.

    python -m fh_rl.datasets.collect atari --game Breakout --steps 50000 --out datasets/dqn-replay
    python -m fh_rl.datasets.collect control --env Pendulum-v1 --steps 10000 --out datasets/pendulum-v1-sac-mixed.hdf5

``atari`` trains an SB3 DQN under the ``dqn-replay`` protocol and logs every
transition it experiences, in order, through :class:`DQNReplayWriter`: the
published dataset's "replay of a learning DQN", in its exact on-disk layout.
Logged rewards are clipped to [-1, 1] (the DQN also learns from clipped
rewards, as in the published data); each episode's raw game score goes to
``episode_returns.json`` next to ``replay_logs``. SB3's own replay buffer
(``--buffer-size``) may be much smaller than the log, so memory is bounded by
it plus one file of ``--capacity`` rows.

``control`` works with any gymnasium env with a vector observation: it trains
SB3 SAC (Box actions) or PPO (Discrete actions) and writes a D4RL-layout HDF5
of every transition the learner experienced, in order (part "replay"), plus
rollouts of the final policy ("expert") and optionally of the policy at
half-time ("medium"); the behaviour returns of each part, and a random
policy's for scale, are in the file's metadata (:func:`summary` prints them)
and ``infos/part`` tells each transition's part.

Why PPO for discrete actions: with its default hyperparameters it learns the
classic-control tasks (CartPole, Acrobot, MountainCar's sparse reward aside)
without tuning, while SB3's DQN defaults are Atari's (a 1M buffer, a target
update every 10,000 steps) and barely learn CartPole in the budgets a
dataset takes; PPO needs no replay buffer sizing either. Its rollouts are
``n_steps`` long (2048, fewer for shorter runs), so the replay holds
``steps`` rounded up to a multiple of them.

Nothing half-written is ever left where a later run would read it: Atari logs
go to a hidden ``.partial-*`` directory renamed into place at the end (and
removed on failure); HDF5 files are written to a temp file and renamed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from fh_rl.infra.progress import progress_bar

from fh_rl.infra.atomic import remove_stale_temps
from fh_rl.infra.cli import run_cli
from fh_rl.datasets.dqn_replay import DQNReplayWriter, discover_suffixes, replay_dir
from fh_rl.datasets.hdf5 import write_hdf5
from fh_rl.datasets.trajectory import Episode, TrajectoryDataset
from fh_rl.infra.locks import wait_for_file_lock

CONTROL_PARTS = ("replay", "medium", "expert")
CONTROL_ALGORITHMS = {"Box": "SAC", "Discrete": "PPO"}
"""The SB3 learner ``collect control`` trains for each action space type."""
RANDOM_EPISODES = 10
"""Episodes of a uniformly random policy whose return the collection records for scale."""


def _require_positive(name: str, value: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class _torch_threads:
    """Run with ``n`` torch threads (restored after). SB3's networks are small: one thread
    is usually fastest, and several on a busy machine spin-wait each other to a crawl."""

    def __init__(self, n: int | None) -> None:
        self.n = n

    def __enter__(self) -> None:
        import torch

        self.before = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc) -> None:
        import torch

        torch.set_num_threads(self.before)


class _ProgressCallback:
    """Build an SB3 callback that advances a tqdm bar (imported lazily: SB3 is heavy)."""

    @staticmethod
    def make(total: int, desc: str, on_step: Callable[[Any], None] | None = None, enabled: bool = True):
        from stable_baselines3.common.callbacks import BaseCallback

        class Callback(BaseCallback):
            def _on_training_start(self) -> None:
                self.bar = progress_bar(total=total, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True)

            def _on_step(self) -> bool:
                if on_step is not None:
                    on_step(self)
                self.bar.update(self.training_env.num_envs)
                return True

            def _on_training_end(self) -> None:
                self.bar.close()

        return Callback()


# --------------------------------------------------------------------------- control


@dataclass
class _EpisodeRecorder:
    """Accumulates (obs, action, reward) of one vectorised env into episodes."""

    action_dtype: Any = np.float32
    """float32 for Box actions, int64 for Discrete ones."""
    obs: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    episodes: list = field(default_factory=list)
    finals: list = field(default_factory=list)
    """Each episode's observation after its last action (Minari keeps T+1 observations)."""

    def add(self, obs, action, reward, terminated: bool, truncated: bool, next_obs=None) -> None:
        self.obs.append(np.asarray(obs, np.float32))
        self.actions.append(np.asarray(action, self.action_dtype).reshape(() if self.action_dtype == np.int64 else -1))
        self.rewards.append(float(reward))
        if terminated or truncated:
            self.close(terminated, truncated, next_obs)

    def close(self, terminated: bool = False, truncated: bool = True, final_obs=None) -> None:
        if not self.obs:
            return
        self.finals.append(np.asarray(final_obs if final_obs is not None else self.obs[-1], np.float32))
        self.episodes.append(
            Episode(
                observations=np.stack(self.obs),
                actions=np.stack(self.actions),
                rewards=np.asarray(self.rewards, np.float32),
                terminated=terminated,
                truncated=truncated,
            )
        )
        self.obs, self.actions, self.rewards = [], [], []


def rollout_episodes(env_id: str, policy, episodes: int, seed: int, desc: str, progress: bool = True
                     ) -> tuple[list[Episode], list[np.ndarray]]:
    """Run ``policy.predict(obs, deterministic=True)`` (None: uniformly random actions, the action space seeded
    with ``seed``) for whole episodes, seeds ``seed + i``; the episodes and their final observations."""
    env = gym.make(env_id)
    rec = _EpisodeRecorder(action_dtype=_action_dtype(env.action_space))
    if policy is None:
        env.action_space.seed(seed)
    try:
        for i in progress_bar(range(episodes), desc=desc, unit="episode", disable=not progress, dynamic_ncols=True):
            obs, _ = env.reset(seed=seed + i)
            done = False
            while not done:
                action = env.action_space.sample() if policy is None else policy.predict(obs, deterministic=True)[0]
                next_obs, reward, terminated, truncated, _ = env.step(action)
                rec.add(obs, action, reward, terminated, truncated, next_obs)
                obs, done = next_obs, terminated or truncated
    finally:
        env.close()
    return rec.episodes, rec.finals


def _action_dtype(space: gym.Space) -> Any:
    return np.int64 if isinstance(space, gym.spaces.Discrete) else np.float32


def control_algorithm(env_id: str, algorithm: str | None = None) -> str:
    """The SB3 learner for ``env_id``: SAC for Box actions, PPO for Discrete ones (:data:`CONTROL_ALGORITHMS`).

    ValueError for an observation that is not a vector, an action space neither Box nor Discrete, or an
    ``algorithm`` that does not fit the action space."""
    from fh_rl.envs import env_kind

    if env_kind(env_id) == "atari":
        raise ValueError(f"{env_id!r} is an Atari game: collect its data with `collect atari --game {env_id}`")
    probe = gym.make(env_id)  # env_kind has refused an unknown id, naming it
    try:
        obs_space, act_space = probe.observation_space, probe.action_space
    finally:
        probe.close()
    if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1):
        raise ValueError(f"collect control needs vector observations (a 1-D Box); {env_id} has {obs_space}"
                         + ("; for Atari use `collect atari`" if len(getattr(obs_space, "shape", ()) or ()) == 3 else ""))
    kind = type(act_space).__name__
    if kind not in CONTROL_ALGORITHMS:
        raise ValueError(f"collect control needs a Box or Discrete action space; {env_id} has {act_space}")
    fitting = CONTROL_ALGORITHMS[kind]
    if algorithm is not None and algorithm.upper() != fitting:
        raise ValueError(f"{env_id} has {kind} actions, which collect control learns with {fitting}, "
                         f"not {algorithm.upper()} (dataset.build: {fitting.lower()})")
    return fitting


def collect_control(
    env_id: str,
    steps: int,
    out: str | os.PathLike,
    *,
    expert_episodes: int = 100,
    medium_episodes: int = 0,
    seed: int = 0,
    net_arch: Sequence[int] = (64, 64),
    learning_starts: int = 1000,
    threads: int | None = 1,
    progress: bool = True,
    format: str = "hdf5",
    algorithm: str | None = None,
) -> Path:
    """Train SAC (Box actions) or PPO (Discrete actions) on ``env_id`` for ``steps`` steps and write a
    D4RL-layout HDF5 to ``out`` (``format="minari"``: the Minari dataset id ``out``, through Minari's API,
    under ``MINARI_DATASETS_PATH``).

    The file holds every transition the learner experienced (SAC's whole
    replay, PPO's rollouts), in order, episodes cut at the end of training
    marked truncated, then ``medium_episodes`` rollouts of the half-time policy
    and ``expert_episodes`` rollouts of the final policy (deterministic
    actions, episode seeds ``seed + 20_000 + i`` and ``seed + 10_000 + i``).
    The metadata records each part's return and a random policy's
    (:data:`RANDOM_EPISODES` episodes, seeds ``seed + 30_000 + i``).
    ``algorithm`` (``sac``/``ppo``) only checks the choice (:func:`control_algorithm`).
    ``learning_starts`` applies to SAC. Returns the path written. Refuses to overwrite an existing file.
    """
    import torch

    _require_positive("steps", steps)
    for name, value in (("expert_episodes", expert_episodes), ("medium_episodes", medium_episodes)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if format not in ("hdf5", "minari"):
        raise ValueError(f"--format must be hdf5 or minari, got {format!r}")
    if format == "minari":
        from fh_rl.datasets.hdf5 import _require_minari

        _require_minari("--format minari")  # before the learner runs
    else:
        out = Path(out).expanduser()
        if out.exists():
            raise FileExistsError(f"{out} already exists; pass another --out or delete it first")
    algorithm = control_algorithm(env_id, algorithm)  # refuses an unknown id, Atari, images, other action spaces
    probe = gym.make(env_id)
    try:
        check_collect_memory(env_id, steps, probe.observation_space, probe.action_space)
        if format == "hdf5":  # before the learner trains for minutes: will the file fit? (write_hdf5 checks again)
            from fh_rl.datasets.hdf5 import HDF5_OVERHEAD
            from fh_rl.infra.atomic import ensure_free_space

            rows = steps + (expert_episodes + medium_episodes) * int(probe.spec.max_episode_steps or 1000)
            row = 4 * (int(np.prod(probe.observation_space.shape)) + int(np.prod(probe.action_space.shape)) + 1) + 3
            ensure_free_space(out, HDF5_OVERHEAD + rows * row)
    finally:
        probe.close()

    torch.manual_seed(seed)
    args = (env_id, steps, out, expert_episodes, medium_episodes, seed, net_arch, learning_starts, progress, format,
            algorithm)
    if format == "minari":  # written through Minari's API, which owns its dataset directory
        with _torch_threads(threads):
            return _collect_control(*args)
    with wait_for_file_lock(out), _torch_threads(threads):  # one writer per file; we may clear its stale temps
        if out.exists():
            raise FileExistsError(f"{out} already exists; pass another --out or delete it first")
        remove_stale_temps(out.parent, out.name)  # a killed collect's half-written file
        return _collect_control(*args)


def _make_control_learner(algorithm: str, env_id: str, steps: int, seed: int, net_arch: Sequence[int],
                          learning_starts: int) -> Any:
    """SB3's SAC (replay buffer holding the whole run) or PPO (defaults; rollouts of min(2048, steps) steps,
    minibatches of the largest divisor of that up to 64)."""
    if algorithm == "SAC":
        from stable_baselines3 import SAC

        return SAC("MlpPolicy", gym.make(env_id), seed=seed, learning_starts=min(learning_starts, steps),
                   policy_kwargs={"net_arch": list(net_arch)}, buffer_size=max(steps, 1), verbose=0, device="cpu")
    from stable_baselines3 import PPO

    n_steps = min(2048, steps)
    batch_size = max(d for d in range(1, 65) if n_steps % d == 0)  # 64 at the default; whole minibatches
    return PPO("MlpPolicy", gym.make(env_id), seed=seed, n_steps=n_steps, batch_size=batch_size,
               policy_kwargs={"net_arch": list(net_arch)}, verbose=0, device="cpu")


def check_collect_memory(env_id: str, steps: int, observation_space: Any, action_space: Any) -> None:
    """ValueError when ``steps`` transitions cannot be held in memory: SAC's replay buffer holds every step
    (observation, next observation, action, reward, flags) and the recorded episodes hold them again."""
    import torch

    from fh_rl.preflight import _size, available_memory

    per_step = 4.0 * (3 * int(np.prod(observation_space.shape)) + 2 * int(np.prod(action_space.shape)) + 4)
    need = float(steps) * per_step
    free, what = available_memory(torch.device("cpu"))
    if need > free:
        raise ValueError(
            f"collecting {steps:,} steps of {env_id} needs about {_size(need)} of memory (SAC's replay buffer keeps "
            f"every step, and the dataset is assembled from them) but {_size(free)} is {what}; lower --steps"
        )


def _collect_control(env_id, steps, out, expert_episodes, medium_episodes, seed, net_arch, learning_starts, progress,
                     format="hdf5", algorithm="SAC") -> Path:
    model = _make_control_learner(algorithm, env_id, steps, seed, net_arch, learning_starts)
    replay = _EpisodeRecorder(action_dtype=_action_dtype(model.action_space))
    half = {"policy": None}

    def on_step(cb) -> None:
        info = cb.locals["infos"][0]
        done = bool(cb.locals["dones"][0])
        truncated = done and bool(info.get("TimeLimit.truncated", False))
        # _last_obs is still the observation the action was taken in (SB3 stores the step after callbacks);
        # after a done the vectorised env has reset: the episode's last observation is in the info
        next_obs = info.get("terminal_observation") if done else None
        replay.add(cb.model._last_obs[0], cb.locals["actions"][0], cb.locals["rewards"][0], done and not truncated, truncated,
                   next_obs)
        if medium_episodes and cb.num_timesteps == total // 2:
            half["policy"] = copy.deepcopy(cb.model.policy)

    t0 = time.perf_counter()
    total = steps if algorithm == "SAC" else -(-steps // model.n_steps) * model.n_steps  # PPO: whole rollouts
    model.learn(steps, callback=_ProgressCallback.make(total, f"{algorithm} {env_id}", on_step, progress))
    replay.close(terminated=False, truncated=True, final_obs=model._last_obs[0])
    train_seconds = time.perf_counter() - t0
    if medium_episodes and half["policy"] is None:  # cannot happen with one env; kept as a clear failure
        raise RuntimeError(f"{algorithm} never reached step {steps // 2}: no half-time policy to roll out")

    parts = {"replay": replay.episodes}
    finals = {"replay": replay.finals}
    if medium_episodes:
        parts["medium"], finals["medium"] = rollout_episodes(env_id, half["policy"], medium_episodes, seed + 20_000,
                                                             "medium rollouts", progress)
    if expert_episodes:
        parts["expert"], finals["expert"] = rollout_episodes(env_id, model, expert_episodes, seed + 10_000,
                                                             "expert rollouts", progress)
    random_episodes, _ = rollout_episodes(env_id, None, RANDOM_EPISODES, seed + 30_000, "random rollouts", False)
    random_returns = np.array([float(ep.rewards.sum()) for ep in random_episodes])

    episodes, part_ids, meta = _merge_parts(parts)
    dataset = TrajectoryDataset(episodes, name=f"{env_id}-{algorithm.lower()}{steps}")
    meta.update(
        env_id=env_id,
        algorithm=algorithm,
        steps=sum(len(ep.rewards) for ep in parts["replay"]),  # PPO: rounded up to whole rollouts
        seed=int(seed),
        net_arch=json.dumps(list(net_arch)),
        train_seconds=round(train_seconds, 1),
        parts=json.dumps([p for p in CONTROL_PARTS if p in parts]),
        random_episodes=len(random_returns),
        random_return_mean=float(random_returns.mean()),
        random_return_std=float(random_returns.std()),
    )
    if algorithm == "SAC":
        meta["sac_steps"] = int(steps)  # the name older files use
    if format == "minari":
        from fh_rl.datasets.hdf5 import write_minari

        ordered = [f for name in CONTROL_PARTS if name in finals for f in finals[name]]  # as _merge_parts orders them
        text = ", ".join(f"{k}={v}" for k, v in meta.items())
        return write_minari(str(out), dataset, ordered, env_id, algorithm_name=f"{algorithm} ({steps} steps) via fh_rl",
                            description=f"fh_rl collect control: {algorithm} replay and rollouts; {text}")
    return write_hdf5(out, dataset, metadata=meta, infos={"part": np.concatenate(part_ids)})


def summary(path: str | os.PathLike) -> str:
    """What a ``collect control`` file holds, on one screen: episodes, transitions and return per part, and the
    random policy's return for scale (from its metadata and ``infos/part``)."""
    import h5py

    path = Path(path)
    with h5py.File(path, "r") as f:
        meta = dict(f["metadata"].attrs) if "metadata" in f else {}
        part = f["infos/part"][()] if "infos" in f and "part" in f["infos"] else None
        n = len(f["rewards"])
    counts = np.bincount(part, minlength=len(CONTROL_PARTS)) if part is not None else None
    algorithm = meta.get("algorithm", "SAC")
    lines = [f"{path}: {meta.get('env_id', '?')}, {algorithm} for {int(meta.get('steps', meta.get('sac_steps', 0))):,} "
             f"steps ({float(meta.get('train_seconds', float('nan'))):.0f} s), {n:,} transitions"]
    lines.append(f"  {'part':<8} {'episodes':>8} {'transitions':>11} {'return mean':>12} {'std':>9}")
    for i, name in enumerate(CONTROL_PARTS):
        if f"{name}_episodes" not in meta:
            continue
        rows = "-" if counts is None else f"{int(counts[i]):,}"
        lines.append(f"  {name:<8} {int(meta[f'{name}_episodes']):>8} {rows:>11} "
                     f"{float(meta[f'{name}_return_mean']):>12.1f} {float(meta[f'{name}_return_std']):>9.1f}")
    if "random_return_mean" in meta:
        lines.append(f"  {'random':<8} {int(meta['random_episodes']):>8} {'-':>11} "
                     f"{float(meta['random_return_mean']):>12.1f} {float(meta['random_return_std']):>9.1f}"
                     "   (uniformly random actions, for scale; not in the file)")
    return "\n".join(lines)


def _merge_parts(parts: dict[str, list[Episode]]) -> tuple[list[Episode], list[np.ndarray], dict[str, Any]]:
    """The parts' episodes in :data:`CONTROL_PARTS` order, their part ids ((T_i,) int8 each), and return stats."""
    episodes, part_ids, meta = [], [], {}
    for name in CONTROL_PARTS:
        if name not in parts:
            continue
        returns = np.array([float(ep.rewards.sum()) for ep in parts[name]])
        meta[f"{name}_episodes"] = len(returns)
        meta[f"{name}_return_mean"] = float(returns.mean()) if len(returns) else float("nan")
        meta[f"{name}_return_std"] = float(returns.std()) if len(returns) else float("nan")
        for ep in parts[name]:
            episodes.append(ep)
            part_ids.append(np.full(len(ep.rewards), CONTROL_PARTS.index(name), np.int8))
    return episodes, part_ids, meta


# --------------------------------------------------------------------------- atari


class ClipRewardKeepRaw(gym.RewardWrapper):
    """Clip rewards to [-1, 1] (what the DQN learns from and the log stores); keep the raw one in ``info``."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["raw_reward"] = float(reward)
        return obs, float(np.clip(reward, -1.0, 1.0)), terminated, truncated, info

    def reward(self, reward):  # pragma: no cover - step() is overridden
        return float(np.clip(reward, -1.0, 1.0))


def collect_atari(
    game: str,
    steps: int,
    root: str | os.PathLike,
    *,
    run: int = 1,
    capacity: int = 100_000,
    buffer_size: int | None = None,
    seed: int = 0,
    learning_starts: int | None = None,
    threads: int | None = 1,
    train_freq: int = 4,
    gradient_steps: int = 1,
    progress: bool = True,
    on_transition: Callable[[np.ndarray, int, float, bool], None] | None = None,
) -> Path:
    """Train an SB3 DQN on ``game`` (``dqn-replay`` protocol) and log its experience as DQN-Replay.

    Every transition (newest 84x84 frame of the state the action was taken
    in, the action, the clipped reward, terminal = game over or the 27,000-step
    cap) goes through :class:`DQNReplayWriter` with ``capacity`` rows per file.
    ``on_transition(frame, action, clipped_reward, terminal)``, when given, sees
    the same rows (for tests and custom side logs). Once learning starts, the
    DQN's gradient steps take most of the time: ``train_freq`` (agent steps
    per update, the Nature DQN's 4) and ``gradient_steps`` (updates each time)
    trade learning for speed (benchmarks/collect_atari.py). Returns the run directory
    ``<root>/<game>/<run>``; refuses to write over an existing one.
    """
    from fh_rl.envs import canonical_env_name, env_kind, make_env

    _require_positive("steps", steps)
    _require_positive("capacity", capacity)
    _require_positive("train_freq", train_freq)
    _require_positive("gradient_steps", gradient_steps)
    if env_kind(game) != "atari":
        raise ValueError(f"collect atari needs an Atari game, got {game!r}")
    game = canonical_env_name(game)
    root = Path(root).expanduser()
    final = replay_dir(root, game, run).parent
    if final.exists() and any(final.iterdir()):
        raise FileExistsError(f"{final} already exists; pass another --run or --out, or delete it first")
    buffer_size = int(buffer_size or min(steps, 50_000))
    learning_starts = int(learning_starts if learning_starts is not None else min(steps // 10, 50_000))
    with wait_for_file_lock(root / f"{game}-{run}"):  # one writer per run; we may clear what killed writers left
        if final.exists() and any(final.iterdir()):
            raise FileExistsError(f"{final} already exists; pass another --run or --out, or delete it first")
        for stale in root.glob(f".partial-{game}-{run}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        partial_root = root / f".partial-{game}-{run}-{os.getpid()}"
        env = ClipRewardKeepRaw(make_env(game, protocol="dqn-replay"))
        model = _make_dqn(env, seed, buffer_size, learning_starts, train_freq, gradient_steps)
        return _collect_into(model, env, partial_root, final, game, run, steps=steps, capacity=capacity, seed=seed,
                             threads=threads, progress=progress, on_transition=on_transition)


def _collect_into(model, env, partial_root: Path, final: Path, game: str, run: int, *, steps: int, capacity: int,
                  seed: int, threads: int | None, progress: bool, on_transition) -> Path:
    """Train ``model``, logging every transition under ``partial_root``; publish the run as ``final`` when done."""
    try:
        with DQNReplayWriter(partial_root, game, run, capacity=capacity) as writer:
            log = _TransitionLog(writer, on_transition)
            with _torch_threads(threads):
                model.learn(steps, callback=_ProgressCallback.make(steps, f"DQN {game}", log.on_step, progress))
        side = {
            "game": game,
            "run": run,
            "steps": steps,
            "capacity": capacity,
            "seed": seed,
            "protocol": "dqn-replay",
            **log.episode_stats(),
        }
        _publish_run(replay_dir(partial_root, game, run).parent, final, side)
    except OSError as exc:  # a full or read-only disk: one line naming the run (the partial logs go below)
        from fh_rl.infra.atomic import storage_error

        error = storage_error(exc, final)
        if error is None:
            raise
        raise error from None
    finally:
        env.close()
        shutil.rmtree(partial_root, ignore_errors=True)
    return final


def _make_dqn(env: gym.Env, seed: int, buffer_size: int, learning_starts: int, train_freq: int = 4,
              gradient_steps: int = 1) -> Any:
    """SB3's DQN with the Nature-DQN settings used for collection (lr 1e-4, target update 1000, eps to 0.01)."""
    from stable_baselines3 import DQN

    return DQN(
        "CnnPolicy",
        env,
        seed=seed,
        buffer_size=buffer_size,
        learning_starts=learning_starts,
        learning_rate=1e-4,
        batch_size=32,
        train_freq=train_freq,
        gradient_steps=gradient_steps,
        target_update_interval=1000,
        exploration_fraction=0.1,
        exploration_final_eps=0.01,
        optimize_memory_usage=True,
        replay_buffer_kwargs={"handle_timeout_termination": False},
        verbose=0,
        device="cpu",
    )


class _TransitionLog:
    """SB3 step callback: every transition into the DQN-Replay writer; raw returns of finished episodes."""

    def __init__(self, writer: DQNReplayWriter, on_transition: Callable[[np.ndarray, int, float, bool], None] | None):
        self.writer, self.on_transition = writer, on_transition
        self.raw_returns: list[float] = []
        self.lengths: list[int] = []
        self.ret, self.steps = 0.0, 0  # the running episode

    def on_step(self, cb: Any) -> None:
        info = cb.locals["infos"][0]
        frame = cb.model._last_obs[0, -1]  # newest frame of the state the action was taken in
        action = int(cb.locals["actions"][0])
        reward = float(cb.locals["rewards"][0])  # already clipped by ClipRewardKeepRaw
        terminal = bool(cb.locals["dones"][0])  # game over or the step cap: both end the logged episode
        self.writer.add(frame, action, reward, terminal)
        if self.on_transition is not None:
            self.on_transition(frame, action, reward, terminal)
        self.ret += info.get("raw_reward", reward)
        self.steps += 1
        if terminal:
            self.raw_returns.append(self.ret)
            self.lengths.append(self.steps)
            self.ret, self.steps = 0.0, 0

    def episode_stats(self) -> dict[str, Any]:
        return {
            "episode_returns": self.raw_returns,
            "episode_lengths": self.lengths,
            "unfinished_episode": {"return": self.ret, "length": self.steps},
        }


def _publish_run(run_dir: Path, final: Path, side: dict[str, Any]) -> None:
    """Write ``episode_returns.json`` into the finished ``run_dir`` and rename it to ``final``."""
    (run_dir / "episode_returns.json").write_text(json.dumps(side, indent=1, allow_nan=False))
    assert discover_suffixes(run_dir / "replay_logs"), "writer produced no files"
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # an empty directory only (checked above)
        final.rmdir()
    os.replace(run_dir, final)


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fh_rl.datasets.collect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True)
    a = sub.add_parser("atari", help="SB3 DQN replay logged in the DQN-Replay layout")
    a.add_argument("--game", required=True, help="Atari game, e.g. Breakout")
    a.add_argument("--steps", type=int, required=True, help="agent steps (each 4 frames)")
    a.add_argument("--out", required=True, help="data root; files go to OUT/<Game>/<run>/replay_logs")
    a.add_argument("--run", type=int, default=1)
    a.add_argument("--capacity", type=int, default=100_000, help="rows per replay file (published data: 1,000,000)")
    a.add_argument("--buffer-size", type=int, default=None, help="SB3 replay buffer size (default min(steps, 50000))")
    a.add_argument("--learning-starts", type=int, default=None)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--threads", type=int, default=1, help="torch threads for the DQN (default 1)")
    a.add_argument("--train-freq", type=int, default=4,
                   help="agent steps per DQN update (default 4, the Nature DQN's; larger is faster, learns less)")
    a.add_argument("--gradient-steps", type=int, default=1, help="gradient steps per DQN update (default 1)")
    c = sub.add_parser("control", help="SB3 SAC (Box actions) or PPO (Discrete) experience (+ rollouts) as D4RL HDF5")
    c.add_argument("--env", required=True, help="gymnasium id with vector observations and Box or Discrete actions, "
                                                "e.g. Pendulum-v1, CartPole-v1")
    c.add_argument("--steps", type=int, required=True,
                   help="learner environment steps (PPO: rounded up to whole rollouts of 2048)")
    c.add_argument("--out", required=True, help="HDF5 file to write (--format minari: a Minari dataset id, "
                                                "e.g. fhrl/pendulum-sac-v0)")
    c.add_argument("--format", choices=("hdf5", "minari"), default="hdf5",
                   help="D4RL-layout HDF5 (default) or a Minari dataset (pip install \"fh_rl[minari]\")")
    c.add_argument("--expert-episodes", type=int, default=100, help="rollouts of the final policy")
    c.add_argument("--medium-episodes", type=int, default=0, help="rollouts of the half-time policy")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=1, help="torch threads for SAC/PPO (default 1)")
    args = parser.parse_args(argv)
    if args.kind == "atari":
        path = collect_atari(args.game, args.steps, args.out, run=args.run, capacity=args.capacity,
                             buffer_size=args.buffer_size, learning_starts=args.learning_starts, seed=args.seed,
                             threads=args.threads, train_freq=args.train_freq, gradient_steps=args.gradient_steps)
        side = json.loads((path / "episode_returns.json").read_text())
        rets = side["episode_returns"]
        print(f"wrote {path} ({len(rets)} finished episodes, raw return mean "
              f"{np.mean(rets) if rets else float('nan'):.1f})")
    else:
        path = collect_control(args.env, args.steps, args.out, expert_episodes=args.expert_episodes,
                               medium_episodes=args.medium_episodes, seed=args.seed, threads=args.threads,
                               format=args.format)
        print(summary(path) if args.format == "hdf5" else f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))

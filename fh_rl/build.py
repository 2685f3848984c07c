"""From a run config to what training needs: data, action codec, agent, samplers, held-out batches.

    built = build(cfg)          # Built: dataset, train, val, codec, agent, sampler, val_batches
    trainer = Trainer(built.agent, built.sampler, cfg.train, val_batches=built.val_batches, ...)
    cfg, agent, state = load_agent(run_dir)   # a trained agent back from its checkpoint

``train``, ``evaluate`` and ``compare`` build through here, so a run's parts
are made one way. Statistics the model keeps (state mean and std, the
return-to-go scale) come from the training split only; the reward transform
(e.g. DQN-Replay's clipping) is the one the dataset declares.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fh_rl.config import Config, EnvConfig

if TYPE_CHECKING:
    from fh_rl.agents import Agent
    from fh_rl.datasets import TrajectoryDataset, TransitionBatch, TransitionSampler, WindowBatch, WindowSampler
    from fh_rl.envs.codecs import ActionCodec


@dataclass
class Built:
    """The parts of one run, built from its config by :func:`build`."""

    dataset: TrajectoryDataset
    """The whole dataset as loaded (what the manifest records)."""
    train: TrajectoryDataset
    """The training split (the whole dataset when ``dataset.val_fraction`` is 0)."""
    val: TrajectoryDataset | None
    """The held-out split, or None."""
    codec: ActionCodec
    """Environment actions <-> bins."""
    agent: Agent
    """The untrained agent with its head, state statistics and return-to-go scale."""
    sampler: WindowSampler | TransitionSampler
    """Training batches (this rank's share of each global batch under torchrun)."""
    val_batches: list[WindowBatch | TransitionBatch]
    """``train.val_batches`` fixed held-out batches (empty without a held-out split)."""


def build(cfg: Config, *, progress: bool = True, shard: tuple[int, int] = (0, 1),
          device: torch.device | None = None) -> Built:
    """Dataset, split, codec, agent, training sampler and held-out batches for ``cfg``.

    ``shard`` is ``(rank, world_size)`` under torchrun: the training sampler
    yields this rank's share of each global batch of ``train.batch_size``.
    Nothing that would fail later is left to fail later (:mod:`fh_rl.preflight`):
    before the data is read, the memory training needs is estimated against
    ``device`` (default: ``train.device``); once read, the data must fit the
    environment's observation and action spaces.
    """
    from fh_rl.agents import AGENTS, build_agent
    from fh_rl.agents.base import check_head_fits
    from fh_rl.datasets.variants import apply_variant
    from fh_rl.infra.utils import resolve_device
    from fh_rl.preflight import check_action_bounds, check_spaces, check_timesteps

    codec, observation_space, action_space = probe_env(cfg.env, seed=cfg.seed)
    check_head_fits(cfg.head.name, codec, where=cfg.env.name)  # before any data is read (or built)
    check_training_memory(cfg, codec, tuple(observation_space.shape), device or resolve_device(cfg.train.device))
    dataset = load_dataset(cfg, progress=progress)
    check_spaces(dataset, observation_space, action_space, env_name=cfg.env.name, source=cfg.dataset.path)
    check_action_bounds(dataset, action_space, source=cfg.dataset.path, clip=cfg.dataset.clip_actions)
    if AGENTS.get(cfg.agent.name).sequence_model:
        check_timesteps(dataset, cfg.agent.max_timestep, source=cfg.dataset.path)
    dataset = apply_variant(dataset, cfg.dataset, cfg.env.name, action_space)
    train, val = split_dataset(cfg, dataset)
    frames = len(dataset.state_shape) == 3
    agent = build_agent(
        cfg.agent,
        head=cfg.head.name,
        head_params=cfg.head.params,
        state_shape=tuple(dataset.state_shape),
        codec=codec,
        state_mean=None if frames else torch.as_tensor(np.asarray(train.state_mean()), dtype=torch.float32),
        state_std=None if frames else torch.as_tensor(np.asarray(train.state_std()), dtype=torch.float32),
        rtg_scale=rtg_scale(cfg, train),
        reward_transform=dataset.reward_transform,
    )
    sampler, val_batches = build_samplers(cfg, agent.sequence_model, train, val, shard=shard)
    return Built(dataset, train, val, codec, agent, sampler, val_batches)


def split_dataset(cfg: Config, dataset: TrajectoryDataset) -> tuple[TrajectoryDataset, TrajectoryDataset | None]:
    """(train, held-out) by whole episodes (``dataset.val_fraction``, seeded by ``dataset.split_seed``, else the
    run seed; no held-out split at 0), the training split cut to ``dataset.episode_fraction`` of its episodes."""
    from fh_rl.datasets.variants import episode_fraction

    d = cfg.dataset
    train, val = dataset, None
    if d.val_fraction > 0:
        train, val = dataset.split(d.val_fraction, cfg.seed if d.split_seed is None else d.split_seed)
    return episode_fraction(train, d.episode_fraction, d.variant_seed), val


def held_out_batches(cfg: Config, *, progress: bool = True) -> list[WindowBatch | TransitionBatch]:
    """The run's fixed held-out batches (as :func:`build` makes them) without building its agent or environment."""
    from fh_rl.agents import AGENTS
    from fh_rl.datasets.variants import apply_variant

    dataset = load_dataset(cfg, progress=progress)
    if cfg.dataset.action_noise > 0 or cfg.dataset.two_modes:
        dataset = apply_variant(dataset, cfg.dataset, cfg.env.name, probe_env(cfg.env, seed=cfg.seed)[2])
    train, val = split_dataset(cfg, dataset)
    return build_samplers(cfg, AGENTS.get(cfg.agent.name).sequence_model, train, val)[1]


def rtg_scale(cfg: Config, train: TrajectoryDataset) -> float:
    """``dataset.rtg_scale``, else the largest absolute episode return of the training split (1 if all are 0)."""
    if cfg.dataset.rtg_scale is not None:
        return float(cfg.dataset.rtg_scale)
    returns = np.abs(np.asarray(train.episode_returns, dtype=np.float64))
    return float(returns.max()) if len(returns) and returns.max() > 0 else 1.0


def build_codec(env_cfg: EnvConfig, *, seed: int = 0) -> ActionCodec:
    """The action codec of ``env_cfg.name`` (bins and margins for Box actions; Atari's joystick order from the ROM)."""
    return probe_env(env_cfg, seed=seed)[0]


def probe_env(env_cfg: EnvConfig, *, seed: int = 0) -> tuple[ActionCodec, Any, Any]:
    """The action codec and the observation and action spaces of ``env_cfg.name`` (one environment, closed)."""
    import gymnasium as gym

    from fh_rl.envs import make_env
    from fh_rl.envs.codecs import make_codec

    env = make_env(env_cfg.name, protocol=env_cfg.protocol, seed=seed)
    try:
        box = isinstance(env.action_space, gym.spaces.Box)
        codec = make_codec(
            env.action_space,
            num_bins=env_cfg.num_bins if box else None,
            ordering=env_cfg.ordering,
            action_meanings=getattr(env.unwrapped, "get_action_meanings", lambda: None)() if not box else None,
            margin_bins=env_cfg.margin_bins if box else 0,
        )
        return codec, env.observation_space, env.action_space
    finally:
        env.close()


def check_training_memory(cfg: Config, codec: ActionCodec, state_shape: tuple[int, ...], device: torch.device) -> None:
    """Refuse (ValueError quoting the estimate) a configuration whose training cannot fit in ``device``'s memory."""
    from fh_rl.agents import AGENTS, build_agent
    from fh_rl.preflight import check_memory, estimate_memory

    a = cfg.agent
    sequence = AGENTS.get(a.name).sequence_model
    estimate = estimate_memory(
        lambda: build_agent(a, head=cfg.head.name, head_params=cfg.head.params, state_shape=state_shape, codec=codec),
        batch_size=cfg.train.batch_size, tokens=3 * a.context_len if sequence else 1, steps=cfg.context_len,
        embed_dim=a.embed_dim, n_layer=a.n_layer, n_head=a.n_head, state_values=int(np.prod(state_shape)),
    )
    check_memory(estimate, device)


def build_samplers(
    cfg: Config,
    sequence_model: bool,
    train: TrajectoryDataset,
    val: TrajectoryDataset | None,
    *,
    shard: tuple[int, int] = (0, 1),
) -> tuple[WindowSampler | TransitionSampler, list[WindowBatch | TransitionBatch]]:
    """The training sampler (windows for sequence models, transitions otherwise) and the fixed held-out batches."""
    from fh_rl.datasets.sampling import TransitionSampler, WindowSampler

    B = cfg.train.batch_size
    if sequence_model:
        sampler = WindowSampler(train, cfg.agent.context_len, B, seed=cfg.seed, shard=shard)
        val_sampler = WindowSampler(val, cfg.agent.context_len, B, seed=cfg.seed + 1) if val is not None else None
    else:
        sampler = TransitionSampler(train, B, seed=cfg.seed, shard=shard)
        val_sampler = TransitionSampler(val, B, seed=cfg.seed + 1) if val is not None else None
    val_batches = [val_sampler.sample() for _ in range(cfg.train.val_batches)] if val_sampler is not None else []
    return sampler, val_batches


def load_agent(checkpoint: str | Path) -> tuple[Config, Agent, dict[str, Any]]:
    """The config, the trained agent and the whole checkpoint of a run directory or ``.pt`` file (``weights_only``)."""
    from fh_rl.agents import agent_from_spec
    from fh_rl.config import config_from_dict
    from fh_rl.trainer import load_checkpoint

    state = load_checkpoint(checkpoint)
    missing = [k for k in ("config", "spec", "model", "step") if k not in state]
    if missing:
        raise ValueError(
            f"checkpoint {str(checkpoint)!r} has no {', '.join(missing)}: it was written by a bare Trainer, which saves "
            f"only what it owns; train with fh_rl.fit(...) or python -m fh_rl.train to get a checkpoint that "
            f"evaluate, compare and fh_rl.load can read (or pass Trainer(checkpoint_extra={{'config': cfg.to_dict(), "
            f"'spec': agent.spec(), ...}}) as fh_rl.train does)"
        )
    cfg = config_from_dict(state["config"])
    return cfg, agent_from_spec(cfg.agent, state["spec"], state["model"]), state


# ----------------------------------------------------------------------------- data


def load_dataset(cfg: Config, *, progress: bool = True) -> TrajectoryDataset:
    """The configured dataset (FileNotFoundError naming the path when missing; made first if ``dataset.build``)."""
    d = cfg.dataset
    path = Path(d.path)
    if d.format == "minari":
        from fh_rl.datasets import load_minari

        return load_minari(d.path)  # a path or an id (FileNotFoundError naming it, with the collector to make one)
    if not path.exists() and d.build is not None:
        if d.format != "hdf5":
            raise ValueError(
                f"dataset {str(path)!r} not found and dataset.build={d.build!r} makes HDF5 files only; for "
                f"DQN-Replay data run `python -m fh_rl.datasets.collect atari` or set dataset.build=null"
            )
        build_dataset(cfg, progress=progress)
    if not path.exists():
        raise FileNotFoundError(
            f"dataset {str(path)!r} not found (dataset.path in the config); make one with "
            f"`python -m fh_rl.datasets.collect` or point --set dataset.path=... at a "
            f"{'D4RL-layout HDF5 file' if d.format == 'hdf5' else 'DQN-Replay root'}"
        )
    if d.format == "hdf5":
        from fh_rl.datasets import load_hdf5

        return load_hdf5(path)
    from fh_rl.datasets import load_dqn_replay

    return load_dqn_replay(
        path,
        d.game or cfg.env.name,
        run=d.run,
        suffixes=d.suffixes,
        max_transitions=d.max_transitions,
        seed=cfg.seed,
        protocol=d.replay_sampling,
        progress=progress,
    )


def resolve_env(cfg: Config) -> Config:
    """``cfg`` with ``env.name`` filled in from a Minari dataset's spec when the config names none."""
    import dataclasses

    if cfg.env.name is not None:
        return cfg
    from fh_rl.datasets.hdf5 import minari_env_id

    return dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, name=minari_env_id(cfg.dataset.path)))


def build_dataset(cfg: Config, *, progress: bool = True) -> Path:
    """Make the configured dataset (``dataset.build``) when it is missing, once, under a file lock.

    Several runs started together (a sweep) wait for the first to finish building
    instead of training SAC twice; the file appears atomically when complete.
    """
    from fh_rl.datasets.collect import collect_control, control_algorithm, summary
    from fh_rl.infra.locks import wait_for_file_lock

    d = cfg.dataset
    path = Path(d.path)
    with wait_for_file_lock(path, message=f"dataset {path} is being built by another run; waiting for it"):
        if path.exists():
            return path
        algorithm = control_algorithm(cfg.env.name, d.build)  # ValueError when build does not fit the action space
        parts = [f"{algorithm} for {d.build_steps:,} steps on {cfg.env.name}",
                 f"{d.build_expert_episodes} rollouts of its final policy"]
        if d.build_medium_episodes:
            parts.append(f"{d.build_medium_episodes} of its half-time policy")
        print(f"dataset {path} not found: building it ({', '.join(parts)}); it is cached there for later runs",
              file=sys.stderr)
        t0 = time.perf_counter()
        collect_control(
            cfg.env.name,
            d.build_steps,
            path,
            expert_episodes=d.build_expert_episodes,
            medium_episodes=d.build_medium_episodes,
            seed=d.build_seed,
            progress=progress,
            algorithm=algorithm,
        )
        print(f"dataset built in {time.perf_counter() - t0:.0f} s:\n{summary(path)}", file=sys.stderr)
    return path

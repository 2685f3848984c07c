"""The Python API: train a run, load it back as a policy, act with it, evaluate it.

    import fh_rl

    run = fh_rl.fit(head="linear", train={"steps": 2000})     # the quickstart preset, changed; -> run directory
    policy = fh_rl.load(run)                                  # the run's own evaluation settings
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    policy.reset()
    action = policy.predict(obs)                              # stateful: the Decision Transformer's context
    obs, reward, terminated, truncated, _ = env.step(action)
    action = policy.predict(obs, reward)                      # the reward the previous action earned
    policy.evaluate(episodes=10)                              # what python -m fh_rl.evaluate computes

``fit`` writes the same run directory as ``python -m fh_rl.train`` (both call
:func:`fh_rl.train.run`); ``Policy.evaluate`` resolves the run's settings as
``python -m fh_rl.evaluate`` does (:func:`fh_rl.evaluate.evaluation_settings`)
and rolls out through the same :func:`fh_rl.evaluate.run_evaluation`;
``Policy.predict`` drives the same :class:`~fh_rl.agents.inference.AgentPolicy`
the rollout workers are driven with, so one episode of ``predict`` on seed s
takes the actions ``python -m fh_rl.evaluate --episodes 1 --workers 0 --seed s``
takes. The page: docs/python_api.md.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import gymnasium as gym

    from fh_rl.config import Config

SECTIONS = ("env", "dataset", "agent", "head", "train", "eval")
"""The config's sections: a keyword override with one of these names and a dict value sets keys inside it."""


def make_config(config: Config | Mapping[str, Any] | str | os.PathLike | None = None, /, **overrides: Any) -> Config:
    """The validated :class:`~fh_rl.config.Config` that :func:`fit` trains.

    ``config``: a ``Config``, a nested dict in the YAML's shape, a YAML file, or None for the quickstart preset
    ``configs/default.yaml`` (not ``Config()``, whose defaults are the base the presets build on; see
    docs/python_api.md). ``overrides``, applied in order:

    - ``head="linear"`` switches the head as ``--head`` does (the file's parameters of other heads are dropped);
      ``head={"name": "fourier", "num_frequencies": 8}`` does the same and sets the parameters;
    - ``seed=1`` as ``--seed``;
    - a section with a dict, ``train={"steps": 500}``, sets those keys of the section;
    - any other key, dotted through ``**{"train.steps": 500}`` or top-level (``run_root="runs/nb"``), as
      ``--set key=value`` with a Python value.
    """
    from fh_rl.config import Config, config_from_dict
    from fh_rl.config.load import read_config_file

    if config is None or isinstance(config, (str, os.PathLike)):
        data = read_config_file(config)
    elif isinstance(config, Config):
        data = config.to_dict()
    elif isinstance(config, Mapping):
        data = copy.deepcopy(dict(config))
    else:
        raise TypeError(f"config must be a Config, a dict, a YAML path or None (the quickstart preset), "
                        f"got {type(config).__name__}")
    head, seed, pairs = None, None, []
    for key, value in overrides.items():
        if key == "seed":
            seed = value
        elif key == "head" and isinstance(value, str):
            head = value
        elif key == "head" and isinstance(value, Mapping):
            value = dict(value)
            head = value.pop("name", None)
            pairs += [(f"head.{k}", v) for k, v in value.items()]
        elif key in SECTIONS and isinstance(value, Mapping):
            pairs += [(f"{key}.{k}", v) for k, v in _flatten(value)]
        elif key in SECTIONS:
            raise TypeError(f"{key}= takes a dict of that section's keys (e.g. {key}={{...}}), got {value!r}")
        else:
            pairs.append((key, value))
    return config_from_dict(data, overrides=pairs, head=head, seed=seed)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def fit(config: Config | Mapping[str, Any] | str | os.PathLike | None = None, /, *, evaluate: bool = True,
        progress: bool = True, **overrides: Any) -> Path:
    """Train a run and evaluate it, exactly as ``python -m fh_rl.train`` does; returns its run directory.

    ``config`` and ``overrides``: :func:`make_config`. The run directory
    (``<run_root>/<env>/<agent>-<head>/seed<S>-<time>/``: ``config.yaml``, ``manifest.json``,
    ``checkpoints/last.pt``, TensorBoard events, ``eval.json``) is what :func:`load`, ``python -m fh_rl.evaluate``
    and ``python -m fh_rl.compare`` read. ``evaluate=False``: no evaluation rollouts (``--no-eval``).
    Training stopped by Ctrl-C raises KeyboardInterrupt after its checkpoint is written (continue with
    ``python -m fh_rl.train --resume RUN``); a diverged run raises RuntimeError. torch's thread count
    (``train.threads``) is restored afterwards.
    """
    import torch

    from fh_rl import train
    from fh_rl.build import resolve_env

    cfg = resolve_env(make_config(config, **overrides))
    threads = torch.get_num_threads()
    try:
        outcome = train.run(cfg, evaluate=evaluate, progress=progress, command=["fh_rl.fit"])
    finally:
        torch.set_num_threads(threads)
    if outcome.interrupted:
        raise KeyboardInterrupt(f"training stopped by {outcome.interrupted} at step {outcome.step}; continue with "
                                f"python -m fh_rl.train --resume {outcome.run_dir}")
    if outcome.exit_code != 0:
        raise RuntimeError(f"training of {outcome.run_dir} diverged (non-finite loss); its last good checkpoint is "
                           f"kept; see the message above")
    return outcome.run_dir


def load(run_dir_or_checkpoint: str | os.PathLike, device: str = "cpu", *, decode: str | None = None) -> Policy:
    """A trained run as a :class:`Policy` with the run's own evaluation settings (target return, decoding,
    returns-to-go mode, environment protocol). ``run_dir_or_checkpoint``: a run directory (its
    ``checkpoints/last.pt``) or a ``.pt`` checkpoint written by ``fit`` / ``python -m fh_rl.train``.
    ``decode``: act with this decoding instead of the run's first ``eval.decode`` (``argmax``, ``sample``,
    ``mean``...: docs/decoding.md), as ``python -m fh_rl.evaluate --decode`` does."""
    from fh_rl.build import load_agent
    from fh_rl.evaluate import evaluation_settings

    cfg, agent, state = load_agent(run_dir_or_checkpoint)
    path = Path(run_dir_or_checkpoint)
    run_dir = path if path.is_dir() else path.parent.parent if path.parent.name == "checkpoints" else None
    settings = evaluation_settings(cfg, state, decode=decode)
    return Policy(cfg, agent, state, device=device, run_dir=run_dir, settings=settings)


@dataclass(frozen=True)
class ActionDistribution:
    """What the policy predicts for the next action (:meth:`Policy.action_distribution`); attributes or keys.

    A is the number of action dimensions (1 for a Discrete action), K the number of bins per dimension.
    """

    pmf: np.ndarray | None
    """``(A, K)`` float32, each row summing to 1: the probability of each bin (the ``gaussian`` head's density
    integrated over the bins); None for a point prediction (the ``mse`` head)."""
    values: np.ndarray
    """``(A, K)``: the environment action each bin stands for: Box actions the bin's centre in the action's units
    (margin bins, which are never targets, lie beyond the bounds and act as the nearest bound's bin);
    Discrete actions the action's index (bins follow ``env.ordering``)."""
    params: dict[str, np.ndarray] = field(default_factory=dict)
    """Heads that predict continuous actions: ``mean`` ``(A,)`` and, for ``gaussian``, ``log_std`` ``(A,)``,
    before the tanh, on the [-1, 1] scale of the action bounds; empty for heads that score bins."""
    action: Any = None
    """The action argmax decoding would take (the most likely bin, or ``tanh(mean)``), in environment units."""

    def __getitem__(self, key: str) -> Any:
        if key not in ("pmf", "values", "params", "action"):
            raise KeyError(f"{key!r}: an ActionDistribution has pmf, values, params and action")
        return getattr(self, key)

    def keys(self) -> tuple[str, ...]:
        return ("pmf", "values", "params", "action")


class Policy:
    """A trained agent acting one episode at a time, with its run's evaluation settings (:func:`load`).

    Attributes: ``config`` (the run's :class:`~fh_rl.config.Config`), ``agent`` (the ``nn.Module``),
    ``run_dir``, ``step`` (the checkpoint's training step), ``target_return`` (the Decision Transformer's
    initial return-to-go, dataset units; None for behavior cloning), ``decode`` (how it reads an action from
    the head: the first of the run's ``eval.decode``, docs/decoding.md), ``sample`` (whether that draws at random)
    and ``settings`` (everything :meth:`evaluate` uses).
    """

    def __init__(self, cfg: Config, agent: Any, state: dict[str, Any], *, device: Any = "cpu",
                 run_dir: Path | None = None, settings: dict[str, Any] | None = None) -> None:
        import torch

        from fh_rl.agents.inference import AgentPolicy
        from fh_rl.evaluate import evaluation_settings

        self.config, self.agent, self.run_dir, self.step = cfg, agent, run_dir, int(state["step"])
        self.device = torch.device(device)
        self.settings = dict(settings) if settings is not None else evaluation_settings(cfg, state)
        self.target_return = float(self.settings["targets"][0]) if agent.sequence_model else None
        s = self.settings
        self._policy = AgentPolicy(agent, target_return=self.target_return or 0.0, device=self.device,
                                   decode=s["decode"][0], rtg_mode=s["rtg_mode"], seed=s["seed"],
                                   timesteps=s["timesteps"], integer_rtg=s["integer_rtg"])
        self._t = 0
        self.reset()

    @property
    def sample(self) -> bool:
        """Whether the decoding draws actions at random (``sample``, ``+within_bin``)."""
        return self._policy.sample

    @property
    def decode(self) -> str:
        """The decoding :meth:`act` uses (the first of the run's ``eval.decode``)."""
        return self._policy.decoder.name

    def __repr__(self) -> str:
        where = f" from {self.run_dir}" if self.run_dir else ""
        target = f", target return {self.target_return:g}" if self.target_return is not None else ""
        return (f"Policy({self.config.agent.name}-{self.agent.head_name} on {self.config.env.name}, step {self.step}"
                f"{target}, {self.decode} decoding{where})")

    # ------------------------------------------------------------------ one episode

    def reset(self, target_return: float | None = None, *, seed: int | None = None) -> None:
        """Start an episode: an empty context and the return-to-go ``target_return`` (default: the run's).

        ``seed`` reseeds action sampling (and within-bin decoding); without it the random stream continues.
        """
        import torch

        p = self._policy
        if target_return is not None:
            if not self.agent.sequence_model:
                raise ValueError(f"target_return applies to the Decision Transformer; a {self.config.agent.name!r} "
                                 f"agent is not conditioned on a return")
            p.target_return = float(target_return)
        elif self.target_return is not None:
            p.target_return = self.target_return
        if seed is not None:
            p.generator = torch.Generator(device=self.device).manual_seed(int(seed))
            p.rng = np.random.default_rng(int(seed))
        p.slots.clear()
        p.begin(np.zeros(1, np.int64), None)
        self._t = 0

    def predict(self, obs: Any, reward: float | None = None) -> Any:
        """The action for observation ``obs`` (an environment action: an integer for Discrete actions, a
        float32 array for Box ones), added to the episode's context.

        ``reward``: what the previous action earned, which the Decision Transformer subtracts from its
        return-to-go (d3rlpy's convention); required from the second step of an episode on for the DT,
        ignored at the first step and by behavior cloning.
        """
        self._advance(reward)
        action = self._policy.act(np.zeros(1, np.int64), self._batch(obs))[0]
        self._t += 1
        return action

    def action_distribution(self, obs: Any, reward: float | None = None) -> ActionDistribution:
        """What the policy predicts for the action at ``obs`` (same arguments as :meth:`predict`), without
        advancing the episode: call it before ``predict(obs, reward)`` for the same step."""
        import torch

        from fh_rl.heads.base import ContinuousOutput, normalized_pmf

        p = self._policy
        saved = copy.deepcopy(p.slots[0])
        try:
            self._advance(reward)
            out = p.head_output(np.zeros(1, np.int64), self._batch(obs))
        finally:
            p.slots[0] = saved
        head = self.agent.head
        with torch.no_grad():
            log_probs = head.bin_log_probs(out, self.agent.bin_edges)  # (1, A, K) or None
            mode = head.mode(out).cpu().numpy()  # (1, A)
        pmf = None if log_probs is None else normalized_pmf(log_probs)[0].cpu().numpy()
        params = {}
        if isinstance(out, ContinuousOutput):
            params["mean"] = out.mean[0].float().cpu().numpy()
            if out.log_std is not None:
                params["log_std"] = out.log_std[0].float().cpu().numpy()
        action = np.asarray(self.agent.decode_actions(mode))[0]
        return ActionDistribution(pmf=pmf, values=bin_values(self.agent.codec), params=params, action=action)

    def _advance(self, reward: float | None) -> None:
        """Subtract the previous action's reward from the return-to-go (from the episode's second step on)."""
        if self._t == 0:
            return
        if reward is None:
            if self.agent.sequence_model:
                raise ValueError("predict(obs, reward): from an episode's second step on the Decision Transformer "
                                 "needs the reward the previous action earned (its return-to-go goes down by it); "
                                 "call reset() when a new episode starts")
            reward = 0.0
        p = self._policy
        p.observe(np.zeros(1, np.int64), np.array([float(reward)]), np.zeros(1, bool))

    def _batch(self, obs: Any) -> np.ndarray:
        obs = np.asarray(obs)
        shape = tuple(self.agent.state_shape)
        if obs.shape != shape and not (self.agent.is_frames and obs.shape == shape[1:]):
            raise ValueError(f"observation of shape {obs.shape} does not match the agent's state shape {shape}; "
                             f"use policy.make_env() for the run's environment and protocol")
        return obs[None]

    # ------------------------------------------------------------------ environments and evaluation

    def make_env(self, *, seed: int | None = None, **kwargs: Any) -> gym.Env:
        """The run's environment with its protocol (Atari preprocessing), as the evaluation builds it;
        ``kwargs`` go to :func:`fh_rl.envs.make_env` (e.g. ``render_mode="rgb_array"``)."""
        from fh_rl.envs import make_env

        return make_env(self.config.env.name, protocol=self.settings["protocol"], seed=seed, **kwargs)

    def evaluate(self, episodes: int | None = None, workers: int | None = None, seed: int | None = None, *,
                 target_return: float | None = None, progress: bool = False) -> list[dict[str, Any]]:
        """Evaluate as ``python -m fh_rl.evaluate`` does (the run's settings; ``None`` keeps the run's value) and
        return its records, one per target return and decoding of the run's ``eval.decode``: ``returns``, ``lengths``, ``seeds`` per episode,
        ``return_mean``, ``return_std``, ``normalized_mean`` and the settings (the entries of ``eval.json``'s
        ``results``). Episode i is reset with seed ``seed + i``. Nothing is written."""
        from fh_rl.evaluate import evaluation_settings, run_evaluation

        targets = None if target_return is None else [float(target_return)]
        s = evaluation_settings(self.config, {"eval_targets": self.settings["targets"]}, targets=targets,
                                episodes=episodes, workers=workers, seed=seed, protocol=self.settings["protocol"],
                                rtg_mode=self.settings["rtg_mode"], decode=self.settings["decode"])
        return run_evaluation(self.agent, **s, device=self.device, progress=progress)


def bin_values(codec: Any) -> np.ndarray:
    """``(A, K)``: the environment action of each bin (Box: centres in action units, margin bins beyond the
    bounds; Discrete: the action index)."""
    if not codec.continuous:
        return np.asarray(codec.order, dtype=np.int64)[None, :]  # bin b is env action order[b]
    m = codec.margin_bins
    offsets = np.arange(codec.num_bins) - m + 0.5  # (K,)
    return (codec.low[:, None] + offsets[None, :] * codec.width[:, None]).astype(np.float32)  # (A, K)

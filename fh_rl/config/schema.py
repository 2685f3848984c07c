"""The run configuration's schema: one dataclass per section, each field documented and range-checked.

Checks that need only the field's own value live in ``__post_init__``; turning
YAML values into the field types is :mod:`fh_rl.config.coerce`'s job.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fh_rl.agents.base import AGENTS, AgentConfig
from fh_rl.config.coerce import coerce_value, unknown_key_message
from fh_rl.heads import HEADS, head_params

DATASET_FORMATS = ("hdf5", "dqn-replay", "minari")
DATASET_BUILDERS = ("sac", "ppo")
ORDERINGS = ("identity", "joystick")
RTG_MODES = ("transformed", "raw")


@dataclass
class EnvConfig:
    """The environment the agent acts in (evaluation) and its action codec."""

    name: str | None = "Pendulum-v1"
    """Gymnasium id or Atari game name (e.g. ``Pendulum-v1``, ``HalfCheetah-v5``, ``Seaquest``); null with
    ``dataset.format: minari``: the env the Minari dataset was collected in."""
    protocol: str | None = None
    """Environment protocol for Atari (e.g. ``dqn-replay`` or ``dt-paper``); None: the env factory's default."""
    num_bins: int = 64
    """K, bins per action dimension for continuous (Box) actions; ignored for discrete actions. Heads that
    score continuous actions do not act in bins: for them the bins only serve the held-out NLL, accuracy
    and smoothness, which compare them with the quantized heads."""
    ordering: str = "identity"
    """Discrete action order: ``identity`` or ``joystick`` (the paper's direction ordering)."""
    margin_bins: int = 0
    """Continuous actions: never-target bins added beyond each bound, so the head sees num_bins + 2*margin_bins
    bins. Keeps a Fourier head's periodic density from linking the two extreme actions (p(-1) = p(1))."""

    def __post_init__(self) -> None:
        _positive(self, "num_bins", minimum=2)
        if not isinstance(self.margin_bins, int) or self.margin_bins < 0:
            raise ValueError(f"env.margin_bins must be an integer >= 0, got {self.margin_bins!r}")
        _choice(self, "ordering", ORDERINGS)


@dataclass
class DatasetConfig:
    """Where the offline trajectories come from and how they are split."""

    format: str = "hdf5"
    """``hdf5`` (a D4RL-layout file), ``dqn-replay`` (a DQN-Replay root directory) or ``minari`` (a Minari dataset)."""
    path: str = "datasets/pendulum-v1-sac-mixed.hdf5"
    """HDF5 file, the DQN-Replay root holding ``<Game>/<run>/replay_logs``, or a Minari dataset id
    (``mujoco/hopper/medium-v0``) or directory; paths relative to the working directory."""
    game: str | None = None
    """DQN-Replay: game directory name (default: the env name)."""
    run: int = 1
    """DQN-Replay: run number."""
    suffixes: list[int] | None = None
    """DQN-Replay: checkpoint suffixes to read (None: all)."""
    max_transitions: int | None = None
    """Sample at most this many transitions (DQN-Replay: the paper's 500,000); None: all."""
    replay_sampling: str | None = None
    """DQN-Replay sampling with ``max_transitions``: ``episodes`` (whole random episodes) or ``paper``
    (the DT paper's buffer visits); None: the reader's default."""
    val_fraction: float = 0.05
    """Fraction of episodes held out for validation metrics (0 disables validation)."""
    rtg_scale: float | None = None
    """Returns-to-go are divided by this inside the model; None: the largest absolute episode return."""
    clip_actions: bool = False
    """Continuous actions outside the environment's bounds (beyond 0.1% of the range) are an error; true: clip
    them to the bounds instead (they then train the end bins)."""
    build: str | None = None
    """When ``path`` does not exist, make it first: ``sac`` trains Stable-Baselines3 SAC on ``env.name`` (Box
    actions), ``ppo`` trains PPO (Discrete actions), and writes its experience plus rollouts of the final policy
    (``python -m fh_rl.datasets.collect control``); None: a missing dataset is an error."""
    build_steps: int = 10_000
    """``build``: the learner's environment steps."""
    build_expert_episodes: int = 100
    """``build``: rollouts of the learner's final policy added to its experience."""
    build_medium_episodes: int = 0
    """``build``: rollouts of the learner's half-time policy added as well."""
    build_seed: int = 0
    """``build``: seed of the learner's run (fixed, so every run that builds the file builds the same data)."""
    split_seed: int | None = None
    """Seed of the held-out split; None: the run's seed (each seed holds out other episodes). Fix it to compare
    held-out NLL across seeds and arms."""
    action_noise: float = 0.0
    """Variant: every action relabelled as a + e, e ~ N(0, (action_noise * half the action range)^2), clipped to
    the bounds (Box actions; docs/data.md#dataset-variants); 0: as recorded."""
    two_modes: bool = False
    """Variant: a seeded half of the episodes mirrored through the environment's symmetry (Pendulum-v1), so the
    data holds the behaviour policy and its mirror image in equal parts."""
    episode_fraction: float = 1.0
    """Variant: train on this fraction of the training split's episodes (a seeded pick; held-out split untouched)."""
    variant_seed: int = 0
    """Seed of the variants' noise, mirrored half and episode pick (fixed: every run of a variant sees the same data)."""

    def __post_init__(self) -> None:
        _choice(self, "format", DATASET_FORMATS)
        check_seed(self.build_seed, "dataset.build_seed")
        check_seed(self.variant_seed, "dataset.variant_seed")
        if self.split_seed is not None:
            check_seed(self.split_seed, "dataset.split_seed")
        if self.build is not None:
            _choice(self, "build", DATASET_BUILDERS)
        _positive(self, "build_steps")
        for name in ("build_expert_episodes", "build_medium_episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"dataset.{name} must be >= 0, got {getattr(self, name)}")
        if not self.path:
            raise ValueError("dataset.path must name a file or directory")
        _positive(self, "run")
        if self.replay_sampling is not None:
            _choice(self, "replay_sampling", ("episodes", "paper"))
        if self.max_transitions is not None:
            _positive(self, "max_transitions")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"dataset.val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.action_noise <= 10.0:
            raise ValueError(f"dataset.action_noise must be in [0, 10] (a fraction of half the action range), "
                             f"got {self.action_noise}")
        if not 0.0 < self.episode_fraction <= 1.0:
            raise ValueError(f"dataset.episode_fraction must be in (0, 1], got {self.episode_fraction}")
        if self.rtg_scale is not None and not self.rtg_scale > 0:
            raise ValueError(f"dataset.rtg_scale must be > 0 (or null for automatic), got {self.rtg_scale}")


@dataclass
class HeadConfig:
    """The action head: a registered name and that head's keyword parameters."""

    name: str = "fourier"
    """Registered head name: ``linear``, ``fourier``, ``gmm`` (score bins), ``mse``, ``gaussian``
    (score continuous actions; Box action spaces only) or a plugin."""
    params: dict[str, Any] = field(default_factory=dict)
    """The head's own parameters (flat in YAML: ``head.num_frequencies``)."""

    def __post_init__(self) -> None:
        HEADS.get(self.name)  # unknown name -> ValueError listing the known heads
        known = head_params(self.name)
        for key, value in list(self.params.items()):
            if key not in known:
                raise ValueError(unknown_key_message(f"head.{key}", key, ["name", *known], f"head {self.name!r}"))
            default = known[key]
            if default is not None and value is not None:
                self.params[key] = coerce_value(value, type(default), f"head.{key}")


@dataclass
class TrainConfig:
    """Optimiser, schedule and loop (the paper's AdamW and token schedule by default)."""

    steps: int = 10_000
    """Optimiser steps."""
    batch_size: int = 128
    """Windows (DT) or transitions (BC) per step."""
    lr: float = 6e-4
    """Peak learning rate."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW betas."""
    weight_decay: float = 0.1
    """AdamW weight decay, applied to matmul weights only (linear and conv), not to biases, norms or embeddings."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 disables)."""
    warmup_tokens: int = 512 * 20
    """Linear warmup over this many tokens (real steps seen)."""
    final_tokens: int | None = None
    """Cosine decay ends at this many tokens; None: the run's total (steps * batch_size * context)."""
    warmup_fraction: float | None = None
    """Warmup over this fraction of the run's tokens instead of ``warmup_tokens`` (shortening a run keeps it
    proportional); None: ``warmup_tokens``."""
    final_fraction: float | None = None
    """Cosine decay ends at this fraction of the run's tokens instead of ``final_tokens``; None: ``final_tokens``."""
    min_lr_ratio: float = 0.1
    """The cosine decays to this fraction of ``lr`` and stays there."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    amp: bool = True
    """bf16 autocast on CUDA (never on CPU)."""
    compile: bool = False
    """Train through ``torch.compile(agent.loss)`` (worth it on CUDA; the first steps compile for a minute or so)."""
    prefetch: bool = True
    """On CUDA, sample the next batch in a background thread into pinned memory while the GPU computes
    (no effect on CPU, where batches are sampled in the loop)."""
    threads: int | None = None
    """torch CPU threads; None: torch's default."""
    checkpoint_every: int = 1000
    """Write a checkpoint every this many steps (and always at the end)."""
    log_every: int = 50
    """Log training scalars every this many steps."""
    val_every: int = 1000
    """Compute held-out metrics every this many steps (and at the end)."""
    val_batches: int = 8
    """Batches of held-out data per validation."""
    pmf_states: int = 8
    """Held-out states whose predicted pmfs are drawn as TensorBoard images."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "val_every", "val_batches"):
            _positive(self, name)
        if not self.lr > 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"train.betas must be two numbers in [0, 1), got {self.betas}")
        for name in ("weight_decay", "grad_clip", "warmup_tokens", "pmf_states"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.final_tokens is not None:
            _positive(self, "final_tokens")
        if self.warmup_fraction is not None and not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"train.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.final_fraction is not None and not self.final_fraction > 0:
            raise ValueError(f"train.final_fraction must be > 0, got {self.final_fraction}")
        if self.warmup_fraction is not None and self.final_fraction is not None and self.warmup_fraction >= self.final_fraction:
            raise ValueError(f"train.warmup_fraction ({self.warmup_fraction}) must be below train.final_fraction "
                             f"({self.final_fraction})")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.threads is not None:
            _positive(self, "threads")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ValueError(f"train.device must be auto, cpu, cuda, cuda:N or mps, got {dev!r}")


@dataclass
class EvalConfig:
    """Rollouts in the environment after training (and in ``python -m fh_rl.evaluate``)."""

    episodes: int = 10
    """Episodes per target return."""
    workers: int = 1
    """Parallel environment worker processes (0: step the environments in this process)."""
    target_returns: list[float] | None = None
    """DT target returns, in dataset units; None: from ``target_quantile``."""
    target_quantile: float | None = None
    """Without ``target_returns``: this quantile of the dataset's episode returns; None: the best episode's return."""
    rtg_mode: str = "transformed"
    """``transformed``: decrement the target by the reward in dataset units (clipped for DQN-Replay);
    ``raw``: by the raw reward (the DT paper's code, to reproduce its numbers)."""
    decode: list[str] = field(default_factory=lambda: ["sample"])
    """How an action is read from the head's output, one decoding or a list (each evaluated on the same
    episodes): ``argmax``, ``sample`` (the paper's Atari choice), ``mean``, ``median``, ``mode`` (heads with a
    continuous density), ``argmax+within_bin`` / ``sample+within_bin`` (a uniform draw within the chosen Box
    bin), or a registered one (docs/decoding.md). The old keys ``eval.sample`` and ``env.sample_within_bin``
    are read as aliases of it."""
    seed: int = 0
    """Base seed of the evaluation episodes (added to the run seed)."""
    timesteps: str = "own"
    """DT: ``own``: each context step carries its own timestep (as in training); ``current``: every step carries
    the current step's (the papers' evaluation code, which indexes its timestep table with the current step)."""
    integer_returns_to_go: bool = False
    """DT: feed returns-to-go truncated to integers (the papers' evaluation code casts them to int64)."""
    every_steps: int | None = None
    """Also evaluate every this many training steps (e.g. one epoch: the papers evaluate after each of 5);
    each evaluation goes to ``eval.json`` (``history``) and TensorBoard. None: only after training."""

    def __post_init__(self) -> None:
        _positive(self, "episodes")
        check_seed(self.seed, "eval.seed")
        from fh_rl.heads.decoding import parse_decoders

        try:
            self.decode = [d.name for d in parse_decoders(self.decode)]
        except ValueError as exc:
            raise ValueError(f"eval.decode: {exc}") from None
        _choice(self, "timesteps", ("own", "current"), section="eval")
        if self.every_steps is not None:
            _positive(self, "every_steps")
        _positive(self, "workers", minimum=0)
        if self.target_quantile is not None and not 0 <= self.target_quantile <= 1:
            raise ValueError(f"eval.target_quantile must be in [0, 1], got {self.target_quantile}")
        _choice(self, "rtg_mode", RTG_MODES, section="eval")


@dataclass
class Config:
    """One training run."""

    seed: int = 0
    """Seed of parameters, sampling and dropout."""
    run_root: str = "runs"
    """Run directories go under ``<run_root>/<env>/<agent>-<head>/``."""
    env: EnvConfig = field(default_factory=EnvConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        check_seed(self.seed, "seed")
        check_seed(self.seed + self.eval.seed, "seed + eval.seed")
        if self.env.name is None and self.dataset.format != "minari":
            raise ValueError("env.name is required (only a Minari dataset names its env: dataset.format: minari)")
        AGENTS.get(self.agent.name)
        a = self.agent
        for name in ("embed_dim", "n_layer", "n_head", "context_len", "max_timestep", "hidden_dim"):
            if not isinstance(getattr(a, name), int) or getattr(a, name) < 1:
                raise ValueError(f"agent.{name} must be a positive integer, got {getattr(a, name)!r}")
        for name in ("hidden_layers", "trunk_layers"):
            if getattr(a, name) < 0:
                raise ValueError(f"agent.{name} must be >= 0, got {getattr(a, name)!r}")
        if not 0 <= a.dropout < 1:
            raise ValueError(f"agent.dropout must be in [0, 1), got {a.dropout}")
        from fh_rl.agents.base import INITS, LOSS_FORMS, TIMESTEP_EMBEDDINGS

        _choice(a, "timestep_embedding", TIMESTEP_EMBEDDINGS)
        _choice(a, "init", INITS)
        _choice(a, "loss_form", LOSS_FORMS)
        if a.embed_dim % a.n_head:
            raise ValueError(f"agent.embed_dim ({a.embed_dim}) must be divisible by agent.n_head ({a.n_head})")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (the head section flat), loadable by :func:`config_from_dict`."""
        out = dataclasses.asdict(self)
        head = out.pop("head")
        out["head"] = {"name": head["name"], **head["params"]}
        return out

    @property
    def context_len(self) -> int:
        """Steps per training example: the DT context, 1 for agents without one."""
        return self.agent.context_len if AGENTS.get(self.agent.name).sequence_model else 1


# ----------------------------------------------------------------------------- range checks

MAX_SEED = 2**32 - 1
"""The largest seed fh_rl takes (NumPy's legacy seeding and many environments take 32-bit seeds)."""


def check_seed(value: Any, name: str = "seed") -> int:
    """``value`` when it is an integer in [0, MAX_SEED], else a ValueError naming ``name`` and the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"{name} must be an integer in [0, {MAX_SEED}] (2**32 - 1), got {value!r}")
    return value


def _positive(obj: Any, name: str, minimum: int = 1) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{_section_of(obj)}.{name} must be an integer >= {minimum}, got {value!r}")


def _choice(obj: Any, name: str, choices: Sequence[str], section: str | None = None) -> None:
    value = getattr(obj, name)
    if value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{section or _section_of(obj)}.{name} must be one of {', '.join(choices)}, got {value!r}{hint}")


def _section_of(obj: Any) -> str:
    return {
        EnvConfig: "env",
        DatasetConfig: "dataset",
        TrainConfig: "train",
        EvalConfig: "eval",
        AgentConfig: "agent",
    }.get(type(obj), type(obj).__name__)

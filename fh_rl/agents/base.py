"""What every agent shares: its config, the agent registry, the loss record and the checkpoint spec.

An agent is an ``nn.Module`` that owns the math: it turns a sampler batch
(:class:`~fh_rl.datasets.batch.WindowBatch` or ``TransitionBatch``) into a
loss, and a context of states (and, for sequence models, returns-to-go,
actions and timesteps) into the head's output for the next action. The
trainer owns the optimiser, the schedule and the loop; rollouts go through
:class:`fh_rl.agents.inference.AgentPolicy`.

The agent works with any head through the head's methods (``loss``, ``mode``,
``sample``, ``bin_log_probs``, ``encode_actions``, ``decode_actions``; see
:mod:`fh_rl.heads.base`), whether the head scores bins or continuous actions.

An agent is rebuilt from ``(AgentConfig, head name + params, spec)`` alone:
``spec`` (:meth:`Agent.spec`) holds the state shape, the action codec's config
and the reward transform; the state statistics and the return scale are
buffers in the state dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from fh_rl.datasets.trajectory import REWARD_TRANSFORMS
from fh_rl.heads import available_heads, build_head, head_scores
from fh_rl.infra.registry import Registry

AGENTS: Registry[type[Agent]] = Registry("agent", entry_point_group="fh_rl.agents")


def register_agent(name: str):
    """Class decorator adding an :class:`Agent` subclass to the registry under ``name``."""

    return AGENTS.class_decorator(name, Agent, "fh_rl.agents.Agent")


def available_agents() -> list[str]:
    """Names of all registered agents."""
    return AGENTS.names()


@dataclass
class AgentConfig:
    """Architecture of an agent (fields marked DT are used by the Decision Transformer only)."""

    name: str = "dt"
    """Registered agent name: ``dt`` (Decision Transformer) or ``bc`` (behavior cloning)."""
    embed_dim: int = 128
    """D, the width of the embeddings (DT) or of the encoder output (BC)."""
    n_layer: int = 6
    """DT: number of transformer blocks."""
    n_head: int = 8
    """DT: attention heads per block (must divide ``embed_dim``)."""
    dropout: float = 0.1
    """Dropout probability on embeddings, attention and MLP outputs."""
    context_len: int = 30
    """DT: T, the number of timesteps in the context window (3T tokens)."""
    max_timestep: int = 10_000
    """DT: size of the timestep embedding; larger timesteps are clamped to it."""
    hidden_dim: int = 256
    """Width of the hidden layers of the vector-state MLP (and of BC's trunk)."""
    hidden_layers: int = 0
    """Hidden ReLU layers of the vector-state encoder (0: one linear map, as in DT's gym code)."""
    trunk_layers: int = 2
    """BC: hidden ReLU layers between the encoder and the head."""
    timestep_embedding: str = "per_step"
    """DT: ``per_step``: each step's tokens get the embedding of that step's own timestep; ``window_start``:
    one vector, the embedding of the window's first timestep (``timesteps[:, 0]``), is added to all 3T tokens
    (the Fourier head paper's Atari code)."""
    init: str = "gpt2"
    """DT: ``gpt2``: N(0, 0.02) for every linear/embedding weight (state encoder, return embedding and timestep
    table included), zero biases, GPT-2's scaled init of residual projections, the head keeps its own init
    (Fourier: divided by 100); ``reference``: as the paper's Atari code ends up: N(0, 0.02) and zero biases for
    the transformer and the head (Fourier's /100 is overwritten), PyTorch's default init for the state encoder
    and return embedding, a zero timestep table, no scaled residual init."""
    loss_form: str = "nll"
    """``nll``: minus the mean log-probability the head gives the target bin; ``cross_entropy``:
    ``F.cross_entropy`` applied to the head's log-probabilities, i.e. a second log-softmax (the paper's code;
    differs from ``nll`` only when they do not sum to 1, as the Fourier head's log(pmf + eps))."""


class AgentLoss(NamedTuple):
    """What :meth:`Agent.loss` returns.

    loss: scalar to minimise (``nll + regularization``; with ``loss_form: cross_entropy`` the
        cross-entropy of the log-softmax of the log-pmfs replaces ``nll``).
    nll: the head's objective (``Agent.objective``) averaged over real steps and action dims: the
        negative log-likelihood of the target bin (heads that score bins), of the action's density
        (``gaussian``: ``nll_density``), or the squared error (``mse``).
    regularization: the head's regulariser (scalar).
    accuracy: fraction of (step, action dim) pairs where the evaluation action is in the dataset
        action's bin (the argmax bin is the target bin; ``tanh(mean)`` falls in the target bin).
    tokens: number of real (non-padding) steps in the batch (int tensor), for the token schedule.
    log_probs: ``(M, A, K)`` predicted log-pmfs over the codec's bins at the real steps (the
        discretised density for ``gaussian``); None for a point prediction (``mse``).
    targets: ``(M, A)`` target bins at the real steps.
    action_mse: squared error of the evaluation action against the dataset action on the
        [-1, 1] scale, averaged (Box actions; None for discrete actions).
    chosen: ``(M, A)`` the bins of the evaluation action at the real steps (the argmax bin for heads that score bins).
    """

    loss: torch.Tensor
    nll: torch.Tensor
    regularization: torch.Tensor
    accuracy: torch.Tensor
    tokens: torch.Tensor
    log_probs: torch.Tensor | None
    targets: torch.Tensor
    action_mse: torch.Tensor | None = None
    chosen: torch.Tensor | None = None


def check_head_fits(head: str, codec: Any, where: str = "this action space") -> None:
    """ValueError when the head cannot act in the codec's action space (continuous head, discrete actions)."""
    if head_scores(head) == "continuous" and not codec.continuous:
        raise ValueError(
            f"head {head!r} scores continuous actions and needs a Box action space, but {where} has "
            f"{codec.describe()} actions; use a head that scores bins ({', '.join(available_heads('bins'))})"
        )


TIMESTEP_EMBEDDINGS = ("per_step", "window_start")
INITS = ("gpt2", "reference")
LOSS_FORMS = ("nll", "cross_entropy")


class Agent(nn.Module):
    """Base class. Subclasses set ``sequence_model`` and implement ``loss`` and ``next_action``.

    Args:
        config: the architecture.
        state_shape: shape of one state, ``(S,)`` or ``(4, H, W)``.
        codec: the action codec (``fh_rl.envs.codecs``): env actions <-> bins.
        head: registered head name; ``head_params`` its keyword parameters.
        state_mean, state_std: vector-state statistics (ignored for frames).
        rtg_scale: returns-to-go are divided by this before embedding (DT).
        reward_transform: how the dataset's rewards relate to raw env rewards
            (``none`` or ``clip``); used to decrement returns-to-go at evaluation.
    """

    sequence_model: bool = False
    registry_name: str = ""

    def __init__(
        self,
        config: AgentConfig,
        *,
        state_shape: tuple[int, ...],
        codec: Any,
        head: str,
        head_params: dict[str, Any] | None = None,
        state_mean: torch.Tensor | None = None,
        state_std: torch.Tensor | None = None,
        rtg_scale: float = 1.0,
        reward_transform: str = "none",
    ) -> None:
        super().__init__()
        if reward_transform not in REWARD_TRANSFORMS:
            raise ValueError(f"reward_transform must be one of {REWARD_TRANSFORMS}, got {reward_transform!r}")
        if not rtg_scale > 0:
            raise ValueError(f"rtg_scale must be > 0, got {rtg_scale}")
        check_head_fits(head, codec)
        if head_scores(head) == "continuous" and config.loss_form != "nll":
            raise ValueError(
                f"agent.loss_form={config.loss_form!r} is a cross-entropy over a head's log-pmf, but head {head!r} "
                f"scores continuous actions; use agent.loss_form=nll"
            )
        self.config = config
        self.state_shape = tuple(int(s) for s in state_shape)
        self.codec = codec
        self.num_bins = int(codec.num_bins)
        self.action_dims = int(codec.action_dims)
        self.head_name = head
        self.head_scores = head_scores(head)  # "bins" or "continuous": what the actions fed to the model are
        edges = codec.unit_bin_edges()  # the bins on the [-1, 1] scale, for heads that score continuous actions
        self.register_buffer("bin_edges", None if edges is None else torch.as_tensor(edges, dtype=torch.float32),
                             persistent=False)
        self.head_params = dict(head_params or {})
        self.reward_transform = reward_transform
        self.register_buffer("rtg_scale", torch.tensor(float(rtg_scale)))
        self._state_stats = (state_mean, state_std)  # consumed by _build_encoder

    @property
    def is_frames(self) -> bool:
        return len(self.state_shape) == 3

    def _build_encoder(self, embed_dim: int) -> nn.Module:
        """The state encoder (Nature CNN for frames, MLP for vectors, which keeps the statistics as buffers)."""
        from fh_rl.agents.encoders import build_encoder

        mean, std = self._state_stats
        del self._state_stats
        return build_encoder(
            self.state_shape,
            embed_dim,
            hidden_dim=self.config.hidden_dim,
            hidden_layers=self.config.hidden_layers,
            state_mean=mean,
            state_std=std,
        )

    def _build_head(self, in_features: int) -> nn.Module:
        return build_head(self.head_name, in_features, self.num_bins, self.action_dims, **self.head_params)

    @property
    def objective(self) -> str:
        """What ``AgentLoss.nll`` measures: the head's objective (``nll``, ``nll_density``, ``mse``)."""
        return self.head.objective

    def action_bins(self, actions: torch.Tensor) -> torch.Tensor:
        """Environment actions ``(...)`` discrete or ``(..., A)`` continuous -> bins ``(..., A)`` int64."""
        bins = self.codec.encode(actions)
        return torch.as_tensor(bins, device=actions.device).long()

    def encode_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Environment actions -> what the head scores and the model takes as input ``(..., A)``:
        bins (int64) or values in [-1, 1] (float32)."""
        return torch.as_tensor(self.head.encode_actions(self.codec, actions), device=actions.device)

    def decode_actions(self, actions: torch.Tensor, rng: Any = None) -> Any:
        """What the head scores ``(..., A)`` -> environment actions (``rng``: within-bin sampling, numpy input)."""
        return self.head.decode_actions(self.codec, actions, rng)

    def spec(self) -> dict[str, Any]:
        """Everything besides config and weights needed to rebuild this agent (plain types)."""
        return {
            "agent": self.registry_name,
            "state_shape": list(self.state_shape),
            "codec": self.codec.config(),
            "head": self.head_name,
            "head_params": dict(self.head_params),
            "reward_transform": self.reward_transform,
        }

    def _loss(self, out: Any, targets: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> AgentLoss:
        """The head's loss of ``targets`` at the real steps, plus the held-out metrics' ingredients.

        Args:
            out: the head's output at every step (leading shape L: ``(B, T)`` or ``(B,)``).
            targets: ``(*L, A)`` the dataset actions as the head scores them (``encode_actions``).
            actions: the dataset's environment actions ``(*L[, A])``.
            mask: ``(*L)`` bool, True at real steps.
        """
        per_dim = self.head.loss(out, targets)  # (*L, A)
        nll = per_dim[mask].mean()
        fit = nll
        if self.config.loss_form == "cross_entropy":  # the paper's code: a log-softmax over the log-pmfs first
            fit = -torch.log_softmax(out.log_probs[mask], dim=-1).gather(-1, targets[mask].unsqueeze(-1)).mean()
        with torch.no_grad():
            real = actions[mask]  # (M[, A]) environment actions
            bins = self.action_bins(real)  # (M, A)
            log_probs = self.head.bin_log_probs(out, self.bin_edges)  # (*L, A, K) or None
            mode = self.head.mode(out)[mask]  # (M, A) the evaluation action, as the head scores it
            chosen_bins = torch.as_tensor(self.head.to_bins(self.codec, mode), device=mode.device).long()  # (M, A)
            accuracy = (chosen_bins == bins).float().mean()
            action_mse = None
            if self.codec.continuous:  # on the [-1, 1] scale, the action the environment gets (margin bins clamped)
                chosen = self.decode_actions(mode)  # (M, A) environment actions
                action_mse = (self.codec.to_unit(chosen) - self.codec.to_unit(real)).square().mean()
        return AgentLoss(
            loss=fit + out.regularization,
            nll=nll,
            regularization=out.regularization,
            accuracy=accuracy,
            tokens=mask.sum(),
            log_probs=None if log_probs is None else log_probs[mask],
            targets=bins,
            action_mse=action_mse,
            chosen=chosen_bins,
        )

    def loss(self, batch) -> AgentLoss:  # pragma: no cover - abstract
        raise NotImplementedError

    def next_action(self, states, actions, returns_to_go, timesteps, mask) -> Any:  # pragma: no cover - abstract
        """The head's output for the next action of each right-aligned context (leading shape ``(B,)``)."""
        raise NotImplementedError

    def next_hidden(self, states, actions, returns_to_go, timesteps, mask) -> torch.Tensor:  # pragma: no cover - abstract
        """The hidden state ``(B, D)`` the head reads for the next action: ``next_action`` is ``head(next_hidden)``."""
        raise NotImplementedError

    def action_log_probs(self, states, actions, returns_to_go, timesteps, mask) -> torch.Tensor:
        """Log-pmf ``(B, A, K)`` of the next action over the codec's bins (see :meth:`next_action`).

        ValueError for a head without one (``mse``: a point prediction).
        """
        log_probs = self.head.bin_log_probs(self.next_action(states, actions, returns_to_go, timesteps, mask), self.bin_edges)
        if log_probs is None:
            raise ValueError(f"head {self.head_name!r} predicts a point, not a distribution over bins")
        return log_probs


"""What every agent shares: its config, the agent registry, the loss record and the checkpoint spec.

An agent is an ``nn.Module`` that owns the math: it turns a sampler batch
(:class:`~fh_rl.datasets.batch.WindowBatch` or ``TransitionBatch``) into a
loss, and a context of states (and, for sequence models, returns-to-go,
actions and timesteps) into the log-pmf of the next action. The trainer owns
the optimiser, the schedule and the loop; rollouts go through
:class:`fh_rl.agents.inference.AgentPolicy`.

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
from fh_rl.heads import build_head
from fh_rl.registry import Registry

AGENTS: Registry[type["Agent"]] = Registry("agent", entry_point_group="fh_rl.agents")


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
    nll: mean negative log-likelihood of the target bins over real steps and action dims.
    regularization: the head's regulariser (scalar).
    accuracy: fraction of (step, action dim) pairs whose argmax bin is the target.
    tokens: number of real (non-padding) steps in the batch (int tensor), for the token schedule.
    log_probs: ``(M, A, K)`` predicted log-pmfs at the real steps.
    targets: ``(M, A)`` target bins at the real steps.
    """

    loss: torch.Tensor
    nll: torch.Tensor
    regularization: torch.Tensor
    accuracy: torch.Tensor
    tokens: torch.Tensor
    log_probs: torch.Tensor
    targets: torch.Tensor


TIMESTEP_EMBEDDINGS = ("per_step", "window_start")
INITS = ("gpt2", "reference")
LOSS_FORMS = ("nll", "cross_entropy")


class Agent(nn.Module):
    """Base class. Subclasses set ``sequence_model`` and implement ``loss`` and ``action_log_probs``.

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
        self.config = config
        self.state_shape = tuple(int(s) for s in state_shape)
        self.codec = codec
        self.num_bins = int(codec.num_bins)
        self.action_dims = int(codec.action_dims)
        self.head_name = head
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

    def action_bins(self, actions: torch.Tensor) -> torch.Tensor:
        """Environment actions ``(...)`` discrete or ``(..., A)`` continuous -> bins ``(..., A)`` int64."""
        bins = self.codec.encode(actions)
        return torch.as_tensor(bins, device=actions.device).long()

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

    def _masked_loss(self, out_log_probs: torch.Tensor, reg: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> AgentLoss:
        """Cross-entropy of ``(B, T, A, K)`` log-pmfs vs ``(B, T, A)`` target bins at ``mask`` (B, T).

        With ``config.loss_form == "cross_entropy"`` the minimised term is the cross-entropy of the
        log-softmax of the log-pmfs (the paper's code); ``nll`` is always the plain negative log-likelihood.
        """
        log_probs = out_log_probs[mask]  # (B, T, A, K) -> (M, A, K)
        tgt = targets[mask]  # (B, T, A) -> (M, A)
        picked = log_probs.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)  # (M, A)
        nll = -picked.mean()
        fit = nll
        if self.config.loss_form == "cross_entropy":
            fit = -torch.log_softmax(log_probs, dim=-1).gather(-1, tgt.unsqueeze(-1)).mean()
        accuracy = (log_probs.argmax(-1) == tgt).float().mean()
        return AgentLoss(
            loss=fit + reg,
            nll=nll,
            regularization=reg,
            accuracy=accuracy,
            tokens=mask.sum(),
            log_probs=log_probs,
            targets=tgt,
        )

    def loss(self, batch) -> AgentLoss:  # pragma: no cover - abstract
        raise NotImplementedError

    def action_log_probs(self, states, actions, returns_to_go, timesteps, mask) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


"""Behavior cloning: state encoder -> ReLU MLP trunk -> action head.

Letters: B batch, T timesteps, D embedding, A action dimensions, K bins.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fh_rl.agents.base import Agent, AgentConfig, AgentLoss, register_agent


@register_agent("bc")
class BehaviorCloning(Agent):
    """Predicts the dataset's action from the current state alone; see :class:`Agent` for the args."""

    sequence_model = False

    def __init__(self, config: AgentConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        D = config.embed_dim
        self.encoder = self._build_encoder(D)
        layers: list[nn.Module] = [nn.ReLU()]
        width = D
        for _ in range(config.trunk_layers):
            layers += [nn.Linear(width, config.hidden_dim), nn.ReLU(), nn.Dropout(config.dropout)]
            width = config.hidden_dim
        self.trunk = nn.Sequential(*layers)
        self.head = self._build_head(width)

    def forward(self, states: torch.Tensor) -> Any:
        """States (..., *state_shape) -> the head's output with leading shape (...) (log_probs (..., A, K) for bins)."""
        if tuple(states.shape[states.dim() - len(self.state_shape):]) != self.state_shape:
            raise ValueError(f"states must have shape (..., {', '.join(map(str, self.state_shape))}), got {tuple(states.shape)}")
        return self.head(self.trunk(self.encoder(states)))

    def loss(self, batch) -> AgentLoss:
        """The head's loss of the dataset's actions (e.g. cross-entropy of the bins), plus its regulariser."""
        targets = self.encode_actions(batch.actions)  # (B, A): bins or values in [-1, 1]
        mask = torch.ones(targets.shape[0], dtype=torch.bool, device=targets.device)  # (B,): every row is real
        return self._loss(self(batch.states), targets, batch.actions, mask)

    def next_action(
        self,
        states: torch.Tensor,
        actions: torch.Tensor | None = None,
        returns_to_go: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> Any:
        """The head's output (leading shape (B,)) for the newest state of each context (B, T, ...)."""
        return self(states[:, -1])

    def next_hidden(
        self,
        states: torch.Tensor,
        actions: torch.Tensor | None = None,
        returns_to_go: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The hidden state (B, D) the head reads for the newest state of each context."""
        return self.trunk(self.encoder(states[:, -1]))

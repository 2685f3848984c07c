"""Behavior cloning: state encoder -> ReLU MLP trunk -> action head.

Letters: B batch, T timesteps, D embedding, A action dimensions, K bins.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fh_rl.agents.base import Agent, AgentConfig, AgentLoss, register_agent
from fh_rl.heads import HeadOutput


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

    def forward(self, states: torch.Tensor) -> HeadOutput:
        """States (..., *state_shape) -> HeadOutput with log_probs (..., A, K)."""
        if tuple(states.shape[states.dim() - len(self.state_shape):]) != self.state_shape:
            raise ValueError(f"states must have shape (..., {', '.join(map(str, self.state_shape))}), got {tuple(states.shape)}")
        return self.head(self.trunk(self.encoder(states)))

    def loss(self, batch) -> AgentLoss:
        """Cross-entropy of the dataset's actions, plus the head's regulariser."""
        bins = self.action_bins(batch.actions)  # (B, A)
        out = self(batch.states)  # (B, A, K)
        mask = torch.ones(bins.shape[0], 1, dtype=torch.bool, device=bins.device)  # (B, 1)
        # (B, A, K) -> (B, 1, A, K) so the shared masked loss applies
        return self._masked_loss(out.log_probs.unsqueeze(1), out.regularization, bins.unsqueeze(1), mask)

    def action_log_probs(
        self,
        states: torch.Tensor,
        action_bins: torch.Tensor | None = None,
        returns_to_go: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Log-pmf (B, A, K) of the next action from the newest state of each context (B, T, ...)."""
        return self(states[:, -1]).log_probs

"""Agents: Decision Transformer and behavior cloning, each with any registered action head.

Build one from its config, the head and what the data says about states and actions::

    agent = build_agent(AgentConfig(name="dt"), head="fourier", head_params={"num_frequencies": 8},
                        state_shape=(3,), codec=codec, state_mean=mean, state_std=std, rtg_scale=1000.0)
    out = agent.loss(window_batch)          # AgentLoss(loss, nll, regularization, accuracy, ...)

Rebuild one from a checkpoint's config and spec alone with :func:`agent_from_spec`, or load the
Fourier head paper's Atari DT with :func:`from_reference_state_dict`.
Register your own with ``@register_agent("name")`` on an :class:`Agent` subclass.
"""

from __future__ import annotations

from typing import Any

import torch

from fh_rl.agents.base import (
    AGENTS,
    Agent,
    AgentConfig,
    AgentLoss,
    available_agents,
    register_agent,
)
from fh_rl.agents.behavior_cloning import BehaviorCloning
from fh_rl.agents.decision_transformer import DecisionTransformer
from fh_rl.agents.reference import from_reference_state_dict
from fh_rl.datasets.trajectory import transform_reward


def build_agent(
    config: AgentConfig,
    *,
    head: str,
    head_params: dict[str, Any] | None = None,
    state_shape: tuple[int, ...],
    codec: Any,
    state_mean: torch.Tensor | None = None,
    state_std: torch.Tensor | None = None,
    rtg_scale: float = 1.0,
    reward_transform: str = "none",
) -> Agent:
    """Build the agent registered as ``config.name`` (ValueError for an unknown name, listing the known ones)."""
    cls = AGENTS.get(config.name)
    return cls(
        config,
        state_shape=tuple(state_shape),
        codec=codec,
        head=head,
        head_params=head_params,
        state_mean=state_mean,
        state_std=state_std,
        rtg_scale=rtg_scale,
        reward_transform=reward_transform,
    )


def agent_from_spec(config: AgentConfig, spec: dict[str, Any], state_dict: dict[str, torch.Tensor] | None = None) -> Agent:
    """Rebuild an agent from :meth:`Agent.spec` (and load ``state_dict``: weights, state statistics, rtg scale)."""
    from fh_rl.envs.codecs import codec_from_config

    codec = codec_from_config(spec["codec"])
    state_shape = tuple(spec["state_shape"])
    agent = build_agent(
        config,
        head=spec["head"],
        head_params=spec.get("head_params", {}),
        state_shape=state_shape,
        codec=codec,
        reward_transform=spec.get("reward_transform", "none"),
    )
    if state_dict is not None:
        agent.load_state_dict(state_dict)
    return agent


__all__ = [
    "AGENTS",
    "Agent",
    "AgentConfig",
    "AgentLoss",
    "BehaviorCloning",
    "DecisionTransformer",
    "agent_from_spec",
    "available_agents",
    "build_agent",
    "from_reference_state_dict",
    "register_agent",
    "transform_reward",
]

"""Checks that run before training starts, so that a run never dies (or trains on the wrong thing) late.

- :func:`check_memory`: the model is built on PyTorch's ``meta`` device (shapes
  only, nothing allocated) to count its parameters and buffers exactly; with
  the optimiser's state and an estimate of one step's activations this gives
  the memory training needs. More than the device has is an error quoting the
  estimate and its largest part (``head.num_frequencies=1e9`` is refused in a
  second, instead of ending in an out-of-memory traceback).
- :func:`check_spaces`: the dataset's states and actions fit the environment
  the agent will be evaluated in (found before training, not after it).
- :func:`check_action_bounds`: continuous actions lie within the
  environment's bounds (``dataset.clip_actions: true`` to clip them instead).
- :func:`check_timesteps`: the Decision Transformer's timestep table
  (``agent.max_timestep``) covers the data's longest episode.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

GiB = float(1 << 30)


@dataclass
class MemoryEstimate:
    """Bytes a training run needs, by part (``math.inf`` when a size overflows 64-bit arithmetic)."""

    parameters: float
    """Parameters, their gradients and AdamW's two moments (4 copies)."""
    buffers: float
    """Constant tensors (bin centres, Fourier bases, state statistics)."""
    activations: float
    """One training step's activations kept for the backward pass (estimated)."""
    largest: str
    """The largest single tensor of the model and its size, e.g. ``head.sample_dft (1.2 TiB)``."""

    @property
    def total(self) -> float:
        return self.parameters + self.buffers + self.activations


def _size(n: float) -> str:
    if not math.isfinite(n):
        return "more than 8 EiB"
    for unit, scale in (("EiB", 2.0**60), ("PiB", 2.0**50), ("TiB", 2.0**40), ("GiB", GiB), ("MiB", 2.0**20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1024:.0f} KiB"


def estimate_memory(build: Callable[[], torch.nn.Module], *, batch_size: int, tokens: int, steps: int,
                    embed_dim: int, n_layer: int, n_head: int, state_values: int = 0) -> MemoryEstimate | None:
    """Estimate the memory of training the agent ``build()`` makes (built on the meta device, nothing allocated).

    ``tokens``: sequence positions per example (3T for the DT, 1 for BC); ``steps``: T; ``state_values``:
    numbers in one state (4x84x84 for Atari frames). None when the model cannot be built on the meta device
    (a plugin that reads tensor values while it is built): then nothing is checked.
    """
    try:
        with torch.device("meta"):
            model = build()
    except (RuntimeError, NotImplementedError) as exc:
        if "overflow" in str(exc).lower():  # a tensor larger than 64-bit sizes can express
            return MemoryEstimate(math.inf, math.inf, math.inf, "a tensor beyond 64-bit sizes")
        return None
    params = {n: float(p.numel()) * p.element_size() for n, p in model.named_parameters()}
    buffers = {n: float(b.numel()) * b.element_size() for n, b in model.named_buffers()}
    every = {**params, **buffers}
    name = max(every, key=every.get) if every else "-"
    # Activations: per layer ~20 D-wide tensors per token (LayerNorms, q/k/v, attention output, 4D MLP, residuals)
    # and 3 copies of the attention matrix; the head's layers' outputs and ~6 (B, T, A, K) tensors of log-pmfs;
    # the state encoder's ~3 state-sized tensors per step (frames as floats, convolution outputs).
    B, L, D = float(batch_size), float(tokens), float(embed_dim)
    head = getattr(model, "head", None)
    head_width = 0.0
    if head is not None:
        head_width += sum(float(m.out_features) for m in head.modules() if isinstance(m, torch.nn.Linear))
        head_width += 6.0 * getattr(model, "action_dims", 1) * getattr(model, "num_bins", 0)
    acts = 4.0 * B * (L * D * 20 * n_layer + 3 * n_head * L * L * n_layer + steps * (4 * head_width + 3 * state_values))
    return MemoryEstimate(4 * sum(params.values()), sum(buffers.values()), acts, f"{name} ({_size(every.get(name, 0))})")


def available_memory(device: torch.device) -> tuple[float, str]:
    """Bytes free for a new tensor on ``device`` and how that was measured."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free), f"free on {device}"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024, "available RAM"
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "physical RAM"
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return math.inf, "unknown"


def check_memory(estimate: MemoryEstimate | None, device: torch.device) -> None:
    """ValueError quoting the estimate when training cannot fit on ``device`` (None: no estimate, no check)."""
    if estimate is None:
        return
    free, what = available_memory(device)
    if estimate.total <= free:
        return
    raise ValueError(
        f"this configuration needs about {_size(estimate.total)} to train (parameters with gradients and AdamW "
        f"state {_size(estimate.parameters)}, buffers {_size(estimate.buffers)}, activations of one step "
        f"{_size(estimate.activations)}; largest tensor {estimate.largest}) but {_size(free)} is {what}; "
        f"lower head sizes (num_frequencies, components), env.num_bins, agent.embed_dim, agent.n_layer, "
        f"agent.context_len or train.batch_size"
    )


# ----------------------------------------------------------------------------- data vs environment


def check_spaces(dataset: Any, observation_space: Any, action_space: Any, *, env_name: str, source: object) -> None:
    """The dataset's state shape and actions must fit the environment's spaces (ValueError saying how not)."""
    import gymnasium as gym

    state = tuple(int(x) for x in dataset.state_shape)
    expected = tuple(int(x) for x in (observation_space.shape or ()))
    if state != expected:
        raise ValueError(
            f"{source}: states have shape {state} but {env_name} observes {expected}; the data is for another "
            f"environment (set env.name or dataset.path to match)"
        )
    if isinstance(action_space, gym.spaces.Discrete):
        if not dataset.is_discrete:
            raise ValueError(
                f"{source}: actions are continuous ({dataset.action_dims} dims) but {env_name} has "
                f"{action_space.n} discrete actions; the data is for another environment"
            )
        actions = dataset.actions
        lo, hi = int(actions.min()), int(actions.max())
        if lo < 0 or hi >= action_space.n:
            i = int(np.argmax((actions < 0) | (actions >= action_space.n)))
            raise ValueError(
                f"{source}: 'actions' row {i} is {int(actions[i])}, outside {env_name}'s {action_space.n} actions "
                f"(0..{action_space.n - 1}); the data is for another environment or action set"
            )
    elif isinstance(action_space, gym.spaces.Box):
        dims = int(np.prod(action_space.shape))
        if dataset.is_discrete or dataset.action_dims != dims:
            found = "discrete" if dataset.is_discrete else f"{dataset.action_dims}-dimensional"
            raise ValueError(
                f"{source}: actions are {found} but {env_name}'s actions are {dims}-dimensional continuous; "
                f"the data is for another environment"
            )


def check_action_bounds(dataset: Any, action_space: Any, *, source: object, clip: bool) -> None:
    """Box actions outside the bounds are an error unless ``clip`` (then a note says how many rows are clipped)."""
    import gymnasium as gym

    from fh_rl.datasets.validate import check_box_actions

    if not isinstance(action_space, gym.spaces.Box) or dataset.is_discrete:
        return
    low, high = action_space.low.reshape(-1), action_space.high.reshape(-1)
    if clip:
        outside = int(((dataset.actions < low) | (dataset.actions > high)).any(axis=1).sum())
        if outside:
            print(f"dataset.clip_actions: {outside} of {len(dataset.actions)} actions lie outside the bounds and "
                  f"train the end bins", file=sys.stderr)
        return
    check_box_actions(dataset.actions, low, high, source=source)


def check_timesteps(dataset: Any, max_timestep: int, *, source: object) -> None:
    """The DT's timestep table must cover the data's longest episode (ValueError naming it and the fix).

    A larger timestep would be clamped to ``agent.max_timestep``: every later step of a long episode would
    share one embedding, and nothing would say so. Refused rather than derived, so that a run's config
    always states the table it trained (``agent.max_timestep`` is saved with every checkpoint).
    """
    lengths = np.diff(np.asarray(dataset.offsets))
    if not len(lengths):
        return
    i = int(np.argmax(lengths))
    longest = int(lengths[i])
    if longest - 1 > max_timestep:
        raise ValueError(
            f"{source}: episode {i} has {longest} steps (timesteps 0..{longest - 1}) but agent.max_timestep is "
            f"{max_timestep}, so its later steps would share one timestep embedding; set "
            f"agent.max_timestep={longest - 1} (or more)"
        )

"""Batches handed from the samplers to the agents.

These are the contract between ``fh_rl.datasets`` (which builds them on the
CPU, as compactly as possible) and ``fh_rl.agents`` (which moves them to the
device and does the float conversion and frame stacking there).

Letters: B batch, K context length (steps per window), S state features,
A action dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TypeVar

import torch


_Batch = TypeVar("_Batch", bound="_TensorBatch")


class _TensorBatch:
    """``to(device)`` and ``len`` for a dataclass of tensors whose first dimension is the batch."""

    actions: torch.Tensor

    def to(self: _Batch, device: torch.device | str, non_blocking: bool = False) -> _Batch:
        return type(self)(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)})

    def pin_memory(self: _Batch) -> _Batch:
        """A copy in page-locked host memory (so that ``to(cuda, non_blocking=True)`` is asynchronous)."""
        return type(self)(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})

    def __len__(self) -> int:
        return self.actions.shape[0]


@dataclass
class WindowBatch(_TensorBatch):
    """B windows of K consecutive steps of one episode each (Decision Transformer).

    Windows are left-padded: when fewer than K steps of the episode are
    available before the window's last step, the first positions are padding
    (``mask`` False, zeros everywhere), so the real steps sit at the right end,
    like the growing context at evaluation time.

    Fields:
        states: vector observations ``(B, K, S)`` float32, or for frame
            observations the window's ``K + 3`` unique frames ``(B, K + 3, H, W)``
            uint8, oldest first: the stacked state of step j is frames
            ``j .. j + 3`` (newest last). Frames before the episode's start
            are zeros.
        actions: environment actions; ``(B, K)`` int64 for discrete actions,
            ``(B, K, A)`` float32 for continuous (Box) actions. The agent's
            action codec converts them to bins.
        returns_to_go: ``(B, K)`` float32, in the units the dataset stores.
        timesteps: ``(B, K)`` int64, step index within the episode.
        mask: ``(B, K)`` bool, True at real (non-padding) steps.
    """

    states: torch.Tensor
    actions: torch.Tensor
    returns_to_go: torch.Tensor
    timesteps: torch.Tensor
    mask: torch.Tensor



@dataclass
class TransitionBatch(_TensorBatch):
    """B single steps (behavior cloning).

    Fields:
        states: ``(B, S)`` float32 vectors, or ``(B, 4, H, W)`` uint8 frame
            stacks (newest last, zeros before the episode's start).
        actions: ``(B,)`` int64 discrete or ``(B, A)`` float32 continuous
            environment actions.
    """

    states: torch.Tensor
    actions: torch.Tensor

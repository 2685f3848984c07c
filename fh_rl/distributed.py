"""Data-parallel training with ``torch.distributed`` (launched by ``torchrun``).

    torchrun --nproc-per-node 4 -m fh_rl.train --config configs/atari.yaml

``torchrun`` starts P processes and sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init_distributed` reads them and joins the process group
(NCCL on CUDA, gloo on CPU). Without them everything here is a no-op and a
single process trains as before.

The rules that make a P-process run the same run as a 1-process one:

- every rank draws the same *global* batch of ``train.batch_size`` indices from
  the same seeded generator and keeps its own contiguous, disjoint share
  (``batch_size / P`` rows; see the samplers' ``shard``), so sampler states are
  identical on all ranks and resume needs only rank 0's;
- the loss is weighted so that DDP's gradient average equals the gradient of
  the global batch's loss (token-weighted NLL, see :func:`global_loss_weights`),
  and the token schedule counts the global batch's tokens;
- only rank 0 writes: the run directory (whose path is broadcast to the other
  ranks), checkpoints, TensorBoard events and evaluations.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    """Global rank of this process (0: the one that writes)."""
    world_size: int = 1
    """P, the number of processes."""
    local_rank: int = 0
    """Rank on this node; the CUDA device index on GPUs."""
    backend: str | None = None
    """``nccl``, ``gloo``, or None when not distributed."""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        """``(rank, world_size)``: the samplers' ``shard`` argument."""
        return (self.rank, self.world_size)


SINGLE = DistContext()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer (set by torchrun)") from None


def check_launch_env() -> None:
    """``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` as torchrun sets them, or a ValueError at once.

    A rank outside ``0 .. WORLD_SIZE - 1`` would wait forever for peers that never come (or, with no
    ``WORLD_SIZE``, skip the run directory's lock as if another process were rank 0).
    """
    world, rank, local = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    fix = "launch with torchrun (it sets RANK, WORLD_SIZE and LOCAL_RANK), or unset them to train in one process"
    if world < 1:
        raise ValueError(f"WORLD_SIZE={world} must be >= 1; {fix}")
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} but WORLD_SIZE={world}: ranks run 0..{world - 1}; {fix}")
    if not 0 <= local < world:
        raise ValueError(f"LOCAL_RANK={local} but WORLD_SIZE={world}: local ranks run 0..{world - 1} at most; {fix}")


def requested_world_size() -> int:
    """P as torchrun set it in ``WORLD_SIZE`` (1 when not launched by torchrun)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def init_distributed(device_type: str) -> DistContext:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), else return the single-process context.

    ``device_type`` is the configured device's type: ``cuda`` selects NCCL and
    the GPU ``LOCAL_RANK``, anything else gloo.
    """
    world = requested_world_size()
    if world <= 1:
        return SINGLE
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                f"use --nproc-per-node <= the number of GPUs"
            )
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, backend=backend)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (no-op when not distributed)."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def check_batch_size(batch_size: int, world_size: int) -> int:
    """The per-rank share of the global batch; ValueError when P does not divide it."""
    if batch_size % world_size:
        raise ValueError(
            f"train.batch_size {batch_size} is the global batch and must be divisible by the number of "
            f"processes ({world_size}); use --set train.batch_size={batch_size - batch_size % world_size or world_size} "
            f"or another --nproc-per-node"
        )
    return batch_size // world_size


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects; identity when not distributed)."""
    if not ctx.enabled:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` when not distributed)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s torch/NumPy/Python generators (dropout): ``seed`` on rank 0, distinct elsewhere."""
    return seed + 1_000_003 * rank


class GlobalStep(NamedTuple):
    """The global batch's numbers for one step, the same on every rank."""

    weight: float
    """Multiply this rank's NLL by it before backward (``P * n_r / N``)."""
    tokens: int
    """N, real steps in the global batch (the token schedule's increment)."""
    nll: float
    """The global batch's NLL (token-weighted over ranks)."""
    regularization: float
    """The mean over ranks of the regularisation."""
    stop: bool
    """Some rank caught SIGINT/SIGTERM: every rank stops after this step."""

    @property
    def loss(self) -> float:
        return self.nll + self.regularization


def global_step(tokens: torch.Tensor, nll: torch.Tensor, regularization: torch.Tensor, stop: bool,
                ctx: DistContext) -> GlobalStep:
    """One all-reduce of four numbers per step (see :class:`GlobalStep`).

    The NLL is a mean over a rank's real steps, so the global batch's NLL is
    ``sum_r n_r * nll_r / N``; the regularisation is a mean over equal-sized
    shares, so its global value is the mean over ranks. Backpropagating
    ``weight * nll + regularization`` with ``weight = P * n_r / N`` therefore
    makes DDP's gradient average equal the gradient of the global batch's loss,
    also when padding makes the ranks' token counts differ.
    """
    n = tokens.detach().double().reshape(())
    stats = torch.stack([  # (4,) summed over ranks
        n,
        n * nll.detach().double(),
        regularization.detach().double().reshape(()),
        torch.tensor(float(stop), dtype=torch.float64, device=n.device),
    ])
    if ctx.enabled:
        dist.all_reduce(stats)
    N, nll_sum, reg_sum, stops = stats.tolist()
    P = ctx.world_size
    return GlobalStep(
        weight=P * float(n) / max(N, 1.0),
        tokens=int(round(N)),
        nll=nll_sum / max(N, 1.0) if N > 0 else float(nll.detach()),
        regularization=reg_sum / P,
        stop=stops > 0,
    )

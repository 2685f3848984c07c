"""The training loop: optimiser, token schedule, checkpoints, resume, logging.

The agent owns the math (``agent.loss(batch)``); the trainer owns everything
else: AdamW with the Decision Transformer paper's parameter groups (weight
decay on matmul weights only), linear warmup over tokens then cosine decay to
``min_lr_ratio`` of the peak, gradient clipping, bf16 autocast on CUDA,
atomic checkpoints that hold everything needed for an exact resume (model,
optimiser, schedule, step, RNG states, sampler state, plus whatever the caller
adds, e.g. the config), SIGINT/SIGTERM handling and a NaN guard.

Given a :class:`~fh_rl.distributed.DistContext` of P processes (``torchrun``),
the same loop trains with DistributedDataParallel: each rank's sampler yields
its share of the global batch, the loss is weighted so that the averaged
gradient is the global batch's, all ranks agree on when to stop, and only rank
0 writes checkpoints and TensorBoard scalars (see :mod:`fh_rl.distributed`).
"""

from __future__ import annotations

import copy
import math
import random
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from fh_rl.config import TrainConfig
from fh_rl.distributed import SINGLE, DistContext, barrier, gather_objects, global_step, rank_seed
from fh_rl.heads import normalized_pmf
from fh_rl.infra.atomic import atomic_torch_save
from fh_rl.infra.metrics import smoothness
from fh_rl.infra.plots import BinAxis, pmf_image

CHECKPOINT_FORMAT = "fh_rl.checkpoint/1"
CHECKPOINT_NAME = "last.pt"


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN/inf; the last good checkpoint is kept."""


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups as in minGPT / the DT paper: decay the weights of linear and conv layers, nothing else.

    Biases, LayerNorm parameters, embeddings and free parameters (position
    embeddings) are not decayed. Every trainable parameter lands in exactly one group.
    """
    decay, no_decay = [], []
    seen: set[int] = set()
    matmul = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (decay if isinstance(module, matmul) and name == "weight" else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _fused_adamw(device: torch.device) -> bool | None:
    """AdamW's fused kernel where torch has one (CPU, CUDA): one op for all parameters instead of
    ~10 per tensor (on CPU, 0.4 vs 1.5 ms per step for the quickstart's model); None elsewhere."""
    return True if device.type in ("cpu", "cuda") else None


def lr_multiplier(tokens: int, warmup_tokens: int, final_tokens: int, min_ratio: float) -> float:
    """Linear warmup to 1 over ``warmup_tokens``, then cosine to ``min_ratio`` at ``final_tokens`` (held after)."""
    if tokens < warmup_tokens:
        return max(tokens, 1) / max(warmup_tokens, 1)
    progress = (tokens - warmup_tokens) / max(1, final_tokens - warmup_tokens)
    return max(min_ratio, 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def batch_tokens(batch: Any) -> int:
    """Real steps in a batch: the mask's count for windows, the batch size for transitions."""
    mask = getattr(batch, "mask", None)
    return int(mask.sum()) if mask is not None else len(batch)


def rng_state() -> dict[str, Any]:
    """Python, NumPy (global) and torch RNG states as tensors/lists (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainResult:
    """How a :meth:`Trainer.fit` call ended."""

    step: int
    tokens: int
    interrupted: str | None = None
    """Name of the signal that stopped the run early (``SIGINT``/``SIGTERM``), else None."""
    train_loss: float | None = None
    val_metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None


class Trainer:
    """Fits an agent on batches from a sampler.

    Args:
        agent: the model (``agent.loss(batch) -> AgentLoss``).
        sampler: has ``sample()``, ``state_dict()`` and ``load_state_dict()``.
        config: the train section.
        run_dir: checkpoints go to ``run_dir/checkpoints/last.pt``.
        context_len: steps per example (for the default ``final_tokens``).
        device: where the agent and batches live.
        val_batches: fixed held-out batches for ``val/*`` metrics (None: no validation).
        writer: a TensorBoard ``SummaryWriter`` (None: no event files).
        checkpoint_extra: added to every checkpoint (config, agent spec, dataset identity).
        progress: show a progress bar (plain lines every ~30 s when stderr is not a terminal).
        pmf_axis: labels of the bins in the ``val/pmf`` images (:func:`fh_rl.infra.plots.bin_axis` of the codec).
        dist: the data-parallel context (default: a single process). With P > 1
            processes the sampler must yield this rank's share of the global
            batch (``shard=dist.shard``), and only rank 0 should get a writer
            and validation batches.
    """

    def __init__(
        self,
        agent: nn.Module,
        sampler: Any,
        config: TrainConfig,
        *,
        run_dir: str | Path,
        context_len: int = 1,
        device: torch.device | str = "cpu",
        val_batches: Sequence[Any] | None = None,
        writer: Any = None,
        checkpoint_extra: dict[str, Any] | None = None,
        progress: bool = True,
        dist: DistContext = SINGLE,
        pmf_axis: BinAxis | None = None,
    ) -> None:
        self.agent = agent
        self.dist = dist
        self._ddp: nn.Module | None = None
        self.sampler = sampler
        self.config = config
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        self.val_batches = list(val_batches or [])
        self.writer = writer
        self.checkpoint_extra = dict(checkpoint_extra or {})
        self.progress = progress
        self.pmf_axis = pmf_axis
        total = config.steps * config.batch_size * context_len  # the run's tokens (at most: windows may be padded)
        self.final_tokens = (round(config.final_fraction * total) if config.final_fraction is not None
                             else config.final_tokens or total)
        self.warmup_tokens = (round(config.warmup_fraction * total) if config.warmup_fraction is not None
                              else config.warmup_tokens)
        self.optimizer = torch.optim.AdamW(
            parameter_groups(agent, config.weight_decay), lr=config.lr, betas=tuple(config.betas), fused=_fused_adamw(self.device)
        )
        self.step = 0
        self.tokens = 0
        self._stop: str | None = None
        self.autocast = self.device.type == "cuda" and config.amp
        self.last_good_checkpoint: Path | None = None
        self._batches: BatchStream | None = None
        self.evaluate_every: int | None = None
        """With ``on_evaluate``: call ``on_evaluate(step)`` every this many steps, after that step's checkpoint."""
        self.on_evaluate: Any = None

    # ------------------------------------------------------------------ checkpoints

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / CHECKPOINT_NAME

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            **self.checkpoint_extra,
            "model": self.agent.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": {"tokens": self.tokens, "final_tokens": self.final_tokens},
            "step": self.step,
            "rng": rng_state(),
            "sampler": self._batches.sampler_state() if self._batches is not None else self.sampler.state_dict(),
        }

    def save_checkpoint(self) -> Path:
        """Atomically write ``checkpoints/last.pt`` (a crash mid-write leaves the previous one intact).

        Data-parallel: every rank must call this (the ranks' RNG states are
        gathered into ``rng_ranks``); only rank 0 writes, and all return once it has.
        """
        rngs = gather_objects(rng_state(), self.dist)
        if self.dist.is_main:
            state = self.state_dict()
            if self.dist.enabled:
                state["rng_ranks"] = rngs
            atomic_torch_save(state, self.checkpoint_path)
        barrier(self.dist)  # on return the file exists for every rank
        self.last_good_checkpoint = self.checkpoint_path
        return self.checkpoint_path

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore everything :meth:`state_dict` saved, for an exact resume."""
        self.agent.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.tokens = int(state["schedule"]["tokens"])
        self.step = int(state["step"])
        self.sampler.load_state_dict(state["sampler"])  # identical on every rank: all draw the global batch
        ranks = state.get("rng_ranks")
        if self.dist.enabled and ranks is not None and len(ranks) == self.dist.world_size:
            set_rng_state(ranks[self.dist.rank])
        elif self.dist.is_main:
            set_rng_state(state["rng"])
        else:  # resumed with another number of processes: derive this rank's generators from the step
            from fh_rl.infra.utils import seed_everything

            seed_everything(rank_seed(self.step, self.dist.rank))
        self.last_good_checkpoint = self.checkpoint_path if self.checkpoint_path.exists() else None

    # ------------------------------------------------------------------ loop

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self._stop is not None:  # a second signal: stop now, without waiting for the step
            raise KeyboardInterrupt
        self._stop = signal.Signals(signum).name

    def fit(self) -> TrainResult:
        """Train until ``config.steps`` (or a signal); checkpoint every N steps and at the end."""
        from fh_rl.infra.progress import format_rate, progress_bar

        cfg = self.config
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._request_stop)
        self.agent.to(self.device).train()
        forward = self._loss_module()
        if cfg.compile:
            forward = torch.compile(forward)
        self._batches = BatchStream(self.sampler, self.device, prefetch=cfg.prefetch)
        bar = progress_bar(total=cfg.steps, initial=self.step, disable=not self.progress, desc="train", unit="step",
                           dynamic_ncols=True)
        last_loss: float | None = None
        objective = getattr(self.agent, "objective", "nll")  # train/nll, train/nll_density or train/mse
        val_metrics: dict[str, float] = {}
        window_start, window_samples = time.perf_counter(), 0
        stopping = False
        try:
            while self.step < cfg.steps and not stopping:
                batch = self._batches.next()
                done = self._step(forward, batch)
                stopping = done.stop
                last_loss = done.loss
                window_samples += len(batch) * self.dist.world_size
                bar.update(1)

                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    elapsed = time.perf_counter() - window_start
                    throughput = window_samples / max(elapsed, 1e-9)
                    window_start, window_samples = time.perf_counter(), 0
                    bar.set_postfix(loss=f"{done.loss:.4f}", samples_per_s=format_rate(throughput))
                    logged = {k: v for k, v in done._asdict().items() if k != "stop"}  # loss, nll, ..., grad_norm
                    logged[objective] = logged.pop("nll")  # train/nll, train/nll_density or train/mse
                    self._scalars("train", {**logged, "samples_per_s": throughput})
                if self.val_batches and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                    val_metrics = self.validate()
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save_checkpoint()
                if self.on_evaluate is not None and self.evaluate_every and self.step % self.evaluate_every == 0:
                    self.on_evaluate(self.step)  # e.g. rollouts after each epoch; the agent comes back in train mode
                    self.agent.train()
                if not self.dist.enabled:
                    stopping = self._stop is not None
            if self._stop is not None:
                bar.write(f"{self._stop} received: checkpoint at step {self.step}")
                self.save_checkpoint()
        finally:
            self._batches.close()
            self._batches = None
            bar.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            if self.writer is not None:
                self.writer.flush()
        return TrainResult(
            step=self.step,
            tokens=self.tokens,
            interrupted=self._stop,
            train_loss=last_loss,
            val_metrics=val_metrics,
            checkpoint=self.last_good_checkpoint,
        )

    def _step(self, forward: Any, batch: Any) -> _StepStats:
        """One optimiser step on ``batch`` (the schedule's learning rate, clipping, the NaN guard)."""
        cfg = self.config
        stop = False
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = forward(batch)
        if self.dist.enabled:
            # One all-reduce: global tokens and loss, and whether any rank was signalled.
            g = global_step(out.tokens, out.nll, out.regularization, self._stop is not None, self.dist)
            tokens, loss_value, stop = g.tokens, g.loss, g.stop
            nll_value, reg_value = g.nll, g.regularization
            loss = out.nll * g.weight + out.regularization
            if stop and self._stop is None:
                self._stop = "SIGTERM"  # another rank was signalled: stop at the same step
        else:
            tokens, loss_value, loss = batch_tokens(batch), float(out.loss.detach()), out.loss
            nll_value, reg_value = float(out.nll.detach()), float(out.regularization.detach())
        self.tokens += int(tokens)
        lr = cfg.lr * lr_multiplier(self.tokens, self.warmup_tokens, self.final_tokens, cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if not math.isfinite(loss_value):
            self._diverged("loss", loss_value, lr)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.agent.parameters(), max_norm))
        if not math.isfinite(grad_norm):
            self._diverged("gradient norm", grad_norm, lr)
        self.optimizer.step()
        self.step += 1
        return _StepStats(loss_value, nll_value, reg_value, lr, grad_norm, stop)

    def _loss_module(self) -> Any:
        """``batch -> AgentLoss``: the agent's ``loss``, through DistributedDataParallel when data-parallel."""
        if not self.dist.enabled:
            return self.agent.loss
        if self._ddp is None:
            from torch.nn.parallel import DistributedDataParallel

            # Built once the agent is on its device; broadcasts rank 0's parameters.
            self._ddp = DistributedDataParallel(_LossOf(self.agent), device_ids=None)
        return self._ddp

    def _diverged(self, what: str, value: float, lr: float) -> None:
        kept = (
            f"the last good checkpoint is {self.last_good_checkpoint}"
            if self.last_good_checkpoint is not None
            else "no checkpoint had been written yet"
        )
        raise TrainingDiverged(
            f"training diverged: {what} is {value} at step {self.step + 1} (lr {lr:.3g}); {kept}; "
            f"try a lower train.lr or train.grad_clip"
        )

    def _scalars(self, prefix: str, values: dict[str, float]) -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, self.step)

    # ------------------------------------------------------------------ validation

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Held-out metrics over the fixed validation batches (token-weighted means), plus pmf images.

        - ``val/<objective>``: the training objective (``nll``, ``nll_density`` or ``mse``);
        - ``val/nll``: NLL of the dataset action's bin under the pmf over the codec's bins
          (heads that score continuous actions: the discretised density; none for ``mse``);
        - ``val/accuracy``: the evaluation action falls in the dataset action's bin;
        - ``val/smoothness``: the paper's smoothness of those pmfs (none for ``mse``);
        - ``val/action_mse``: squared error of the evaluation action on the [-1, 1] scale (Box actions only).

        A metric that does not apply to the head or the action space is absent (not zero).
        """
        self.agent.eval()
        objective = getattr(self.agent, "objective", "nll")
        sums: dict[str, float] = {}
        total = 0
        first = None
        try:
            for batch in self.val_batches:
                batch = batch.to(self.device)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                    out = self.agent.loss(batch)
                n = int(out.tokens)
                values = {objective: float(out.nll), "accuracy": float(out.accuracy)}
                if out.log_probs is not None:
                    log_probs = out.log_probs.float()  # (M, A, K)
                    values["nll"] = float(-log_probs.gather(-1, out.targets.unsqueeze(-1)).mean())
                    pmf = normalized_pmf(log_probs)
                    values["smoothness"] = float(smoothness(pmf).mean())
                    if first is None:
                        first = (pmf, out.targets)
                if out.action_mse is not None:
                    values["action_mse"] = float(out.action_mse)
                total += n
                for key, value in values.items():
                    sums[key] = sums.get(key, 0.0) + value * n
        finally:
            self.agent.train()
        metrics = {key: value / max(total, 1) for key, value in sums.items()}
        self._scalars("val", metrics)
        if self.writer is not None and first is not None and self.config.pmf_states > 0:
            image = pmf_image(*first, axis=self.pmf_axis, count=self.config.pmf_states)
            self.writer.add_image("val/pmf", image, self.step, dataformats="CHW")
        return metrics


class BatchStream:
    """The sampler's batches on the device, in the sampler's order.

    With ``prefetch`` on CUDA, a background thread samples the next batch into
    pinned memory and starts its copy to the GPU while the current step runs
    (NumPy's indexing releases the GIL). On CPU batches are sampled when asked
    for. :meth:`sampler_state` is the sampler's state before the first batch
    not yet handed out, so a checkpoint resumes exactly either way.
    """

    def __init__(self, sampler: Any, device: torch.device | str, *, prefetch: bool = True) -> None:
        self.sampler = sampler
        self.device = torch.device(device)
        self.prefetch = prefetch and self.device.type == "cuda"
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def _load(self) -> tuple[dict[str, Any], Any]:
        state = copy.deepcopy(self.sampler.state_dict())
        batch = self.sampler.sample()
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        return state, batch.to(self.device, non_blocking=True)

    def next(self) -> Any:
        if not self.prefetch:
            return self._load()[1]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="fh_rl-prefetch")
            self._pending = self._pool.submit(self._load)
        _, batch = self._pending.result()
        self._pending = self._pool.submit(self._load)
        return batch

    def sampler_state(self) -> dict[str, Any]:
        if self._pending is not None:
            return self._pending.result()[0]
        return self.sampler.state_dict()

    def close(self) -> None:
        """Wait for a batch in flight and stop the thread; the sampler is left after the handed-out batches."""
        if self._pool is None:
            return
        state = self.sampler_state()
        self._pool.shutdown(wait=True)
        self.sampler.load_state_dict(state)  # un-draw the prefetched batch
        self._pool, self._pending = None, None


class _StepStats(NamedTuple):
    """What one optimiser step logs (global values under data parallelism) and whether all ranks stop after it."""

    loss: float
    nll: float
    regularization: float
    lr: float
    grad_norm: float
    stop: bool


class _LossOf(nn.Module):
    """Wraps an agent so that DDP's ``forward`` is its ``loss`` (DDP hooks gradient sync into ``forward``)."""

    def __init__(self, agent: nn.Module) -> None:
        super().__init__()
        self.agent = agent

    def forward(self, batch: Any) -> Any:
        return self.agent.loss(batch)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (a run directory means its ``checkpoints/last.pt``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} not found; pass a run directory or a .pt checkpoint")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {str(path)!r} is empty (0 bytes), so it was not written by fh_rl (whose "
                         f"checkpoints appear whole or not at all); restore it from a copy or start the run again")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ValueError(f"cannot read checkpoint {str(path)!r} (corrupt or not a checkpoint): {reason}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not an fh_rl checkpoint (expected format {CHECKPOINT_FORMAT})")
    return state

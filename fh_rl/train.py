"""``python -m fh_rl.train``: train an agent with a chosen head from an offline dataset, then evaluate it.

    python -m fh_rl.train --head fourier                       # configs/default.yaml
    python -m fh_rl.train --config configs/atari/seaquest.yaml --head linear --seed 1
    python -m fh_rl.train --set train.steps=500 --set head.num_frequencies=8
    python -m fh_rl.train --resume runs/Pendulum-v1/dt-fourier/seed0-20260101-120000

Each run writes ``runs/<env>/<agent>-<head>/seed<S>-<time>/``: ``config.yaml``
(resolved), ``manifest.json`` (versions, git commit, dataset identity, seeds,
evaluation protocol), ``checkpoints/last.pt``, TensorBoard events and ``eval.json``.

Data-parallel: ``torchrun --standalone --nproc-per-node P -m fh_rl.train ...``
trains the same run on P processes (``train.batch_size`` stays the global
batch; rank 0 alone writes and evaluates; see :mod:`fh_rl.distributed`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fh_rl.build import Built, build
from fh_rl.config import Config, config_from_dict, load_config, save_config
from fh_rl.envs import resolve_protocol
from fh_rl.infra.atomic import atomic_write_text
from fh_rl.infra.cli import run_cli
from fh_rl.infra.utils import resolve_device, seed_everything

if TYPE_CHECKING:
    from fh_rl.distributed import DistContext

EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


# ----------------------------------------------------------------------------- run record


def dataset_identity(cfg: Config, dataset: Any, train: Any, val: Any) -> dict[str, Any]:
    """What the manifest and checkpoint record about the data: where, how big, a content hash (of the data as
    trained on: after its variant, see :mod:`fh_rl.datasets.variants`) and the variant's settings."""
    from fh_rl.datasets.variants import variant_of

    path = Path(cfg.dataset.path)
    if cfg.dataset.format == "dqn-replay":
        path = path / (cfg.dataset.game or cfg.env.name) / str(cfg.dataset.run) / "replay_logs"
    elif cfg.dataset.format == "minari":
        from fh_rl.datasets.hdf5 import minari_path

        path = minari_path(cfg.dataset.path)  # an id resolves to its directory
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    returns = np.asarray(dataset.episode_returns, dtype=np.float64)
    return {
        "format": cfg.dataset.format,
        "path": str(path.resolve()),
        "bytes": int(sum(p.stat().st_size for p in files)),
        "files": len(files),
        "name": getattr(dataset, "name", ""),
        "episodes": int(len(returns)),
        "transitions": int(dataset.num_transitions),
        "content_hash": dataset.content_hash(),
        "train_episodes": int(len(train.episode_returns)),
        "train_transitions": int(train.num_transitions),
        "val_episodes": int(len(val.episode_returns)) if val is not None else 0,
        "episode_return_mean": float(returns.mean()) if len(returns) else None,
        "episode_return_max": float(returns.max()) if len(returns) else None,
        "variant": variant_of(cfg.dataset),
    }


def default_targets(cfg: Config, episode_returns: np.ndarray) -> list[float]:
    """``eval.target_returns``, else the ``eval.target_quantile`` of the episode returns, else the best one."""
    if cfg.eval.target_returns:
        return [float(t) for t in cfg.eval.target_returns]
    returns = np.asarray(episode_returns, dtype=np.float64)
    if cfg.eval.target_quantile is None:
        return [float(returns.max())]
    return [float(np.quantile(returns, cfg.eval.target_quantile))]


# ----------------------------------------------------------------------------- run directory


LOG_ROOM = 1 << 20
"""Bytes a run wants free beyond its checkpoints: config, manifest, evaluations, TensorBoard events."""


def check_checkpoint_space(agent: torch.nn.Module, directory: Path, copies: int) -> None:
    """A StorageError before training when ``directory``'s disk cannot hold the run's checkpoints.

    A checkpoint holds the weights, AdamW's two moments and the buffers; replacing one atomically needs the old
    and the new side by side (``copies=2`` for a new run; 1 on resume, whose old checkpoint is already there).
    Found now, not at the first checkpoint after minutes of training.
    """
    from fh_rl.infra.atomic import _size, free_bytes
    from fh_rl.infra.cli import StorageError

    params = sum(p.numel() * p.element_size() for p in agent.parameters())
    buffers = sum(b.numel() * b.element_size() for b in agent.buffers())
    checkpoint = 3 * params + buffers
    events = sum(p.stat().st_size for p in directory.glob("events.out.tfevents.*"))  # a resume rewrites them whole
    need = copies * checkpoint + LOG_ROOM + events
    free = free_bytes(directory)
    if free < need:
        raise StorageError(
            f"{str(directory)!r} is on a disk with {_size(free)} free, but this run needs about {_size(need)} there "
            f"({copies} checkpoint(s) of {_size(checkpoint)} while one replaces the other, and its logs); free some "
            f"space or train elsewhere (run_root)", 28)


def make_run_dir(cfg: Config) -> Path:
    env = cfg.env.name.replace("/", "-")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.run_root) / env / f"{cfg.agent.name}-{cfg.head.name}"
    run_dir = base / f"seed{cfg.seed}-{stamp}"
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = base / f"seed{cfg.seed}-{stamp}-{n}"
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:  # a read-only run_root
        from fh_rl.infra.atomic import storage_error

        raise (storage_error(exc, run_dir / "config.yaml") or exc) from None
    return run_dir


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> dict[str, Any]:
    """The fh_rl checkout's commit and whether it had uncommitted changes (None outside a git checkout)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def manifest(cfg: Config, identity: dict[str, Any], targets: list[float], device: torch.device,
             command: Sequence[str]) -> dict[str, Any]:
    import fh_rl

    return {
        "command": list(command),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"platform": platform.platform(), "python": platform.python_version(), "device": str(device),
                 "cuda": torch.version.cuda if torch.cuda.is_available() else None},
        "versions": {
            "fh_rl": fh_rl.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "gymnasium": _version("gymnasium"),
            "ale-py": _version("ale-py"),
            "mujoco": _version("mujoco"),
            "stable-baselines3": _version("stable-baselines3"),
        },
        "git": git_commit(),
        "dataset": identity,
        "seeds": {"run": cfg.seed, "sampler": cfg.seed, "validation": cfg.seed + 1, "eval": cfg.seed + cfg.eval.seed},
        "eval_protocol": {
            "env": cfg.env.name,
            "protocol": resolve_protocol(cfg.env.name, cfg.env.protocol),
            "episodes": cfg.eval.episodes,
            "targets": targets,
            "rtg_mode": cfg.eval.rtg_mode,
            "decode": cfg.eval.decode,
            "timesteps": cfg.eval.timesteps,
            "integer_returns_to_go": cfg.eval.integer_returns_to_go,
            "every_steps": cfg.eval.every_steps,
        },
    }


def write_hparams(writer: Any, cfg: Config) -> None:
    """The run's row in TensorBoard's HParams table (columns and metrics: :mod:`fh_rl.board`)."""
    from fh_rl.board import run_hparams, write_session

    write_session(writer, run_hparams(cfg))


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m fh_rl.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="YAML config (default: configs/default.yaml)")
    parser.add_argument("--head", default=None, help="any registered head: linear, fourier, chebyshev, gmm, ...")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set head.num_frequencies=8 (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="run seed (overrides the config's)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation rollouts after training")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)

    from fh_rl.distributed import check_launch_env
    from fh_rl.infra.locks import die_with_parent

    check_launch_env()  # a rank outside the world would wait for its peers forever
    cfg = None
    if args.resume is not None:
        if args.config or args.head or args.overrides or args.seed is not None:
            raise ValueError("--resume continues a run with its saved config; drop --config/--head/--set/--seed")
    else:
        from fh_rl.build import resolve_env

        cfg = resolve_env(load_config(args.config, overrides=args.overrides, head=args.head, seed=args.seed))
    die_with_parent()  # a sweep's job stops (checkpointing first) when the sweep is killed
    outcome = run(cfg, resume=args.resume, evaluate=not args.no_eval, progress=not args.no_progress,
                  command=[sys.executable, "-m", "fh_rl.train", *argv])
    return outcome.exit_code


@dataclass
class TrainOutcome:
    """How :func:`run` ended."""

    exit_code: int
    """0: trained (and evaluated); 130/143: stopped by SIGINT/SIGTERM (resumable); 1: diverged."""
    run_dir: Path | None
    """The run directory (None on a torchrun rank other than 0)."""
    interrupted: str | None = None
    """The signal that stopped training early, else None."""
    step: int = 0
    """The last optimisation step."""


def run(cfg: Config | None, *, resume: str | Path | None = None, evaluate: bool = True, progress: bool = True,
        command: Sequence[str] = ()) -> TrainOutcome:
    """Train one run (a new one from ``cfg``, or continue ``resume`` with its saved config), evaluate it and write
    its run directory: what ``python -m fh_rl.train`` and :func:`fh_rl.fit` both do. ``command`` is recorded in
    the manifest."""
    from fh_rl.distributed import check_batch_size, init_distributed, requested_world_size, shutdown

    with contextlib.ExitStack() as owned:  # the run directory's lock, held until the run ends
        state, cfg, run_dir = _resolve_run(cfg, resume, evaluate, owned)
        check_batch_size(cfg.train.batch_size, requested_world_size())  # before joining: every rank fails the same way
        if cfg.train.threads is not None:
            torch.set_num_threads(cfg.train.threads)
        device = resolve_device(cfg.train.device)
        ctx = init_distributed(device.type)
        try:
            return _train(list(command), state, cfg, run_dir, device, ctx, owned, evaluate=evaluate,
                          progress=progress)
        finally:
            shutdown(ctx)


def _writes() -> bool:
    """Whether this process writes the run (not a torchrun rank other than 0)."""
    from fh_rl.distributed import _env_int

    return _env_int("RANK", 0) == 0


def _finished(run_dir: Path) -> bool:
    """The run's final evaluation is in its ``eval.json`` (not only evaluations made during training)."""
    try:
        data = json.loads((run_dir / "eval.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and bool(data.get("results"))


def _resolve_run(cfg: Config | None, resume: str | Path | None, evaluate: bool, owned: contextlib.ExitStack
                 ) -> tuple[dict[str, Any] | None, Config, Path | None]:
    """The checkpoint (on ``--resume``, read once this process owns the run directory), the config and the run
    directory (None: a new run)."""
    from fh_rl.infra.atomic import remove_stale_temps
    from fh_rl.infra.locks import hold_run_dir
    from fh_rl.trainer import load_checkpoint

    state = None
    if resume is not None:
        if cfg is not None:
            raise ValueError("resume continues a run with its saved config; pass no config with it")
        run_dir = Path(resume)
        if run_dir.is_file():
            run_dir = run_dir.parent.parent
        if _writes() and run_dir.is_dir():
            owned.enter_context(hold_run_dir(run_dir, "resume it", cannot_write="copy the run directory somewhere "
                                             "writable (or free some space) and resume that"))
            remove_stale_temps(run_dir, recursive=True)  # left by a writer that was killed; we own the directory now
            read_manifest(run_dir)  # before training, not after it: a record that cannot be appended to
        state = load_checkpoint(resume)
        cfg = config_from_dict(state["config"])
        from fh_rl.evaluate import check_checkpoint_belongs

        check_checkpoint_belongs(run_dir, cfg, "resuming it")
        if int(state["step"]) >= cfg.train.steps and evaluate and _finished(run_dir):
            raise ValueError(
                f"run {str(run_dir)!r} is complete (trained {cfg.train.steps} steps, evaluated in eval.json); "
                f"to evaluate it again: python -m fh_rl.evaluate {run_dir}"
            )
    else:
        if cfg is None:
            raise ValueError("run needs a config or a run directory to resume")
        run_dir = None
        if _writes():  # a read-only or full run_root is found now, before the data is read and the model built
            from fh_rl.infra.atomic import check_writable

            check_writable(Path(cfg.run_root) / "run", what=f"a run under run_root {cfg.run_root!r}")
    return state, cfg, run_dir


def write_json(path: Path, data: Any) -> None:
    """Strict JSON (NaN or infinity is an error, never written), atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def config_notes(cfg: Config, built: Built) -> list[str]:
    """Settings of ``cfg`` that do not apply to this environment, in words (printed, and written as comments atop
    the run's ``config.yaml``): the bin settings under discrete actions. (A timestep table shorter than the data's
    episodes is refused before, by :func:`fh_rl.preflight.check_timesteps`.)"""
    e = cfg.env
    if built.codec.continuous:
        return []
    return [f"env.num_bins ({e.num_bins}), env.margin_bins ({e.margin_bins}) and env.sample_within_bin do not "
            f"apply: {cfg.env.name} has {built.codec.describe()} actions, one bin per action"]


def start_run_dir(cfg: Config, info: dict[str, Any], ctx: DistContext, owned: contextlib.ExitStack,
                  notes: Sequence[str] = ()) -> Path:
    """A new run directory, owned by this process (its lock joins ``owned``), holding the resolved ``config.yaml``
    (``notes`` as comments) and ``manifest.json`` (``info`` + the process layout)."""
    from fh_rl.board import remove_root_layouts
    from fh_rl.infra.atomic import storage_error
    from fh_rl.infra.locks import hold_run_dir

    run_dir = make_run_dir(cfg)
    try:
        owned.enter_context(hold_run_dir(run_dir, "train", cannot_write="free some space or set run_root elsewhere"))
        remove_root_layouts(cfg.run_root)  # older versions' root layout file: a pseudo-run in TensorBoard
        save_config(cfg, run_dir / "config.yaml", notes)
        info["distributed"] = {"world_size": ctx.world_size, "backend": ctx.backend}
        write_json(run_dir / "manifest.json", info)
    except OSError as exc:  # a full or read-only disk
        error = storage_error(exc, run_dir / "config.yaml")
        if error is None:
            raise
        shutil.rmtree(run_dir, ignore_errors=True)  # made a moment ago by this process, under its lock: no run yet
        raise error from None
    return run_dir


def record_resume(run_dir: Path, step: int, device: torch.device, command: Sequence[str], ctx: DistContext) -> None:
    """Add this resume (when, from which step, with what code and where) to the run's ``manifest.json``."""
    import fh_rl

    append_to_manifest(run_dir, "resumes", {
        "command": list(command),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "from_step": step,
        "host": {"platform": platform.platform(), "python": platform.python_version(), "device": str(device)},
        "versions": {"fh_rl": fh_rl.__version__, "torch": torch.__version__},
        "git": git_commit(),
        "distributed": {"world_size": ctx.world_size, "backend": ctx.backend},
    })


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``manifest.json``; None when there is none (a run directory from elsewhere). One that cannot be
    read is a ValueError naming it: it records how the run was made, and is never replaced by a new one."""
    path = Path(run_dir) / "manifest.json"
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else " ".join(str(exc).split())
        info, problem = None, f"is not valid JSON ({why})"
    else:
        problem = f"holds a {type(info).__name__}, not a JSON object"
    if not isinstance(info, dict):
        raise ValueError(
            f"{path} {problem}; it records how the run was made (command, data, seeds, versions) and fh_rl never "
            f"replaces a record it cannot read: repair it, or move it aside to start a new record, then run again"
        )
    return info


def append_to_manifest(run_dir: Path, key: str, entry: dict[str, Any]) -> None:
    """Append ``entry`` to the list ``key`` of the run's ``manifest.json`` (rewritten atomically; an unreadable
    one is a ValueError, never replaced)."""
    info = read_manifest(run_dir)
    if info is None:
        info = {}  # a run directory from elsewhere: start a manifest with what is known now
    info.setdefault(key, []).append(entry)
    write_json(run_dir / "manifest.json", info)


def record_timings(run_dir: Path, from_step: int, to_step: int, setup_s: float, train_s: float, eval_s: float) -> None:
    """Where this process's wall time went, printed and appended to ``manifest.json``'s ``timings``.

    ``setup``: the data (built when missing, then loaded and split) and the model; ``training``: the
    training steps with their validation and checkpoints; ``evaluation``: every evaluation rollout.
    """
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "from_step": from_step, "to_step": to_step,
             "setup_s": round(setup_s, 2), "training_s": round(train_s, 2), "evaluation_s": round(eval_s, 2)}
    append_to_manifest(run_dir, "timings", entry)
    print(f"time: setup {setup_s:.1f} s, training {train_s:.1f} s, evaluation {eval_s:.1f} s "
          f"(steps {from_step}-{to_step})", file=sys.stderr)


class RunEvaluations:
    """The run's evaluation rollouts: every ``eval.every_steps`` training steps (when set) and after training.

    Each evaluation is logged to TensorBoard at its step and appended to ``eval.json``'s ``history``;
    ``results`` (the final evaluation, which marks the run complete for compare and sweeps) is written
    only by :meth:`final`. A resumed run keeps the evaluations made up to its checkpoint.
    """

    def __init__(self, agent: Any, cfg: Config, targets: list[float], run_dir: Path, writer: Any, *,
                 device: torch.device, progress: bool, resumed_at: int | None = None) -> None:
        self.agent, self.cfg, self.targets, self.run_dir, self.writer = agent, cfg, targets, Path(run_dir), writer
        self.device, self.progress = device, progress
        self.history: list[dict[str, Any]] = [] if resumed_at is None else self._saved_history(resumed_at)
        self.seconds = 0.0  # wall time spent evaluating in this process

    def _saved_history(self, step: int) -> list[dict[str, Any]]:
        try:
            data = json.loads((self.run_dir / "eval.json").read_text())
        except (OSError, ValueError):
            return []
        history = data.get("history") if isinstance(data, dict) else None
        if not isinstance(history, list):
            return []
        return [h for h in history if isinstance(h, dict) and isinstance(h.get("step"), int) and h["step"] <= step]

    def _payload(self) -> dict[str, Any]:
        cfg = self.cfg
        return {"env": cfg.env.name, "protocol": resolve_protocol(cfg.env.name, cfg.env.protocol),
                "seed": cfg.seed + cfg.eval.seed, "written_by": "train", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "history": list(self.history)}

    def __call__(self, step: int) -> list[dict[str, Any]]:
        """One evaluation at training step ``step``."""
        from fh_rl.evaluate import evaluation_settings, format_table, log_results, run_evaluation, write_eval_json

        cfg = self.cfg
        start = time.perf_counter()
        settings = evaluation_settings(cfg, {"eval_targets": self.targets})  # as python -m fh_rl.evaluate resolves them
        results = run_evaluation(self.agent, **settings, device=self.device, progress=self.progress)
        self.seconds += time.perf_counter() - start
        log_results(self.writer, results, step)
        self.history.append({"step": step, "results": results})
        write_eval_json(self.run_dir, self._payload())
        if step < cfg.train.steps:
            print(f"step {step}: " + format_table(results, cfg.env.name, cfg.env.protocol), file=sys.stderr)
        return results

    def final(self, step: int) -> list[dict[str, Any]]:
        """The evaluation after training (the last periodic one when it was at this step): ``eval.json``'s
        ``results``, the printed table; returns the results."""
        from fh_rl.evaluate import format_table, write_eval_json

        if self.history and self.history[-1]["step"] == step:
            results = self.history[-1]["results"]
        else:
            results = self(step)
        write_eval_json(self.run_dir, {**self._payload(), "checkpoint_step": step, "results": results})
        print(format_table(results, self.cfg.env.name, self.cfg.env.protocol))
        return results


def _build_run(cfg: Config, state: dict[str, Any] | None, ctx: DistContext, *, progress: bool,
               device: torch.device) -> tuple[Built, list[float], dict[str, Any]]:
    """The run's parts (every rank; a dataset build is locked), its evaluation targets and its dataset identity.

    On resume the targets are the checkpoint's, and the data must hash as it did when the run started.
    """
    from fh_rl.distributed import rank_seed

    seed_everything(cfg.seed)
    built = build(cfg, progress=progress, shard=ctx.shard, device=device)
    if not ctx.is_main:
        seed_everything(rank_seed(cfg.seed, ctx.rank))  # same initial weights, distinct dropout per rank
    targets = [float(t) for t in state["eval_targets"]] if state else default_targets(cfg, built.dataset.episode_returns)
    identity = dataset_identity(cfg, built.dataset, built.train, built.val)
    if state is not None and state["dataset"]["content_hash"] != identity["content_hash"]:
        raise ValueError(
            f"the dataset at {cfg.dataset.path!r} changed since this run started (content hash differs); "
            f"resume needs the same data"
        )
    return built, targets, identity


def _train(command: list[str], state: dict[str, Any] | None, cfg: Config, run_dir: Path | None, device: torch.device,
           ctx: DistContext, owned: contextlib.ExitStack, *, evaluate: bool, progress: bool) -> TrainOutcome:
    """Build, train, evaluate; under torchrun every rank trains and rank 0 alone writes and evaluates."""
    from fh_rl.distributed import broadcast_object
    from fh_rl.infra.plots import bin_axis
    from fh_rl.trainer import Trainer, TrainingDiverged

    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    progress = progress and ctx.is_main
    started = time.perf_counter()
    built, targets, identity = _build_run(cfg, state, ctx, progress=progress, device=device)
    from fh_rl.heads.decoding import parse_decoders

    for decoder in parse_decoders(cfg.eval.decode):  # a decoding the agent cannot use fails now, not after training
        decoder.check(built.agent.head, built.agent.codec)
    setup_s = time.perf_counter() - started
    agent = built.agent

    notes = config_notes(cfg, built) if ctx.is_main else []
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if run_dir is None and ctx.is_main:
        check_checkpoint_space(agent, Path(cfg.run_root), copies=2)
        run_dir = start_run_dir(cfg, manifest(cfg, identity, targets, device, command), ctx, owned, notes)
    elif ctx.is_main:
        check_checkpoint_space(agent, run_dir, copies=1)  # the old checkpoint is already there
        record_resume(run_dir, int(state["step"]), device, command, ctx)
    run_dir = Path(broadcast_object(None if run_dir is None else str(run_dir), ctx))
    if ctx.is_main:
        print(f"run directory: {run_dir}" + (f" ({ctx.world_size} processes, {ctx.backend})" if ctx.enabled else ""),
              file=sys.stderr)

    writer = None
    if ctx.is_main:
        from fh_rl.infra.events import open_writer

        # One events file per run: a resume carries the earlier events over, up to its checkpoint's step.
        writer = open_writer(run_dir, keep_until_step=None if state is None else int(state["step"]))
        if state is None:
            from fh_rl.board import write_layout

            write_layout(writer)  # the custom-scalars layout travels with the run (a resume carries it over)
    trainer = Trainer(
        agent,
        built.sampler,
        cfg.train,
        run_dir=run_dir,
        context_len=cfg.context_len,
        device=device,
        val_batches=built.val_batches if ctx.is_main else [],
        writer=writer,
        checkpoint_extra={"config": cfg.to_dict(), "spec": agent.spec(), "dataset": identity, "eval_targets": targets},
        progress=progress,
        dist=ctx,
        pmf_axis=bin_axis(built.codec),
    )
    if state is not None:
        seed_everything(cfg.seed)
        trainer.load_state_dict(state)
        if ctx.is_main:
            print(f"resuming at step {trainer.step} of {cfg.train.steps}", file=sys.stderr)
    evaluations = None
    if ctx.is_main and evaluate:
        evaluations = RunEvaluations(agent, cfg, targets, run_dir, writer, device=device, progress=progress,
                                     resumed_at=trainer.step if state is not None else None)
        if cfg.eval.every_steps:
            trainer.evaluate_every, trainer.on_evaluate = cfg.eval.every_steps, evaluations
    first_step = trainer.step
    fit_started = time.perf_counter()
    try:
        result = trainer.fit()
    except TrainingDiverged as exc:
        if writer is not None:
            writer.close()
        if ctx.is_main:
            print(f"error: {exc}", file=sys.stderr)
        return TrainOutcome(1, run_dir if ctx.is_main else None)
    if not ctx.is_main:  # rank 0 evaluates and writes the summaries
        return TrainOutcome(EXIT_SIGNAL.get(result.interrupted, 1) if result.interrupted else 0, None,
                            result.interrupted, result.step)
    fit_s = time.perf_counter() - fit_started
    periodic_eval_s = evaluations.seconds if evaluations is not None else 0.0
    if result.interrupted:
        writer.close()
        record_timings(run_dir, first_step, result.step, setup_s, fit_s - periodic_eval_s, periodic_eval_s)
        print(f"stopped by {result.interrupted} at step {result.step}; continue with: "
              f"python -m fh_rl.train --resume {run_dir}", file=sys.stderr)
        return TrainOutcome(EXIT_SIGNAL.get(result.interrupted, 1), run_dir, result.interrupted, result.step)

    if evaluations is not None:
        evaluations.final(result.step)
    write_hparams(writer, cfg)
    writer.close()
    record_timings(run_dir, first_step, result.step, setup_s, fit_s - periodic_eval_s,
                   evaluations.seconds if evaluations is not None else 0.0)
    print(f"done: {run_dir}", file=sys.stderr)
    return TrainOutcome(0, run_dir, None, result.step)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))

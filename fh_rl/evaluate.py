"""``python -m fh_rl.evaluate RUN_DIR_OR_CHECKPOINT``: returns of a trained agent in its environment.

The agent is rebuilt from the checkpoint alone (config, agent spec, weights
loaded with ``weights_only=True``), evaluated by the rollout workers for each
target return and each decoding (``--decode argmax,sample,mean``; default: the
run's ``eval.decode``; all decodings run on the same episode seeds), and the
results are printed as a table, written to the run's ``eval-<time>.json`` (one
record per target and decoding, naming it under ``decode``) and logged as
TensorBoard scalars ``reeval/<decoding>/return_mean``, ``.../return_std`` and
``.../normalized`` (the first decoding's also as ``reeval/return_mean`` etc.)
at the run's own target, with a ``/target_<R>`` suffix at any other
(:func:`fh_rl.board.eval_tag`): ``eval/*`` stays training's evaluation, as
``eval.json`` does, so TensorBoard and ``python -m fh_rl.compare`` show the
same one by default. The old flags ``--argmax``, ``--sample`` and
``--sample-within-bin`` remain as aliases of ``--decode argmax``, ``--decode
sample`` and the ``+within_bin`` modifier. No earlier
result is ever replaced: ``eval.json`` stays the training-time evaluation, each
re-evaluation gets its own file (or ``--out FILE``, which must not exist yet;
outside the run directory, nothing else is written there). While it writes into
a run directory, evaluate holds that directory's lock: not during training.

``--backend ray [--address ADDR]`` spreads the episodes over ``--workers`` Ray
actors instead of local worker processes (``pip install "fh_rl[ray]"``);
episode i is reset with seed ``seed + i`` either way, so with a deterministic
decoding (``--decode argmax``) the per-episode returns are identical.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fh_rl.envs import resolve_protocol
from fh_rl.infra.atomic import atomic_write_text
from fh_rl.infra.cli import run_cli


def normalized(env_name: str, score: float) -> float | None:
    """Normalised score (Atari human-normalised, D4RL min-max), or None for envs without reference scores."""
    from fh_rl.envs.scores import normalized_score

    try:
        value = normalized_score(env_name, score)
    except (KeyError, ValueError):
        return None
    return None if value is None else float(value)


def run_evaluation(
    agent: Any,
    *,
    env_name: str,
    targets: Sequence[float],
    episodes: int,
    workers: int,
    seed: int,
    protocol: str | None = None,
    rtg_mode: str = "transformed",
    decode: Any = "sample",
    device: torch.device | str = "cpu",
    progress: bool = True,
    backend: str = "local",
    address: str | None = None,
    gpus_per_worker: float = 0.0,
    timesteps: str = "own",
    integer_rtg: bool = False,
) -> list[dict[str, Any]]:
    """Evaluate ``agent`` for each target return and decoding; one result dict per (target, decoding), targets
    outer, each naming its decoding under ``decode`` (raw returns and normalised).

    ``decode``: one decoding or a list (:mod:`fh_rl.heads.decoding`); every decoding runs the same episodes
    (seeds ``seed + i``) with the same policy seed, so it equals a separate evaluation under that decoding
    alone. A decoding that does not apply to the agent is a ValueError before any episode runs.

    ``backend="ray"``: ``workers`` Ray actors (``gpus_per_worker`` GPUs each; the
    policy runs on CUDA there when > 0, else on CPU) run contiguous chunks of
    the episodes, with the same seed per episode as the local workers.
    ``timesteps`` and ``integer_rtg``: see :class:`~fh_rl.agents.inference.AgentPolicy`.
    """
    import copy
    import functools

    from fh_rl.agents.inference import AgentPolicy
    from fh_rl.envs.rollout import evaluate
    from fh_rl.heads.decoding import parse_decoders

    decoders = parse_decoders(decode)
    for decoder in decoders:
        decoder.check(agent.head, agent.codec)

    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be local or ray, got {backend!r}")
    if backend == "ray":
        from fh_rl.ray_backend import evaluate_on_ray, require_ray

        require_ray()
        if any(p.device.type != "cpu" for p in agent.parameters()):
            agent = copy.deepcopy(agent).cpu()  # pickled to the actors; the caller's agent stays where it is

    if not agent.sequence_model:
        targets = [None]  # behavior cloning is not conditioned on a return: one evaluation
    results = []
    box_bins = agent.codec.continuous and agent.head_scores == "bins"
    for i, target in enumerate(targets):
        for decoder in decoders:
            if backend == "ray":
                factory = functools.partial(AgentPolicy, agent, target_return=target or 0.0, decode=decoder,
                                            rtg_mode=rtg_mode, seed=seed + i, device="cuda" if gpus_per_worker > 0 else "cpu",
                                            timesteps=timesteps, integer_rtg=integer_rtg)
                res = evaluate_on_ray(factory, env_name, episodes, actors=max(workers, 1), seed=seed, protocol=protocol,
                                      address=address, num_gpus=gpus_per_worker, progress=progress)
            else:
                policy = AgentPolicy(agent, target_return=target or 0.0, device=device, decode=decoder, rtg_mode=rtg_mode,
                                     seed=seed + i, timesteps=timesteps, integer_rtg=integer_rtg)
                res = evaluate(policy, env_name, episodes, workers=workers, seed=seed, protocol=protocol, progress=progress)
            results.append(result_record(res, env_name, target, rtg_mode=rtg_mode, decode=decoder.name,
                                         sample=decoder.random, timesteps=timesteps, integer_rtg=integer_rtg,
                                         sample_within_bin=decoder.within_bin if box_bins else None))
    return results


def record_decoding(record: dict[str, Any]) -> str:
    """The decoding an ``eval.json`` record used: its ``decode``, or for records written before decodings
    were named, what its ``sample`` / ``sample_within_bin`` fields mean (``argmax``, ``sample+within_bin``...)."""
    decode = record.get("decode")
    if isinstance(decode, str) and decode:
        return decode
    name = "sample" if record.get("sample", True) else "argmax"
    return name + ("+within_bin" if record.get("sample_within_bin") else "")


def result_record(res: Any, env_name: str, target: float | None, *, rtg_mode: str, decode: str = "sample",
                  sample: bool | None = None, timesteps: str | None = None, integer_rtg: bool = False,
                  sample_within_bin: bool | None = None) -> dict[str, Any]:
    """One (target, decoding) entry of ``eval.json`` from the rollout result: per-episode returns, their mean,
    std and normalised mean.

    ``decode``: the decoding's name; ``sample`` (default: whether it is ``sample``) and ``sample_within_bin``
    (whether each chosen bin was decoded to a uniform draw within it, Box actions; None for discrete actions
    and for heads that predict continuous actions) are kept for readers of the old fields.
    """
    returns = np.asarray(res.returns, dtype=np.float64)
    norm = [normalized(env_name, float(r)) for r in returns]
    return {
        "target_return": None if target is None else float(target),
        "decode": decode,
        "rtg_mode": rtg_mode,
        "sample": decode.split("+")[0] == "sample" if sample is None else sample,
        "timesteps": timesteps,
        "integer_rtg": integer_rtg,
        "sample_within_bin": sample_within_bin,
        "returns": returns.tolist(),
        "lengths": np.asarray(res.lengths).tolist(),
        "seeds": np.asarray(res.seeds).tolist(),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "normalized_mean": None if any(n is None for n in norm) else float(np.mean(norm)),
    }


def log_results(writer: Any, results: list[dict[str, Any]], step: int, primary: float | None | str = "first",
                prefix: str = "eval") -> None:
    """TensorBoard scalars: ``<prefix>/<decoding>/return_mean`` etc. for every decoding and ``<prefix>/return_mean``
    etc. for the first decoding, at the run's own target ``primary`` (default: the first result's), with a
    ``/target_<R>`` suffix at other targets (:func:`fh_rl.board.eval_tag`); ``prefix`` ``eval`` for training's
    evaluations, ``reeval`` for ``python -m fh_rl.evaluate``'s."""
    from fh_rl.board import eval_tag

    if primary == "first":
        primary = results[0]["target_return"] if results else None
    first = record_decoding(results[0]) if results else None
    for r in results:
        target, decode = r["target_return"], record_decoding(r)
        for d in (decode, None) if decode == first else (decode,):
            writer.add_scalar(eval_tag("return_mean", target, primary, prefix, d), r["return_mean"], step)
            writer.add_scalar(eval_tag("return_std", target, primary, prefix, d), r["return_std"], step)
            if r["normalized_mean"] is not None:
                writer.add_scalar(eval_tag("normalized", target, primary, prefix, d), r["normalized_mean"], step)


def format_table(results: list[dict[str, Any]], env_name: str, protocol: str | None = None) -> str:
    """A plain-text table: one row per target return and decoding, headed by the evaluation settings."""
    protocol = resolve_protocol(env_name, protocol)
    where = f"{env_name} ({protocol} protocol)" if protocol else env_name
    lines = [f"{where}: {results[0]['rtg_mode']} returns-to-go"]
    width = max(12, *(len(record_decoding(r)) for r in results))
    lines.append(f"{'target':>12} {'decode':>{width}} {'episodes':>8} {'return mean':>12} {'std':>10} {'normalized':>10}")
    for r in results:
        norm = "-" if r["normalized_mean"] is None else f"{r['normalized_mean']:.1f}"
        target = "-" if r["target_return"] is None else f"{r['target_return']:g}"
        lines.append(
            f"{target:>12} {record_decoding(r):>{width}} {len(r['returns']):>8d} {r['return_mean']:>12.1f} "
            f"{r['return_std']:>10.1f} {norm:>10}"
        )
    return "\n".join(lines)


def _finite_or_none(value: Any) -> Any:
    """The payload with NaN/infinity replaced by null (a diverging environment must not make invalid JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def write_eval_json(run_dir: Path, payload: dict[str, Any], name: str = "eval.json") -> Path:
    """Write an evaluation as strict JSON, atomically: ``eval.json`` is the training-time result."""
    path = Path(run_dir) / name
    atomic_write_text(path, json.dumps(_finite_or_none(payload), indent=2, allow_nan=False) + "\n")
    return path


def new_eval_path(run_dir: Path) -> Path:
    """``eval-<time>.json`` in ``run_dir``, a name no earlier evaluation has (``-2``, ``-3``... on a clash)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(run_dir) / f"eval-{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = Path(run_dir) / f"eval-{stamp}-{n}.json"
    return path


def evaluation_settings(cfg: Any, state: dict[str, Any], *, targets: Sequence[float] | None = None,
                        episodes: int | None = None, workers: int | None = None, seed: int | None = None,
                        protocol: str | None = None, rtg_mode: str | None = None,
                        decode: str | Sequence[str] | None = None, sample: bool | None = None) -> dict[str, Any]:
    """The run's own evaluation settings (its config and checkpoint), each overridable: the keyword arguments of
    :func:`run_evaluation` besides the agent. ``python -m fh_rl.evaluate`` and :class:`fh_rl.api.Policy` both
    evaluate with them, so a run is evaluated one way.

    ``decode``: the decodings (a name, a comma list or a list; default the run's ``eval.decode``), always a list of
    names here; ``sample`` is its old spelling (True: ``sample``, False: ``argmax``)."""
    if decode is not None and sample is not None:
        raise TypeError("give decode= or its old spelling sample=, not both")
    if decode is None:
        decode = cfg.eval.decode if sample is None else ["sample" if sample else "argmax"]
    from fh_rl.heads.decoding import parse_decoders

    return {
        "env_name": cfg.env.name,
        "targets": list(targets or state.get("eval_targets") or [0.0]),
        "episodes": episodes or cfg.eval.episodes,
        "workers": cfg.eval.workers if workers is None else workers,
        "seed": seed if seed is not None else cfg.seed + cfg.eval.seed,
        "protocol": protocol if protocol is not None else cfg.env.protocol,
        "rtg_mode": rtg_mode or cfg.eval.rtg_mode,
        "decode": [d.name for d in parse_decoders(decode)],
        "timesteps": cfg.eval.timesteps,
        "integer_rtg": cfg.eval.integer_returns_to_go,
    }


def check_checkpoint_belongs(run_dir: Path, cfg: Any, doing: str, instead: str = "") -> None:
    """ValueError when the run directory's ``config.yaml`` names another environment, agent or head than the
    checkpoint's own config (a checkpoint copied in from another run): ``doing`` would file its results there."""
    import yaml

    try:
        saved = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return  # no readable record to contradict (a bare checkpoint directory)
    if not isinstance(saved, dict):
        return
    mine = {"env.name": cfg.env.name, "agent.name": cfg.agent.name, "head.name": cfg.head.name}
    for key, value in mine.items():
        section, name = key.split(".")
        theirs = saved.get(section, {}).get(name) if isinstance(saved.get(section), dict) else None
        if theirs is not None and theirs != value:
            raise ValueError(
                f"the checkpoint in {str(run_dir)!r} is of {key} {value!r} but the run directory's config.yaml says "
                f"{theirs!r} (a checkpoint copied in from another run?); {doing} would file its results under the "
                f"wrong run: put it back in its own run directory{instead}"
            )


def _run_dir_of(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        return path
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fh_rl.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="run directory (uses checkpoints/last.pt) or a .pt checkpoint")
    parser.add_argument("--episodes", type=int, default=None, help="episodes per target return (default: the run's eval.episodes)")
    parser.add_argument("--workers", type=int, default=None, help="parallel environment workers (default: the run's eval.workers)")
    parser.add_argument("--target-return", type=float, action="append", dest="targets", default=None,
                        help="target return in dataset units; repeat for several (default: the run's targets)")
    parser.add_argument("--protocol", default=None, help="environment protocol (default: the run's env.protocol)")
    parser.add_argument("--rtg-mode", choices=("transformed", "raw"), default=None,
                        help="decrement returns-to-go by transformed (dataset-unit) or raw rewards")
    parser.add_argument("--seed", type=int, default=None, help="base seed of the evaluation episodes")
    actions = parser.add_mutually_exclusive_group()
    actions.add_argument("--decode", action="append", default=None, metavar="NAME[,NAME...]",
                         help="how actions are read from the head: argmax, sample, mean, median, mode, with "
                              "+within_bin for argmax/sample of Box bins; a comma list (or repeat the flag) evaluates "
                              "each on the same episodes (default: the run's eval.decode)")
    actions.add_argument("--argmax", action="store_true", help="old spelling of --decode argmax")
    actions.add_argument("--sample", action="store_true", help="old spelling of --decode sample")
    parser.add_argument("--sample-within-bin", action="store_true",
                        help="old spelling of the +within_bin modifier: adds it to each argmax/sample decoding")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local worker processes, or --workers Ray actors (pip install \"fh_rl[ray]\")")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray instance)")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="Ray: GPUs per actor (default 0: CPU policies)")
    parser.add_argument("--video", type=int, default=0, metavar="N",
                        help="also record N episodes (seeds as evaluation episodes 0..N-1, the first target) with the "
                             "step's pmf beside each frame: <run>/videos/<eval file>/*.mp4 and TensorBoard images "
                             "video/episode_<i> (pip install \"fh_rl[video]\")")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="write the results here (must not exist) instead of <run>/eval-<time>.json; outside the "
                             "run directory, no TensorBoard events are written into the run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for target in args.targets or []:
        if not math.isfinite(target):
            raise ValueError(f"--target-return must be a finite number, got {target}")
    if args.backend == "local" and args.address:
        raise ValueError("--address needs --backend ray")
    if args.video < 0:
        raise ValueError(f"--video must be >= 0 episodes, got {args.video}")
    if args.video:
        from fh_rl.video import require_video

        require_video()  # before the rollouts: the pip command, not a traceback after them
    if args.seed is not None:
        from fh_rl.config.schema import check_seed

        check_seed(args.seed, "--seed")
    for name in ("episodes", "workers"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "episodes" else 0):
            raise ValueError(f"--{name} must be >= {1 if name == 'episodes' else 0}, got {value}")

    run_dir = _run_dir_of(Path(args.checkpoint))
    out = Path(args.out) if args.out else None
    if out is not None and (out.exists() or out.resolve() == (run_dir / "eval.json").resolve()):
        raise FileExistsError(f"--out {str(out)!r} {'already exists' if out.exists() else 'is the training-time result'}; "
                              f"evaluate never replaces an earlier result: choose another file")
    in_run = out is None or run_dir.resolve() in out.resolve().parents
    owned = contextlib.ExitStack()
    if in_run and run_dir.is_dir():
        from fh_rl.infra.locks import hold_run_dir

        owned.enter_context(hold_run_dir(run_dir, "evaluate", cannot_write="pass --out FILE outside the run "
                                         "directory to evaluate it without writing there"))
    with owned:
        from fh_rl.infra.atomic import check_writable

        events = sum(p.stat().st_size for p in run_dir.glob("events.out.tfevents.*")) if in_run else 0
        # Before the rollouts, not after them: a full or read-only disk (the run's events file is rewritten whole).
        check_writable(out or run_dir / "eval-<time>.json", need=(64 << 10) + events)
        return _evaluate(args, run_dir, out, in_run)


def cli_decodings(args: argparse.Namespace, default: Sequence[str]) -> list[str]:
    """The decodings the command line asks for: ``--decode`` (or its old spellings ``--argmax``/``--sample``),
    else ``default`` (the run's ``eval.decode``); ``--sample-within-bin`` adds ``+within_bin`` to each
    argmax/sample decoding (a ValueError when there is none)."""
    if args.decode:
        names = [n.strip() for item in args.decode for n in item.split(",") if n.strip()]
    elif args.argmax or args.sample:
        names = ["argmax" if args.argmax else "sample"]
    else:
        names = list(default)
    if args.sample_within_bin:
        from fh_rl.heads.decoding import WITHIN_BIN

        modifiable = [n for n in names if n.split("+")[0] in ("argmax", "sample")]
        if not modifiable:
            raise ValueError(f"--sample-within-bin modifies argmax or sample decodings, but the decodings are "
                             f"{', '.join(names)}; use --decode NAME+{WITHIN_BIN}")
        names = [f"{n.split('+')[0]}+{WITHIN_BIN}" if n in modifiable else n for n in names]
    return names


def _evaluate(args: argparse.Namespace, run_dir: Path, out: Path | None, in_run: bool) -> int:
    from fh_rl.build import load_agent
    from fh_rl.infra.utils import resolve_device

    device = resolve_device(args.device, "--device")
    cfg, agent, state = load_agent(args.checkpoint)
    if in_run:
        check_checkpoint_belongs(run_dir, cfg, "evaluating it into the run directory",
                                 ", or evaluate it with --out FILE outside this run directory")
    settings = evaluation_settings(cfg, state, targets=args.targets, episodes=args.episodes, workers=args.workers,
                                   seed=args.seed, protocol=args.protocol, rtg_mode=args.rtg_mode,
                                   decode=cli_decodings(args, cfg.eval.decode))
    results = run_evaluation(agent, **settings, device=device, progress=not args.no_progress,
                             backend=args.backend, address=args.address, gpus_per_worker=args.gpus_per_worker)
    protocol, seed = settings["protocol"], settings["seed"]
    print(format_table(results, cfg.env.name, protocol))
    payload = {
        "env": cfg.env.name,
        "protocol": resolve_protocol(cfg.env.name, protocol),
        "checkpoint_step": int(state["step"]),
        "seed": seed,
        "written_by": "evaluate",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": results,
    }
    try:  # keep the evaluations made during training (compare's best-of-N column reads them)
        previous = json.loads((run_dir / "eval.json").read_text())
    except (OSError, ValueError):
        previous = None
    if isinstance(previous, dict) and isinstance(previous.get("history"), list):
        payload["history"] = previous["history"]
    path = out if out is not None else new_eval_path(run_dir)
    write_eval_json(path.parent, payload, path.name)
    record = None
    if args.video:
        from fh_rl.api import Policy
        from fh_rl.video import record_videos

        policy = Policy(cfg, agent, state, device=device, run_dir=run_dir, settings=settings)
        video_dir = run_dir / "videos" / path.stem if in_run else path.with_name(path.stem + "-videos")
        record = lambda writer: record_videos(policy, args.video, video_dir, seed=seed, writer=writer,  # noqa: E731
                                              step=int(state["step"]))
    videos = []
    if in_run:
        from fh_rl.infra.events import open_writer

        with open_writer(run_dir) as writer:
            own = state.get("eval_targets") or [None]  # eval/* tags hold the run's own target; others get a suffix
            log_results(writer, results, int(state["step"]), primary=float(own[0]) if own[0] is not None else None,
                        prefix="reeval")  # eval/* stays the training-time evaluation, which compare reads by default
            if record is not None:
                videos = record(writer)
    elif record is not None:
        videos = record(None)
    print(f"wrote {path}")
    for v in videos:
        print(f"wrote {v['file']} (episode {v['episode']}, seed {v['seed']}: return {v['return']:.1f}, "
              f"{v['length']} steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))

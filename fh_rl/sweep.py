"""``python -m fh_rl.sweep``: train every point of a grid over heads, settings and seeds.

    python -m fh_rl.sweep --config configs/default.yaml --heads linear fourier \\
        --set head.num_frequencies=2,4,8,16 --seeds 0 1 2 --jobs 2

A ``--set`` value with commas is a grid axis; without, a fixed override for
every run. ``head.<param>`` settings apply only to the heads that take that
parameter (the linear head gets no ``num_frequencies`` axis), so the example is
1 + 4 = 5 head settings x 3 seeds = 15 runs.

Every grid point trains in its own fixed directory ``<root>/<point>/`` (for
example ``fourier-num_frequencies=8-seed1``), used as the run's ``run_root``,
so the run itself lands in ``<root>/<point>/<env>/<agent>-<head>/seed<S>-<time>/``
with its ``train.log`` next to it. Running the same sweep again resumes it: a
point whose run has an ``eval.json`` is complete and skipped, one with a
checkpoint but no ``eval.json`` continues with ``--resume``, and one that died
before its first checkpoint starts again. Ctrl-C (or SIGTERM) asks the running
jobs to checkpoint and stop. The sweep root also gets a TensorBoard
custom-scalars layout, so ``tensorboard --logdir <root>`` overlays the heads'
curves in one chart per metric. Then: ``python -m fh_rl.compare <root>``.

``--backend ray [--address ADDR]`` runs every point as a Ray task on a cluster
(``--cpus-per-run``, ``--gpus-per-run``, ``--max-retries`` for runs whose node
died) and collects the finished runs into the sweep directory, or trains in
place with ``--shared-storage`` when the directory is on storage every node
mounts; see :mod:`fh_rl.ray_backend`. Ray is the optional extra ``fh_rl[ray]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fh_rl.infra.cli import run_cli

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class GridPoint:
    """One training run of a sweep."""

    head: str
    seed: int
    settings: tuple[tuple[str, str], ...]
    """The grid-axis values of this point, ``(key, value)`` in the order the axes were given."""
    fixed: tuple[str, ...] = ()
    """``key=value`` overrides shared by every point this head takes."""

    @property
    def name(self) -> str:
        """Directory name, unique and deterministic per point: ``fourier-num_frequencies=8-seed1``."""
        parts = [self.head]
        for key, value in self.settings:
            short = key[len("head."):] if key.startswith("head.") else key
            parts.append(f"{short}={value}")
        parts.append(f"seed{self.seed}")
        return re.sub(r"[^A-Za-z0-9_.=+-]", "_", "-".join(parts))

    def overrides(self) -> list[str]:
        return [*self.fixed, *(f"{k}={v}" for k, v in self.settings)]


@dataclass
class SweepResult:
    """What a sweep did, point names in grid order."""

    ran: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """Point name -> the last line its training printed."""
    stopped: list[str] = field(default_factory=list)
    """Started (trained or resumed) but stopped by the sweep's SIGINT/SIGTERM after a checkpoint: not counted as done."""
    interrupted: bool = False


# ----------------------------------------------------------------------------- the grid


def _split_values(raw: str) -> list[str]:
    """``2,4,8`` -> three values; a YAML list or mapping (``[0.9,0.95]``) stays one value."""
    raw = raw.strip()
    if raw.startswith(("[", "{")):
        return [raw]
    values = [v.strip() for v in raw.split(",")]
    if any(not v for v in values):
        raise ValueError(f"--set value {raw!r} has an empty item; write values as a comma list like 2,4,8")
    return values


def expand_grid(heads: Sequence[str], sets: Sequence[str], seeds: Sequence[int]) -> list[GridPoint]:
    """Every (head, axis values, seed) combination; ``head.<param>`` applies only to heads taking ``param``."""
    from fh_rl.heads import head_params

    if not heads:
        raise ValueError("--heads needs at least one head name, e.g. --heads linear fourier")
    if not seeds:
        raise ValueError("--seeds needs at least one seed, e.g. --seeds 0 1 2")
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds must be distinct non-negative integers, got {list(seeds)}")
    if len(set(heads)) != len(heads):
        raise ValueError(f"--heads lists a head twice: {list(heads)}")
    params = {h: head_params(h) for h in heads}  # unknown head -> ValueError listing the known ones
    axes: list[tuple[str, list[str]]] = []
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item!r} must look like key=value or key=v1,v2,..., e.g. head.num_frequencies=4,8")
        if key in ("seed", "run_root") or key == "head.name":
            raise ValueError(f"--set {key}=... is chosen by the sweep; use --seeds, --root or --heads instead")
        if any(key == k for k, _ in axes):
            raise ValueError(f"--set {key} is given twice; put all its values in one comma list")
        axes.append((key, _split_values(raw)))
    for key, _ in axes:
        if key.startswith("head.") and not any(key[5:] in params[h] for h in heads):
            takers = ", ".join(f"{h}: {', '.join(params[h]) or 'none'}" for h in heads)
            raise ValueError(f"--set {key}: none of the heads {list(heads)} takes {key[5:]!r} (parameters: {takers})")
    points = []
    for head in heads:
        mine = [(k, v) for k, v in axes if not k.startswith("head.") or k[5:] in params[head]]
        fixed = tuple(f"{k}={v[0]}" for k, v in mine if len(v) == 1)
        grid = [(k, v) for k, v in mine if len(v) > 1]
        for combo in itertools.product(*(v for _, v in grid)):
            settings = tuple((k, val) for (k, _), val in zip(grid, combo, strict=True))
            for seed in seeds:
                points.append(GridPoint(head=head, seed=seed, settings=settings, fixed=fixed))
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise ValueError("two grid points map to the same directory name; use values that differ in letters or digits")
    return points


# ----------------------------------------------------------------------------- state on disk


def run_dirs_under(path: Path) -> list[Path]:
    """Run directories (holding ``config.yaml``) below ``path``, sorted."""
    if not path.is_dir():
        return []
    return sorted(p.parent for p in path.rglob("config.yaml"))


def is_complete(run_dir: Path) -> bool:
    """A run is complete when it finished its evaluation: ``eval.json`` exists and parses with results."""
    try:
        data = json.loads((run_dir / "eval.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and bool(data.get("results"))


def expected_config(config: str | None, point: GridPoint, root: Path) -> dict[str, Any]:
    from fh_rl.config import load_config

    cfg = load_config(config, overrides=[*point.overrides(), f"run_root={root / point.name}"], head=point.head, seed=point.seed)
    return cfg.to_dict()


EVAL_ONLY_KEYS = frozenset({"eval.decode"})
"""Keys that change only how a finished run is evaluated: a complete run made with another value is kept
(its eval.json holds the decodings it was evaluated under; ``python -m fh_rl.evaluate --decode`` adds others
from its checkpoint)."""


def _config_difference(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> str | None:
    for key in sorted(set(saved) | set(wanted)):
        if (prefix == "" and key == "run_root") or f"{prefix}{key}" in EVAL_ONLY_KEYS:
            continue
        a, b = saved.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diff = _config_difference(a, b, f"{prefix}{key}.")
            if diff:
                return diff
        elif a != b:
            return f"{prefix}{key}: {a!r} there, {b!r} now"
    return None


def _with_current_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A run's saved config as this code reads it (options added since take their defaults), so a sweep
    spanning code versions still resumes; a key this code no longer knows shows as a difference."""
    from fh_rl.config import with_current_defaults

    return with_current_defaults(saved)


def plan(points: Sequence[GridPoint], root: Path, config: str | None,
         done: Sequence[str] = ()) -> list[tuple[GridPoint, str, Path | None]]:
    """``(point, action, run_dir)`` with action ``skip`` (complete, or named in ``done``: e.g. a study that holds
    its record, whether or not its run directory still exists), ``resume`` (has a checkpoint), ``train``, or
    ``busy: <why>`` (another live process holds the point's run directory; it is left alone).

    A run directory made with other settings than the sweep would use now is an
    error (a changed config file or ``--set``): mixing them would compare unlike runs.
    """
    import yaml

    from fh_rl.infra.locks import is_run_dir_busy

    actions = []
    envs_heads: set[tuple[str, str | None, str]] = set()
    unknown = set(done) - {p.name for p in points}
    if unknown:
        raise ValueError(f"--skip names point(s) not in this sweep: {sorted(unknown)}; "
                         f"names look like {points[0].name if points else 'linear-seed0'}")
    for point in points:
        wanted = expected_config(config, point, root)  # a bad key or value fails here, before any job starts
        envs_heads.add((wanted["env"]["name"], wanted["env"]["protocol"], wanted["head"]["name"]))
        if point.name in done:
            actions.append((point, "skip", None))
            continue
        dirs = run_dirs_under(root / point.name)
        busy = [(d, owner) for d in dirs if (owner := is_run_dir_busy(d))]
        if busy:  # a live process writes this point (e.g. a training job started by hand): never a second writer
            actions.append((point, f"busy: {busy[0][0]} is in use by {busy[0][1]}", busy[0][0]))
            continue
        for d in dirs:
            try:
                saved = yaml.safe_load((d / "config.yaml").read_text())
            except (OSError, yaml.YAMLError):
                saved = None
            if not isinstance(saved, dict):
                continue  # unreadable: treated as a failed start below
            saved = _with_current_defaults(saved)
            diff = _config_difference(saved, wanted)
            if diff:
                raise ValueError(
                    f"{d} was trained with other settings than this sweep asks for ({diff}); "
                    f"use another --root or remove that directory"
                )
        complete = [d for d in dirs if is_complete(d)]
        if complete:
            actions.append((point, "skip", complete[-1]))
            continue
        resumable = [d for d in dirs if (d / "checkpoints" / "last.pt").is_file()]
        if resumable:
            actions.append((point, "resume", resumable[-1]))
        else:
            actions.append((point, "train", None))
    check_heads_fit_envs(envs_heads)
    return actions


def check_heads_fit_envs(envs_heads: set[tuple[str, str | None, str]]) -> None:
    """ValueError before any job starts when a head cannot act in its environment (a continuous head, discrete actions)."""
    from fh_rl.agents.base import check_head_fits
    from fh_rl.envs import make_env
    from fh_rl.envs.codecs import make_codec
    from fh_rl.heads import head_scores

    for env_name, protocol in sorted({(e, p) for e, p, h in envs_heads if head_scores(h) == "continuous"}, key=str):
        env = make_env(env_name, protocol=protocol)
        try:
            codec = make_codec(env.action_space)
        finally:
            env.close()
        for e, p, head in sorted(envs_heads, key=str):
            if (e, p) == (env_name, protocol):
                check_head_fits(head, codec, where=env_name)


def command(config: str | None, point: GridPoint, root: Path, resume: Path | None) -> list[str]:
    """The ``python -m fh_rl.train`` command line of a point (or its ``--resume``)."""
    cmd = [sys.executable, "-m", "fh_rl.train"]
    if resume is not None:
        return [*cmd, "--resume", str(resume), "--no-progress"]
    if config is not None:
        cmd += ["--config", str(config)]
    cmd += ["--head", point.head, "--seed", str(point.seed)]
    for item in [*point.overrides(), f"run_root={root / point.name}"]:
        cmd += ["--set", item]
    return [*cmd, "--no-progress"]


# ----------------------------------------------------------------------------- running


def _child_env(jobs: int) -> dict[str, str]:
    from fh_rl.infra.locks import PARENT_ENV

    env = dict(os.environ)
    env[PARENT_ENV] = str(os.getpid())  # the job gets SIGTERM (checkpoints, stops) if this sweep dies
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    if "OMP_NUM_THREADS" not in env:  # J jobs share the cores instead of each taking all of them
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1].strip() if lines else "(empty log)"


def run_sweep(
    points: Sequence[GridPoint],
    root: str | os.PathLike,
    *,
    config: str | None = None,
    jobs: int = 1,
    progress: bool = True,
    backend: str = "local",
    address: str | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    max_retries: int = 3,
    shared_storage: bool = False,
    done: Sequence[str] = (),
) -> SweepResult:
    """Train the points not yet complete: ``jobs`` at a time as ``python -m fh_rl.train`` subprocesses
    (``backend="local"``), or as Ray tasks of ``num_cpus``/``num_gpus`` each (``backend="ray"``, see
    :mod:`fh_rl.ray_backend`; ``address`` None starts a local Ray instance unless one is running).
    ``done``: point names to treat as complete (see :func:`plan`)."""
    if backend not in ("local", "ray"):
        raise ValueError(f"--backend must be local or ray, got {backend!r}")
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if backend == "ray":
        from fh_rl.ray_backend import require_ray

        require_ray()  # before planning anything: the one-line install hint
        if not num_cpus > 0 or num_gpus < 0 or max_retries < 0:
            raise ValueError(f"--cpus-per-run must be > 0, --gpus-per-run and --max-retries >= 0; "
                             f"got {num_cpus}, {num_gpus}, {max_retries}")
    if config is not None and not Path(config).is_file():
        raise FileNotFoundError(f"config file {str(config)!r} not found; pass --config with a YAML file under configs/")
    from fh_rl.infra.locks import hold_sweep_root

    root = Path(root)
    actions = plan(points, root, config, done)
    with hold_sweep_root(root):  # one sweep per directory; its jobs die with it (see _child_env)
        return _run_planned(actions, root, config, jobs, progress, backend, address=address, num_cpus=num_cpus,
                            num_gpus=num_gpus, max_retries=max_retries, shared_storage=shared_storage)


def _run_planned(actions, root: Path, config: str | None, jobs: int, progress: bool, backend: str, *,
                 address: str | None, num_cpus: float, num_gpus: float, max_retries: int,
                 shared_storage: bool) -> SweepResult:
    from fh_rl.board import remove_root_layouts
    from fh_rl.infra.progress import progress_bar

    remove_root_layouts(root)  # older versions' root layout file: a pseudo-run in TensorBoard
    result = SweepResult(skipped=[p.name for p, a, _ in actions if a == "skip"])
    for p, a, _ in actions:
        if a.startswith("busy"):
            result.failed[p.name] = f"not started: {a[len('busy: '):]}; run the sweep again once it has finished"
    todo = [(p, a, d) for p, a, d in actions if a in ("train", "resume")]
    if backend == "ray":
        bar = progress_bar(total=len(actions), initial=len(result.skipped) + len(result.failed), desc="sweep (ray)",
                           unit="run", disable=not progress)
        try:
            _run_on_ray(todo, root, config, result, bar, address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                        max_retries=max_retries, shared_storage=shared_storage)
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            bar.close()
        return result
    bar = progress_bar(total=len(actions), initial=len(result.skipped) + len(result.failed), desc="sweep", unit="run",
                       disable=not progress)
    try:
        _run_local(todo, root, config, result, bar, jobs=jobs)
    finally:
        bar.close()
    return result


def _run_local(todo, root: Path, config: str | None, result: SweepResult, bar: Any, *, jobs: int) -> None:
    """``jobs`` training subprocesses at a time; SIGINT/SIGTERM make each checkpoint and exit (``result.interrupted``)."""
    env = _child_env(jobs)
    running: dict[subprocess.Popen, tuple[GridPoint, Path]] = {}
    stop: list[str] = []

    def request_stop(signum: int, frame: Any) -> None:
        if not stop:
            stop.append(signal.Signals(signum).name)
            for proc in running:
                proc.send_signal(signal.SIGINT)  # the trainer checkpoints and exits

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, request_stop)
        except ValueError:  # not the main thread
            pass
    try:
        queue = list(todo)
        while queue or running:
            while queue and len(running) < jobs and not stop:
                point, action, run_dir = queue.pop(0)
                proc, log_path = _start_run(point, action, run_dir, root, config, env)
                running[proc] = (point, log_path)
                (result.resumed if action == "resume" else result.ran).append(point.name)
            if stop and not running:
                break
            if stop and queue:
                queue.clear()
            time.sleep(0.1)
            for proc in [p for p in running if p.poll() is not None]:
                point, log_path = running.pop(proc)
                if stop and proc.returncode in (130, 143):  # checkpointed and stopped: resumable, not done
                    for started in (result.ran, result.resumed):
                        if point.name in started:
                            started.remove(point.name)
                    result.stopped.append(point.name)
                elif proc.returncode != 0:
                    result.failed[point.name] = f"exit {proc.returncode}: {_last_line(log_path)} (log: {log_path})"
                bar.update(1)
    finally:
        for proc in running:  # only on an unexpected error in this loop
            proc.send_signal(signal.SIGINT)
            proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    result.interrupted = bool(stop)


def _start_run(point: GridPoint, action: str, run_dir: Path | None, root: Path, config: str | None,
               env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    """Start one point's ``python -m fh_rl.train`` (fresh or ``--resume``), logging to its ``train.log``."""
    point_dir = _point_dir(root, point, action)
    point_dir.mkdir(parents=True, exist_ok=True)
    log_path = point_dir / "train.log"
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(command(config, point, root, run_dir))}\n")
        log.flush()
        proc = subprocess.Popen(
            command(config, point, root, run_dir), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
    return proc, log_path


def _point_dir(root: Path, point: GridPoint, action: str) -> Path:
    """The point's folder; training afresh first removes run directories that died before their first checkpoint."""
    point_dir = root / point.name
    if action == "train":
        for d in run_dirs_under(point_dir):
            shutil.rmtree(d)
    return point_dir


def _run_on_ray(todo, root: Path, config: str | None, result: SweepResult, bar: Any, *, address: str | None,
                num_cpus: float, num_gpus: float, max_retries: int, shared_storage: bool) -> None:
    """One Ray task per point; finished runs are unpacked into ``root`` (or were written there, shared storage)."""
    from fh_rl.config import DEFAULT_CONFIG
    from fh_rl.ray_backend import pack_dir, run_ray_tasks, unpack_dir

    config_text = Path(config or DEFAULT_CONFIG).read_text()
    shared_root = str(root.resolve()) if shared_storage else None
    jobs = []
    for point, action, run_dir in todo:
        point_dir = _point_dir(root, point, action)
        args = ["--head", point.head, "--seed", str(point.seed), "--no-progress"]
        for item in point.overrides():
            args += ["--set", item]
        resume_rel = str(run_dir.relative_to(point_dir)) if action == "resume" else None
        archive = pack_dir(point_dir) if action == "resume" and not shared_storage else None
        jobs.append({"args": args, "point_name": point.name, "config_text": config_text, "archive": archive,
                     "resume_rel": resume_rel, "shared_root": shared_root})
        (result.resumed if action == "resume" else result.ran).append(point.name)

    def on_done(job: dict[str, Any], out: dict[str, Any] | None, error: str | None) -> None:
        name = job["point_name"]
        log_path = root / name / "train.log"
        if out is None:
            result.failed[name] = f"Ray gave up after {max_retries} retries: {error}"
        else:
            if out.get("archive") is not None:
                unpack_dir(out["archive"], root / name)
            if out["returncode"] != 0:
                result.failed[name] = f"exit {out['returncode']}: {out['last_line']} (log: {log_path})"
        bar.update(1)

    if jobs:
        run_ray_tasks(jobs, address=address, num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries,
                      on_done=on_done)


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fh_rl.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="YAML config every run starts from (default: configs/default.yaml)")
    parser.add_argument("--heads", nargs="+", default=None, help="heads to train (default: the config's head)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=V1[,V2...]",
                        help="a fixed override, or a grid axis when it lists several values (repeatable)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds per grid point (default: the config's)")
    parser.add_argument("--jobs", "-j", type=int, default=1, help="training runs at a time (default 1)")
    parser.add_argument("--root", default=None,
                        help="sweep directory (default: <run_root>/sweep-<config name>); rerun with the same one to resume")
    parser.add_argument("--skip", nargs="+", default=[], metavar="POINT",
                        help="point names (e.g. fourier-num_frequencies=8-seed1) to treat as complete without "
                             "looking at their directories (a study passes the points it has records of)")
    parser.add_argument("--dry-run", action="store_true", help="print what would run and exit")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local subprocesses (--jobs at a time) or Ray tasks on a cluster (pip install \"fh_rl[ray]\")")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (auto, ray://HOST:10001 or HOST:6379); default: start a local Ray instance")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray: CPUs each run asks for (default 1)")
    parser.add_argument("--gpus-per-run", type=float, default=0.0, help="Ray: GPUs each run asks for (default 0)")
    parser.add_argument("--max-retries", type=int, default=3, help="Ray: retries of a run whose worker or node died (default 3)")
    parser.add_argument("--shared-storage", action="store_true",
                        help="Ray: --root is on storage every node mounts at the same path; train in place instead of copying runs back")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)

    from fh_rl.config import DEFAULT_CONFIG, load_config

    base = load_config(args.config)
    heads = args.heads or [base.head.name]
    seeds = args.seeds if args.seeds is not None else [base.seed]
    points = expand_grid(heads, args.sets, seeds)
    config_name = Path(args.config).stem if args.config else DEFAULT_CONFIG.stem
    root = Path(args.root) if args.root else Path(base.run_root) / f"sweep-{config_name}"
    if args.dry_run:
        for point, action, run_dir in plan(points, root, args.config, args.skip):
            if action.startswith("busy"):
                print(f"  busy  {point.name}: {action[len('busy: '):]}")
                continue
            print(f"{action:>6}  {point.name}: {' '.join(command(args.config, point, root, run_dir if action == 'resume' else None)[1:])}")
        return 0
    if args.backend == "local" and (args.address or args.shared_storage):
        raise ValueError("--address and --shared-storage need --backend ray")
    result = run_sweep(points, root, config=args.config, jobs=args.jobs, progress=not args.no_progress,
                       backend=args.backend, address=args.address, num_cpus=args.cpus_per_run,
                       num_gpus=args.gpus_per_run, max_retries=args.max_retries, shared_storage=args.shared_storage,
                       done=args.skip)
    print(f"sweep {root}: {len(result.ran)} trained, {len(result.resumed)} resumed, "
          f"{len(result.skipped)} already complete, {len(result.failed)} failed"
          + (f", {len(result.stopped)} stopped at a checkpoint" if result.stopped else ""))
    for name, why in result.failed.items():
        print(f"  failed {name}: {why}")
    if result.interrupted:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    if result.failed:
        return 1
    print(f"compare with: python -m fh_rl.compare {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))

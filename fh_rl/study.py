"""``python -m fh_rl.study configs/studies/<name>.yaml``: one head-comparison study, end to end.

    python -m fh_rl.study configs/studies/pendulum.yaml            # data, sweeps, compare, docs
    python -m fh_rl.study configs/studies/pendulum.yaml --report   # only re-read the runs, rewrite docs
    nohup python -m fh_rl.study configs/studies/pendulum.yaml --commit &   # long runs: commit as runs finish

A study is a YAML file: the dataset it needs (and the command that makes it),
one or more sweeps (each a config, heads and ``--set`` grid, as
``python -m fh_rl.sweep`` takes them), the seeds, and a few paragraphs of prose
about the data and settings. Running it:

1. makes the dataset when its file is missing (collectors write atomically);
2. runs the sweeps *seed by seed* (every arm's seed 0, then every arm's seed 1,
   ...), stage by stage (stage 1 first: the arms that answer the main
   question), so an interrupted study has balanced arms; ``jobs`` runs at a
   time across the sweeps of a stage (a sweep of one arm leaves no core
   idle); running the same command again continues where it stopped: a run whose record is in
   ``docs/results/<name>.json`` is done (its run directory need not exist),
   and the sweep resumes the others from their run directories;
3. writes one record per finished run to ``docs/results/<name>.json`` (env,
   agent, head and its settings, seed, every evaluation return, the held-out
   ``val/*`` metrics and learning curves, the pmfs at the pmf figure's
   held-out states, steps, wall time, git commit), compares the records with
   :func:`fh_rl.compare.compare_runs` (tables, bootstrap CIs, figures) into
   ``docs/results/<name>/``, and rewrites the study's section of
   ``docs/results.md`` from those files, verdict included. Nothing in that
   section is typed by hand except the YAML's prose.

Every run of a study must learn from the same data. A dataset that the study
builds (SAC, PPO or DQN training) is reproducible on one machine but not across
CPUs: floating-point kernels differ by instruction set, and a different SAC run
gives a different file. The records therefore keep the content hash of the
study's HDF5 file (``data_hash``, as a run's manifest has it), and a study refuses
to train more runs on a file with another hash: resuming on a new machine needs
the original file (e.g. committed under ``datasets/studies/``), not a rebuild.

The records are the one thing a study keeps in git. Run directories (TensorBoard
events, logs, checkpoints) go to the study's ``root``, ``studies/<name>`` by
default, which git ignores: ``--report`` rebuilds the section from the records
alone, and ``--commit`` commits only the records, the figures and the page.
A record is one line of 4-24 KB (measured: 3.6 KB for a Pendulum mse run, 9.6 KB
for a DT run with 96 bins, 24 KB with 384 bins and three decodings): config and
returns about 2-4 KB, curves 2-4 KB, the pmfs 4 x K values.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fh_rl.infra.cli import run_cli

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGE_HEADER = """# Results: which action head earns more return?

Every number on this page is produced by `python -m fh_rl.study configs/studies/<study>.yaml`
from the runs of that study; the per-run records are in `docs/results/<study>.json` and the
grouped statistics in `docs/results/<study>/comparison.json`. Returns are the mean over seeds of
each run's mean evaluation return, with a 95% bootstrap confidence interval over seeds.
Overlapping intervals mean *no evidence of a difference*, not a win. A seed fixes the held-out
split and the evaluation episodes for every arm, so each verdict line also gives the per-seed
difference from the linear head with its interval (paired by seed) and P(A > B), the probability
that an episode of one arm returns more than an episode of the other (rliable's probability of
improvement, over the seeds' pooled episodes, 95% bootstrap interval over seeds): they show how
consistent the difference is, but the verdict is read from the arms' own intervals. Under each
table, the arms with runs whose held-out NLL still fell by more than 2% over the last 20% of
training are named *not converged*. The validation split
differs between seeds, so held-out NLL and accuracy vary by seed as much as by head. Study 4
(data variants) fixes the held-out split for every seed and reads its verdicts from the paired
difference; its section says how.
"""


@dataclass
class SweepSpec:
    """One sweep of a study (the arguments of ``python -m fh_rl.sweep``)."""

    name: str
    """Sub-folder of the study root; also how the docs name this sweep."""
    config: str
    """Training config the sweep starts from."""
    heads: list[str]
    """Heads to train (``--heads``)."""
    set: list[str] = field(default_factory=list)
    """``--set`` arguments: ``key=v1,v2`` is a grid axis, ``key=v`` a fixed override."""
    dir: str = ""
    """Sub-folder of the study root its runs go to (default: ``name``); sweeps may share one."""
    stage: int = 1
    """Stages run in order, each seed by seed: put the arms that answer the main question in stage 1."""
    variant: str = ""
    """A study with ``axes``: the data variant (table) its runs belong to (default: the sweep's name)."""

    @property
    def folder(self) -> str:
        return self.dir or self.name


@dataclass
class StudySpec:
    """A study as its YAML file describes it."""

    name: str
    """Short name: the docs section, ``docs/results/<name>.json`` and ``docs/results/<name>/``."""
    title: str
    """Section heading in docs/results.md."""
    root: str
    """Where the study's sweeps keep their run directories (``<root>/<sweep dir>/``), e.g. ``studies/<name>``
    (git-ignored). Never committed: the study's records in ``docs/results/<name>.json`` are what it keeps."""
    seeds: list[int]
    """Seeds of every arm."""
    sweeps: list[SweepSpec]
    """The arms, as sweeps."""
    jobs: int = 1
    """Trainings at a time, across the sweeps of a stage (:func:`run_sweeps`)."""
    set: list[str] = field(default_factory=list)
    """``--set`` items every sweep gets (before its own; a sweep's own item for the same key wins), e.g. the
    dataset's path."""
    data: dict[str, Any] = field(default_factory=dict)
    """``path`` of the dataset and, optionally, ``command`` (a list) that makes it when missing."""
    about: str = ""
    """Markdown prose: what the data is and how it was made, the settings, caveats."""
    axes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """A study over data variants (:mod:`fh_rl.compare.variants`): ``{axis: {title, points: {variant: x},
    log, reference}}``, one figure per axis; the section then has one table per variant and paired verdicts,
    and per axis the pairs' paired differences at each point and what changes from ``reference`` (the variant
    the axis starts from; default ``base`` when it is a point, else the first point)."""

    def reference(self, axis: str) -> str:
        """The variant an axis's answer compares the others with."""
        points = list(self.axes[axis]["points"])
        return str(self.axes[axis].get("reference") or ("base" if "base" in points else points[0]))

    def variant_of(self) -> dict[str, str]:
        """Sweep folder -> the variant its runs belong to."""
        return {s.folder: s.variant or s.name for s in self.sweeps}


def load_study(path: str | Path) -> StudySpec:
    """Read and check a study YAML; ValueError naming the bad key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study file {str(path)!r} not found; studies live in configs/studies/")
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a study file must be a mapping with name, title, root, seeds, sweeps")
    missing = [k for k in ("name", "title", "root", "seeds", "sweeps") if k not in raw]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    sweeps = raw["sweeps"]
    if not isinstance(sweeps, list) or not sweeps:
        raise ValueError(f"{path}: sweeps must be a non-empty list")
    specs = []
    for i, s in enumerate(sweeps):
        if not isinstance(s, dict) or not {"name", "config", "heads"} <= set(s):
            raise ValueError(f"{path}: sweeps[{i}] needs name, config and heads")
        unknown = set(s) - {"name", "config", "heads", "set", "dir", "stage", "variant"}
        if unknown:
            raise ValueError(f"{path}: sweeps[{i}] has unknown key(s) {sorted(unknown)}")
        stage = s.get("stage", 1)
        if not isinstance(stage, int) or isinstance(stage, bool) or stage < 1:
            raise ValueError(f"{path}: sweeps[{i}].stage must be a positive integer, got {stage!r}")
        specs.append(SweepSpec(str(s["name"]), str(s["config"]), [str(h) for h in s["heads"]],
                               [str(x) for x in s.get("set") or []], str(s.get("dir") or ""), stage,
                               str(s.get("variant") or "")))
    if len({s.name for s in specs}) != len(specs):
        raise ValueError(f"{path}: sweep names must be unique")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) for x in seeds):
        raise ValueError(f"{path}: seeds must be a non-empty list of integers, got {seeds!r}")
    unknown = set(raw) - {"name", "title", "root", "seeds", "sweeps", "jobs", "data", "about", "axes", "set"}
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}")
    axes = raw.get("axes") or {}
    variants = {s.variant or s.name for s in specs}
    if not isinstance(axes, dict) or not all(isinstance(a, dict) and isinstance(a.get("points"), dict) for a in axes.values()):
        raise ValueError(f"{path}: axes must map each axis to {{title, points: {{variant: value}}}}")
    for name, axis in axes.items():
        missing_variants = (set(axis["points"]) | ({axis["reference"]} if "reference" in axis else set())) - variants
        if missing_variants:
            raise ValueError(f"{path}: axes.{name} names variant(s) no sweep has: {sorted(missing_variants)} "
                             f"(variants: {sorted(variants)})")
    common = raw.get("set") or []
    if not isinstance(common, list) or not all(isinstance(x, str) and "=" in x for x in common):
        raise ValueError(f"{path}: set must be a list of key=value strings, got {common!r}")
    return StudySpec(name=str(raw["name"]), title=str(raw["title"]), root=str(raw["root"]), seeds=seeds,
                     sweeps=specs, jobs=int(raw.get("jobs", 1)), set=[str(x) for x in common],
                     data=dict(raw.get("data") or {}),
                     about=str(raw.get("about") or ""), axes=dict(axes))


# ----------------------------------------------------------------------------- running


def make_data(study: StudySpec) -> None:
    """Run the study's data command when its dataset file is missing."""
    path = study.data.get("path")
    command = study.data.get("command")
    if not path or Path(path).exists() or not command:
        return
    print(f"study {study.name}: making {path}: {' '.join(map(str, command))}", flush=True)
    subprocess.run([sys.executable if c == "python" else str(c) for c in command], check=True)


def data_hash(study: StudySpec) -> str | None:
    """The content hash of the study's dataset (:meth:`TrajectoryDataset.content_hash`, the ``dataset.content_hash``
    of a run's manifest when it trains on the data without a variant); None when the study names no HDF5 file or
    the file is missing. Other formats (DQN-Replay folders) are not hashed."""
    path = study.data.get("path")
    if not path or Path(str(path)).suffix not in (".hdf5", ".h5") or not Path(str(path)).is_file():
        return None
    from fh_rl.datasets import load_hdf5

    return load_hdf5(path).content_hash()


def check_data(study: StudySpec, docs: str | Path) -> str | None:
    """The hash of the study's data file (:func:`data_hash`); ValueError (one line) when the study already has
    records made on a file with another hash: more runs on this file would mix two datasets in one table."""
    records, meta = load_records(docs, study.name)
    now, recorded = data_hash(study), meta.get("data_hash")
    if records and now is not None and recorded is not None and now != recorded:
        raise ValueError(
            f"study {study.name}: its {len(records)} recorded runs learned from {study.data.get('path')} with content "
            f"hash {recorded}, but the file here hashes {now} (a rebuilt dataset differs across CPUs); put the "
            f"original file there, or move docs/results/{study.name}.json aside to start the study afresh on this data")
    return now


def sweep_sets(study: StudySpec, sweep: SweepSpec) -> list[str]:
    """The sweep's ``--set`` items after the study's own (:attr:`StudySpec.set`), a key the sweep sets dropped
    from the study's."""
    mine = {item.partition("=")[0].strip() for item in sweep.set}
    return [item for item in study.set if item.partition("=")[0].strip() not in mine] + list(sweep.set)


def sweep_command(study: StudySpec, sweep: SweepSpec, seed: int, skip: Sequence[str] = (), jobs: int | None = None) -> list[str]:
    """The ``python -m fh_rl.sweep`` command of one sweep and seed; ``skip``: its points already recorded (or
    left to another invocation); ``jobs``: its ``--jobs`` (default the study's)."""
    cmd = [sys.executable, "-m", "fh_rl.sweep", "--config", sweep.config, "--heads", *sweep.heads]
    for s in sweep_sets(study, sweep):
        cmd += ["--set", s]
    cmd += ["--seeds", str(seed), "--jobs", str(study.jobs if jobs is None else jobs),
            "--root", str(Path(study.root) / sweep.folder)]
    return cmd + (["--skip", *skip] if skip else [])


def sweep_points(sweep: SweepSpec, seed: int, study: StudySpec) -> list[str]:
    """The points (``<sweep dir>/<point name>``) one sweep trains for one seed."""
    from fh_rl.sweep import expand_grid

    return [f"{sweep.folder}/{p.name}" for p in expand_grid(sweep.heads, sweep_sets(study, sweep), [seed])]


def point_command(study: StudySpec, sweep: SweepSpec, seed: int, point: str) -> list[str]:
    """The ``python -m fh_rl.sweep`` command that trains one point (``<sweep dir>/<point name>``) alone."""
    others = [p.split("/", 1)[1] for p in sweep_points(sweep, seed, study) if p != point]
    return sweep_command(study, sweep, seed, others, jobs=1)


def stage_queue(study: StudySpec, stage: int, recorded: set[str]) -> list[tuple[SweepSpec, int, str]]:
    """``(sweep, seed, point)`` of one stage without a record: seed-major, in the sweeps' order."""
    return [(sweep, seed, point) for seed in study.seeds for sweep in study.sweeps if sweep.stage == stage
            for point in sweep_points(sweep, seed, study) if point not in recorded]


def run_sweeps(study: StudySpec, after_each: Callable[[list[str]], None] | None = None,
               done: Callable[[], set[str]] = set, after_stage: Callable[[list[str]], None] | None = None) -> list[str]:
    """Every point, stage by stage; the points that failed (``<sweep> seed <S> <point>``).

    Within a stage the points run seed-major in the sweeps' order, ``study.jobs`` at a time across the stage's
    sweeps, so a sweep with one arm does not leave a core idle: each point is a ``python -m fh_rl.sweep`` of
    that one point, and two points of one sweep folder never run at once (a sweep holds its folder). ``done()``:
    the points (``<sweep dir>/<point name>``) already recorded, skipped whether or not their run directories
    exist. ``after_each(failed)`` runs after every point that ran (e.g. report and commit the records),
    ``after_stage(failed)`` after every stage (e.g. also redraw the figures)."""
    import os
    import signal
    import time

    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // study.jobs)))  # jobs share the cores
    failed: list[str] = []
    for i, stage in enumerate(sorted({s.stage for s in study.sweeps})):
        if i and after_stage is not None:
            after_stage(failed)
        queue = stage_queue(study, stage, done())
        running: dict[subprocess.Popen, tuple[SweepSpec, int, str]] = {}
        try:
            while queue or running:
                busy = {sweep.folder for sweep, _, _ in running.values()}
                for item in list(queue):
                    sweep, seed, point = item
                    if len(running) >= study.jobs:
                        break
                    if sweep.folder in busy:
                        continue
                    queue.remove(item)
                    busy.add(sweep.folder)
                    print(f"study {study.name}: sweep {sweep.name}, seed {seed}: {point.split('/', 1)[1]}", flush=True)
                    running[subprocess.Popen(point_command(study, sweep, seed, point), env=env)] = item
                time.sleep(0.2)
                for proc in [p for p in running if p.poll() is not None]:
                    sweep, seed, point = running.pop(proc)
                    if proc.returncode != 0:
                        failed.append(f"{sweep.name} seed {seed} {point.split('/', 1)[1]}")
                    if after_each is not None:
                        after_each(failed)
        except BaseException:  # Ctrl-C or an error here: the running sweeps checkpoint and stop
            for proc in running:
                proc.send_signal(signal.SIGINT)
            for proc in running:
                proc.wait()
            raise
    return failed


def commit(study: StudySpec, docs: Path) -> None:
    """``git add`` the study's records, figures and results page, and commit when anything changed (never
    its run directories).

    Failures (not a git checkout, another commit in progress) are reported and skipped: the next
    commit picks the files up."""
    paths = [docs / "results.md", docs / "results" / f"{study.name}.json", docs / "results" / study.name]
    paths = [str(p.resolve()) for p in paths if p.exists()]
    n = len(load_records(docs, study.name)[0])
    repo = Path(docs).resolve().parent  # the checkout that holds the docs folder
    try:
        subprocess.run(["git", "add", "--", *paths], cwd=repo, check=True, capture_output=True, text=True)
        staged = subprocess.run(["git", "diff", "--cached", "--quiet", "--", *paths], cwd=repo).returncode != 0
        if staged:
            subprocess.run(["git", "commit", "-q", "-m", f"study {study.name}: results of {n} finished runs",
                            "--", *paths], cwd=repo, check=True, capture_output=True, text=True)
            print(f"study {study.name}: committed results of {n} finished runs", flush=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        print(f"study {study.name}: commit skipped ({' '.join(str(detail).split())[:200]})", flush=True)


# ----------------------------------------------------------------------------- records


def _git_commit(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "manifest.json").read_text())["git"]["commit"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _events_span(run_dir: Path) -> tuple[int | None, float | None]:
    """(last logged step, seconds from the first to the last TensorBoard event) of a run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 1, "histograms": 1,
                                                         "tensors": 1})
    acc.Reload()
    times, steps = [], []
    for tag in acc.Tags().get("scalars", []):
        for e in acc.Scalars(tag):
            times.append(e.wall_time)
            steps.append(e.step)
    if not times:
        return None, None
    return max(steps), max(times) - min(times)


CURVE_TAGS = ("train/nll", "val/nll", "val/action_mse")
"""The learning curves a record keeps (the curves figure's; val/nll, or val/action_mse for heads without a pmf, for
the convergence check)."""
PMF_STATES = 4
"""Held-out states of the pmf figure, stored per record."""


def _sig(x: float, digits: int = 5) -> float:
    return float(f"{x:.{digits}g}")


def record_point(record: dict[str, Any]) -> str:
    """``<sweep dir>/<point name>``: the sweep point a record belongs to (its ``run_root``'s last two parts)."""
    if record.get("point"):
        return str(record["point"])
    root = (record.get("config") or {}).get("run_root")
    return "/".join(Path(str(root)).parts[-2:]) if root else ""


def run_records(runs: Sequence[Any], curves: bool = True, pmfs: bool = True) -> list[dict[str, Any]]:
    """One plain-JSON record per run read from its directory (see the module docstring). ``pmfs``: store the
    pmfs at the pmf figure's states (needs the run's checkpoint and dataset; None when either is missing).
    ``return_mean`` and ``history`` are under the run's first decoding (``decode``); ``evaluations`` holds every
    target and decoding."""
    from fh_rl.compare import run_pmfs
    from fh_rl.compare.runs import scalar_series

    records = []
    for run in runs:
        payload = json.loads((run.path / run.eval_file).read_text())
        steps, wall = _events_span(run.path)
        record = {
            "env": run.env,
            "agent": run.agent,
            "head": run.head,
            "head_params": run.head_params,
            "seed": run.seed,
            "config": run.config,
            "evaluations": [{k: r.get(k) for k in ("target_return", "returns", "rtg_mode", "sample",
                                                   "sample_within_bin", "decode") if k in r}
                            for r in payload.get("results", [])],
            "decode": run.decode,
            "return_mean": run.return_mean,
            "val": run.val,
            "steps": steps,
            "wall_time_s": None if wall is None else round(wall, 1),
            "git_commit": _git_commit(run.path),
            "path": str(run.path),
            "point": record_point({"config": run.config}),
            "protocol": run.protocol,
            "evaluation": run.evaluation,
            "eval_file": run.eval_file,
        }
        if run.history:
            record["history"] = [[s, _sig(m)] for s, m in run.history]
        if curves:
            series = scalar_series(run.path, CURVE_TAGS)
            record["curves"] = {tag: [[int(t), _sig(v)] for t, v in zip(*pts, strict=True)]
                                for tag, pts in series.items() if pts is not None}
        if pmfs:
            try:
                record["pmfs"] = run_pmfs(run, PMF_STATES)
            except (OSError, ValueError, KeyError, RuntimeError) as exc:  # no checkpoint or the dataset moved
                print(f"record {run.path}: no pmfs ({type(exc).__name__}: {str(exc)[:120]})", flush=True)
                record["pmfs"] = None
        records.append(record)
    return records


def load_records(docs: str | Path, name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The study's records (``<docs>/results/<name>.json``) and the file's other keys; ([], {}) when absent."""
    path = Path(docs) / "results" / f"{name}.json"
    if not path.is_file():
        return [], {}
    try:
        payload = json.loads(path.read_text())
        runs = payload["runs"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{path} is not a study's records file (expected {{\"study\": ..., \"runs\": [...]}}); "
                         f"restore it from git") from None
    return list(runs), {k: v for k, v in payload.items() if k != "runs"}


def recorded_points(docs: str | Path, name: str) -> set[str]:
    """The sweep points (``<sweep dir>/<point name>``) that have a record: done, whatever is on disk."""
    return {record_point(r) for r in load_records(docs, name)[0]}


def update_records(study: StudySpec, docs: str | Path, *, pmfs: bool = True) -> list[dict[str, Any]]:
    """The study's records plus one for every finished run under its root that has none yet (by run path);
    the records file is rewritten. Records whose run directory is gone stay."""
    from fh_rl.compare import load_run
    from fh_rl.infra.atomic import atomic_write_text
    from fh_rl.sweep import run_dirs_under

    records, meta = load_records(docs, study.name)
    for i, r in enumerate(records):  # records made before they kept curves: fill them while the run is on disk
        if "curves" not in r and Path(r["path"]).is_dir():
            try:
                new = run_records([load_run(Path(r["path"]))], pmfs=False)[0]
            except (ValueError, FileNotFoundError):
                continue
            records[i] = {**r, **{k: new[k] for k in ("point", "protocol", "evaluation", "eval_file", "curves")}}
    known = {r["path"] for r in records}
    fresh = []
    for run_dir in run_dirs_under(Path(study.root)):
        if str(run_dir) in known:
            continue
        try:
            fresh.append(load_run(run_dir))
        except (ValueError, FileNotFoundError):  # unfinished or broken: the sweep resumes or redoes it
            continue
    records += run_records(fresh, pmfs=pmfs)
    records.sort(key=lambda r: (r["env"], r["agent"], r["head"], json.dumps(r["head_params"], sort_keys=True),
                                r["seed"], r["path"]))
    meta = {"study": study.name, **{k: v for k, v in meta.items() if k != "study"}}
    current = data_hash(study) if records else None
    if meta.get("data_hash") in (None, current):  # a study's records keep the hash of the data they learned from
        summary = _dataset_summary(study.data.get("path"))
        if summary:
            meta["dataset_summary"] = summary
        if current is not None:
            meta["data_hash"] = current
    atomic_write_text(Path(docs) / "results" / f"{study.name}.json", records_json(meta, records))
    return records


def records_json(meta: dict[str, Any], records: Sequence[dict[str, Any]]) -> str:
    """The records file: strict JSON, the file's own keys first, then one line per run (small diffs)."""
    head = json.dumps(meta, indent=1, allow_nan=False)[:-2]  # without the closing "\n}"
    runs = ",\n".join(json.dumps(r, allow_nan=False, separators=(",", ":")) for r in records)
    return head + (",\n" if meta else "") + ' "runs": [\n' + runs + "\n ]\n}\n"


# ----------------------------------------------------------------------------- verdict


MIN_SEEDS_FOR_VERDICT = 3
"""A bootstrap interval over fewer seeds is not an interval worth reading."""


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool | None:
    if a["ci_low"] is None or b["ci_low"] is None:
        return None
    return not (a["ci_high"] < b["ci_low"] or b["ci_high"] < a["ci_low"])


def verdict(rows: list[dict[str, Any]], baseline: str = "linear") -> list[str]:
    """Plain-words lines: each head setting against the ``baseline`` head of the same agent, by CI overlap."""
    return [_verdict_line(row, base, baseline) for base in rows if base["head"] == baseline
            for row in rows if row is not base and row["agent"] == base["agent"]]


def setting_verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """Plain-words lines for settings of one head against each other: pairs of the same agent, head and head
    parameters that differ in exactly one other setting (e.g. ``env.margin_bins``)."""
    lines = []
    for i, row in enumerate(rows):
        for other in rows[i + 1:]:
            if (row["agent"], row["head"], row["head_params"]) != (other["agent"], other["head"], other["head_params"]):
                continue
            keys = set(row["settings"]) | set(other["settings"])
            differ = [k for k in keys if row["settings"].get(k) != other["settings"].get(k)]
            if len(differ) == 1 and not differ[0].startswith("head."):
                lines.append(_verdict_line(row, other, f"{differ[0]}={other['settings'].get(differ[0])}"))
    return lines


def _verdict_line(row: dict[str, Any], base: dict[str, Any], name: str) -> str:
    overlap = _overlap(row["return"], base["return"])
    a, b = row["return"]["mean"], base["return"]["mean"]
    if overlap is None or min(row["n_seeds"], base["n_seeds"]) < MIN_SEEDS_FOR_VERDICT:
        word = f"fewer than {MIN_SEEDS_FOR_VERDICT} seeds: no verdict yet"
    elif overlap:
        word = "intervals overlap: no evidence of a difference"
    else:
        word = "intervals do not overlap: " + ("higher" if a > b else "lower") + f" return than {name}"
    return (f"- {row['label']} vs {base['label']}: {a:.1f} vs {b:.1f} "
            f"({row['n_seeds']} vs {base['n_seeds']} seeds); {word}{_paired(row, base)}.")


def _paired(row: dict[str, Any], base: dict[str, Any]) -> str:
    """The per-seed difference of returns on the seeds both arms ran (a seed fixes the validation split and
    the evaluation episodes' seeds for every arm), with its bootstrap interval, and P(row > base) over the
    seeds' episodes when the rows carry them (``episode_returns``): information, not the verdict."""
    from fh_rl.compare.variants import paired_difference, probability_of_improvement

    mine, theirs = dict(zip(row["seeds"], row["return"]["values"], strict=True)), dict(zip(base["seeds"], base["return"]["values"], strict=True))
    common = sorted(set(mine) & set(theirs))
    if len(common) < MIN_SEEDS_FOR_VERDICT or len(mine) != len(row["seeds"]) or len(theirs) != len(base["seeds"]):
        return ""
    d = paired_difference(mine, theirs)
    text = f" (paired by seed, {len(common)} seeds: difference {d['mean']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}]"
    p = probability_of_improvement(row.get("episode_returns") or {}, base.get("episode_returns") or {})
    if p is not None and len(p["seeds"]) == len(common):
        text += f"; P(A > B) = {p['p']:.2f} [{p['ci_low']:.2f}, {p['ci_high']:.2f}]"
    return text + ")"


def _with_episodes(rows: list[dict[str, Any]], runs: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows, each with ``episode_returns`` ``{seed: returns}`` under its decoding and first target, read from
    ``runs`` (run path -> :func:`fh_rl.compare.run_from_record`; absent where a run has no record or no such
    evaluation)."""
    out = []
    for row in rows:
        episodes = {}
        for seed, path in zip(row["seeds"], row.get("runs") or [], strict=False):
            run = runs.get(str(path))
            returns = None if run is None else run.decodings.get(row.get("decode") or run.decode)
            if returns:
                episodes[seed] = returns
        out.append({**row, "episode_returns": episodes} if len(episodes) == len(row["seeds"]) else row)
    return out


def _convergence_line(rows: list[dict[str, Any]], records: Sequence[dict[str, Any]]) -> list[str]:
    """One line naming the arms with runs whose held-out NLL (action MSE for a regression head) still fell by
    more than 2% over the last 20% of training (:func:`fh_rl.compare.variants.run_converged`)."""
    from fh_rl.compare.variants import CONVERGENCE_DROP, CONVERGENCE_TAIL, run_converged

    by_path = {str(r.get("path")): r for r in records}
    flagged, checked = [], 0
    for row in rows:
        verdicts = [run_converged(by_path[str(p)])[0] for p in row.get("runs") or [] if str(p) in by_path]
        checked += sum(v is not None for v in verdicts)
        late = sum(v is False for v in verdicts)
        if late:
            flagged.append(f"{row['label']} ({late} of {len(row['seeds'])} seeds)")
    if not checked:
        return []
    rule = (f"held-out NLL, or action MSE for mse, still falling by more than {CONVERGENCE_DROP:.0%} over the last "
            f"{CONVERGENCE_TAIL:.0%} of training")
    return [f"Not converged ({rule}): {'; '.join(flagged)}." if flagged else f"Converged: no run's {rule}.", ""]


# ----------------------------------------------------------------------------- docs


def _dataset_summary(path: str | None) -> str:
    """Episodes, transitions and the episode-return distribution of an HDF5 dataset (empty when absent)."""
    if not path or not Path(path).is_file() or not str(path).endswith((".hdf5", ".h5")):
        return ""
    import numpy as np

    from fh_rl.datasets.hdf5 import load_hdf5

    data = load_hdf5(path)
    returns = np.asarray(data.episode_returns, dtype=float)
    lengths = np.asarray(data.episode_lengths)
    q = np.percentile(returns, [0, 25, 50, 75, 100])
    text = (f"Dataset `{path}`: {len(returns)} episodes, {int(lengths.sum()):,} transitions; episode "
            f"return min / 25% / median / 75% / max = {' / '.join(f'{x:.1f}' for x in q)}.")
    import h5py

    with h5py.File(path, "r") as f:
        meta = dict(f["metadata"].attrs) if "metadata" in f else {}
    parts = [f"{part}: {int(meta[f'{part}_episodes'])} episodes, return {float(meta[f'{part}_return_mean']):.1f} "
             f"+- {float(meta[f'{part}_return_std']):.1f}"
             for part in ("replay", "medium", "expert") if f"{part}_return_mean" in meta and meta.get(f"{part}_episodes")]
    if parts:
        text += " Parts (collector metadata, mean +- std): " + "; ".join(parts) + "."
    return text


def section(study: StudySpec, result: dict[str, Any], records: list[dict[str, Any]], failed: list[str],
            figures: Path, dataset_summary: str | None = None) -> str:
    """The study's section of docs/results.md, between its start and end markers."""
    lines = [f"<!-- study:{study.name}:start -->", f"## {study.title}", ""]
    lines += [f"Regenerate: `python -m fh_rl.study configs/studies/{study.name}.yaml` "
              f"({len(records)} runs; per-run records in `docs/results/{study.name}.json`).", ""]
    if study.about.strip():
        lines += [study.about.strip(), ""]
    # The recorded summary: the file here may be another build (update_records keeps the one the runs learned from).
    summary = dataset_summary or _dataset_summary(study.data.get("path"))
    if summary:
        lines += [summary, ""]
    commits = sorted({r["git_commit"] for r in records if r["git_commit"]})
    walls = [r["wall_time_s"] for r in records if r["wall_time_s"] is not None]
    if commits:
        lines += [f"Code: commit{'s' if len(commits) > 1 else ''} {', '.join(c[:10] for c in commits)}."
                  + (f" Wall time per run (training + evaluation, 1 CPU thread): median "
                     f"{sorted(walls)[len(walls) // 2]:.0f} s." if walls else ""), ""]
    if not records:
        lines += ["No run of this study has finished yet: the table appears here when the first ones do.", ""]
    if study.axes:
        lines += variant_lines(study, records)
    from fh_rl.compare import run_from_record

    runs = {} if study.axes else {str(r.get("path")): run_from_record(r) for r in records}  # read once, not per table
    for env, first_rows in ({} if study.axes else result["environments"]).items():
        from fh_rl.compare import markdown_table

        by_decoding = result.get("decodings", {}).get(env) or {first_rows[0].get("decode") if first_rows else None: first_rows}
        if len(by_decoding) > 1:
            lines += [f"Decodings: {', '.join(f'`{d}`' for d in by_decoding)} (`eval.decode`, each on the same "
                      "episode seeds; docs/decoding.md). One table and verdict per decoding.", ""]
        for decode, rows in by_decoding.items():
            rows = _with_episodes(rows, runs)
            lines += [markdown_table(env, rows, decode=decode), ""]
            lines += _convergence_line(rows, records)
            episodes = sorted({e for r in rows for e in r["episodes"]})
            lines += [f"Episodes per run: {', '.join(map(str, episodes))}. "
                      "Return: mean over seeds of each run's mean evaluation return; 95% bootstrap CI over seeds.", ""]
            where = f", `{decode}` decoding" if decode else ""
            lines += [f"Verdict (return, against the linear head{where}):", ""] + (verdict(rows) or ["- no linear baseline"]) + [""]
            if any(r["head"] == "mse" for r in rows):
                lines += [f"Verdict (return, against the regression head mse{where}):", ""] + verdict(rows, "mse") + [""]
            among = setting_verdicts(rows)
            if among:
                lines += [f"Verdict (return, one head's settings against each other{where}):", ""] + among + [""]
    # Figures on disk, not only those drawn now: records made before they stored pmfs cannot redraw the pmf
    # figure (their checkpoints were never committed), so the last one drawn is kept.
    for fig in sorted({Path(f).name for f in result.get("figures", [])} | {p.name for p in figures.glob("*.png")}):
        lines += [f"![{fig}](results/{study.name}/{fig})", ""]
    if failed:
        lines += ["Sweeps with failed runs in the last invocation: " + "; ".join(failed) + ".", ""]
    lines += [f"<!-- study:{study.name}:end -->"]
    return "\n".join(lines)


def variant_lines(study: StudySpec, records: list[dict[str, Any]]) -> list[str]:
    """The section's body for a study over data variants: one table and paired verdicts per variant (in the
    sweeps' order), then a plain-words answer per axis."""
    from fh_rl.compare.variants import all_pair_verdicts, arms, axis_answer, variant_table

    by_variant = arms(records, study.variant_of())
    verdicts = all_pair_verdicts(by_variant)  # once: the verdict lines and every axis read them
    planned: dict[str, set[str]] = {}
    for s in study.sweeps:
        planned.setdefault(s.variant or s.name, set())
    lines = ["How to read it: per variant, each arm's mean return over seeds with its 95% bootstrap interval; the "
             "verdict on a pair of arms comes from the **per-seed paired difference** (a seed fixes the training "
             "seed and the evaluation episodes' seeds for every arm) and its 95% bootstrap interval over seeds: an "
             "interval that excludes 0 is a difference, otherwise *no evidence of a difference*. The arms' own "
             "intervals are beside it, and P(A > B), rliable's probability of improvement over the seeds' "
             "pooled episodes, with a 95% bootstrap interval over seeds. A run is *not converged* when its "
             "held-out NLL (action MSE for mse) still fell by more than 2% over the last 20% of training. "
             "Each run is evaluated under every decoding of its `eval.decode` on the same 20 episode seeds "
             "(docs/decoding.md); runs made before a decoding was added lack it (its column then says how many "
             "seeds it has). "
             f"Arms with fewer than {len(study.seeds)} seeds are partial: the study is still running.", ""]
    for variant in planned:
        lines += [f"### {variant}", ""]
        arms_here = by_variant.get(variant)
        if not arms_here:
            lines += ["No run of this variant has finished yet.", ""]
            continue
        partial = [f"{label} ({len(a['seeds'])} of {len(study.seeds)} seeds)" for label, a in sorted(arms_here.items())
                   if len(a["seeds"]) < len(study.seeds)]
        lines += variant_table(arms_here) + [""]
        if partial:
            lines += ["Partial arms: " + "; ".join(partial) + ".", ""]
        for decode, pairs in verdicts[variant].items() if len(arms_here) > 1 else []:
            lines += [f"Verdicts (return, `{decode}` decoding):", ""] + (
                [v["line"] for v in pairs] or ["- no two arms of one agent under this decoding"]) + [""]
    lines += ["### The answer per axis", "",
              "Per axis, every pair of arms of one agent: the per-seed paired difference of returns, A - B, with "
              "its 95% bootstrap interval over seeds, at each variant on the axis, under each decoding both arms "
              "were evaluated under (**A more** / **A less**: the interval excludes 0). Below each table, the "
              "verdicts that change from the axis's base to its other variant(s).", ""]
    for name, axis in study.axes.items():
        lines += [f"#### {axis.get('title', name)}", "",
                  *axis_answer(verdicts, list(axis["points"]), study.reference(name)), ""]
    return lines


def rewrite_page(page: Path, name: str, text: str) -> None:
    """Replace (or append) the study's marked section of docs/results.md, atomically; refresh the page's header."""
    from fh_rl.infra.atomic import atomic_write_text

    current = page.read_text() if page.exists() else PAGE_HEADER
    if "<!-- study:" in current:  # the page's header is this version's
        current = PAGE_HEADER + "\n" + current[current.index("<!-- study:"):]
    start, end = f"<!-- study:{name}:start -->", f"<!-- study:{name}:end -->"
    if start in current and end in current:
        before, rest = current.split(start, 1)
        after = rest.split(end, 1)[1]
        current = before + text + after
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    atomic_write_text(page, current)


def variant_figures(study: StudySpec, records: list[dict[str, Any]], out: Path) -> list[str]:
    """A study over data variants: one figure per axis, and each variant's training actions near a few
    states (only when the study's dataset is on disk; else the last one drawn stays)."""
    from fh_rl.compare.variants import arms, plot_axis, plot_variant_data

    out.mkdir(parents=True, exist_ok=True)
    by_variant = arms(records, study.variant_of())
    figures = [str(f) for name, axis in study.axes.items()
               if (f := plot_axis(name, axis, by_variant, out / f"axis-{name}.png")) is not None]
    path = study.data.get("path")
    if path and Path(path).exists():
        figures.append(str(plot_variant_data(variant_datasets(study), out / "variants-data.png")))
    return figures


def variant_datasets(study: StudySpec) -> dict[str, Any]:
    """Each variant's training split, as its first sweep's config and fixed settings make it."""
    from fh_rl.build import load_dataset, probe_env, split_dataset
    from fh_rl.config import load_config
    from fh_rl.datasets.variants import apply_variant

    out: dict[str, Any] = {}
    base = None
    for sweep in study.sweeps:
        variant = sweep.variant or sweep.name
        if variant in out:
            continue
        fixed = [x for x in sweep_sets(study, sweep) if "," not in x.partition("=")[2]]
        cfg = load_config(sweep.config, overrides=fixed)
        base = base if base is not None else load_dataset(cfg, progress=False)
        data = apply_variant(base, cfg.dataset, cfg.env.name, probe_env(cfg.env)[2])
        out[variant] = split_dataset(cfg, data)[0]
    return out


def report(study: StudySpec, failed: Sequence[str] = (), docs: str | Path = "docs", *,
           figures: bool = True) -> dict[str, Any]:
    """Record the study's newly finished runs, compare all its records (run directories not needed); rewrite
    ``<docs>/results/<name>{.json,/}`` (its figures too unless ``figures`` is False) and its section of
    ``<docs>/results.md``."""
    from fh_rl.compare import compare_runs, run_from_record

    docs = Path(docs)
    records = update_records(study, docs)
    if not records:  # a study that has just started: its section says so (data and settings, no table)
        result: dict[str, Any] = {"environments": {}, "figures": []}
    else:
        result = compare_runs([run_from_record(r) for r in records], docs / "results" / study.name,
                              figures=figures and not study.axes)
        if figures and study.axes:
            result["figures"] = variant_figures(study, records, docs / "results" / study.name)
    rewrite_page(docs / "results.md", study.name, section(study, result, records, list(failed),
                                                           docs / "results" / study.name,
                                                           load_records(docs, study.name)[1].get("dataset_summary")))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fh_rl.study", description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="a study YAML, e.g. configs/studies/pendulum.yaml")
    parser.add_argument("--report", action="store_true", help="skip data and sweeps: only compare and rewrite docs")
    parser.add_argument("--docs", default="docs", help="docs folder to write results.md and results/ into (default docs)")
    parser.add_argument("--commit", action="store_true",
                        help="after every sweep, rewrite the report and git-commit the study's records, figures and "
                             "results page (never its run directories)")
    args = parser.parse_args(argv)
    study = load_study(args.study)
    failed: list[str] = []

    def report_and_commit(failed_so_far: list[str], figures: bool = False) -> None:
        # Figures (PNGs, which git cannot delta) are redrawn and committed once per stage, records every sweep.
        report(study, failed_so_far, args.docs, figures=figures)
        commit(study, Path(args.docs))

    if not args.report:
        make_data(study)
        check_data(study, args.docs)
        failed = run_sweeps(study, report_and_commit if args.commit else None,
                            done=lambda: recorded_points(args.docs, study.name),
                            after_stage=(lambda f: report_and_commit(f, figures=True)) if args.commit else None)
    result = report(study, failed, args.docs)
    if args.commit:
        commit(study, Path(args.docs))
    n = sum(len(rows) for rows in result["environments"].values())
    print(f"study {study.name}: {n} groups; wrote {args.docs}/results.md, {args.docs}/results/{study.name}.json "
          f"and {args.docs}/results/{study.name}/")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))

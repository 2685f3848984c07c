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
   question), so an interrupted study has balanced arms; sweeps resume, so
   running the same command again continues where it stopped;
3. compares every finished run under the study's root with
   :func:`fh_rl.compare.compare` (tables, bootstrap CIs, figures) into
   ``docs/results/<name>/``, writes one record per run to
   ``docs/results/<name>.json`` (env, agent, head and its settings, seed, every
   evaluation return, the held-out ``val/*`` metrics, steps, wall time, git
   commit), and rewrites the study's section of ``docs/results.md`` from those
   files, verdict included. Nothing in that section is typed by hand except
   the YAML's prose.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from fh_rl.cli import run_cli

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGE_HEADER = """# Results: which action head earns more return?

Every number on this page is produced by `python -m fh_rl.study configs/studies/<study>.yaml`
from the runs of that study; the per-run records are in `docs/results/<study>.json` and the
grouped statistics in `docs/results/<study>/comparison.json`. Returns are the mean over seeds of
each run's mean evaluation return, with a 95% bootstrap confidence interval over seeds.
Overlapping intervals mean *no evidence of a difference*, not a win. A seed fixes the held-out
split and the evaluation episodes for every arm, so each verdict line also gives the per-seed
difference from the linear head with its interval (paired by seed): it shows how consistent the
difference is, but the verdict is read from the arms' own intervals. The validation split
differs between seeds, so held-out NLL and accuracy vary by seed as much as by head.
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
    """Where the study's sweeps keep their runs (``<root>/<sweep dir>/``): ``studies/<name>`` in the
    repository, committed as runs finish (without checkpoints), so the study resumes in a new checkout."""
    seeds: list[int]
    """Seeds of every arm."""
    sweeps: list[SweepSpec]
    """The arms, as sweeps."""
    jobs: int = 1
    """Trainings at a time within a sweep."""
    data: dict[str, Any] = field(default_factory=dict)
    """``path`` of the dataset and, optionally, ``command`` (a list) that makes it when missing."""
    about: str = ""
    """Markdown prose: what the data is and how it was made, the settings, caveats."""


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
        unknown = set(s) - {"name", "config", "heads", "set", "dir", "stage"}
        if unknown:
            raise ValueError(f"{path}: sweeps[{i}] has unknown key(s) {sorted(unknown)}")
        stage = s.get("stage", 1)
        if not isinstance(stage, int) or isinstance(stage, bool) or stage < 1:
            raise ValueError(f"{path}: sweeps[{i}].stage must be a positive integer, got {stage!r}")
        specs.append(SweepSpec(str(s["name"]), str(s["config"]), [str(h) for h in s["heads"]],
                               [str(x) for x in s.get("set") or []], str(s.get("dir") or ""), stage))
    if len({s.name for s in specs}) != len(specs):
        raise ValueError(f"{path}: sweep names must be unique")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) for x in seeds):
        raise ValueError(f"{path}: seeds must be a non-empty list of integers, got {seeds!r}")
    unknown = set(raw) - {"name", "title", "root", "seeds", "sweeps", "jobs", "data", "about"}
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}")
    return StudySpec(name=str(raw["name"]), title=str(raw["title"]), root=str(raw["root"]), seeds=seeds,
                     sweeps=specs, jobs=int(raw.get("jobs", 1)), data=dict(raw.get("data") or {}),
                     about=str(raw.get("about") or ""))


# ----------------------------------------------------------------------------- running


def make_data(study: StudySpec) -> None:
    """Run the study's data command when its dataset file is missing."""
    path = study.data.get("path")
    command = study.data.get("command")
    if not path or Path(path).exists() or not command:
        return
    print(f"study {study.name}: making {path}: {' '.join(map(str, command))}", flush=True)
    subprocess.run([sys.executable if c == "python" else str(c) for c in command], check=True)


def sweep_command(study: StudySpec, sweep: SweepSpec, seed: int) -> list[str]:
    cmd = [sys.executable, "-m", "fh_rl.sweep", "--config", sweep.config, "--heads", *sweep.heads]
    for s in sweep.set:
        cmd += ["--set", s]
    return cmd + ["--seeds", str(seed), "--jobs", str(study.jobs), "--root", str(Path(study.root) / sweep.folder)]


def run_sweeps(study: StudySpec, after_each: Callable[[list[str]], None] | None = None) -> list[str]:
    """Every sweep, stage by stage, seed-major within a stage; the sweeps that reported failed runs.

    ``after_each(failed)`` runs after every sweep invocation (e.g. report and commit what finished)."""
    failed: list[str] = []
    for stage in sorted({s.stage for s in study.sweeps}):
        for seed in study.seeds:
            for sweep in (s for s in study.sweeps if s.stage == stage):
                print(f"study {study.name}: sweep {sweep.name}, seed {seed}", flush=True)
                if subprocess.run(sweep_command(study, sweep, seed)).returncode != 0:
                    failed.append(f"{sweep.name} seed {seed}")
                if after_each is not None:
                    after_each(failed)
    return failed


def finished_files(study: StudySpec) -> list[Path]:
    """What to commit of the study's runs: every file of each finished run (it has an ``eval.json``)
    except checkpoints, its sweep point's ``train.log``, and each sweep folder's TensorBoard layout."""
    root = Path(study.root)
    files: set[Path] = set()
    for eval_json in root.rglob("eval.json"):
        run_dir = eval_json.parent
        files |= {f for f in run_dir.rglob("*") if f.is_file() and "checkpoints" not in f.relative_to(run_dir).parts}
        point_log = run_dir.parents[2] / "train.log"  # <sweep dir>/<point>/<env>/<agent-head>/<run>
        if point_log.is_file():
            files.add(point_log)
    files |= {f for f in root.glob("*/events.out.tfevents.*") if f.is_file()}
    return sorted(files)


def commit(study: StudySpec, docs: Path) -> None:
    """``git add`` the finished runs and the study's results files, and commit when anything changed.

    Failures (not a git checkout, another commit in progress) are reported and skipped: the next
    commit picks the files up."""
    paths = [*finished_files(study), docs / "results.md", docs / "results" / f"{study.name}.json",
             docs / "results" / study.name]
    paths = [str(p.resolve()) for p in paths if p.exists()]
    n = len({p.parent for p in Path(study.root).rglob("eval.json")})
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


def run_records(runs: Sequence[Any]) -> list[dict[str, Any]]:
    """One plain-JSON record per run (see the module docstring); ``return_mean`` is under the run's first
    decoding (``decode``), ``evaluations`` holds every target and decoding."""
    from fh_rl.evaluate import record_decoding

    records = []
    for run in runs:
        payload = json.loads((run.path / "eval.json").read_text())
        steps, wall = _events_span(run.path)
        records.append({
            "env": run.env,
            "agent": run.agent,
            "head": run.head,
            "head_params": run.head_params,
            "seed": run.seed,
            "config": run.config,
            "evaluations": [{"target_return": r.get("target_return"), "decode": record_decoding(r),
                             "returns": r.get("returns")} for r in payload.get("results", [])],
            "decode": run.decode,
            "return_mean": run.return_mean,
            "val": run.val,
            "steps": steps,
            "wall_time_s": None if wall is None else round(wall, 1),
            "git_commit": _git_commit(run.path),
            "path": str(run.path),
        })
    return records


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
    the evaluation episodes' seeds for every arm), with its bootstrap interval: information, not the verdict."""
    from fh_rl.compare.stats import seed_statistics

    mine, theirs = dict(zip(row["seeds"], row["return"]["values"])), dict(zip(base["seeds"], base["return"]["values"]))
    common = sorted(set(mine) & set(theirs))
    if len(common) < MIN_SEEDS_FOR_VERDICT or len(mine) != len(row["seeds"]) or len(theirs) != len(base["seeds"]):
        return ""
    d = seed_statistics([mine[s] - theirs[s] for s in common])
    return (f" (paired by seed, {len(common)} seeds: difference {d['mean']:+.1f} "
            f"[{d['ci_low']:+.1f}, {d['ci_high']:+.1f}])")


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
            figures: Path) -> str:
    """The study's section of docs/results.md, between its start and end markers."""
    lines = [f"<!-- study:{study.name}:start -->", f"## {study.title}", ""]
    lines += [f"Regenerate: `python -m fh_rl.study configs/studies/{study.name}.yaml` "
              f"({len(records)} runs; per-run records in `docs/results/{study.name}.json`).", ""]
    if study.about.strip():
        lines += [study.about.strip(), ""]
    summary = _dataset_summary(study.data.get("path"))
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
    for env, first_rows in result["environments"].items():
        from fh_rl.compare import markdown_table

        by_decoding = result.get("decodings", {}).get(env) or {first_rows[0].get("decode") if first_rows else None: first_rows}
        if len(by_decoding) > 1:
            lines += [f"Decodings: {', '.join(f'`{d}`' for d in by_decoding)} (`eval.decode`, each on the same "
                      "episode seeds; docs/decoding.md). One table and verdict per decoding.", ""]
        for decode, rows in by_decoding.items():
            lines += [markdown_table(env, rows, decode=decode), ""]
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
    # Figures on disk, not only those drawn now: a pmf figure needs checkpoints, which are not committed,
    # so a later session that cannot redraw it keeps the last one drawn.
    for fig in sorted({Path(f).name for f in result.get("figures", [])} | {p.name for p in figures.glob("*.png")}):
        lines += [f"![{fig}](results/{study.name}/{fig})", ""]
    if failed:
        lines += ["Sweeps with failed runs in the last invocation: " + "; ".join(failed) + ".", ""]
    lines += [f"<!-- study:{study.name}:end -->"]
    return "\n".join(lines)


def rewrite_page(page: Path, name: str, text: str) -> None:
    """Replace (or append) the study's marked section of docs/results.md, atomically; refresh the page's header."""
    from fh_rl.atomic import atomic_write_text

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


def report(study: StudySpec, failed: Sequence[str] = (), docs: str | Path = "docs") -> dict[str, Any]:
    """Compare the study's finished runs; rewrite ``<docs>/results/<name>{.json,/}`` and its section of
    ``<docs>/results.md``."""
    from fh_rl.atomic import atomic_write_text
    from fh_rl.compare import compare, find_runs

    docs = Path(docs)
    runs, _ = find_runs([study.root]) if Path(study.root).exists() else ([], [])
    if not runs:  # a study that has just started: its section says so (data and settings, no table)
        result: dict[str, Any] = {"environments": {}, "figures": []}
    else:
        result = compare([study.root], docs / "results" / study.name)
    records = sorted(run_records(runs), key=lambda r: (r["env"], r["agent"], r["head"],
                                                       json.dumps(r["head_params"], sort_keys=True), r["seed"]))
    atomic_write_text(docs / "results" / f"{study.name}.json",
                      json.dumps({"study": study.name, "runs": records}, indent=1, allow_nan=False) + "\n")
    rewrite_page(docs / "results.md", study.name, section(study, result, records, list(failed),
                                                           docs / "results" / study.name))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fh_rl.study", description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="a study YAML, e.g. configs/studies/pendulum.yaml")
    parser.add_argument("--report", action="store_true", help="skip data and sweeps: only compare and rewrite docs")
    parser.add_argument("--docs", default="docs", help="docs folder to write results.md and results/ into (default docs)")
    parser.add_argument("--commit", action="store_true",
                        help="after every sweep, rewrite the report and git-commit the finished runs and results")
    args = parser.parse_args(argv)
    study = load_study(args.study)
    failed: list[str] = []

    def report_and_commit(failed_so_far: list[str]) -> None:
        if not any(Path(study.root).rglob("eval.json")):
            return  # nothing finished yet
        report(study, failed_so_far, args.docs)
        commit(study, Path(args.docs))

    if not args.report:
        make_data(study)
        failed = run_sweeps(study, report_and_commit if args.commit else None)
    result = report(study, failed, args.docs)
    if args.commit:
        commit(study, Path(args.docs))
    n = sum(len(rows) for rows in result["environments"].values())
    print(f"study {study.name}: {n} groups; wrote {args.docs}/results.md, {args.docs}/results/{study.name}.json "
          f"and {args.docs}/results/{study.name}/")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))

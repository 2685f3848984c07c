"""The ``python -m benchmarks.density`` command line: expand the sweep, train (resumably), report."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm import tqdm

from benchmarks.density.data import DATASETS, NUM_BINS, get_dataset
from benchmarks.density.plots import plot
from benchmarks.density.report import aggregate, markdown_tables, truth_smoothness
from benchmarks.density.train import RunConfig, group_key, train_group
from fh_rl.heads import available_heads, head_params, head_scores
from fh_rl.infra.atomic import atomic_write_text
from fh_rl.infra.registry import unknown_name_message


def expand_configs(args: argparse.Namespace) -> list[RunConfig]:
    """One RunConfig per dataset x head setting x seed.

    Heads taking ``num_frequencies`` are swept over ``--frequencies``, heads
    taking ``regularization_gamma`` over ``--gammas``; other heads use their defaults.
    """
    settings: list[tuple[str, dict]] = []
    for head in args.heads:
        params = head_params(head)
        freqs = args.frequencies if "num_frequencies" in params else [None]
        gammas = args.gammas if "regularization_gamma" in params else [None]
        for f in freqs:
            for g in gammas:
                kw = {}
                if f is not None:
                    kw["num_frequencies"] = f
                if g is not None:
                    kw["regularization_gamma"] = g
                settings.append((head, kw))
    return [
        RunConfig(dataset=d, head=h, head_kwargs=kw, seed=s, epochs=args.epochs, samples=args.samples)
        for d in args.datasets
        for h, kw in settings
        for s in args.seeds
    ]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.density",
        description="The Fourier head paper's synthetic density benchmark for registered heads.",
    )
    p.add_argument("--heads", nargs="+", default=None, help="registered heads that score bins (default: all of them)")
    p.add_argument("--datasets", nargs="+", default=sorted(DATASETS), help="gaussian, gmm2, beta")
    p.add_argument("--frequencies", nargs="+", type=int, default=[2, 4, 8, 12, 16, 20],
                   help="num_frequencies sweep for heads that take it")  # fmt: skip
    p.add_argument("--gammas", nargs="+", type=float, default=[0.0, 1e-6],
                   help="regularization_gamma values for heads that take it")  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 42])
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--out", type=Path, required=True, help="output directory (created)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    p.add_argument("--resume", action="store_true",
                   help="reuse the runs OUT/runs.jsonl already holds for the same settings")  # fmt: skip
    p.add_argument("--replot", action="store_true",
                   help="train nothing: rebuild results.md and the figures from OUT/results.json")  # fmt: skip
    return p


def validate(args: argparse.Namespace) -> None:
    known = available_heads()
    args.heads = args.heads or available_heads("bins")
    for h in args.heads:
        if h not in known:
            raise ValueError(unknown_name_message("head", h, known))
        if head_scores(h) != "bins":
            raise ValueError(f"head {h!r} scores continuous actions; this benchmark trains on bin labels and scores pmfs, "
                             f"so it takes heads that score bins: {', '.join(available_heads('bins'))}")
    for d in args.datasets:
        get_dataset(d)
    for label, values, low in (("--frequencies", args.frequencies, 1), ("--seeds", args.seeds, 0)):
        if any(v < low for v in values):
            raise ValueError(f"{label} must be >= {low}, got {values}")
    if any(g < 0 for g in args.gammas):
        raise ValueError(f"--gammas must be >= 0, got {args.gammas}")
    for label, v in (("--epochs", args.epochs), ("--jobs", args.jobs)):
        if v < 1:
            raise ValueError(f"{label} must be >= 1, got {v}")
    if args.samples < 5:
        raise ValueError(f"--samples must be at least 5 for an 80/20 split, got {args.samples}")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} exists and is not a directory; pick a directory")


def _run_key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def load_finished_runs(path: Path) -> dict[str, dict]:
    """Runs recorded in ``runs.jsonl`` by an earlier (possibly killed) sweep, by config."""
    if not path.is_file():
        return {}
    done = {}
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        done[_run_key(r["config"])] = r
    return done



def write_reports(result: dict, out: Path) -> str:
    """results.md and the figures from a results.json dict; returns the markdown."""
    md = markdown_tables(result["aggregate"], result["truth_smoothness"], result["meta"])
    atomic_write_text(out / "results.md", md + "\n")
    plot(result["aggregate"], result["runs"], out)
    return md


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.replot:
        path = args.out / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"--replot needs {path}; run the benchmark with --out {args.out} first")
        print(write_reports(json.loads(path.read_text()), args.out))
        return 0
    validate(args)
    args.out.mkdir(parents=True, exist_ok=True)
    configs = expand_configs(args)
    start = time.perf_counter()
    runs = run_sweep(configs, args.out / "runs.jsonl", resume=args.resume, jobs=args.jobs)
    agg = aggregate(runs)
    truth = {d: truth_smoothness(d, args.samples, args.seeds[0]) for d in args.datasets}
    meta = {
        "command": "python -m benchmarks.density " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seeds": args.seeds,
        "seeds_n": len(args.seeds),
        "epochs": args.epochs,
        "samples": args.samples,
        "num_bins": NUM_BINS,
        "wall_seconds": time.perf_counter() - start,
        "torch": torch.__version__,
    }
    result = {"meta": meta, "aggregate": agg, "truth_smoothness": truth, "runs": runs}
    atomic_write_text(args.out / "results.json", json.dumps(result, indent=1))
    print(write_reports(result, args.out))
    print(f"wrote {args.out / 'results.json'}, results.md and figures in {meta['wall_seconds']:.0f} s")
    return 0


def run_sweep(configs: list[RunConfig], log_path: Path, *, resume: bool, jobs: int) -> list[dict]:
    """Every config's run record, in ``configs`` order: those ``log_path`` holds (``resume``), the rest trained.

    Runs that share a head setting train together (:func:`train_group`), one
    group per worker process; each finished run is appended to ``log_path``.
    """
    done = load_finished_runs(log_path) if resume else {}
    if not resume:
        log_path.unlink(missing_ok=True)
    todo = [c for c in configs if _run_key(asdict(c)) not in done]
    runs: list[dict] = [done[_run_key(asdict(c))] for c in configs if _run_key(asdict(c)) in done]
    groups: dict[tuple, list[RunConfig]] = {}
    for c in todo:
        groups.setdefault(group_key(c), []).append(c)
    bar = tqdm(total=len(configs), initial=len(runs), desc="density runs", unit="run")

    def finished(group_runs: list[dict]) -> None:
        runs.extend(group_runs)
        with open(log_path, "a") as f:  # one line per run, so a killed sweep can be resumed
            f.write("".join(json.dumps(r) + "\n" for r in group_runs))
        bar.update(len(group_runs))

    if jobs == 1:
        for group in groups.values():
            finished(train_group(group))
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(train_group, group) for group in groups.values()]
            for fut in as_completed(futures):
                finished(fut.result())
    bar.close()
    key = {(r["config"]["dataset"], r["label"], r["config"]["seed"]): r for r in runs}
    return [key[(c.dataset, c.label, c.seed)] for c in configs]

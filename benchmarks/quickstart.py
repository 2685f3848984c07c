"""The quickstart's time to first result: this checkout vs another, from scratch, alternating.

    python benchmarks/quickstart.py --baseline ../other-checkout [--rounds 2] [--head fourier]
    python benchmarks/quickstart.py --rounds 1 -- --set train.steps=200    # extra args go to fh_rl.train

Each run is ``python -m fh_rl.train --config <checkout>/configs/default.yaml --head H``
in a fresh empty directory (so the dataset is built, as on a fresh machine),
importing that checkout's ``fh_rl``; the directory is deleted afterwards. Rounds
alternate which checkout goes first. The table gives each run's wall time and,
where the checkout prints it, its closing ``time:`` line (setup, training,
evaluation), then each round's ratio this / baseline. Run it on an otherwise idle
machine: the runs are minutes long and one busy core changes them by more than
the differences measured.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIME_LINE = re.compile(r"^time: setup ([\d.]+) s, training ([\d.]+) s, evaluation ([\d.]+) s", re.M)


def run_quickstart(tree: Path, head: str, extra: list[str]) -> dict:
    """One from-scratch quickstart of ``tree``'s fh_rl: wall seconds and the phases it reports."""
    work = Path(tempfile.mkdtemp(prefix="fh_rl_quickstart_"))
    try:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        cmd = [sys.executable, "-m", "fh_rl.train", "--config", str(tree / "configs" / "default.yaml"), "--head", head, *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise SystemExit(f"{tree}: the quickstart exited {proc.returncode}:\n" + "\n".join(tail))
        m = TIME_LINE.search(proc.stdout + proc.stderr)
        phases = dict(zip(("setup", "training", "evaluation"), map(float, m.groups()), strict=True)) if m else {}
        return {"wall": wall, **phases}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default=None, help="another checkout (e.g. a worktree at an older commit)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (each runs every checkout once)")
    parser.add_argument("--head", default="fourier", help="the quickstart's --head (default: fourier)")
    parser.add_argument("extra", nargs="*", help="after --: more arguments for fh_rl.train")
    args = parser.parse_args()
    trees = {"this": REPO}
    if args.baseline:
        baseline = Path(args.baseline).resolve()
        if not (baseline / "fh_rl" / "train.py").is_file():
            raise SystemExit(f"--baseline {baseline}: not an fh_rl checkout (no fh_rl/train.py there)")
        trees["baseline"] = baseline
    results: list[tuple[int, str, dict]] = []
    for r in range(args.rounds):
        names = list(trees) if r % 2 == (1 if args.baseline else 0) else list(reversed(trees))
        for name in names:
            print(f"round {r + 1}: {name} ({trees[name]})", file=sys.stderr, flush=True)
            results.append((r + 1, name, run_quickstart(trees[name], args.head, args.extra)))

    print(f"\nquickstart (--head {args.head}) from scratch, {args.rounds} alternating round(s), "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'round':>5} {'checkout':<9} {'wall s':>8} {'setup s':>8} {'training s':>11} {'eval s':>7}")
    fmt = lambda d, k: f"{d[k]:.1f}" if k in d else "-"  # noqa: E731
    for r, name, d in results:
        print(f"{r:>5} {name:<9} {d['wall']:>8.1f} {fmt(d, 'setup'):>8} {fmt(d, 'training'):>11} {fmt(d, 'evaluation'):>7}")
    if args.baseline:
        by = {(r, n): d["wall"] for r, n, d in results}
        ratios = [by[r, "this"] / by[r, "baseline"] for r in range(1, args.rounds + 1)]
        print("this / baseline per round: " + ", ".join(f"{x:.2f}x" for x in ratios)
              + f" (median {statistics.median(ratios):.2f}x)")


if __name__ == "__main__":
    main()

"""Data-path benchmark: DQN-Replay loading, memory, subset cache, window sampling.

    PYTHONPATH=. python benchmarks/data.py [--capacity 50000] [--files 4.5] [--sample 50000] [--rounds 3]

Builds its own synthetic DQN-Replay run with ``DQNReplayWriter`` (Atari-like
frames: a fixed background, moving blocks, sparse noise, so gzip ratios are
realistic), then prints one table of ratios measured within this run:

* load throughput (decompressed bytes/s, every file of the run) vs ``gzip -dc``
  of the same files to /dev/null, with 1 and 2 workers (2 ``gzip`` processes),
  medians of interleaved rounds, each load into fresh memory and into memory
  just written and freed ("pre-backed"), with the machine's first-write speed to
  fresh memory as context (on a VM that backs memory lazily it can dominate),
  per wall-second and per CPU-second (the latter is robust to a busy machine);
* peak memory (RSS growth in a fresh process) while loading an M-transition
  sample, vs M * 7 KB + one fixed-size chunk per worker;
* time to open the cached subset;
* windows/s of ``WindowSampler`` at the paper's shape (batch 128, K 30).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fh_rl.datasets import DQNReplayWriter, TransitionSampler, WindowSampler, load_dqn_replay  # noqa: E402
from fh_rl.datasets.dqn_replay import replay_dir  # noqa: E402

FRAME_BYTES = 84 * 84


def atari_like_frames(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    background = np.zeros((84, 84), np.uint8)
    background[:8] = 140  # score bar
    background[8:12] = 80
    background[:, :4] = background[:, -4:] = 142  # walls
    background[20:32, 4:80] = np.repeat(np.linspace(60, 200, 76).astype(np.uint8)[None], 12, 0)  # bricks
    frames = np.repeat(background[None], n, 0)
    for i in range(n):
        for _ in range(3):  # moving objects
            y, x = rng.integers(12, 78), rng.integers(4, 76)
            frames[i, y : y + rng.integers(2, 6), x : x + rng.integers(2, 8)] = rng.integers(50, 255)
        idx = rng.integers(0, FRAME_BYTES, 40)  # sparse noise
        frames[i].reshape(-1)[idx] = rng.integers(0, 255, 40, dtype=np.uint8)
    return frames


def build_run(root: Path, capacity: int, n_files: float) -> int:
    rows = int(capacity * n_files)
    pool = atari_like_frames(2048)
    rng = np.random.default_rng(0)
    t = 0
    with DQNReplayWriter(root, "Synthetic", 1, capacity=capacity) as w:
        while t < rows:
            T = int(rng.integers(200, 3000))
            for j in range(T):
                w.add(pool[(t + j) % len(pool)], int(rng.integers(18)), float(rng.random() < 0.02), j == T - 1)
            t += T
    return t


def gzip_dc(files: list[Path], workers: int) -> tuple[float, float]:
    """``gzip -dc`` of every file to /dev/null, ``workers`` processes at a time: (wall s, CPU s)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    procs: list[subprocess.Popen] = []
    queue = list(files)
    while queue or procs:
        while queue and len(procs) < workers:
            procs.append(subprocess.Popen(["gzip", "-dc", str(queue.pop(0))], stdout=subprocess.DEVNULL))
        procs.pop(0).wait()
    wall = time.perf_counter() - start
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


PEAK_SCRIPT = """
import json, os, sys
sys.path.insert(0, {repo!r})
import numpy as np
from fh_rl.datasets.dqn_replay import load_dqn_replay  # no torch: the reader does not need it
base = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")  # current RSS
ds = load_dqn_replay({root!r}, "Synthetic", 1, max_transitions={m}, seed=0, workers={workers}, cache_dir={cache!r},
                     chunk_bytes={chunk}, progress=False)
# VmHWM: this process's peak RSS (ru_maxrss would include the parent's peak, inherited across fork)
peak = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print(json.dumps({{"growth": peak - base, "transitions": ds.num_transitions}}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--capacity", type=int, default=50_000, help="rows per file (C)")
    p.add_argument("--files", type=float, default=4.5, help="run length in files (4.5: four full + a partial)")
    p.add_argument("--sample", type=int, default=50_000, help="M, transitions in the memory/cache sample")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the whole-run loads (medians)")
    p.add_argument("--keep", default=None, help="directory to build in and keep (default: a temp dir)")
    args = p.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fh_rl_bench_"))
    data, cache = work / "data", work / "cache"
    rows = []
    try:
        d = replay_dir(data, "Synthetic", 1)
        t0 = time.perf_counter()
        if not d.is_dir():
            build_run(data, args.capacity, args.files)
        t_build = time.perf_counter() - t0
        files = sorted(p for p in d.iterdir() if p.name.endswith(".gz"))
        obs_bytes = sum(int.from_bytes(f.read_bytes()[-4:], "little") for f in files)  # gzip ISIZE: decompressed size
        comp = sum(f.stat().st_size for f in files)
        print(f"built {len(files) // 6} files (C={args.capacity}) in {t_build:.1f}s: {obs_bytes / 1e6:.0f} MB decompressed, "
              f"{comp / 1e6:.0f} MB gzip", file=sys.stderr)

        # The loader writes every frame into a new array. On a VM that backs guest memory lazily
        # from its host, the first write to fresh pages can cost more than the decompression, so each
        # load is timed twice: into fresh memory (held apart from any earlier array) and into memory
        # this process has just written and freed ("pre-backed": what a machine with its memory
        # already in use gives). The machine's first-write speed to fresh memory is shown as context.
        def timed_load(suffixes, workers, nbytes, backed):
            if backed:
                np.empty(nbytes, np.uint8).fill(1)  # freed at once: the loader's allocation reuses these pages
                held = None
            else:
                held = np.empty(nbytes, np.uint8)  # held through the load, so the loader cannot reuse its pages
                held.fill(1)
            t0, c0 = time.perf_counter(), time.process_time()
            ds = load_dqn_replay(data, "Synthetic", 1, suffixes=suffixes, workers=workers, cache=False, progress=False)
            out = time.perf_counter() - t0, time.process_time() - c0, ds.num_transitions
            del ds, held
            return out

        med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
        walls: dict[tuple, list[float]] = {}
        cpus: dict[tuple, list[float]] = {}

        def record(key, wall, cpu):
            walls.setdefault(key, []).append(wall)
            cpus.setdefault(key, []).append(cpu)

        # one file (suffix 0, its six arrays), default workers (1) vs one gzip -dc; then the whole run
        # with 1 and 2 workers vs as many gzip -dc processes: interleaved rounds, medians
        one = [f for f in files if f.name.endswith("_ckpt.0.gz")]
        one_bytes = sum(int.from_bytes(f.read_bytes()[-4:], "little") for f in one)
        for _ in range(args.rounds):
            record(("gzip", "one"), *gzip_dc(one, 1))
            for backed in (False, True):
                record(("load", "one", backed), *timed_load([0], None, one_bytes, backed)[:2])
            for workers in (1, 2):
                record(("gzip", workers), *gzip_dc(files, workers))
                t0 = time.perf_counter()
                np.empty(obs_bytes, np.uint8).fill(1)
                walls.setdefault("touch", []).append(time.perf_counter() - t0)
                for backed in (False, True):
                    wall, cpu, n_all = timed_load(None, workers, obs_bytes, backed)
                    record(("load", workers, backed), wall, cpu)
        rows.append(("first write to fresh memory (context)", f"{obs_bytes / med(walls['touch']) / 1e6:.0f} MB/s",
                     f"np.empty({obs_bytes / 1e6:.0f} MB).fill", ""))
        t_gz = med(walls["gzip", "one"])
        for backed in (False, True):
            t = med(walls["load", "one", backed])
            rows.append((f"load one file, {'pre-backed' if backed else 'fresh'} memory", f"{one_bytes / t / 1e6:.0f} MB/s",
                         f"gzip -dc: {one_bytes / t_gz / 1e6:.0f} MB/s", f"{t_gz / t:.2f}x"))
        for backed in (False, True):
            memory = "pre-backed" if backed else "fresh"
            for workers in (1, 2):
                w = f"{workers} worker{'s' * (workers > 1)}"
                t_gz, cpu_gz = med(walls["gzip", workers]), med(cpus["gzip", workers])
                t_load, cpu = med(walls["load", workers, backed]), med(cpus["load", workers, backed])
                rows.append((f"load all ({w}, {memory} memory)", f"{obs_bytes / t_load / 1e6:.0f} MB/s",
                             f"gzip -dc x{workers}: {obs_bytes / t_gz / 1e6:.0f} MB/s", f"{t_gz / t_load:.2f}x"))
                rows.append(("  per CPU-second", f"{obs_bytes / cpu / 1e6:.0f} MB/s",
                             f"gzip -dc: {obs_bytes / cpu_gz / 1e6:.0f} MB/s", f"{cpu_gz / cpu:.2f}x"))
            speedup = med(walls["load", 1, backed]) / med(walls["load", 2, backed])
            rows.append((f"load speed-up 2 vs 1 worker ({memory} memory)", f"{speedup:.2f}x",
                         f"gzip: {med(walls['gzip', 1]) / med(walls['gzip', 2]):.2f}x", ""))
        ds = load_dqn_replay(data, "Synthetic", 1, workers=2, cache=False, progress=False)  # for the samplers

        shutil.rmtree(cache, ignore_errors=True)  # a kept directory's cache from an earlier run would be opened, not built
        chunk = 4 << 20
        for workers in (1, 2):
            out = subprocess.run(
                [sys.executable, "-c", PEAK_SCRIPT.format(repo=str(REPO), root=str(data), m=args.sample, workers=workers,
                                                          cache=str(cache / f"w{workers}"), chunk=chunk)],
                capture_output=True, text=True, check=True,
            )
            res = json.loads(out.stdout.strip().splitlines()[-1])
            budget = res["transitions"] * 7 * 1024 + workers * chunk  # target: growth within 1.3x of this
            rows.append((f"peak RSS growth, M={args.sample} ({workers} worker{'s' * (workers > 1)})",
                         f"{res['growth'] / 1e6:.0f} MB", f"M*7KB+{workers} chunk: {budget / 1e6:.0f} MB",
                         f"{res['growth'] / budget:.2f}x"))

        t0 = time.perf_counter()
        cached = load_dqn_replay(data, "Synthetic", 1, max_transitions=args.sample, seed=0, workers=1,
                                 cache_dir=cache / "w1", progress=False)
        t_open = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_dqn_replay(data, "Synthetic", 1, max_transitions=args.sample, seed=0, workers=2, cache=False, progress=False)
        t_fresh = time.perf_counter() - t0
        rows.append(("open cached subset", f"{t_open * 1e3:.0f} ms", f"re-read from gzip: {t_fresh:.1f} s",
                     f"{t_fresh / t_open:.0f}x faster"))

        for name, sampler in (("WindowSampler B=128 K=30", WindowSampler(ds, 30, 128, seed=0)),
                              ("WindowSampler on cached memmap", WindowSampler(cached, 30, 128, seed=0)),
                              ("TransitionSampler B=128", TransitionSampler(ds, 128, seed=0))):
            sampler.sample()
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 2.0:
                sampler.sample()
                n += 1
            dt = time.perf_counter() - t0
            unit = "windows" if "Window" in name else "transitions"
            rows.append((name, f"{n * 128 / dt:,.0f} {unit}/s", f"{n / dt:.0f} batches/s", ""))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()[0]
    print(f"\nDQN-Replay data benchmark: {n_all:,} transitions, C={args.capacity}, {os.cpu_count()} CPUs, "
          f"load average {load:.1f} (ratios need an otherwise idle machine)")
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("measure", "fh_rl", "reference", "ratio")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()

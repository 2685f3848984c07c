"""Data-path benchmark: DQN-Replay loading, memory, subset cache, window sampling.

    PYTHONPATH=. python benchmarks/data.py [--capacity 50000] [--files 4.5] [--sample 50000]

Builds its own synthetic DQN-Replay run with ``DQNReplayWriter`` (Atari-like
frames: a fixed background, moving blocks, sparse noise, so gzip ratios are
realistic), then prints one table of ratios measured within this run:

* load throughput (decompressed bytes/s, every file of the run) vs ``gzip -dc``
  of the same files to /dev/null, with 1 and 2 workers (2 ``gzip`` processes),
  per wall-second and per CPU-second (the latter is robust to a busy machine;
  CPU/wall shows how many cores each actually got);
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

        # One file (suffix 0, its six arrays), one worker vs one gzip -dc: interleaved rounds, medians.
        one = [f for f in files if f.name.endswith("_ckpt.0.gz")]
        one_bytes = sum(int.from_bytes(f.read_bytes()[-4:], "little") for f in one)
        t_one, t_one_gz = [], []
        for _ in range(3):
            t_one_gz.append(gzip_dc(one, 1)[0])
            t0 = time.perf_counter()
            load_dqn_replay(data, "Synthetic", 1, suffixes=[0], cache=False, progress=False)  # default workers: 1
            t_one.append(time.perf_counter() - t0)
        med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
        rows.append(("load one file (default workers)", f"{one_bytes / med(t_one) / 1e6:.0f} MB/s",
                     f"gzip -dc: {one_bytes / med(t_one_gz) / 1e6:.0f} MB/s", f"{med(t_one_gz) / med(t_one):.2f}x"))

        for workers in (1, 2):
            t_gz, cpu_gz = gzip_dc(files, workers)
            t0, c0 = time.perf_counter(), time.process_time()
            ds = load_dqn_replay(data, "Synthetic", 1, workers=workers, cache=False, progress=False)
            t_load, cpu = time.perf_counter() - t0, time.process_time() - c0
            rows.append((f"load all ({workers} worker{'s' * (workers > 1)})", f"{obs_bytes / t_load / 1e6:.0f} MB/s",
                         f"gzip -dc x{workers}: {obs_bytes / t_gz / 1e6:.0f} MB/s", f"{t_gz / t_load:.2f}x"))
            rows.append((f"  per CPU-second ({workers} worker{'s' * (workers > 1)})", f"{obs_bytes / cpu / 1e6:.0f} MB/s",
                         f"gzip -dc: {obs_bytes / cpu_gz / 1e6:.0f} MB/s", f"{cpu_gz / cpu:.2f}x"))
            rows.append((f"  CPU time / wall time ({workers} worker{'s' * (workers > 1)})", f"{cpu / t_load:.2f}",
                         f"gzip -dc: {cpu_gz / t_gz:.2f}", ""))
            if workers == 1:
                t_load_1 = t_load
            else:
                rows.append(("load speed-up 2 vs 1 worker", f"{t_load_1 / t_load:.2f}x", "> 1", ""))
        n_all = ds.num_transitions

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
    widths = [max(w, len(h)) for w, h in zip(widths, header)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()

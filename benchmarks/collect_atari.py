"""Where ``collect atari``'s time goes, and what SB3's knobs buy: agent steps/s of the DQN collector.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/collect_atari.py [--game Breakout] [--steps 2500] [--rounds 1] [--settings N]

Runs :func:`fh_rl.datasets.collect.collect_atari` for ``--steps`` agent steps
per setting (learning starts after ``--learning-starts``), the settings
interleaved round by round, and prints one table: steps/s of the random
phase (no gradient steps) and of the learning phase, wall and per CPU-second,
each as a ratio to the default (``train_freq`` 4, one gradient step, one torch
thread). Ratios within one run hold on a busy machine; absolute rates do not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fh_rl.datasets.collect import collect_atari  # noqa: E402

SETTINGS = [
    ("default: train_freq 4, 1 thread", {"train_freq": 4, "threads": 1}),
    ("train_freq 8, 1 thread", {"train_freq": 8, "threads": 1}),
    ("train_freq 16, 1 thread", {"train_freq": 16, "threads": 1}),
    ("train_freq 4, 2 threads", {"train_freq": 4, "threads": 2}),  # last: slow on a busy machine
]


def measure(game: str, steps: int, learning_starts: int, out: Path, **kwargs) -> dict[str, float]:
    """Wall and CPU seconds of the random phase and of the learning phase."""
    marks: list[tuple[float, float]] = []
    count = [0]

    def on_transition(frame, action, reward, terminal):
        count[0] += 1
        if count[0] in (1, learning_starts, steps):
            marks.append((time.perf_counter(), time.process_time()))

    collect_atari(game, steps, out, learning_starts=learning_starts, progress=False, on_transition=on_transition,
                  capacity=10_000, **kwargs)
    (w0, c0), (w1, c1), (w2, c2) = marks
    return {"random_wall": (learning_starts - 1) / (w1 - w0), "random_cpu": (learning_starts - 1) / (c1 - c0),
            "learn_wall": (steps - learning_starts) / (w2 - w1), "learn_cpu": (steps - learning_starts) / (c2 - c1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--game", default="Breakout")
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--learning-starts", type=int, default=500)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--settings", type=int, default=len(SETTINGS), help="measure only the first N settings")
    args = p.parse_args()
    settings = SETTINGS[: args.settings]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i, (name, kwargs) in enumerate(settings):
                results[name].append(measure(args.game, args.steps, args.learning_starts, Path(tmp) / f"{r}-{i}", **kwargs))
                print(f"round {r + 1}: {name}: {results[name][-1]}", file=sys.stderr)
    mean = {name: {k: sum(m[k] for m in ms) / len(ms) for k in ms[0]} for name, ms in results.items()}
    base = mean[SETTINGS[0][0]]
    print(f"collect atari, {args.game}: {args.steps} agent steps, learning from step {args.learning_starts}, "
          f"{args.rounds} round(s); ratios to the default")
    print(f"{'setting':34} {'random steps/s':>15} {'learning steps/s':>17} {'ratio (wall)':>13} {'ratio (CPU)':>12}")
    for name, m in mean.items():
        print(f"{name:34} {m['random_wall']:>15.0f} {m['learn_wall']:>17.1f} "
              f"{m['learn_wall'] / base['learn_wall']:>13.2f} {m['learn_cpu'] / base['learn_cpu']:>12.2f}")


if __name__ == "__main__":
    main()

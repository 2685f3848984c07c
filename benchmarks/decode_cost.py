"""What evaluating a trained run under several decodings costs: one evaluation per decoding, timed.

Loads a run's checkpoint once and evaluates it under each decoding in turn (the
same episode seeds, the run's own evaluation settings, as ``python -m
fh_rl.evaluate --decode`` does), printing per decoding the wall time, the
environment steps taken and the time per step, and the CPU time (this process and
its rollout workers: what a shared machine's load does not inflate). Episode lengths depend on the
decoding (a policy that keeps Hopper upright longer costs more steps), so the
table gives both; with the run's training time (``manifest.json``'s
``timings``) it sizes a study before it is run.

    python benchmarks/decode_cost.py RUN_DIR [--decode argmax,sample,mean,median,mode] [--episodes N] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (the rollout workers, reaped at the
    end of each evaluation)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="run directory (checkpoints/last.pt)")
    parser.add_argument("--decode", default=None, help="comma list (default: every decoding the run's head takes)")
    parser.add_argument("--episodes", type=int, default=None, help="default: the run's eval.episodes")
    parser.add_argument("--workers", type=int, default=None, help="default: the run's eval.workers")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)

    import torch

    from fh_rl.build import load_agent
    from fh_rl.evaluate import evaluation_settings, run_evaluation
    from fh_rl.heads.decoding import available_decodings

    torch.set_num_threads(1)
    cfg, agent, state = load_agent(args.run)
    names = args.decode.split(",") if args.decode else [n for n in available_decodings(agent.head, agent.codec)
                                                         if "+" not in n]
    rows = []
    timings = {}
    manifest = Path(args.run) / "manifest.json"
    if manifest.is_file():
        timings = (json.loads(manifest.read_text()).get("timings") or [{}])[-1]
    for name in names:
        settings = evaluation_settings(cfg, state, episodes=args.episodes, workers=args.workers, decode=[name])
        start, cpu = time.perf_counter(), _cpu_seconds()
        (record, *_) = run_evaluation(agent, **settings, progress=False)
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        steps = int(sum(record["lengths"]))
        rows.append({"decode": name, "seconds": round(seconds, 2), "cpu_s": round(cpu, 2), "episodes": len(record["returns"]), "steps": steps,
                     "ms_per_step": round(1000 * seconds / max(steps, 1), 3), "return_mean": round(record["return_mean"], 1)})
    print(f"{cfg.agent.name}-{cfg.head.name} on {cfg.env.name}, {settings['workers']} workers; training "
          f"{timings.get('training_s', float('nan')):.1f} s, its evaluation {timings.get('evaluation_s', float('nan')):.1f} s")
    print(f"{'decode':>10} {'seconds':>8} {'CPU s':>8} {'episodes':>8} {'steps':>7} {'ms/step':>8} {'return':>8}")
    for r in rows:
        print(f"{r['decode']:>10} {r['seconds']:>8.2f} {r['cpu_s']:>8.2f} {r['episodes']:>8d} {r['steps']:>7d} {r['ms_per_step']:>8.3f} "
              f"{r['return_mean']:>8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"timings": timings, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

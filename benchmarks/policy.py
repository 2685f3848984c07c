"""Evaluation throughput of the Decision Transformer's policy calls (the model side of a rollout).

One :class:`fh_rl.agents.inference.AgentPolicy` call chooses the next action of
every live episode in one batched model call. This times ``act`` at the
paper's Atari shape (6 layers, 8 heads, D = 128, context 30, Nature CNN,
18 actions) with a full 30-step context, for several numbers of concurrent
episodes, interleaved over rounds; "actions/s" is episodes x calls per second,
the ceiling the model puts on an evaluation's environment steps per second.
Each case runs with the state-embedding cache (each frame stack encoded once,
the default) and without it (the whole context re-encoded every call), interleaved.

    python benchmarks/policy.py --threads 1             # CPU
    python benchmarks/policy.py --device cuda           # GPU (what benchmarks/device_check.sh runs)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fh_rl.agents import AgentConfig, build_agent  # noqa: E402
from fh_rl.agents.inference import AgentPolicy  # noqa: E402
from fh_rl.envs.codecs import DiscreteCodec  # noqa: E402


def make_policy(head: str, device: str, episodes: int, cache: bool = True) -> tuple[AgentPolicy, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    cfg = AgentConfig(name="dt", embed_dim=128, n_layer=6, n_head=8, context_len=30, max_timestep=3000)
    params = {"num_frequencies": 8} if head == "fourier" else {}
    agent = build_agent(cfg, head=head, head_params=params, state_shape=(4, 84, 84), codec=DiscreteCodec(range(18), "identity"))
    policy = AgentPolicy(agent, target_return=90.0, device=device, seed=0, cache_states=cache)
    slots = np.arange(episodes)
    frames = np.random.default_rng(0).integers(0, 256, (episodes, 84, 84), dtype=np.uint8)
    policy.begin(slots, frames)
    for _ in range(30):  # fill the context
        policy.act(slots, frames)
        policy.observe(slots, np.zeros(episodes), np.zeros(episodes, dtype=bool))
    return policy, slots, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--episodes", type=int, nargs="+", default=None, help="concurrent episodes (default: 1 8 32 on CPU, 1 8 32 128 on CUDA)")
    parser.add_argument("--heads", nargs="+", default=["linear", "fourier"])
    parser.add_argument("--calls", type=int, default=None, help="calls per round (default: 20 on CUDA, 3 on CPU)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    episodes = args.episodes or ([1, 8, 32, 128] if cuda else [1, 8, 32])
    calls = args.calls or (20 if cuda else 3)
    cases = {(h, n, c): make_policy(h, args.device, n, c) for h in args.heads for n in episodes for c in (True, False)}
    times: dict = {k: [] for k in cases}
    for _ in range(args.rounds):
        for key, (policy, slots, frames) in cases.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                policy.act(slots, frames)  # includes the result's transfer back to the host: a real sync
                policy.observe(slots, np.zeros(len(slots)), np.zeros(len(slots), dtype=bool))
            times[key].append((time.perf_counter() - t0) / calls)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, full 30-step contexts, "
          f"median of {args.rounds} interleaved rounds x {calls} calls")
    print(f"{'head':<8} {'episodes':>8} {'cache':>6} {'ms/call':>9} {'actions/s':>10} {'vs 1 episode':>13} {'vs no cache':>12}")
    rows = []
    for head in args.heads:
        for cache in (True, False):
            one = statistics.median(times[(head, episodes[0], cache)]) / episodes[0]
            for n in episodes:
                t = statistics.median(times[(head, n, cache)])
                speedup = statistics.median(times[(head, n, False)]) / t
                print(f"{head:<8} {n:>8} {'yes' if cache else 'no':>6} {t * 1e3:>9.2f} {n / t:>10.1f} "
                      f"{one * n / t:>12.2f}x {speedup:>11.2f}x")
                rows.append({"head": head, "episodes": n, "cache_states": cache, "ms_per_call": t * 1e3,
                             "actions_per_s": n / t, "device": args.device})
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""Training throughput and peak memory of the Decision Transformer, linear vs Fourier head.

    python benchmarks/train.py                          # CPU: Atari shape at batch 8, control shapes
    python benchmarks/train.py --device cuda --atari-batch 128    # the paper's Atari shape, bf16 autocast
    python benchmarks/train.py --vs-reference --threads 1          # fh_rl vs the paper's model, one process

``--vs-reference``: the Atari training step (max_timestep 3000) of the paper's
own model (``benchmarks/reference_dt.py``, fp32 eager) and of fh_rl's DT
(``--contenders``: linear/fourier heads, ``-bf16`` autocast, ``-compile``
torch.compile, and ``reference-variant`` once fh_rl has it), timed in ONE
process in interleaved rounds; the table gives each contender's median step
time and its ratio to the reference's (below 1: faster). On a shared machine
only these ratios mean anything.

Shapes:
  atari:        4x84x84 frames, Nature CNN, 18 actions, D=128, 6 layers, 8 heads, context 30 (the paper)
  pendulum:     3-d states (MLP encoder), 1 action dim x 64 bins, D=64, 2 layers, 4 heads, context 5, batch 64,
                Fourier N=16 (configs/default.yaml)
  halfcheetah:  17-d states, 6 action dims x 64 bins, D=128, 3 layers, 1 head, context 20, batch 64, Fourier N=16
Fourier heads use gamma 1e-6 (the regulariser is computed).

Each (shape, head) runs in a fresh subprocess (so peak memory is its own):
a full training step is forward + backward + AdamW step on a fixed random
WindowBatch, timed after warm-up. "head ms" times the head alone (forward +
backward at the step's (B, T, D) input, same gamma), and "head share" is that
over the step time; "vs linear" is the measured step-time difference to the
linear head at the same shape, and "head extra" the head-only estimate of
the same thing, (head ms - linear head ms) / linear step ms, which is far
less noisy on a shared machine (the Fourier head's cost over the linear head; target < 5%).
Peak memory: CUDA max_memory_allocated, or the process's peak RSS on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# --baseline: the subprocesses of the other checkout import its fh_rl (this file's timing code is shared)
IMPORT_ROOT = Path(os.environ.get("FH_RL_BENCH_ROOT", REPO))
sys.path.insert(0, str(IMPORT_ROOT))

SHAPES = {
    "atari": dict(state_shape=(4, 84, 84), discrete=18, embed_dim=128, n_layer=6, n_head=8, context_len=30, batch=128,
                  hidden_layers=0, frequencies=8),
    "pendulum": dict(state_shape=(3,), box_dims=1, bins=64, embed_dim=64, n_layer=2, n_head=4, context_len=5, batch=64,
                     hidden_layers=2, frequencies=16),
    "halfcheetah": dict(state_shape=(17,), box_dims=6, bins=64, embed_dim=128, n_layer=3, n_head=1, context_len=20,
                        batch=64, hidden_layers=0, frequencies=16),
}


def run_one(shape: str, head: str, batch: int, device: str, steps: int, warmup: int, amp: bool, threads: int | None) -> dict:
    import numpy as np
    import torch

    if threads:
        torch.set_num_threads(threads)
    from fh_rl.agents import AgentConfig, build_agent
    from fh_rl.datasets.batch import WindowBatch
    from fh_rl.envs.codecs import BoxCodec, DiscreteCodec
    from fh_rl.trainer import parameter_groups

    s = SHAPES[shape]
    torch.manual_seed(0)
    dev = torch.device(device)
    T, B = s["context_len"], batch
    if "discrete" in s:
        codec = DiscreteCodec(range(s["discrete"]), "identity")
        actions = torch.randint(0, s["discrete"], (B, T))
        states = torch.randint(0, 256, (B, T + 3, 84, 84), dtype=torch.uint8)
    else:
        A = s["box_dims"]
        codec = BoxCodec(-np.ones(A), np.ones(A), s["bins"])
        actions = torch.rand(B, T, A) * 2 - 1
        states = torch.randn(B, T, *s["state_shape"])
    cfg = AgentConfig(name="dt", embed_dim=s["embed_dim"], n_layer=s["n_layer"], n_head=s["n_head"],
                      context_len=T, max_timestep=1000, dropout=0.1, hidden_layers=s["hidden_layers"])
    head_params = {"num_frequencies": s["frequencies"], "regularization_gamma": 1e-6} if head == "fourier" else {}
    agent = build_agent(cfg, head=head, head_params=head_params, state_shape=s["state_shape"], codec=codec).to(dev)
    batch_ = WindowBatch(states, actions, torch.randn(B, T), torch.arange(T).expand(B, T).clone(),
                         torch.ones(B, T, dtype=torch.bool)).to(dev)
    try:  # the trainer's optimiser settings (a --baseline checkout may predate them)
        from fh_rl.trainer import _fused_adamw

        fused = _fused_adamw(dev)
    except ImportError:
        fused = None
    opt = torch.optim.AdamW(parameter_groups(agent, 0.1), lr=1e-4, betas=(0.9, 0.95), fused=fused)
    use_amp = amp and dev.type == "cuda"

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            out = agent.loss(batch_)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), 1.0)
        opt.step()

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        step()
    sync()
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(steps):
        step()
    sync()
    step_s = (time.perf_counter() - t0) / steps
    cpu_s = (time.thread_time() - c0) / steps

    # The head alone at the step's input shape (B, T, D).
    h = torch.randn(B, T, s["embed_dim"], device=dev, requires_grad=True)
    target = agent.action_bins(batch_.actions)

    def head_step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            out = agent.head(h)
            loss = -out.log_probs.gather(-1, target.unsqueeze(-1)).mean() + out.regularization
        loss.backward()

    for _ in range(warmup):
        head_step()
    sync()
    t0 = time.perf_counter()
    reps = steps * 5
    for _ in range(reps):
        head_step()
    sync()
    head_s = (time.perf_counter() - t0) / reps
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"shape": shape, "head": head, "batch": B, "step_ms": step_s * 1e3, "cpu_ms": cpu_s * 1e3, "samples_per_s": B / step_s,
            "head_ms": head_s * 1e3, "peak_mb": peak / 2**20, "device": str(dev), "amp": use_amp,
            "params": sum(p.numel() for p in agent.parameters())}


def _atari_batch(B: int, T: int, device, max_timestep: int):
    import torch

    from fh_rl.datasets.batch import WindowBatch

    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (B, T + 3, 84, 84), dtype=torch.uint8, generator=g)
    actions = torch.randint(0, 18, (B, T), generator=g)
    rtg = torch.rand(B, T, generator=g) * 20
    start = torch.randint(0, max_timestep - T, (B, 1), generator=g)
    window = WindowBatch(frames, actions, rtg, start + torch.arange(T), torch.ones(B, T, dtype=torch.bool))
    # the reference's loader hands it float frame stacks already divided by 255 (outside its step)
    stacked = frames.unfold(1, 4, 1).permute(0, 1, 4, 2, 3).reshape(B, T, 4 * 84 * 84).float() / 255.0
    return window.to(device), (stacked.to(device), actions.to(device), rtg.to(device), start.to(device), actions.to(device))


def contender_step(name: str, device, B: int, T: int, max_timestep: int):
    """(step function, parameter count) of one contender: forward + backward + clip + AdamW on a fixed batch."""
    import torch

    from fh_rl.agents import AgentConfig, build_agent
    from fh_rl.envs.codecs import DiscreteCodec
    from fh_rl.trainer import parameter_groups

    torch.manual_seed(0)
    window, ref_batch = _atari_batch(B, T, device, max_timestep)
    amp = "-bf16" in name
    if name.startswith("reference-model"):
        model = __import__("benchmarks.reference_dt", fromlist=["ReferenceDT"]).ReferenceDT(
            context_len=T, max_timestep=max_timestep).to(device)
        loss_fn = lambda: model.loss(*ref_batch)  # noqa: E731
    else:
        head = name.split("-")[0] if not name.startswith("reference-variant") else "linear"
        extra = {}
        if name.startswith("reference-variant"):
            extra = dict(init="reference", timestep_embedding="window_start", loss_form="cross_entropy")
        cfg = AgentConfig(name="dt", embed_dim=128, n_layer=6, n_head=8, context_len=T, max_timestep=max_timestep,
                          dropout=0.1, **extra)
        params = {"num_frequencies": 8, "regularization_gamma": 1e-6} if head == "fourier" else {}
        if name.startswith("reference-variant"):
            params = {"bias": False}
        model = build_agent(cfg, head=head, head_params=params, state_shape=(4, 84, 84),
                            codec=DiscreteCodec(range(18), "identity")).to(device)
        forward = torch.compile(model.loss) if "-compile" in name else model.loss
        loss_fn = lambda: forward(window).loss  # noqa: E731
    model.train()
    fused = None
    if not name.startswith("reference-model"):  # fh_rl's trainer settings; the reference keeps its plain AdamW
        from fh_rl.trainer import _fused_adamw

        fused = _fused_adamw(torch.device(device))
    opt = torch.optim.AdamW(parameter_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.95), fused=fused)

    def step():
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step, sum(p.numel() for p in model.parameters())


def vs_reference(args) -> None:
    import statistics

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    B = args.atari_batch or (128 if device.type == "cuda" else 8)
    T, max_t = 30, args.max_timestep
    names = args.contenders.split(",")
    if "reference-variant" in names and not _has_reference_variant():
        print("(fh_rl has no reference variant yet: reference-variant skipped)")
        names.remove("reference-variant")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    steps, params = {}, {}
    for n in names:
        steps[n], params[n] = contender_step(n, device, B, T, max_t)
        for _ in range(args.warmup):
            steps[n]()
        sync()
    times = {n: [] for n in names}
    cpu = {n: [] for n in names}
    per_round = args.steps or (20 if device.type == "cuda" else 2)
    for _ in range(args.rounds):
        for n in names:  # interleaved: every round times every contender once
            sync()
            t0, c0 = time.perf_counter(), time.thread_time()
            for _ in range(per_round):
                steps[n]()
            sync()
            times[n].append((time.perf_counter() - t0) / per_round)
            cpu[n].append((time.thread_time() - c0) / per_round)
    med = {n: statistics.median(v) for n, v in times.items()}
    med_cpu = {n: statistics.median(v) for n, v in cpu.items()}
    label = "reference-model" if "reference-model" in med else names[0]
    base, base_cpu = med[label], med_cpu[label]
    print(f"device {device}, batch {B}, context {T}, max_timestep {max_t}, torch threads {torch.get_num_threads()}, "
          f"{args.rounds} interleaved rounds x {per_round} steps, medians")
    # On CPU with one torch thread the step runs on this thread (autograd's CPU backward too), so its CPU
    # time is the step's cost with other processes' load taken out; on CUDA only wall time means anything.
    print(f"{'contender':<26} {'params':>10} {'step ms':>9} {'vs ' + label:>22} {'CPU ms':>9} {'CPU vs ' + label:>26}")
    rows = []
    for n in names:
        print(f"{n:<26} {params[n]:>10,} {med[n] * 1e3:>9.1f} {med[n] / base:>21.2f}x {med_cpu[n] * 1e3:>9.1f} "
              f"{med_cpu[n] / base_cpu:>25.2f}x")
        rows.append({"contender": n, "params": params[n], "step_ms": med[n] * 1e3, "ratio": med[n] / base,
                     "cpu_ms": med_cpu[n] * 1e3, "cpu_ratio": med_cpu[n] / base_cpu,
                     "rounds_ms": [t * 1e3 for t in times[n]], "batch": B, "device": str(device)})
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def vs_baseline(args) -> None:
    """This checkout's training step vs ``--baseline``'s, alternating fresh subprocesses, medians over rounds."""
    import statistics

    cuda = args.device.startswith("cuda")
    steps = args.steps or (50 if cuda else 10)
    trees = {"baseline": str(Path(args.baseline).resolve()), "this": str(REPO)}
    results: dict = {}
    for _ in range(args.rounds):
        for shape in args.shapes:
            batch = (args.atari_batch or (128 if cuda else 8)) if shape == "atari" else SHAPES[shape]["batch"]
            for head in ("linear", "fourier"):
                for tree_name, root in trees.items():
                    cmd = [sys.executable, __file__, "--one", f"{shape}:{head}:{batch}", "--device", args.device,
                           "--steps", str(steps), "--warmup", str(args.warmup), "--threads", str(args.threads or 1)]
                    env = {**os.environ, "PYTHONPATH": root, "FH_RL_BENCH_ROOT": root}
                    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    if out.returncode != 0:
                        sys.exit(f"benchmark {tree_name} {shape}/{head} failed:\n{out.stderr[-2000:]}")
                    row = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("ROW "))[4:])
                    results.setdefault((shape, head, tree_name), []).append(row)
    print(f"this checkout vs {trees['baseline']}: {args.rounds} alternating rounds x {steps} steps, "
          f"torch threads {args.threads or 1}, medians (CPU ms: the process's own thread, robust to load)")
    print(f"{'shape':<12} {'head':<8} {'baseline ms':>12} {'this ms':>9} {'ratio':>7} {'baseline CPU':>13} {'this CPU':>9} {'CPU ratio':>10}")
    for shape in args.shapes:
        for head in ("linear", "fourier"):
            b, t = results[(shape, head, "baseline")], results[(shape, head, "this")]
            med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
            print(f"{shape:<12} {head:<8} {med(b, 'step_ms'):>12.2f} {med(t, 'step_ms'):>9.2f} "
                  f"{med(t, 'step_ms') / med(b, 'step_ms'):>6.2f}x {med(b, 'cpu_ms'):>13.2f} {med(t, 'cpu_ms'):>9.2f} "
                  f"{med(t, 'cpu_ms') / med(b, 'cpu_ms'):>9.2f}x")


def _has_reference_variant() -> bool:
    import dataclasses

    from fh_rl.agents import AgentConfig

    return "timestep_embedding" in {f.name for f in dataclasses.fields(AgentConfig)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--atari-batch", type=int, default=None, help="Atari batch (default: 128 on CUDA, 8 on CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 50 on CUDA, 10 on CPU)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--vs-reference", action="store_true", help="fh_rl vs the paper's model, interleaved in one process")
    parser.add_argument("--contenders", default="reference-model,linear,fourier,reference-variant",
                        help="--vs-reference: comma-separated reference-model, reference-variant, linear, fourier, "
                             "each optionally with -bf16 and/or -compile (e.g. fourier-bf16-compile)")
    parser.add_argument("--rounds", type=int, default=5, help="--vs-reference: interleaved rounds")
    parser.add_argument("--max-timestep", type=int, default=3000, help="--vs-reference: size of the timestep table")
    parser.add_argument("--baseline", default=None, help="another checkout (e.g. a worktree of main): time its fh_rl "
                        "against this one, alternating subprocesses over --rounds, per shape and head")
    args = parser.parse_args()
    if args.vs_reference:
        vs_reference(args)
        return
    if args.baseline:
        vs_baseline(args)
        return
    cuda = args.device.startswith("cuda")
    steps = args.steps or (50 if cuda else 10)
    if args.one:
        shape, head, batch = args.one.split(":")
        row = run_one(shape, head, int(batch), args.device, steps, args.warmup, not args.no_amp, args.threads)
        print("ROW " + json.dumps(row))
        return
    rows = []
    for shape in args.shapes:
        batch = SHAPES[shape]["batch"]
        if shape == "atari":
            batch = args.atari_batch or (128 if cuda else 8)
        for head in ("linear", "fourier"):
            cmd = [sys.executable, __file__, "--one", f"{shape}:{head}:{batch}", "--device", args.device,
                   "--steps", str(steps), "--warmup", str(args.warmup)]
            if args.no_amp:
                cmd.append("--no-amp")
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
            if out.returncode != 0:
                sys.exit(f"benchmark {shape}/{head} failed:\n{out.stderr[-2000:]}")
            rows.append(json.loads(next(line for line in out.stdout.splitlines() if line.startswith("ROW "))[4:]))
            print(f"  done {shape}/{head}", file=sys.stderr)
    linear = {r["shape"]: r["step_ms"] for r in rows if r["head"] == "linear"}
    linear_head = {r["shape"]: r["head_ms"] for r in rows if r["head"] == "linear"}
    print(f"device: {rows[0]['device']}, bf16 autocast: {rows[0]['amp']}, timed steps: {steps}")
    print(f"{'shape':<12} {'head':<8} {'batch':>5} {'params':>9} {'step ms':>9} {'samples/s':>10} {'peak MB':>9} "
          f"{'head ms':>8} {'head share':>10} {'vs linear':>9} {'head extra':>10}")
    for r in rows:
        share = 100 * r["head_ms"] / r["step_ms"]
        delta = 100 * (r["step_ms"] / linear[r["shape"]] - 1)
        extra = 100 * (r["head_ms"] - linear_head[r["shape"]]) / linear[r["shape"]]
        print(f"{r['shape']:<12} {r['head']:<8} {r['batch']:>5} {r['params']:>9,} {r['step_ms']:>9.1f} "
              f"{r['samples_per_s']:>10.1f} {r['peak_mb']:>9.0f} {r['head_ms']:>8.2f} {share:>9.1f}% {delta:>+8.1f}% "
              f"{extra:>+9.1f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()

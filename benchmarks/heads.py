"""Forward+backward time of every registered head, with ratios to the linear head.

Shapes: the paper's Atari DT (batch 128 x context 30 rows of 128 features,
18 bins; Fourier with 8 and 32 frequencies) and a continuous-control shape
(6 action dimensions x 256 bins). Each head is timed on its own training loss
(``head.loss``: the bin's NLL, the Gaussian's density NLL, the squared error),
so the heads that score continuous actions (mse, gaussian) appear in the
Atari shape too, as a size reference, although they need Box actions.

    python benchmarks/heads.py [--repeats 50] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from fh_rl.heads import available_heads, build_head

SHAPES = {
    "atari-dt": dict(rows=128 * 30, in_features=128, num_bins=18, action_dims=1),
    "control": dict(rows=128 * 20, in_features=128, num_bins=256, action_dims=6),
}
VARIANTS = [("linear", {})] + [
    ("fourier", {"num_frequencies": 8}),
    ("fourier", {"num_frequencies": 8, "regularization_gamma": 1e-6}),
    ("fourier", {"num_frequencies": 32}),
    ("gmm", {"num_components": 4}),
    ("mse", {}),
    ("gaussian", {}),
]


def time_head(head: torch.nn.Module, h: torch.Tensor, target: torch.Tensor, repeats: int) -> float:
    def step() -> None:
        out = head(h)
        loss = head.loss(out, target).mean() + out.regularization
        loss.backward()

    for _ in range(5):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]  # median: robust to a noisy shared machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    variants = VARIANTS + [(n, {}) for n in available_heads() if n not in {v[0] for v in VARIANTS}]
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats} forward+backward passes\n")
    print(f"{'shape':<10} {'head':<56} {'ms':>8} {'x linear':>9}")
    print("-" * 86)
    for shape_name, s in SHAPES.items():
        h = torch.randn(s["rows"], s["in_features"], requires_grad=True)
        targets = {
            "bins": torch.randint(s["num_bins"], (s["rows"], s["action_dims"])),
            "continuous": torch.rand(s["rows"], s["action_dims"]) * 2 - 1,  # actions on the [-1, 1] scale
        }
        base = None
        for name, params in variants:
            head = build_head(name, s["in_features"], s["num_bins"], s["action_dims"], **params)
            t = time_head(head, h, targets[head.scores], args.repeats)
            base = t if name == "linear" else base
            label = name + ("(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "")
            print(f"{shape_name:<10} {label:<56} {t * 1e3:>8.3f} {t / base:>8.2f}x")
        print()


if __name__ == "__main__":
    main()

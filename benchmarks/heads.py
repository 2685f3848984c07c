"""Forward+backward time of every registered head, with ratios to the linear head.

Shapes: the paper's Atari DT (batch 128 x context 30 rows of 128 features,
18 bins; Fourier with 8 and 32 frequencies) and a continuous-control shape
(6 action dimensions x 256 bins). Each head is timed on its own training loss
(``head.loss``: the bin's NLL, the Gaussian's density NLL, the squared error),
so the heads that score continuous actions (mse, gaussian) appear in the
Atari shape too, as a size reference, although they need Box actions.

    python benchmarks/heads.py [--repeats 50] [--threads 2]
    python benchmarks/heads.py --chebyshev --threads 1 --repeats 41   # Chebyshev vs Fourier at equal N
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
    ("fourier", {"num_frequencies": 32, "regularization_gamma": 1e-6}),
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


def full_grid_regularization(head, coef: torch.Tensor) -> torch.Tensor:
    """The first exact form, kept as a contender: |A|^2 on all M = 2N+1 grid points, its DFT, autograd."""
    import math

    from fh_rl.heads.fourier import fourier_basis

    N = head.num_frequencies
    N1, M = N + 1, 2 * N + 1
    if getattr(head, "_full_grid", None) is None:
        x = -1.0 + 2.0 * torch.arange(M, dtype=torch.float64) / M
        k = torch.arange(N1, dtype=torch.float64)
        angle = math.pi * x[:, None] * k[None, :]
        dft = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=1) / M
        head._full_grid = (fourier_basis(x, N).float(), dft.float(), (2.0 * math.pi**2 * k**2).float())
    basis, dft, weights = head._full_grid
    re_im = coef @ basis
    r = (re_im[..., :M].square() + re_im[..., M:].square()) @ dft
    per_row = ((r[..., :N1].square() + r[..., N1:].square()) * weights).sum(-1)
    return head.regularization_gamma * 2.0 * per_row.mean()


def whole_grid_regularization(head, coef: torch.Tensor) -> torch.Tensor:
    """The plain exact form, kept as a contender: p^T Q p for p = |A|^2 on all M = 2N+1 grid points, autograd.

    The head itself uses it under ``torch.func`` transforms, where its hand-written backward cannot run.
    """
    rows = coef.reshape(-1, coef.shape[-1])
    return head.regularization_gamma * 2.0 * head._whole_grid_penalty(rows) / rows.shape[0]


def regulariser_table(repeats: int) -> None:
    """The Fourier regulariser's forward+backward vs the rest of the head, interleaved rounds, medians.

    "rest" is the head without the regulariser (coefficients, pmf, log); "regulariser" the
    ``regularization`` call on the same coefficients (the half-grid form, frequency-major, with its
    hand backward); "whole grid" the plain quadratic form p^T Q p through autograd (used up to N = 10
    before the half-grid form was laid out frequency-major); "DFT" the whole-grid DFT form that both
    replaced, through autograd. Times are this thread's CPU time (one torch thread), which a busy
    machine distorts far less than wall time.
    """
    import statistics

    from fh_rl.heads.fourier import FourierHead

    s = SHAPES["atari-dt"]
    h = torch.randn(s["rows"], s["in_features"], requires_grad=True)
    print(f"\nFourier regulariser at the Atari DT shape ({s['rows']} rows), CPU ms, median of {repeats} interleaved rounds")
    print(f"{'N':>3} {'rest ms':>8} {'regulariser ms':>15} {'/ rest':>7} {'whole grid ms':>14} {'/ rest':>7}"
          f" {'DFT ms':>7} {'/ rest':>7}")
    for n in (2, 8, 16, 32):
        head = FourierHead(s["in_features"], s["num_bins"], s["action_dims"], num_frequencies=n, regularization_gamma=1e-6)
        coef = head.coefficients(h).detach().requires_grad_(True)
        for other in (whole_grid_regularization, full_grid_regularization):
            torch.testing.assert_close(head.regularization(coef), other(head, coef), rtol=1e-4, atol=0)

        def rest(head=head):
            torch.log(head._pmf_from_coefficients(head.coefficients(h)) + head.eps).mean().backward()

        def reg(head=head, coef=coef):
            head.regularization(coef).backward()

        def whole(head=head, coef=coef):
            whole_grid_regularization(head, coef).backward()

        def dft(head=head, coef=coef):
            full_grid_regularization(head, coef).backward()

        fns = {"rest": rest, "reg": reg, "whole": whole, "dft": dft}
        times = {k: [] for k in fns}
        for f in fns.values():
            f()
        for _ in range(repeats):
            for k, f in fns.items():
                t0 = time.thread_time()
                f()
                times[k].append(time.thread_time() - t0)
        m = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"{n:>3} {m['rest']:>8.2f} {m['reg']:>15.2f} {m['reg'] / m['rest']:>6.2f}x"
              f" {m['whole']:>14.2f} {m['whole'] / m['rest']:>6.2f}x {m['dft']:>7.2f} {m['dft'] / m['rest']:>6.2f}x")


CHEBYSHEV_SHAPES = {
    "atari-dt": SHAPES["atari-dt"],
    "pendulum": dict(rows=64 * 5, in_features=64, num_bins=64 + 2 * 16, action_dims=1),  # configs/default.yaml
}


def chebyshev_table(repeats: int) -> None:
    """Chebyshev head (centre and integral bin masses) vs the Fourier head at the same N, forward+backward of
    NLL + regularisation, interleaved rounds, medians of this thread's CPU time (one torch thread)."""
    import statistics

    print(f"\nChebyshev vs Fourier, forward+backward (NLL + regularisation), CPU ms, median of {repeats} interleaved rounds")
    print(f"{'shape':<9} {'N':>3} {'gamma':>6} {'fourier':>8} {'cheb centre':>12} {'/ fourier':>9} {'cheb integral':>14} {'/ fourier':>9}")
    for shape_name, s in CHEBYSHEV_SHAPES.items():
        torch.manual_seed(0)
        h = torch.randn(s["rows"], s["in_features"], requires_grad=True)
        target = torch.randint(s["num_bins"], (s["rows"], s["action_dims"]))
        for n in (8, 16, 32):
            for gamma in (0.0, 1e-6):
                heads = {
                    "fourier": build_head("fourier", s["in_features"], s["num_bins"], s["action_dims"],
                                          num_frequencies=n, regularization_gamma=gamma),
                    "centre": build_head("chebyshev", s["in_features"], s["num_bins"], s["action_dims"],
                                         num_frequencies=n, regularization_gamma=gamma),
                    "integral": build_head("chebyshev", s["in_features"], s["num_bins"], s["action_dims"],
                                           num_frequencies=n, regularization_gamma=gamma, bin_mass="integral"),
                }  # fmt: skip

                def step(head, h=h, target=target) -> None:
                    out = head(h)
                    (head.loss(out, target).mean() + out.regularization).backward()

                times = {k: [] for k in heads}
                for head in heads.values():
                    step(head)
                for _ in range(repeats):
                    for k, head in heads.items():
                        t0 = time.thread_time()
                        step(head)
                        times[k].append(time.thread_time() - t0)
                m = {k: statistics.median(v) * 1e3 for k, v in times.items()}
                print(f"{shape_name:<9} {n:>3} {gamma:>6g} {m['fourier']:>8.3f} {m['centre']:>12.3f} "
                      f"{m['centre'] / m['fourier']:>8.2f}x {m['integral']:>14.3f} {m['integral'] / m['fourier']:>8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--regulariser", action="store_true", help="only the Fourier regulariser vs the rest of the head")
    parser.add_argument("--chebyshev", action="store_true", help="only the Chebyshev head vs the Fourier head at equal N")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.regulariser:
        regulariser_table(args.repeats)
        return
    if args.chebyshev:
        chebyshev_table(args.repeats)
        return
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
        timed = {}
        for name, params in variants:
            head = build_head(name, s["in_features"], s["num_bins"], s["action_dims"], **params)
            t = time_head(head, h, targets[head.scores], args.repeats)
            base = t if name == "linear" else base
            label = name + ("(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else "")
            print(f"{shape_name:<10} {label:<56} {t * 1e3:>8.3f} {t / base:>8.2f}x")
            timed[label] = t
        for n in (8, 32):  # the regulariser's cost over the rest of the head (target at N=32: <= 0.5x)
            plain, reg = timed.get(f"fourier(num_frequencies={n})"), timed.get(f"fourier(num_frequencies={n}, regularization_gamma=1e-06)")
            if plain and reg:
                print(f"{shape_name:<10} {f'  Fourier N={n}: regulariser / rest of the head':<56} {'':>8} {(reg - plain) / plain:>8.2f}x")
        print()


if __name__ == "__main__":
    main()

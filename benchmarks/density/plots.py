"""The benchmark's figures: KL and smoothness against the number of frequencies, and example pmfs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.density.data import NUM_BINS, bin_centers
from benchmarks.density.report import label_order
from benchmarks.density.train import NUM_EXAMPLE_POINTS
from fh_rl.infra.plots import pyplot, save_figure


def plot(agg: dict, runs: list[dict], out: Path) -> list[Path]:
    """Both figures into ``out``; returns their paths."""
    return [plot_frequency_sweep(agg, out / "kl_smoothness_vs_frequencies.png"),
            plot_example_pmfs(agg, runs, out / "pmfs.png")]


def plot_frequency_sweep(agg: dict, path: Path) -> Path:
    """KL (log scale) and smoothness against N, one column per dataset; heads without frequencies as dashed lines."""
    plt = pyplot()
    datasets = list(agg)
    baselines = sorted(
        {lab for rows in agg.values() for lab, e in rows.items() if "num_frequencies" not in e["head_kwargs"]}
    )
    baseline_color = {lab: ("k", "C3", "C4", "C5", "C6", "C7")[i % 6] for i, lab in enumerate(baselines)}
    fig, axes = plt.subplots(2, len(datasets), figsize=(4.2 * len(datasets), 6.5), squeeze=False)
    for j, dataset in enumerate(datasets):
        rows = agg[dataset]
        for i, metric in enumerate(("kl", "smoothness")):
            ax = axes[i, j]
            curves: dict[tuple[str, float], list[tuple[int, float, float]]] = {}
            for label, e in rows.items():
                kw = e["head_kwargs"]
                if "num_frequencies" in kw:
                    key = (e["head"], kw.get("regularization_gamma", 0.0))
                    curves.setdefault(key, []).append((kw["num_frequencies"], e[metric]["mean"], e[metric]["std"]))
                else:
                    ax.axhline(e[metric]["mean"], ls="--", lw=1, label=label, color=baseline_color[label])
            for (head, gamma), pts in sorted(curves.items()):
                pts.sort()
                f, m, s = (np.array(v) for v in zip(*pts, strict=True))
                ax.errorbar(f, m, yerr=s, marker="o", capsize=3, label=f"{head} gamma={gamma:g}")
            ax.set_xlabel("frequencies N")
            ax.set_ylabel({"kl": "KL(true || pred)", "smoothness": "smoothness (lower smoother)"}[metric])
            ax.set_title(dataset)
            if metric == "kl":
                ax.set_yscale("log")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return save_figure(fig, path, dpi=110)


def plot_example_pmfs(agg: dict, runs: list[dict], path: Path) -> Path:
    """Predicted pmfs of a few test points against the truth: first seed, N = 12 where swept (else the smallest N)."""
    plt = pyplot()
    datasets = list(agg)
    first_seed = min(r["config"]["seed"] for r in runs)
    centers = bin_centers()
    fig, axes = plt.subplots(len(datasets), NUM_EXAMPLE_POINTS, figsize=(3.6 * NUM_EXAMPLE_POINTS, 2.8 * len(datasets)),
                             squeeze=False)  # fmt: skip
    for j, dataset in enumerate(datasets):
        chosen = [r for r in runs if r["config"]["dataset"] == dataset and r["config"]["seed"] == first_seed]
        freqs = {r["config"]["head_kwargs"].get("num_frequencies") for r in chosen} - {None}
        keep_f = 12 if 12 in freqs else (min(freqs) if freqs else None)
        chosen = [r for r in chosen if r["config"]["head_kwargs"].get("num_frequencies", keep_f) == keep_f]
        chosen.sort(key=lambda r: label_order(r["label"]))
        for p in range(NUM_EXAMPLE_POINTS):
            ax = axes[j, p]
            if not chosen or p >= len(chosen[0]["examples"]["target"]):
                ax.axis("off")
                continue
            ex = chosen[0]["examples"]
            ax.bar(centers, ex["target"][p], width=2 / NUM_BINS, color="0.8", label="truth")
            for r in chosen:
                ax.plot(centers, r["examples"]["predicted"][p], lw=1.2, label=r["label"])
            x, y = ex["inputs"][p]
            ax.set_title(f"{dataset}: x={x:+.2f}, y={y:+.2f}", fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return save_figure(fig, path, dpi=110)

"""Aggregating runs over seeds and the markdown tables (with the paper's published KL)."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.density.data import NUM_BINS, make_splits
from fh_rl.infra.metrics import smoothness

# The paper's Table (KL, mean over 4 seeds, 50 bins); keys: (dataset, head label).
PUBLISHED_KL = {
    ("gaussian", "linear"): 0.170, ("gaussian", "gmm"): 0.026, ("gaussian", "fourier(N=12)"): 0.116,
    ("gmm2", "linear"): 0.238, ("gmm2", "gmm"): 0.030, ("gmm2", "fourier(N=12)"): 0.146,
    ("beta", "linear"): 0.234, ("beta", "gmm"): 0.407, ("beta", "fourier(N=12)"): 0.191,
}  # fmt: skip



def aggregate(runs: list[dict]) -> dict[str, dict[str, dict]]:
    """{dataset: {label: {metric: {"mean", "std", "n"}}}} (std over seeds, ddof 0)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["config"]["dataset"], r["label"]), []).append(r)
    out: dict[str, dict[str, dict]] = {}
    for (dataset, label), rs in groups.items():
        entry = {}
        for metric in ("kl", "mse", "smoothness"):
            vals = np.array([r["metrics"][metric] for r in rs])
            entry[metric] = {"mean": float(vals.mean()), "std": float(vals.std()), "n": int(vals.size)}
        entry["head"] = rs[0]["config"]["head"]
        entry["head_kwargs"] = rs[0]["config"]["head_kwargs"]
        entry["train_seconds"] = float(np.mean([r["train_seconds"] for r in rs]))
        out.setdefault(dataset, {})[label] = entry
    return out


def truth_smoothness(dataset: str, samples: int, seed: int) -> float:
    """Mean smoothness of the true test pmfs (a reference row in the tables)."""
    _, test = make_splits(dataset, samples, seed)
    return float(smoothness(torch.from_numpy(test.target)).mean())


def published_kl(dataset: str, label: str) -> float | None:
    """The paper's mean KL for this dataset and head label, if published.

    The issue quotes one Fourier value per dataset, at N = 12, so it is shown
    next to every regularisation setting of N = 12.
    """
    head, _, rest = label.partition("(")
    if rest:
        kept = [t for t in rest.rstrip(")").split(", ") if not t.startswith("gamma=")]
        label = f"{head}({', '.join(kept)})" if kept else head
    return PUBLISHED_KL.get((dataset, label))


def markdown_tables(agg: dict, truth: dict[str, float], meta: dict) -> str:
    lines = [
        "# Density benchmark results",
        "",
        f"{meta['seeds_n']} seeds ({', '.join(map(str, meta['seeds']))}), {meta['epochs']} epochs, "
        f"{meta['samples']} samples (80/20), {NUM_BINS} bins. Mean +- std over seeds; "
        "published: the paper's mean KL.",
        "",
    ]
    for dataset, rows in agg.items():
        lines += [
            f"### {dataset}",
            "",
            "| head | KL | published KL | MSE | smoothness | s/run |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for label in sorted(rows, key=label_order):
            e = rows[label]
            pub = published_kl(dataset, label)
            lines.append(
                f"| {label} | {e['kl']['mean']:.3f} +- {e['kl']['std']:.3f} | "
                f"{'' if pub is None else f'{pub:.3f}'} | "
                f"{e['mse']['mean']:.4f} +- {e['mse']['std']:.4f} | "
                f"{e['smoothness']['mean']:.3f} +- {e['smoothness']['std']:.3f} | {e['train_seconds']:.0f} |"
            )
        lines += [f"| truth | 0 | | 0 | {truth[dataset]:.3f} | |", ""]
    return "\n".join(lines)


def label_order(label: str):
    head = label.split("(")[0]
    rank = {"linear": 0, "gmm": 1, "fourier": 2}.get(head, 3)
    nums = [float(t.split("=")[1]) for t in label[len(head) + 1 : -1].split(", ") if "=" in t]
    return (rank, head, *nums, 0, 0)[:5]

"""The Fourier head paper's synthetic density benchmark (Gillman et al. 2024, section 4.1).

Every registered head that scores bins learns the conditional distribution of a scalar z given
two inputs (x, y), and is scored against the known true pmf::

    python -m fh_rl.benchmarks.density --out runs/density --jobs 2
    python -m fh_rl.benchmarks.density --heads linear fourier --frequencies 12 \
        --seeds 1 --epochs 20 --out /tmp/density

Datasets (``--samples`` draws, 80/20 train/test split, K = 50 equal bins of
[-1, 1]; 0.01 is a variance, i.e. a standard deviation of 0.1):

- ``gaussian``: x ~ U(-0.8, 0.8), y ~ N(x, 0.01), z ~ N(y, 0.01).
- ``gmm2``: x, y ~ U(-0.8, 0.8), z ~ N(x, 0.01) or N(y, 0.01) with probability 1/2 each.
- ``beta``: x ~ U(-0.8, 0.8), y ~ N(x, 0.01), z = s * Beta(100|x|, 100|y|), s = +-1
  with probability 1/2 each.

Target pmf: the true conditional density of z given the exact (continuous)
x and y, *integrated over each of the K bins* (differences of the exact CDF,
scipy.stats) and normalised over the K bins, i.e. the law of z conditioned on
z in [-1, 1]. Samples of z that fall outside [-1, 1] (only the Gaussian
datasets have such tails) are redrawn, so the labels follow exactly that
truncated law. The model sees x and y quantised to bin indices, mapped to
their bin centres in [-1, 1], so the best achievable KL is slightly above 0.

Model: MLP 2 -> 64 -> 32 with ReLU, then the head (1 action dimension, K
bins); loss cross-entropy of the head's log-probs plus the head's
regularisation; Adam lr 1e-3, batch 32; ``--epochs`` passes over the
training split. The seed fixes the data draw, the initialisation and the
batch order.

Metrics on the test split (true pmf p, predicted pmf q; the exact pmf, i.e.
``head.pmf(h)`` where a head has one, else ``exp(log_probs)``):

- ``kl``: mean over test points of KL(p || q) = sum_k p_k log(p_k / q_k) (nats).
- ``mse``: mean of (E_q[c] - E_p[c])^2, c the bin centres: the squared error of
  the expected bin value against the true expected bin value.
- ``smoothness``: mean of :func:`fh_rl.metrics.smoothness` of q (lower is smoother).

Outputs under ``--out``: ``results.json`` (every run and the aggregates),
``results.md`` (one table per dataset, mean +- std over seeds),
``kl_smoothness_vs_frequencies.png`` and ``pmfs.png``; ``runs.jsonl`` gets one
line per finished run as the sweep goes, and ``--resume`` reuses them.

Runs that share a head setting (all datasets and seeds) train together as one
stacked model (:func:`train_group`), one such group per worker process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from scipy import stats
from torch import nn
from tqdm import tqdm

from fh_rl.atomic import atomic_write_text, save_figure
from fh_rl.cli import run_cli
from fh_rl.heads import available_heads, build_head, head_params, head_scores
from fh_rl.metrics import smoothness
from fh_rl.registry import unknown_name_message

NUM_BINS = 50
STD = 0.1  # the datasets' variance 0.01
BETA_SCALE = 100.0
NUM_EXAMPLE_POINTS = 4  # test points whose pmfs are stored for the figure

# The paper's Table (KL, mean over 4 seeds, 50 bins); keys: (dataset, head label).
PUBLISHED_KL = {
    ("gaussian", "linear"): 0.170, ("gaussian", "gmm"): 0.026, ("gaussian", "fourier(N=12)"): 0.116,
    ("gmm2", "linear"): 0.238, ("gmm2", "gmm"): 0.030, ("gmm2", "fourier(N=12)"): 0.146,
    ("beta", "linear"): 0.234, ("beta", "gmm"): 0.407, ("beta", "fourier(N=12)"): 0.191,
}  # fmt: skip


# ----------------------------------------------------------------------------- bins


def bin_edges(num_bins: int = NUM_BINS) -> np.ndarray:
    """(K+1,) edges of K equal bins of [-1, 1]."""
    return np.linspace(-1.0, 1.0, num_bins + 1)


def bin_centers(num_bins: int = NUM_BINS) -> np.ndarray:
    """(K,) centres, the same values as ``Head.bin_centers``."""
    return -1.0 + (2.0 * np.arange(num_bins) + 1.0) / num_bins


def quantize(values: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Bin index of each value; values outside [-1, 1] go to the edge bins."""
    idx = np.floor((np.asarray(values, dtype=np.float64) + 1.0) / 2.0 * num_bins).astype(np.int64)
    return np.clip(idx, 0, num_bins - 1)


def _cdf_masses(cdf: Callable[[np.ndarray], np.ndarray], num_bins: int) -> np.ndarray:
    """Mass of each bin, ``(B, K)``, from a vectorised CDF evaluated at the edges ``(1, K+1)``."""
    c = cdf(bin_edges(num_bins)[None, :])  # (B, K+1)
    return np.clip(np.diff(c, axis=-1), 0.0, None)


def _normalise(masses: np.ndarray) -> np.ndarray:
    total = masses.sum(axis=-1, keepdims=True)
    assert np.all(total > 0), "a target pmf has no mass inside [-1, 1]"
    return masses / total


# ----------------------------------------------------------------------------- datasets


class DensityDataset:
    """A conditional law of z given (x, y): draw samples and give the exact target pmf."""

    name: str = ""

    def sample_inputs(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def sample_z(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Unrestricted draw of z given (x, y), shape (n,)."""
        raise NotImplementedError

    def target_pmf(self, x: np.ndarray, y: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
        """(n, K) bin masses of the law of z given (x, y), normalised over [-1, 1]."""
        raise NotImplementedError

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, z), each (n,), with z drawn from its law truncated to [-1, 1] (by redrawing)."""
        x, y = self.sample_inputs(n, rng)
        return x, y, self.sample_z_truncated(x, y, rng)

    def sample_z_truncated(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """z given (x, y) conditioned on z in [-1, 1]: out-of-range draws are redrawn."""
        z = self.sample_z(x, y, rng)
        outside = np.flatnonzero(np.abs(z) > 1.0)
        while outside.size:
            z[outside] = self.sample_z(x[outside], y[outside], rng)
            outside = outside[np.abs(z[outside]) > 1.0]
        return z


class GaussianDataset(DensityDataset):
    name = "gaussian"

    def sample_inputs(self, n, rng):
        x = rng.uniform(-0.8, 0.8, n)
        return x, rng.normal(x, STD)

    def sample_z(self, x, y, rng):
        return rng.normal(y, STD)

    def target_pmf(self, x, y, num_bins=NUM_BINS):
        y = np.asarray(y, dtype=np.float64)[:, None]
        return _normalise(_cdf_masses(lambda e: stats.norm.cdf(e, loc=y, scale=STD), num_bins))


class GMM2Dataset(DensityDataset):
    name = "gmm2"

    def sample_inputs(self, n, rng):
        return rng.uniform(-0.8, 0.8, n), rng.uniform(-0.8, 0.8, n)

    def sample_z(self, x, y, rng):
        mean = np.where(rng.random(x.shape[0]) < 0.5, x, y)
        return rng.normal(mean, STD)

    def target_pmf(self, x, y, num_bins=NUM_BINS):
        x = np.asarray(x, dtype=np.float64)[:, None]
        y = np.asarray(y, dtype=np.float64)[:, None]
        masses = _cdf_masses(
            lambda e: 0.5 * stats.norm.cdf(e, loc=x, scale=STD) + 0.5 * stats.norm.cdf(e, loc=y, scale=STD),
            num_bins,
        )
        return _normalise(masses)


class BetaDataset(DensityDataset):
    """z = s * Beta(a, b), a = 100|x|, b = 100|y|; a, b are floored at 1e-6 (x = 0 has probability 0)."""

    name = "beta"

    @staticmethod
    def _shapes(x, y):
        a = np.maximum(BETA_SCALE * np.abs(np.asarray(x, dtype=np.float64)), 1e-6)
        b = np.maximum(BETA_SCALE * np.abs(np.asarray(y, dtype=np.float64)), 1e-6)
        return a, b

    def sample_inputs(self, n, rng):
        x = rng.uniform(-0.8, 0.8, n)
        return x, rng.normal(x, STD)

    def sample_z(self, x, y, rng):
        a, b = self._shapes(x, y)
        sign = np.where(rng.random(x.shape[0]) < 0.5, -1.0, 1.0)
        return sign * rng.beta(a, b)

    def target_pmf(self, x, y, num_bins=NUM_BINS):
        a, b = self._shapes(x, y)
        a, b = a[:, None], b[:, None]

        def cdf(e):  # law of s * B: P(z <= e) = 1/2 P(B >= -e) + 1/2 P(B <= e)
            return 0.5 * stats.beta.sf(np.clip(-e, 0.0, 1.0), a, b) * (e < 0) + (e >= 0) * (
                0.5 + 0.5 * stats.beta.cdf(np.clip(e, 0.0, 1.0), a, b)
            )

        return _normalise(_cdf_masses(cdf, num_bins))


DATASETS: dict[str, DensityDataset] = {d.name: d for d in (GaussianDataset(), GMM2Dataset(), BetaDataset())}


def get_dataset(name: str) -> DensityDataset:
    if name not in DATASETS:
        raise ValueError(unknown_name_message("dataset", name, sorted(DATASETS)))
    return DATASETS[name]


@dataclass
class Split:
    """Model inputs (bin centres of the quantised x, y), labels (bin of z) and true pmfs."""

    inputs: np.ndarray  # (B, 2) float32
    labels: np.ndarray  # (B,) int64
    target: np.ndarray  # (B, K) float64


def make_splits(dataset: str, samples: int, seed: int, num_bins: int = NUM_BINS) -> tuple[Split, Split]:
    """Draw ``samples`` points and split them 80/20 into train and test."""
    if samples < 5:
        raise ValueError(f"--samples must be at least 5 for an 80/20 split, got {samples}")
    ds = get_dataset(dataset)
    rng = np.random.default_rng(seed)
    x, y, z = ds.sample(samples, rng)
    centers = bin_centers(num_bins)
    inputs = np.stack([centers[quantize(x, num_bins)], centers[quantize(y, num_bins)]], axis=-1)
    labels = quantize(z, num_bins)
    target = ds.target_pmf(x, y, num_bins)
    n_train = int(round(0.8 * samples))
    make = lambda s: Split(inputs[s].astype(np.float32), labels[s], target[s])  # noqa: E731
    return make(slice(0, n_train)), make(slice(n_train, None))


# ----------------------------------------------------------------------------- metrics


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) per row of ``(..., K)`` pmfs, in nats; terms with p_k = 0 count 0.

    q is floored at the smallest positive float64 so that a q_k = 0 under p_k > 0
    gives a large finite value instead of inf.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.maximum(np.asarray(q, dtype=np.float64), np.finfo(np.float64).tiny)
    safe_p = np.where(p > 0, p, 1.0)
    return np.where(p > 0, p * (np.log(safe_p) - np.log(q)), 0.0).sum(axis=-1)


def expected_value(pmf: np.ndarray) -> np.ndarray:
    """E[c] under pmfs ``(..., K)`` with c the bin centres."""
    return np.asarray(pmf, dtype=np.float64) @ bin_centers(pmf.shape[-1])


def score(target: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """The benchmark's three metrics for true pmfs and predicted pmfs ``(B, K)``."""
    return {
        "kl": float(kl_divergence(target, predicted).mean()),
        "mse": float(np.mean((expected_value(predicted) - expected_value(target)) ** 2)),
        "smoothness": float(smoothness(torch.from_numpy(np.asarray(predicted, dtype=np.float64))).mean()),
    }


# ----------------------------------------------------------------------------- model


class DensityModel(nn.Module):
    """MLP 2 -> 64 -> 32 (ReLU) followed by a head with one action dimension."""

    def __init__(self, head: str, num_bins: int = NUM_BINS, **head_kwargs) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.head = build_head(head, in_features=32, num_bins=num_bins, action_dims=1, **head_kwargs)

    def forward(self, inputs: torch.Tensor):
        return self.head(self.body(inputs))  # log_probs (B, 1, K), regularisation ()

    @torch.no_grad()
    def pmf(self, inputs: torch.Tensor) -> torch.Tensor:
        """Exact predicted pmf (B, K)."""
        h = self.body(inputs)
        if hasattr(self.head, "pmf"):
            return self.head.pmf(h)[:, 0]  # (B, 1, K) -> (B, K)
        return self.head(h).log_probs[:, 0].exp()


@dataclass
class RunConfig:
    """One training run of the benchmark."""

    dataset: str
    """Dataset name (see DATASETS)."""
    head: str
    """Registered head name."""
    head_kwargs: dict = field(default_factory=dict)
    """Extra keyword arguments of the head (num_frequencies, regularization_gamma, ...)."""
    seed: int = 1
    """Seeds the data draw, the initialisation and the batch order."""
    epochs: int = 500
    """Passes over the training split."""
    samples: int = 5000
    """Points drawn before the 80/20 split."""
    batch_size: int = 32
    """Minibatch size."""
    lr: float = 1e-3
    """Adam learning rate."""

    @property
    def label(self) -> str:
        return head_label(self.head, self.head_kwargs)


def head_label(head: str, kwargs: dict) -> str:
    """``linear``, ``gmm``, ``fourier(N=12)``, ``fourier(N=12, gamma=1e-06)``."""
    parts = []
    if "num_frequencies" in kwargs:
        parts.append(f"N={kwargs['num_frequencies']}")
    if kwargs.get("regularization_gamma", 0):
        parts.append(f"gamma={kwargs['regularization_gamma']:g}")
    return f"{head}({', '.join(parts)})" if parts else head


def train_and_score(cfg: RunConfig) -> dict:
    """Train one model and return its config, metrics, timing and a few example pmfs."""
    return train_group([cfg])[0]


def _group_key(cfg: RunConfig) -> tuple:
    return (cfg.head, json.dumps(cfg.head_kwargs, sort_keys=True), cfg.epochs, cfg.samples, cfg.batch_size, cfg.lr)


def train_group(cfgs: Sequence[RunConfig]) -> list[dict]:
    """Train M runs that share head, head settings and optimisation settings, as one stacked model.

    The M models (one per dataset and seed) keep separate parameters, data and
    batch orders; ``torch.func.vmap`` runs them in one call per step. Adam is
    elementwise, so one Adam over the stacked parameters makes exactly the
    updates of M separate Adams; the loss is the sum of the M per-model losses,
    whose gradients do not mix. Each model is initialised as a lone run with
    ``torch.manual_seed(seed)`` would be.
    """
    if not cfgs:
        return []
    keys = {_group_key(c) for c in cfgs}
    if len(keys) != 1:
        raise ValueError(f"train_group needs runs with one head setting and one optimisation setting, got {keys}")
    torch.set_num_threads(1)
    first = cfgs[0]
    M = len(cfgs)
    splits = [make_splits(c.dataset, c.samples, c.seed) for c in cfgs]
    models = []
    for c in cfgs:
        torch.manual_seed(c.seed)
        models.append(DensityModel(c.head, **c.head_kwargs))
    params, buffers = torch.func.stack_module_state(models)  # each param: (M, ...)
    base = models[0]

    def loss_one(p, b, x, target):
        log_probs, reg = torch.func.functional_call(base, (p, b), (x,))
        return nn.functional.nll_loss(log_probs[:, 0], target) + reg

    batched_loss = torch.func.vmap(loss_one, in_dims=(0, 0, 0, 0))
    opt = torch.optim.Adam(params.values(), lr=first.lr, foreach=True)
    inputs = torch.from_numpy(np.stack([tr.inputs for tr, _ in splits]))  # (M, B_train, 2)
    labels = torch.from_numpy(np.stack([tr.labels for tr, _ in splits]))  # (M, B_train)
    n = inputs.shape[1]
    rows = torch.arange(M)[:, None]  # (M, 1)
    gens = [torch.Generator().manual_seed(c.seed) for c in cfgs]
    start = time.perf_counter()
    for _ in range(first.epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in gens])  # (M, B_train)
        for i in range(0, n, first.batch_size):
            idx = order[:, i : i + first.batch_size]  # (M, B)
            loss = batched_loss(params, buffers, inputs[rows, idx], labels[rows, idx]).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    train_seconds = time.perf_counter() - start
    results = []
    with torch.no_grad():
        for m, (c, (_, test)) in enumerate(zip(cfgs, splits)):
            model = models[m]
            for name, t in model.named_parameters():
                t.copy_(params[name][m])
            model.eval()
            predicted = model.pmf(torch.from_numpy(test.inputs)).double().numpy()  # (B_test, K)
            results.append(
                {
                    "config": asdict(c),
                    "label": c.label,
                    "metrics": score(test.target, predicted),
                    "train_seconds": train_seconds,
                    "group_size": M,
                    "examples": {
                        "inputs": test.inputs[:NUM_EXAMPLE_POINTS].tolist(),
                        "target": test.target[:NUM_EXAMPLE_POINTS].tolist(),
                        "predicted": predicted[:NUM_EXAMPLE_POINTS].tolist(),
                    },
                }
            )
    return results


# ----------------------------------------------------------------------------- sweep


def expand_configs(args: argparse.Namespace) -> list[RunConfig]:
    """One RunConfig per dataset x head setting x seed.

    Heads taking ``num_frequencies`` are swept over ``--frequencies``, heads
    taking ``regularization_gamma`` over ``--gammas``; other heads use their defaults.
    """
    settings: list[tuple[str, dict]] = []
    for head in args.heads:
        params = head_params(head)
        freqs = args.frequencies if "num_frequencies" in params else [None]
        gammas = args.gammas if "regularization_gamma" in params else [None]
        for f in freqs:
            for g in gammas:
                kw = {}
                if f is not None:
                    kw["num_frequencies"] = f
                if g is not None:
                    kw["regularization_gamma"] = g
                settings.append((head, kw))
    return [
        RunConfig(dataset=d, head=h, head_kwargs=kw, seed=s, epochs=args.epochs, samples=args.samples)
        for d in args.datasets
        for h, kw in settings
        for s in args.seeds
    ]


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
        for label in sorted(rows, key=_label_order):
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


def _label_order(label: str):
    head = label.split("(")[0]
    rank = {"linear": 0, "gmm": 1, "fourier": 2}.get(head, 3)
    nums = [float(t.split("=")[1]) for t in label[len(head) + 1 : -1].split(", ") if "=" in t]
    return (rank, head, *nums, 0, 0)[:5]


def plot(agg: dict, runs: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(agg)
    paths = []
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
                f, m, s = (np.array(v) for v in zip(*pts))
                ax.errorbar(f, m, yerr=s, marker="o", capsize=3, label=f"{head} gamma={gamma:g}")
            ax.set_xlabel("frequencies N")
            ax.set_ylabel({"kl": "KL(true || pred)", "smoothness": "smoothness (lower smoother)"}[metric])
            ax.set_title(dataset)
            if metric == "kl":
                ax.set_yscale("log")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    paths.append(save_figure(fig, out / "kl_smoothness_vs_frequencies.png", dpi=110))

    # pmfs of a few test points: first seed, headline settings (prefer N = 12, gamma = 0 and 1e-6)
    first_seed = min(r["config"]["seed"] for r in runs)
    centers = bin_centers()
    fig, axes = plt.subplots(len(datasets), NUM_EXAMPLE_POINTS, figsize=(3.6 * NUM_EXAMPLE_POINTS, 2.8 * len(datasets)),
                             squeeze=False)  # fmt: skip
    for j, dataset in enumerate(datasets):
        chosen = [r for r in runs if r["config"]["dataset"] == dataset and r["config"]["seed"] == first_seed]
        freqs = {r["config"]["head_kwargs"].get("num_frequencies") for r in chosen} - {None}
        keep_f = 12 if 12 in freqs else (min(freqs) if freqs else None)
        chosen = [r for r in chosen if r["config"]["head_kwargs"].get("num_frequencies", keep_f) == keep_f]
        chosen.sort(key=lambda r: _label_order(r["label"]))
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
    paths.append(save_figure(fig, out / "pmfs.png", dpi=110))
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fh_rl.benchmarks.density",
        description="The Fourier head paper's synthetic density benchmark for registered heads.",
    )
    p.add_argument("--heads", nargs="+", default=None, help="registered heads that score bins (default: all of them)")
    p.add_argument("--datasets", nargs="+", default=sorted(DATASETS), help="gaussian, gmm2, beta")
    p.add_argument("--frequencies", nargs="+", type=int, default=[2, 4, 8, 12, 16, 20],
                   help="num_frequencies sweep for heads that take it")  # fmt: skip
    p.add_argument("--gammas", nargs="+", type=float, default=[0.0, 1e-6],
                   help="regularization_gamma values for heads that take it")  # fmt: skip
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 42])
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--out", type=Path, required=True, help="output directory (created)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    p.add_argument("--resume", action="store_true",
                   help="reuse the runs OUT/runs.jsonl already holds for the same settings")  # fmt: skip
    p.add_argument("--replot", action="store_true",
                   help="train nothing: rebuild results.md and the figures from OUT/results.json")  # fmt: skip
    return p


def validate(args: argparse.Namespace) -> None:
    known = available_heads()
    args.heads = args.heads or available_heads("bins")
    for h in args.heads:
        if h not in known:
            raise ValueError(unknown_name_message("head", h, known))
        if head_scores(h) != "bins":
            raise ValueError(f"head {h!r} scores continuous actions; this benchmark trains on bin labels and scores pmfs, "
                             f"so it takes heads that score bins: {', '.join(available_heads('bins'))}")
    for d in args.datasets:
        get_dataset(d)
    for label, values, low in (("--frequencies", args.frequencies, 1), ("--seeds", args.seeds, 0)):
        if any(v < low for v in values):
            raise ValueError(f"{label} must be >= {low}, got {values}")
    if any(g < 0 for g in args.gammas):
        raise ValueError(f"--gammas must be >= 0, got {args.gammas}")
    for label, v in (("--epochs", args.epochs), ("--jobs", args.jobs)):
        if v < 1:
            raise ValueError(f"{label} must be >= 1, got {v}")
    if args.samples < 5:
        raise ValueError(f"--samples must be at least 5 for an 80/20 split, got {args.samples}")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} exists and is not a directory; pick a directory")


def _run_key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def load_finished_runs(path: Path) -> dict[str, dict]:
    """Runs recorded in ``runs.jsonl`` by an earlier (possibly killed) sweep, by config."""
    if not path.is_file():
        return {}
    done = {}
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        done[_run_key(r["config"])] = r
    return done


def write_reports(result: dict, out: Path) -> str:
    """results.md and the figures from a results.json dict; returns the markdown."""
    md = markdown_tables(result["aggregate"], result["truth_smoothness"], result["meta"])
    atomic_write_text(out / "results.md", md + "\n")
    plot(result["aggregate"], result["runs"], out)
    return md


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.replot:
        path = args.out / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"--replot needs {path}; run the benchmark with --out {args.out} first")
        print(write_reports(json.loads(path.read_text()), args.out))
        return 0
    validate(args)
    args.out.mkdir(parents=True, exist_ok=True)
    configs = expand_configs(args)
    log_path = args.out / "runs.jsonl"
    done = load_finished_runs(log_path) if args.resume else {}
    if not args.resume:
        log_path.unlink(missing_ok=True)
    todo = [c for c in configs if _run_key(asdict(c)) not in done]
    runs: list[dict] = [done[_run_key(asdict(c))] for c in configs if _run_key(asdict(c)) in done]
    start = time.perf_counter()
    groups: dict[tuple, list[RunConfig]] = {}
    for c in todo:
        groups.setdefault(_group_key(c), []).append(c)
    bar = tqdm(total=len(configs), initial=len(runs), desc="density runs", unit="run")

    def finished(group_runs: list[dict]) -> None:
        runs.extend(group_runs)
        with open(log_path, "a") as f:  # one line per run, so a killed sweep can be resumed
            f.write("".join(json.dumps(r) + "\n" for r in group_runs))
        bar.update(len(group_runs))

    if args.jobs == 1:
        for group in groups.values():
            finished(train_group(group))
    else:
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(train_group, group) for group in groups.values()]
            for fut in as_completed(futures):
                finished(fut.result())
    bar.close()
    key = {(r["config"]["dataset"], r["label"], r["config"]["seed"]): r for r in runs}
    runs = [key[(c.dataset, c.label, c.seed)] for c in configs]
    agg = aggregate(runs)
    truth = {d: truth_smoothness(d, args.samples, args.seeds[0]) for d in args.datasets}
    meta = {
        "command": "python -m fh_rl.benchmarks.density " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seeds": args.seeds,
        "seeds_n": len(args.seeds),
        "epochs": args.epochs,
        "samples": args.samples,
        "num_bins": NUM_BINS,
        "wall_seconds": time.perf_counter() - start,
        "torch": torch.__version__,
    }
    result = {"meta": meta, "aggregate": agg, "truth_smoothness": truth, "runs": runs}
    atomic_write_text(args.out / "results.json", json.dumps(result, indent=1))
    print(write_reports(result, args.out))
    print(f"wrote {args.out / 'results.json'}, results.md and figures in {meta['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))

"""The comparison's figures: return, held-out NLL and smoothness against the number of frequencies, learning
curves, and learned pmfs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fh_rl.compare.runs import Run, run_curves
from fh_rl.compare.stats import Group
from fh_rl.infra.plots import BinAxis, bin_axis, draw_pmfs, pyplot, save_figure


def _frequency_series(rows: list[dict[str, Any]]) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Lines of (num_frequencies -> row), keyed by the rest of the label; and the other heads' rows (bands)."""
    lines: dict[str, list[dict[str, Any]]] = {}
    bands = []
    for row in rows:
        if "num_frequencies" not in row["head_params"]:
            bands.append(row)
        elif isinstance(row["head_params"].get("num_frequencies"), (int, float)):
            rest = " ".join(f"{k}={v}" for k, v in row["settings"].items() if k != "head.num_frequencies")
            lines.setdefault(f"{row['agent']}-{row['head']}" + (f" {rest}" if rest else ""), []).append(row)
    return lines, bands


def plot_frequencies(env: str, rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Return, held-out NLL and smoothness against the number of frequencies; heads without frequencies as bands."""
    plt = pyplot()
    lines, bands = _frequency_series(rows)
    if not lines:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    panels = [("return", lambda row: row["return"], "return (mean over seeds, 95% CI)"),
              ("nll", lambda row: row["val"]["nll"], "held-out NLL of the dataset's bins"),
              ("smoothness", lambda row: row["val"]["smoothness"], "held-out smoothness (lower is smoother)")]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (_, pick, ylabel) in zip(axes, panels, strict=True):
        for i, band in enumerate(bands):
            s = pick(band)
            if s["mean"] is None:
                continue
            c = colors[(len(lines) + i) % len(colors)]
            ax.axhline(s["mean"], color=c, lw=1.5, label=f"{band['label']} (n={s['n']})")
            if s["ci_low"] is not None:
                ax.axhspan(s["ci_low"], s["ci_high"], color=c, alpha=0.2, lw=0)
        for i, (label, pts) in enumerate(sorted(lines.items())):
            pts = sorted(pts, key=lambda r: r["head_params"]["num_frequencies"])
            xs = [p["head_params"]["num_frequencies"] for p in pts]
            stats = [pick(p) for p in pts]
            keep = [j for j, s in enumerate(stats) if s["mean"] is not None]
            if not keep:
                continue
            xs = [xs[j] for j in keep]
            m = np.array([stats[j]["mean"] for j in keep])
            lo = np.array([stats[j]["ci_low"] if stats[j]["ci_low"] is not None else stats[j]["mean"] for j in keep])
            hi = np.array([stats[j]["ci_high"] if stats[j]["ci_high"] is not None else stats[j]["mean"] for j in keep])
            ax.errorbar(xs, m, yerr=[m - lo, hi - m], marker="o", capsize=3, color=colors[i % len(colors)], label=label)
        ax.set_xscale("log", base=2)
        ticks = sorted({p["head_params"]["num_frequencies"] for pts in lines.values() for p in pts})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("number of frequencies N")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{env}: Fourier head vs number of frequencies (other heads as bands)")
    fig.tight_layout()
    return save_figure(fig, path)


CURVES = (("train/nll", "training objective (train/nll)"), ("val/nll", "held-out NLL of the dataset's bins (val/nll)"))


def plot_curves(env: str, groups: list[Group], path: Path) -> Path | None:
    """Learning curves: each group's training objective and held-out NLL against the step, the mean over its
    seeds as a line and their range as a band (steps every seed logged). None when no run logged them."""
    plt = pyplot()
    series = {id(g): [run_curves(r, [tag for tag, _ in CURVES]) for r in g.runs] for g in groups}
    if not any(s[tag] is not None for runs in series.values() for s in runs for tag, _ in CURVES):
        return None
    fig, axes = plt.subplots(1, len(CURVES), figsize=(6.5 * len(CURVES), 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (tag, ylabel) in zip(axes, CURVES, strict=True):
        for i, group in enumerate(groups):
            curves = [s[tag] for s in series[id(group)] if s[tag] is not None]
            if not curves:
                continue
            common = sorted(set.intersection(*(set(steps.tolist()) for steps, _ in curves)))
            if not common:
                continue
            by_step = [dict(zip(steps.tolist(), vals, strict=True)) for steps, vals in curves]
            values = np.array([[d[t] for t in common] for d in by_step])
            c = colors[i % len(colors)]
            ax.plot(common, values.mean(0), color=c, lw=1.4, label=f"{group.label} (n={len(curves)})")
            if len(curves) > 1:
                ax.fill_between(common, values.min(0), values.max(0), color=c, alpha=0.15, lw=0)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    labelled = {}  # a head may log one curve and not the other (mse has no val/nll): one legend for both panels
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            labelled.setdefault(label, handle)
    axes[0].legend(list(labelled.values()), list(labelled), fontsize=7)
    fig.suptitle(f"{env}: learning curves (mean over seeds, band: their range)")
    fig.tight_layout()
    return save_figure(fig, path)


def _representatives(groups: list[Group]) -> list[tuple[Group, Run]]:
    """One run per head (same agent as the first group), on a seed they share where possible.

    For heads with ``num_frequencies`` the group with the most frequencies is shown.
    """
    agent = groups[0].agent
    per_head: dict[str, Group] = {}
    for g in groups:
        if g.agent != agent:
            continue
        best = per_head.get(g.head)
        freq = g.head_params.get("num_frequencies")
        if best is None or (isinstance(freq, (int, float)) and freq > (best.head_params.get("num_frequencies") or -1)):
            per_head[g.head] = g
    chosen = list(per_head.values())
    common = set.intersection(*(set(g.seeds) for g in chosen)) if chosen else set()
    out = []
    for g in chosen:
        seed = min(common) if common else min(g.seeds)
        out.append((g, next(r for r in g.runs if r.seed == seed)))
    return out


def held_out_pmfs(runs: Sequence[Run], states: int = 4) -> tuple[list[np.ndarray | None], list[np.ndarray], np.ndarray, BinAxis]:
    """At the same ``states`` held-out steps (first action dimension): each run's predicted pmfs ``(S, K)``
    (None for a point prediction), each run's evaluation-action bins ``(S,)``, the target bins ``(S,)``, and the
    bins' labels (action names or values, from the first run's action codec).

    A run with stored pmfs (``run.pmfs``, from its study record) is read from them; the others are rebuilt
    from their checkpoints (``weights_only=True``) over held-out batches rebuilt from the first of them's
    ``config.yaml`` (its dataset and validation split). Stored and rebuilt pmfs must be at the same states
    (the same target bins), else ValueError.
    """
    stored = [run_pmfs_from_record(r.pmfs) if r.pmfs is not None else None for r in runs]
    missing = [r for r, s in zip(runs, stored, strict=True) if s is None]
    rebuilt = iter(_rebuild_pmfs(missing, states) if missing else [])
    items = [s if s is not None else next(rebuilt) for s in stored]
    return [p for p, _, _, _ in items], [c for _, c, _, _ in items], items[-1][2], items[0][3]


def run_pmfs(run: Run, states: int = 4) -> dict[str, Any]:
    """A run's pmfs at the pmf figure's ``states`` held-out steps, compactly, for its study record (plain JSON):
    ``codec`` (its config), ``targets`` and ``chosen`` bins per state, ``pmf`` (S lists of K probabilities,
    4 significant digits; None for a point prediction). Needs the run's checkpoint and dataset."""
    ((pmf, chosen, targets, codec),) = _rebuild_pmfs([run], states, with_codec=True)
    return {"states": int(len(targets)), "codec": codec, "targets": [int(t) for t in targets],
            "chosen": [int(c) for c in chosen],
            "pmf": None if pmf is None else [[float(f"{p:.4g}") for p in row] for row in pmf]}


def run_pmfs_from_record(stored: dict[str, Any]) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, BinAxis]:
    """(pmf (S, K) or None, chosen (S,), targets (S,), bin axis) from :func:`run_pmfs`'s record."""
    from fh_rl.envs.codecs import codec_from_config

    pmf = None if stored["pmf"] is None else np.asarray(stored["pmf"], dtype=np.float64)
    return (pmf, np.asarray(stored["chosen"], dtype=np.int64), np.asarray(stored["targets"], dtype=np.int64),
            bin_axis(codec_from_config(stored["codec"])))


def _rebuild_pmfs(runs: Sequence[Run], states: int, with_codec: bool = False) -> list[tuple]:
    """Per run (pmf (S, K) or None, chosen (S,), targets (S,), axis or codec config) from its checkpoint."""
    import torch
    import yaml

    from fh_rl.build import held_out_batches, load_agent
    from fh_rl.config import config_from_dict
    from fh_rl.heads import normalized_pmf

    cfg0 = config_from_dict(yaml.safe_load((runs[0].path / "config.yaml").read_text()))
    # The runs' own data or nothing: never build a missing dataset (dataset.build) just to draw a figure.
    cfg0 = dataclasses.replace(cfg0, dataset=dataclasses.replace(cfg0.dataset, build=None))
    batches = held_out_batches(cfg0, progress=False)  # FileNotFoundError naming the dataset when it moved
    if not batches:
        raise ValueError(f"{runs[0].path} has no held-out data (dataset.val_fraction is 0)")
    out = []
    for run in runs:
        _, agent, _ = load_agent(run.path)
        with torch.no_grad():
            loss = agent.eval().loss(batches[0])
        M = len(loss.targets)
        idx = np.linspace(0, M - 1, min(states, M)).round().astype(int)
        pmf = None
        if loss.log_probs is not None:  # None: a point prediction (mse head), no pmf
            pmf = normalized_pmf(loss.log_probs)[:, 0].numpy()[idx]  # (M, A, K) -> (S, K): first action dimension
        out.append((pmf, loss.chosen[idx, 0].numpy(), loss.targets[idx, 0].numpy(),
                    agent.codec.config() if with_codec else bin_axis(agent.codec)))
    return out


def plot_pmfs(env: str, groups: list[Group], path: Path, states: int = 4) -> Path:
    """The learned pmfs of one run per head over the same held-out states, one panel per state.

    A head without a pmf (``mse``, a point prediction) is a dotted vertical line at its action's bin.
    """
    plt = pyplot()
    reps = _representatives(groups)
    pmfs, chosen, targets, axis = held_out_pmfs([r for _, r in reps], states=states)
    S = len(targets)
    fig, axes = plt.subplots(1, S, figsize=(3.4 * S, 3.4), sharey=False, squeeze=False)
    for s, ax in enumerate(axes[0]):
        labels = [f"{group.label} (seed {run.seed})" for group, run in reps]
        lines = [(label, pmf[s]) for label, pmf in zip(labels, pmfs, strict=True) if pmf is not None]
        points = [(label, int(c[s])) for label, pmf, c in zip(labels, pmfs, chosen, strict=True) if pmf is None]
        draw_pmfs(ax, axis, lines, int(targets[s]), title=f"held-out state {s + 1}", points=points)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{env}: learned action distributions on the same held-out states")
    fig.tight_layout()
    return save_figure(fig, path)


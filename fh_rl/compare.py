"""``python -m fh_rl.compare RUN_DIR...``: heads against heads, across seeds.

    python -m fh_rl.compare runs/sweep-default
    python -m fh_rl.compare runs/Pendulum-v1 other/runs --out results/

The directories are searched for run directories (those holding a
``config.yaml``). A run counts when it is complete (its ``eval.json`` holds
results); incomplete or malformed ones are listed with the reason and skipped.
Runs are grouped per environment by agent, head and the settings that differ
between the runs (head parameters such as ``num_frequencies``, or any other
swept key); the seed is what varies inside a group. For each group:

- return: the mean over seeds of each run's mean evaluation return (first
  target return), a 95% bootstrap confidence interval of that mean
  (``scipy.stats.bootstrap``, percentile method, 10,000 resamples, fixed seed),
  and the interquartile mean (``scipy.stats.trim_mean(x, 0.25)``, rliable's IQM);
- normalised score (``fh_rl.envs.scores``; "-" for environments without
  reference scores);
- held-out metrics: the run's last ``val/*`` values (read from its TensorBoard
  events), averaged over seeds. The NLL is in two columns that never mix units:
  ``val/nll`` over the action bins (a pmf: every head with a distribution,
  the Gaussian head discretised over the same bins) and ``val/nll_density``
  (a density on the [-1, 1] action scale: heads that score continuous actions);
  then accuracy, smoothness and ``val/action_mse`` (squared error of the
  evaluation action on the [-1, 1] scale, Box actions). A metric that does not
  apply to a head (e.g. the NLL of the ``mse`` head, a point prediction) is "-";
- the number of seeds.

Writes ``comparison.md``, ``comparison.json`` and PNG figures into ``--out``
(default: the first directory): ``frequencies-<env>.png`` (return and smoothness
against the number of frequencies, the linear head as a band) and
``pmfs-<env>.png`` (the learned pmfs of each head for the same held-out states).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fh_rl.atomic import save_figure
from fh_rl.cli import run_cli

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
VAL_METRICS = ("nll", "nll_density", "accuracy", "smoothness", "action_mse")
IGNORED_KEYS = frozenset({
    "seed", "run_root", "train.device", "train.threads", "train.amp", "eval.workers",
    "train.checkpoint_every", "train.log_every", "train.pmf_states",
})
"""Config keys that do not change what a run learns or scores: never a reason to split groups."""


# ----------------------------------------------------------------------------- statistics


def seed_statistics(values: Sequence[float]) -> dict[str, Any]:
    """Mean, 95% bootstrap CI of the mean, IQM and std of per-seed values (CI None for fewer than 2 seeds)."""
    from scipy.stats import bootstrap, trim_mean

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    out: dict[str, Any] = {"n": int(len(x)), "values": x.tolist(), "mean": None, "ci_low": None, "ci_high": None,
                           "iqm": None, "std": None}
    if len(x) == 0:
        return out
    out["mean"] = float(x.mean())
    out["iqm"] = float(trim_mean(x, 0.25))
    out["std"] = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    if len(x) > 1:
        if np.ptp(x) == 0:
            low = high = float(x[0])
        else:
            ci = bootstrap((x,), np.mean, confidence_level=CONFIDENCE, n_resamples=N_RESAMPLES, method="percentile",
                           rng=np.random.default_rng(BOOTSTRAP_SEED)).confidence_interval
            low, high = float(ci.low), float(ci.high)
        out["ci_low"], out["ci_high"] = low, high
    return out


# ----------------------------------------------------------------------------- runs on disk


@dataclass
class Run:
    """A complete run as compare reads it."""

    path: Path
    env: str
    agent: str
    head: str
    head_params: dict[str, Any]
    seed: int
    config: dict[str, Any]
    """The flattened resolved config (``train.steps`` -> 500)."""
    target: float | None
    returns: list[float]
    """Evaluation returns of the first target return, one per episode."""
    val: dict[str, float | None] = field(default_factory=dict)

    @property
    def return_mean(self) -> float:
        return float(np.mean(self.returns))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict) and not (prefix == "" and key == "head"):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif prefix == "" and key == "head":
            for k, v in value.items():
                flat[f"head.{k}"] = v
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def last_scalars(run_dir: Path, tags: Sequence[str]) -> dict[str, float | None]:
    """The value at the highest step of each scalar tag in the run's TensorBoard events (None when absent)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 1, "histograms": 1, "tensors": 1,
                                                         "audio": 1, "compressedHistograms": 1})
    acc.Reload()
    have = set(acc.Tags().get("scalars", []))
    out: dict[str, float | None] = {}
    for tag in tags:
        if tag not in have:
            out[tag] = None
            continue
        events = acc.Scalars(tag)
        out[tag] = float(max(events, key=lambda e: (e.step, e.wall_time)).value)
    return out


def load_run(run_dir: str | Path, *, read_events: bool = True) -> Run:
    """Read a run directory; ValueError/FileNotFoundError saying what is missing or malformed."""
    import yaml

    run_dir = Path(run_dir)
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    except FileNotFoundError:
        raise FileNotFoundError("no config.yaml") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"config.yaml unreadable ({type(exc).__name__})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("head"), dict) or not isinstance(cfg.get("env"), dict):
        raise ValueError("config.yaml is not an fh_rl run config (no env/head sections)")
    eval_path = run_dir / "eval.json"
    if not eval_path.is_file():
        raise FileNotFoundError("incomplete: no eval.json (training or evaluation did not finish)")
    try:
        payload = json.loads(eval_path.read_text())
        first = payload["results"][0]
        returns = [float(r) for r in first["returns"]]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        raise ValueError("eval.json is malformed (expected results[0].returns)") from None
    if not returns or not all(math.isfinite(r) for r in returns):
        raise ValueError("eval.json holds no finite returns")
    head = dict(cfg["head"])
    name = head.pop("name", None)
    if not isinstance(name, str):
        raise ValueError("config.yaml has no head.name")
    agent = cfg.get("agent", {}).get("name") if isinstance(cfg.get("agent"), dict) else None
    run = Run(
        path=run_dir,
        env=str(payload.get("env") or cfg["env"].get("name")),
        agent=str(agent),
        head=name,
        head_params=head,
        seed=int(cfg.get("seed", 0)),
        config=_flatten(cfg),
        target=first.get("target_return"),
        returns=returns,
    )
    if read_events:
        values = last_scalars(run_dir, [f"val/{m}" for m in VAL_METRICS])
        run.val = {m: values[f"val/{m}"] for m in VAL_METRICS}
    return run


def find_runs(paths: Sequence[str | Path], *, read_events: bool = True) -> tuple[list[Run], list[dict[str, str]]]:
    """Complete runs below ``paths`` and ``[{path, reason}]`` for the run directories skipped."""
    runs, skipped = [], []
    seen: set[Path] = set()
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{str(path)!r} does not exist; pass run directories or folders holding them")
        candidates = {p.parent for p in path.rglob("config.yaml")} | {p.parent for p in path.rglob("manifest.json")}
        if (path / "config.yaml").exists() or (path / "manifest.json").exists():
            candidates.add(path)
        for run_dir in sorted(candidates):
            key = run_dir.resolve()
            if key in seen:
                continue
            seen.add(key)
            try:
                runs.append(load_run(run_dir, read_events=read_events))
            except (ValueError, FileNotFoundError) as exc:
                skipped.append({"path": str(run_dir), "reason": str(exc)})
    return runs, skipped


# ----------------------------------------------------------------------------- grouping


@dataclass
class Group:
    """Runs of one environment that differ only in the seed."""

    env: str
    agent: str
    head: str
    head_params: dict[str, Any]
    settings: dict[str, Any]
    """The swept settings that set this group apart (head parameters and other keys), for its label."""
    runs: list[Run]

    @property
    def label(self) -> str:
        extra = " ".join(f"{k[5:] if k.startswith('head.') else k}={v}" for k, v in self.settings.items())
        return f"{self.agent}-{self.head}" + (f" {extra}" if extra else "")

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]


def group_runs(runs: Sequence[Run]) -> tuple[dict[str, list[Group]], list[dict[str, str]]]:
    """Groups per environment, and the runs dropped as duplicates (same group and seed: the newest is kept)."""
    by_env: dict[str, list[Run]] = {}
    for run in runs:
        by_env.setdefault(run.env, []).append(run)
    out: dict[str, list[Group]] = {}
    dropped: list[dict[str, str]] = []
    for env, env_runs in sorted(by_env.items()):
        keys = set().union(*(r.config for r in env_runs)) - IGNORED_KEYS
        # Keys whose value differs between runs of the same head (or, outside head.*, between any runs).
        varying = []
        for key in sorted(keys):
            if key.startswith("head."):
                per_head: dict[str, set[str]] = {}
                for r in env_runs:
                    if key in r.config:
                        per_head.setdefault(r.head, set()).add(json.dumps(r.config[key], sort_keys=True))
                if any(len(v) > 1 for v in per_head.values()):
                    varying.append(key)
            elif len({json.dumps(r.config.get(key), sort_keys=True) for r in env_runs}) > 1:
                if key != "head.name":
                    varying.append(key)
        groups: dict[str, Group] = {}
        for run in env_runs:
            settings = {k: run.config[k] for k in varying if k in run.config and k != "head.name"}
            key = json.dumps([run.agent, run.head, run.head_params, settings], sort_keys=True, default=str)
            if key not in groups:
                groups[key] = Group(env, run.agent, run.head, dict(run.head_params), settings, [])
            groups[key].runs.append(run)
        for group in groups.values():
            by_seed: dict[int, Run] = {}
            for run in sorted(group.runs, key=lambda r: (_created(r.path), str(r.path))):
                if run.seed in by_seed:
                    dropped.append({"path": str(by_seed[run.seed].path),
                                    "reason": f"duplicate of seed {run.seed} in {group.label}; kept the newer {run.path}"})
                by_seed[run.seed] = run
            group.runs = [by_seed[s] for s in sorted(by_seed)]
        out[env] = sorted(groups.values(), key=_group_order)
    return out, dropped


def _created(path: Path) -> float:
    try:
        return (path / "eval.json").stat().st_mtime
    except OSError:
        return 0.0


def _group_order(g: Group) -> tuple:
    freq = g.head_params.get("num_frequencies")
    return (g.agent, g.head != "linear", g.head, freq if isinstance(freq, (int, float)) else -1, g.label)


def summarize(group: Group) -> dict[str, Any]:
    """The statistics of one group (plain JSON types)."""
    from fh_rl.envs.scores import normalized_score

    returns = [r.return_mean for r in group.runs]
    norm = [normalized_score(group.env, x) for x in returns]
    targets = sorted({r.target for r in group.runs if r.target is not None})
    return {
        "label": group.label,
        "agent": group.agent,
        "head": group.head,
        "head_params": group.head_params,
        "settings": group.settings,
        "seeds": group.seeds,
        "n_seeds": len(group.runs),
        "runs": [str(r.path) for r in group.runs],
        "target_returns": targets,
        "episodes": [len(r.returns) for r in group.runs],
        "return": seed_statistics(returns),
        "normalized": None if any(n is None for n in norm) else seed_statistics(norm),
        "val": {m: seed_statistics([r.val.get(m) for r in group.runs]) for m in VAL_METRICS},
    }


# ----------------------------------------------------------------------------- tables


def _num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:,.{digits}f}" if abs(x) < 1000 else f"{x:,.0f}"


def markdown_table(env: str, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"### {env}",
        "",
        "| head | seeds | return mean [95% CI] | IQM | normalised | val NLL (bins) | val NLL (density) "
        "| val accuracy | val smoothness | val action MSE |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        r = row["return"]
        ci = f" [{_num(r['ci_low'], 1)}, {_num(r['ci_high'], 1)}]" if r["ci_low"] is not None else ""
        norm = row["normalized"]["mean"] if row["normalized"] else None
        lines.append(
            f"| {row['label']} | {row['n_seeds']} | {_num(r['mean'], 1)}{ci} | {_num(r['iqm'], 1)} | {_num(norm, 1)} "
            + "".join(f"| {_num(row['val'][m]['mean'])} " for m in VAL_METRICS) + "|"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- figures


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
    """Return and held-out smoothness against the number of frequencies; heads without frequencies as bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines, bands = _frequency_series(rows)
    if not lines:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    panels = [("return", lambda row: row["return"], "return (mean over seeds, 95% CI)"),
              ("smoothness", lambda row: row["val"]["smoothness"], "held-out smoothness (lower is smoother)")]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (name, pick, ylabel) in zip(axes, panels):
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


def held_out_pmfs(runs: Sequence[Run], states: int = 4) -> tuple[list[np.ndarray | None], list[np.ndarray], np.ndarray]:
    """At the same ``states`` held-out steps (first action dimension): each run's predicted pmfs ``(S, K)``
    (None for a point prediction), each run's evaluation-action bins ``(S,)``, and the target bins ``(S,)``.

    The held-out batch is rebuilt from the first run's ``config.yaml`` (its dataset and
    validation split); the agents are rebuilt from their checkpoints (``weights_only=True``).
    """
    import torch

    from fh_rl.agents import agent_from_spec
    from fh_rl.config import config_from_dict
    from fh_rl.trainer import load_checkpoint
    from fh_rl.train import build_everything

    import yaml

    cfg0 = config_from_dict(yaml.safe_load((runs[0].path / "config.yaml").read_text()))
    # The runs' own data or nothing: never build a missing dataset (dataset.build) just to draw a figure.
    cfg0 = dataclasses.replace(cfg0, dataset=dataclasses.replace(cfg0.dataset, build=None))
    built = build_everything(cfg0, progress=False)  # FileNotFoundError naming the dataset when it moved
    if not built["val_batches"]:
        raise ValueError(f"{runs[0].path} has no held-out data (dataset.val_fraction is 0)")
    batch = built["val_batches"][0]
    pmfs, chosen, targets = [], [], None
    for run in runs:
        state = load_checkpoint(run.path)
        cfg = config_from_dict(state["config"])
        agent = agent_from_spec(cfg.agent, state["spec"], state["model"]).eval()
        with torch.no_grad():
            out = agent.loss(batch)
        M = len(out.targets)
        idx = np.linspace(0, M - 1, min(states, M)).round().astype(int)
        chosen.append(out.chosen[idx, 0].numpy())
        targets = out.targets[idx, 0].numpy()
        if out.log_probs is None:  # a point prediction (mse head): no pmf
            pmfs.append(None)
            continue
        pmf = out.log_probs.float().exp()  # (M, A, K)
        pmf = (pmf / pmf.sum(-1, keepdim=True))[:, 0].numpy()  # (M, K): first action dimension
        pmfs.append(pmf[idx])
    return pmfs, chosen, targets


def plot_pmfs(env: str, groups: list[Group], path: Path, states: int = 4) -> Path:
    """The learned pmfs of one run per head over the same held-out states, one panel per state.

    A head without a pmf (``mse``, a point prediction) is a dotted vertical line at its action's bin.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reps = _representatives(groups)
    pmfs, chosen, targets = held_out_pmfs([r for _, r in reps], states=states)
    S = len(targets)
    K = next((p.shape[1] for p in pmfs if p is not None), int(max(max(c) for c in chosen)) + 1)
    fig, axes = plt.subplots(1, S, figsize=(3.2 * S, 3.0), sharey=False, squeeze=False)
    bins = np.arange(K)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for s, ax in enumerate(axes[0]):
        for i, ((group, run), pmf) in enumerate(zip(reps, pmfs)):
            label, color = f"{group.label} (seed {run.seed})", colors[i % len(colors)]
            if pmf is None:
                ax.axvline(chosen[i][s], color=color, ls=":", lw=1.6, label=f"{label}, point prediction")
            else:
                ax.plot(bins, pmf[s], lw=1.4, color=color, label=label)
        ax.axvline(targets[s], color="k", ls="--", lw=0.8, label="dataset action")
        ax.set_title(f"held-out state {s + 1}", fontsize=9)
        ax.set_xlabel("action bin")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("probability")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{env}: learned action distributions on the same held-out states")
    fig.tight_layout()
    return save_figure(fig, path)


def _slug(env: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in env)


# ----------------------------------------------------------------------------- TensorBoard


CUSTOM_SCALARS_LAYOUT = {
    "evaluation (all runs overlaid)": {
        "return mean": ["Multiline", [r"eval/return_mean/.*"]],
        "normalised return": ["Multiline", [r"eval/normalized/.*"]],
    },
    "validation (all runs overlaid)": {
        "held-out NLL over the bins (pmf)": ["Multiline", [r"val/nll$"]],
        "held-out NLL of the action (density on [-1, 1])": ["Multiline", [r"val/nll_density$"]],
        "held-out accuracy": ["Multiline", [r"val/accuracy$"]],
        "held-out smoothness": ["Multiline", [r"val/smoothness$"]],
        "held-out action MSE ([-1, 1] scale)": ["Multiline", [r"val/action_mse$"]],
    },
    "training (all runs overlaid)": {
        "loss": ["Multiline", [r"train/loss$"]],
        "NLL over the bins (pmf)": ["Multiline", [r"train/nll$"]],
        "NLL of the action (density)": ["Multiline", [r"train/nll_density$"]],
        "squared error (mse head)": ["Multiline", [r"train/mse$"]],
        "head regularisation": ["Multiline", [r"train/regularization$"]],
    },
}
"""One chart per metric; each chart overlays that metric of every run under the logdir (heads side by side)."""

LAYOUT_SUFFIX = ".fh_rl-layout"


def write_custom_scalars(root: str | Path) -> Path:
    """Write the custom-scalars layout into ``root`` once (``tensorboard --logdir root`` opens it)."""
    from torch.utils.tensorboard import SummaryWriter

    root = Path(root)
    existing = sorted(root.glob(f"events.out.tfevents.*{LAYOUT_SUFFIX}"))
    if existing:
        return existing[0]
    with SummaryWriter(str(root), filename_suffix=LAYOUT_SUFFIX) as writer:
        writer.add_custom_scalars(CUSTOM_SCALARS_LAYOUT)
        path = Path(writer.file_writer.event_writer._file_name)
    return path


# ----------------------------------------------------------------------------- the command


def compare(paths: Sequence[str | Path], out: str | Path, *, figures: bool = True, pmf_states: int = 4) -> dict[str, Any]:
    """Find, group and summarise the runs; write ``comparison.md``/``.json`` and figures into ``out``."""
    runs, skipped = find_runs(paths)
    if not runs:
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
        raise ValueError(f"no complete runs found under {', '.join(map(str, paths))}" + (f" ({reasons})" if reasons else ""))
    groups, dropped = group_runs(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "statistics": {"return": "mean over seeds of each run's mean evaluation return (first target)",
                       "ci": f"{CONFIDENCE:.0%} bootstrap of the mean over seeds, percentile method, "
                             f"{N_RESAMPLES} resamples, rng seed {BOOTSTRAP_SEED} (scipy.stats.bootstrap)",
                       "iqm": "scipy.stats.trim_mean(per-seed returns, 0.25)",
                       "val": "last logged val/* value of each run, mean over seeds"},
        "environments": {},
        "figures": [],
        "skipped": skipped + dropped,
    }
    md = ["# Head comparison", ""]
    for env, env_groups in groups.items():
        rows = [summarize(g) for g in env_groups]
        result["environments"][env] = rows
        md += [markdown_table(env, rows), ""]
        if not figures:
            continue
        fig = plot_frequencies(env, rows, out / f"frequencies-{_slug(env)}.png")
        if fig is not None:
            result["figures"].append(str(fig))
            md += [f"![return and smoothness vs frequencies]({fig.name})", ""]
        try:
            fig = plot_pmfs(env, env_groups, out / f"pmfs-{_slug(env)}.png", states=pmf_states)
        except (ValueError, FileNotFoundError, KeyError) as exc:  # e.g. the dataset moved: tables still come out
            result["skipped"].append({"path": f"pmfs-{_slug(env)}.png", "reason": f"no pmf figure: {exc}"})
        else:
            result["figures"].append(str(fig))
            md += [f"![learned pmfs]({fig.name})", ""]
    if result["skipped"]:
        md += ["Skipped:", ""] + [f"- `{s['path']}`: {s['reason']}" for s in result["skipped"]] + [""]
    md += [f"Return: {result['statistics']['return']}; CI: {result['statistics']['ci']}; "
           f"IQM: {result['statistics']['iqm']}; val: {result['statistics']['val']}.", ""]
    from fh_rl.utils import atomic_write_text

    atomic_write_text(out / "comparison.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "comparison.md", "\n".join(md))
    result["markdown"] = "\n".join(md)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fh_rl.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="RUN_DIR", help="run directories or folders searched for them")
    parser.add_argument("--out", default=None, help="where comparison.md/.json and figures go (default: the first RUN_DIR)")
    parser.add_argument("--no-figures", action="store_true", help="tables only (no checkpoints or dataset needed)")
    parser.add_argument("--pmf-states", type=int, default=4, help="held-out states in the pmf figure (default 4)")
    args = parser.parse_args(argv)
    if args.pmf_states < 1:
        raise ValueError(f"--pmf-states must be >= 1, got {args.pmf_states}")
    out = Path(args.out) if args.out else Path(args.paths[0])
    if not out.is_dir() and args.out is None:
        out = out.parent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        result = compare(args.paths, out, figures=not args.no_figures, pmf_states=args.pmf_states)
    print(result["markdown"])
    for s in result["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    print(f"wrote {out / 'comparison.md'}, {out / 'comparison.json'}"
          + "".join(f", {f}" for f in result["figures"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))

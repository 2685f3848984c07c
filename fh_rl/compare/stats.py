"""Grouping runs that differ only in the seed, and the statistics over seeds."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from fh_rl.compare.runs import VAL_METRICS, Run, _flatten

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
PAPER_SPREAD = 0.67
"""The paper reports mean +- 0.67 std (ddof 0) over seeds of the per-seed best evaluation."""
BEST_OF_LABEL = "best of {n} evaluations per seed (the paper's statistic; optimistic)"
IGNORED_KEYS = frozenset({
    "seed", "run_root", "train.device", "train.threads", "train.amp", "eval.workers",
    "train.checkpoint_every", "train.log_every", "train.pmf_states", "eval.every_steps", "eval.decode",
    "eval.sample", "env.sample_within_bin",  # eval.decode's old keys, in records of older runs
})
"""Config keys that do not change what a run learns or scores: never a reason to split groups."""



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


def decodings_of(runs: Sequence[Run]) -> list[str]:
    """Every decoding the runs were evaluated under, in the order they first appear (each run's own order)."""
    return list(dict.fromkeys(d for r in runs for d in (r.decodings or {r.decode: r.returns})))


def under_decoding(groups: Sequence[Group], decode: str) -> list[Group]:
    """The groups as read under one decoding: each run's returns under it; runs without it left out, and
    groups left with no run dropped."""
    import dataclasses

    out = []
    for g in groups:
        runs = [r.under(decode) if r.decodings else (r if r.decode == decode else None) for r in g.runs]
        runs = [r for r in runs if r is not None]
        if runs:
            out.append(dataclasses.replace(g, runs=runs))
    return out


def group_runs(runs: Sequence[Run]) -> tuple[dict[str, list[Group]], list[dict[str, str]]]:
    """Groups per environment, and the runs dropped as duplicates (same group and seed: the newest is kept)."""
    by_env: dict[str, list[Run]] = {}
    for run in runs:
        by_env.setdefault(run.env, []).append(run)
    out: dict[str, list[Group]] = {}
    dropped: list[dict[str, str]] = []
    for env, env_runs in sorted(by_env.items()):
        # Keys whose value differs between runs of the same agent and head (or, outside head.*, between any
        # runs of the same agent): what the DT's and BC's configs differ in anyway does not label their groups.
        varying = {agent: _varying_keys([r for r in env_runs if r.agent == agent]) for agent in {r.agent for r in env_runs}}
        groups: dict[str, Group] = {}
        for run in env_runs:
            settings = {k: _setting(run, k) for k in varying[run.agent]
                        if (k in run.config or k in _defaults()) and k != "head.name"}
            key = json.dumps([run.agent, run.head, run.head_params, settings], sort_keys=True, default=str)
            if key not in groups:
                groups[key] = Group(env, run.agent, run.head, dict(run.head_params), settings, [])
            groups[key].runs.append(run)
        for group in groups.values():
            by_seed: dict[int, Run] = {}
            for run in sorted(group.runs, key=lambda r: (_created(r.path / r.eval_file), str(r.path))):
                if run.seed in by_seed:
                    dropped.append({"path": str(by_seed[run.seed].path),
                                    "reason": f"duplicate of seed {run.seed} in {group.label}; kept the newer {run.path}"})
                by_seed[run.seed] = run
            group.runs = [by_seed[s] for s in sorted(by_seed)]
        out[env] = sorted(groups.values(), key=_group_order)
    return out, dropped


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    """Every non-head setting's default, flat (``dataset.action_noise``): what a run made before the setting
    existed used (a new setting's default keeps the old behaviour)."""
    from fh_rl.config import Config

    return {k: v for k, v in _flatten(Config().to_dict()).items() if not k.startswith("head.")}


def _setting(run: Run, key: str) -> Any:
    """``run``'s value of ``key``; the default where its config predates the setting."""
    return run.config[key] if key in run.config else _defaults().get(key)


def _varying_keys(runs: Sequence[Run]) -> list[str]:
    """Config keys whose value differs between runs of the same head (``head.*``) or between any of ``runs``
    (a setting a run's config predates counts as its default)."""
    keys = set().union(*(r.config for r in runs)) - IGNORED_KEYS
    varying = []
    for key in sorted(keys):
        if key.startswith("head."):
            per_head: dict[str, set[str]] = {}
            for r in runs:
                if key in r.config:
                    per_head.setdefault(r.head, set()).add(json.dumps(r.config[key], sort_keys=True))
            if any(len(v) > 1 for v in per_head.values()):
                varying.append(key)
        elif len({json.dumps(_setting(r, key), sort_keys=True, default=str) for r in runs}) > 1:
            varying.append(key)
    return varying


def _created(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _group_order(g: Group) -> tuple:
    freq = g.head_params.get("num_frequencies")
    return (g.agent, g.head != "linear", g.head, freq if isinstance(freq, (int, float)) else -1, g.label)


def best_of_evaluations(group: Group) -> dict[str, Any] | None:
    """The paper's statistic: per seed the best of its N evaluations (normalised when the env has reference
    scores), mean +- 0.67 std (ddof 0) over seeds. None unless every run evaluated at least twice."""
    from fh_rl.envs.scores import normalized_score

    counts = [len(r.history) for r in group.runs]
    if not counts or min(counts) < 2:
        return None
    best = [max(mean for _, mean in r.history) for r in group.runs]
    norm = [normalized_score(group.env, b) for b in best]
    normalised = all(n is not None for n in norm)
    values = np.asarray(norm if normalised else best, dtype=np.float64)
    n = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"
    return {"label": BEST_OF_LABEL.format(n=n), "evaluations": counts, "normalized": normalised,
            "values": values.tolist(), "mean": float(values.mean()), "std": float(values.std(ddof=0)),
            "half_width": float(PAPER_SPREAD * values.std(ddof=0))}


def summarize(group: Group) -> dict[str, Any]:
    """The statistics of one group (plain JSON types)."""
    from fh_rl.envs.scores import normalized_score

    returns = [r.return_mean for r in group.runs]
    norm = [normalized_score(group.env, x) for x in returns]
    targets = sorted({r.target for r in group.runs if r.target is not None})
    return {
        "label": group.label,
        "decode": group.runs[0].decode if group.runs else None,
        "agent": group.agent,
        "head": group.head,
        "head_params": group.head_params,
        "settings": group.settings,
        "seeds": group.seeds,
        "n_seeds": len(group.runs),
        "runs": [str(r.path) for r in group.runs],
        "evaluations": [r.eval_file for r in group.runs],
        "target_returns": targets,
        "episodes": [len(r.returns) for r in group.runs],
        "return": seed_statistics(returns),
        "normalized": None if any(n is None for n in norm) else seed_statistics(norm),
        "val": {m: seed_statistics([r.val.get(m) for r in group.runs]) for m in VAL_METRICS},
        "best_of_evaluations": best_of_evaluations(group),
    }


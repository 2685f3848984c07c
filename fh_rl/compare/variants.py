"""A study over data variants: one table per variant, paired verdicts, the probability of improvement,
a convergence check, and one figure per axis (return and held-out NLL against the variant's value).

Used by :mod:`fh_rl.study` for a study whose YAML has ``axes`` (configs/studies/when.yaml). It reads the
study's records only (:func:`fh_rl.compare.runs.run_from_record`), so the page needs no run directory.

- An arm is (variant, agent, head, N): the variant is the ``variant`` of the sweep whose folder the run's
  point is in, N the head's ``num_frequencies`` where it has one.
- Verdict per pair of arms of one agent in one variant: the per-seed paired difference of mean returns (a
  seed fixes the training randomness's seed and the evaluation episodes' seeds for every arm) on the seeds
  both ran, its 95% bootstrap interval over seeds; "higher"/"lower" when the interval excludes 0, else no
  evidence of a difference. The arms' own intervals are printed beside it.
- Probability of improvement P(A > B) as rliable defines it (Agarwal et al. 2021): the Mann-Whitney
  statistic P(X > Y) + P(X = Y) / 2 for X an episode return of A and Y one of B, here pooled over the seeds
  both ran and their evaluation episodes; its 95% interval from a bootstrap over seeds (the same seeds
  resampled for both arms). Written with numpy (rliable does not install here).
- The answer per axis (:func:`axis_answer`): every pair's paired difference at each variant on the axis,
  under each decoding both arms have, and the verdicts that change from the axis's reference variant.
- Convergence: a run whose held-out NLL (``val/nll``; ``val/action_mse`` for heads without a pmf) fell by
  more than 2% from the last value logged at or before 80% of training to the final one is "not converged".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fh_rl.compare.stats import BOOTSTRAP_SEED, N_RESAMPLES, seed_statistics

CONVERGENCE_TAIL = 0.2
CONVERGENCE_DROP = 0.02
MIN_SEEDS = 3


def arm_label(record: dict[str, Any]) -> str:
    n = (record.get("head_params") or {}).get("num_frequencies")
    return f"{record['agent']}-{record['head']}" + (f" N={n}" if n is not None and record["head"] != "linear" else "")


def converged(curve: Sequence[Sequence[float]] | None, tail: float = CONVERGENCE_TAIL,
              drop: float = CONVERGENCE_DROP) -> tuple[bool | None, float | None]:
    """(converged, relative fall over the last ``tail`` of training) of a ``[[step, value], ...]`` curve whose
    values fall as training improves; (None, None) without two points to compare."""
    if not curve or len(curve) < 2:
        return None, None
    steps = np.asarray([p[0] for p in curve], dtype=np.float64)
    values = np.asarray([p[1] for p in curve], dtype=np.float64)
    before = np.nonzero(steps <= (1 - tail) * steps[-1])[0]
    if not len(before) or not math.isfinite(values[before[-1]]) or values[before[-1]] == 0:
        return None, None
    start, end = values[before[-1]], values[-1]
    fall = float((start - end) / abs(start))
    return fall <= drop, fall


def run_converged(record: dict[str, Any]) -> tuple[bool | None, float | None]:
    curves = record.get("curves") or {}
    return converged(curves.get("val/nll") or curves.get("val/action_mse"))


def probability_of_improvement(a: dict[int, Sequence[float]], b: dict[int, Sequence[float]],
                               resamples: int = N_RESAMPLES) -> dict[str, Any] | None:
    """P(A > B) over the episodes of the seeds both ran (``{seed: episode returns}``), with a 95% bootstrap
    interval over those seeds; None with fewer than 2 common seeds."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    # C[i, j]: sum over episode pairs of seed i (A) and seed j (B) of [x > y] + [x == y] / 2; n[i, j]: pairs.
    C = np.zeros((len(seeds), len(seeds)))
    n = np.zeros_like(C)
    for i, si in enumerate(seeds):
        x = np.asarray(a[si], dtype=np.float64)[:, None]
        for j, sj in enumerate(seeds):
            y = np.asarray(b[sj], dtype=np.float64)[None, :]
            C[i, j] = (x > y).sum() + 0.5 * (x == y).sum()
            n[i, j] = x.size * y.size
    point = float(C.sum() / n.sum())
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    picks = rng.integers(0, len(seeds), size=(resamples, len(seeds)))
    w = (picks[:, :, None] == np.arange(len(seeds))).sum(axis=1).astype(np.float64)  # (R, S) seed counts
    boot = np.einsum("ri,ij,rj->r", w, C, w) / np.einsum("ri,ij,rj->r", w, n, w)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"p": point, "ci_low": float(low), "ci_high": float(high), "seeds": seeds}


def paired_difference(a: dict[int, float], b: dict[int, float]) -> dict[str, Any] | None:
    """Per-seed difference a[s] - b[s] on the common seeds: seed statistics (bootstrap CI), or None."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    return {**seed_statistics([a[s] - b[s] for s in seeds]), "seeds": seeds}


def arms(records: Sequence[dict[str, Any]], variant_of: dict[str, str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{variant: {arm label: arm}}``; an arm holds its records by seed and its statistics."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        folder = str(r.get("point") or "").split("/", 1)[0]
        variant = variant_of.get(folder)
        if variant is None:
            continue
        arm = out.setdefault(variant, {}).setdefault(arm_label(r), {"agent": r["agent"], "head": r["head"],
                                                                     "by_seed": {}})
        arm["by_seed"][int(r["seed"])] = r  # a later record of the same seed wins
    from fh_rl.compare.runs import run_from_record

    for variant in out.values():
        for arm in variant.values():
            seeds = sorted(arm["by_seed"])
            recs = [arm["by_seed"][s] for s in seeds]
            arm["seeds"] = seeds
            per_decoding: dict[str, dict[int, list[float]]] = {}
            for s, r in zip(seeds, recs, strict=True):
                run = run_from_record(r)
                for d, returns in (run.decodings or {run.decode: run.returns}).items():
                    per_decoding.setdefault(d, {})[s] = returns
            arm["decodings"] = {d: {"episodes": eps, "returns": {s: float(np.mean(x)) for s, x in eps.items()},
                                    "return": seed_statistics([float(np.mean(eps[s])) for s in sorted(eps)])}
                                for d, eps in sorted(per_decoding.items(), key=lambda kv: _decoding_order(kv[0]))}
            first = arm["decodings"][FIRST_DECODING] if FIRST_DECODING in arm["decodings"] else \
                next(iter(arm["decodings"].values()))
            arm["return"], arm["returns"], arm["episodes"] = first["return"], first["returns"], first["episodes"]
            arm["val"] = {m: seed_statistics([(r.get("val") or {}).get(m) for r in recs])
                          for m in ("nll", "accuracy", "smoothness", "action_mse")}
            checks = {s: run_converged(arm["by_seed"][s]) for s in seeds}
            arm["not_converged"] = {s: fall for s, (ok, fall) in checks.items() if ok is False}
            arm["unchecked"] = [s for s, (ok, _) in checks.items() if ok is None]
    return out


FIRST_DECODING = "argmax"
"""The decoding the axis figures and answers read (the study's default; every run has it)."""
DECODING_ORDER = ("argmax", "sample", "mean", "median", "mode")


def _decoding_order(d: str) -> tuple[int, str]:
    return (DECODING_ORDER.index(d) if d in DECODING_ORDER else len(DECODING_ORDER), d)


def decodings_in(variant: dict[str, dict[str, Any]]) -> list[str]:
    """The decodings any arm of the variant was evaluated under, argmax first."""
    return sorted({d for arm in variant.values() for d in arm["decodings"]}, key=_decoding_order)


def _num(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ci(stat: dict[str, Any], digits: int = 1) -> str:
    if stat["mean"] is None:
        return "-"
    ci = f" [{_num(stat['ci_low'], digits)}, {_num(stat['ci_high'], digits)}]" if stat["ci_low"] is not None else ""
    return f"{_num(stat['mean'], digits)}{ci}"


def _order(item: tuple[str, dict[str, Any]]) -> tuple:
    label, arm = item
    return (arm["agent"], arm["head"] != "linear", arm["head"] == "mse", label)


def variant_table(variant: dict[str, dict[str, Any]]) -> list[str]:
    """One variant's markdown table: each arm's return, held-out metrics and convergence."""
    decodings = decodings_in(variant)
    lines = ["| arm | seeds | " + " | ".join(f"return, `{d}` [95% CI]" for d in decodings)
             + " | val NLL (bins) | val accuracy | val smoothness | val action MSE | converged |",
             "|---|---:|" + "---|" * len(decodings) + "---:|---:|---:|---:|---|"]
    for label, arm in sorted(variant.items(), key=_order):
        bad, unchecked = arm["not_converged"], arm["unchecked"]
        conv = ("yes" if not bad else "**not converged**: seed " + ", ".join(
            f"{s} ({100 * f:.0f}%)" for s, f in sorted(bad.items()))) + (
            f"; {len(unchecked)} unchecked" if unchecked else "")
        v = arm["val"]
        returns = " | ".join(_ci(arm["decodings"][d]["return"]) + (
            f" ({arm['decodings'][d]['return']['n']} of {len(arm['seeds'])} seeds)"
            if arm["decodings"][d]["return"]["n"] != len(arm["seeds"]) else "")
            if d in arm["decodings"] else "-" for d in decodings)
        lines.append(f"| {label} | {len(arm['seeds'])} | {returns} | {_num(v['nll']['mean'], 3)} "
                     f"| {_num(v['accuracy']['mean'], 3)} | {_num(v['smoothness']['mean'], 3)} "
                     f"| {_num(v['action_mse']['mean'], 3)} | {conv} |")
    return lines


def pair_verdicts(variant: dict[str, dict[str, Any]], decode: str = FIRST_DECODING) -> list[dict[str, Any]]:
    """Every pair of arms of one agent under one decoding: ``{a, b, verdict, line}`` with ``verdict`` one of
    ``more`` / ``less`` (a's return against b's: the paired difference's interval excludes 0), ``none`` (no
    evidence of a difference) or ``pending`` (fewer than :data:`MIN_SEEDS` common seeds), ``difference`` (the
    paired difference's statistics, None under 2 common seeds), ``seeds`` (common seeds); ``line`` says it in
    words with the arms' own intervals and P(A > B) beside it."""
    out = []
    items = [(label, {**arm, **arm["decodings"][decode], "seeds": sorted(arm["decodings"][decode]["returns"])})
             for label, arm in sorted(variant.items(), key=_order) if decode in arm["decodings"]]
    for i, (la, a) in enumerate(items):
        for lb, b in items[:i]:
            if a["agent"] != b["agent"]:
                continue
            d = paired_difference(a["returns"], b["returns"])
            own = f"{_ci(a['return'])} vs {_ci(b['return'])}"
            if d is None or len(d["seeds"]) < MIN_SEEDS:
                out.append({"a": la, "b": lb, "verdict": "pending", "difference": d,
                            "seeds": len(d["seeds"]) if d else min(len(a["seeds"]), len(b["seeds"])),
                            "line": f"- {la} vs {lb}: {own} ({len(a['seeds'])} vs {len(b['seeds'])} seeds); "
                                    f"fewer than {MIN_SEEDS} common seeds: no verdict yet."})
                continue
            verdict = "more" if d["ci_low"] > 0 else "less" if d["ci_high"] < 0 else "none"
            word = {"more": f"{la} earns more", "less": f"{la} earns less", "none": "no evidence of a difference"}[verdict]
            p = probability_of_improvement(a["episodes"], b["episodes"])
            prob = f"; P({la} > {lb}) = {p['p']:.2f} [{p['ci_low']:.2f}, {p['ci_high']:.2f}]" if p else ""
            out.append({"a": la, "b": lb, "verdict": verdict, "difference": d, "seeds": len(d["seeds"]),
                        "line": f"- {la} vs {lb}: paired difference {d['mean']:+.1f} [{d['ci_low']:+.1f}, "
                                f"{d['ci_high']:+.1f}] over {len(d['seeds'])} seeds: **{word}** (own intervals "
                                f"{own}){prob}."})
    return out


def variant_verdicts(variant: dict[str, dict[str, Any]], decode: str = FIRST_DECODING) -> list[str]:
    """:func:`pair_verdicts` as markdown lines."""
    return [v["line"] for v in pair_verdicts(variant, decode)]


def all_pair_verdicts(variants: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``{variant: {decoding: pair_verdicts(...)}}``: computed once, read by the verdict lines and the axes."""
    return {name: {d: pair_verdicts(variant, d) for d in decodings_in(variant)} for name, variant in variants.items()}


def axis_pairs(verdicts: dict[str, dict[str, list[dict[str, Any]]]],
               names: Sequence[str]) -> dict[tuple[str, str, str], dict[str, dict[str, Any]]]:
    """``{(a, b, decoding): {variant: pair verdict}}`` over an axis's variants (``verdicts`` from
    :func:`all_pair_verdicts`), a pair's decodings side by side, pairs in the order they first appear."""
    rows: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for name in names:
        for decode, pairs in verdicts.get(name, {}).items():
            for v in pairs:
                rows.setdefault((v["a"], v["b"], decode), {})[name] = v
    pairs = list(dict.fromkeys((a, b) for a, b, _ in rows))  # a pair's decodings side by side
    return dict(sorted(rows.items(), key=lambda kv: (pairs.index(kv[0][:2]), _decoding_order(kv[0][2]))))


def _cell(v: dict[str, Any] | None) -> str:
    if v is None:
        return "-"
    if v["verdict"] == "pending":
        return f"{v['seeds']} seed(s): no verdict yet"
    return _diff(v) + {"more": " **A more**", "less": " **A less**", "none": ""}[v["verdict"]]


def _diff(v: dict[str, Any]) -> str:
    d = v["difference"]
    return f"{d['mean']:+.1f} [{d['ci_low']:+.1f}, {d['ci_high']:+.1f}]"


def axis_answer(verdicts: dict[str, dict[str, list[dict[str, Any]]]], names: Sequence[str], reference: str) -> list[str]:
    """One axis: a table of every pair's per-seed paired difference (A - B, 95% bootstrap interval; **A more** /
    **A less** where it excludes 0) at each of the axis's variants, under each decoding both arms have; then,
    in words, what changes from ``reference`` (the axis's base) to each other variant. ``verdicts``: from
    :func:`all_pair_verdicts`."""
    rows = {key: cells for key, cells in axis_pairs(verdicts, names).items()
            if any(n in cells for n in names if n != reference)}  # a pair only at the base says nothing of the axis
    lines = ["| A vs B | decoding | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)] if rows else []
    for (a, b, decode), cells in rows.items():
        lines.append(f"| {a} vs {b} | {decode} | " + " | ".join(_cell(cells.get(n)) for n in names) + " |")
    words = {"more": "A earns more", "less": "A earns less", "none": "no evidence of a difference"}
    lines += [""] if rows else []
    for name in (n for n in names if n != reference):
        if reference not in verdicts or name not in verdicts:
            lines.append(f"- {name} against {reference}: {name if name not in verdicts else reference} not run yet.")
            continue
        changed, same, waiting, only = [], 0, 0, []
        for (a, b, decode), cells in rows.items():
            here, there = cells.get(name), cells.get(reference)
            if here is None:
                continue
            if here["verdict"] == "pending" or (there is not None and there["verdict"] == "pending"):
                waiting += 1
            elif there is None:
                if here["verdict"] != "none":
                    only.append(f"{a} vs {b} ({decode}): {words[here['verdict']]}, {_diff(here)}")
            elif there["verdict"] == here["verdict"]:
                same += 1
            else:
                changed.append(f"{a} vs {b} ({decode}): {words[there['verdict']]} at {reference}, "
                               f"{words[here['verdict']]} at {name} ({_diff(here)})")
        text = f"- {name} against {reference}: " + ("; ".join(changed) if changed else "no verdict changes")
        text += f"; {same} pair-decoding(s) keep their verdict" if same else ""
        text += f"; {waiting} wait for seeds" if waiting else ""
        if only:
            text += f". Pairs only at {name} that differ: " + "; ".join(only)
        lines.append(text + ".")
    return lines


def plot_axis(name: str, axis: dict[str, Any], variants: dict[str, dict[str, dict[str, Any]]], path: Path) -> Path | None:
    """Return and held-out NLL against the axis's values, one line per arm (CI bars over seeds)."""
    from fh_rl.infra.plots import pyplot, save_figure

    points = [(v, float(x)) for v, x in axis["points"].items() if v in variants]
    if not points:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.0))
    labels = sorted({label for v, _ in points for label in variants[v]},
                    key=lambda lb: next(_order((lb, variants[v][lb])) for v, _ in points if lb in variants[v]))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (metric, ylabel) in zip(axes, (("return", "return, argmax (mean over seeds, 95% CI)"),
                                           ("nll", "held-out NLL of the bins (95% CI)")), strict=True):
        for i, label in enumerate(labels):
            xs, m, lo, hi = [], [], [], []
            for v, x in sorted(points, key=lambda p: p[1]):
                arm = variants[v].get(label)
                stat = None if arm is None else (arm["return"] if metric == "return" else arm["val"]["nll"])
                if stat is None or stat["mean"] is None:
                    continue
                xs.append(x)
                m.append(stat["mean"])
                lo.append(stat["ci_low"] if stat["ci_low"] is not None else stat["mean"])
                hi.append(stat["ci_high"] if stat["ci_high"] is not None else stat["mean"])
            if not xs:
                continue
            m_, lo_, hi_ = np.array(m), np.array(lo), np.array(hi)
            ns = sorted({len(variants[v][label]["seeds"]) for v, _ in points if label in variants[v]})
            n = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
            ax.errorbar(xs, m_, yerr=[m_ - lo_, hi_ - m_], marker="o", capsize=3, color=colors[i % len(colors)],
                        label=f"{label} (seeds: {n})")
            if len(xs) > 1:
                ax.fill_between(xs, lo_, hi_, color=colors[i % len(colors)], alpha=0.12, lw=0)
        if axis.get("log"):
            ax.set_xscale("log")
        ticks = sorted({x for _, x in points})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel(axis.get("title", name))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{axis.get('title', name)}: return and held-out NLL per arm")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_variant_data(datasets: dict[str, Any], path: Path, neighbours: int = 300) -> Path:
    """Each variant's training actions near a few reference states (the ``neighbours`` nearest transitions in
    (cos theta, sin theta, theta_dot / 8)), as histograms over [-2, 2]: rows variants, columns states."""
    from fh_rl.infra.plots import pyplot, save_figure

    states = [("hanging, at rest", np.pi, 0.0), ("horizontal, at rest", np.pi / 2, 0.0),
              ("horizontal (mirror), at rest", -np.pi / 2, 0.0), ("near the top, falling", 0.4, 1.5)]
    plt = pyplot()
    fig, axes = plt.subplots(len(datasets), len(states), figsize=(3.2 * len(states), 1.9 * len(datasets)),
                             squeeze=False, sharex=True)
    edges = np.linspace(-2, 2, 33)
    for r, (name, data) in enumerate(datasets.items()):
        obs = np.asarray(data.observations, dtype=np.float64) * np.array([1.0, 1.0, 1 / 8])
        actions = np.asarray(data.actions, dtype=np.float64)[:, 0]
        for c, (title, theta, omega) in enumerate(states):
            q = np.array([np.cos(theta), np.sin(theta), omega / 8])
            near = np.argsort(((obs - q) ** 2).sum(1))[:neighbours]
            ax = axes[r][c]
            ax.hist(actions[near], bins=edges, color="C0", alpha=0.8)
            if r == 0:
                ax.set_title(f"{title}\n(theta={theta:.2f}, omega={omega:g})", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("torque", fontsize=8)
    fig.suptitle(f"Training actions of each variant at the {neighbours} transitions nearest to four states")
    fig.tight_layout()
    return save_figure(fig, path)

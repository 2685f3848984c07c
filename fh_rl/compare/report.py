"""The comparison report: a markdown table per environment, ``comparison.json`` and the figures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fh_rl.compare.plots import plot_curves, plot_frequencies, plot_pmfs
from fh_rl.compare.runs import EVALUATIONS, VAL_METRICS, Run, find_runs
from fh_rl.compare.stats import (
    BOOTSTRAP_SEED,
    CONFIDENCE,
    N_RESAMPLES,
    decodings_of,
    group_runs,
    summarize,
    under_decoding,
)
from fh_rl.infra.atomic import atomic_write_text, remove_stale_temps, storage_error
from fh_rl.infra.locks import wait_for_file_lock


def _num(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:,.{digits}f}" if abs(x) < 1000 else f"{x:,.0f}"


def _val_cell(row: dict[str, Any], metric: str) -> str:
    """A held-out metric's mean over seeds, with ``(n of N seeds)`` when only n of the group's N runs logged it."""
    stats = row["val"][metric]
    seeds = f" ({stats['n']} of {row['n_seeds']} seeds)" if 0 < stats["n"] < row["n_seeds"] else ""
    return _num(stats["mean"]) + seeds


def markdown_table(env: str, rows: list[dict[str, Any]], evaluation: str = "", decode: str | None = None) -> str:
    """One environment's table under one decoding, headed by how its returns were evaluated (protocol,
    returns-to-go, decoding)."""

    best = [row.get("best_of_evaluations") for row in rows]
    labels = sorted({b["label"] + (", normalised" if b["normalized"] else ", return") for b in best if b})
    extra = f" {'; '.join(labels)}: mean ± 0.67 std |" if labels else ""
    decode = decode or next((r.get("decode") for r in rows if r.get("decode")), None)
    heading = f"### {env}" + (f", decoding `{decode}`" if decode else "")
    lines = [heading, ""] + ([f"Evaluation: {evaluation}.", ""] if evaluation else []) + [
        "| head | seeds | return mean [95% CI] | IQM | normalised | val NLL (bins) | val NLL (density) "
        "| val accuracy | val smoothness | val action MSE |" + extra,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if labels else ""),
    ]
    for row, b in zip(rows, best, strict=True):
        r = row["return"]
        ci = f" [{_num(r['ci_low'], 1)}, {_num(r['ci_high'], 1)}]" if r["ci_low"] is not None else ""
        norm = row["normalized"]["mean"] if row["normalized"] else None
        paper = (f" {_num(b['mean'], 2)} ± {_num(b['half_width'], 2)} |" if b else " - |") if labels else ""
        lines.append(
            f"| {row['label']} | {row['n_seeds']} | {_num(r['mean'], 1)}{ci} | {_num(r['iqm'], 1)} | {_num(norm, 1)} "
            + "".join(f"| {_val_cell(row, m)} " for m in VAL_METRICS) + "|" + paper
        )
    return "\n".join(lines)


def compare(paths: Sequence[str | Path], out: str | Path, *, figures: bool = True, pmf_states: int = 4,
            evaluation: str = "training") -> dict[str, Any]:
    """Find, group and summarise the runs; write ``comparison.md``/``.json`` and figures into ``out``.

    ``evaluation``: which evaluation of each run to read, ``training`` (``eval.json``) or ``latest``."""
    runs, skipped = find_runs(paths, evaluation=evaluation)
    if not runs:
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
        raise ValueError(f"no complete runs found under {', '.join(map(str, paths))}" + (f" ({reasons})" if reasons else ""))
    return compare_runs(runs, out, skipped=skipped, figures=figures, pmf_states=pmf_states, evaluation=evaluation)


def compare_runs(runs: Sequence[Run], out: str | Path, *, skipped: Sequence[dict[str, str]] = (), figures: bool = True,
                 pmf_states: int = 4, evaluation: str = "training") -> dict[str, Any]:
    """:func:`compare` of runs already read: from run directories or from a study's records
    (:func:`fh_rl.compare.runs.run_from_record`, whose stored curves and pmfs stand in for the directory)."""
    skipped = list(skipped)
    groups, dropped = group_runs(runs)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise (storage_error(exc, out / "comparison.md") or exc) from None
    with wait_for_file_lock(out / "comparison.json"):  # one compare writes into ``out`` at a time
        _remove_stale_temps(out)
        return _write_report(runs, groups, skipped + dropped, out, figures=figures, pmf_states=pmf_states,
                             evaluation=evaluation)


def _remove_stale_temps(out: Path) -> None:
    """Temp files of a compare killed while writing into ``out`` (only compare writes these names there)."""
    for name in ("comparison.json", "comparison.md"):
        remove_stale_temps(out, name)
    for path in out.glob(".*.png.*.tmp"):
        path.unlink(missing_ok=True)


def _write_report(runs: list[Any], groups: dict[str, Any], skipped: list[dict[str, str]], out: Path, *,
                  figures: bool, pmf_states: int, evaluation: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "statistics": {"return": "mean over seeds of each run's mean evaluation return (first target), per "
                                 "decoding: `environments` holds each environment's first decoding, `decodings` "
                                 "every decoding's rows",
                       "ci": f"{CONFIDENCE:.0%} bootstrap of the mean over seeds, percentile method, "
                             f"{N_RESAMPLES} resamples, rng seed {BOOTSTRAP_SEED} (scipy.stats.bootstrap)",
                       "iqm": "scipy.stats.trim_mean(per-seed returns, 0.25)",
                       "val": "last logged val/* value of each run, mean over seeds",
                       "best_of_evaluations": "the paper's statistic, only for runs that evaluated during training: "
                                              "per seed the best mean return over its evaluations, normalised "
                                              "where possible, mean +- 0.67 std (ddof 0) over seeds; optimistic "
                                              "(the evaluation episodes pick the checkpoint)",
                       "evaluation": EVALUATIONS[evaluation]},
        "environments": {},
        "figures": [],
        "skipped": skipped,
    }
    result["decodings"] = {}
    md = ["# Head comparison", ""]
    for env, env_groups in groups.items():
        decodings = decodings_of([r for g in env_groups for r in g.runs])
        decoded = {d: under_decoding(env_groups, d) for d in decodings}
        by_decoding = {d: [summarize(g) for g in groups_d] for d, groups_d in decoded.items()}
        rows = by_decoding[decodings[0]]  # the first decoding's: the figures and older readers use these
        result["environments"][env] = rows
        result["decodings"][env] = by_decoding
        for d, d_rows in by_decoding.items():
            md += [markdown_table(env, d_rows, _evaluation(decoded[d]), d), ""]
        if not figures:
            continue
        fig = plot_frequencies(env, rows, out / f"frequencies-{_slug(env)}.png")
        if fig is not None:
            result["figures"].append(str(fig))
            md += [f"![return, NLL and smoothness vs frequencies]({fig.name})", ""]
        fig = plot_curves(env, env_groups, out / f"curves-{_slug(env)}.png")
        if fig is not None:
            result["figures"].append(str(fig))
            md += [f"![learning curves]({fig.name})", ""]
        try:
            fig = plot_pmfs(env, env_groups, out / f"pmfs-{_slug(env)}.png", states=pmf_states)
        except (ValueError, FileNotFoundError, KeyError) as exc:  # e.g. the dataset moved: tables still come out
            result["skipped"].append({"path": f"pmfs-{_slug(env)}.png", "reason": f"no pmf figure: {exc}"})
        else:
            result["figures"].append(str(fig))
            md += [f"![learned pmfs]({fig.name})", ""]
    if result["skipped"]:
        md += ["Skipped:", ""] + [f"- `{s['path']}`: {s['reason']}" for s in result["skipped"]] + [""]
    used = sorted({r.eval_file for r in runs if r.eval_file != "eval.json"})
    md += [f"Return: {result['statistics']['return']}; CI: {result['statistics']['ci']}; "
           f"IQM: {result['statistics']['iqm']}; val: {result['statistics']['val']}"
           + (f"; best of N: {result['statistics']['best_of_evaluations']}"
              if any(r.get("best_of_evaluations") for rows in result["environments"].values() for r in rows) else "")
           + ".", "",
           f"Evaluation: {result['statistics']['evaluation']}"
           + (f" ({len(used)} run(s) read a later evaluation; each row's files are in comparison.json)." if used else "."),
           ""]
    atomic_write_text(out / "comparison.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    atomic_write_text(out / "comparison.md", "\n".join(md))
    result["markdown"] = "\n".join(md)
    return result


def _evaluation(groups: list[Any]) -> str:
    """The environment protocol and evaluation settings of a table's runs ("; "-joined when they differ)."""
    seen = []
    for g in groups:
        for run in g.runs:
            where = f"{run.protocol} protocol, " if run.protocol else ""
            text = where + run.evaluation
            if text not in seen:
                seen.append(text)
    return "; ".join(seen)


def _slug(env: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in env)


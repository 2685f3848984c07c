"""Finding and reading run directories: config, evaluation returns and the last held-out scalars.

An evaluation may hold several decodings (``eval.decode``: one record per
target and decoding, each naming it under ``decode``; records written before
decodings were named mean what their ``sample`` / ``sample_within_bin`` fields
say, :func:`fh_rl.evaluate.record_decoding`). A :class:`Run` keeps the first
target's returns per decoding; compare reports each decoding on its own.

A run may hold several evaluations: ``eval.json`` (made when training
finished) and one ``eval-<time>.json`` per ``python -m fh_rl.evaluate``. Which
one compare reads is chosen by ``evaluation`` (:data:`EVALUATIONS`) and
recorded per run, so a report always says which evaluation it used.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

VAL_METRICS = ("nll", "nll_density", "accuracy", "smoothness", "action_mse")
"""The held-out scalars compare reads (``val/<name>``); the two NLLs are in different units (see the package doc)."""
EVALUATIONS = {
    "training": "each run's eval.json, the evaluation made when its training finished",
    "latest": "each run's newest evaluation (eval.json or an eval-<time>.json written by python -m fh_rl.evaluate)",
}


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
    """Evaluation returns of the first target return under :attr:`decode`, one per episode."""
    history: list[tuple[int, float]] = field(default_factory=list)
    """(step, mean return of the first target) of every evaluation of the run, during training and final,
    under :attr:`decode`."""
    val: dict[str, float | None] = field(default_factory=dict)
    protocol: str | None = None
    """The evaluation's environment protocol (eval.json; e.g. ``dt-paper`` for Atari), None for non-Atari."""
    evaluation: str = ""
    """How the returns were evaluated, in words: returns-to-go mode and sampled or argmax actions."""
    eval_file: str = "eval.json"
    """The evaluation file the returns come from (a name in ``path``)."""
    decode: str = "sample"
    """The decoding :attr:`returns` and :attr:`history` are under (the evaluation's first)."""
    decodings: dict[str, list[float]] = field(default_factory=dict)
    """Returns of the first target under each decoding the evaluation holds, in its order."""
    histories: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """:attr:`history` per decoding."""

    def under(self, decode: str) -> Run | None:
        """This run as read under another of its decodings (None when it was not evaluated under it)."""
        import dataclasses

        if decode not in self.decodings:
            return None
        return dataclasses.replace(self, decode=decode, returns=self.decodings[decode],
                                   history=self.histories.get(decode, []))
    curves: dict[str, list[list[float]]] | None = None
    """Stored learning curves ``{tag: [[step, value], ...]}`` (a study's record); None: read them from ``path``."""
    pmfs: dict[str, Any] | None = None
    """Stored pmfs at the pmf figure's held-out states (a study's record, see :func:`run_pmfs`); None: rebuild
    them from ``path``'s checkpoint."""

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
    return {tag: None if series is None else float(series[1][-1]) for tag, series in scalar_series(run_dir, tags).items()}


def scalar_series(run_dir: Path, tags: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray] | None]:
    """(steps, values) of each scalar tag in the run's TensorBoard events, by step (the last write of a step
    wins: a resumed run may log a step twice); None when the tag is absent."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 1, "histograms": 1, "tensors": 1,
                                                         "audio": 1, "compressedHistograms": 1})
    acc.Reload()
    have = set(acc.Tags().get("scalars", []))
    out: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for tag in tags:
        if tag not in have:
            out[tag] = None
            continue
        by_step = {e.step: float(e.value) for e in sorted(acc.Scalars(tag), key=lambda e: (e.step, e.wall_time))}
        steps = np.array(sorted(by_step), dtype=np.int64)
        out[tag] = steps, np.array([by_step[s] for s in steps.tolist()])
    return out


def run_curves(run: Run, tags: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray] | None]:
    """:func:`scalar_series` of ``tags``, from the run's stored curves when it has them (a run known only by its
    record), else from its TensorBoard events."""
    if run.curves is None:
        return scalar_series(run.path, tags) if run.path.is_dir() else dict.fromkeys(tags)
    out: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for tag in tags:
        pts = run.curves.get(tag)
        out[tag] = None if not pts else (np.array([int(p[0]) for p in pts], dtype=np.int64),
                                         np.array([float(p[1]) for p in pts]))
    return out


def read_decodings(results: list[dict[str, Any]], history: list[dict[str, Any]] = ()) -> tuple[
        str, dict[str, list[float]], dict[str, list[tuple[int, float]]]]:
    """(the first decoding, the first target's returns per decoding, (step, mean return) per decoding) of an
    evaluation's ``results`` and ``history`` records (:func:`fh_rl.evaluate.record_decoding` names records written
    before decodings had names; a history record with neither ``decode`` nor ``sample`` counts as the first's)."""
    from fh_rl.evaluate import record_decoding

    first = results[0]
    decode = record_decoding(first)
    decodings: dict[str, list[float]] = {}
    for r in results:
        if r.get("target_return") == first.get("target_return"):
            decodings.setdefault(record_decoding(r), [float(x) for x in r["returns"]])
    histories: dict[str, list[tuple[int, float]]] = {}
    for h in history:
        seen = set()
        for r in h["results"]:
            d = record_decoding(r) if "decode" in r or "sample" in r else decode
            if r.get("target_return") == h["results"][0].get("target_return") and d not in seen:
                seen.add(d)
                histories.setdefault(d, []).append((int(h["step"]), float(np.mean(r["returns"]))))
    return decode, decodings, histories


def _finite(decodings: dict[str, list[float]]) -> dict[str, list[float]]:
    return {d: r for d, r in decodings.items() if r and all(math.isfinite(x) for x in r)}


def run_from_record(record: dict[str, Any]) -> Run:
    """A :class:`Run` from a study's per-run record (``docs/results/<study>.json``), without its run directory."""
    config = dict(record["config"])
    evaluations = [e if "decode" in e or "sample" in e else  # records made before evaluations named their decoding
                   {**e, "sample": config.get("eval.sample", True), "sample_within_bin": config.get("env.sample_within_bin")}
                   for e in record["evaluations"]]
    first = evaluations[0]
    decode, decodings, _ = read_decodings(evaluations)
    history = [(int(s), float(m)) for s, m in record.get("history") or []]
    return Run(
        path=Path(record["path"]),
        env=record["env"],
        agent=record["agent"],
        head=record["head"],
        head_params=dict(record["head_params"]),
        seed=int(record["seed"]),
        config=config,
        target=first.get("target_return"),
        returns=[float(r) for r in first["returns"]],
        val=dict(record.get("val") or {}),
        protocol=record.get("protocol"),
        evaluation=re.sub(r", (sampled|argmax) actions$", "", record.get("evaluation", "")),  # now the decoding's
        eval_file=record.get("eval_file", "eval.json"),
        history=history,
        curves=record.get("curves"),
        pmfs=record.get("pmfs"),
        decode=decode,
        decodings=_finite(decodings),
        histories={decode: history},
    )


def _eval_order(path: Path) -> tuple[str, int]:
    """``eval-<YYYYmmdd-HHMMSS>[-n].json`` -> (stamp, n): later evaluations sort last."""
    stamp, n = path.stem[len("eval-"):][:15], path.stem[len("eval-") + 16:]
    return stamp, int(n) if n.isdigit() else 1


def evaluation_file(run_dir: Path, evaluation: str = "training") -> Path:
    """The evaluation ``evaluation`` picks in ``run_dir`` (FileNotFoundError when the run has none)."""
    if evaluation not in EVALUATIONS:
        raise ValueError(f"evaluation must be one of {', '.join(EVALUATIONS)}, got {evaluation!r}")
    training = run_dir / "eval.json"
    if evaluation == "latest":
        later = list(run_dir.glob("eval-*.json"))
        if later:
            return max(later, key=_eval_order)
    if not training.is_file():
        raise FileNotFoundError("incomplete: no eval.json (training or evaluation did not finish)")
    return training


def load_run(run_dir: str | Path, *, read_events: bool = True, evaluation: str = "training") -> Run:
    """Read a run directory; ValueError/FileNotFoundError saying what is missing or malformed.

    ``evaluation``: which of the run's evaluations to read (:data:`EVALUATIONS`)."""
    import yaml

    from fh_rl.config import with_current_defaults

    run_dir = Path(run_dir)
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    except FileNotFoundError:
        raise FileNotFoundError("no config.yaml") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"config.yaml unreadable ({type(exc).__name__})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("head"), dict) or not isinstance(cfg.get("env"), dict):
        raise ValueError("config.yaml is not an fh_rl run config (no env/head sections)")
    cfg = _config_of_record(run_dir, cfg)
    eval_path = evaluation_file(run_dir, evaluation)
    try:
        payload = json.loads(eval_path.read_text())
    except (OSError, ValueError):
        raise ValueError(f"{eval_path.name} is malformed (expected results[0].returns)") from None
    if isinstance(payload, dict) and "results" not in payload and isinstance(payload.get("history"), list):
        raise FileNotFoundError(f"incomplete: {len(payload['history'])} evaluation(s) during training, "
                                f"no final one (still training, or stopped)")
    try:
        first = payload["results"][0]
        decode, decodings, histories = read_decodings(payload["results"], payload.get("history", []))
        returns = decodings[decode]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise ValueError(f"{eval_path.name} is malformed (expected results[0].returns)") from None
    if not returns or not all(math.isfinite(r) for r in returns):
        raise ValueError(f"{eval_path.name} holds no finite returns")
    if payload.get("env") is not None and not _same_env(str(payload["env"]), str(cfg["env"].get("name"))):
        raise ValueError(f"{eval_path.name} evaluated {payload['env']} but the run trained on "
                         f"{cfg['env'].get('name')} (its checkpoint's config): not counted under either")
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
        config=_flatten(with_current_defaults(cfg)),  # options added since the run was made: their defaults
        target=first.get("target_return"),
        returns=returns,
        protocol=payload.get("protocol") or _resolved_protocol(cfg),
        evaluation=f"{first.get('rtg_mode', 'transformed')} returns-to-go",
        eval_file=eval_path.name,
        history=histories.get(decode, []),
        decode=decode,
        decodings=_finite(decodings),
        histories=histories,
    )
    if read_events:
        values = last_scalars(run_dir, [f"val/{m}" for m in VAL_METRICS])
        run.val = {m: values[f"val/{m}"] for m in VAL_METRICS}
    return run


def _same_env(a: str, b: str) -> bool:
    if a == b:
        return True
    from fh_rl.envs import canonical_env_name

    try:
        return canonical_env_name(a) == canonical_env_name(b)
    except ValueError:
        return False


def _config_of_record(run_dir: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """The config the run trained with: its checkpoint's when there is one (``config.yaml`` is a copy that can be
    edited after training), with a warning on stderr naming the keys where ``config.yaml`` differs."""
    import sys

    import yaml

    from fh_rl.config import with_current_defaults

    path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file() or path.stat().st_size == 0:
        return cfg  # --no-figures needs no checkpoint: config.yaml is all there is
    try:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        saved = yaml.safe_load(yaml.safe_dump(state["config"]))  # as config.yaml would hold it
    except Exception:  # an unreadable checkpoint: the figures say so; the tables use config.yaml
        return cfg
    if not isinstance(saved, dict) or not isinstance(saved.get("env"), dict) or not isinstance(saved.get("head"), dict):
        return cfg
    mine, theirs = _flatten(with_current_defaults(cfg)), _flatten(with_current_defaults(saved))
    differ = [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
    if differ:
        shown = "; ".join(f"{k}: {mine.get(k)!r} in config.yaml, {theirs.get(k)!r} trained" for k in differ[:3])
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        print(f"warning: {run_dir / 'config.yaml'} differs from the config saved in its checkpoint ({shown}{more}); "
              f"compare uses the checkpoint's, the one the run trained with", file=sys.stderr)
    return saved


def _resolved_protocol(cfg: dict[str, Any]) -> str | None:
    """The protocol of a run whose eval.json predates recording it: its config's, Atari's default resolved."""
    from fh_rl.envs import resolve_protocol

    try:
        return resolve_protocol(str(cfg["env"].get("name")), cfg["env"].get("protocol"))
    except (ValueError, KeyError):
        return None


def find_runs(paths: Sequence[str | Path], *, read_events: bool = True,
              evaluation: str = "training") -> tuple[list[Run], list[dict[str, str]]]:
    """Complete runs below ``paths`` and ``[{path, reason}]`` for the run directories skipped."""
    if evaluation not in EVALUATIONS:
        raise ValueError(f"--eval must be one of {', '.join(EVALUATIONS)}, got {evaluation!r}")
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
                runs.append(load_run(run_dir, read_events=read_events, evaluation=evaluation))
            except (ValueError, FileNotFoundError) as exc:
                skipped.append({"path": str(run_dir), "reason": str(exc)})
    return runs, skipped


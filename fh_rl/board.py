"""What TensorBoard shows of runs: the custom-scalars layout, the HParams table, one tag per metric.

    tensorboard --logdir runs        # after `python -m fh_rl.train --head fourier` and `--head linear`

Every run writes everything TensorBoard shows of it into its own events file,
so a logdir holds run directories only (no pseudo-run for a root's layout):

- the custom-scalars layout (:func:`write_layout`), the same in every run
  (TensorBoard merges identical layouts), which overlays each metric of every
  run in one chart (the heads side by side);
- its HParams session (:func:`write_session`, values from :func:`run_hparams`):
  the head, its parameters, agent, env, seed, dataset and every other setting
  that can change what a run learns or scores. No HParams experiment is
  written: TensorBoard builds the columns from the runs it shows and marks the
  settings whose values differ among them, lists those first and displays the
  first five, so the default table holds the settings that vary (e.g. the
  head, ``env.margin_bins``, the seed) and no column for a head that never ran.

Tags, one per metric: ``train/*`` and ``val/*`` as logged by the trainer;
``eval/return_mean``, ``eval/return_std`` and ``eval/normalized``: the
evaluation made by training (during it with ``eval.every_steps``, and when it
finished), at the run's own target (the first of its targets); returns at any
further target go to the same names with a suffix,
``eval/return_mean/target_<R>`` (:func:`eval_tag`), never both for one
target. ``python -m fh_rl.evaluate`` logs its re-evaluations under
``reeval/*`` (same suffix rule), so ``eval/*`` (and the HParams metric of the
same name) stays the training-time evaluation, the one ``python -m
fh_rl.compare`` reads by default (``--eval latest``: the newest re-evaluation).
Each decoding (``eval.decode``) also gets its own, ``eval/<decoding>/return_mean``
(``eval/argmax/return_mean``, ``eval/mean/return_mean``...; ``reeval/<decoding>/...``); the plain
``eval/return_mean`` is the first decoding's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CUSTOM_SCALARS_LAYOUT = {
    "evaluation (all runs overlaid)": {
        "return mean": ["Multiline", [r"eval/return_mean(/target_.*)?$"]],
        "normalised return": ["Multiline", [r"eval/normalized(/target_.*)?$"]],
        "return mean per decoding": ["Multiline", [r"eval/[^/]+/return_mean(/target_.*)?$"]],
        "return mean, re-evaluated (python -m fh_rl.evaluate)": ["Multiline", [r"reeval/return_mean(/target_.*)?$"]],
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

NUMERICAL_HEAD_PARAMS = frozenset({"eps", "init_scale", "min_scale", "boundary_eps"})
"""Head parameters that guard the arithmetic rather than shape the distribution: left out of the HParams table."""

LAYOUT_SUFFIX = ".fh_rl-layout"
"""Event files that older versions wrote into a run root (a pseudo-run in TensorBoard) end with this;
:func:`remove_root_layouts` deletes them."""

HPARAM_IGNORED = frozenset({
    "run_root", "train.device", "train.threads", "train.amp", "train.compile", "train.prefetch", "eval.workers",
    "train.checkpoint_every", "train.log_every", "train.val_every", "train.pmf_states", "eval.every_steps",
    "env.name", "agent.name", "head.name", "seed", "dataset.path", "dataset.format", "dataset.game", "dataset.run",
    "dataset.build", "dataset.build_steps", "dataset.build_expert_episodes", "dataset.build_medium_episodes",
    "dataset.build_seed",
})
"""Config keys that are no HParams column: how a run is executed rather than what it learns, or shown in a
shorter column (``env``, ``agent``, ``head``, ``seed``, ``dataset``)."""


def eval_tag(metric: str, target: float | None, primary: float | None, prefix: str = "eval",
             decode: str | None = None) -> str:
    """``<prefix>/<metric>`` at the run's own target ``primary`` (or without one, BC); ``<prefix>/<metric>/target_<R>``
    at any other. ``prefix``: ``eval`` (training's evaluations) or ``reeval`` (``python -m fh_rl.evaluate``); with a
    decoding ``<prefix>/<decode>/<metric>[/target_<R>]``."""
    base = f"{prefix}/{decode}/{metric}" if decode else f"{prefix}/{metric}"
    if target is None or target == primary:
        return base
    return f"{base}/target_{target:g}"


# ----------------------------------------------------------------------------- hyperparameters


def run_hparams(cfg: Any) -> dict[str, Any]:
    """The run's HParams values: head, its parameters, agent, env, seed, dataset, then every other setting that can
    change what the run learns or scores (config keys by their dotted names, ``env.margin_bins``...; not
    :data:`HPARAM_IGNORED`). TensorBoard shows first the ones that differ among the runs in its logdir."""
    from fh_rl.heads import head_params

    params = {**head_params(cfg.head.name), **cfg.head.params}
    out: dict[str, Any] = {"head": cfg.head.name}
    for key, value in sorted(params.items()):
        if key not in NUMERICAL_HEAD_PARAMS and isinstance(value, (bool, int, float, str)):
            out[f"head.{key}"] = value
    out.update({"agent": cfg.agent.name, "env": cfg.env.name, "seed": cfg.seed, "dataset": dataset_label(cfg)})
    for key, value in _flat(cfg.to_dict()):
        if key in HPARAM_IGNORED or key == "head" or value is None:  # the head: its columns above
            continue
        out[key] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
    return out


def _flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in d.items():
        if isinstance(value, dict) and not (prefix == "" and key == "head"):
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def dataset_label(cfg: Any) -> str:
    """A short name of the run's data: the file (HDF5, Minari) or ``<root>/<game>/<run>`` (DQN-Replay), and the cap."""
    d = cfg.dataset
    if d.format == "dqn-replay":
        label = f"{Path(d.path).name}/{d.game or cfg.env.name}/{d.run}"
    elif d.format == "minari":
        label = f"minari:{d.path}"
    else:
        label = Path(d.path).name or d.path
    return label + (f" (max {d.max_transitions})" if d.max_transitions else "")


def _hparams_summary(which: str, payload: Any) -> Any:
    """A Summary holding one HParams plugin record (``experiment``, ``session_start_info`` or ``session_end_info``)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    tag = {"experiment": metadata.EXPERIMENT_TAG, "session_start_info": metadata.SESSION_START_INFO_TAG,
           "session_end_info": metadata.SESSION_END_INFO_TAG}[which]
    content = HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **{which: payload})
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME,
                                                                  content=content.SerializeToString()))
    return Summary(value=[Summary.Value(tag=tag, metadata=meta)])


def write_session(writer: Any, hparams: dict[str, Any], *, end: bool = True) -> None:
    """The run's HParams row: its hyperparameters (start) and, with ``end``, its completion (metric values are its scalars)."""
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.plugin_data_pb2 import SessionEndInfo, SessionStartInfo

    start = SessionStartInfo()
    for key, value in hparams.items():
        if isinstance(value, bool):
            start.hparams[key].bool_value = value
        elif isinstance(value, (int, float)):
            start.hparams[key].number_value = float(value)
        else:
            start.hparams[key].string_value = str(value)
    file_writer = writer._get_file_writer()
    file_writer.add_summary(_hparams_summary("session_start_info", start))
    if end:
        file_writer.add_summary(_hparams_summary("session_end_info", SessionEndInfo(status=Status.Value("STATUS_SUCCESS"))))


# ----------------------------------------------------------------------------- the layout


def write_layout(writer: Any) -> None:
    """The custom-scalars layout, into the run's own events (every run carries the same one; TensorBoard merges)."""
    writer.add_custom_scalars(CUSTOM_SCALARS_LAYOUT)


def remove_root_layouts(root: str | os.PathLike) -> list[Path]:
    """Delete the layout files older versions wrote into ``root`` (each showed as a pseudo-run); the paths deleted."""
    gone = []
    for old in Path(root).glob(f"events.out.tfevents.*{LAYOUT_SUFFIX}"):
        old.unlink(missing_ok=True)
        gone.append(old)
    return gone

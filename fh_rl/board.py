"""What TensorBoard shows of a run root: the custom-scalars layout, a focused HParams table, one tag per metric.

    tensorboard --logdir runs        # after `python -m fh_rl.train --head fourier` and `--head linear`

Every run root that ``train`` (or a sweep) writes into gets one small event
file of its own, :func:`write_run_root`: the custom-scalars layout that
overlays each metric of every run under the root in one chart (the heads side
by side), and the HParams experiment that names the columns worth comparing
(:data:`HPARAM_METRICS` and the hyperparameters of :func:`run_hparams`: head,
the head's parameters, agent, env, seed, dataset). Each run then writes its
own values (:func:`write_session`).

Tags, one per metric: ``train/*`` and ``val/*`` as logged by the trainer;
``eval/return_mean``, ``eval/return_std`` and ``eval/normalized`` at the run's
evaluation target (the first of its targets: the one ``train`` evaluates);
returns at any further target go to the same names with a suffix,
``eval/return_mean/target_<R>`` (:func:`eval_tag`), never both for one target.
Each decoding (``eval.decode``) also gets its own, ``eval/<decoding>/return_mean``
(``eval/argmax/return_mean``, ``eval/mean/return_mean``...); the plain
``eval/return_mean`` is the first decoding's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

CUSTOM_SCALARS_LAYOUT = {
    "evaluation (all runs overlaid)": {
        "return mean": ["Multiline", [r"eval/return_mean(/target_.*)?$"]],
        "normalised return": ["Multiline", [r"eval/normalized(/target_.*)?$"]],
        "return mean per decoding": ["Multiline", [r"eval/[^/]+/return_mean(/target_.*)?$"]],
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

HPARAM_METRICS = ("eval/return_mean", "eval/normalized", "val/nll", "val/nll_density", "val/smoothness", "val/action_mse")
"""The HParams table's metric columns (each run's last value of these scalar tags)."""

NUMERICAL_HEAD_PARAMS = frozenset({"eps", "init_scale", "min_scale", "boundary_eps"})
"""Head parameters that guard the arithmetic rather than shape the distribution: left out of the HParams table."""

LAYOUT_SUFFIX = ".fh_rl-layout"
"""Event files holding a root's layout end with this (older versions wrote it with a timestamp before it)."""


def eval_tag(metric: str, target: float | None, primary: float | None, decode: str | None = None) -> str:
    """``eval/<metric>`` at the run's own target ``primary`` (or without one, BC); ``eval/<metric>/target_<R>`` at any
    other; with a decoding ``eval/<decode>/<metric>[/target_<R>]``."""
    base = f"eval/{decode}/{metric}" if decode else f"eval/{metric}"
    if target is None or target == primary:
        return base
    return f"{base}/target_{target:g}"


# ----------------------------------------------------------------------------- hyperparameters


def run_hparams(cfg: Any) -> dict[str, Any]:
    """The hyperparameters a head comparison needs (HParams columns): head, its parameters, agent, env, seed, dataset."""
    from fh_rl.heads import head_params

    params = {**head_params(cfg.head.name), **cfg.head.params}
    out: dict[str, Any] = {"head": cfg.head.name}
    for key, value in sorted(params.items()):
        if key not in NUMERICAL_HEAD_PARAMS and isinstance(value, (bool, int, float, str)):
            out[f"head.{key}"] = value
    out.update({"agent": cfg.agent.name, "env": cfg.env.name, "seed": cfg.seed, "dataset": dataset_label(cfg)})
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


def _hparam_types() -> dict[str, str]:
    """Every HParams column with its type: the shared ones and each registered head's parameters."""
    from fh_rl.heads import HEADS, head_params

    types = {"head": "STRING"}
    for name in HEADS.names():
        for key, default in sorted(head_params(name).items()):
            if key in NUMERICAL_HEAD_PARAMS:
                continue
            if isinstance(default, bool):
                types[f"head.{key}"] = "BOOL"
            elif isinstance(default, (int, float)):
                types[f"head.{key}"] = "FLOAT64"
            elif isinstance(default, str):
                types[f"head.{key}"] = "STRING"
    types.update({"agent": "STRING", "env": "STRING", "seed": "FLOAT64", "dataset": "STRING"})
    return types


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


def experiment_summary() -> Any:
    """The root's HParams experiment: the focused columns (:func:`_hparam_types`) and :data:`HPARAM_METRICS`."""
    from tensorboard.plugins.hparams.api_pb2 import DataType, Experiment, HParamInfo, MetricInfo, MetricName

    # `differs` puts the head's columns and the seed first: TensorBoard shows the first five columns by default.
    exp = Experiment(
        hparam_infos=[HParamInfo(name=k, type=DataType.Value(f"DATA_TYPE_{t}"), differs=k.startswith("head") or k == "seed")
                      for k, t in _hparam_types().items()],
        metric_infos=[MetricInfo(name=MetricName(tag=m)) for m in HPARAM_METRICS],
    )
    return _hparams_summary("experiment", exp)


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


# ----------------------------------------------------------------------------- the run root


def _root_content_key() -> str:
    blob = json.dumps({"layout": CUSTOM_SCALARS_LAYOUT, "hparams": _hparam_types(), "metrics": HPARAM_METRICS},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def write_run_root(root: str | os.PathLike) -> Path:
    """Write the root's layout and HParams experiment once (``tensorboard --logdir root`` shows them).

    The file's name carries a hash of its content: an existing one is kept, an
    older version (another layout, another set of heads) is replaced. It
    appears atomically, so runs started together never see half a file.
    """
    from torch.utils.tensorboard import SummaryWriter

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"events.out.tfevents.0.fh_rl-{_root_content_key()}{LAYOUT_SUFFIX}"
    if path.exists():
        return path
    tmp = Path(tempfile.mkdtemp(prefix=".fh_rl-layout-", dir=root))
    try:
        with SummaryWriter(str(tmp)) as writer:
            writer.add_custom_scalars(CUSTOM_SCALARS_LAYOUT)
            writer._get_file_writer().add_summary(experiment_summary())
        (written,) = tmp.glob("events.out.tfevents.*")
        os.replace(written, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in root.glob(f"events.out.tfevents.*{LAYOUT_SUFFIX}"):
        if old != path:
            old.unlink(missing_ok=True)
    return path

"""D4RL-layout HDF5 datasets (read and write) and local Minari datasets.

D4RL layout: flat datasets ``observations`` (N, ...), ``actions`` (N,) or
(N, A), ``rewards`` (N,), ``terminals`` (N,), ``timeouts`` (N,); an episode
ends at a terminal (terminated) or a timeout (truncated); rows after the last
end form a final episode marked truncated. Optional ``next_observations`` and
``infos/*`` are ignored. fh_rl writes its own metadata as attributes of a
``metadata`` group (``frame_stack``, ``name``, and what the caller passes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from fh_rl.infra.atomic import atomic_path, ensure_free_space
from fh_rl.datasets.trajectory import Episode, TrajectoryDataset
from fh_rl.datasets.validate import check_finite, check_magnitude, check_numeric

REQUIRED = ("observations", "actions", "rewards", "terminals")
HDF5_OVERHEAD = 64 << 10
"""Bytes :func:`write_hdf5` wants free beyond its uncompressed data (HDF5's headers, chunk indexes, metadata)."""


def write_hdf5(
    path: str | os.PathLike,
    dataset: TrajectoryDataset,
    metadata: dict[str, Any] | None = None,
    infos: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write ``dataset`` in the D4RL layout (gzip datasets), atomically.

    ``infos`` holds optional per-transition arrays (one row per transition),
    written as ``infos/<key>`` like D4RL's.
    The file is written to a temporary name in the target directory and
    renamed into place, so an existing file is never half-overwritten.
    ``metadata`` values must be str, numbers, or arrays of those.
    """
    path = Path(path).expanduser()
    if not isinstance(dataset, TrajectoryDataset):
        raise TypeError(f"write_hdf5 expects a TrajectoryDataset, got {type(dataset).__name__}")
    path.parent.mkdir(parents=True, exist_ok=True)
    n = dataset.num_transitions
    ends = dataset.offsets[1:] - 1
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    terminals[ends[dataset.terminated]] = True
    timeouts[ends[~dataset.terminated]] = True  # every non-terminated episode end is a truncation
    for key, arr in (infos or {}).items():
        if len(arr) != n:
            raise ValueError(f"infos[{key!r}] has {len(arr)} rows but the dataset has {n} transitions")
    # HDF5 cannot fail cleanly when the disk fills up under it (h5py then ends the process with a segmentation
    # fault): make sure the uncompressed data fits first, with room for HDF5's own structures.
    raw = (dataset.observations.nbytes + dataset.actions.nbytes + dataset.rewards.nbytes + 2 * n
           + sum(np.asarray(a).nbytes for a in (infos or {}).values()))
    ensure_free_space(path, HDF5_OVERHEAD + 1.05 * raw)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        kw = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        obs = dataset.observations
        chunks = (max(1, min(n, (1 << 20) // max(1, obs[:1].nbytes))), *obs.shape[1:])
        d = f.create_dataset("observations", shape=obs.shape, dtype=obs.dtype, chunks=chunks, **kw)
        step = chunks[0] * 16
        for lo in range(0, n, step):  # streamed, so memory-mapped observations are never loaded whole
            d[lo : lo + step] = obs[lo : lo + step]
        f.create_dataset("actions", data=dataset.actions, **kw)
        f.create_dataset("rewards", data=dataset.rewards, **kw)
        f.create_dataset("terminals", data=terminals, **kw)
        f.create_dataset("timeouts", data=timeouts, **kw)
        if infos:
            group = f.create_group("infos")
            for key, arr in infos.items():
                group.create_dataset(key, data=np.asarray(arr), **kw)
        meta = f.create_group("metadata")
        meta.attrs["frame_stack"] = dataset.frame_stack
        meta.attrs["name"] = dataset.name
        meta.attrs["fh_rl_format"] = 1
        for k, v in (metadata or {}).items():
            meta.attrs[k] = v if not isinstance(v, (dict, list)) else json.dumps(v, allow_nan=False)
    return path


def _read(f: h5py.File, path: Path, key: str) -> np.ndarray:
    """Dataset ``key`` of ``f``, checked to hold numbers (flags: booleans too) before it is read."""
    if key not in f:
        raise ValueError(f"{path}: missing dataset {key!r}; a D4RL-layout file needs {', '.join(REQUIRED)} (timeouts optional)")
    obj = f[key]
    if not isinstance(obj, h5py.Dataset):
        raise ValueError(f"{path}: {key!r} is a group, expected a dataset")
    check_numeric(np.empty(0, obj.dtype), source=path, key=key, boolean=key in ("terminals", "timeouts"))
    return obj[()]


def load_hdf5(path: str | os.PathLike, *, name: str | None = None) -> TrajectoryDataset:
    """Read a D4RL-layout HDF5 file (terminals end episodes as terminated, timeouts as truncated)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no HDF5 file at {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with f:
        obs = _read(f, path, "observations")
        actions = _read(f, path, "actions")
        rewards = _read(f, path, "rewards").reshape(-1)  # float32 once checked (1e39 would become inf)
        terminals = _read(f, path, "terminals").astype(bool).reshape(-1)
        timeouts = _read(f, path, "timeouts").astype(bool).reshape(-1) if "timeouts" in f else np.zeros_like(terminals)
        meta = dict(f["metadata"].attrs) if "metadata" in f and isinstance(f["metadata"], h5py.Group) else {}
    n = len(rewards)
    for key, arr in (("observations", obs), ("actions", actions), ("terminals", terminals), ("timeouts", timeouts)):
        if len(arr) != n:
            raise ValueError(f"{path}: {key!r} has {len(arr)} rows but 'rewards' has {n}")
    if n == 0:
        raise ValueError(f"{path}: the dataset is empty")
    for key, arr in (("observations", obs), ("actions", actions), ("rewards", rewards)):
        check_finite(arr, source=path, key=key)
        check_magnitude(arr, source=path, key=key)
    rewards = rewards.astype(np.float32)
    frame_stack = int(meta.get("frame_stack", 1))
    if actions.ndim == 2 and actions.shape[1] == 1 and np.issubdtype(actions.dtype, np.integer):
        actions = actions[:, 0]
    if not np.issubdtype(actions.dtype, np.integer) and actions.ndim == 1:
        actions = actions[:, None]  # a 1-D float action is a Box of dimension 1
    ends = np.flatnonzero(terminals | timeouts) + 1
    if len(ends) == 0 or ends[-1] != n:
        ends = np.append(ends, n)  # trailing rows: a cut episode
    offsets = np.concatenate([[0], ends]).astype(np.int64)
    terminated = terminals[ends - 1]
    flat = {
        "observations": obs,
        "actions": actions,
        "rewards": rewards,
        "offsets": offsets,
        "terminated": terminated,
        "truncated": ~terminated,
    }
    return TrajectoryDataset(flat, frame_stack=frame_stack, name=name or str(meta.get("name", path.stem)), source={"hdf5": str(path)})


def _minari_file(path: Path) -> Path:
    if path.is_file():
        return path
    for candidate in (path / "data" / "main_data.hdf5", path / "main_data.hdf5"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{path}: no Minari data file (expected {path / 'data' / 'main_data.hdf5'})")


def _require_minari(what: str) -> Any:
    try:
        import minari
    except ImportError as exc:
        raise ImportError(f"{what} needs the minari package: pip install \"fh_rl[minari]\"") from exc
    return minari


def minari_path(dataset: str | os.PathLike) -> Path:
    """The directory of a Minari dataset given as a local path or as a dataset id (resolved by ``minari``)."""
    path = Path(dataset).expanduser()
    if path.exists():
        return path
    minari = _require_minari(f"loading the Minari dataset id {str(dataset)!r} (or pass the path of a local Minari "
                             f"dataset directory)")
    try:
        return Path(minari.load_dataset(str(dataset)).spec.data_path)
    except (FileNotFoundError, ValueError) as exc:
        raise FileNotFoundError(
            f"no Minari dataset {str(dataset)!r} ({' '.join(str(exc).split())[:200]}); make one with "
            f"`python -m fh_rl.datasets.collect control --format minari --out {dataset} ...`, or pass a dataset directory"
        ) from None


def minari_env_id(dataset: str | os.PathLike) -> str:
    """The Gymnasium id a Minari dataset was collected in (its ``metadata.json`` ``env_spec``)."""
    h5 = _minari_file(minari_path(dataset))
    meta_path = h5.parent / "metadata.json"
    try:
        spec = json.loads(json.loads(meta_path.read_text())["env_spec"])
        return str(spec["id"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{meta_path}: no env_spec with an id; set env.name in the config") from None


def write_minari(
    dataset_id: str,
    dataset: TrajectoryDataset,
    final_observations: Sequence[np.ndarray],
    env_id: str,
    *,
    algorithm_name: str = "fh_rl",
    description: str | None = None,
) -> Path:
    """Write ``dataset`` as the Minari dataset ``dataset_id`` through Minari's own API (no jax needed).

    Minari keeps T+1 observations per episode: ``final_observations[i]`` is
    episode i's observation after its last action. The dataset goes under
    Minari's data root (``MINARI_DATASETS_PATH``, default ``~/.minari/datasets``);
    returns its directory. An existing id is an error (Minari refuses it).
    """
    import gymnasium as gym

    minari = _require_minari("writing a Minari dataset")
    from minari.data_collector import EpisodeBuffer

    if len(final_observations) != len(dataset):
        raise ValueError(f"{len(final_observations)} final observations for {len(dataset)} episodes")
    buffers = []
    for i in range(len(dataset)):
        lo, hi = int(dataset.offsets[i]), int(dataset.offsets[i + 1])
        T = hi - lo
        term = np.zeros(T, bool)
        term[-1] = bool(dataset.terminated[i])
        trunc = np.zeros(T, bool)
        trunc[-1] = not term[-1]
        obs = np.concatenate([dataset.observations[lo:hi], np.asarray(final_observations[i])[None]]).astype(np.float32)
        buffers.append(EpisodeBuffer(id=i, observations=obs, actions=np.asarray(dataset.actions[lo:hi], np.float32),
                                     rewards=np.asarray(dataset.rewards[lo:hi], np.float64), terminations=term,
                                     truncations=trunc, infos={}))
    env = gym.make(env_id)
    try:
        import warnings

        with warnings.catch_warnings():  # Minari's advice on author/permalink fields, not errors
            warnings.simplefilter("ignore", UserWarning)
            created = minari.create_dataset_from_buffers(dataset_id, buffers, env=env, algorithm_name=algorithm_name,
                                                         description=description)
    finally:
        env.close()
    return Path(created.spec.data_path).parent


def load_minari(dataset: str | os.PathLike, *, name: str | None = None) -> TrajectoryDataset:
    """Import a local Minari dataset.

    ``dataset`` is either a path (a Minari dataset directory holding
    ``data/main_data.hdf5``, or that file), read directly with h5py, or a
    Minari dataset id (e.g. ``"mujoco/hopper/medium-v0"``) resolved through an
    installed ``minari`` package (``pip install "fh_rl[minari]"``).
    Observations come as T+1 per episode; the last one is dropped.
    """
    path = minari_path(dataset)
    h5 = _minari_file(path)
    episodes = []
    with h5py.File(h5, "r") as f:
        keys = sorted((k for k in f.keys() if k.startswith("episode_")), key=lambda k: int(k.split("_")[1]))
        if not keys:
            raise ValueError(f"{h5}: no episode_<i> groups; is this a Minari dataset?")
        for k in keys:
            g = f[k]
            for req in ("observations", "actions", "rewards", "terminations", "truncations"):
                if req not in g:
                    raise ValueError(f"{h5}: group {k!r} lacks {req!r}")
            obs = g["observations"]
            if not isinstance(obs, h5py.Dataset):
                raise ValueError(f"{h5}: {k}/observations is a dict observation space; flatten it first")
            obs = obs[()][:-1]
            actions = g["actions"][()]
            rewards = g["rewards"][()].astype(np.float32)
            for key, arr in (("observations", obs), ("actions", actions), ("rewards", rewards)):
                check_numeric(arr, source=h5, key=f"{k}/{key}")
                check_finite(arr, source=h5, key=f"{k}/{key}")
                check_magnitude(arr, source=h5, key=f"{k}/{key}")
            if not np.issubdtype(actions.dtype, np.integer) and actions.ndim == 1:
                actions = actions[:, None]
            term = g["terminations"][()]
            trunc = g["truncations"][()]
            episodes.append(
                Episode(
                    obs.astype(np.float32) if obs.ndim == 2 else obs,
                    actions,
                    rewards,
                    terminated=bool(term[-1]),
                    truncated=bool(not term[-1]),
                )
            )
            del trunc
    label = path.parent.name if path.name == "data" else path.name
    return TrajectoryDataset(episodes, name=name or label, source={"minari": str(path)})

"""A sampled subset kept as uncompressed ``.npy`` files (observations memory-mapped), never next to the data.

The cache directory's name holds a hash of the sampling arguments and the
source files' names, sizes and modification times, so a changed file or
argument gives a new cache. A cache is written to a temporary directory and
renamed into place: a reader never sees a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fh_rl.datasets.dqn_replay.format import KEYS, file_name

CACHE_VERSION = 1
_CACHE_ARRAYS = ("observations", "actions", "rewards", "offsets", "terminated", "truncated")


def default_cache_dir() -> Path:
    """``$FH_RL_CACHE`` if set, else ``~/.cache/fh_rl``."""
    return Path(os.environ.get("FH_RL_CACHE", "~/.cache/fh_rl")).expanduser()


def subset_cache_path(
    cache_dir: str | os.PathLike | None, directory: Path, suffixes: Sequence[int], params: dict[str, Any]
) -> Path:
    """``<cache_dir>/dqn_replay/<game>-<run>-<key>`` for the subset ``params`` describes."""
    key = cache_key(directory, suffixes, params)
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return base / "dqn_replay" / f"{params['game']}-{params['run']}-{key}"


def cache_key(directory: Path, suffixes: Sequence[int], params: dict[str, Any]) -> str:
    stats = []
    for s in suffixes:
        for k in KEYS:
            st = (directory / file_name(k, s)).stat()
            stats.append([file_name(k, s), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"version": CACHE_VERSION, "dir": str(directory.resolve()), "params": params, "files": stats}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def load_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays at ``path``, or None when there is no complete cache there."""
    if not (path / "meta.json").is_file():
        return None
    try:
        return {k: np.load(path / f"{k}.npy", mmap_mode="r" if k == "observations" else None, allow_pickle=False) for k in _CACHE_ARRAYS}
    except (OSError, ValueError) as exc:
        raise ValueError(f"cached subset {path} is unreadable ({exc}); delete that directory to rebuild it") from exc


def save_cache(path: Path, flat: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        for k in _CACHE_ARRAYS:
            np.save(tmp / f"{k}.npy", flat[k], allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True, allow_nan=False))
        try:
            os.replace(tmp, path)
        except OSError:  # another process cached it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

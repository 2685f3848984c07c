"""Ray: sweep runs as Ray tasks, evaluation episodes over Ray actors.

Ray is an optional extra (``pip install "fh_rl[ray]"``); this module imports it
only inside its functions, and :func:`require_ray` says how to install it.

Sweeps (``python -m fh_rl.sweep ... --backend ray``): every grid point that is
not complete becomes one Ray task asking for ``num_cpus``/``num_gpus``; the task
runs the same ``python -m fh_rl.train`` command as a local sweep, on whichever
node Ray picks. A task whose worker or node dies is retried by Ray
(``max_retries``); a run that fails by itself (non-zero exit) is reported, not
retried. Where the finished runs go:

- default (copy back): the task trains in a scratch directory on its node and
  returns the point's directory as an archive, which the driver unpacks into
  the sweep directory. A resumed point's directory travels to the task the same
  way. The config is sent along; the dataset path must exist on every node.
- ``shared_storage=True``: the sweep directory is on storage every node mounts
  at the same path (NFS, a cluster file system); tasks train in place.

Evaluation (``python -m fh_rl.evaluate ... --backend ray``): the episodes are
split into contiguous chunks, one per Ray actor; episode ``i`` is reset with
seed ``seed + i`` exactly as by the local workers, so per-episode returns are
the same whenever the policy's action does not depend on the batch around it
(e.g. argmax actions).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

INSTALL = 'pip install "fh_rl[ray]"'
REPO_ROOT = Path(__file__).resolve().parent.parent


class RayNotInstalled(ImportError, ValueError):
    """Ray was asked for but is not installed (a ValueError too, so CLIs print one line and exit 2)."""


def require_ray() -> Any:
    """``import ray``, or :class:`RayNotInstalled` with the pip command."""
    try:
        import ray
    except ImportError as exc:
        raise RayNotInstalled(f"--backend ray needs the ray package, which is not installed; install it with: {INSTALL}") from exc
    return ray


def init_ray(address: str | None = None) -> Any:
    """Connect to the cluster at ``address`` (``auto``, ``ray://host:10001``, ``host:6379``) or start a local one.

    An already initialised Ray (e.g. ``ray.init`` in a notebook or test) is used as is.
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    if address is None:
        # A local instance: its workers import this checkout even when fh_rl is not installed.
        path = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        ray.init(include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    else:
        ray.init(address=address)
    return ray


# ----------------------------------------------------------------------------- archives


def pack_dir(path: Path) -> bytes:
    """``path``'s contents as an uncompressed tar (checkpoints do not compress)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for child in sorted(Path(path).iterdir()):
            tar.add(child, arcname=child.name)
    return buf.getvalue()


def unpack_dir(data: bytes, path: Path) -> None:
    """Replace ``path`` by the archive's contents (unpacked next to it first, then swapped in)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")  # no absolute paths, links out or devices
            else:  # Python < 3.10.12 / 3.11.4: our own archives only
                tar.extractall(staging)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(staging, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ----------------------------------------------------------------------------- sweep tasks


def _task_env(num_cpus: float) -> dict[str, str]:
    import fh_rl

    env = dict(os.environ)
    here = str(Path(fh_rl.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", str(max(1, int(num_cpus))))
    env["FH_RL_PARENT_PID"] = str(os.getpid())  # the training job stops when this task's worker dies (fh_rl.infra.locks)
    return env


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "(empty log)"


def train_point(args: list[str], point_name: str, *, config_text: str | None, archive: bytes | None,
                resume_rel: str | None, shared_root: str | None, num_cpus: float) -> dict[str, Any]:
    """Body of a sweep task: run ``python -m fh_rl.train`` for one grid point on this node.

    ``args`` are the train arguments without ``--config``/``run_root``/``--resume``
    (added here). Copy-back mode (``shared_root`` None): train under a scratch
    directory, return ``{"returncode", "last_line", "archive"}`` with the point
    directory packed. Shared mode: train in ``shared_root/point_name``.
    """
    scratch = Path(tempfile.mkdtemp(prefix="fh_rl-sweep-")) if shared_root is None else None
    try:
        root = Path(shared_root) if shared_root is not None else scratch
        point_dir = root / point_name
        point_dir.mkdir(parents=True, exist_ok=True)
        if archive is not None:
            unpack_dir(archive, point_dir)
        cmd = [sys.executable, "-m", "fh_rl.train"]
        if resume_rel is not None:
            cmd += ["--resume", str(point_dir / resume_rel), "--no-progress"]
        else:
            if config_text is not None:
                config = (scratch or point_dir) / "config-sweep.yaml"
                config.write_text(config_text)
                cmd += ["--config", str(config)]
            cmd += [*args, "--set", f"run_root={point_dir}"]
        log_path = point_dir / "train.log"
        with open(log_path, "a") as log:
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=_task_env(num_cpus))
            try:
                code = proc.wait()
            except BaseException:  # cancelled: let the trainer checkpoint, then go
                proc.send_signal(signal.SIGINT)
                proc.wait()
                raise
        out = {"returncode": code, "last_line": _last_line(log_path.read_text(errors="replace"))}
        if shared_root is None:
            out["archive"] = pack_dir(point_dir)
        return out
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def run_ray_tasks(jobs: Sequence[dict[str, Any]], *, address: str | None, num_cpus: float, num_gpus: float,
                  max_retries: int, on_done: Callable[[dict[str, Any], dict[str, Any] | None, str | None], None]) -> None:
    """Submit one task per job (the keyword arguments of :func:`train_point`) and call ``on_done(job, result, error)``
    as each finishes; ``error`` is set when Ray gave up on it (worker or node died ``max_retries`` + 1 times)."""
    ray = init_ray(address)
    remote = ray.remote(train_point).options(
        num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries, retry_exceptions=False,
    )
    pending = {remote.remote(**job, num_cpus=num_cpus): job for job in jobs}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    on_done(job, None, " ".join(str(exc).split())[:500])
                else:
                    on_done(job, result, None)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)
        raise


# ----------------------------------------------------------------------------- evaluation actors


class _RolloutActor:
    """Holds nothing between calls; one per slice of Ray resources."""

    def run(self, policy_factory: Callable[[], Any], env: str, start: int, count: int, seed: int,
            protocol: str | None, env_kwargs: dict, step_timeout: float) -> tuple[np.ndarray, np.ndarray]:
        from fh_rl.envs.rollout import evaluate

        res = evaluate(policy_factory(), env, count, workers=0, seed=seed + start, protocol=protocol,
                       env_kwargs=env_kwargs, progress=False, step_timeout=step_timeout)
        return res.returns, res.lengths


def evaluate_on_ray(
    policy_factory: Callable[[], Any],
    env: str,
    episodes: int,
    actors: int = 1,
    seed: int = 0,
    protocol: str | None = None,
    env_kwargs: dict | None = None,
    *,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    step_timeout: float = 60.0,
    progress: bool = True,
):
    """Like :func:`fh_rl.envs.rollout.evaluate`, with the episodes spread over ``actors`` Ray actors.

    ``policy_factory()`` builds the policy inside each actor (it is pickled to
    them, e.g. ``functools.partial(AgentPolicy, agent, ...)``). Episode ``i``
    gets seed ``seed + i``; actor ``a`` runs a contiguous chunk of episodes.
    Returns an :class:`~fh_rl.envs.rollout.EvalResult` indexed by episode.
    """
    import time

    from fh_rl.envs.make import canonical_env_name, make_env, resolve_protocol
    from fh_rl.envs.rollout import EvalResult
    from fh_rl.infra.progress import progress_bar

    if not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    if not isinstance(actors, (int, np.integer)) or actors < 1:
        raise ValueError(f"actors (--workers with --backend ray) must be a positive int, got {actors!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    env_kwargs = dict(env_kwargs or {})
    protocol = resolve_protocol(env, protocol)
    make_env(env, protocol=protocol, **env_kwargs).close()  # bad options fail here, before any actor starts
    ray = init_ray(address)
    start_time = time.perf_counter()
    chunks = [c for c in np.array_split(np.arange(episodes), min(actors, episodes)) if len(c)]
    actor_cls = ray.remote(_RolloutActor).options(num_cpus=num_cpus, num_gpus=num_gpus)
    handles = [actor_cls.remote() for _ in chunks]
    factory = ray.put(policy_factory)
    returns = np.zeros(episodes, dtype=np.float64)
    lengths = np.zeros(episodes, dtype=np.int64)
    refs = {
        h.run.remote(factory, env, int(c[0]), len(c), int(seed), protocol, env_kwargs, float(step_timeout)): c
        for h, c in zip(handles, chunks, strict=True)
    }
    bar = progress_bar(total=episodes, desc=f"eval {canonical_env_name(env)} (ray)", unit="ep", disable=not progress, leave=False)
    try:
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                chunk = refs[ref]
                r, n = ray.get(ref)
                returns[chunk], lengths[chunk] = r, n
                bar.update(len(chunk))
    finally:
        bar.close()
        for h in handles:
            ray.kill(h)
    wall = time.perf_counter() - start_time
    return EvalResult(
        env=canonical_env_name(env),
        protocol=protocol,
        returns=returns,
        lengths=lengths,
        seeds=seed + np.arange(episodes, dtype=np.int64),
        wall_seconds=wall,
        run_seconds=wall,
        env_kwargs=env_kwargs,
    )

"""Rollout workers: the environments a worker steps, its command loop, and the parent's pool.

Workers are fresh interpreters (``python -m fh_rl.envs._worker``) that import
only fh_rl.envs and the environment libraries: not torch, and not the calling
script (no ``if __name__ == "__main__"`` guard needed). They talk to the parent
over socket pairs (Linux and macOS). The parent sends a worker its
configuration, then commands: ``("reset", [(local slot, episode, seed), ...])``,
``("step", local_slots, actions)``, ``("close",)``; every reply is
``("ok", value)`` or ``("error", episode, traceback)``. With ``workers == 0``
one in-process :class:`EnvRunner` answers instead (debugging).

Failures are never silent: an exception in a worker, a worker that dies, or a
worker that does not answer within the timeout raises :class:`RolloutError`
naming the environment and the episode(s) it was running.
:meth:`WorkerPool.close` terminates every worker (workers ignore SIGINT
themselves, so one Ctrl-C in the parent stops cleanly).

Why not gymnasium's ``AsyncVectorEnv``: see docs/design.md ("Why not gymnasium's AsyncVectorEnv").
"""

from __future__ import annotations

import multiprocessing.connection
import os
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from fh_rl.envs.make import make_env
from fh_rl.infra.cli import RunFailed

STARTUP_TIMEOUT = 120.0
"""Seconds a worker may take to start and build its environments."""


class RolloutError(RunFailed):
    """An environment failed, hung or died during evaluation (a RuntimeError; the CLIs print its first line)."""


class EnvRunner:
    """The environments of one worker; also used in-process when ``workers=0``."""

    def __init__(self, env_name: str, protocol: str | None, env_kwargs: dict, n_envs: int) -> None:
        self.envs = [make_env(env_name, protocol=protocol, **env_kwargs) for _ in range(n_envs)]
        self.episodes: list[int | None] = [None] * n_envs
        self.current: int | None = None  # episode being reset/stepped, for error reports

    def reset(self, requests: list[tuple[int, int, int]]) -> np.ndarray:
        """``requests``: (local slot, episode, seed) -> first observations (n, ...)."""
        observations = []
        for local, episode, seed in requests:
            self.current = self.episodes[local] = episode
            obs, _ = self.envs[local].reset(seed=seed)
            observations.append(obs)
        self.current = None
        return np.stack(observations)

    def step(self, locals_: list[int], actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step envs ``locals_`` with ``actions`` -> (observations, rewards, dones)."""
        observations, rewards, dones = [], np.empty(len(locals_)), np.empty(len(locals_), dtype=bool)
        for i, local in enumerate(locals_):
            self.current = self.episodes[local]
            obs, reward, terminated, truncated, _ = self.envs[local].step(actions[i])
            observations.append(obs)
            rewards[i] = reward
            dones[i] = terminated or truncated
        self.current = None
        return np.stack(observations), rewards, dones

    def handle(self, message: tuple) -> tuple:
        try:
            if message[0] == "reset":
                return ("ok", self.reset(message[1]))
            if message[0] == "step":
                return ("ok", self.step(message[1], message[2]))
            raise ValueError(f"unknown worker command {message[0]!r}")
        except Exception:
            return ("error", self.current, traceback.format_exc())

    def close(self) -> None:
        for env in self.envs:
            env.close()


def serve(conn: Connection, env_name: str, protocol: str | None, env_kwargs: dict, n_envs: int) -> None:
    """A worker's loop: build ``n_envs`` environments, then answer commands until "close"."""
    try:
        runner = EnvRunner(env_name, protocol, env_kwargs, n_envs)
    except Exception:
        conn.send(("error", None, traceback.format_exc()))
        return
    conn.send(("ok", runner.envs[0].action_space))
    try:
        while True:
            message = conn.recv()
            if message[0] == "close":
                break
            conn.send(runner.handle(message))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # parent went away
    finally:
        runner.close()


def _worker_environ() -> dict[str, str]:
    """The parent's environment, with its import path, so workers import the same fh_rl."""
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) if p else os.getcwd() for p in sys.path)
    return environ


class WorkerPool:
    """W worker processes (or one in-process runner when ``workers == 0``)."""

    def __init__(
        self,
        env_name: str,
        protocol: str | None,
        env_kwargs: dict,
        workers: int,
        n_envs: int,
        timeout: float,
        describe: Callable[[int], str],
    ) -> None:
        self.inline = workers == 0
        self.timeout = timeout
        self.describe = describe  # worker index -> "episode(s) ..." for messages
        self.env_name = env_name
        self.processes: list[subprocess.Popen] = []
        self.conns: list = []
        self._replies: dict[int, tuple] = {}
        if self.inline:
            self.runner = EnvRunner(env_name, protocol, env_kwargs, n_envs)
            self.action_space = self.runner.envs[0].action_space
            return
        try:
            self._start(env_name, protocol, env_kwargs, workers, n_envs)
        except BaseException:
            self.close(graceful=False)
            raise

    def _start(self, env_name: str, protocol: str | None, env_kwargs: dict, workers: int, n_envs: int) -> None:
        environ = _worker_environ()
        for _ in range(workers):
            parent, child = socket.socketpair()
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "fh_rl.envs._worker", str(child.fileno())],
                    pass_fds=(child.fileno(),),
                    stdin=subprocess.DEVNULL,
                    env=environ,
                )
            finally:
                child.close()  # the worker holds its own copy; a dead worker reads as EOF here
            self.processes.append(proc)
            self.conns.append(Connection(parent.detach()))
            self.conns[-1].send((env_name, protocol, env_kwargs, n_envs))
        self.action_space = self.gather(range(workers), "starting", max(self.timeout, STARTUP_TIMEOUT))[0]

    def send(self, w: int, message: tuple) -> None:
        if self.inline:
            self._replies[w] = self.runner.handle(message)
            return
        try:
            self.conns[w].send(message)
        except OSError:
            raise RolloutError(self._died(w, "sending to")) from None

    def _died(self, w: int, doing: str) -> str:
        proc = self.processes[w]
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            pass
        return (
            f"{self.env_name}: rollout worker {w} (pid {proc.pid}) died with exit code {proc.returncode} "
            f"while {doing} {self.describe(w)}"
        )

    def _check(self, w: int, reply: tuple, doing: str) -> Any:
        if reply[0] == "ok":
            return reply[1]
        _, episode, tb = reply
        where = f"episode {episode}" if episode is not None else self.describe(w)
        last = tb.strip().splitlines()[-1]
        raise RolloutError(
            f"{self.env_name}: {where} failed in rollout worker {w} while {doing}: {last}\n"
            f"--- worker traceback ---\n{tb}"
        )

    def gather(self, workers: Iterable[int], doing: str, timeout: float | None = None) -> dict[int, Any]:
        """Replies of ``workers`` (each sent one message), raising on error, death or timeout."""
        workers = list(workers)
        if self.inline:
            return {w: self._check(w, self._replies.pop(w), doing) for w in workers}
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        pending = {self.conns[w]: w for w in workers}
        replies = {}
        while pending:
            ready = multiprocessing.connection.wait(list(pending), timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                w = min(pending.values())
                raise RolloutError(
                    f"{self.env_name}: rollout worker {w} did not answer within {timeout:g} s while {doing} "
                    f"{self.describe(w)} (raise step_timeout if one step can legitimately take longer)"
                )
            for conn in ready:
                w = pending.pop(conn)
                try:
                    reply = conn.recv()
                except (EOFError, OSError):
                    raise RolloutError(self._died(w, doing)) from None
                replies[w] = self._check(w, reply, doing)
        return replies

    def close(self, graceful: bool) -> None:
        if self.inline:
            self.runner.close()
            return
        if graceful:
            for conn in self.conns:
                try:
                    conn.send(("close",))
                except OSError:
                    pass
        deadline = time.monotonic() + (5.0 if graceful else 0.0)
        for proc in self.processes:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for conn in self.conns:
            conn.close()

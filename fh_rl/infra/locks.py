"""Who may write where: one writer per run directory, per sweep root and per dataset file.

Every lock is an ``fcntl.flock`` on a small lock file, so the operating system
releases it when its holder exits, however it exits (kill -9 included): there
is no stale lock to clean up by hand (a file left by a killed holder is simply
locked again). A lock file holds the pid and command of its holder, read back
to name the owner when someone else asks for it; a holder removes it on release.

- :func:`hold_run_dir`: ``python -m fh_rl.train`` (new runs and ``--resume``)
  and ``python -m fh_rl.evaluate`` (when it writes into the run directory) hold
  ``<run_dir>/.lock`` for as long as they run; a second writer gets a one-line
  :class:`LockedError` (exit 2) naming the live owner's pid.
- :func:`hold_sweep_root`: one sweep at a time per sweep directory.
- :func:`wait_for_file_lock`: dataset writers (``collect``, a run building
  its missing dataset) queue on ``.<file>.lock`` next to the file, so one makes
  it and the others reuse it; whoever holds it may remove stale temp files.
- :func:`die_with_parent`: a child (a sweep's training job) that the OS stops
  when its parent dies, so killing a sweep never leaves writers behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

RUN_LOCK = ".lock"
SWEEP_LOCK = ".sweep.lock"
PARENT_ENV = "FH_RL_PARENT_PID"
"""Set by a parent (the sweep) in its children's environment: the pid they must not outlive."""


class LockedError(ValueError):
    """Someone else holds the lock (a user error: exit 2, one line naming the owner)."""


class Lock:
    """An ``fcntl.flock`` held on an open lock file until :meth:`release` or process exit."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (a process killed first leaves the file: harmless, reused)."""
        if self._fd is None:
            return
        try:
            if _same_file(self._fd, self.path):
                os.unlink(self.path)
        finally:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def owner_of(lock_path: str | os.PathLike) -> str:
    """``pid 1234 (python -m fh_rl.train ...)``: what the lock file says about its holder."""
    try:
        text = Path(lock_path).read_text(errors="replace").strip()
    except OSError:
        return "another process"
    pid, _, command = text.partition(" ")
    if not pid.isdigit():
        return "another process"
    return f"pid {pid}" + (f" ({command[:120]})" if command else "")


def _command_line() -> str:
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    module = {"train.py": "fh_rl.train", "evaluate.py": "fh_rl.evaluate", "sweep.py": "fh_rl.sweep"}.get(argv[0])
    if module:
        argv[0] = f"python -m {module}"
    return " ".join(argv)


def _acquire(path: Path, wait: bool) -> Lock | None:
    """flock ``path`` (created if missing); None when held and not ``wait``.

    A holder removes the file when it releases, so after getting the lock we
    check that the path still names the file we locked, and retry if not.
    """
    from fh_rl.infra.atomic import storage_error

    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:  # a read-only directory
            raise (storage_error(exc, path) or exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            break
        os.close(fd)  # released and removed while we waited: lock the file that is there now
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {_command_line()}\n".encode(), 0)
    except OSError as exc:  # a full disk: not even the holder's pid fits
        error = storage_error(exc, path)
        Lock(path, fd).release()
        raise (error or exc) from None
    return Lock(path, fd)


def try_lock(lock_path: str | os.PathLike) -> Lock | None:
    """Take the exclusive lock on ``lock_path`` now, or return None when another process holds it."""
    return _acquire(Path(lock_path), wait=False)


def hold_run_dir(run_dir: str | os.PathLike, doing: str = "write to it", *, cannot_write: str = "") -> Lock:
    """Become the one writer of ``run_dir`` (LockedError naming the live owner when there is one).

    A run directory that cannot be written (read-only, or its disk full) is a :class:`~fh_rl.cli.StorageError`
    saying so, followed by ``cannot_write`` (what to do instead).
    """
    from fh_rl.infra.cli import StorageError

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} not found")
    try:
        lock = try_lock(run_dir / RUN_LOCK)
    except StorageError as exc:
        from fh_rl.infra.atomic import DISK_FULL, _size, free_bytes

        why = (f"is on a full disk ({_size(free_bytes(run_dir))} free)" if exc.errno in DISK_FULL
               else f"is read-only ({os.strerror(exc.errno) if exc.errno else 'not writable'})")
        raise StorageError(f"run directory {str(run_dir)!r} {why}, and to {doing} fh_rl writes there"
                           + (f"; {cannot_write}" if cannot_write else ""), exc.errno) from None
    if lock is None:
        raise LockedError(
            f"run directory {str(run_dir)!r} is in use by {owner_of(run_dir / RUN_LOCK)}; "
            f"one process writes a run at a time: wait for it to finish or stop it, then {doing} again"
        )
    return lock


def is_run_dir_busy(run_dir: str | os.PathLike) -> str | None:
    """The owner of ``run_dir``'s lock when a live process holds it, else None (the lock is not kept)."""
    path = Path(run_dir) / RUN_LOCK
    if not path.is_file():
        return None
    lock = try_lock(path)
    if lock is None:
        return owner_of(path)
    lock.release()
    return None


def hold_sweep_root(root: str | os.PathLike) -> Lock:
    """Become the one sweep running in ``root`` (LockedError naming the live owner when there is one)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lock = try_lock(root / SWEEP_LOCK)
    if lock is None:
        raise LockedError(
            f"sweep directory {str(root)!r} is in use by {owner_of(root / SWEEP_LOCK)}; wait for that sweep "
            f"to finish (or stop it), then run this one again"
        )
    return lock


_held: dict[Path, list] = {}  # lock path -> [Lock, depth]: a process may re-enter its own file lock
_held_guard = threading.Lock()


@contextlib.contextmanager
def wait_for_file_lock(path: str | os.PathLike, *, message: str | None = None) -> Iterator[None]:
    """Hold ``.<name>.lock`` next to ``path``, waiting for its holder if needed (re-entrant in a process).

    ``message`` is printed to stderr once when the lock is busy (e.g. "waiting for pid 12 building X").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = (path.parent / f".{path.name}.lock").resolve()
    with _held_guard:
        entry = _held.get(lock_path)
        if entry is not None:
            entry[1] += 1
    if entry is None:
        lock = try_lock(lock_path)
        if lock is None:
            print(message or f"{path} is being written by {owner_of(lock_path)}; waiting for it", file=sys.stderr)
            lock = _acquire(lock_path, wait=True)
        entry = [lock, 1]
        with _held_guard:
            _held[lock_path] = entry
    try:
        yield
    finally:
        with _held_guard:
            entry[1] -= 1
            if entry[1] == 0:
                del _held[lock_path]
                entry[0].release()


# ----------------------------------------------------------------------------- child processes

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """If a parent asked for it (``FH_RL_PARENT_PID``), receive ``sig`` when that parent dies.

    Linux: ``prctl(PR_SET_PDEATHSIG)``, delivered by the kernel even when the
    parent is killed with SIGKILL. Elsewhere: a daemon thread that notices the
    re-parenting within a second. The variable is removed so that this
    process's own children do not inherit it. A parent already gone by now
    means ``sig`` at once. SIGTERM lets a training run checkpoint and stop.
    """
    raw = os.environ.pop(PARENT_ENV, None)
    if not raw or not raw.isdigit():
        return
    parent = int(raw)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:  # pragma: no cover - prctl does not fail here
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:  # pragma: no cover - not Linux

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os.kill(os.getpid(), sig)

        threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os.kill(os.getpid(), sig)

"""Fault campaign: kill -9 train / sweep / collect / evaluate at random moments, then resume, and count what broke.

    python benchmarks/faults.py                    # 6 rounds (train and sweep twice), tiny runs: ~5 minutes on 2 busy cores
    python benchmarks/faults.py --rounds 40 --seed 3 --keep /tmp/campaign

First each kind runs once uninterrupted (the reference, its wall time T, and
for train and sweep the time S at which its first run directory appeared).
Then each round starts one command as a subprocess and kills it with SIGKILL
at a random moment: half the rounds anywhere in [0.1 T, T] (start-up and
imports included), the other half, for train and sweep, once a run
directory exists, anywhere in the T - S that training, checkpointing and
evaluation take (for collect and evaluate always the first kind). Then:

- orphans: processes of the killed command (every process the campaign starts
  carries a marker in its environment, inherited by sweep jobs and rollout
  workers) still alive 30 s after the kill;
- partial files: files under their final names that do not load (checkpoints
  with ``weights_only=True``, config YAML, strict JSON, HDF5 datasets); the
  TensorBoard events files are append-only logs and not counted (a resume
  drops a cut last record); stale temps: ``.*.tmp`` files of an atomic write
  cut by the kill (allowed after the kill, none after the resume);
- resume: ``train --resume`` the run (a run killed before its first checkpoint
  is started again), the same ``sweep`` command again, the same ``collect``
  command again, ``evaluate`` again; then the result is compared with the
  reference: train and sweep runs must end with parameters equal (torch.equal)
  to the uninterrupted run's, collect with the same data (content hash),
  evaluate with the same returns, a strict JSON result and one events file.

``--disk-rounds N`` (root only: it mounts a tmpfs) then runs N full-disk rounds,
cycling train, evaluate, collect and compare. Each puts the command's output on
a fresh 8 MiB tmpfs and fills it: half the rounds before the command starts,
leaving a free space drawn log-uniformly between 4 KiB and 4 MiB (so that some
commands are refused at once, some fail part-way and some fit), the other half
to the last byte at a random moment while it runs (another process filling the
disk). It counts commands that ended cleanly (exit 0, or exit 2 with one
``error:`` line), crashes (any other exit, a traceback, more than one error
line), partial files and temps left, files that existed before and changed
(in rounds that did not finish), and whether the same command (``train --resume`` for a run with a checkpoint)
succeeds once the filler is removed.

Every command runs on one thread (``OMP_NUM_THREADS=1``): a tiny Pendulum-v1
Decision Transformer trained on the data of the reference collect (SAC's
replay plus two rollouts of its policy). Nothing is timed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KINDS = ("train", "sweep", "collect", "evaluate")
MARK = "FH_RL_CAMPAIGN"
GRACE = 30.0
"""Seconds the killed command's children get to stop by themselves (a sweep's jobs checkpoint first)."""


DISK_KINDS = ("train", "evaluate", "collect", "compare")
DISK_SIZE = "8m"

# ----------------------------------------------------------------------------- set-up


def write_config(path: Path, data: Path, steps: int) -> None:
    """The tiny run (:func:`fh_rl.config.tiny.tiny_config`), long enough to be killed mid-way, with dropout (its RNG
    must resume exactly) and rollout workers."""
    from fh_rl.config.tiny import write_tiny_config

    write_tiny_config(path.parent, data, name=path.name, agent={"dropout": 0.1},
                      train={"steps": steps, "log_every": 5, "val_every": 20, "checkpoint_every": 10, "pmf_states": 2},
                      eval={"episodes": 2, "workers": 1, "decode": "sample"})


class Commands:
    """The command line of each kind, for a round's directory. Training uses the reference collect's data."""

    def __init__(self, work: Path, steps: int, collect_steps: int) -> None:
        self.work = work
        self.config = work / "tiny.yaml"
        self.data = work / "ref-collect" / "collected.hdf5"
        write_config(self.config, self.data, steps)
        self.collect_steps = collect_steps

    def train(self, d: Path) -> list[str]:
        return [sys.executable, "-m", "fh_rl.train", "--config", str(self.config), "--set", f"run_root={d}",
                "--no-progress"]

    def sweep(self, d: Path) -> list[str]:
        return [sys.executable, "-m", "fh_rl.sweep", "--config", str(self.config), "--heads", "linear", "fourier",
                "--seeds", "0", "--jobs", "2", "--root", str(d), "--no-progress"]

    def collect(self, d: Path) -> list[str]:
        return [sys.executable, "-m", "fh_rl.datasets.collect", "control", "--env", "Pendulum-v1", "--steps",
                str(self.collect_steps), "--expert-episodes", "2", "--out", str(d / "collected.hdf5")]

    def evaluate(self, run_dir: Path) -> list[str]:
        return [sys.executable, "-m", "fh_rl.evaluate", str(run_dir), "--episodes", "4", "--workers", "2",
                "--argmax", "--no-progress"]


def child_env(tag: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["OMP_NUM_THREADS"] = "1"
    env[MARK] = tag
    env.pop("FH_RL_DEBUG", None)
    return env


def run(cmd: list[str], tag: str, log: Path, timeout: float = 900.0, started: Path | None = None
        ) -> tuple[int, float, float | None]:
    """Run ``cmd`` to the end: (exit code, wall seconds, seconds until a ``config.yaml`` appeared under ``started``)."""
    t0 = time.perf_counter()
    seen = None
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, env=child_env(tag), stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            if started is not None and seen is None and run_dirs(started):
                seen = time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                proc.kill()
            time.sleep(0.05)
    return proc.returncode, time.perf_counter() - t0, seen


# ----------------------------------------------------------------------------- inspection


def marked(tag: str) -> list[int]:
    """Live processes carrying ``MARK=tag`` in their environment."""
    needle = f"{MARK}={tag}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                stat = (entry / "stat").read_text()
                if stat.rsplit(") ", 1)[1][0] != "Z":
                    pids.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return pids


def orphans_after(tag: str, grace: float) -> int:
    """Marked processes still alive ``grace`` seconds from now (then killed, so later rounds start clean)."""
    deadline = time.monotonic() + grace
    while marked(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = marked(tag)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(left)


def scan(root: Path) -> tuple[list[str], list[str]]:
    """(partial files: final names that do not load, stale temps) under ``root``."""
    import yaml

    from fh_rl.trainer import load_checkpoint

    partial, temps = [], []
    if not root.exists():
        return partial, temps
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        name = path.name
        if name.startswith(".") and name.endswith(".tmp"):
            temps.append(str(path))
            continue
        try:
            if name.endswith(".pt"):
                load_checkpoint(path)
            elif name.endswith(".json"):
                json.loads(path.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
            elif name.endswith(".yaml"):
                if not isinstance(yaml.safe_load(path.read_text()), dict):
                    raise ValueError("not a mapping")
            elif name.endswith(".hdf5"):
                from fh_rl.datasets import load_hdf5

                load_hdf5(path)
        except Exception as exc:  # anything that does not load is a partial file
            partial.append(f"{path}: {type(exc).__name__}: {exc}")
    return partial, temps


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("config.yaml")) if root.exists() else []


def final_params(run_dir: Path):
    from fh_rl.trainer import load_checkpoint

    return load_checkpoint(run_dir)["model"]


def same_params(a, b) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def eval_returns(path: Path) -> list[list[float]]:
    return [r["returns"] for r in json.loads(path.read_text())["results"]]


# ----------------------------------------------------------------------------- one round


@dataclass
class Tally:
    rounds: int = 0
    killed: int = 0
    resumed_ok: int = 0
    equal: int = 0
    orphans: int = 0
    partial: int = 0
    partial_after: int = 0
    temps: int = 0
    temps_after: int = 0
    notes: list[str] = field(default_factory=list)


def resume(kind: str, cmds: Commands, d: Path, tag: str, log: Path) -> int:
    """Continue what the killed command was doing; the exit code of the last command run."""
    if kind == "train":
        dirs = run_dirs(d)
        for run_dir in dirs:
            if not (run_dir / "checkpoints" / "last.pt").exists():
                shutil.rmtree(run_dir)  # killed before its first checkpoint: start again
        dirs = [r for r in dirs if r.exists()]
        if not dirs:
            return run(cmds.train(d), tag, log)[0]
        (run_dir,) = dirs
        if (run_dir / "eval.json").exists():
            return 0  # it had finished
        return run([sys.executable, "-m", "fh_rl.train", "--resume", str(run_dir), "--no-progress"], tag, log)[0]
    if kind == "sweep":
        return run(cmds.sweep(d), tag, log)[0]
    if kind == "collect":
        if (d / "collected.hdf5").exists():
            return 0
        return run(cmds.collect(d), tag, log)[0]
    return run(cmds.evaluate(d / "run"), tag, log)[0]


def verify(kind: str, d: Path, ref: dict) -> tuple[bool, str]:
    """Whether the resumed result equals the uninterrupted one (and why not)."""
    if kind == "train":
        (run_dir,) = run_dirs(d)
        ok = same_params(final_params(run_dir), ref["train"]) and (run_dir / "eval.json").is_file()
        events = len(list(run_dir.glob("events.out.tfevents.*")))
        return ok and events == 1, f"train: parameters equal {ok}, events files {events}"
    if kind == "sweep":
        ok = True
        for run_dir in run_dirs(d):
            point = run_dir.relative_to(d).parts[0]
            ok &= same_params(final_params(run_dir), ref["sweep"][point]) and (run_dir / "eval.json").is_file()
            ok &= len(list(run_dir.glob("events.out.tfevents.*"))) == 1
        return ok and len(run_dirs(d)) == len(ref["sweep"]), "sweep: a point differs"
    if kind == "collect":
        from fh_rl.datasets import load_hdf5

        ok = load_hdf5(d / "collected.hdf5").content_hash() == ref["collect"]
        return ok, "collect: data differs"
    run_dir = d / "run"
    evals = sorted(run_dir.glob("eval-*.json"))
    ok = bool(evals) and eval_returns(evals[-1]) == ref["evaluate"]
    ok &= (run_dir / "eval.json").read_bytes() == ref["training_eval"]
    ok &= len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    return ok, "evaluate: result, eval.json or events files differ"


def one_round(kind: str, i: int, cmds: Commands, work: Path, ref: dict, durations: dict, starts: dict,
              rng: random.Random, tally: Tally) -> None:
    d = work / f"round{i:03d}-{kind}"
    d.mkdir()
    log = d / "campaign.log"
    tag = uuid.uuid4().hex
    if kind == "evaluate":
        shutil.copytree(ref["train_dir"], d / "run")
        cmd = cmds.evaluate(d / "run")
    else:
        cmd = getattr(cmds, kind)(d)
    after_start = starts.get(kind) is not None and rng.random() < 0.5
    if after_start:
        delay = rng.uniform(0.0, 1.0) * (durations[kind] - starts[kind])
        when = f"{delay:.1f} s after its first run directory appeared"
    else:
        delay = rng.uniform(0.1, 1.0) * durations[kind]
        when = f"{delay:.1f} s"
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}   (kill -9 {when})\n")
        out.flush()
        proc = subprocess.Popen(cmd, env=child_env(tag), stdout=out, stderr=subprocess.STDOUT)
        if after_start:
            deadline = time.monotonic() + 3 * durations[kind]
            while proc.poll() is None and not run_dirs(d) and time.monotonic() < deadline:
                time.sleep(0.05)
        try:
            proc.wait(delay)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            tally.killed += 1
    tally.rounds += 1
    tally.orphans += orphans_after(tag, GRACE)
    partial, temps = scan(d)
    tally.partial += len(partial)
    tally.temps += len(temps)
    tally.notes += partial
    code = resume(kind, cmds, d, tag, log)
    if code == 0:
        tally.resumed_ok += 1
        ok, why = verify(kind, d, ref)
        tally.equal += ok
        if not ok:
            tally.notes.append(f"round {i}: {why} (log {log})")
    else:
        tally.notes.append(f"round {i}: resume exited {code} (log {log})")
    tally.orphans += orphans_after(tag, GRACE)
    partial, temps = scan(d)
    tally.partial_after += len(partial)
    tally.temps_after += len(temps)
    tally.notes += partial


# ----------------------------------------------------------------------------- full-disk rounds


@dataclass
class DiskTally:
    rounds: int = 0
    finished: int = 0
    refused: int = 0
    crashed: int = 0
    partial: int = 0
    temps: int = 0
    changed: int = 0
    recovered: int = 0
    notes: list[str] = field(default_factory=list)


def _fill(disk: Path, leave: int = 0) -> None:
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    try:
        with open(disk / "filler", "ab") as f:
            f.write(b"\0" * max(0, free - leave))
    except OSError:
        pass  # full


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "filler" and not p.name.endswith(".lock")}


def disk_round(kind: str, i: int, cmds: Commands, work: Path, ref: dict, durations: dict, rng: random.Random,
               tally: DiskTally) -> None:
    """One command with its output on a tmpfs that fills up (see the module doc)."""
    d = work / f"disk{i:03d}-{kind}"
    disk = d / "disk"
    disk.mkdir(parents=True)
    log = d / "campaign.log"
    tag = uuid.uuid4().hex
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(disk)], check=True)
    try:
        if kind == "train":
            cmd = cmds.train(disk)
        elif kind == "collect":
            cmd = cmds.collect(disk)
        elif kind == "evaluate":
            shutil.copytree(ref["train_dir"], disk / "run")
            cmd = cmds.evaluate(disk / "run")
        else:
            cmd = [sys.executable, "-m", "fh_rl.compare", str(ref["train_dir"]), "--out", str(disk / "report")]
            code, _, _ = run(cmd, tag, log)  # an earlier report, which must survive
            assert code == 0, f"compare failed on an empty disk: see {log}"
        before = _files(disk)
        during = rng.random() < 0.5
        if during:
            moment = rng.uniform(0.1, 1.0) * durations[kind]
            how = f"filled {moment:.1f} s into the run"
        else:
            leave = int(math.exp(rng.uniform(math.log(4 << 10), math.log(4 << 20))))
            _fill(disk, leave)
            how = f"{leave >> 10} KiB left free"
        with open(log, "a") as out:
            out.write(f"$ {' '.join(cmd)}   ({how})\n")
        proc = subprocess.Popen(cmd, env=child_env(tag), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if during:
            try:
                proc.wait(moment)
            except subprocess.TimeoutExpired:
                _fill(disk)
        try:
            _, err = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        with open(log, "a") as out:
            out.write(err)
        lines = err.strip().splitlines()
        errors = [x for x in lines if x.startswith("error: ")]
        clean = (proc.returncode == 0 and not errors) or (
            proc.returncode == 2 and len(errors) == 1 and lines[-1] == errors[0])
        clean &= not any("Traceback" in x or "Exception in thread" in x for x in lines)
        tally.rounds += 1
        if clean and proc.returncode == 0:
            tally.finished += 1
        elif clean:
            tally.refused += 1
        else:
            tally.crashed += 1
            tally.notes.append(f"disk round {i} ({kind}, {how}): exit {proc.returncode}, "
                               f"{lines[-1] if lines else 'no output'} (log {log})")
        partial, temps = scan(disk)
        tally.partial += len(partial)
        tally.temps += len(temps)
        tally.notes += partial + [f"disk round {i}: temp left {t}" for t in temps]
        after = _files(disk)  # a command that finished may rewrite what it owns (evaluate merges the events file)
        changed = [k for k, v in before.items() if after.get(k) != v] if not (clean and proc.returncode == 0) else []
        tally.changed += len(changed)
        tally.notes += [f"disk round {i} ({kind}): {k} changed" for k in changed]
        (disk / "filler").unlink(missing_ok=True)
        dirs = [r for r in run_dirs(disk) if (r / "checkpoints" / "last.pt").exists()] if kind == "train" else []
        if kind == "train" and dirs and not (dirs[0] / "eval.json").exists():
            again = [sys.executable, "-m", "fh_rl.train", "--resume", str(dirs[0]), "--no-progress"]
        elif kind == "train" and dirs:
            again = None  # it had finished
        elif kind == "collect" and (disk / "collected.hdf5").exists():
            again = None
        else:
            again = cmd
        code = 0 if again is None else run(again, tag, log)[0]
        tally.recovered += code == 0
        if code != 0:
            tally.notes.append(f"disk round {i} ({kind}): after freeing the disk, exit {code} (log {log})")
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def print_disk_table(tallies: dict[str, DiskTally]) -> int:
    print(f"{'kind':<9} {'rounds':>6} {'finished':>8} {'refused (1 line)':>16} {'crashed':>7} {'partial files':>13} "
          f"{'temps left':>10} {'earlier files changed':>21} {'recovered':>9}")
    total = DiskTally()
    for t in tallies.values():
        for name in ("rounds", "finished", "refused", "crashed", "partial", "temps", "changed", "recovered"):
            setattr(total, name, getattr(total, name) + getattr(t, name))
        total.notes += t.notes
    for kind, t in [*tallies.items(), ("total", total)]:
        print(f"{kind:<9} {t.rounds:>6} {t.finished:>8} {t.refused:>16} {t.crashed:>7} {t.partial:>13} {t.temps:>10} "
              f"{t.changed:>21} {f'{t.recovered}/{t.rounds}':>9}")
    print("finished: exit 0; refused: exit 2 with one error line and no traceback; crashed: anything else; "
          "recovered: the same command (a resume for a run with a checkpoint) exited 0 once the disk was freed")
    for note in total.notes:
        print(f"  {note}")
    return total.crashed + total.partial + total.temps + total.changed + (total.rounds - total.recovered)


def references(cmds: Commands, work: Path) -> tuple[dict, dict, dict]:
    """Each kind run once, uninterrupted: its result, its wall time and when its first run directory appeared."""
    tag = uuid.uuid4().hex
    log = work / "references.log"
    ref, durations, starts = {}, {}, {}
    d = work / "ref-collect"
    d.mkdir()
    code, durations["collect"], _ = run(cmds.collect(d), tag, log)
    assert code == 0, f"reference collect failed: see {log}"
    from fh_rl.datasets import load_hdf5

    ref["collect"] = load_hdf5(d / "collected.hdf5").content_hash()
    d = work / "ref-train"
    code, durations["train"], starts["train"] = run(cmds.train(d), tag, log, started=d)
    assert code == 0, f"reference train failed: see {log}"
    (ref["train_dir"],) = run_dirs(d)
    ref["train"] = final_params(ref["train_dir"])
    ref["training_eval"] = (ref["train_dir"] / "eval.json").read_bytes()
    d = work / "ref-sweep"
    code, durations["sweep"], starts["sweep"] = run(cmds.sweep(d), tag, log, started=d)
    assert code == 0, f"reference sweep failed: see {log}"
    ref["sweep"] = {r.relative_to(d).parts[0]: final_params(r) for r in run_dirs(d)}
    d = work / "ref-evaluate"
    shutil.copytree(ref["train_dir"], d)
    code, durations["evaluate"], _ = run(cmds.evaluate(d), tag, log)
    assert code == 0, f"reference evaluate failed: see {log}"
    ref["evaluate"] = eval_returns(sorted(d.glob("eval-*.json"))[-1])
    d = work / "ref-compare"
    code, durations["compare"], _ = run([sys.executable, "-m", "fh_rl.compare", str(ref["train_dir"]), "--out", str(d)],
                                        tag, log)
    assert code == 0, f"reference compare failed: see {log}"
    return ref, durations, starts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds, cycling train, sweep, collect, evaluate (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--steps", type=int, default=60, help="training steps of each run (default 60)")
    parser.add_argument("--collect-steps", type=int, default=400, help="SAC steps of each collect (default 400)")
    parser.add_argument("--keep", default=None, metavar="DIR", help="work in DIR and keep it (default: a temp dir, removed)")
    parser.add_argument("--disk-rounds", type=int, default=0,
                        help="full-disk rounds after the kill rounds, cycling train, evaluate, collect, compare (root only)")
    args = parser.parse_args(argv)
    if args.rounds < 0 or args.disk_rounds < 0 or args.rounds + args.disk_rounds < 1:
        raise SystemExit("--rounds and --disk-rounds must be >= 0, and one of them >= 1")
    if args.disk_rounds and os.geteuid() != 0:
        raise SystemExit("--disk-rounds mounts a tmpfs for each round, which needs root")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fh_rl-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    try:
        cmds = Commands(work, args.steps, args.collect_steps)
        ref, durations, starts = references(cmds, work)
        tallies = {k: Tally() for k in KINDS}
        for i in range(args.rounds):
            kind = KINDS[i % len(KINDS)]
            one_round(kind, i, cmds, work, ref, durations, starts, rng, tallies[kind])
            print(f"round {i + 1}/{args.rounds} ({kind}) done", file=sys.stderr, flush=True)
        disk = {k: DiskTally() for k in DISK_KINDS[: max(1, min(len(DISK_KINDS), args.disk_rounds))]}
        for i in range(args.disk_rounds):
            kind = DISK_KINDS[i % len(DISK_KINDS)]
            disk_round(kind, i, cmds, work, ref, durations, rng, disk[kind])
            print(f"disk round {i + 1}/{args.disk_rounds} ({kind}) done", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"fault campaign: {args.rounds} rounds, {args.disk_rounds} full-disk rounds, seed {args.seed}, {args.steps} "
          f"training steps per run; uninterrupted wall times {', '.join(f'{k} {v:.0f} s' for k, v in durations.items())}; "
          f"{time.perf_counter() - t0:.0f} s in all")
    head = (f"{'kind':<9} {'rounds':>6} {'killed':>6} {'resumed':>7} {'equal to uninterrupted':>22} {'orphans':>7} "
            f"{'partial files':>13} {'stale temps':>11} {'temps left':>10}")
    print(head)
    total = Tally()
    for kind in KINDS:
        t = tallies[kind]
        for name in ("rounds", "killed", "resumed_ok", "equal", "orphans", "partial", "partial_after", "temps", "temps_after"):
            setattr(total, name, getattr(total, name) + getattr(t, name))
        total.notes += t.notes
    for kind, t in [*tallies.items(), ("total", total)]:
        print(f"{kind:<9} {t.rounds:>6} {t.killed:>6} {t.resumed_ok:>7} {f'{t.equal}/{t.rounds}':>22} {t.orphans:>7} "
              f"{t.partial + t.partial_after:>13} {t.temps:>11} {t.temps_after:>10}")
    print("killed: still running at its kill moment (else it had finished); resumed: the resume or re-run exited 0; "
          "partial files: unloadable files under final names, after the kill or after the resume; stale temps: "
          ".*.tmp files of writes cut by the kill; temps left: those still there after the resume")
    for note in total.notes:
        print(f"  {note}")
    bad = total.orphans + total.partial + total.partial_after + total.temps_after + (total.rounds - total.equal)
    if args.disk_rounds:
        print()
        bad += print_disk_table(disk)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Nothing lost, round 3 (issue 26): each fault through the real CLIs, exit 2, one line, earlier files untouched.

1. a record that cannot be read (manifest.json) is never replaced;
2. a full disk (a real small tmpfs, mounted when running as root) in train's checkpoint, evaluate's lock and
   result, compare --out and collect (whose HDF5 write used to end in a segmentation fault);
3. a read-only run directory (a read-only bind mount as root, else chmod): evaluate --out still works;
4. bad input named: invalid YAML in --set, empty sections, unknown devices and environments, seeds beyond
   32 bits, absurd --steps, a directory as --config, WORLD_SIZE/RANK misuse;
5. data that would train wrong: agent.max_timestep below the longest episode, values that overflow float32,
   boolean or string actions;
6. a checkpoint of another run, a config.yaml edited after training, a killed compare's temps.

One tiny run is trained per module (``base_run``); every test works on its own copy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from fh_rl import compare as compare_cli
from fh_rl import evaluate as evaluate_cli
from fh_rl import sweep as sweep_cli
from fh_rl import train as train_cli
from fh_rl.datasets import collect as collect_cli
from fh_rl.infra.cli import run_cli
from tests.tiny_run import PYTHON, child_env, write_tiny_config

QUIET = ["--no-progress"]


# ----------------------------------------------------------------------------- helpers


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (lock files excepted: a holder removes its own) by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def refused(capsys, main, argv: list[str], *, only_line: bool = True) -> str:
    """Run a CLI in this process: it must exit 2 with one ``error:`` line, last, and no traceback; with
    ``only_line`` nothing else either (refused before it started: no progress lines)."""
    capsys.readouterr()
    code = run_cli(main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (code, err)
    assert err and err[-1].startswith("error: ") and sum(x.startswith("error: ") for x in err) == 1, err
    assert not any("Traceback" in x for x in err), err
    assert len(err) == 1 or not only_line, err
    return err[-1]


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("config.yaml")) if root.exists() else []


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, pendulum_hdf5):
    """(config, run directory) of one finished tiny run (6 steps, checkpoints at 3 and 6, evaluated)."""
    work = tmp_path_factory.mktemp("base")
    config = write_tiny_config(work, pendulum_hdf5)
    assert run_cli(train_cli.main, ["--config", str(config), "--set", f"run_root={work / 'runs'}", *QUIET]) == 0
    (run_dir,) = run_dirs(work / "runs")
    return config, run_dir


@pytest.fixture()
def run_copy(base_run, tmp_path):
    """A private copy of the base run (tests may break it)."""
    return Path(shutil.copytree(base_run[1], tmp_path / "run"))


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount here ({result.stderr.strip()})")


@pytest.fixture()
def small_disk(tmp_path):
    """A 4 MiB tmpfs (root only), unmounted afterwards whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a tmpfs, and mounting one needs root (CI runs as root)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path, leave: int = 0) -> None:
    """Fill ``disk`` with one file so that about ``leave`` bytes stay free."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(disk / "filler", "ab") as f:
        with contextlib.suppress(OSError):  # ENOSPC: full
            f.write(b"\0" * max(0, free - leave))


@contextlib.contextmanager
def read_only(directory: Path):
    """``directory`` made read-only: a read-only bind mount as root (root ignores permission bits), else chmod."""
    if os.geteuid() == 0:
        _mount("--bind", str(directory), str(directory))
        try:
            _mount("-o", "remount,bind,ro", str(directory))
            yield directory
        finally:
            subprocess.run(["umount", "-l", str(directory)], check=False)
        return
    modes = {p: p.stat().st_mode for p in [directory, *directory.rglob("*")] if p.is_dir()}
    try:
        for p in modes:
            p.chmod(0o555)
        yield directory
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


# ----------------------------------------------------------------------------- 1. unreadable records


@pytest.mark.parametrize("text, problem", [("{\"command\": [\"python\", ", "is not valid JSON"),
                                           ("[]", "holds a list, not a JSON object")])
def test_unreadable_manifest_is_never_replaced(run_copy, capsys, text, problem):
    (run_copy / "manifest.json").write_text(text)
    (run_copy / "eval.json").unlink()  # resumable (not complete): resume would evaluate and append to the manifest
    before = snapshot(run_copy)
    line = refused(capsys, train_cli.main, ["--resume", str(run_copy), *QUIET])
    assert str(run_copy / "manifest.json") in line and problem in line and "never replaces" in line, line
    assert snapshot(run_copy) == before


def test_debug_shows_the_traceback_of_a_storage_error(run_copy, monkeypatch):
    from fh_rl.infra.cli import StorageError

    monkeypatch.setenv("FH_RL_DEBUG", "1")
    with read_only(run_copy), pytest.raises(StorageError, match="is read-only"):
        run_cli(evaluate_cli.main, [str(run_copy), *QUIET])


# ----------------------------------------------------------------------------- 2. a full disk


def test_a_disk_too_small_for_the_checkpoints_is_refused_before_training(base_run, small_disk, capsys):
    config, base = base_run
    checkpoint = (base / "checkpoints" / "last.pt").stat().st_size
    fill(small_disk, leave=int(1.5 * checkpoint))  # one checkpoint would fit, not the second beside it
    line = refused(capsys, train_cli.main, ["--config", str(config), "--set", f"run_root={small_disk / 'runs'}", *QUIET])
    assert f"{str(small_disk / 'runs')!r} is on a disk with" in line and "checkpoint(s) of" in line, line
    assert run_dirs(small_disk / "runs") == [] and not list(small_disk.rglob("*.tmp"))


def test_disk_filled_during_training_keeps_the_last_good_checkpoint(base_run, small_disk, capsys, monkeypatch):
    """Another process fills the disk after the first checkpoint: the second fails, the first stays, and once
    space is freed a resume finishes the run."""
    import fh_rl.trainer

    real, calls = fh_rl.trainer.atomic_torch_save, []

    def fill_then_save(state, path):
        calls.append(path)
        if len(calls) == 2:
            fill(small_disk)
        real(state, path)

    monkeypatch.setattr(fh_rl.trainer, "atomic_torch_save", fill_then_save)
    line = refused(capsys, train_cli.main, ["--config", str(base_run[0]), "--set", f"run_root={small_disk / 'runs'}",
                                            "--set", "train.steps=9", *QUIET], only_line=False)  # "run directory: ..."
    (run_dir,) = run_dirs(small_disk / "runs")
    assert f"cannot write {run_dir / 'checkpoints' / 'last.pt'}: the disk is full" in line, line
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == 3  # the last good one
    assert not list(small_disk.rglob("*.tmp"))
    monkeypatch.setattr(fh_rl.trainer, "atomic_torch_save", real)
    (small_disk / "filler").unlink()
    assert run_cli(train_cli.main, ["--resume", str(run_dir), "--no-eval", *QUIET]) == 0
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == 9
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1


def test_full_disk_under_the_events_writer_is_one_error_not_a_thread_traceback(small_disk, capsys):
    """TensorBoard's writer thread used to print its ENOSPC traceback, then hand the plain OSError to training."""
    from fh_rl.infra.cli import StorageError
    from fh_rl.infra.events import open_writer

    writer = open_writer(small_disk)
    fill(small_disk)
    with pytest.raises(StorageError, match=r"cannot write .*events\.out\.tfevents.*: the disk is full"):
        for step in range(100_000):  # the file's last page still has room for a few records
            writer.add_scalar("train/loss", 1.0, step)
            if step % 100 == 0:
                writer.flush()
    assert "Traceback" not in capsys.readouterr().err


def test_full_disk_when_evaluate_locks_or_writes(base_run, small_disk, capsys):
    run_dir = Path(shutil.copytree(base_run[1], small_disk / "run"))
    fill(small_disk)
    before = snapshot(small_disk)
    line = refused(capsys, evaluate_cli.main, [str(run_dir), *QUIET])
    assert f"run directory {str(run_dir)!r} is on a full disk" in line and "--out" in line, line
    out = small_disk / "elsewhere.json"
    line = refused(capsys, evaluate_cli.main, [str(run_dir), "--out", str(out), *QUIET])
    assert f"cannot write {out}: the disk is full" in line, line
    assert snapshot(small_disk) == before


def test_full_disk_in_compare_out_keeps_the_earlier_report(base_run, small_disk, capsys):
    out = small_disk / "report"
    assert run_cli(compare_cli.main, [str(base_run[1]), "--out", str(out), "--no-figures"]) == 0
    fill(small_disk)
    before = snapshot(small_disk)
    line = refused(capsys, compare_cli.main, [str(base_run[1]), "--out", str(out), "--no-figures"])
    assert "the disk is full" in line and str(out) in line, line
    assert snapshot(small_disk) == before and not list(out.glob(".*.tmp"))


def test_full_disk_in_collect_is_one_line_not_a_crash(small_disk):
    """h5py ends the process with a segmentation fault (exit 139) when the disk fills under it: checked first."""
    fill(small_disk, leave=8 << 10)
    out = small_disk / "pendulum.hdf5"
    cmd = [PYTHON, "-m", "fh_rl.datasets.collect", "control", "--env", "Pendulum-v1", "--steps", "150",
           "--expert-episodes", "1", "--out", str(out)]
    done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=300)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1, (done.returncode, done.stderr)
    assert f"cannot write {out}: the disk is full" in err[0], err
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_write_hdf5_checks_free_space_before_h5py_writes(small_disk, pendulum_hdf5):
    from fh_rl.datasets import load_hdf5, write_hdf5
    from fh_rl.infra.cli import StorageError

    fill(small_disk, leave=8 << 10)  # where h5py crashed: some space, not enough
    with pytest.raises(StorageError, match="the disk is full for it"):
        write_hdf5(small_disk / "copy.hdf5", load_hdf5(pendulum_hdf5))
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


# ----------------------------------------------------------------------------- 3. a read-only run directory


def test_read_only_run_directory(base_run, run_copy, tmp_path, capsys):
    before = snapshot(run_copy)
    with read_only(run_copy):
        line = refused(capsys, evaluate_cli.main, [str(run_copy), *QUIET])
        assert f"run directory {str(run_copy)!r} is read-only" in line and "pass --out FILE" in line, line
        line = refused(capsys, train_cli.main, ["--resume", str(run_copy), *QUIET])
        assert f"run directory {str(run_copy)!r} is read-only" in line and "copy the run directory" in line, line
        line = refused(capsys, evaluate_cli.main, [str(run_copy), "--out", str(run_copy / "mine.json"), *QUIET])
        assert f"run directory {str(run_copy)!r} is read-only" in line, line
        shelf = tmp_path / "shelf"
        shelf.mkdir()
        with read_only(shelf):  # --out in a read-only place: found before the rollouts
            line = refused(capsys, evaluate_cli.main, [str(run_copy), "--out", str(shelf / "x.json"), *QUIET])
            assert f"cannot write {shelf / 'x.json'}: {shelf} is not writable" in line, line
        line = refused(capsys, train_cli.main, ["--config", str(base_run[0]), "--set", f"run_root={run_copy / 'new'}"])
        assert f"cannot write a run under run_root {str(run_copy / 'new')!r}: {run_copy} is not writable" in line, line
        out = tmp_path / "elsewhere.json"  # reading a read-only run is fine when the result goes elsewhere
        assert run_cli(evaluate_cli.main, [str(run_copy), "--out", str(out), *QUIET]) == 0
        assert yaml.safe_load(out.read_text())["results"]
    assert snapshot(run_copy) == before


# ----------------------------------------------------------------------------- 4. bad input, named


@pytest.mark.parametrize("value, problem", [
    ("agent.n_layer=[1, 2", "expected ',' or ']'"),
    ("eval.episodes=a: b: c", "mapping values are not allowed here"),
    ("agent.name=\x01", "special characters are not allowed"),
    ("agent.name=\udcff", "special characters are not allowed"),  # a non-UTF-8 byte as Python's argv holds it
    ("agent.name=!!python/object/apply:os.system [echo]", "could not determine a constructor"),
])
def test_invalid_yaml_in_set_is_one_line(base_run, tmp_path, capsys, value, problem):
    config = str(base_run[0])
    for main, argv in ((train_cli.main, ["--config", config, "--set", value, "--set", f"run_root={tmp_path}", *QUIET]),
                       (sweep_cli.main, ["--config", config, "--set", value, "--root", str(tmp_path / "s"), "--dry-run"])):
        line = refused(capsys, main, argv)
        assert f"--set {value.split('=')[0]}=" in line and "is not valid YAML" in line and problem in line, line
    assert run_dirs(tmp_path) == []


def test_empty_section_never_falls_back_to_built_in_defaults(base_run, tmp_path, capsys):
    config = str(base_run[0])
    line = refused(capsys, train_cli.main, ["--config", config, "--set", "agent={}", "--set", f"run_root={tmp_path}"])
    assert "config section 'agent' is empty" in line and "--set agent.KEY=VALUE" in line, line
    text = yaml.safe_load(base_run[0].read_text())
    text["agent"] = None  # `agent:` with no keys
    (tmp_path / "empty.yaml").write_text(yaml.safe_dump(text))
    line = refused(capsys, train_cli.main, ["--config", str(tmp_path / "empty.yaml"), "--set", f"run_root={tmp_path}"])
    assert "config section 'agent' is empty ('agent:' with no keys)" in line, line
    line = refused(capsys, train_cli.main, ["--config", config, "--set", "head=", "--set", f"run_root={tmp_path}"])
    assert "config section 'head' is empty" in line, line
    assert run_dirs(tmp_path) == []


def test_unknown_names_and_out_of_range_numbers_are_named(base_run, run_copy, tmp_path, capsys):
    config = str(base_run[0])
    runs = tmp_path / "runs"
    before = snapshot(run_copy)
    line = refused(capsys, evaluate_cli.main, [str(run_copy), "--device", "tpu9", *QUIET])
    assert "--device 'tpu9' is not a device" in line, line
    line = refused(capsys, evaluate_cli.main, [str(run_copy), "--seed", "-5", *QUIET])
    assert "--seed must be an integer in [0, 4294967295]" in line and "got -5" in line, line
    line = refused(capsys, train_cli.main, ["--config", config, "--seed", str(2**64), "--set", f"run_root={runs}"])
    assert "seed must be an integer in [0, 4294967295]" in line and str(2**64) in line, line
    line = refused(capsys, train_cli.main, ["--config", str(tmp_path), "--set", f"run_root={runs}"])
    assert f"--config {str(tmp_path)!r} is a directory, not a YAML file" in line, line
    out = tmp_path / "c.hdf5"
    line = refused(capsys, collect_cli.main, ["control", "--env", "Pendulm-v1", "--steps", "100", "--out", str(out)])
    assert "unknown environment 'Pendulm-v1'" in line and "Pendulum" in line, line
    line = refused(capsys, collect_cli.main, ["control", "--env", "Pendulum-v1", "--steps", str(10**20), "--out", str(out)])
    assert "collecting 100,000,000,000,000,000,000 steps of Pendulum-v1 needs about" in line and "lower --steps" in line
    assert snapshot(run_copy) == before and run_dirs(runs) == [] and not out.exists()


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "2", "RANK": "5"}, "RANK=5 but WORLD_SIZE=2: ranks run 0..1"),
    ({"RANK": "1"}, "RANK=1 but WORLD_SIZE=1"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0 must be >= 1"),
])
def test_rank_outside_the_world_is_refused_at_once(base_run, tmp_path, capsys, monkeypatch, env, message):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    line = refused(capsys, train_cli.main, ["--config", str(base_run[0]), "--set", f"run_root={tmp_path}", *QUIET])
    assert message in line and "torchrun" in line, line
    assert run_dirs(tmp_path) == []


# ----------------------------------------------------------------------------- 5. data that would train wrong


def _copy_with(src: Path, dst: Path, key: str, make) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        data = make(f[key][()])
        del f[key]
        f.create_dataset(key, data=data)
    return dst


def _at_row_37(value):
    def make(a):
        a = a.astype(np.float64)
        a[37] = value
        return a

    return make


@pytest.mark.parametrize("key, make, message", [
    ("observations", _at_row_37(1e30), "'observations' holds 1e+30 at row 37, beyond the 1e+15"),
    ("rewards", _at_row_37(3e38), "'rewards' holds 3e+38 at row 37, beyond the 1e+15"),
    ("rewards", _at_row_37(1e39), "'rewards' holds 1e+39 at row 37"),  # not float32's inf: the file's value
    ("actions", lambda a: a > 0, "'actions' holds booleans, expected numbers"),
    ("actions", lambda a: np.array([b"left"] * len(a)), "'actions' holds byte strings, expected numbers"),
    ("actions", lambda a: np.array(["left"] * len(a), dtype=h5py.string_dtype()), "'actions' holds objects"),
])
def test_data_that_would_train_wrong_names_file_key_and_value(pendulum_hdf5, tmp_path, capsys, key, make, message):
    data = _copy_with(pendulum_hdf5, tmp_path / "bad.hdf5", key, make)
    before = data.read_bytes()
    config = write_tiny_config(tmp_path, data)
    line = refused(capsys, train_cli.main, ["--config", str(config), "--set", f"run_root={tmp_path / 'runs'}", *QUIET])
    assert str(data) in line and message in line, line
    assert data.read_bytes() == before and run_dirs(tmp_path / "runs") == []


def test_dqn_replay_reward_that_would_overflow_names_file_and_row(tmp_path):
    import gzip

    from fh_rl.datasets import load_dqn_replay

    root = tmp_path / "replay"
    shutil.copytree(Path(__file__).parent / "fixtures" / "dqn-replay", root)
    path = root / "Breakout" / "1" / "replay_logs" / "$store$_reward_ckpt.1.gz"
    with gzip.open(path, "rb") as f:
        rewards = np.load(f, allow_pickle=False)
    slot = int(np.flatnonzero(rewards != 0)[0])  # a real row (padding rows hold reward 0)
    rewards[slot] = 1e30
    with gzip.open(path, "wb") as f:
        np.save(f, rewards, allow_pickle=False)
    with pytest.raises(ValueError, match=rf"reward_ckpt.1.gz: 'reward' holds 1e\+30 at row {slot}, beyond the 1e\+15"):
        load_dqn_replay(root, "Breakout", progress=False, cache=False)


def test_max_timestep_below_the_longest_episode_is_refused(base_run, tmp_path, capsys):
    line = refused(capsys, train_cli.main, ["--config", str(base_run[0]), "--set", "agent.max_timestep=10",
                                            "--set", f"run_root={tmp_path}", *QUIET])
    assert "episode 0 has 25 steps (timesteps 0..24) but agent.max_timestep is 10" in line, line
    assert "set agent.max_timestep=24" in line and run_dirs(tmp_path) == []


# ----------------------------------------------------------------------------- 6. whose run is it


def test_a_checkpoint_of_another_run_is_not_filed_under_this_one(run_copy, tmp_path, capsys):
    cfg = yaml.safe_load((run_copy / "config.yaml").read_text())
    cfg["env"]["name"] = "MountainCarContinuous-v0"  # this run's record; the checkpoint (copied in) is Pendulum's
    (run_copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    before = snapshot(run_copy)
    line = refused(capsys, evaluate_cli.main, [str(run_copy), *QUIET])
    assert "is of env.name 'Pendulum-v1' but the run directory's config.yaml says 'MountainCarContinuous-v0'" in line
    assert "--out FILE" in line, line
    line = refused(capsys, train_cli.main, ["--resume", str(run_copy), *QUIET])
    assert "is of env.name 'Pendulum-v1'" in line, line
    assert snapshot(run_copy) == before


def test_compare_trusts_the_checkpoint_over_an_edited_config(base_run, run_copy, tmp_path, capsys):
    text = (run_copy / "config.yaml").read_text()
    assert "batch_size: 8\n" in text
    (run_copy / "config.yaml").write_text(text.replace("batch_size: 8\n", "batch_size: 64\n"))
    out = tmp_path / "report"
    capsys.readouterr()
    assert run_cli(compare_cli.main, [str(base_run[1]), str(run_copy), "--out", str(out), "--no-figures"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {run_copy / 'config.yaml'} differs from the config saved in its checkpoint" in err
    assert "train.batch_size: 64 in config.yaml, 8 trained" in err
    report = yaml.safe_load((out / "comparison.json").read_text())
    labels = [row["label"] for row in report["environments"]["Pendulum-v1"]]
    assert labels and not any("batch_size" in label for label in labels), labels


def test_compare_clears_a_killed_compares_temps(base_run, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    stale = [out / ".pmfs-Pendulum-v1.png.k1ll3d.tmp", out / ".comparison.md.k1ll3d.tmp"]
    for path in stale:
        path.write_bytes(b"")  # what a compare killed inside a write leaves
    other = out / ".notes.txt.abc.tmp"  # not a name compare writes: left alone
    other.write_bytes(b"x")
    assert run_cli(compare_cli.main, [str(base_run[1]), "--out", str(out), "--no-figures"]) == 0
    assert not any(p.exists() for p in stale) and other.exists()
    assert sorted(p.name for p in out.iterdir()) == [".notes.txt.abc.tmp", "comparison.json", "comparison.md"]

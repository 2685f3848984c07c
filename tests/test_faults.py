"""Nothing lost, no silent corruption: issue 15's faults reproduced through the real CLIs.

1. one writer per run directory, sweep jobs die with a killed sweep, a sweep re-run never adds a writer;
2. non-finite or out-of-bounds data is refused before training (HDF5, Minari, DQN-Replay, the codec);
3. evaluate never replaces a result, refuses a non-finite target, writes strict JSON;
4. an empty or non-mapping config is refused; 5. absurd sizes are refused with an estimate;
6. a dataset that does not fit the environment is refused before training;
7. the smaller items: 0-byte checkpoint, one-line worker errors, collect's stale temps,
   one TensorBoard events file across resumes, the manifest records resumes.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from fh_rl import evaluate as evaluate_cli
from fh_rl import sweep
from fh_rl import train as train_cli
from fh_rl.infra.cli import run_cli
from fh_rl.infra.locks import is_run_dir_busy
from tests.tiny_run import PYTHON, child_env, write_tiny_config

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "dqn-replay"


def strict_json(path: Path):
    """Parse ``path`` rejecting NaN/Infinity (what Python's json would otherwise accept)."""

    def refuse(constant):
        raise ValueError(f"{path} holds {constant}: not JSON")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("config.yaml")) if root.exists() else []


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """Whether any thread of ``pid`` has yet to finish exiting (a zombie is dead).

    Every thread counts, not only the main one: when a multi-threaded process
    exits, its main thread can already show as a zombie while other threads
    still hold the process's files (and so its flocks) open.
    """
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return False
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                if f.read().rsplit(") ", 1)[1][0] not in "ZX":
                    return True
        except (FileNotFoundError, ProcessLookupError):
            continue
    return False


@pytest.fixture()
def tiny(tmp_path, pendulum_hdf5):
    return write_tiny_config(tmp_path, pendulum_hdf5)


def train_args(config: Path, root: Path, *sets: str) -> list[str]:
    return ["--config", str(config), "--set", f"run_root={root}", "--no-progress", *[a for s in sets for a in ("--set", s)]]


# ----------------------------------------------------------------------------- 1. one writer


def start_training(config: Path, root: Path, *sets: str) -> tuple[subprocess.Popen, Path]:
    """A long training run in its own process; returns once it holds its run directory and has a checkpoint."""
    cmd = [PYTHON, "-m", "fh_rl.train", *train_args(config, root, "train.steps=100000", "train.checkpoint_every=5",
                                                     "train.val_every=100000", *sets), "--no-eval"]
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any((d / "checkpoints" / "last.pt").exists() for d in run_dirs(root)) or proc.poll() is not None,
             300, "the first checkpoint")
    assert proc.poll() is None, proc.stderr.read()
    (run_dir,) = run_dirs(root)
    return proc, run_dir


@pytest.mark.slow
def test_second_writer_exits_2_naming_the_owner(tiny, tmp_path, capsys):
    proc, run_dir = start_training(tiny, tmp_path / "runs")
    try:
        assert run_cli(train_cli.main, ["--resume", str(run_dir), "--no-progress"]) == 2
        assert f"is in use by pid {proc.pid} (python -m fh_rl.train" in one_error_line(capsys)
        assert run_cli(evaluate_cli.main, [str(run_dir), "--episodes", "1", "--workers", "0", "--no-progress"]) == 2
        assert f"is in use by pid {proc.pid}" in one_error_line(capsys)
        # Reading is fine: evaluating into a file outside the run directory writes nothing there.
        out = tmp_path / "elsewhere.json"
        assert run_cli(evaluate_cli.main, [str(run_dir), "--episodes", "1", "--workers", "0", "--no-progress",
                                           "--out", str(out)]) == 0
        assert strict_json(out)["results"] and not list(run_dir.glob("eval*.json"))
    finally:
        proc.send_signal(signal.SIGTERM)  # the trainer checkpoints and stops
        assert proc.wait(120) == 143
    assert not (run_dir / ".lock").exists()  # released on exit


@pytest.mark.slow
def test_killed_sweep_takes_its_jobs_with_it_and_a_rerun_resumes(tiny, tmp_path):
    root = tmp_path / "sweep"
    cmd = [PYTHON, "-m", "fh_rl.sweep", "--config", str(tiny), "--heads", "linear", "--seeds", "0", "1", "--jobs", "2",
           "--root", str(root), "--no-progress", "--set", "train.steps=400", "--set", "train.checkpoint_every=10",
           "--set", "train.val_every=1000"]
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(list(root.rglob("last.pt"))) == 2, 300, "both jobs' first checkpoints")
        jobs = [int((d / ".lock").read_text().split()[0]) for d in sweep.run_dirs_under(root)]
        assert len(jobs) == 2 and all(alive(pid) for pid in jobs)
    finally:
        proc.kill()  # kill -9: the sweep gets no chance to stop its jobs itself
        proc.wait()
    wait_for(lambda: not any(alive(pid) for pid in jobs), 120, "the sweep's jobs to stop")
    assert all(is_run_dir_busy(d) is None for d in sweep.run_dirs_under(root))
    rerun = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr
    assert "0 trained, 2 resumed, 0 already complete, 0 failed" in rerun.stdout
    assert len([d for d in sweep.run_dirs_under(root) if sweep.is_complete(d)]) == 2


@pytest.mark.slow
def test_sweep_never_starts_a_second_writer(tiny, tmp_path, capsys):
    root = tmp_path / "sweep"
    points = sweep.expand_grid(["linear"], [], [0])
    assert run_cli(sweep.main, ["--config", str(tiny), "--heads", "linear", "--seeds", "0", "--root", str(root),
                                "--no-progress", "--set", "eval.episodes=1"]) == 0
    (run_dir,) = sweep.run_dirs_under(root / points[0].name)
    (run_dir / "eval.json").unlink()  # as if it stopped before its evaluation: the sweep would resume it
    proc = subprocess.Popen([PYTHON, "-c", HOLD_RUN_DIR, str(run_dir)], env=child_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"  # a live writer (e.g. a job of an earlier sweep)
        capsys.readouterr()
        code = run_cli(sweep.main, ["--config", str(tiny), "--heads", "linear", "--seeds", "0", "--root", str(root),
                                    "--no-progress", "--set", "eval.episodes=1"])
        out = capsys.readouterr().out
        assert code == 1 and f"in use by pid {proc.pid}" in out and "not started" in out
        assert not (run_dir / "eval.json").exists()  # nothing ran in it
        # A second sweep on the same directory while one runs: exit 2 naming the first.
        from fh_rl.infra.locks import hold_sweep_root

        with hold_sweep_root(root):
            assert run_cli(sweep.main, ["--config", str(tiny), "--heads", "linear", "--seeds", "0", "--root", str(root),
                                        "--no-progress", "--set", "eval.episodes=1"]) == 2
            assert f"sweep directory {str(root)!r} is in use by pid {os.getpid()}" in one_error_line(capsys)
    finally:
        proc.kill()
        proc.wait()


HOLD_RUN_DIR = """
import sys, time
from fh_rl.infra.locks import hold_run_dir
lock = hold_run_dir(sys.argv[1])
print("holding", flush=True)
time.sleep(600)
"""


# ----------------------------------------------------------------------------- 2. bad data


def pendulum_copy(src: Path, dst: Path, key: str, row: int, value) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        data = f[key][()]
        data[row] = value
        del f[key]
        f.create_dataset(key, data=data)
    return dst


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("actions", np.nan, "'actions' holds a non-finite value (nan) at row 37"),
        ("actions", np.inf, "'actions' holds a non-finite value (inf) at row 37"),
        ("rewards", np.nan, "'rewards' holds a non-finite value (nan) at row 37"),
        ("observations", np.nan, "'observations' holds a non-finite value (nan) at row 37"),
        ("actions", 100.0, "'actions' row 37 is [100.0], outside the environment's action bounds [[-2.0], [2.0]]"),
    ],
)
def test_bad_hdf5_values_are_refused_before_training(tmp_path, pendulum_hdf5, capsys, key, value, message):
    data = pendulum_copy(pendulum_hdf5, tmp_path / "bad.hdf5", key, 37, value)
    config = write_tiny_config(tmp_path, data)
    assert run_cli(train_cli.main, train_args(config, tmp_path / "runs")) == 2
    line = one_error_line(capsys)
    assert str(data) in line and message in line, line
    assert run_dirs(tmp_path / "runs") == []  # refused before a run directory was made


def test_clip_actions_opts_into_clipping(tmp_path, pendulum_hdf5, capsys):
    data = pendulum_copy(pendulum_hdf5, tmp_path / "far.hdf5", "actions", 37, 100.0)
    config = write_tiny_config(tmp_path, data, steps=2)
    assert run_cli(train_cli.main, train_args(config, tmp_path / "runs", "dataset.clip_actions=true") + ["--no-eval"]) == 0
    assert "dataset.clip_actions: 1 of 200 actions lie outside the bounds" in capsys.readouterr().err


def test_codec_never_bins_a_non_finite_action():
    from fh_rl.envs.codecs import BoxCodec

    codec = BoxCodec([-2.0], [2.0], 16)
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="Box actions must be finite"):
            codec.encode(np.array([[0.5], [bad]], np.float32))
        with pytest.raises(ValueError, match="Box actions must be finite"):
            codec.encode(torch.tensor([[bad]]))
    assert codec.encode(np.array([[-2.0], [2.0]])).ravel().tolist() == [0, 15]


def test_minari_non_finite_reward_names_episode_and_row(tmp_path):
    from fh_rl.datasets import load_minari

    path = tmp_path / "minari" / "data" / "main_data.hdf5"
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        for i in range(2):
            g = f.create_group(f"episode_{i}")
            g["observations"] = np.zeros((6, 3), np.float32)
            g["actions"] = np.zeros((5, 1), np.float32)
            rewards = np.ones(5, np.float32)
            if i == 1:
                rewards[3] = np.nan
            g["rewards"] = rewards
            g["terminations"] = np.zeros(5, bool)
            g["truncations"] = np.eye(5, dtype=bool)[-1]
    with pytest.raises(ValueError, match=r"main_data.hdf5: 'episode_1/rewards' holds a non-finite value \(nan\) at row 3"):
        load_minari(tmp_path / "minari")


def test_dqn_replay_non_finite_reward_names_file_and_row(tmp_path):
    from fh_rl.datasets import load_dqn_replay

    root = tmp_path / "replay"
    shutil.copytree(FIXTURE, root)
    logs = root / "Breakout" / "1" / "replay_logs"
    path = logs / "$store$_reward_ckpt.1.gz"
    with gzip.open(path, "rb") as f:
        rewards = np.load(f, allow_pickle=False)
    slot = int(np.flatnonzero(rewards != 0)[0])  # a real row (padding rows hold reward 0)
    rewards[slot] = np.nan
    with gzip.open(path, "wb") as f:
        np.save(f, rewards, allow_pickle=False)
    with pytest.raises(ValueError, match=rf"reward_ckpt.1.gz: 'reward' holds a non-finite value \(nan\) at row {slot}"):
        load_dqn_replay(root, "Breakout", progress=False, cache=False)


# ----------------------------------------------------------------------------- 3. evaluate


def test_evaluate_keeps_every_result_and_writes_strict_json(tmp_path, tiny, capsys):
    assert run_cli(train_cli.main, train_args(tiny, tmp_path / "runs", "train.steps=2")) == 0
    (run_dir,) = run_dirs(tmp_path / "runs")
    training = (run_dir / "eval.json").read_bytes()
    assert strict_json(run_dir / "eval.json")["written_by"] == "train"
    strict_json(run_dir / "manifest.json")
    capsys.readouterr()
    assert run_cli(train_cli.main, ["--resume", str(run_dir), "--no-progress"]) == 2  # would re-evaluate over eval.json
    assert "is complete" in one_error_line(capsys) and (run_dir / "eval.json").read_bytes() == training
    base = [str(run_dir), "--episodes", "1", "--workers", "0", "--no-progress"]
    for bad in ("nan", "inf", "-inf"):
        capsys.readouterr()
        assert run_cli(evaluate_cli.main, [*base, f"--target-return={bad}"]) == 2
        assert "--target-return must be a finite number" in one_error_line(capsys)
    assert run_cli(evaluate_cli.main, [*base, "--target-return", "-100"]) == 0
    assert run_cli(evaluate_cli.main, [*base, "--target-return", "-200"]) == 0
    written = sorted(run_dir.glob("eval-*.json"))
    assert len(written) == 2 and (run_dir / "eval.json").read_bytes() == training
    assert sorted(strict_json(p)["results"][0]["target_return"] for p in written) == [-200.0, -100.0]
    capsys.readouterr()
    assert run_cli(evaluate_cli.main, [*base, "--out", str(written[0])]) == 2
    assert "already exists" in one_error_line(capsys)

    # compare says which evaluation it used: the training-time one by default, or each run's latest.
    from fh_rl import compare

    latest = max(written, key=lambda p: p.stat().st_mtime_ns).name
    for choice, expected in (("training", "eval.json"), ("latest", latest)):
        out = tmp_path / f"cmp-{choice}"
        assert run_cli(compare.main, [str(run_dir), "--out", str(out), "--no-figures", "--eval", choice]) == 0
        report = strict_json(out / "comparison.json")
        (row,) = report["environments"]["Pendulum-v1"]
        assert row["evaluations"] == [expected] and report["statistics"]["evaluation"] == compare.EVALUATIONS[choice]
        assert f"Evaluation: {compare.EVALUATIONS[choice]}" in (out / "comparison.md").read_text()
        assert row["target_returns"] == [strict_json(run_dir / expected)["results"][0]["target_return"]]


# ----------------------------------------------------------------------------- 4-6. refused before training


@pytest.mark.parametrize("text, message", [("", "is empty"), ("# nothing\n", "is empty"),
                                           ("- a\n- b\n", "must hold a mapping of sections, got list")])
def test_empty_or_non_mapping_config_exits_2(tmp_path, capsys, text, message):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    assert run_cli(train_cli.main, ["--config", str(config), "--no-progress"]) == 2
    assert message in one_error_line(capsys)


@pytest.mark.parametrize("setting", ["train.weight_decay=.nan", "eval.target_returns=[.inf]", "head.regularization_gamma=nan"])
def test_non_finite_settings_exit_2(tmp_path, tiny, capsys, setting):
    assert run_cli(train_cli.main, train_args(tiny, tmp_path / "runs", setting)) == 2
    line = one_error_line(capsys)
    assert f"config key '{setting.split('=')[0]}" in line and "must be a finite number" in line, line


@pytest.mark.parametrize("setting, largest", [
    ("head.num_frequencies=1e9", "a tensor beyond 64-bit sizes"),
    ("head.num_frequencies=200000", "head.reg_basis"),
    ("env.num_bins=1000000000", "head.basis"),
    ("agent.embed_dim=1000000", "largest tensor blocks."),
    ("agent.context_len=10000000", "activations of one step"),
])
def test_absurd_sizes_are_refused_with_an_estimate(tmp_path, tiny, capsys, setting, largest):
    assert run_cli(train_cli.main, train_args(tiny, tmp_path / "runs", setting, "agent.max_timestep=200")) == 2
    line = one_error_line(capsys)
    assert "this configuration needs about" in line and largest in line and "is available RAM" in line, line
    assert run_dirs(tmp_path / "runs") == []  # refused before a run directory (or any allocation) was made


def test_memory_estimate_is_exact_for_parameters_and_skips_what_meta_cannot_build():
    from fh_rl.preflight import estimate_memory

    sizes = dict(batch_size=4, tokens=3, steps=1, embed_dim=8, n_layer=1, n_head=1)
    est = estimate_memory(lambda: torch.nn.Linear(1000, 1000), **sizes)
    assert est.parameters == 4 * 4 * (1000 * 1000 + 1000) and est.largest.startswith("weight (")

    class ReadsValues(torch.nn.Module):  # a plugin that looks at tensor values while it is built
        def __init__(self):
            super().__init__()
            if torch.zeros(1).sum().item() != 0:
                raise AssertionError

    assert estimate_memory(ReadsValues, **sizes) is None  # no estimate: training is not blocked


@pytest.mark.parametrize("env, message", [
    ("CartPole-v1", "states have shape (3,) but CartPole-v1 observes (4,)"),
    ("MountainCarContinuous-v0", "states have shape (3,) but MountainCarContinuous-v0 observes (2,)"),
])
def test_data_that_does_not_fit_the_env_is_refused_before_training(tmp_path, tiny, capsys, env, message):
    assert run_cli(train_cli.main, train_args(tiny, tmp_path / "runs", f"env.name={env}")) == 2
    assert message in one_error_line(capsys)
    assert run_dirs(tmp_path / "runs") == []


# ----------------------------------------------------------------------------- 7. the smaller items


def test_empty_checkpoint_says_why(tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"")
    assert run_cli(evaluate_cli.main, [str(run_dir), "--no-progress"]) == 2
    assert "is empty (0 bytes)" in one_error_line(capsys)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"garbage")
    assert run_cli(train_cli.main, ["--resume", str(run_dir), "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert "corrupt or not a checkpoint" in line and not line.endswith(": ")


FAULTY = "tests.envs.faulty_env:Faulty-v0"


@pytest.mark.parametrize("fault, message", [
    ("exit", "rollout worker 0 (pid"),
    ("hang", "did not answer within 3 s"),
])
def test_dead_or_hung_worker_is_one_line_and_the_traceback_is_behind_debug(capsys, monkeypatch, fault, message):
    from fh_rl.envs import RandomPolicy, evaluate, make_env

    def main(argv):
        evaluate(RandomPolicy(make_env(FAULTY).action_space), FAULTY, 2, workers=1, progress=False, step_timeout=3,
                 env_kwargs={"fault": fault, "fault_seed": 1, "fault_step": 3})

    monkeypatch.delenv("FH_RL_DEBUG", raising=False)
    assert run_cli(main, []) == 1
    line = one_error_line(capsys)
    assert message in line and "FH_RL_DEBUG=1" in line, line
    if fault == "exit":
        monkeypatch.setenv("FH_RL_DEBUG", "1")
        with pytest.raises(RuntimeError, match="rollout worker 0"):
            run_cli(main, [])


def test_crashed_worker_traceback_only_with_debug(capsys, monkeypatch):
    from fh_rl.envs import RandomPolicy, evaluate, make_env

    def main(argv):
        evaluate(RandomPolicy(make_env(FAULTY).action_space), FAULTY, 2, workers=1, progress=False,
                 env_kwargs={"fault": "raise", "fault_seed": 1, "fault_step": 3})

    monkeypatch.delenv("FH_RL_DEBUG", raising=False)
    assert run_cli(main, []) == 1
    line = one_error_line(capsys)
    assert "episode 1 failed in rollout worker 0 while stepping" in line and "simulated crash at step 3" in line


@pytest.mark.slow
def test_collect_removes_a_killed_collects_temp_file(tmp_path):
    from fh_rl.datasets.collect import collect_control

    out = tmp_path / "pendulum.hdf5"
    stale = tmp_path / ".pendulum.hdf5.k1ll3d.tmp"  # what atomic_path leaves when its writer is killed -9
    stale.write_bytes(b"half a file")
    other = tmp_path / ".other.hdf5.abc.tmp"  # another file's temp: not ours to remove
    other.write_bytes(b"x")
    collect_control("Pendulum-v1", 150, out, expert_episodes=1, learning_starts=100, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.hdf5.abc.tmp", "pendulum.hdf5"]


def test_resume_keeps_one_events_file_and_records_itself_in_the_manifest(tmp_path, tiny, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fh_rl.datasets.sampling import WindowSampler

    real = WindowSampler.sample
    calls = {"n": 0}

    def interrupting(self):
        calls["n"] += 1
        if calls["n"] == 2 + 5:  # 2 validation batches, then training step 5 (after the checkpoint at 3)
            os.kill(os.getpid(), signal.SIGINT)
        return real(self)

    monkeypatch.setattr(WindowSampler, "sample", interrupting)
    assert run_cli(train_cli.main, train_args(tiny, tmp_path / "runs", "train.steps=9") + ["--no-eval"]) == 130
    monkeypatch.setattr(WindowSampler, "sample", real)
    (run_dir,) = run_dirs(tmp_path / "runs")
    stale = run_dir / "checkpoints" / ".last.pt.dead.tmp"  # a checkpoint write cut by kill -9
    stale.write_bytes(b"half")
    assert run_cli(train_cli.main, ["--resume", str(run_dir), "--no-progress", "--no-eval"]) == 0
    assert not stale.exists()
    (events,) = run_dir.glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 10))  # each step once, in order
    resumes = strict_json(run_dir / "manifest.json")["resumes"]
    assert len(resumes) == 1 and resumes[0]["from_step"] == 5 and "--resume" in resumes[0]["command"]

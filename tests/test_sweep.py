"""The sweep: grid expansion, and real `python -m fh_rl.train` jobs that resume after an interruption."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fh_rl import sweep
from fh_rl.infra.cli import run_cli

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, pendulum_hdf5):
    """A tiny DT config on 8 short random Pendulum-v1 episodes (real HDF5)."""
    d = tmp_path_factory.mktemp("sweepdata")
    cfg = {
        "seed": 0,
        "env": {"name": "Pendulum-v1", "num_bins": 16},
        "dataset": {"format": "hdf5", "path": str(pendulum_hdf5), "val_fraction": 0.25},
        "agent": {"name": "dt", "embed_dim": 16, "n_layer": 1, "n_head": 2, "context_len": 4, "max_timestep": 200},
        "head": {"name": "fourier", "num_frequencies": 4},
        "train": {"steps": 6, "batch_size": 8, "log_every": 2, "val_every": 3, "val_batches": 2,
                  "checkpoint_every": 3, "warmup_tokens": 16, "pmf_states": 0},
        "eval": {"episodes": 1, "workers": 0, "target_quantile": 0.75, "decode": "argmax"},
    }
    path = d / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_grid_expansion_applies_head_params_only_to_heads_taking_them():
    points = sweep.expand_grid(["linear", "fourier"], ["head.num_frequencies=2,4,8,16", "train.lr=0.001"], [0, 1, 2])
    names = [p.name for p in points]
    assert len(points) == (1 + 4) * 3
    assert names[:3] == ["linear-seed0", "linear-seed1", "linear-seed2"]
    assert "fourier-num_frequencies=8-seed1" in names
    linear = points[0]
    assert linear.overrides() == ["train.lr=0.001"]
    assert ("head.num_frequencies", "16") in points[-1].settings
    # A single head value is a fixed override, only for the heads that take it.
    points = sweep.expand_grid(["linear", "fourier"], ["head.num_frequencies=8"], [0])
    assert [p.overrides() for p in points] == [[], ["head.num_frequencies=8"]]
    assert sweep.expand_grid(["fourier"], ["train.betas=[0.9,0.99]"], [0])[0].overrides() == ["train.betas=[0.9,0.99]"]


@pytest.mark.parametrize(
    "heads, sets, seeds, match",
    [
        (["linear"], ["head.num_frequencies=2,4"], [0], "none of the heads"),
        (["linear"], ["train.steps"], [0], "key=value"),
        (["linear"], ["train.steps=1,,2"], [0], "empty item"),
        (["linear"], ["seed=1,2"], [0], "use --seeds"),
        (["nope"], [], [0], "nope"),
        (["linear"], [], [0, 0], "distinct"),
        (["linear"], ["train.lr=1", "train.lr=2"], [0], "given twice"),
    ],
)
def test_grid_errors(heads, sets, seeds, match):
    with pytest.raises(ValueError, match=match):
        sweep.expand_grid(heads, sets, seeds)


def test_cli_bad_input_exits_2(capsys):
    assert run_cli(sweep.main, ["--heads", "linear", "--set", "head.num_frequencies=2,4", "--dry-run"]) == 2
    assert "none of the heads" in capsys.readouterr().err


def _complete_runs(root):
    return sorted(d for d in sweep.run_dirs_under(root) if sweep.is_complete(d))


def test_interrupted_sweep_resumes_only_missing_runs(tiny_config, tmp_path, capsys):
    root = tmp_path / "sweep"
    grid = ["--config", str(tiny_config), "--heads", "linear", "fourier", "--set", "head.num_frequencies=2",
            "--seeds", "0", "1", "--root", str(root), "--jobs", "2", "--no-progress"]
    assert run_cli(sweep.main, grid) == 0
    assert "4 trained" in capsys.readouterr().out
    # A single head.num_frequencies value is a fixed override of the Fourier runs, not an axis of the names.
    names = ["linear-seed0", "linear-seed1", "fourier-seed0", "fourier-seed1"]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(names)
    assert len(_complete_runs(root)) == 4
    assert not list(root.glob("events.out.tfevents.*"))  # the layout travels with each run: no pseudo-run
    for name in names:
        assert (root / name / "train.log").is_file()

    # The states an interruption leaves behind:
    (kept,) = sweep.run_dirs_under(root / "linear-seed0")
    kept_mtime = (kept / "eval.json").stat().st_mtime_ns
    shutil.rmtree(root / "linear-seed1")  # never started
    (mid_eval,) = sweep.run_dirs_under(root / "fourier-seed0")
    (mid_eval / "eval.json").unlink()  # trained and checkpointed, stopped before its evaluation finished
    (dead,) = sweep.run_dirs_under(root / "fourier-seed1")
    (dead / "eval.json").unlink()
    shutil.rmtree(dead / "checkpoints")  # died before its first checkpoint
    (root / "linear-seed0" / "stray").mkdir()  # unrelated clutter is left alone

    points = sweep.expand_grid(["linear", "fourier"], ["head.num_frequencies=2"], [0, 1])
    result = sweep.run_sweep(points, root, config=str(tiny_config), jobs=2, progress=False)
    assert result.skipped == ["linear-seed0"]
    assert result.resumed == ["fourier-seed0"]
    assert sorted(result.ran) == ["fourier-seed1", "linear-seed1"]
    assert result.failed == {} and not result.interrupted
    assert (kept / "eval.json").stat().st_mtime_ns == kept_mtime
    assert (mid_eval / "eval.json").is_file()  # resumed in place
    assert not dead.exists()  # the dead start was replaced by a fresh run
    for name in names:
        (run_dir,) = sweep.run_dirs_under(root / name)
        assert sweep.is_complete(run_dir)
    assert "--resume" in (root / "fourier-seed0" / "train.log").read_text()

    # Nothing left to do; a changed setting is refused instead of mixing unlike runs.
    again = sweep.run_sweep(points, root, config=str(tiny_config), jobs=2, progress=False)
    assert again.ran == [] and again.resumed == [] and len(again.skipped) == 4
    decodings = sweep.expand_grid(["linear", "fourier"], ["head.num_frequencies=2", "eval.decode=[argmax,mean]"], [0, 1])
    assert len(sweep.run_sweep(decodings, root, config=str(tiny_config), jobs=1, progress=False).skipped) == 4  # eval only
    changed = sweep.expand_grid(["linear", "fourier"], ["head.num_frequencies=2", "train.steps=7"], [0, 1])
    with pytest.raises(ValueError, match="other settings than this sweep asks for .*train.steps: 6 there, 7 now"):
        sweep.run_sweep(changed, root, config=str(tiny_config), jobs=1, progress=False)

    # compare reads the sweep root directly.
    from fh_rl import compare

    runs, skipped = compare.find_runs([root], read_events=False)
    groups, _ = compare.group_runs(runs)
    assert skipped == []
    assert sorted((g.label, tuple(g.seeds)) for g in groups["Pendulum-v1"]) == [
        ("dt-fourier", (0, 1)), ("dt-linear", (0, 1))]


def test_failed_run_is_reported_and_exit_1(tiny_config, tmp_path, capsys):
    root = tmp_path / "sweep"
    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["dataset"]["path"] = str(tmp_path / "missing.hdf5")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    assert run_cli(sweep.main, ["--config", str(bad), "--heads", "linear", "--root", str(root), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "1 failed" in out and "missing.hdf5" in out and "train.log" in out


@pytest.mark.slow
def test_sigint_stops_the_sweep_and_a_rerun_finishes_it(tiny_config, tmp_path):
    """A real Ctrl-C: the running job checkpoints and stops; the rerun does only what the disk says is missing."""
    root = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "fh_rl.sweep", "--config", str(tiny_config), "--heads", "linear", "--seeds", "0", "1", "2",
           "--root", str(root), "--no-progress", "--set", "train.steps=100", "--set", "train.checkpoint_every=5",
           "--set", "train.val_every=100"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((root / "linear-seed0").rglob("last.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    assert "1 stopped at a checkpoint" in out and "0 trained" in out  # the stopped run is not counted as trained
    assert not (root / "linear-seed2").exists()  # the queue stopped: the last point never started
    complete_before = {d: (d / "eval.json").stat().st_mtime_ns for d in _complete_runs(root)}
    points = sweep.expand_grid(["linear"], ["train.steps=100", "train.checkpoint_every=5", "train.val_every=100"], [0, 1, 2])
    todo = sweep.plan(points, root, str(tiny_config))
    counts = {a: sum(1 for _, act, _ in todo if act == a) for a in ("train", "resume", "skip")}
    assert counts["train"] >= 1 and counts["skip"] == len(complete_before)
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert (f"{counts['train']} trained, {counts['resume']} resumed, {counts['skip']} already complete, 0 failed"
            in rerun.stdout)
    assert len(_complete_runs(root)) == 3
    for d, mtime in complete_before.items():
        assert (d / "eval.json").stat().st_mtime_ns == mtime


def test_continuous_heads_sweep_and_their_settings_apply_only_to_them(tiny_config, tmp_path, capsys):
    points = sweep.expand_grid(["linear", "gaussian", "mse"], ["head.min_log_std=-4,-3"], [0])
    assert [p.name for p in points] == ["linear-seed0", "gaussian-min_log_std=-4-seed0", "gaussian-min_log_std=-3-seed0",
                                        "mse-seed0"]
    root = tmp_path / "sweep"
    args = ["--config", str(tiny_config), "--heads", "mse", "gaussian", "--seeds", "0", "--root", str(root),
            "--jobs", "2", "--no-progress"]
    assert run_cli(sweep.main, args) == 0
    assert "2 trained, 0 resumed, 0 already complete, 0 failed" in capsys.readouterr().out
    runs = _complete_runs(root)
    assert [yaml.safe_load((d / "config.yaml").read_text())["head"] for d in runs] == [{"name": "gaussian"}, {"name": "mse"}]


def test_continuous_head_on_discrete_env_fails_before_any_job_starts(tiny_config, tmp_path, capsys):
    args = ["--config", str(tiny_config), "--heads", "linear", "mse", "--set", "env.name=CartPole-v1", "--root",
            str(tmp_path / "sweep"), "--no-progress"]
    assert run_cli(sweep.main, args) == 2
    assert "head 'mse' scores continuous actions and needs a Box action space, but CartPole-v1 has Discrete(2)" in \
        capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_bad_setting_fails_before_any_job_starts(tiny_config, tmp_path):
    points = sweep.expand_grid(["linear"], ["train.stepz=5"], [0])
    with pytest.raises(ValueError, match="train.stepz"):
        sweep.run_sweep(points, tmp_path / "sweep", config=str(tiny_config), progress=False)
    assert not (tmp_path / "sweep").exists()


def test_runs_made_before_an_option_existed_still_match(tiny_config, tmp_path):
    """A saved config without a key this code added (its default keeps the old behaviour) is the same run;
    a saved value that differs is still refused."""
    import json

    root = tmp_path / "sweep"
    point = sweep.expand_grid(["fourier"], [], [0])[0]
    wanted = sweep.expected_config(str(tiny_config), point, root)
    run_dir = root / point.name / "Pendulum-v1" / "dt-fourier" / "seed0-old"
    run_dir.mkdir(parents=True)
    older = json.loads(json.dumps(wanted))
    # Options "not yet there" when the run was made (the tiny config leaves them at their defaults).
    del older["train"]["grad_clip"], older["eval"]["rtg_mode"]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(older))
    (run_dir / "eval.json").write_text(json.dumps({"results": [{"returns": [1.0]}]}))
    assert [a for _, a, _ in sweep.plan([point], root, str(tiny_config))] == ["skip"]
    older["train"]["steps"] = wanted["train"]["steps"] + 1
    (run_dir / "config.yaml").write_text(yaml.safe_dump(older))
    with pytest.raises(ValueError, match="train.steps"):
        sweep.plan([point], root, str(tiny_config))


def test_points_named_done_are_skipped_without_their_directories(tiny_config, tmp_path):
    """``--skip`` (a study's recorded points): skipped even with no run directory; a name not in the grid is refused."""
    root = tmp_path / "sweep"
    points = sweep.expand_grid(["linear", "fourier"], [], [0])
    plan = sweep.plan(points, root, str(tiny_config), done=["fourier-seed0"])
    assert [(p.name, a) for p, a, _ in plan] == [("linear-seed0", "train"), ("fourier-seed0", "skip")]
    with pytest.raises(ValueError, match="--skip names point.*'gmm-seed0'"):
        sweep.plan(points, root, str(tiny_config), done=["gmm-seed0"])

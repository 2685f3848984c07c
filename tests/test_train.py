"""The train and evaluate CLIs end to end on tiny data written here (real Pendulum-v1, real HDF5)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fh_rl import evaluate as evaluate_cli
from fh_rl import train as train_cli
from fh_rl.infra.cli import run_cli

REPO = Path(__file__).resolve().parent.parent
TINY = [
    "agent.embed_dim=16",
    "agent.n_layer=1",
    "agent.n_head=2",
    "agent.context_len=4",
    "train.batch_size=8",
    "train.log_every=2",
    "train.val_every=4",
    "train.val_batches=2",
    "train.checkpoint_every=4",
    "train.warmup_tokens=16",
    "eval.episodes=2",
    "eval.workers=0",
    "dataset.val_fraction=0.25",
]


def args_for(tmp_path, data, *extra, steps=8):
    sets = [*TINY, f"train.steps={steps}", f"dataset.path={data}", f"run_root={tmp_path / 'runs'}"]
    return [a for s in sets for a in ("--set", s)] + ["--no-progress", *extra]


def only_run_dir(tmp_path, head="fourier"):
    (run_dir,) = (tmp_path / "runs" / "Pendulum-v1" / f"dt-{head}").iterdir()
    return run_dir


def event_tags(run_dir, kinds=("scalars", "images")):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return set().union(*(acc.Tags()[k] for k in ((kinds,) if isinstance(kinds, str) else kinds)))


def hparams_of(run_dir):
    """The run's HParams session values (what TensorBoard's HPARAMS table lists for it)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    assert metadata.EXPERIMENT_TAG not in content  # the columns are the run root's, written once
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}


def test_train_then_evaluate_end_to_end(tmp_path, pendulum_hdf5, capsys):
    assert run_cli(train_cli.main, args_for(tmp_path, pendulum_hdf5, "--head", "fourier")) == 0
    run_dir = only_run_dir(tmp_path)
    assert run_dir.name.startswith("seed0-")
    for name in ("config.yaml", "manifest.json", "eval.json", "checkpoints/last.pt"):
        assert (run_dir / name).is_file(), name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["dataset"]["content_hash"] and manifest["dataset"]["episodes"] == 8
    assert manifest["versions"]["torch"] == torch.__version__ and "git" in manifest
    (timing,) = manifest["timings"]  # where the wall time went, also printed
    assert timing["from_step"] == 0 and timing["to_step"] == 8
    assert timing["setup_s"] > 0 and timing["training_s"] > 0 and timing["evaluation_s"] > 0
    assert "time: setup " in capsys.readouterr().err
    result = json.loads((run_dir / "eval.json").read_text())["results"][0]
    assert len(result["returns"]) == 2 and all(-2000 < r <= 0 for r in result["returns"])
    tags = event_tags(run_dir)
    expected = {"train/loss", "train/nll", "train/regularization", "train/lr", "train/grad_norm", "train/samples_per_s",
                "val/nll", "val/accuracy", "val/smoothness", "val/pmf", "eval/return_mean", "eval/return_std"}
    assert expected <= tags, expected - tags
    assert not [t for t in tags if t.startswith("eval/return_mean/")]  # one tag per metric: no /target_ twin
    assert any(p.name.startswith("events.out") for p in run_dir.iterdir())
    hparams = hparams_of(run_dir)
    assert {k: hparams[k] for k in ("head", "head.num_frequencies", "head.regularization_gamma", "agent", "env", "seed",
                                    "dataset")} == {"head": "fourier", "head.num_frequencies": 16.0,
                                                    "head.regularization_gamma": 1e-6, "agent": "dt",
                                                    "env": "Pendulum-v1", "seed": 0.0, "dataset": pendulum_hdf5.name}
    assert hparams["env.margin_bins"] == 16.0 and hparams["train.lr"] == 6e-4  # any setting may be what varies
    assert not [k for k in hparams if k.startswith("dataset.build") or k in ("train.device", "run_root")]
    assert not list((tmp_path / "runs").glob("events.out.tfevents.*"))  # no root file: no pseudo-run in TensorBoard
    assert "custom_scalars__config__" in event_tags(run_dir, "tensors")  # the layout travels with the run
    assert (run_dir / "checkpoints" / "last.pt").stat().st_size > 0

    # evaluate rebuilds the agent from the checkpoint alone, at chosen target returns, into a new file
    capsys.readouterr()
    training_time = (run_dir / "eval.json").read_bytes()
    code = run_cli(evaluate_cli.main, [str(run_dir), "--episodes", "2", "--workers", "0", "--target-return", "-100",
                                       "--target-return", "-300", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "-100" in out and "-300" in out and "return mean" in out
    (written,) = run_dir.glob("eval-*.json")
    assert f"wrote {written}" in out
    results = json.loads(written.read_text())["results"]
    assert [r["target_return"] for r in results] == [-100.0, -300.0]
    assert (run_dir / "eval.json").read_bytes() == training_time  # the training-time result is kept
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # evaluate's events join the run's one file
    tags = event_tags(run_dir)  # re-evaluations: reeval/*, so eval/* stays training's (what compare reads by default)
    assert {"reeval/return_mean/target_-100", "reeval/return_mean/target_-300"} <= tags  # not the run's target
    assert not [t for t in tags if t.startswith("eval/return_mean/")]

    # the run evaluates with argmax (eval.decode: argmax); --sample (the old spelling of --decode sample) overrides
    # that, --argmax with it is an error
    assert [r["decode"] for r in json.loads(written.read_text())["results"]] == ["argmax", "argmax"]
    assert run_cli(evaluate_cli.main, [str(run_dir), "--episodes", "1", "--workers", "0", "--sample", "--no-progress",
                                       "--out", str(tmp_path / "sampled.json")]) == 0
    sampled = json.loads((tmp_path / "sampled.json").read_text())["results"][0]
    assert sampled["decode"] == "sample" and sampled["sample"] is True
    with pytest.raises(SystemExit) as exc:
        run_cli(evaluate_cli.main, [str(run_dir), "--sample", "--argmax"])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err

    # --sample-within-bin (old spelling of +within_bin): each chosen bin decodes to a uniform draw within it
    argmax_only = json.loads(written.read_text())["results"][0]
    assert argmax_only["sample_within_bin"] is False
    assert run_cli(evaluate_cli.main, [str(run_dir), "--episodes", "2", "--workers", "0", "--target-return", "-100",
                                       "--argmax", "--sample-within-bin", "--no-progress",
                                       "--out", str(tmp_path / "within.json")]) == 0
    assert "argmax+within_bin" in capsys.readouterr().out
    within = json.loads((tmp_path / "within.json").read_text())["results"][0]
    assert within["decode"] == "argmax+within_bin" and within["sample_within_bin"] is True
    assert within["seeds"] == argmax_only["seeds"]
    assert within["returns"] != argmax_only["returns"]  # same episodes, jittered torques


def test_within_bin_draws_inside_the_chosen_bin():
    import gymnasium as gym

    from fh_rl.envs.codecs import make_codec

    box = make_codec(gym.spaces.Box(-2.0, 2.0, (1,)), num_bins=8)
    draws = box.decode(np.zeros((200, 1), dtype=np.int64), rng=np.random.default_rng(0), within_bin=True)
    assert draws.min() >= -2.0 and draws.max() <= -1.5 and np.ptp(draws) > 0.4  # bin 0 spans [-2, -1.5]
    assert np.all(box.decode(np.zeros((3, 1), dtype=np.int64), rng=np.random.default_rng(0)) == -1.75)  # the centre


def test_bc_with_linear_head_trains(tmp_path, pendulum_hdf5):
    args = args_for(tmp_path, pendulum_hdf5, "--head", "linear", "--set", "agent.name=bc", "--set", "eval.episodes=1", steps=4)
    assert run_cli(train_cli.main, args) == 0
    (run_dir,) = (tmp_path / "runs" / "Pendulum-v1" / "bc-linear").iterdir()
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 4 and state["spec"]["agent"] == "bc" and state["config"]["head"] == {"name": "linear"}
    (result,) = json.loads((run_dir / "eval.json").read_text())["results"]  # BC: one evaluation, no target
    assert result["target_return"] is None and len(result["returns"]) == 1
    assert "eval/return_mean" in event_tags(run_dir)


@pytest.mark.parametrize("head", ["fourier", "gaussian", "chebyshev"])
def test_resume_after_interrupt_matches_uninterrupted(tmp_path, pendulum_hdf5, monkeypatch, head):
    from fh_rl.datasets.sampling import WindowSampler

    full = tmp_path / "full"
    assert run_cli(train_cli.main, args_for(full, pendulum_hdf5, "--no-eval", "--head", head, steps=10)) == 0

    real = WindowSampler.sample
    calls = {"n": 0}

    def interrupting(self):
        calls["n"] += 1
        if calls["n"] == 2 + 6:  # 2 validation batches are drawn first, then training step 6
            os.kill(os.getpid(), signal.SIGINT)
        return real(self)

    part = tmp_path / "part"
    monkeypatch.setattr(WindowSampler, "sample", interrupting)
    assert run_cli(train_cli.main, args_for(part, pendulum_hdf5, "--no-eval", "--head", head, steps=10)) == 130
    monkeypatch.setattr(WindowSampler, "sample", real)
    run_dir = only_run_dir(part, head)
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == 6
    assert run_cli(train_cli.main, ["--resume", str(run_dir), "--no-eval", "--no-progress"]) == 0
    timings = json.loads((run_dir / "manifest.json").read_text())["timings"]
    assert [(t["from_step"], t["to_step"]) for t in timings] == [(0, 6), (6, 10)]  # one entry per process
    assert all(t["evaluation_s"] == 0 for t in timings)  # --no-eval

    a = torch.load(only_run_dir(full, head) / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 10
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "train.stepz=3"], "unknown config key 'train.stepz'; did you mean train.steps?"),
        (["--head", "fourrier"], "unknown head 'fourrier'; did you mean 'fourier'?"),
        (["--set", "dataset.path=/nonexistent/data.hdf5", "--set", "dataset.build=null"],
         "dataset '/nonexistent/data.hdf5' not found"),
        (["--set", "dataset.path=/nonexistent/replay", "--set", "dataset.format=dqn-replay"],
         "dataset.build='sac' makes HDF5 files only"),
        (["--config", "/nonexistent.yaml"], "config file '/nonexistent.yaml' not found"),
        (["--set", "env.name=CartPole-v1", "--head", "mse"],
         "head 'mse' scores continuous actions and needs a Box action space, but CartPole-v1 has Discrete(2) actions; "
         "use a head that scores bins (chebyshev, fourier, gmm, linear"),
        (["--set", "env.name=CartPole-v1", "--head", "linear"],  # the first misfit found: the states
         "states have shape (3,) but CartPole-v1 observes (4,)"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, pendulum_hdf5, capsys, extra, message):
    assert run_cli(train_cli.main, args_for(tmp_path, pendulum_hdf5) + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


@pytest.mark.parametrize("agent, head", [("dt", "gaussian"), ("dt", "mse"), ("bc", "gaussian")])
def test_continuous_heads_train_evaluate_and_log_metrics_in_their_units(tmp_path, pendulum_hdf5, capsys, agent, head):
    args = args_for(tmp_path, pendulum_hdf5, "--head", head, "--set", f"agent.name={agent}", "--set", "train.pmf_states=2")
    assert run_cli(train_cli.main, args) == 0
    (run_dir,) = (tmp_path / "runs" / "Pendulum-v1" / f"{agent}-{head}").iterdir()
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["spec"]["head"] == head and state["config"]["head"] == {"name": head}  # the fourier params were dropped
    result = json.loads((run_dir / "eval.json").read_text())["results"][0]
    assert all(-2000 < r <= 0 for r in result["returns"])
    tags = event_tags(run_dir)
    objective = {"gaussian": "nll_density", "mse": "mse"}[head]
    assert {f"train/{objective}", f"val/{objective}", "val/accuracy", "val/action_mse"} <= tags, tags
    assert "train/nll" not in tags  # a density (or a squared error) is never logged as the bins' NLL
    if head == "gaussian":  # also the discretised likelihood over the same bins as the quantized heads
        assert {"val/nll", "val/smoothness", "val/pmf"} <= tags
    else:  # a point prediction: no pmf, so no NLL over bins, no smoothness
        assert not {"val/nll", "val/smoothness", "val/pmf"} & tags
    capsys.readouterr()
    decodings = ["argmax", "mean", "median"] + (["sample", "mode"] if head == "gaussian" else [])
    assert run_cli(evaluate_cli.main, [str(run_dir), "--episodes", "1", "--workers", "0", "--decode", ",".join(decodings),
                                       "--no-progress"]) == 0
    assert " mean " in capsys.readouterr().out
    (again,) = run_dir.glob("eval-*.json")  # a new file: the training-time eval.json is kept
    results = json.loads(again.read_text())["results"]
    assert [r["decode"] for r in results] == decodings and all(len(r["returns"]) == 1 for r in results)
    if head == "mse":  # a point prediction: every decoding acts with the point
        assert len({r["returns"][0] for r in results}) == 1


def test_missing_dataset_is_built_once_and_reused(tmp_path, capsys):
    """dataset.build=sac: a missing dataset is made with SB3 SAC (tiny here), cached, and reused by the next run."""
    data = tmp_path / "datasets" / "pendulum-built.hdf5"
    build = ["--set", "dataset.build=sac", "--set", "dataset.build_steps=200", "--set", "dataset.build_expert_episodes=2"]
    assert run_cli(train_cli.main, args_for(tmp_path, data, "--head", "linear", *build, steps=2)) == 0
    err = capsys.readouterr().err
    assert f"dataset {data} not found: building it (SAC for 200 steps on Pendulum-v1, 2 rollouts" in err
    from fh_rl.datasets import load_hdf5

    built = load_hdf5(data)
    assert built.num_transitions == 200 + 2 * 200 and len(built) == 1 + 2
    stamp = data.stat().st_mtime_ns
    assert run_cli(train_cli.main, args_for(tmp_path, data, "--head", "fourier", *build, steps=2)) == 0
    assert "building it" not in capsys.readouterr().err
    assert data.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in data.parent.iterdir()) == ["pendulum-built.hdf5"]  # the build lock is released


@pytest.mark.slow
def test_cli_subprocess_exit_code(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "fh_rl.train", "--head", "nope"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: unknown head 'nope'")
    proc = subprocess.run([sys.executable, "-m", "fh_rl.evaluate", str(tmp_path / "missing")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not found" in proc.stderr


FIXTURE = REPO / "tests" / "fixtures" / "dqn-replay"  # written by Dopamine's own replay logger


@pytest.mark.slow
def test_atari_preset_on_dopamine_fixture(tmp_path):
    """The Breakout preset, shrunk: frames, joystick codec, clipped RTG, real ALE evaluation."""
    sets = [*TINY, "train.steps=3", f"dataset.path={FIXTURE}", "dataset.max_transitions=null",
            "dataset.replay_sampling=null", "eval.episodes=1", "agent.max_timestep=2000", f"run_root={tmp_path / 'runs'}"]
    args = ["--config", str(REPO / "configs" / "atari" / "breakout.yaml"), "--no-progress"]
    args += [a for s in sets for a in ("--set", s)]
    assert run_cli(train_cli.main, args) == 0
    (run_dir,) = (tmp_path / "runs" / "Breakout" / "dt-fourier").iterdir()
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["spec"]["state_shape"] == [4, 84, 84] and state["spec"]["reward_transform"] == "clip"
    assert state["spec"]["codec"]["ordering"] == "joystick"
    (result,) = json.loads((run_dir / "eval.json").read_text())["results"]
    assert result["target_return"] == state["dataset"]["episode_return_max"]  # no target configured: best episode
    assert result["return_mean"] >= 0 and result["normalized_mean"] is not None
    assert json.loads((run_dir / "manifest.json").read_text())["eval_protocol"]["protocol"] == "dt-paper"


def test_evaluation_during_training(tmp_path, pendulum_hdf5):
    """eval.every_steps: each evaluation lands in eval.json's history and TensorBoard; the final one is not repeated."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert run_cli(train_cli.main, args_for(tmp_path, pendulum_hdf5, "--set", "eval.every_steps=3", steps=8)) == 0
    run_dir = only_run_dir(tmp_path)
    payload = json.loads((run_dir / "eval.json").read_text())
    assert [h["step"] for h in payload["history"]] == [3, 6, 8]  # every 3 steps, then the final evaluation
    assert payload["results"] == payload["history"][-1]["results"] and payload["checkpoint_step"] == 8
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tag = "eval/return_mean"  # the run's own target: no suffix
    assert [e.step for e in acc.Scalars(tag)] == [3, 6, 8]
    assert [e.value for e in acc.Scalars(tag)] == pytest.approx([h["results"][0]["return_mean"] for h in payload["history"]])
    # re-evaluating the final checkpoint writes a new file that keeps the training-time history; eval.json stays
    training = (run_dir / "eval.json").read_bytes()
    assert run_cli(evaluate_cli.main, [str(run_dir), "--episodes", "1", "--workers", "0", "--no-progress"]) == 0
    (written,) = run_dir.glob("eval-*.json")
    again = json.loads(written.read_text())
    assert len(again["results"][0]["returns"]) == 1 and again["history"] == payload["history"]
    assert (run_dir / "eval.json").read_bytes() == training

    other = tmp_path / "other"
    assert run_cli(train_cli.main, args_for(other, pendulum_hdf5, "--set", "eval.every_steps=4", steps=8)) == 0
    payload = json.loads((only_run_dir(other) / "eval.json").read_text())
    assert [h["step"] for h in payload["history"]] == [4, 8]  # the evaluation at the last step is the final one


@pytest.mark.slow
def test_seaquest_paper_preset_on_dopamine_fixture(tmp_path):
    """The paper's protocol preset, shrunk onto the Breakout fixture: reference DT, per-epoch evaluations with the
    papers' evaluation code, and compare's best-of-N column normalised."""
    from fh_rl import compare as compare_cli

    sets = [*TINY, "train.steps=4", "eval.every_steps=2", f"dataset.path={FIXTURE}", "dataset.game=Breakout",
            "env.name=Breakout", "dataset.max_transitions=null", "dataset.replay_sampling=null", "eval.episodes=1",
            "eval.target_returns=[90]", "agent.max_timestep=2000", f"run_root={tmp_path / 'runs'}"]
    for head in ("fourier", "linear"):
        args = ["--config", str(REPO / "configs" / "atari" / "seaquest-paper.yaml"), "--head", head, "--no-progress"]
        assert run_cli(train_cli.main, args + [a for s in sets for a in ("--set", s)]) == 0
    (run_dir,) = (tmp_path / "runs" / "Breakout" / "dt-linear").iterdir()
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["config"]["agent"]["timestep_embedding"] == "window_start" and state["config"]["agent"]["init"] == "reference"
    assert "head.proj.bias" not in state["model"]  # the paper's linear head has no bias
    payload = json.loads((run_dir / "eval.json").read_text())
    assert [h["step"] for h in payload["history"]] == [2, 4]
    assert payload["protocol"] == "dt-paper-code" and payload["results"][0]["integer_rtg"] is True
    assert payload["results"][0]["timesteps"] == "current" and payload["results"][0]["rtg_mode"] == "raw"
    result = compare_cli.compare([tmp_path / "runs"], tmp_path / "out", figures=False)
    rows = result["environments"]["Breakout"]
    assert [r["head"] for r in rows] == ["linear", "fourier"]
    for row in rows:
        best = row["best_of_evaluations"]
        assert best["normalized"] and best["evaluations"] == [2]
        assert best["label"] == "best of 2 evaluations per seed (the paper's statistic; optimistic)"
    assert "best of 2 evaluations per seed (the paper's statistic; optimistic), normalised" in result["markdown"]

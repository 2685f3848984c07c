"""The Python API (fh_rl.fit / fh_rl.load / Policy) against the command lines it shares its path with."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fh_rl
from fh_rl.infra.cli import run_cli

REPO = Path(__file__).resolve().parents[1]
TINY = {"agent": {"embed_dim": 16, "n_layer": 1, "n_head": 2, "context_len": 4, "hidden_layers": 0},
        "train": {"steps": 30, "batch_size": 16, "val_every": 30, "val_batches": 1, "log_every": 10, "threads": 1}}


@pytest.fixture(scope="module")
def cartpole_hdf5(tmp_path_factory):
    """A small PPO-collected CartPole-v1 dataset (replay of 600 steps + 3 expert episodes)."""
    from fh_rl.datasets.collect import collect_control

    out = tmp_path_factory.mktemp("cartpole") / "cartpole.hdf5"
    return collect_control("CartPole-v1", 600, out, expert_episodes=3, seed=0, progress=False)


@pytest.fixture(scope="module")
def cartpole_run(cartpole_hdf5, tmp_path_factory):
    """A tiny DT trained by fh_rl.fit on CartPole with sampled actions (the harder case for matching the CLI)."""
    root = tmp_path_factory.mktemp("runs")
    return fh_rl.fit(**TINY, env={"name": "CartPole-v1", "margin_bins": 16},
                     dataset={"path": str(cartpole_hdf5), "build": None, "val_fraction": 0.2},
                     eval={"episodes": 2, "workers": 0, "sample": True}, **{"agent.max_timestep": 500},
                     run_root=str(root), progress=False)


def _episode(policy, seed: int, *, peek: bool = False) -> tuple[list, float]:
    env = policy.make_env()
    obs, _ = env.reset(seed=seed)
    policy.reset(seed=seed)
    actions, total, reward, done = [], 0.0, None, False
    while not done:
        if peek:
            policy.action_distribution(obs, reward)
        action = policy.predict(obs, reward)
        actions.append(np.asarray(action).tolist())
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done = terminated or truncated
    env.close()
    return actions, total


def test_fit_writes_the_cli_run_directory(cartpole_run):
    run = Path(cartpole_run)
    assert run.parent.parent.name == "CartPole-v1" and run.parent.name == "dt-fourier"
    for name in ("config.yaml", "manifest.json", "eval.json", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    assert list(run.glob("events.out.tfevents.*"))
    assert json.loads((run / "manifest.json").read_text())["command"] == ["fh_rl.fit"]
    assert json.loads((run / "eval.json").read_text())["results"][0]["sample"] is True
    text = (run / "config.yaml").read_text()  # bins do not apply to Discrete actions: the run's config says so
    assert text.startswith("# note: env.num_bins (64), env.margin_bins (16) and env.sample_within_bin do not apply: "
                           "CartPole-v1 has Discrete(2) actions")


def test_predict_over_an_episode_matches_the_evaluate_cli(cartpole_run, monkeypatch):
    from fh_rl import evaluate as evaluate_cli
    from fh_rl.agents.inference import AgentPolicy

    seen: list = []
    act = AgentPolicy.act
    with monkeypatch.context() as m:  # record what the CLI's policy chooses (workers=0: in this process)
        m.setattr(AgentPolicy, "act", lambda self, slots, obs: seen.append(act(self, slots, obs)) or seen[-1])
        assert run_cli(evaluate_cli.main, [str(cartpole_run), "--episodes", "1", "--workers", "0", "--seed", "7",
                                           "--no-progress"]) == 0
    (written,) = Path(cartpole_run).glob("eval-*.json")
    cli = json.loads(written.read_text())["results"][0]
    assert cli["sample"] is True  # the run's own decoding, which load() keeps

    policy = fh_rl.load(cartpole_run)
    assert policy.sample and policy.target_return == cli["target_return"]
    actions, total = _episode(policy, 7, peek=True)  # action_distribution between steps changes nothing
    assert actions == [a.reshape(-1).tolist()[0] for a in seen]
    assert total == cli["returns"][0] and len(actions) == cli["lengths"][0]
    again, total_again = _episode(fh_rl.load(cartpole_run), 7)
    assert again == actions and total_again == total

    records = policy.evaluate(episodes=1, workers=0, seed=7)
    assert records[0]["returns"] == cli["returns"] and records[0]["target_return"] == cli["target_return"]

    # another decoding, chosen on both sides: the CLI's --decode argmax and load(decode="argmax")
    seen.clear()
    with monkeypatch.context() as m:
        m.setattr(AgentPolicy, "act", lambda self, slots, obs: seen.append(act(self, slots, obs)) or seen[-1])
        assert run_cli(evaluate_cli.main, [str(cartpole_run), "--episodes", "1", "--workers", "0", "--seed", "8",
                                           "--decode", "argmax", "--no-progress"]) == 0
    (written,) = set(Path(cartpole_run).glob("eval-*.json")) - {written}
    cli = json.loads(written.read_text())["results"][0]
    policy = fh_rl.load(cartpole_run, decode="argmax")
    assert policy.decode == "argmax" and not policy.sample
    actions, total = _episode(policy, 8)
    assert actions == [a.reshape(-1).tolist()[0] for a in seen] and total == cli["returns"][0]


def test_action_distribution_of_discrete_actions(cartpole_run):
    policy = fh_rl.load(cartpole_run)
    obs, _ = policy.make_env().reset(seed=3)
    d = policy.action_distribution(obs)
    assert d.pmf.shape == (1, 2) and d["pmf"] is d.pmf
    assert d.pmf.sum() == pytest.approx(1.0, abs=1e-6) and (d.pmf > 0).all()
    np.testing.assert_array_equal(d.values, [[0, 1]])
    assert d.action == int(np.argmax(d.pmf[0])) and d.params == {}
    first = policy.predict(obs)
    with pytest.raises(ValueError, match="needs the reward the previous action earned"):
        policy.predict(obs)
    assert first in (0, 1)


def test_action_distribution_of_box_actions(pendulum_hdf5, tmp_path):
    sets = {**TINY, "train": {**TINY["train"], "steps": 2}, "dataset": {"path": str(pendulum_hdf5), "build": None},
            "env": {"num_bins": 16, "margin_bins": 2}, "run_root": str(tmp_path)}
    run = fh_rl.fit(head="fourier", evaluate=False, progress=False, **sets)
    policy = fh_rl.load(run / "checkpoints" / "last.pt")
    obs, _ = policy.make_env().reset(seed=0)
    d = policy.action_distribution(obs)
    assert d.pmf.shape == d.values.shape == (1, 20)  # 16 bins over [-2, 2] + 2 margin bins on each side
    assert d.pmf.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(d.values[0, [0, 2, 17, 19]], [-2.375, -1.875, 1.875, 2.375])
    assert d.action.shape == (1,) and -2 <= d.action[0] <= 2

    run = fh_rl.fit(head="gaussian", evaluate=False, progress=False, **sets)
    d = fh_rl.load(run).action_distribution(obs)
    assert set(d.params) == {"mean", "log_std"} and d.params["mean"].shape == (1,)
    assert d.pmf.shape == (1, 20) and d.pmf.sum() == pytest.approx(1.0, abs=1e-5)
    assert d.action[0] == pytest.approx(2.0 * np.tanh(d.params["mean"][0]), abs=1e-5)  # tanh(mean) in [-2, 2]


def test_make_config_overrides():
    base = fh_rl.make_config()
    assert base == fh_rl.make_config(REPO / "configs" / "default.yaml")
    cfg = fh_rl.make_config(head="linear", seed=3, train={"steps": 7}, **{"agent.context_len": 3}, run_root="x")
    assert (cfg.head.name, cfg.head.params, cfg.seed, cfg.train.steps, cfg.agent.context_len, cfg.run_root) == \
        ("linear", {}, 3, 7, 3, "x")  # --head drops the file's Fourier parameters
    assert cfg.env == base.env and cfg.train.batch_size == base.train.batch_size
    cfg = fh_rl.make_config(base, head={"name": "fourier", "num_frequencies": 4})
    assert cfg.head.params["num_frequencies"] == 4
    assert fh_rl.make_config(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="train.stepz"):
        fh_rl.make_config(train={"stepz": 1})
    with pytest.raises(TypeError, match="train= takes a dict"):
        fh_rl.make_config(train=5)
    with pytest.raises(TypeError, match="config must be a Config, a dict, a YAML path or None"):
        fh_rl.make_config(5)


def test_config_defaults_differ_from_the_quickstart_as_documented():
    """docs/python_api.md lists every key where Config() and configs/default.yaml differ, with both values."""
    from fh_rl.compare.runs import _flatten
    from fh_rl.config import Config, load_config

    ours, quick = _flatten(Config().to_dict()), _flatten(load_config(REPO / "configs" / "default.yaml").to_dict())
    differ = {k for k in set(ours) | set(quick) if ours.get(k, "absent") != quick.get(k, "absent")}
    page = (REPO / "docs" / "python_api.md").read_text()
    table = re.search(r"\| key \| `Config\(\)` \| `configs/default.yaml` \|\n\|[-| ]+\|\n((?:\|.*\|\n)+)", page)
    assert table, "docs/python_api.md lost its Config() vs default.yaml table"
    listed = {row.split("|")[1].strip().strip("`") for row in table.group(1).splitlines()}
    assert listed == differ


def test_import_is_light_and_the_cli_modules_run_once():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", "import sys, fh_rl; print(sorted(m for m in ('torch', 'fh_rl.api', "
                          "'fh_rl.train') if m in sys.modules)); print(callable(fh_rl.fit), 'fh_rl.api' in sys.modules)"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split("\n")[:2] == ["[]", "True True"], out.stderr
    for module in ("fh_rl.train", "fh_rl.evaluate"):
        proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", module, "--help"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "RuntimeWarning" not in proc.stderr, proc.stderr  # no runpy double import


def test_a_bare_trainer_checkpoint_is_refused_with_the_way_out(tmp_path):
    from fh_rl.trainer import CHECKPOINT_FORMAT

    path = tmp_path / "last.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": {}, "step": 3}, path)
    with pytest.raises(ValueError, match=r"has no config, spec: it was written by a bare Trainer.*fh_rl.fit"):
        fh_rl.load(path)


@pytest.mark.slow
def test_cartpole_collect_train_evaluate_compare(tmp_path):
    """The new-env walk-through of docs/data.md with tiny settings, through the command lines."""
    from fh_rl import evaluate as evaluate_cli
    from fh_rl import train as train_cli
    from fh_rl.compare import main as compare_main
    from fh_rl.datasets.collect import main as collect_main

    data = tmp_path / "cartpole.hdf5"
    assert collect_main(["control", "--env", "CartPole-v1", "--steps", "600", "--expert-episodes", "3",
                         "--out", str(data)]) == 0
    sets = ["env.name=CartPole-v1", f"dataset.path={data}", "dataset.build=null", "agent.max_timestep=500",
            "agent.embed_dim=16", "agent.n_layer=1", "agent.n_head=2", "agent.context_len=4", "train.steps=20",
            "train.batch_size=16", "train.val_every=20", "train.val_batches=1", "eval.episodes=2", "eval.workers=0",
            f"run_root={tmp_path / 'runs'}"]
    for head in ("linear", "fourier"):
        for seed in (0, 1):
            argv = [a for s in sets for a in ("--set", s)] + ["--head", head, "--seed", str(seed), "--no-progress"]
            assert run_cli(train_cli.main, argv) == 0
    run = next((tmp_path / "runs" / "CartPole-v1" / "dt-linear").iterdir())
    assert run_cli(evaluate_cli.main, [str(run), "--episodes", "2", "--workers", "0", "--no-progress"]) == 0
    assert run_cli(compare_main, [str(tmp_path / "runs"), "--no-figures"]) == 0
    md = (tmp_path / "runs" / "comparison.md").read_text()
    assert "### CartPole-v1" in md
    assert re.search(r"\| dt-linear \| 2 \|", md) and re.search(r"\| dt-fourier \| 2 \|", md)


@pytest.mark.slow
def test_the_python_api_page_runs(tmp_path):
    """docs/python_api.md's example, as written, in a fresh interpreter and an empty working directory."""
    page = (REPO / "docs" / "python_api.md").read_text()
    code = "\n\n".join(re.findall(r"^```python\n(.*?)^```", page, flags=re.S | re.M))
    assert "fh_rl.fit(" in code and "fh_rl.load(" in code
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CartPole-v1, PPO for 2,048 steps" in proc.stdout and "return " in proc.stdout
    (run,) = (tmp_path / "runs" / "CartPole-v1" / "dt-fourier").iterdir()
    assert (run / "eval.json").is_file()


def test_a_discrete_env_builds_its_dataset_with_ppo(tmp_path, capsys):
    import h5py

    from fh_rl.datasets import load_hdf5

    data = tmp_path / "cartpole-ppo.hdf5"
    build = {"path": str(data), "build": "sac", "build_steps": 300, "build_expert_episodes": 2}
    kw = {**TINY, "train": {**TINY["train"], "steps": 2}, "env": {"name": "CartPole-v1"}, "evaluate": False,
          "progress": False, "run_root": str(tmp_path / "runs")}
    with pytest.raises(ValueError, match=r"Discrete actions, which collect control learns with PPO, not SAC "
                                         r"\(dataset.build: ppo\)"):
        fh_rl.fit(**kw, dataset=build)
    assert not data.exists()
    with pytest.raises(ValueError, match=r"agent.max_timestep is 20, so its later steps would share one timestep"):
        fh_rl.fit(**kw, dataset={**build, "build": "ppo"}, **{"agent.max_timestep": 20})  # built, then refused
    with h5py.File(data, "r") as f:
        assert f["metadata"].attrs["algorithm"] == "PPO" and f["metadata"].attrs["expert_episodes"] == 2
    err = capsys.readouterr().err
    assert "PPO for 300 steps on CartPole-v1" in err and "random " in err  # the build's summary
    longest = int(np.diff(load_hdf5(data).offsets).max())
    run = fh_rl.fit(**kw, dataset={**build, "build": "ppo"}, **{"agent.max_timestep": longest - 1})  # data cached
    assert "building it" not in capsys.readouterr().err
    assert (run / "checkpoints" / "last.pt").is_file()

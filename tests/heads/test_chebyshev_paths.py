"""The Chebyshev head through every path a head goes: train (DT, BC), checkpoint and resume, evaluate, sweep,
compare, the Atari preset and the density benchmark, on tiny real data (Pendulum-v1, the Dopamine fixture).

The agents' own paths (DT and BC on Discrete, Box and frame observations) are the head-parametrised tests of
tests/agents/test_agents.py; resuming bit for bit is tests/test_train.py's parametrised resume test.
"""

import json
from pathlib import Path

import pytest
import torch

from fh_rl import compare as compare_cli
from fh_rl import evaluate as evaluate_cli
from fh_rl import sweep
from fh_rl import train as train_cli
from fh_rl.infra.cli import run_cli
from tests.tiny_run import write_tiny_config

REPO = Path(__file__).resolve().parents[2]
HEAD = ["--head", "chebyshev", "--set", "head.num_frequencies=4", "--set", "head.regularization_gamma=1e-3",
        "--set", "head.bin_mass=integral"]  # fmt: skip


@pytest.mark.parametrize("agent", ["dt", "bc"])
def test_train_checkpoint_and_evaluate(tmp_path, pendulum_hdf5, capsys, agent):
    config = write_tiny_config(tmp_path, pendulum_hdf5, steps=6)
    args = ["--config", str(config), "--set", f"agent.name={agent}", "--set", f"run_root={tmp_path / 'runs'}",
            "--no-progress", *HEAD]  # fmt: skip
    assert run_cli(train_cli.main, args) == 0
    (run_dir,) = (tmp_path / "runs" / "Pendulum-v1" / f"{agent}-chebyshev").iterdir()
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 6 and state["config"]["head"]["bin_mass"] == "integral"
    assert {k for k in state["model"] if k.startswith("head.")} == {"head.proj.weight", "head.proj.bias"}
    (result,) = json.loads((run_dir / "eval.json").read_text())["results"]
    assert len(result["returns"]) == 1 and -2000 < result["returns"][0] <= 0
    # evaluate rebuilds the agent from the checkpoint alone: the same episodes give the same return
    out = tmp_path / "again.json"
    assert run_cli(evaluate_cli.main, [str(run_dir), "--episodes", "1", "--workers", "0", "--no-progress",
                                       "--out", str(out)]) == 0  # fmt: skip
    assert json.loads(out.read_text())["results"][0]["returns"] == result["returns"]


@pytest.mark.slow  # about 15 s of CPU: 4 training subprocesses
def test_sweep_and_compare_beside_the_fourier_head(tmp_path, pendulum_hdf5):
    config = write_tiny_config(tmp_path, pendulum_hdf5)
    root = tmp_path / "sweep"
    grid = ["--config", str(config), "--heads", "fourier", "chebyshev", "--set", "head.num_frequencies=2,3",
            "--set", "env.margin_bins=0", "--seeds", "0", "--root", str(root), "--jobs", "1", "--no-progress"]  # fmt: skip
    assert run_cli(sweep.main, grid) == 0
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert "chebyshev-num_frequencies=2-seed0" in names and "chebyshev-num_frequencies=3-seed0" in names
    result = compare_cli.compare([root], tmp_path / "out", figures=True)
    rows = result["environments"]["Pendulum-v1"]
    labels = [r["label"] for r in rows]
    assert "dt-chebyshev num_frequencies=2" in labels and "dt-chebyshev num_frequencies=3" in labels
    for row in rows:
        assert row["n_seeds"] == 1 and row["return"]["mean"] <= 0
    assert (tmp_path / "out" / "pmfs-Pendulum-v1.png").is_file()


def test_atari_preset_on_dopamine_fixture(tmp_path):
    """Discrete actions: the Breakout preset (frames, joystick codec) shrunk, with the Chebyshev head."""
    fixture = REPO / "tests" / "fixtures" / "dqn-replay"
    sets = ["agent.embed_dim=16", "agent.n_layer=1", "agent.n_head=2", "agent.context_len=4", "train.batch_size=8",
            "train.steps=3", "train.log_every=1", "train.val_every=3", "train.val_batches=1", "train.warmup_tokens=16",
            "eval.episodes=1", "eval.workers=0", "dataset.val_fraction=0.25", f"dataset.path={fixture}",
            "dataset.max_transitions=null", "dataset.replay_sampling=null", "agent.max_timestep=2000",
            f"run_root={tmp_path / 'runs'}", "head.num_frequencies=8"]  # fmt: skip
    args = ["--config", str(REPO / "configs" / "atari" / "breakout.yaml"), "--head", "chebyshev", "--no-progress"]
    assert run_cli(train_cli.main, args + [a for s in sets for a in ("--set", s)]) == 0
    (run_dir,) = (tmp_path / "runs" / "Breakout" / "dt-chebyshev").iterdir()
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["spec"]["codec"]["ordering"] == "joystick" and state["model"]["head.proj.weight"].shape[0] == 9
    (result,) = json.loads((run_dir / "eval.json").read_text())["results"]
    assert result["return_mean"] >= 0


def test_density_benchmark(tmp_path):
    from benchmarks.density import main

    out = tmp_path / "density"
    assert main(["--heads", "chebyshev", "fourier", "--datasets", "clipped", "--frequencies", "4", "--gammas", "0",
                 "1e-6", "--seeds", "1", "--epochs", "1", "--samples", "60", "--out", str(out)]) == 0  # fmt: skip
    result = json.loads((out / "results.json").read_text())
    assert set(result["aggregate"]["clipped"]) == {"chebyshev(N=4)", "chebyshev(N=4, gamma=1e-06)", "fourier(N=4)",
                                                   "fourier(N=4, gamma=1e-06)"}  # fmt: skip
    assert "| chebyshev(N=4) |" in (out / "results.md").read_text()

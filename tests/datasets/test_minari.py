"""Minari, D4RL's maintained successor: datasets written through Minari's own API, read back by id and by path,
made by ``collect control --format minari`` and trained on with ``dataset.format: minari``."""

import json

import numpy as np
import pytest

minari = pytest.importorskip("minari", reason='pip install "fh_rl[minari]" (in the test extra)')

from fh_rl import train as train_cli  # noqa: E402
from fh_rl.infra.cli import run_cli  # noqa: E402
from fh_rl.datasets import load_hdf5, load_minari, write_minari  # noqa: E402
from fh_rl.datasets import collect  # noqa: E402


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def test_round_trip_by_id_and_by_path(minari_root, pendulum_hdf5):
    ds = load_hdf5(pendulum_hdf5)
    finals = [ds.observations[int(end) - 1] + 1.0 for end in ds.offsets[1:]]  # distinct from any stored observation
    path = write_minari("fh_rl/pendulum/tiny-v0", ds, finals, "Pendulum-v1")
    assert path == minari_root / "fh_rl" / "pendulum" / "tiny-v0"
    theirs = minari.load_dataset("fh_rl/pendulum/tiny-v0")  # Minari itself reads it
    assert theirs.total_episodes == len(ds) and theirs.total_steps == ds.num_transitions
    assert theirs.spec.env_spec.id == "Pendulum-v1"
    first = next(theirs.iterate_episodes())
    np.testing.assert_allclose(first.observations[-1], finals[0])  # T+1 observations: the final one kept
    for back in (load_minari("fh_rl/pendulum/tiny-v0"), load_minari(path)):
        np.testing.assert_array_equal(back.offsets, ds.offsets)
        np.testing.assert_allclose(back.observations, ds.observations)
        np.testing.assert_allclose(back.actions, ds.actions)
        np.testing.assert_allclose(back.rewards, ds.rewards)
        np.testing.assert_array_equal(back.terminated, ds.terminated)
    with pytest.raises(FileNotFoundError, match=r"no Minari dataset 'fh_rl/pendulum/missing-v0'.*--format minari"):
        load_minari("fh_rl/pendulum/missing-v0")


def test_collect_control_writes_a_minari_dataset(minari_root, capsys):
    assert collect.main(["control", "--env", "Pendulum-v1", "--steps", "200", "--out", "fh_rl/pendulum/sac-v0",
                         "--format", "minari", "--expert-episodes", "1"]) == 0
    ds = minari.load_dataset("fh_rl/pendulum/sac-v0")
    assert ds.total_episodes == 2 and ds.total_steps == 400  # SAC's replay (one 200-step episode) + one rollout
    for ep in ds.iterate_episodes():
        assert ep.observations.shape == (201, 3) and ep.truncations[-1]
        assert not np.allclose(ep.observations[-1], ep.observations[-2])  # a real next observation, not a copy
        theta_dot = ep.observations[1:, 2]
        assert np.abs(theta_dot).max() <= 8.0


def test_train_on_a_minari_dataset_takes_its_env(minari_root, pendulum_hdf5, tmp_path):
    ds = load_hdf5(pendulum_hdf5)
    write_minari("fh_rl/pendulum/tiny-v0", ds, [ds.observations[int(e) - 1] for e in ds.offsets[1:]], "Pendulum-v1")
    sets = ["dataset.format=minari", "dataset.path=fh_rl/pendulum/tiny-v0", "env.name=null", "dataset.build=null",
            "agent.embed_dim=16", "agent.n_layer=1", "agent.n_head=2", "agent.context_len=4", "train.batch_size=8",
            "train.steps=4", "train.val_every=4", "train.val_batches=1", "train.pmf_states=0", "dataset.val_fraction=0.25",
            "eval.episodes=1", "eval.workers=0", f"run_root={tmp_path / 'runs'}"]
    assert run_cli(train_cli.main, [a for s in sets for a in ("--set", s)] + ["--head", "linear", "--no-progress"]) == 0
    (run_dir,) = (tmp_path / "runs" / "Pendulum-v1" / "dt-linear").iterdir()  # the env from the dataset's spec
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["dataset"]["format"] == "minari" and manifest["dataset"]["episodes"] == len(ds)
    assert "Pendulum-v1" in (run_dir / "config.yaml").read_text()

"""Ray: a tiny sweep as Ray tasks on a local instance, read by compare; evaluation over Ray actors."""

import json
import os
import signal
import sys

import numpy as np
import pytest

from fh_rl import sweep
from fh_rl.infra.cli import run_cli
from tests.tiny_run import REPO, write_tiny_config


def test_missing_ray_gives_the_pip_command(tmp_path, pendulum_hdf5, monkeypatch, capsys):
    config = write_tiny_config(tmp_path, pendulum_hdf5)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does when it is not installed
    args = ["--config", str(config), "--root", str(tmp_path / "s"), "--backend", "ray", "--no-progress"]
    assert run_cli(sweep.main, args) == 2
    assert 'pip install "fh_rl[ray]"' in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}  # ray.init replaces them
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@pytest.mark.slow
def test_ray_sweep_completes_resumes_and_compare_reads_it(local_ray, tmp_path, pendulum_hdf5, capsys):
    from fh_rl import compare

    config = write_tiny_config(tmp_path, pendulum_hdf5)
    root = tmp_path / "sweep"
    args = ["--config", str(config), "--heads", "linear", "fourier", "--seeds", "0", "1", "--root", str(root),
            "--backend", "ray", "--cpus-per-run", "1", "--no-progress"]
    assert run_cli(sweep.main, args) == 0
    assert "4 trained, 0 resumed, 0 already complete, 0 failed" in capsys.readouterr().out
    runs = sweep.run_dirs_under(root)
    assert len(runs) == 4 and all(sweep.is_complete(d) for d in runs)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["fourier-seed0", "fourier-seed1",
                                                                     "linear-seed0", "linear-seed1"]
    assert all((root / p / "train.log").is_file() for p in ("linear-seed0", "fourier-seed1"))

    # A run stopped before its evaluation travels to a task with its checkpoint and resumes there.
    (stopped,) = sweep.run_dirs_under(root / "fourier-seed0")
    (stopped / "eval.json").unlink()
    assert run_cli(sweep.main, args) == 0
    assert "0 trained, 1 resumed, 3 already complete, 0 failed" in capsys.readouterr().out
    assert sweep.is_complete(stopped)
    assert "resuming at step 6 of 6" in (root / "fourier-seed0" / "train.log").read_text()

    assert run_cli(compare.main, [str(root), "--out", str(tmp_path / "cmp")]) == 0
    table = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    rows = table["environments"]["Pendulum-v1"]
    assert sorted((r["head"], r["n_seeds"], sorted(r["seeds"])) for r in rows) == [("fourier", 2, [0, 1]), ("linear", 2, [0, 1])]
    assert not [s for s in table["skipped"] if "eval.json" in s.get("reason", "")]
    assert (tmp_path / "cmp" / "comparison.md").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("head", ["fourier", "gaussian", "mse"])
def test_ray_evaluation_matches_local_workers(local_ray, tmp_path, pendulum_hdf5, head):
    from fh_rl.build import build
    from fh_rl.config import load_config
    from fh_rl.evaluate import run_evaluation

    cfg = load_config(write_tiny_config(tmp_path, pendulum_hdf5), head=head)
    agent = build(cfg, progress=False).agent.eval()
    kwargs = dict(env_name="Pendulum-v1", targets=[-300.0], episodes=5, workers=2, seed=7, decode="argmax", progress=False)
    local = run_evaluation(agent, **kwargs)
    remote = run_evaluation(agent, backend="ray", **kwargs)
    assert remote[0]["seeds"] == local[0]["seeds"] == list(range(7, 12))
    if agent.head_scores == "bins":
        assert remote[0]["returns"] == local[0]["returns"]  # the same actions for the same seeds: identical returns
    else:  # continuous actions carry the float rounding of differently sized batches into the physics: over 200
        # steps it reached 7e-7 relative once; a different action anywhere moves a return by far more than 1e-4
        np.testing.assert_allclose(remote[0]["returns"], local[0]["returns"], rtol=1e-4)
    assert remote[0]["lengths"] == local[0]["lengths"]
    assert len(set(np.round(local[0]["returns"], 3))) > 1  # the seeds gave different episodes


@pytest.mark.slow
def test_ray_sweep_on_shared_storage_trains_in_place(local_ray, tmp_path, pendulum_hdf5, capsys):
    import yaml

    config = write_tiny_config(tmp_path, pendulum_hdf5, steps=2)
    root = tmp_path / "shared"
    args = ["--config", str(config), "--heads", "linear", "--seeds", "0", "1", "--root", str(root),
            "--backend", "ray", "--shared-storage", "--max-retries", "1", "--no-progress"]
    assert run_cli(sweep.main, args) == 0
    assert "2 trained, 0 resumed, 0 already complete, 0 failed" in capsys.readouterr().out
    runs = sweep.run_dirs_under(root)
    assert len(runs) == 2 and all(sweep.is_complete(d) for d in runs)
    for d in runs:  # trained where it lies, not in a scratch directory copied back
        run_root = yaml.safe_load((d / "config.yaml").read_text())["run_root"]
        assert run_root == str((root / d.relative_to(root).parts[0]).resolve())

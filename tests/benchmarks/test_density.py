"""The synthetic density benchmark: datasets, metrics, stacked training and the CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import density
from benchmarks.density import (
    DATASETS,
    RunConfig,
    bin_centers,
    kl_divergence,
    make_splits,
    quantize,
    score,
    train_and_score,
    train_group,
)
from fh_rl.heads import build_head

REPO = Path(__file__).resolve().parents[2]
K = density.NUM_BINS

# (x, y) points per dataset, chosen to exercise truncation at +-1, two modes and a Beta singular at 0
POINTS = {
    "gaussian": [(0.75, 0.92), (-0.2, -0.25)],
    "gmm2": [(-0.78, 0.9), (0.1, 0.15)],
    "beta": [(0.3, -0.05), (0.004, 0.4), (0.7, 0.75)],
    "clipped": [(0.75, 0.7), (-0.6, -0.55), (0.0, 0.02)],
}


def test_quantize_and_centres():
    edges = np.linspace(-1, 1, K + 1)
    assert quantize(np.array([-5.0, -1.0, edges[1] - 1e-9, edges[1], 1.0, 3.0])).tolist() == [0, 0, 0, 1, K - 1, K - 1]
    c = bin_centers()
    np.testing.assert_array_equal(quantize(c), np.arange(K))
    head = build_head("linear", in_features=4, num_bins=K)
    np.testing.assert_allclose(c, head.bin_centers.double().numpy(), atol=1e-7)  # the heads' bins


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_target_pmfs_sum_to_one_and_match_sampling(name):
    ds = DATASETS[name]
    rng = np.random.default_rng(0)
    n = 100_000
    for x, y in POINTS[name]:
        xs, ys = np.full(n, x), np.full(n, y)
        target = ds.target_pmf(xs[:1], ys[:1])[0]
        assert target.shape == (K,) and np.all(target >= 0)
        assert target.sum() == pytest.approx(1.0, abs=1e-12)
        z = ds.sample_z_truncated(xs, ys, rng)
        assert np.all(np.abs(z) <= 1.0)
        empirical = np.bincount(quantize(z), minlength=K) / n
        tv = 0.5 * np.abs(empirical - target).sum()
        assert tv < 0.015, f"{name} at {(x, y)}: total variation {tv:.4f} between samples and target pmf"
    # whole data set: the labels' histogram is the mixture of the target pmfs of its inputs
    train, test = make_splits(name, 8_000, seed=3)
    np.testing.assert_allclose(train.target.sum(-1), 1.0, atol=1e-12)
    empirical = np.bincount(train.labels, minlength=K) / len(train.labels)
    assert 0.5 * np.abs(empirical - train.target.mean(0)).sum() < 0.05
    assert train.inputs.shape == (6_400, 2) and test.inputs.shape == (1_600, 2)
    assert np.isin(train.inputs, bin_centers().astype(np.float32)).all()


def test_gaussian_target_is_shifted_by_y_not_x():
    ds = DATASETS["gaussian"]
    p = ds.target_pmf(np.array([0.0, 0.5]), np.array([0.5, 0.5]))
    np.testing.assert_allclose(p[0], p[1])
    assert bin_centers()[p[0].argmax()] == pytest.approx(0.5, abs=1 / K)


def test_clipped_target_has_atoms_at_the_bounds():
    from scipy import stats

    ds = DATASETS["clipped"]
    p = ds.target_pmf(np.array([0.7, -0.6, 0.0]), np.array([0.7, -0.55, 0.0]))
    # z = clip(N(1.5 y, 0.2^2), -1, 1): the last bin holds P(w > 1 - 2/K), the first P(w < -1 + 2/K)
    assert p[0, -1] == pytest.approx(stats.norm.sf(1 - 2 / K, loc=1.05, scale=0.2), rel=1e-12)
    assert p[1, 0] == pytest.approx(stats.norm.cdf(-1 + 2 / K, loc=-0.825, scale=0.2), rel=1e-12)
    assert p[0, -1] > 0.5 and p[1, 0] > 0.2 and p[2, [0, -1]].max() < 1e-5


def test_kl_of_truth_against_itself_is_zero_and_smoothness_of_constant_is_zero():
    _, test = make_splits("gmm2", 200, seed=1)
    m = score(test.target, test.target)
    assert m["kl"] == 0.0 and m["mse"] == 0.0
    uniform = np.full_like(test.target, 1.0 / K)
    m = score(test.target, uniform)
    assert m["smoothness"] == pytest.approx(0.0, abs=1e-12)
    assert m["kl"] > 0.5 and m["mse"] > 0.0


def test_kl_and_mse_match_direct_numpy():
    rng = np.random.default_rng(1)
    p = rng.random((7, K)) * (rng.random((7, K)) > 0.3)  # zeros in p
    p /= p.sum(-1, keepdims=True)
    q = rng.random((7, K)) + 1e-3
    q /= q.sum(-1, keepdims=True)
    direct = [sum(pi * np.log(pi / qi) for pi, qi in zip(pr, qr, strict=True) if pi > 0) for pr, qr in zip(p, q, strict=True)]
    np.testing.assert_allclose(kl_divergence(p, q), direct, rtol=1e-12)
    c = bin_centers()
    direct_mse = np.mean([(sum(qr * c) - sum(pr * c)) ** 2 for pr, qr in zip(p, q, strict=True)])
    m = score(p, q)
    assert m["kl"] == pytest.approx(np.mean(direct), rel=1e-12)
    assert m["mse"] == pytest.approx(direct_mse, rel=1e-10)
    # a zero of q under positive p stays finite (floored), and is large
    q0 = q.copy()
    q0[0, p[0].argmax()] = 0.0
    assert np.isfinite(kl_divergence(p, q0)).all() and kl_divergence(p, q0)[0] > 10


def test_stacked_training_equals_lone_runs():
    cfgs = [
        RunConfig("gaussian", "fourier", {"num_frequencies": 4, "regularization_gamma": 1e-6}, seed=s, epochs=1, samples=160)
        for s in (1, 2)
    ]
    stacked = train_group(cfgs)
    for cfg, res in zip(cfgs, stacked, strict=True):
        lone = train_and_score(cfg)
        for k in ("kl", "mse", "smoothness"):
            assert res["metrics"][k] == pytest.approx(lone["metrics"][k], rel=1e-4, abs=1e-7)
    assert stacked[0]["metrics"]["kl"] != stacked[1]["metrics"]["kl"]  # seeds differ
    with pytest.raises(ValueError, match="one head setting"):
        train_group([cfgs[0], RunConfig("gaussian", "linear", seed=1, epochs=1, samples=160)])


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "benchmarks.density", "--heads", "linear", "fourier",
           "--datasets", "gaussian", "beta", "--frequencies", "4", "--gammas", "0", "1e-6",
           "--seeds", "1", "--epochs", "2", "--samples", "200", "--jobs", "2", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "results.json").read_text())
    labels = {"linear", "fourier(N=4)", "fourier(N=4, gamma=1e-06)"}
    assert len(result["runs"]) == 2 * len(labels)
    assert set(result["aggregate"]) == {"gaussian", "beta"}
    assert set(result["aggregate"]["gaussian"]) == labels
    for run in result["runs"]:
        m = run["metrics"]
        assert np.isfinite([m["kl"], m["mse"], m["smoothness"]]).all() and m["kl"] > 0
        ex = run["examples"]
        np.testing.assert_allclose(np.sum(ex["predicted"], -1), 1.0, atol=1e-5)
        np.testing.assert_allclose(np.sum(ex["target"], -1), 1.0, atol=1e-9)
    md = (out / "results.md").read_text()
    assert "### gaussian" in md and "| linear |" in md and "0.170" in md
    for png in ("kl_smoothness_vs_frequencies.png", "pmfs.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "runs.jsonl").read_text().splitlines()) == len(result["runs"])
    # --resume reuses the recorded runs: a narrower sweep trains nothing and reports the same numbers
    assert density.main(["--heads", "linear", *cmd[6:], "--resume"]) == 0  # in-process: no second start-up
    resumed = json.loads((out / "results.json").read_text())
    assert [r["metrics"] for r in resumed["runs"]] == [r["metrics"] for r in result["runs"] if r["label"] == "linear"]
    (out / "results.json").write_text(json.dumps(result))
    # --replot rebuilds the report from results.json
    (out / "results.md").unlink()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.density", "--out", str(out), "--replot"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (out / "results.md").read_text() == md


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--heads", "fourer"], "unknown head 'fourer'; did you mean 'fourier'"),
        (["--heads", "linear", "gaussian"], "head 'gaussian' scores continuous actions; this benchmark trains on bin labels"),
        (["--datasets", "gauss"], "unknown dataset 'gauss'"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--frequencies", "0"], "--frequencies must be >= 1"),
        (["--gammas", "-1"], "--gammas must be >= 0"),
        (["--samples", "3"], "--samples must be at least 5"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, args, message, capsys):
    from fh_rl.infra.cli import run_cli

    assert run_cli(density.main, [*args, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

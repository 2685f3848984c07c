"""Decodings (``eval.decode``): exact actions on hand-made pmfs, ``mode`` on a known density, several decodings in
one evaluation on the same seeds, and the one-line refusals."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from fh_rl import evaluate as evaluate_cli
from fh_rl import train as train_cli
from fh_rl.envs.codecs import BoxCodec, make_codec
from fh_rl.heads import HeadOutput, build_head
from fh_rl.heads.decoding import (
    MODE_POINTS_PER_BIN,
    DecodeContext,
    Decoding,
    available_decodings,
    parse_decoder,
    parse_decoders,
    register_decoding,
)
from fh_rl.infra.cli import run_cli

# ----------------------------------------------------------------------------- hand-made pmfs

CODEC = BoxCodec([-2.0], [2.0], num_bins=4)  # bin centres -1.5, -0.5, 0.5, 1.5


def _act(name: str, pmf: list, codec: BoxCodec = CODEC, seed: int = 0) -> np.ndarray:
    """The environment action a decoding takes for pmf rows ``(n, A, K)``, as AgentPolicy turns it into one."""
    log_probs = torch.log(torch.tensor(pmf, dtype=torch.float32) + 1e-30)
    head = build_head("linear", 4, log_probs.shape[-1], log_probs.shape[-2])
    ctx = DecodeContext(head, HeadOutput(log_probs, torch.zeros(())), None, codec, torch.Generator().manual_seed(seed))
    chosen = parse_decoder(name)(ctx)
    if chosen.dtype == torch.int64:  # bins: the codec decodes them to their centres
        return codec.decode(chosen.numpy())
    return codec.from_unit(chosen.numpy())


ONE_HOT = [[[0.0, 0.0, 1.0, 0.0]]]
UNIFORM = [[[0.25, 0.25, 0.25, 0.25]]]
BIMODAL = [[[0.5, 0.0, 0.0, 0.5]]]
SKEWED = [[[0.6, 0.0, 0.0, 0.4]]]


@pytest.mark.parametrize("pmf, argmax, mean, median", [
    (ONE_HOT, 0.5, 0.5, 0.5),
    (UNIFORM, -1.5, 0.0, 0.0),  # argmax: the first of equal bins
    (BIMODAL, -1.5, 0.0, 0.0),  # median: the middle of the flat stretch of the CDF at 1/2
    (SKEWED, -1.5, 0.6 * -1.5 + 0.4 * 1.5, -2.0 + 0.5 / 0.6),  # median: 5/6 into bin 0, which spans [-2, -1]
])
def test_each_decoding_gives_the_exact_action_on_hand_made_pmfs(pmf, argmax, mean, median):
    for name, expected in (("argmax", argmax), ("mean", mean), ("median", median)):
        np.testing.assert_allclose(_act(name, pmf), [[expected]], atol=1e-6, err_msg=name)


def test_decodings_act_per_dimension():
    pmf = [[[0.0, 1.0, 0.0, 0.0], [0.6, 0.0, 0.0, 0.4]],  # row 0: two action dimensions
           [[0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.0, 1.0]]]  # (n=2, A=2, K=4)
    codec = BoxCodec([-2.0, 0.0], [2.0, 4.0], num_bins=4)  # dimension 1: centres 0.5, 1.5, 2.5, 3.5
    np.testing.assert_allclose(_act("argmax", pmf, codec), [[-0.5, 0.5], [-1.5, 3.5]])
    np.testing.assert_allclose(_act("mean", pmf, codec), [[-0.5, 0.6 * 0.5 + 0.4 * 3.5], [0.0, 3.5]], atol=1e-6)
    np.testing.assert_allclose(_act("median", pmf, codec), [[-0.5, 0.5 / 0.6], [0.0, 3.5]], atol=1e-6)


def test_sample_draws_from_the_pmf():
    np.testing.assert_array_equal(_act("sample", ONE_HOT * 50), np.full((50, 1), 0.5))  # one-hot: always that bin
    draws = _act("sample", BIMODAL * 400, seed=1)
    assert set(np.unique(draws)) == {-1.5, 1.5} and abs((draws == 1.5).mean() - 0.5) < 0.1
    np.testing.assert_array_equal(draws, _act("sample", BIMODAL * 400, seed=1))  # seeded


def test_margin_bins_count_as_the_end_bins_they_decode_to():
    codec = BoxCodec([-2.0], [2.0], num_bins=4, margin_bins=1)  # the head sees 6 bins, the outer two beyond the bounds
    low_margin = [[[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]]
    assert _act("argmax", low_margin, codec)[0, 0] == -1.5  # decodes to the end bin's centre
    np.testing.assert_allclose(_act("mean", low_margin, codec), [[-1.5]])
    np.testing.assert_allclose(_act("median", low_margin, codec), [[-2.0]])  # the median lies beyond: clipped to low
    np.testing.assert_allclose(_act("mean", [[[0.5, 0.0, 0.0, 0.0, 0.0, 0.5]]], codec), [[0.0]], atol=1e-6)


# ----------------------------------------------------------------------------- mode on known densities


def _fourier_with_peak(x0: float, num_bins: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """A Fourier head (N = 1) whose density |a_0 + a_1 e^{i pi x}|^2 peaks at x0: a_1 = e^{-i pi x0} / 2, a_0 = 1."""
    head = build_head("fourier", 1, num_bins, 1, num_frequencies=1)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.copy_(torch.tensor([1.0, 0.5 * math.cos(math.pi * x0), 0.0, -0.5 * math.sin(math.pi * x0)]))
    return head, torch.zeros(1, 1)  # h = 0: the coefficients are the bias


@pytest.mark.parametrize("x0", [0.3137, -0.77, 0.0])
def test_mode_finds_the_fourier_densitys_maximiser_to_the_grid_step(x0):
    codec = BoxCodec([-1.0], [1.0], num_bins=8)  # the head's scale is the action's
    head, h = _fourier_with_peak(x0, 8)
    x = torch.linspace(-1, 1, 20001)
    # The density does peak at x0. Near its maximum it is flat to float32 rounding over a few 1e-4 (the grid here
    # is 1e-4), so which grid point wins depends on the CPU's float kernels: 2e-3 is far below the mode's step.
    assert abs(float(x[head.density(h, x)[0, 0].argmax()]) - x0) < 2e-3
    ctx = DecodeContext(head, head(h), h, codec)
    mode = float(parse_decoder("mode")(ctx))
    step = 2.0 / (8 * MODE_POINTS_PER_BIN)
    assert abs(mode - x0) <= step / 2 + 1e-6
    argmax_centre = float(codec.decode(parse_decoder("argmax")(ctx).numpy())[0, 0])
    assert abs(mode - x0) < abs(argmax_centre - x0) or abs(argmax_centre - x0) < step  # finer than a bin


def test_mode_maps_the_heads_scale_to_the_action_with_margin_bins():
    codec = BoxCodec([-2.0], [2.0], num_bins=6, margin_bins=1)  # 8 head bins; the action's [-2, 2] is the inner 6
    x0 = 0.4  # on the head's scale: (0.4 + 1) / 2 * 8 = 5.6 bins from its left edge, 4.6 from low
    head, h = _fourier_with_peak(x0, 8)
    action = float(codec.from_unit(parse_decoder("mode")(DecodeContext(head, head(h), h, codec)).numpy())[0, 0])
    step = 4.0 / 6 / MODE_POINTS_PER_BIN  # grid step in action units
    assert abs(action - (-2.0 + 4.6 * 4.0 / 6)) <= step / 2 + 1e-5


def test_gaussian_decodings_mean_median_and_mode():
    head = build_head("gaussian", 1, 8, 1)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.copy_(torch.tensor([0.8, math.log(0.7)]))  # mu, log sigma
    h = torch.zeros(1, 1)
    codec = BoxCodec([-1.0], [1.0], num_bins=8)
    with torch.no_grad():
        ctx = DecodeContext(head, head(h), h, codec, torch.Generator().manual_seed(0))
    draws = torch.tanh(0.8 + 0.7 * torch.randn(400_000, generator=torch.Generator().manual_seed(0)))
    assert abs(float(parse_decoder("mean")(ctx)) - float(draws.mean())) < 3e-3  # E[tanh(u)], not tanh(mu)
    assert abs(float(parse_decoder("mean")(ctx)) - math.tanh(0.8)) > 0.05
    assert float(parse_decoder("median")(ctx)) == pytest.approx(math.tanh(0.8), abs=1e-6)
    assert float(parse_decoder("argmax")(ctx)) == pytest.approx(math.tanh(0.8), abs=1e-6)  # the old default
    grid = torch.linspace(-0.999, 0.999, 200001, dtype=torch.float64)  # the squashed density's maximiser
    u = torch.atanh(grid)
    peak = float(grid[(-0.5 * ((u - 0.8) / 0.7) ** 2 - torch.log1p(-grid**2)).argmax()])
    assert abs(float(parse_decoder("mode")(ctx)) - peak) <= 2.0 / (8 * MODE_POINTS_PER_BIN)  # one grid step (skewed peak)


# ----------------------------------------------------------------------------- refusals and the registry


@pytest.mark.parametrize("name, head, space, message", [
    ("mean", "linear", gym.spaces.Discrete(4),
     r"^decoding 'mean' needs Box actions \(an ordered scale\), but the actions are Discrete\(4\); "
     r"available here: argmax, sample$"),
    ("median", "fourier", gym.spaces.Discrete(4), r"needs Box actions.*; available here: argmax, sample$"),
    ("mode", "linear", gym.spaces.Box(-1.0, 1.0, (2,)),
     r"^decoding 'mode' needs a head with a continuous density, but head 'linear' has none; available here: argmax, "
     r"argmax\+within_bin, mean, median, sample, sample\+within_bin$"),
    ("mode", "mse", gym.spaces.Box(-1.0, 1.0, (2,)), r"head 'mse' has none; available here: argmax, mean, median, sample$"),
    ("sample+within_bin", "gaussian", gym.spaces.Box(-1.0, 1.0, (2,)),
     r"within_bin needs Box actions and a head that scores bins .*available here: argmax, mean, median, mode, sample$"),
    ("mean+within_bin", "fourier", gym.spaces.Box(-1.0, 1.0, (2,)), r"within_bin modifies decodings that choose a bin"),
])
def test_bad_combinations_are_refused_with_one_line_listing_what_is_available(name, head, space, message):
    codec = make_codec(space, num_bins=8 if isinstance(space, gym.spaces.Box) else None)
    built = build_head(head, 4, codec.num_bins, codec.action_dims)
    with pytest.raises(ValueError, match=message):
        parse_decoder(name).check(built, codec)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown decoding 'meen'; did you mean 'mean'\? Known decodings: argmax, mean, "):
        parse_decoders("argmax,meen")
    with pytest.raises(ValueError, match=r"decoding 'argmax' is listed twice"):
        parse_decoders(["argmax", "argmax"])
    assert [d.name for d in parse_decoders("argmax, sample+within_bin")] == ["argmax", "sample+within_bin"]


def test_a_user_decoding_registers_in_a_few_lines():
    from fh_rl.heads.decoding import DECODINGS

    @register_decoding("test_p90")
    class P90(Decoding):
        needs_box = True

        def bins(self, ctx):
            cdf = ctx.pmf().cumsum(-1)  # (n, A, K)
            return (cdf < 0.9).sum(-1).clamp(max=cdf.shape[-1] - 1)

    try:
        assert _act("test_p90", [[[0.5, 0.3, 0.1, 0.1]]])[0, 0] == 0.5  # the CDF passes 0.9 in bin 2
        assert "test_p90" in available_decodings(build_head("linear", 4, 4), CODEC)
        with pytest.raises(ValueError, match="already registered"):
            register_decoding("test_p90")(P90)
    finally:
        DECODINGS._entries.pop("test_p90")


# ----------------------------------------------------------------------------- one evaluation, several decodings


TINY = ["agent.embed_dim=16", "agent.n_layer=1", "agent.n_head=2", "agent.context_len=4", "train.batch_size=8",
        "train.log_every=4", "train.val_every=4", "train.val_batches=2", "train.checkpoint_every=4",
        "train.warmup_tokens=16", "train.pmf_states=0", "train.threads=1", "train.device=cpu", "env.num_bins=16",
        "head.num_frequencies=4", "dataset.val_fraction=0.25", "eval.episodes=2", "eval.workers=0",
        "eval.target_quantile=0.75", "train.steps=4"]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, pendulum_hdf5):
    """A tiny DT per head (fourier, linear), trained for 4 steps; fourier's training evaluates two decodings."""
    root = tmp_path_factory.mktemp("decode")
    runs = {}
    for head, decode in (("fourier", "[argmax,mean]"), ("linear", "argmax")):
        args = [a for s in [*TINY, f"dataset.path={pendulum_hdf5}", f"run_root={root / head}", f"eval.decode={decode}"]
                for a in ("--set", s)]
        assert run_cli(train_cli.main, [*args, "--head", head, "--no-progress"]) == 0
        (runs[head],) = (root / head / "Pendulum-v1").glob("*/*")
    return runs


def test_several_decodings_run_the_same_seeds_and_equal_separate_evaluations(tiny_runs, tmp_path):
    from fh_rl.compare.runs import scalar_series

    run = tiny_runs["fourier"]
    trained = json.loads((run / "eval.json").read_text())["results"]
    assert [r["decode"] for r in trained] == ["argmax", "mean"]  # train evaluates every eval.decode
    assert {"eval/argmax/return_mean", "eval/mean/return_mean", "eval/return_mean"} <= set(
        k for k, v in scalar_series(run, ["eval/argmax/return_mean", "eval/mean/return_mean", "eval/return_mean"]).items()
        if v is not None)

    names = ["argmax", "sample", "mean", "median", "mode"]
    out = tmp_path / "all.json"
    common = [str(run), "--episodes", "3", "--workers", "0", "--seed", "11", "--no-progress"]
    assert run_cli(evaluate_cli.main, [*common, "--decode", ",".join(names), "--out", str(out)]) == 0
    together = json.loads(out.read_text())["results"]
    assert [r["decode"] for r in together] == names
    assert all(r["seeds"] == [11, 12, 13] for r in together)  # every decoding on the same episodes
    assert len({tuple(r["returns"]) for r in together}) > 1  # and the decodings do act differently
    for name, record in zip(names, together, strict=True):
        alone = tmp_path / f"{name}.json"
        assert run_cli(evaluate_cli.main, [*common, "--decode", name, "--out", str(alone)]) == 0
        (single,) = json.loads(alone.read_text())["results"]
        assert single["returns"] == record["returns"] and single["seeds"] == record["seeds"], name


def test_bad_decodings_exit_2_with_one_line(tiny_runs, tmp_path, capsys):
    for run, decode, message in (
        (tiny_runs["linear"], "mode", "error: decoding 'mode' needs a head with a continuous density, but head 'linear' "
                                      "has none; available here: argmax, argmax+within_bin, mean, median, sample, "
                                      "sample+within_bin\n"),
        (tiny_runs["fourier"], "argmax,meen", "error: unknown decoding 'meen'; did you mean 'mean'? Known decodings: "
                                              "argmax, mean, median, mode, sample\n"),
    ):
        capsys.readouterr()
        assert run_cli(evaluate_cli.main, [str(run), "--decode", decode, "--out", str(tmp_path / "x.json")]) == 2
        assert capsys.readouterr().err == message
    assert not (tmp_path / "x.json").exists()


def test_compare_reports_each_decoding_and_reads_old_eval_json(tiny_runs, tmp_path):
    import shutil

    from fh_rl.compare import compare, load_run

    old = tmp_path / "runs" / "old"
    shutil.copytree(tiny_runs["fourier"], old, ignore=shutil.ignore_patterns("checkpoints"))
    payload = json.loads((old / "eval.json").read_text())
    payload["results"] = [{k: v for k, v in payload["results"][1].items() if k != "decode"} | {"sample": False}]
    payload.pop("history", None)
    (old / "eval.json").write_text(json.dumps(payload))  # as written before decodings were named: argmax
    run = load_run(old)
    assert run.decode == "argmax" and list(run.decodings) == ["argmax"]
    (old / "eval.json").write_text(json.dumps({**payload, "results": [payload["results"][0] | {
        "sample": True, "sample_within_bin": True}]}))
    assert load_run(old).decode == "sample+within_bin"

    new = tmp_path / "runs" / "new"
    shutil.copytree(tiny_runs["fourier"], new, ignore=shutil.ignore_patterns("checkpoints"))
    new_cfg = (new / "config.yaml").read_text().replace("seed: 0", "seed: 1", 1)
    (new / "config.yaml").write_text(new_cfg)
    result = compare([tmp_path / "runs"], tmp_path / "cmp", figures=False)
    by_decoding = result["decodings"]["Pendulum-v1"]
    assert list(by_decoding) == ["sample+within_bin", "argmax", "mean"]  # in the order the runs hold them
    assert [r["n_seeds"] for r in by_decoding["mean"]] == [1] and by_decoding["mean"][0]["decode"] == "mean"
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "### Pendulum-v1, decoding `argmax`" in md and "### Pendulum-v1, decoding `mean`" in md

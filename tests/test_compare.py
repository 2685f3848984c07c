"""compare on run directories made by tiny real training runs (real Pendulum-v1, real HDF5, real checkpoints)."""

import json
import shutil

import numpy as np
import pytest
import torch

from fh_rl import compare as compare_cli
from fh_rl import train as train_cli
from fh_rl.infra.cli import run_cli

TINY = [
    "env.num_bins=16",
    "agent.embed_dim=16",
    "agent.n_layer=1",
    "agent.n_head=2",
    "agent.context_len=4",
    "train.steps=6",
    "train.batch_size=8",
    "train.log_every=2",
    "train.val_every=3",
    "train.val_batches=2",
    "train.checkpoint_every=6",
    "train.warmup_tokens=16",
    "train.pmf_states=0",
    "eval.episodes=2",
    "eval.workers=0",
    "eval.target_quantile=0.75",
    "dataset.val_fraction=0.25",
]
# (head, extra overrides, seeds): 4 linear seeds so the IQM trims, two Fourier settings.
GRID = [
    ("linear", [], [0, 1, 2, 3]),
    ("fourier", ["head.num_frequencies=2"], [0, 1]),
    ("fourier", ["head.num_frequencies=4"], [0, 1]),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, pendulum_hdf5):
    """Train every grid point in-process; returns (root, {(head, N, seed): run_dir})."""
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for head, extra, seeds in GRID:
        for seed in seeds:
            n = extra[0].split("=")[1] if extra else None
            run_root = root / f"{head}-{n}-{seed}"
            sets = [*TINY, *extra, f"dataset.path={pendulum_hdf5}", f"run_root={run_root}"]
            argv = [a for s in sets for a in ("--set", s)] + ["--head", head, "--seed", str(seed), "--no-progress"]
            assert run_cli(train_cli.main, argv) == 0
            (run_dir,) = (run_root / "Pendulum-v1" / f"dt-{head}").iterdir()
            made[(head, None if n is None else int(n), seed)] = run_dir
    return root, made


def test_grouping_and_statistics_match_numpy(runs):
    root, made = runs
    found, skipped = compare_cli.find_runs([root])
    assert skipped == []
    groups, dropped = compare_cli.group_runs(found)
    assert dropped == []
    assert list(groups) == ["Pendulum-v1"]
    by_label = {g.label: g for g in groups["Pendulum-v1"]}
    assert sorted(by_label) == sorted(["dt-linear", "dt-fourier num_frequencies=2", "dt-fourier num_frequencies=4"])
    assert [g.label for g in groups["Pendulum-v1"]][0] == "dt-linear"  # linear first, then by N
    for (head, n, _), run_dir in made.items():
        label = "dt-linear" if head == "linear" else f"dt-fourier num_frequencies={n}"
        group = by_label[label]
        assert run_dir in [r.path for r in group.runs]
        assert group.head == head and (n is None or group.head_params["num_frequencies"] == n)
    assert by_label["dt-linear"].seeds == [0, 1, 2, 3]

    for group in groups["Pendulum-v1"]:
        row = compare_cli.summarize(group)
        per_seed = np.array([np.mean(json.loads((r.path / "eval.json").read_text())["results"][0]["returns"])
                             for r in group.runs])
        assert row["n_seeds"] == len(per_seed)
        assert row["return"]["mean"] == pytest.approx(per_seed.mean())
        x = np.sort(per_seed)
        cut = int(0.25 * len(x))
        assert row["return"]["iqm"] == pytest.approx(x[cut:len(x) - cut].mean())
        # Percentile bootstrap of the mean, done directly with numpy.
        rng = np.random.default_rng(123)
        boot = per_seed[rng.integers(0, len(x), size=(40_000, len(x)))].mean(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        spread = np.ptp(per_seed)
        assert row["return"]["ci_low"] == pytest.approx(lo, abs=0.03 * spread)
        assert row["return"]["ci_high"] == pytest.approx(hi, abs=0.03 * spread)
        assert x[0] <= row["return"]["ci_low"] <= row["return"]["mean"] <= row["return"]["ci_high"] <= x[-1]
        assert row["normalized"] is None  # Pendulum has no reference scores
        for m in ("nll", "accuracy", "smoothness"):
            assert row["val"][m]["n"] == len(per_seed)
            assert row["val"][m]["mean"] == pytest.approx(np.mean([r.val[m] for r in group.runs]))
    linear = compare_cli.summarize(by_label["dt-linear"])["return"]
    assert linear["n"] == 4 and linear["iqm"] != pytest.approx(linear["mean"])  # 4 seeds: the IQM really trims


def test_validation_metrics_are_the_final_held_out_values(runs):
    """val/nll and val/accuracy read by compare equal a direct recomputation from the checkpoint."""
    from fh_rl.agents import agent_from_spec
    from fh_rl.build import build
    from fh_rl.config import config_from_dict
    from fh_rl.trainer import load_checkpoint

    _, made = runs
    run_dir = made[("fourier", 2, 1)]
    run = compare_cli.load_run(run_dir)
    state = load_checkpoint(run_dir)
    cfg = config_from_dict(state["config"])
    agent = agent_from_spec(cfg.agent, state["spec"], state["model"]).eval()
    tokens = nll = acc = 0.0
    with torch.no_grad():
        for batch in build(cfg, progress=False).val_batches:
            out = agent.loss(batch)
            tokens += int(out.tokens)
            nll += float(out.nll) * int(out.tokens)
            acc += float(out.accuracy) * int(out.tokens)
    assert run.val["nll"] == pytest.approx(nll / tokens, rel=1e-4)
    assert run.val["accuracy"] == pytest.approx(acc / tokens, rel=1e-4)


def test_cli_writes_outputs_and_skips_bad_run_dirs(runs, tmp_path, capsys):
    root, made = runs
    bad = tmp_path / "bad"
    shutil.copytree(made[("linear", None, 0)], bad / "no-eval")
    (bad / "no-eval" / "eval.json").unlink()
    shutil.copytree(made[("linear", None, 1)], bad / "broken-eval")
    (bad / "broken-eval" / "eval.json").write_text('{"results": [')
    shutil.copytree(made[("linear", None, 2)], bad / "broken-config")
    (bad / "broken-config" / "config.yaml").write_text("env: [unclosed\n")
    (bad / "only-manifest").mkdir()
    (bad / "only-manifest" / "manifest.json").write_text("{}")
    out = tmp_path / "out"
    assert run_cli(compare_cli.main, [str(root), str(bad), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "| dt-linear | 4 |" in captured.out
    assert "| dt-fourier num_frequencies=2 | 2 |" in captured.out
    result = json.loads((out / "comparison.json").read_text())
    reasons = {s["path"].split("/")[-1]: s["reason"] for s in result["skipped"]}
    assert "no eval.json" in reasons["no-eval"]
    assert "eval.json is malformed" in reasons["broken-eval"]
    assert "config.yaml unreadable" in reasons["broken-config"]
    assert "no config.yaml" in reasons["only-manifest"]
    assert "skipped" in captured.err and "no-eval" in captured.err
    rows = result["environments"]["Pendulum-v1"]
    assert [r["n_seeds"] for r in rows] == [4, 2, 2]
    md = (out / "comparison.md").read_text()
    assert "| dt-fourier num_frequencies=4 | 2 |" in md and "broken-eval" in md
    assert "### Pendulum-v1, decoding `argmax`\n\nEvaluation: transformed returns-to-go.\n" in md  # how returns were had
    for name in ("frequencies-Pendulum-v1.png", "curves-Pendulum-v1.png", "pmfs-Pendulum-v1.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert name in md


def test_scalar_series_reads_each_step_once(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from fh_rl.compare.runs import scalar_series

    writer = SummaryWriter(str(tmp_path))
    for step, value in ((10, 1.0), (20, 0.5), (30, 0.4)):
        writer.add_scalar("val/nll", value, step)
    writer.add_scalar("val/nll", 0.45, 30)  # a resumed run logs its checkpoint's step again: the later write wins
    writer.close()
    series = scalar_series(tmp_path, ["val/nll", "train/nll"])
    steps, values = series["val/nll"]
    assert steps.tolist() == [10, 20, 30] and values.tolist() == pytest.approx([1.0, 0.5, 0.45])
    assert series["train/nll"] is None


def test_table_names_the_atari_protocol():
    from fh_rl.compare.runs import _resolved_protocol

    assert _resolved_protocol({"env": {"name": "Breakout", "protocol": None}}) == "dqn-replay"  # a run from before eval.json said
    table = compare_cli.markdown_table("Breakout", [], "dt-paper protocol, transformed returns-to-go, sampled actions")
    assert table.splitlines()[2] == "Evaluation: dt-paper protocol, transformed returns-to-go, sampled actions."


def test_duplicate_seed_keeps_one_run(runs, tmp_path):
    root, made = runs
    shutil.copytree(made[("fourier", 4, 0)], tmp_path / "copy")
    found, _ = compare_cli.find_runs([root, tmp_path / "copy"], read_events=False)
    groups, dropped = compare_cli.group_runs(found)
    (g,) = [g for g in groups["Pendulum-v1"] if g.label == "dt-fourier num_frequencies=4"]
    assert g.seeds == [0, 1]
    assert len(dropped) == 1 and "duplicate of seed 0" in dropped[0]["reason"]


def test_swept_non_head_setting_splits_groups(runs, tmp_path):
    """A key that differs between runs (not only head parameters) is part of the group label."""
    root, made = runs
    other = tmp_path / "other"
    shutil.copytree(made[("linear", None, 0)], other)
    cfg = (other / "config.yaml").read_text().replace("steps: 6", "steps: 7")
    (other / "config.yaml").write_text(cfg)
    state = torch.load(other / "checkpoints" / "last.pt", weights_only=True)  # the run's own record says so too
    state["config"]["train"]["steps"] = 7
    torch.save(state, other / "checkpoints" / "last.pt")
    found, _ = compare_cli.find_runs([made[("linear", None, 0)], made[("linear", None, 1)], other], read_events=False)
    groups, _ = compare_cli.group_runs(found)
    assert sorted(g.label for g in groups["Pendulum-v1"]) == ["dt-linear train.steps=6", "dt-linear train.steps=7"]


def test_a_setting_older_runs_predate_counts_as_its_default(runs):
    """A run made before ``dataset.action_noise`` existed groups with a new run at its default (0.0), and a new
    run with another value still gets its own labelled group."""
    _, made = runs
    found, _ = compare_cli.find_runs([made[("linear", None, s)] for s in (0, 1, 2)], read_events=False)
    old, new, noisy = found
    old.config.pop("dataset.action_noise", None)  # as read from a record written before the option
    new.config["dataset.action_noise"] = 0.0
    groups, _ = compare_cli.group_runs([old, new])
    assert [(g.label, len(g.runs)) for g in groups["Pendulum-v1"]] == [("dt-linear", 2)]
    noisy.config["dataset.action_noise"] = 0.5
    groups, _ = compare_cli.group_runs([old, new, noisy])
    assert sorted(g.label for g in groups["Pendulum-v1"]) == ["dt-linear dataset.action_noise=0.0",
                                                             "dt-linear dataset.action_noise=0.5"]


def test_statistics_edge_cases():
    one = compare_cli.seed_statistics([3.0])
    assert one["mean"] == 3.0 and one["ci_low"] is None and one["n"] == 1
    same = compare_cli.seed_statistics([2.0, 2.0, 2.0])
    assert same["ci_low"] == same["ci_high"] == 2.0
    assert compare_cli.seed_statistics([None, float("nan")])["mean"] is None


def test_no_runs_is_a_usage_error(tmp_path, capsys):
    assert run_cli(compare_cli.main, [str(tmp_path)]) == 2
    assert "no complete runs found" in capsys.readouterr().err
    assert run_cli(compare_cli.main, [str(tmp_path / "missing")]) == 2


def test_custom_scalars_layout(tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.custom_scalar import layout_pb2
    from torch.utils.tensorboard import SummaryWriter

    old = tmp_path / f"events.out.tfevents.0.fh_rl-0123456789{compare_cli.LAYOUT_SUFFIX}"
    old.write_bytes(b"")  # what older versions left in a run root: a pseudo-run in TensorBoard
    assert compare_cli.remove_root_layouts(tmp_path) == [old] and not old.exists()
    with SummaryWriter(str(tmp_path / "run")) as writer:
        compare_cli.write_layout(writer)
    (path,) = (tmp_path / "run").glob("events.out.tfevents.*")
    layouts = []
    for event in EventFileLoader(str(path)).Load():
        for value in event.summary.value:
            if value.tag == "custom_scalars__config__":
                layout = layout_pb2.Layout()
                layout.ParseFromString(value.tensor.string_val[0])
                layouts.append(layout)
    (layout,) = layouts
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert charts["held-out smoothness"] == [r"val/smoothness$"]
    assert charts["return mean"] == [r"eval/return_mean(/target_.*)?$"]
    assert {"held-out accuracy", "normalised return", "loss"} <= set(charts)
    import re

    assert re.search(charts["return mean"][0], "eval/return_mean") and not re.search(charts["return mean"][0], "eval/return_std")
    # NLLs in different units get different charts: a pmf over bins, a density of the action
    assert charts["held-out NLL over the bins (pmf)"] == [r"val/nll$"]
    assert charts["held-out NLL of the action (density on [-1, 1])"] == [r"val/nll_density$"]
    assert charts["NLL over the bins (pmf)"] == [r"train/nll$"] and charts["squared error (mse head)"] == [r"train/mse$"]


def test_missing_dataset_skips_only_the_pmf_figure(runs, pendulum_hdf5, tmp_path):
    _, made = runs
    for key in [("linear", None, 0), ("fourier", 4, 0)]:
        dst = tmp_path / "moved" / f"{key[0]}-{key[2]}"
        shutil.copytree(made[key], dst)
        cfg = (dst / "config.yaml").read_text()
        (dst / "config.yaml").write_text(cfg.replace(str(pendulum_hdf5), "/nonexistent/pendulum.hdf5"))
        assert "/nonexistent" in (dst / "config.yaml").read_text()
    out = tmp_path / "out"
    assert run_cli(compare_cli.main, [str(tmp_path / "moved"), "--out", str(out)]) == 0
    result = json.loads((out / "comparison.json").read_text())
    (skip,) = result["skipped"]
    assert skip["path"] == "pmfs-Pendulum-v1.png" and "not found" in skip["reason"]
    assert (out / "frequencies-Pendulum-v1.png").is_file() and not (out / "pmfs-Pendulum-v1.png").exists()
    assert [r["n_seeds"] for r in result["environments"]["Pendulum-v1"]] == [1, 1]


def test_continuous_heads_beside_quantized_ones_never_mix_units(runs, pendulum_hdf5, tmp_path, capsys):
    """mse and gaussian runs next to linear and Fourier runs: NLL columns by unit, blanks where a metric does not apply."""
    _, made = runs
    root = tmp_path / "continuous"
    for head in ("mse", "gaussian"):
        sets = [*TINY, f"dataset.path={pendulum_hdf5}", f"run_root={root}"]
        argv = [a for s in sets for a in ("--set", s)] + ["--head", head, "--seed", "0", "--no-progress"]
        assert run_cli(train_cli.main, argv) == 0
    for key in [("linear", None, 0), ("fourier", 4, 0)]:
        shutil.copytree(made[key], root / f"{key[0]}-copy")
    out = tmp_path / "out"
    capsys.readouterr()
    assert run_cli(compare_cli.main, [str(root), "--out", str(out)]) == 0
    md = capsys.readouterr().out
    assert "| val NLL (bins) | val NLL (density) | val accuracy | val smoothness | val action MSE |" in md
    rows = {r["head"]: r for r in json.loads((out / "comparison.json").read_text())["environments"]["Pendulum-v1"]}
    assert sorted(rows) == ["fourier", "gaussian", "linear", "mse"]
    val = {head: {m: row["val"][m]["mean"] for m in compare_cli.VAL_METRICS} for head, row in rows.items()}
    for head in ("linear", "fourier"):
        assert val[head]["nll_density"] is None and None not in (val[head]["nll"], val[head]["smoothness"])
    assert None not in val["gaussian"].values()  # its density NLL, and its discretised NLL over the same bins
    assert val["mse"]["nll"] is val["mse"]["nll_density"] is val["mse"]["smoothness"] is None  # a point prediction
    assert all(val[h]["accuracy"] is not None and 0 <= val[h]["action_mse"] <= 4 for h in val)
    mse_row = next(line for line in md.splitlines() if line.startswith("| dt-mse |"))
    assert mse_row.count("| - ") >= 4  # normalised, NLL (bins), NLL (density), smoothness
    # The figures: the pmfs (mse as its point prediction) and the frequency plot with the other heads as bands.
    for name in ("frequencies-Pendulum-v1.png", "pmfs-Pendulum-v1.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pmfs, chosen, targets, _ = compare_cli.held_out_pmfs([compare_cli.load_run(d) for d in sorted(root.glob("*/dt-*/*"))
                                                       + [root / "linear-copy"]], states=3)
    assert [p is None for p in pmfs] == [False, True, False]  # gaussian, mse, linear
    assert all(c.shape == (3,) for c in chosen) and targets.shape == (3,)
    assert [p.shape for p in pmfs if p is not None] == [(3, 48), (3, 48)]  # the same 16 bins and 2 x 16 margin bins


def test_best_of_evaluations_is_the_papers_statistic(runs, tmp_path):
    """Per seed the best of N evaluations, normalised, then mean +- 0.67 std (ddof 0); labelled as optimistic."""
    _, made = runs
    means = {0: [100.0, 900.0, 500.0], 1: [300.0, 200.0, 1500.0]}
    copies = []
    for seed, values in means.items():
        run = tmp_path / f"seed{seed}"
        shutil.copytree(made[("linear", None, seed)], run)
        payload = json.loads((run / "eval.json").read_text())
        payload["history"] = [{"step": 2 * (i + 1), "results": [{"returns": [v - 10, v + 10]}]} for i, v in enumerate(values)]
        (run / "eval.json").write_text(json.dumps(payload))
        copies.append(run)
    found, _ = compare_cli.find_runs(copies, read_events=False)
    (group,) = compare_cli.group_runs(found)[0]["Pendulum-v1"]
    best = compare_cli.summarize(group)["best_of_evaluations"]
    assert best["label"] == "best of 3 evaluations per seed (the paper's statistic; optimistic)"
    assert not best["normalized"] and best["values"] == [900.0, 1500.0]  # Pendulum: no reference scores
    assert best["mean"] == 1200.0 and best["half_width"] == pytest.approx(0.67 * 300.0)
    table = compare_cli.markdown_table("Pendulum-v1", [compare_cli.summarize(group)])
    assert "best of 3 evaluations per seed (the paper's statistic; optimistic), return: mean ± 0.67 std" in table
    assert "| 1,200 ± 201.00 |" in table

    # Atari: normalised 100 (R - random) / (human - random) per seed before the mean
    seaquest = [compare_cli.Run(path=r.path, env="Seaquest", agent="dt", head="linear", head_params={}, seed=r.seed,
                                config={}, target=None, returns=r.returns, history=r.history) for r in group.runs]
    best = compare_cli.best_of_evaluations(compare_cli.Group("Seaquest", "dt", "linear", {}, {}, seaquest))
    expected = [100 * (b - 68.4) / (42054.7 - 68.4) for b in (900.0, 1500.0)]
    assert best["normalized"] and best["values"] == pytest.approx(expected)
    assert best["half_width"] == pytest.approx(0.67 * np.std(expected))
    # runs evaluated once (no history beyond the final evaluation) get no such column
    once = compare_cli.group_runs(compare_cli.find_runs([made[("linear", None, 2)]], read_events=False)[0])[0]
    assert compare_cli.summarize(once["Pendulum-v1"][0])["best_of_evaluations"] is None


def test_run_still_training_is_incomplete(runs, tmp_path):
    _, made = runs
    run = tmp_path / "training"
    shutil.copytree(made[("linear", None, 0)], run)
    (run / "eval.json").write_text(json.dumps({"env": "Pendulum-v1", "history": [{"step": 3, "results": []}]}))
    found, skipped = compare_cli.find_runs([run], read_events=False)
    assert found == [] and "incomplete: 1 evaluation(s) during training" in skipped[0]["reason"]


def test_runs_made_before_an_option_existed_group_with_new_ones(runs, tmp_path):
    """A config.yaml without an option added later reads as that option's default (the old behaviour)."""
    import yaml

    _, made = runs
    old = tmp_path / "old"
    shutil.copytree(made[("linear", None, 1)], old)
    cfg = yaml.safe_load((old / "config.yaml").read_text())
    del cfg["agent"]["init"], cfg["eval"]["every_steps"]
    (old / "config.yaml").write_text(yaml.safe_dump(cfg))
    found, _ = compare_cli.find_runs([made[("linear", None, 0)], old], read_events=False)
    (group,) = compare_cli.group_runs(found)[0]["Pendulum-v1"]
    assert group.label == "dt-linear" and group.seeds == [0, 1]


def test_labels_ignore_what_two_agents_differ_in_anyway():
    from pathlib import Path

    from fh_rl.compare.runs import Run
    from fh_rl.compare.stats import group_runs

    def run(agent, head, seed, **config):
        base = {"agent.name": agent, "head.name": head, "seed": seed}
        return Run(path=Path(f"/x/{agent}-{head}-{seed}"), env="Hopper-v5", agent=agent, head=head, head_params={},
                   seed=seed, config={**base, **config}, target=None, returns=[1.0])

    runs = [run("dt", h, s, **{"agent.context_len": 10, "env.margin_bins": m}) for h in ("linear", "fourier") for s in (0, 1)
            for m in (16,)]
    runs += [run("bc", h, s, **{"agent.context_len": 1, "env.margin_bins": 16}) for h in ("linear", "gmm") for s in (0, 1)]
    runs += [run("dt", "fourier", s, **{"agent.context_len": 10, "env.margin_bins": 0}) for s in (0, 1)]
    groups, dropped = group_runs(runs)
    labels = [g.label for g in groups["Hopper-v5"]]
    assert dropped == []
    assert labels == ["bc-linear", "bc-gmm", "dt-linear env.margin_bins=16", "dt-fourier env.margin_bins=0",
                      "dt-fourier env.margin_bins=16"], labels


def test_a_metric_logged_by_fewer_seeds_says_how_many():
    from fh_rl.compare.report import markdown_table
    from fh_rl.compare.stats import seed_statistics

    val = {m: seed_statistics([0.5, 0.7, 0.9]) for m in compare_cli.VAL_METRICS}
    val["smoothness"] = seed_statistics([0.1, None, 0.3])  # one run never logged it
    val["action_mse"] = seed_statistics([None, None, None])  # no run did: "-"
    row = {"label": "dt-fourier", "n_seeds": 3, "return": seed_statistics([-150.0, -140.0, -160.0]),
           "normalized": None, "val": val, "best_of_evaluations": None}
    line = markdown_table("Pendulum-v1", [row]).splitlines()[-1]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:2] == ["dt-fourier", "3"]
    assert cells[5] == "0.700" and cells[8] == "0.200 (2 of 3 seeds)" and cells[9] == "-"

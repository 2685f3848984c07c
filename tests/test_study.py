"""Studies: a tiny real study end to end (sweeps seed by seed, compare, per-run records, docs section)."""

import json
import shutil
import subprocess

import pytest
import yaml

from fh_rl import study
from fh_rl.infra.cli import run_cli
from tests.tiny_run import REPO, child_env, write_tiny_config


@pytest.fixture
def tiny_study(tmp_path, pendulum_hdf5, monkeypatch):
    config = write_tiny_config(tmp_path, pendulum_hdf5)
    spec = {
        "name": "tiny",
        "title": "Tiny study",
        "root": str(tmp_path / "runs"),
        "seeds": [0, 1],
        "data": {"path": str(pendulum_hdf5)},
        "sweeps": [
            {"name": "main", "config": str(config), "heads": ["linear", "fourier"], "set": ["head.num_frequencies=2"]},
            {"name": "nomargin", "config": str(config), "heads": ["fourier"],
             "set": ["head.num_frequencies=2", "env.margin_bins=0", "train.lr=0.001"]},
        ],
        "about": "**Data.** eight random episodes.",
    }
    path = tmp_path / "tiny-study.yaml"
    path.write_text(yaml.safe_dump(spec))
    for key, value in child_env().items():
        monkeypatch.setenv(key, value)
    return path


def tiny_study_data(path):
    return yaml.safe_load(path.read_text())["data"]["path"]


def test_a_study_refuses_to_train_on_data_other_than_its_records(tiny_study, tmp_path, capsys):
    """A rebuilt dataset differs across CPUs: more runs on another file would mix two datasets in one table."""
    docs = tmp_path / "docs"
    (docs / "results").mkdir(parents=True)
    records = docs / "results" / "tiny.json"
    records.write_text(study.records_json({"study": "tiny", "data_hash": "0" * 32},
                                          [{"point": "main/linear-seed0", "path": "gone"}]))
    before = records.read_bytes()
    assert run_cli(study.main, [str(tiny_study), "--docs", str(docs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its 1 recorded runs learned from" in err[0] and "0" * 32 in err[0]
    assert "move docs/results/tiny.json aside" in err[0]
    assert records.read_bytes() == before and not (tmp_path / "runs").exists()  # nothing trained, nothing rewritten


@pytest.mark.slow
def test_study_runs_seed_major_and_writes_records_and_docs_section(tiny_study, tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    # Another study's section must survive the rewrite.
    (docs / "results.md").write_text(study.PAGE_HEADER + "\n<!-- study:other:start -->\nOTHER\n<!-- study:other:end -->\n")
    assert run_cli(study.main, [str(tiny_study), "--docs", str(docs)]) == 0
    out = capsys.readouterr().out
    # Seed-major: every sweep's seed 0 before any seed 1.
    order = [line for line in out.splitlines() if line.startswith("study tiny: sweep")]
    assert order == ["study tiny: sweep main, seed 0: linear-seed0", "study tiny: sweep main, seed 0: fourier-seed0",
                     "study tiny: sweep nomargin, seed 0: fourier-seed0",
                     "study tiny: sweep main, seed 1: linear-seed1", "study tiny: sweep main, seed 1: fourier-seed1",
                     "study tiny: sweep nomargin, seed 1: fourier-seed1"]

    payload = json.loads((docs / "results" / "tiny.json").read_text())
    records = payload["runs"]
    from fh_rl.datasets import load_hdf5

    assert payload["data_hash"] == load_hdf5(tiny_study_data(tiny_study)).content_hash()  # what the runs learned from
    assert {json.loads((tmp_path / r["path"] / "manifest.json").read_text())["dataset"]["content_hash"]
            for r in records} == {payload["data_hash"]}  # the manifests' hash (no variant here)
    assert len(records) == 6  # (linear, fourier, fourier lr 1e-3) x 2 seeds
    assert sorted({(r["head"], r["seed"]) for r in records}) == [("fourier", 0), ("fourier", 1), ("linear", 0), ("linear", 1)]
    for r in records:
        assert r["env"] == "Pendulum-v1" and r["agent"] == "dt"
        assert len(r["evaluations"][0]["returns"]) == 1
        assert r["return_mean"] == pytest.approx(r["evaluations"][0]["returns"][0])
        assert r["steps"] == 6 and r["wall_time_s"] is not None
        assert set(r["val"]) == {"nll", "nll_density", "accuracy", "smoothness", "action_mse"} and r["val"]["nll"] > 0
        assert r["val"]["nll_density"] is None  # quantized heads have a pmf over bins, not a density
    assert (docs / "results" / "tiny" / "comparison.json").is_file()

    page = (docs / "results.md").read_text()
    assert "OTHER" in page and page.count("<!-- study:tiny:start -->") == 1
    section = page.split("<!-- study:tiny:start -->")[1].split("<!-- study:tiny:end -->")[0]
    assert "## Tiny study" in section and "eight random episodes" in section
    assert "6 runs" in section and "Verdict" in section
    assert "dt-fourier" in section and "vs dt-linear" in section
    assert "fewer than 3 seeds: no verdict yet" in section  # 2 seeds per arm
    # The verdict's means come from the records.
    linear = [r["return_mean"] for r in records if r["head"] == "linear"]
    assert f"vs {sum(linear) / 2:.1f} (2 vs 2 seeds)" in section

    # Records keep what the figures need: learning curves and the pmfs at the pmf figure's states.
    for r in records:
        assert r["point"] in {f"main/{r['head']}-seed{r['seed']}", f"nomargin/fourier-seed{r['seed']}"} or (
            r["point"] == f"main/fourier-seed{r['seed']}")
        assert [s for s, _ in r["curves"]["val/nll"]][-1] == 6 and len(r["curves"]["train/nll"]) >= 1
        assert r["pmfs"]["states"] == 4 and len(r["pmfs"]["pmf"]) == 4
        assert len(r["pmfs"]["pmf"][0]) == r["pmfs"]["codec"]["num_bins"] + 2 * r["pmfs"]["codec"]["margin_bins"]
        assert sum(r["pmfs"]["pmf"][0]) == pytest.approx(1.0, abs=1e-2)

    # Rerunning only the report rewrites the section in place (no duplicate), and reruns nothing;
    # --commit commits the records, figures and page, never the run directories.
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", str(tmp_path)], check=True)
    subprocess.run([*git, "config", "user.name", "t"], cwd=tmp_path, check=True)
    subprocess.run([*git, "config", "user.email", "t@t"], cwd=tmp_path, check=True)
    assert run_cli(study.main, [str(tiny_study), "--docs", str(docs), "--report", "--commit"]) == 0
    again = (docs / "results.md").read_text()
    assert again.count("<!-- study:tiny:start -->") == 1 and "OTHER" in again
    out = capsys.readouterr().out
    assert "study tiny: sweep" not in out and "committed results of 6 finished runs" in out
    tracked = subprocess.run(["git", "ls-files"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert "docs/results.md" in tracked and "docs/results/tiny.json" in tracked
    assert any(p.startswith("docs/results/tiny/pmfs-") for p in tracked)
    assert not any(p.startswith("runs/") for p in tracked)

    # Without its run directories the study is done (its records say so) and its section is the same.
    shutil.rmtree(tmp_path / "runs")
    (docs / "results" / "tiny" / "pmfs-Pendulum-v1.png").unlink()
    assert run_cli(study.main, [str(tiny_study), "--docs", str(docs)]) == 0
    assert "study tiny: sweep" not in capsys.readouterr().out and not (tmp_path / "runs").exists()
    assert (docs / "results.md").read_text() == again
    assert (docs / "results" / "tiny" / "pmfs-Pendulum-v1.png").is_file()  # redrawn from the records' pmfs
    assert json.loads((docs / "results" / "tiny.json").read_text())["runs"] == records

    # A record removed is a run to do again: only that point trains.
    kept = [r for r in records if not (r["head"] == "linear" and r["seed"] == 1)]
    payload = json.loads((docs / "results" / "tiny.json").read_text())
    (docs / "results" / "tiny.json").write_text(json.dumps({**payload, "runs": kept}))
    assert run_cli(study.main, [str(tiny_study), "--docs", str(docs)]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("study tiny: sweep")] == [
        "study tiny: sweep main, seed 1: linear-seed1"]
    assert [p.name for p in (tmp_path / "runs" / "main").iterdir() if p.is_dir()] == ["linear-seed1"]
    assert len(json.loads((docs / "results" / "tiny.json").read_text())["runs"]) == 6

    # Records made on another build of the data: --report keeps their hash and their data summary, and
    # training more runs is refused.
    payload = json.loads((docs / "results" / "tiny.json").read_text())
    recorded = "Dataset `elsewhere.hdf5`: the build these runs learned from."
    (docs / "results" / "tiny.json").write_text(json.dumps({**payload, "data_hash": "f" * 32, "dataset_summary": recorded}))
    assert run_cli(study.main, [str(tiny_study), "--docs", str(docs), "--report"]) == 0
    payload = json.loads((docs / "results" / "tiny.json").read_text())
    assert payload["data_hash"] == "f" * 32 and payload["dataset_summary"] == recorded
    assert recorded in (docs / "results.md").read_text()
    assert run_cli(study.main, [str(tiny_study), "--docs", str(docs)]) == 2


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"name": "x"}, "missing key"),
        ({"name": "x", "title": "t", "root": "r", "seeds": [0], "sweeps": []}, "non-empty list"),
        ({"name": "x", "title": "t", "root": "r", "seeds": [0], "sweeps": [{"name": "a", "config": "c"}]}, "needs name"),
        ({"name": "x", "title": "t", "root": "r", "seeds": "0", "sweeps": [{"name": "a", "config": "c", "heads": ["linear"]}]},
         "list of integers"),
        ({"name": "x", "title": "t", "root": "r", "seeds": [0], "sweeps": [{"name": "a", "config": "c", "heads": ["linear"]}],
          "jbos": 2}, "unknown key"),
    ],
)
def test_bad_study_files_are_one_line_errors(tmp_path, spec, match):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match=match):
        study.load_study(path)


def test_a_study_without_finished_runs_gets_a_section_without_a_table(tiny_study, tmp_path):
    docs = tmp_path / "docs"
    assert run_cli(study.main, [str(tiny_study), "--docs", str(docs), "--report"]) == 0
    page = (docs / "results.md").read_text()
    assert "## Tiny study" in page and "No run of this study has finished yet" in page and "| head |" not in page
    assert json.loads((docs / "results" / "tiny.json").read_text())["runs"] == []


def test_missing_study_file_exits_2(tmp_path, capsys):
    assert run_cli(study.main, [str(tmp_path / "nope.yaml")]) == 2
    assert "configs/studies" in capsys.readouterr().err


def test_repository_studies_parse(monkeypatch):
    """Every study's every point loads as a run config: a sweep whose config and sets do not (e.g. an old key
    beside eval.decode) would fail each of its runs at start, and the study would go on without that arm."""
    from fh_rl.sweep import expand_grid, expected_config

    monkeypatch.chdir(REPO)
    for path in sorted((REPO / "configs" / "studies").glob("*.yaml")):
        spec = study.load_study(path)
        assert len(spec.seeds) >= 5, path
        for sweep in spec.sweeps:
            assert (REPO / sweep.config).is_file(), f"{path}: {sweep.config}"
            for point in expand_grid(sweep.heads, study.sweep_sets(spec, sweep), spec.seeds[:1]):
                cfg = expected_config(sweep.config, point, REPO / spec.root / sweep.folder)
                assert cfg["head"]["name"] == point.head, f"{path}: {sweep.name} {point.name}"


def _row(label, head, seeds, returns):
    from fh_rl.compare.stats import seed_statistics

    return {"label": label, "agent": "dt", "head": head, "seeds": seeds, "n_seeds": len(seeds),
            "return": seed_statistics(returns)}


def test_verdict_words_and_the_paired_difference():
    base = _row("dt-linear", "linear", [0, 1, 2, 3], [-150.0, -200.0, -160.0, -190.0])
    # Every seed 5 better than linear on the same seed: the intervals overlap (seeds vary a lot), and the
    # paired difference says +5 with a degenerate interval.
    close = _row("dt-fourier", "fourier", [0, 1, 2, 3], [-145.0, -195.0, -155.0, -185.0])
    far = _row("dt-gmm", "gmm", [1, 2, 3, 4], [-600.0, -650.0, -620.0, -640.0])
    few = _row("dt-fourier N=4", "fourier", [0, 1], [-140.0, -150.0])
    lines = study.verdict([base, close, far, few])
    assert lines[0] == ("- dt-fourier vs dt-linear: -170.0 vs -175.0 (4 vs 4 seeds); intervals overlap: no evidence of a "
                        "difference (paired by seed, 4 seeds: difference +5.0 [+5.0, +5.0]).")
    assert "intervals do not overlap: lower return than linear (paired by seed, 3 seeds: difference " in lines[1]
    assert lines[2].endswith("fewer than 3 seeds: no verdict yet.")  # and no paired difference on 2 seeds


def test_verdict_lines_give_the_probability_of_improvement_when_rows_carry_episodes():
    base = _row("dt-linear", "linear", [0, 1, 2], [-2.0, -2.0, -2.0])
    better = _row("dt-fourier", "fourier", [0, 1, 2], [1.5, 1.5, 1.5])
    base["episode_returns"] = {s: [-3.0, -1.0] for s in (0, 1, 2)}
    better["episode_returns"] = {s: [1.0, 2.0] for s in (0, 1, 2)}
    assert study.verdict([base, better])[0].endswith("difference +3.5 [+3.5, +3.5]; P(A > B) = 1.00 [1.00, 1.00]).")
    better["episode_returns"] = {0: [1.0, 2.0]}  # not every seed's episodes: no P(A > B)
    assert "P(A > B)" not in study.verdict([base, better])[0]


def test_convergence_line_names_arms_whose_held_out_nll_still_falls():
    falling = {"path": "a", "curves": {"val/nll": [[1000, 2.0], [4800, 1.5], [6000, 1.2]]}}
    flat = {"path": "b", "curves": {"val/nll": [[1000, 2.0], [4800, 1.2], [6000, 1.19]]}}
    rows = [{"label": "dt-linear", "seeds": [0, 1], "runs": ["a", "b"]}, {"label": "dt-fourier", "seeds": [0], "runs": ["b"]}]
    line = study._convergence_line(rows, [falling, flat])[0]
    assert line.startswith("Not converged (held-out NLL") and line.endswith(": dt-linear (1 of 2 seeds).")
    assert study._convergence_line(rows[1:], [flat])[0].startswith("Converged: no run's held-out NLL")
    assert study._convergence_line(rows, []) == []  # no curves: no claim


def test_setting_verdicts_compare_one_heads_settings_that_differ_in_one_key():
    def row(label, margin, n, returns, seeds=(0, 1, 2)):
        r = _row(label, "fourier", list(seeds), returns)
        r.update(head_params={"num_frequencies": n}, settings={"env.margin_bins": margin, "head.num_frequencies": n})
        return r

    m16 = row("N=16 margins", 16, 16, [-150.0, -148.0, -146.0])
    m0 = row("N=16 no margins", 0, 16, [-190.0, -185.0, -200.0])
    other_n = row("N=48 margins", 16, 48, [-150.0, -149.0, -151.0])  # differs in a head parameter: not paired here
    (line,) = study.setting_verdicts([m16, m0, other_n])
    assert line.startswith("- N=16 margins vs N=16 no margins: -148.0 vs -191.7 (3 vs 3 seeds); intervals do not "
                           "overlap: higher return than env.margin_bins=0 (paired by seed, 3 seeds: difference +")


def test_study_level_set_goes_to_every_sweep_and_a_sweeps_own_key_wins(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "name": "s", "title": "S", "root": "r", "seeds": [0], "set": ["dataset.path=d.hdf5", "eval.episodes=20"],
        "sweeps": [{"name": "a", "config": "c.yaml", "heads": ["linear"], "set": ["eval.episodes=5"]},
                   {"name": "b", "config": "c.yaml", "heads": ["fourier"], "set": ["head.num_frequencies=4,8"]}]}))
    spec = study.load_study(path)
    a, b = spec.sweeps
    assert study.sweep_sets(spec, a) == ["dataset.path=d.hdf5", "eval.episodes=5"]
    cmd = study.sweep_command(spec, b, 0)
    assert cmd[cmd.index("dataset.path=d.hdf5") + 2:cmd.index("head.num_frequencies=4,8") + 1] == [
        "eval.episodes=20", "--set", "head.num_frequencies=4,8"]
    assert study.sweep_points(b, 0, spec) == ["b/fourier-num_frequencies=4-seed0", "b/fourier-num_frequencies=8-seed0"]
    path.write_text(path.read_text().replace("eval.episodes=20", "eval.episodes"))
    with pytest.raises(ValueError, match="set must be a list of key=value"):
        study.load_study(path)


def test_a_study_runs_jobs_points_at_a_time_across_its_sweeps_never_two_in_one_folder(tmp_path, monkeypatch, capsys):
    """jobs: 2 keeps two runs going when a sweep has one arm; two points of one sweep folder never overlap
    (a sweep holds its folder); points start seed-major; a failed point is named and the others still run."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "name": "s", "title": "S", "root": str(tmp_path / "r"), "seeds": [0, 1], "jobs": 2,
        "sweeps": [{"name": "a", "config": "c.yaml", "heads": ["linear", "mse"]},
                   {"name": "a-density", "dir": "a", "config": "c.yaml", "heads": ["fourier"]},
                   {"name": "b", "config": "c.yaml", "heads": ["fourier"]},
                   {"name": "late", "stage": 2, "config": "c.yaml", "heads": ["linear"]}]}))
    spec = study.load_study(path)
    running: list[str] = []
    log: list[tuple[str, list[str]]] = []  # (point started, points running then)

    class FakeRun:
        def __init__(self, cmd, env):
            root, skip = cmd[cmd.index("--root") + 1], cmd[cmd.index("--skip") + 1:] if "--skip" in cmd else []
            assert cmd[cmd.index("--jobs") + 1] == "1" and env["OMP_NUM_THREADS"]
            heads = cmd[cmd.index("--heads") + 1:cmd.index("--seeds")]
            seed = cmd[cmd.index("--seeds") + 1]
            (self.point,) = [f"{root.rsplit('/', 1)[1]}/{h}-seed{seed}" for h in heads if f"{h}-seed{seed}" not in skip]
            self.polls, self.returncode = 0, None
            running.append(self.point)
            log.append((self.point, list(running)))

        def poll(self):
            self.polls += 1
            if self.polls >= (1 if self.point.startswith("a/") else 3):  # b's point runs longer than a's
                running.remove(self.point) if self.point in running else None
                self.returncode = 1 if self.point == "b/fourier-seed1" else 0
            return self.returncode

    monkeypatch.setattr(study.subprocess, "Popen", FakeRun)
    monkeypatch.setattr("time.sleep", lambda s: None)
    stages: list[list[str]] = []
    failed = study.run_sweeps(spec, after_each=lambda f: None, done=lambda: {"a/linear-seed0"},
                              after_stage=lambda f: stages.append([p for p, _ in log]))
    started = [p for p, _ in log]
    assert started[0] == "a/mse-seed0" and started[1] == "b/fourier-seed0"  # two at once, across sweeps
    assert sorted(started) == sorted(["a/mse-seed0", "a/fourier-seed0", "b/fourier-seed0", "a/linear-seed1",
                                      "a/mse-seed1", "a/fourier-seed1", "b/fourier-seed1", "late/linear-seed0",
                                      "late/linear-seed1"])  # the recorded point is not run again
    assert max(len(now) for _, now in log) == 2
    assert all(sum(p.startswith("a/") for p in now) <= 1 for _, now in log)  # one sweep per folder at a time
    assert started.index("a/fourier-seed0") < started.index("a/linear-seed1")  # seed-major within a folder
    assert stages == [started[:7]]  # stage 2 starts after every stage-1 point
    assert failed == ["b seed 1 fourier-seed1"]
    assert "study s: sweep a-density, seed 0: fourier-seed0" in capsys.readouterr().out

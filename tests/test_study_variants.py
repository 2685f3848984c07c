"""A study over data variants: convergence check, probability of improvement, paired verdicts, the section."""

import numpy as np
import pytest
import yaml
from scipy.stats import mannwhitneyu

from fh_rl import study
from fh_rl.compare.variants import (
    arms,
    converged,
    paired_difference,
    probability_of_improvement,
    variant_table,
    variant_verdicts,
)


def test_convergence_compares_the_last_fifth_of_training():
    falling = [[400 * i, 2.0 - 0.05 * i] for i in range(1, 16)]  # 4,800 -> 6,000: 1.4 -> 1.25, -10.7%
    ok, fall = converged(falling)
    assert ok is False and fall == pytest.approx((1.4 - 1.25) / 1.4)
    flat = [[400 * i, 1.0 + (0.001 if i % 2 else 0.0)] for i in range(1, 16)]
    assert converged(flat)[0] is True
    assert converged([[6000, 1.0]]) == (None, None) and converged(None) == (None, None)


def test_probability_of_improvement_is_the_mann_whitney_statistic_over_pooled_episodes():
    rng = np.random.default_rng(0)
    a = {s: rng.normal(1.0, 1.0, 20).round(1).tolist() for s in range(5)}
    b = {s: rng.normal(0.0, 1.0, 20).round(1).tolist() for s in range(1, 6)}  # seeds 1..4 in common
    p = probability_of_improvement(a, b, resamples=2000)
    x = np.concatenate([a[s] for s in range(1, 5)])
    y = np.concatenate([b[s] for s in range(1, 5)])
    u = mannwhitneyu(x, y).statistic  # counts ties as 1/2
    assert p["p"] == pytest.approx(u / (len(x) * len(y))) and p["seeds"] == [1, 2, 3, 4]
    assert p["ci_low"] < p["p"] < p["ci_high"] and 0.5 < p["p"] < 1
    same = probability_of_improvement(a, a, resamples=500)
    assert same["p"] == pytest.approx(0.5)
    assert probability_of_improvement({0: [1.0]}, {0: [0.0]}) is None


def _record(variant, head, seed, mean, n=None, agent="dt", nll=1.5, falling=False, sample=None):
    returns = [mean + d for d in (-1.0, 0.0, 1.0)]
    curve = [[400 * i, nll + (0.05 * (15 - i) if falling else 0.0)] for i in range(1, 16)]
    evaluations = [{"target_return": -120.0, "decode": "argmax", "returns": returns}]
    if sample is not None:
        evaluations.append({"target_return": -120.0, "decode": "sample", "returns": [sample] * 3})
    return {"env": "Pendulum-v1", "agent": agent, "head": head, "seed": seed, "config": {"eval.sample": False},
            "path": f"studies/v/{variant}/{head}-seed{seed}/run",
            "head_params": {} if n is None else {"num_frequencies": n}, "point": f"{variant}/{head}-seed{seed}",
            "evaluations": evaluations, "return_mean": mean,
            "val": {"nll": nll, "accuracy": 0.5, "smoothness": 0.1, "action_mse": 0.1},
            "curves": {"val/nll": curve}}


def test_paired_verdicts_tables_and_the_section(tmp_path):
    records = []
    for s in range(5):
        records += [_record("noise", "linear", s, -200.0 - 10 * s, sample=-300.0 - s if s < 3 else None),
                    _record("noise", "fourier", s, -190.0 - 10 * s, n=16, falling=s == 2,  # +10 on every seed
                            sample=-150.0 + s if s < 3 else None),
                    _record("noise", "mse", s, -200.0 - 10 * s + (3 if s % 2 else -3))]
    records += [_record("base", "linear", 0, -150.0), _record("base", "fourier", 0, -149.0, n=16)]
    by_variant = arms(records, {"noise": "noise 0.5", "base": "base"})
    noise = by_variant["noise 0.5"]
    assert set(noise) == {"dt-linear", "dt-fourier N=16", "dt-mse"}
    assert noise["dt-fourier N=16"]["not_converged"] == {2: pytest.approx((1.5 + 0.15 - 1.5) / 1.65)}
    d = paired_difference(noise["dt-fourier N=16"]["returns"], noise["dt-linear"]["returns"])
    assert d["mean"] == pytest.approx(10.0) and d["ci_low"] == d["ci_high"] == pytest.approx(10.0)
    lines = variant_verdicts(noise)
    fourier = next(v for v in lines if v.startswith("- dt-fourier N=16 vs dt-linear"))
    assert "**dt-fourier N=16 earns more**" in fourier and "P(dt-fourier N=16 > dt-linear) = " in fourier
    mse = next(v for v in lines if v.startswith("- dt-mse vs dt-linear"))
    assert "**no evidence of a difference**" in mse
    table = "\n".join(variant_table(noise))
    assert "**not converged**: seed 2 (9%)" in table and table.count("| yes |") == 2
    assert "| return, `argmax` [95% CI] | return, `sample` [95% CI] |" in table
    assert "| dt-linear | 5 | -220.0 [" in table and "-301.0 [-302.0, -300.0] (3 of 5 seeds) |" in table
    sampled = variant_verdicts(noise, "sample")  # the runs evaluated under sample: 3 seeds, linear and Fourier
    assert len(sampled) == 1 and "paired difference +152.0 [+150.0, +154.0] over 3 seeds" in sampled[0]
    assert "fewer than 3 common seeds" in variant_verdicts(by_variant["base"])[0]

    spec = {"name": "v", "title": "Variants", "root": str(tmp_path / "runs"), "seeds": [0, 1, 2, 3, 4],
            "sweeps": [{"name": "noise", "variant": "noise 0.5", "config": "configs/default.yaml", "heads": ["linear"]},
                       {"name": "base", "config": "configs/default.yaml", "heads": ["linear"]},
                       {"name": "data10", "variant": "10% data", "config": "configs/default.yaml", "heads": ["linear"]}],
            "axes": {"noise": {"title": "action noise", "points": {"base": 0, "noise 0.5": 0.5}},
                     "data": {"title": "data", "points": {"10% data": 0.1, "base": 1.0}, "log": True}}}
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump(spec))
    spec_ = study.load_study(path)
    text = "\n".join(study.variant_lines(spec_, records))
    assert text.index("### noise 0.5") < text.index("### base") < text.index("### 10% data")
    assert "Verdicts (return, `argmax` decoding):" in text and "Verdicts (return, `sample` decoding):" in text
    assert "No run of this variant has finished yet." in text
    assert "Partial arms: dt-fourier N=16 (1 of 5 seeds); dt-linear (1 of 5 seeds)." in text
    noise_axis = text.split("#### action noise")[1].split("####")[0]
    assert "| A vs B | decoding | base | noise 0.5 |" in noise_axis
    assert ("| dt-fourier N=16 vs dt-linear | argmax | 1 seed(s): no verdict yet | +10.0 [+10.0, +10.0] **A more** |"
            in noise_axis)
    assert noise_axis.index("| dt-fourier N=16 vs dt-linear | argmax") < noise_axis.index(
        "| dt-fourier N=16 vs dt-linear | sample") < noise_axis.index("| dt-mse vs dt-linear | argmax")
    assert "- noise 0.5 against base: no verdict changes; 1 wait for seeds." in noise_axis
    assert "- base against 10% data" not in text and "- 10% data against base: 10% data not run yet." in text

    # Once the base has seeds, the answer names the verdicts that change from it.
    records += [_record("base", head, s, -150.0 - 10 * s + (0.5 if s % 2 else -0.5) * (head == "linear"),
                        n=16 if head == "fourier" else None) for s in range(1, 5) for head in ("linear", "fourier")]
    noise_axis = "\n".join(study.variant_lines(spec_, records)).split("#### action noise")[1].split("####")[0]
    assert "| dt-fourier N=16 vs dt-linear | argmax | +0.2 [-0.3, +0.7] | +10.0 [+10.0, +10.0] **A more** |" in noise_axis
    assert ("- noise 0.5 against base: dt-fourier N=16 vs dt-linear (argmax): no evidence of a difference at base, "
            "A earns more at noise 0.5 (+10.0 [+10.0, +10.0]). Pairs only at noise 0.5 that differ: dt-fourier N=16 "
            "vs dt-linear (sample): A earns more, +152.0 [+150.0, +154.0]; dt-mse vs dt-fourier N=16 (argmax): A "
            "earns less, -10.6 [-13.0, -8.2].") in noise_axis  # mse vs linear does not differ: not named
    figures = study.variant_figures(spec_, records, tmp_path / "figs")
    assert sorted(p.split("/")[-1] for p in figures) == ["axis-data.png", "axis-noise.png"]

    assert spec_.reference("data") == "base" and spec_.reference("noise") == "base"  # base, wherever it sits
    path.write_text(yaml.safe_dump({**spec, "axes": {"data": {**spec["axes"]["data"], "reference": "nope"}}}))
    with pytest.raises(ValueError, match=r"axes.data names variant\(s\) no sweep has: \['nope'\]"):
        study.load_study(path)
    bad = {**spec, "axes": {"noise": {"points": {"nope": 1}}}}
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match=r"axes.noise names variant\(s\) no sweep has: \['nope'\]"):
        study.load_study(path)

from pathlib import Path

import pytest
import yaml

from fh_rl.config import Config, config_from_dict, load_config

CONFIGS = sorted(p for p in (Path(__file__).resolve().parent.parent / "configs").rglob("*.yaml")
                 if p.parent.name != "studies")  # studies are fh_rl.study files, checked in tests/test_study.py


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_load_and_round_trip(path):
    cfg = load_config(path)
    again = config_from_dict(cfg.to_dict())
    assert again == cfg
    assert yaml.safe_load(yaml.safe_dump(cfg.to_dict())) == cfg.to_dict()


def test_default_is_pendulum_dt_fourier():
    cfg = load_config()
    assert (cfg.env.name, cfg.agent.name, cfg.head.name) == ("Pendulum-v1", "dt", "fourier")
    assert cfg.dataset.format == "hdf5" and cfg.dataset.path.startswith("datasets/")


def test_atari_presets_follow_the_paper():
    for game, ctx in (("seaquest", 30), ("pong", 50)):
        cfg = load_config(Path("configs/atari") / f"{game}.yaml")
        assert cfg.head.params == {"num_frequencies": 8, "regularization_gamma": 1e-6}
        assert cfg.env.ordering == "joystick" and cfg.agent.context_len == ctx
        assert cfg.train.final_tokens == 2 * 500_000 * ctx * 3


def test_seaquest_paper_preset_is_the_papers_code():
    """configs/atari/seaquest-paper.yaml: every difference of the paper's code that changes results (docs/fidelity.md)."""
    path = Path(__file__).resolve().parent.parent / "configs" / "atari" / "seaquest-paper.yaml"
    cfg = load_config(path)
    a, e = cfg.agent, cfg.eval
    assert (a.timestep_embedding, a.init, a.loss_form) == ("window_start", "reference", "cross_entropy")
    assert cfg.head.params == {"num_frequencies": 8, "regularization_gamma": 0.0}
    assert load_config(path, head="linear").head.params == {"bias": False}
    assert cfg.env.protocol == "dt-paper-code" and cfg.env.ordering == "joystick"
    assert (e.target_returns, e.rtg_mode, e.integer_returns_to_go, e.timesteps, e.decode) == ([1150.0], "raw", True, "current", ["sample"])
    assert e.every_steps * 5 == cfg.train.steps and e.every_steps == -(-500_000 // cfg.train.batch_size)
    assert cfg.train.final_tokens == 2 * 500_000 * 30 * 3 and cfg.dataset.rtg_scale == 1.0


def test_overrides_reach_every_section_and_coerce_types():
    cfg = load_config(
        overrides=[
            "train.steps=12",
            "train.lr=1e-3",  # YAML reads 1e-3 as a string; coerced to float
            "head.num_frequencies=4",
            "eval.target_returns=[-100, -200]",
            "eval.sample=true",
            "dataset.max_transitions=1000",
            "agent.dropout=0",
            "train.betas=[0.9, 0.99]",
        ],
        seed=7,
    )
    assert cfg.train.steps == 12 and cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.head.params["num_frequencies"] == 4
    assert cfg.eval.target_returns == [-100.0, -200.0] and cfg.eval.decode == ["sample"]  # the old key: an alias
    assert cfg.dataset.max_transitions == 1000 and cfg.agent.dropout == 0.0
    assert cfg.train.betas == [0.9, 0.99] and cfg.seed == 7


def test_switching_head_drops_other_heads_parameters():
    cfg = load_config(head="linear")
    assert cfg.head.name == "linear" and cfg.head.params == {}
    cfg = load_config(head="gmm", overrides=["head.num_components=3"])
    assert cfg.head.params == {"num_components": 3}



def test_head_switch_drops_another_heads_set_parameter_with_a_note(capsys):
    # One command line serves every head of a comparison, as the README says of --head.
    cfg = load_config(head="linear", overrides=["head.num_frequencies=8"])
    assert cfg.head.name == "linear" and cfg.head.params == {}
    assert "head.num_frequencies is a parameter of the chebyshev/fourier head, not of 'linear': ignored" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"unknown config key 'head.num_frequences'.*did you mean head.num_frequencies"):
        load_config(head="linear", overrides=["head.num_frequences=8"])  # a typo is still an error
    with pytest.raises(ValueError, match=r"unknown config key 'head.num_components'.*head 'fourier'"):
        load_config(overrides=["head.num_components=3"])  # without --head the file's head is meant: an error


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.step=5", r"unknown config key 'train.step'; did you mean train.steps\?"),
        ("trian.steps=5", r"unknown config key 'trian'; did you mean train\?"),
        ("head.num_frequences=5", r"unknown config key 'head.num_frequences'; did you mean head.num_frequencies\?"),
        ("head.name=fourrier", r"unknown head 'fourrier'; did you mean 'fourier'\?"),
        ("agent.name=dtt", r"unknown agent 'dtt'; did you mean 'dt'\?"),
        ("train.steps=ten", r"'train.steps' must be an integer, got 'ten'"),
        ("train.steps=0", r"train.steps must be an integer >= 1, got 0"),
        ("train.lr=-1", r"train.lr must be > 0"),
        ("eval.rtg_mode=rwa", r"eval.rtg_mode must be one of transformed, raw, got 'rwa' \(did you mean 'raw'\?\)"),
        ("dataset.format=hdf", r"dataset.format must be one of hdf5, dqn-replay"),
        ("agent.n_head=3", r"agent.embed_dim \(64\) must be divisible by agent.n_head \(3\)"),
        ("eval.sample=maybe", r"'eval.sample' must be true or false"),
        ("eval.decode=meen", r"eval.decode: unknown decoding 'meen'; did you mean 'mean'\? Known decodings: argmax, mean"),
        ("eval.decode=mean+within", r"unknown decoding modifier 'within' in 'mean\+within'; the only modifier is '\+within_bin'"),
        ("eval.decode=[mean,mean]", r"decoding 'mean' is listed twice"),
        ("train.device=gpu", r"train.device must be auto, cpu"),
        ("train.steps", r"must look like key=value"),
        ("train.steps.x=1", r"'train.steps' is a value, not a section"),
    ],
)
def test_bad_overrides_are_rejected_with_a_clear_message(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(overrides=[override])


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file .*missing.yaml.* not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ValueError, match="did you mean train.steps"):
        load_config(bad)
    bad.write_text("head:\n  name: linear\n  num_frequencies: 8\n")
    with pytest.raises(ValueError, match="head 'linear'"):
        load_config(bad)


def test_old_decoding_keys_are_aliases_of_eval_decode():
    """eval.sample and env.sample_within_bin (configs and checkpoints of earlier runs) read as eval.decode."""
    assert load_config(overrides=["eval.sample=false"]).eval.decode == ["argmax"]
    assert load_config(overrides=["eval.sample=true", "env.sample_within_bin=true"]).eval.decode == ["sample+within_bin"]
    assert load_config(overrides=["eval.decode=[argmax,mean]", "env.sample_within_bin=true"]).eval.decode == [
        "argmax+within_bin", "mean"]
    assert "sample" not in load_config(overrides=["eval.sample=false"]).to_dict()["eval"]  # saved as eval.decode
    assert config_from_dict({"eval": {"sample": False}}).eval.decode == ["argmax"]  # a saved config of an old run
    with pytest.raises(ValueError, match=r"eval.sample is the old spelling of eval.decode: give eval.decode only"):
        config_from_dict({"eval": {"sample": True, "decode": "mean"}})
    with pytest.raises(ValueError, match=r"env.sample_within_bin is the old spelling of the \+within_bin modifier"):
        load_config(overrides=["eval.decode=mean", "env.sample_within_bin=true"])


def test_defaults_are_valid():
    Config()  # every field's default passes validation


def _leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


@pytest.mark.parametrize("key, value", list(_leaves(load_config().to_dict())))
def test_set_reaches_every_field(key, value):
    """Every field of the default config can be set from the command line (here: to a changed, valid value)."""
    if isinstance(value, bool):
        new = not value
    elif isinstance(value, int):
        new = value + 2
    elif isinstance(value, float):
        new = value / 2
    elif key == "eval.decode":
        new = ["argmax", "mean", "sample+within_bin"]
    elif isinstance(value, list):
        new = [x / 2 for x in value]
    elif value is None:
        new = {"dataset.game": "Pong", "dataset.suffixes": [0, 1], "dataset.max_transitions": 100,
               "dataset.replay_sampling": "episodes", "dataset.rtg_scale": 10.0, "env.protocol": "dqn-replay",
               "train.final_tokens": 1000, "train.threads": 1, "eval.target_returns": [1.0],
               "eval.every_steps": 5}.get(key, None)
    else:
        new = {"env.name": "CartPole-v1", "env.ordering": "joystick", "dataset.format": "dqn-replay", "agent.name": "bc",
               "head.name": "fourier", "train.device": "cpu", "eval.rtg_mode": "raw", "dataset.build": None,
               "agent.timestep_embedding": "window_start", "agent.init": "reference", "agent.loss_form": "cross_entropy",
               "eval.timesteps": "current",
               }.get(key, value + "x")
    new = {"agent.n_head": 2, "agent.embed_dim": 128, "dataset.val_fraction": 0.1, "train.min_lr_ratio": 0.2}.get(key, new)
    raw = yaml.safe_dump(new, default_flow_style=True).strip().removesuffix("...").strip()
    cfg = load_config(overrides=[f"{key}={raw}"])
    got = cfg.to_dict()
    for part in key.split("."):
        got = got[part]
    assert got == new, (key, raw, got)


def test_per_head_sections(tmp_path):
    """A preset serves every head: ``head.<name>: {...}`` applies when that head is chosen."""
    path = tmp_path / "preset.yaml"
    path.write_text("head:\n  name: fourier\n  num_frequencies: 8\n  linear:\n    bias: false\n")
    assert load_config(path).head.params == {"num_frequencies": 8}
    assert load_config(path, head="linear").head.params == {"bias": False}
    assert load_config(path, head="linear").to_dict()["head"] == {"name": "linear", "bias": False}
    assert load_config(path, head="linear", overrides=["head.linear.bias=true"]).head.params == {"bias": True}
    with pytest.raises(ValueError, match=r"unknown config key 'head.bias'.*head 'fourier'"):
        load_config(path, overrides=["head.bias=false"])

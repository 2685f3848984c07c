"""Reading and writing configs: YAML files, ``--set a.b=c`` overrides, the nested dict saved in checkpoints."""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from fh_rl.config.coerce import coerce_value, copy_tree, set_dotted, unknown_key_message
from fh_rl.config.schema import Config, HeadConfig
from fh_rl.heads import HEADS, available_heads, head_params

DEFAULT_CONFIG = Path("configs") / "default.yaml"
"""The default config, looked up in the working directory, then in the checkout that holds the package."""
_PACKAGED_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def load_config(
    path: str | os.PathLike | None = None,
    *,
    overrides: Sequence[str] = (),
    head: str | None = None,
    seed: int | None = None,
) -> Config:
    """Read a YAML config (default ``configs/default.yaml``), apply overrides and validate.

    ``head`` switches the head; parameters in the file meant for another head are then dropped.
    A sub-section named after a registered head (``head: {name: fourier, linear: {bias: false}}``)
    holds parameters for that head only: applied when it is the chosen head, dropped otherwise.
    ``overrides`` are ``key=value`` strings with dotted keys (values parsed as YAML).
    """
    return config_from_dict(read_config_file(path), overrides=overrides, head=head, seed=seed)


def default_config_path() -> Path:
    """``configs/default.yaml`` in the working directory, else in the checkout that holds the package."""
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else _PACKAGED_CONFIGS / "default.yaml"


def read_config_file(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """A config file's nested mapping, unvalidated (default: :func:`default_config_path`); FileNotFoundError or
    ValueError naming the file when it is missing, not YAML, empty or not a mapping."""
    if path is None:
        path = default_config_path()
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.yaml"))[:5]
        raise ValueError(f"--config {str(path)!r} is a directory, not a YAML file; pass one of its files"
                         + (f" ({', '.join(found)})" if found else "") + " or a preset such as configs/default.yaml")
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} not found; pass --config with a YAML file under configs/")
    try:
        data = yaml.safe_load(path.read_bytes())
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {str(path)!r} is not valid YAML: {' '.join(str(exc).split())}") from None
    except OSError as exc:
        raise ValueError(f"config file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    if data is None:
        raise ValueError(
            f"config file {str(path)!r} is empty; start from a preset such as configs/default.yaml "
            f"(an empty file would silently train on other built-in defaults)"
        )
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of sections, got {type(data).__name__}")
    return data


def config_from_dict(
    data: dict[str, Any],
    *,
    overrides: Sequence[str | tuple[str, Any]] = (),
    head: str | None = None,
    seed: int | None = None,
) -> Config:
    """Validate a nested dict (as in a YAML file or :meth:`Config.to_dict`) into a :class:`Config`.

    ``overrides``: ``key=value`` strings (values parsed as YAML) or ``(key, value)`` pairs (Python values)."""
    data = copy_tree(data)
    explicit_head = "head" in data
    head_section = data.get("head", {})
    if head_section is None:
        head_section = {}
    if not isinstance(head_section, dict):
        raise ValueError(f"config section 'head' must be a mapping, got {head_section!r}")
    if head is not None:
        HEADS.get(head)
        head_section["name"] = head
    data["head"] = head_section
    from_set = set()
    for item in overrides:
        if isinstance(item, tuple):
            key, value = item
        else:
            key, sep, raw = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"override {item!r} must look like key=value, e.g. train.steps=1000")
            value = parse_override_value(key.strip(), raw)
        if key.strip() == "eval.sample":  # the old spelling replaces the file's eval.decode
            key, value = "eval.decode", "sample" if coerce_value(value, bool, "eval.sample") else "argmax"
            if isinstance(data.get("eval"), dict):
                data["eval"].pop("sample", None)
        set_dotted(data, key.strip(), value)
        from_set.add(key.strip())
    if not explicit_head and data["head"] == {} and "head" not in from_set:
        del data["head"]  # no head section at all (not an empty one): HeadConfig's default head
    check_no_empty_sections(data, from_set)
    _legacy_decoding_keys(data)
    data.setdefault("head", {})
    if not isinstance(data["head"], dict):
        raise ValueError(f"config section 'head' must be a mapping, got {data['head']!r}")
    _apply_per_head_sections(data["head"])
    if head is not None:
        _drop_other_heads_params(data["head"], head, {k[len("head."):] for k in from_set if k.startswith("head.")})
    if seed is not None:
        data["seed"] = seed
    return build_section(Config, data, "")


def _legacy_decoding_keys(data: dict[str, Any]) -> None:
    """The old keys of ``eval.decode``, read as aliases: ``eval.sample: true`` is ``decode: sample``, ``false``
    ``decode: argmax``; ``env.sample_within_bin: true`` adds ``+within_bin`` to each argmax/sample decoding.
    Saved configs of earlier runs hold them; a config giving an old key and ``eval.decode`` is refused."""
    from fh_rl.config.schema import EvalConfig

    ev, env = data.get("eval"), data.get("env")
    if isinstance(ev, dict) and "sample" in ev:
        sample = coerce_value(ev.pop("sample"), bool, "eval.sample")
        if "decode" in ev:
            raise ValueError("eval.sample is the old spelling of eval.decode: give eval.decode only "
                             "(eval.decode: sample, or argmax)")
        ev["decode"] = ["sample" if sample else "argmax"]
    if isinstance(env, dict) and "sample_within_bin" in env:
        if coerce_value(env.pop("sample_within_bin"), bool, "env.sample_within_bin"):
            if not isinstance(ev, dict):
                ev = data["eval"] = {} if ev is None else ev
            if not isinstance(ev, dict):
                return  # the eval section's own check names the problem
            names = coerce_value(ev.get("decode", EvalConfig().decode), list[str], "eval.decode")
            if not any(n in ("argmax", "sample") for n in names):
                raise ValueError("env.sample_within_bin is the old spelling of the +within_bin modifier of argmax "
                                 "and sample: write eval.decode: [argmax+within_bin] (or sample+within_bin)")
            ev["decode"] = [f"{n}+within_bin" if n in ("argmax", "sample") else n for n in names]


def parse_override_value(key: str, raw: str) -> Any:
    """The YAML value of ``--set key=raw`` (empty: null); ValueError naming the override when it is not valid YAML.

    Only plain YAML is read (``yaml.safe_load``): a ``!!python/...`` tag is refused like any other invalid value.
    """
    if not raw.strip():
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or type(exc).__name__
        raise ValueError(
            f"--set {key}={raw!r}: the value is not valid YAML ({' '.join(str(problem).split())}); quote a string "
            f"(--set '{key}=\"...\"'), close brackets, and use plain printable characters"
        ) from None


def _section_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(typing.get_type_hints(Config)[f.name])]


def check_no_empty_sections(data: dict[str, Any], from_set: set[str] = frozenset()) -> None:
    """A section given with no keys (``agent:`` alone, ``--set agent={}``) is refused, naming it.

    Such a section replaces the preset's values: built from nothing, it would silently train on the
    dataclasses' built-in defaults (6 layers, width 128), not on any preset's. A section left out
    altogether is not refused (a preset may rely on the defaults of a section it does not write).
    """
    for name in _section_fields():
        if name in data and data[name] in (None, {}):
            how = f"set to nothing by --set {name}=..." if name in from_set else f"'{name}:' with no keys"
            raise ValueError(
                f"config section {name!r} is empty ({how}); it would train on the built-in defaults of every "
                f"{name}.* key instead of a preset's: give its keys, or leave the section out"
                + (f" and set single keys with --set {name}.KEY=VALUE" if name in from_set else "")
            )


def _drop_other_heads_params(head_section: dict[str, Any], head: str, from_set: set[str]) -> None:
    """``--head NAME``: drop parameters that only other registered heads take (a note for each one given by ``--set``).

    So one command line (``--set head.num_frequencies=8``) serves every head of a comparison. A key no
    registered head takes is a typo: it raises, listing the parameters there are.
    """
    if not isinstance(head_section, dict) or head_section.get("name") != head:
        return
    known = head_params(head)
    owners = {h: head_params(h) for h in available_heads()}
    for key in [k for k in head_section if k != "name" and k not in known]:
        takers = [h for h, params in owners.items() if key in params]
        if not takers:
            all_params = sorted({p for params in owners.values() for p in params})
            raise ValueError(unknown_key_message(f"head.{key}", key, ["name", *all_params], "head"))
        del head_section[key]
        if key in from_set:
            print(f"note: head.{key} is a parameter of the {'/'.join(takers)} head, not of {head!r}: ignored",
                  file=sys.stderr)


def _is_head_section(key: str, value: Any) -> bool:
    return isinstance(value, dict) and key in available_heads()


def _apply_per_head_sections(head_section: dict[str, Any]) -> None:
    """Merge ``head.<registered head>: {...}`` into the head section when that head is the chosen one.

    A preset serves several heads this way (``head: {name: fourier, num_frequencies: 8, linear: {bias: false}}``:
    ``--head linear`` gets ``bias: false``); the sections of the other heads are dropped.
    """
    chosen = head_section.get("name", HeadConfig.name)
    for name in [k for k, v in head_section.items() if _is_head_section(k, v)]:
        params = head_section.pop(name)
        if name == chosen:
            head_section.update(params)


def with_current_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A run's saved config as this code reads it: options added since the run was made take their
    defaults (which keep the old behaviour). A config this code cannot read is returned as saved."""
    try:
        return config_from_dict(saved).to_dict()
    except (ValueError, TypeError, KeyError):
        return saved


def save_config(config: Config, path: str | os.PathLike, notes: Sequence[str] = ()) -> None:
    """Write the resolved config as YAML (atomically), ``notes`` as comment lines at the top."""
    from fh_rl.infra.atomic import atomic_write_text

    header = "".join(f"# note: {line}\n" for line in notes)
    atomic_write_text(Path(path), header + yaml.safe_dump(config.to_dict(), sort_keys=False))


def build_section(cls: type, data: Any, prefix: str) -> Any:
    """The dataclass ``cls`` from its YAML mapping, each value coerced to its field's type (``prefix``: ``"train."``)."""
    section = prefix.rstrip(".") or "the top level"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"config section {section!r} must be a mapping, got {data!r}")
    if cls is HeadConfig:
        data = dict(data)
        name = data.pop("name", HeadConfig.name)
        if not isinstance(name, str):
            raise ValueError(f"head.name must be a string, got {name!r}")
        try:
            return HeadConfig(name=name, params=data)
        except TypeError as exc:
            raise ValueError(f"head: {exc}") from None
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ValueError(unknown_key_message(prefix + str(key), str(key), names, section))
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build_section(tp, value, f"{prefix}{key}.")
        else:
            kwargs[key] = coerce_value(value, tp, prefix + key)
    try:
        return cls(**kwargs)
    except ValueError as exc:  # section-specific messages already name their key
        raise ValueError(str(exc)) from None


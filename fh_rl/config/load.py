"""Reading and writing configs: YAML files, ``--set a.b=c`` overrides, the nested dict saved in checkpoints."""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, Sequence

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
    ``overrides`` are ``key=value`` strings with dotted keys (values parsed as YAML).
    """
    if path is None:
        path = DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else _PACKAGED_CONFIGS / "default.yaml"
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} not found; pass --config with a YAML file under configs/")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {str(path)!r} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of sections, got {type(data).__name__}")
    return config_from_dict(data, overrides=overrides, head=head, seed=seed)


def config_from_dict(
    data: dict[str, Any],
    *,
    overrides: Sequence[str] = (),
    head: str | None = None,
    seed: int | None = None,
) -> Config:
    """Validate a nested dict (as in a YAML file or :meth:`Config.to_dict`) into a :class:`Config`."""
    data = copy_tree(data)
    head_section = data.get("head", {})
    if head_section is None:
        head_section = {}
    if not isinstance(head_section, dict):
        raise ValueError(f"config section 'head' must be a mapping, got {head_section!r}")
    if head is not None:
        HEADS.get(head)
        if head_section.get("name", HeadConfig.name) != head:
            # Parameters written for the file's head: keep those the new head also takes.
            known = head_params(head)
            all_params = {p for h in available_heads() for p in head_params(h)}
            for key in list(head_section):
                if key != "name" and key not in known:
                    if key not in all_params:
                        raise ValueError(
                            unknown_key_message(f"head.{key}", key, ["name", *sorted(all_params)], "head")
                        )
                    del head_section[key]
        head_section["name"] = head
    data["head"] = head_section
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} must look like key=value, e.g. train.steps=1000")
        set_dotted(data, key.strip(), yaml.safe_load(raw) if raw.strip() else None)
    if seed is not None:
        data["seed"] = seed
    return build_section(Config, data, "")


def save_config(config: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    from fh_rl.atomic import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config.to_dict(), sort_keys=False))


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


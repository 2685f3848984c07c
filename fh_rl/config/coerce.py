"""YAML values into typed config fields: the checks and conversions behind every config key.

Numbers written as strings (``1e-6``, ``10_000``) are accepted; anything else
that does not fit the field's type raises ValueError naming the key.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from collections.abc import Sequence
from typing import Any, Union


def copy_tree(value: Any) -> Any:
    """A copy of nested dicts and lists (the leaves are shared)."""
    if isinstance(value, dict):
        return {k: copy_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_tree(v) for v in value]
    return value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``data["a"]["b"] = value`` for ``key="a.b"``, creating missing sections."""
    node = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ValueError(f"override {key!r}: {'.'.join(parts[: i + 1])!r} is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def unknown_key_message(full_key: str, key: str, valid: Sequence[str], section: str) -> str:
    """The error for a misspelt key: the closest valid one, then all of them."""
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    hint = f"; did you mean {full_key.rsplit('.', 1)[0] + '.' if '.' in full_key else ''}{close[0]}?" if close else ""
    return f"unknown config key {full_key!r}{hint} Valid keys in {section}: {', '.join(valid)}"


def coerce_value(value: Any, tp: Any, key: str) -> Any:
    """Check/convert a YAML value to the field type (numbers written as strings, e.g. ``1e-6``, are accepted)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return _coerce_union(value, typing.get_args(tp), key)
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [coerce_value(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config key {key!r} must be a mapping, got {value!r}")
        return value
    if tp in _SCALARS:
        return _SCALARS[tp](value, key)
    if tp is Any:
        return value
    raise TypeError(f"config key {key!r} has unsupported type {tp!r}")  # internal: a field type we don't handle


def _coerce_union(value: Any, args: tuple[Any, ...], key: str) -> Any:
    """``X | None`` and the like: null where allowed, else the first member type that accepts the value."""
    if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
        if type(None) in args:
            return None
        raise ValueError(f"config key {key!r} must not be null")
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return coerce_value(value, arg, key)
        except ValueError as exc:
            errors.append(str(exc))
    raise ValueError(errors[0])


def _to_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "false", "no", "off"):
        return value.lower() in ("true", "yes", "on")
    raise ValueError(f"config key {key!r} must be true or false, got {value!r}")


def _to_int(value: Any, key: str) -> int:
    if not isinstance(value, bool):
        if isinstance(value, int):
            return value
        number = value if isinstance(value, float) else _parse_number(value, drop_underscores=True)
        if number is not None and number.is_integer():
            return int(number)
    raise ValueError(f"config key {key!r} must be an integer, got {value!r}")


def _to_float(value: Any, key: str) -> float:
    if not isinstance(value, bool):
        number = float(value) if isinstance(value, (int, float)) else _parse_number(value)
        if number is not None:
            if not math.isfinite(number):  # YAML's .nan/.inf: no setting means NaN or infinity
                raise ValueError(f"config key {key!r} must be a finite number, got {value!r}")
            return number
    raise ValueError(f"config key {key!r} must be a number, got {value!r}")


def _parse_number(value: Any, drop_underscores: bool = False) -> float | None:
    """A number written as a string (``"1e-6"``; ``"10_000"`` with ``drop_underscores``), else None."""
    if not isinstance(value, str):
        return None
    try:
        return float(value.replace("_", "") if drop_underscores else value)
    except ValueError:
        return None


def _to_str(value: Any, key: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"config key {key!r} must be a string, got {value!r}")


_SCALARS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}

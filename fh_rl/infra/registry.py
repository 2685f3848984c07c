"""One small registry type for heads, agents and datasets.

Registering a name twice is an error; an unknown name lists the known ones
and suggests the closest (Gymnasium's "Did you mean").
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from importlib import metadata
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to classes (or factories) of one kind.

    Args:
        kind: what is registered ("head", "agent", ...), used in messages.
        entry_point_group: optional ``importlib.metadata`` entry-point group
            through which other installed packages add entries. Entry points
            are loaded lazily, the first time a name is looked up or listed.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, T] = {}
        self._entry_points_loaded = entry_point_group is None

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: ``@registry.register("name")``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def class_decorator(self, name: str, base: type, base_label: str) -> Callable[[type], type]:
        """Decorator registering a subclass of ``base`` under ``name`` (sets ``cls.registry_name``)."""

        def decorator(cls: type) -> type:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise TypeError(f"registering {self.kind} {name!r} expects a subclass of {base_label}, got {cls!r}")
            self.add(name, cls)
            cls.registry_name = name
            return cls

        return decorator

    def add(self, name: str, obj: T) -> None:
        if name in self._entries:
            raise ValueError(
                f"{self.kind} {name!r} is already registered (by {self._entries[name]!r}); "
                f"pick another name"
            )
        self._entries[name] = obj

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in metadata.entry_points(group=self.entry_point_group):
            if ep.name in self._entries:
                continue  # the entry point module registered itself on import
            obj = ep.load()
            if ep.name not in self._entries:
                self.add(ep.name, obj)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._entries

    def get(self, name: str) -> T:
        self._load_entry_points()
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(unknown_name_message(self.kind, name, self.names())) from None


def unknown_name_message(kind: str, name: object, known: list[str]) -> str:
    """``unknown head 'fourer'; did you mean 'fourier'? Known: fourier, gmm, linear``."""
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}{hint} Known {kind}s: {', '.join(known) or '(none)'}"

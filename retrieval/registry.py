"""The one registry mechanism for every extension point (embedders, index backends, generators, forecasters,
LLM backends, harness models).

A registry maps a name to a factory. Built-in entries register themselves with the `register` decorator
where they are defined; third parties add entries through an entry-point group
(`[project.entry-points."driftrec.generators"] mine = "my_pkg.module:factory"`), loaded on first lookup.
An unknown name raises `ConfigError` listing the valid names, and the CLI reads its choices from `names()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar, overload

from retrieval.errors import ConfigError
from retrieval.log import get_logger

log = get_logger(__name__)

T = TypeVar("T")


class Registry(Generic[T]):
    """Named factories of one kind.

    Args:
        kind: what the entries are, for error messages ("embedder", "index backend", ...).
        group: the entry-point group third parties register under (`driftrec.<plural>`).
    """

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, T] = {}
        self._plugins_loaded = False

    def __repr__(self) -> str:
        return f"<Registry {self.kind}: {', '.join(self.names())}>"

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name: str, entry: T | None = None) -> T | Callable[[T], T]:
        """Register `entry` under `name`; without `entry`, a decorator that registers what it decorates."""
        def add(value: T) -> T:
            if name in self._entries and self._entries[name] is not value:
                raise ConfigError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = value
            return value

        return add if entry is None else add(entry)

    def get(self, name: str) -> T:
        """The entry registered as `name`; `ConfigError` listing the valid names when there is none."""
        if name not in self._entries:
            self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}") from None

    def names(self) -> tuple[str, ...]:
        """Every registered name, built-ins first in registration order, then plugins."""
        self._load_plugins()
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self._entries:
                log.warning("plugin %s for %s %r ignored: the name is taken", ep.value, self.kind, ep.name)
                continue
            try:
                self._entries[ep.name] = ep.load()
            except Exception as exc:  # a broken third-party plugin must not break the built-ins
                log.warning("plugin %s for %s %r failed to load: %s", ep.value, self.kind, ep.name, exc)

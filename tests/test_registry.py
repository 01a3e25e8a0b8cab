"""The one registry mechanism: lookups, error messages, duplicates and entry-point plugins."""

from __future__ import annotations

from typing import Any

import pytest

import retrieval.registry as registry_module
from retrieval.errors import ConfigError
from retrieval.registry import Registry


class _FakeEntryPoint:
    def __init__(self, name: str, value: Any, fail: bool = False) -> None:
        self.name, self._value, self._fail = name, value, fail
        self.value = f"fake_pkg:{name}"

    def load(self) -> Any:
        if self._fail:
            raise ImportError("fake_pkg is broken")
        return self._value


def _entry_points(found: dict[str, list[_FakeEntryPoint]]) -> Any:
    def entry_points(group: str) -> list[_FakeEntryPoint]:
        return found.get(group, [])
    return entry_points


def test_unknown_name_lists_valid_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "entry_points", _entry_points({}))
    reg: Registry[int] = Registry("widget", "driftrec.widgets")
    reg.register("small", 1)

    @reg.register("large")
    def large() -> int:
        return 3

    assert reg.get("small") == 1 and reg.get("large") is large
    assert reg.names() == ("small", "large") and "small" in reg and "huge" not in reg
    with pytest.raises(ConfigError, match=r"unknown widget 'huge'; valid: small, large"):
        reg.get("huge")


def test_entry_point_plugin_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = object()
    monkeypatch.setattr(registry_module, "entry_points", _entry_points({
        "driftrec.widgets": [_FakeEntryPoint("plugin", plugin), _FakeEntryPoint("broken", None, fail=True),
                             _FakeEntryPoint("small", "shadow")],
        "driftrec.other": [_FakeEntryPoint("elsewhere", 0)]}))
    reg: Registry[Any] = Registry("widget", "driftrec.widgets")
    reg.register("small", 1)
    assert reg.get("plugin") is plugin
    # built-ins first; a broken plugin is skipped, one reusing a built-in name does not replace it,
    # and another group's entry points are not this registry's
    assert reg.names() == ("small", "plugin") and reg.get("small") == 1
    with pytest.raises(ConfigError, match="valid: small, plugin"):
        reg.get("elsewhere")


def test_duplicate_name_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "entry_points", _entry_points({}))
    reg: Registry[int] = Registry("widget", "driftrec.widgets")
    reg.register("small", 1)
    reg.register("small", 1)  # the same object again (a re-imported module) is not a conflict
    with pytest.raises(ConfigError, match="widget 'small' is already registered"):
        reg.register("small", 2)


def test_builtin_registries_are_registry_objects() -> None:
    from eval.models import MODELS, model_factory
    from retrieval.candidates.registry import GENERATORS
    from retrieval.evolution.forecast import FORECASTERS
    from retrieval.vectors.embed import EMBEDDERS
    from retrieval.vectors.index import BACKENDS

    assert EMBEDDERS.names()[:2] == ("sentence-transformers", "hashing")
    assert BACKENDS.names()[:4] == ("flat", "hnsw", "ivf", "numpy")
    assert GENERATORS.names()[:3] == ("hybrid", "itemknn", "interest")
    assert {"last-window", "exp-smoothing-tuned", "autoregressive"} <= set(FORECASTERS.names())
    assert model_factory("popularity") is MODELS.get("popularity")
    groups = {r.group for r in (EMBEDDERS, BACKENDS, GENERATORS, FORECASTERS, MODELS)}
    assert groups == {"driftrec.embedders", "driftrec.index_backends", "driftrec.generators",
                      "driftrec.forecasters", "driftrec.models"}

"""Plugin loading: built-ins and third parties through the same hooks; clashes name both providers."""

from __future__ import annotations

import pytest

from harness import ParamGroup, Strategy, TaskModel, hookimpl
from harness.errors import PluginError
from harness.registry import Registry


class Tiny(Strategy):
    """Only the head trains, at twice the rate."""

    name = "tiny_head"

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        return [ParamGroup(params=list(model.head.parameters()), lr_scale=2.0, name="head")]


class ThirdParty:
    @hookimpl
    def bench_strategies(self):
        return [Tiny]


class Clash:
    @hookimpl
    def bench_strategies(self):
        class Full(Tiny):
            name = "full"

        return [Full]


def test_builtins_cover_every_kind(registry: Registry) -> None:
    assert {"resnet18", "resnet50", "mobilenet_v3_large"} <= set(registry.names("backbone"))
    assert registry.names("task") == ["classification", "detection", "segmentation"]
    assert {"full", "linear_probe", "scratch"} <= set(registry.names("strategy"))
    assert "shapes" in registry.names("dataset")
    assert "sequential" in registry.names("executor")
    assert {"markdown", "csv", "json"} <= set(registry.names("reporter"))
    assert {r.provider for r in registry.all()} == {"bench (built-in)"}


def test_third_party_plugin_registers_through_the_same_hook() -> None:
    registry = Registry(plugins=[(ThirdParty(), "bench-tiny-head")], entry_points=False)
    found = registry.components["strategy"]["tiny_head"]
    assert found.cls is Tiny and found.provider == "bench-tiny-head"


def test_name_clash_names_both_providers() -> None:
    with pytest.raises(PluginError, match=r"strategy 'full' is provided twice: by bench \(built-in\) and by acme"):
        Registry(plugins=[(Clash(), "acme")], entry_points=False)


def test_hook_returning_a_non_component_leaves_that_plugin_out() -> None:
    class Wrong:
        @hookimpl
        def bench_strategies(self):
            return [object]

    with pytest.warns(UserWarning, match="plugin wrong .*not a Strategy class"):
        registry = Registry(plugins=[(Wrong(), "wrong")], entry_points=False)
    assert [b.provider for b in registry.broken] == ["wrong"] and "full" in registry.names("strategy")


def test_misspelt_hook_leaves_only_that_plugin_out_with_one_warning() -> None:
    class Typo:
        @hookimpl
        def bench_strategys(self):
            return []

    with pytest.warns(UserWarning, match="plugin typo .*bench_strategys.*bench_strategies") as said:
        registry = Registry(plugins=[(Typo(), "typo")], entry_points=False)
    assert len(said) == 1 and [b.provider for b in registry.broken] == ["typo"]
    assert "full" in registry.names("strategy")


class _Distribution:
    def __init__(self, name: str) -> None:
        self.name = name


class _EntryPoint:
    """The part of importlib.metadata.EntryPoint the loader uses."""

    def __init__(self, name: str, dist: str, load) -> None:
        self.name, self.dist, self.value, self._load = name, _Distribution(dist), f"{dist}:plugin", load

    def load(self):
        return self._load()


def _broken():
    raise ImportError("No module named 'bench_missing_dependency'")


def test_entry_points_are_discovered_and_a_broken_one_only_warns(monkeypatch) -> None:
    found = [_EntryPoint("tiny", "bench-tiny-head", ThirdParty), _EntryPoint("broken", "bench-broken", _broken)]
    monkeypatch.setattr("harness.registry.entry_points", lambda group: found if group == "bench" else [])
    with pytest.warns(UserWarning, match="plugin 'broken' from package 'bench-broken' .*failed to load"):
        registry = Registry()
    assert registry.components["strategy"]["tiny_head"].provider == "bench-tiny-head"
    assert "full" in registry.names("strategy")  # everything else still works
    assert len(registry.load_warnings) == 1


def test_plugins_can_be_disabled_by_name(monkeypatch) -> None:
    found = [_EntryPoint("tiny", "bench-tiny-head", ThirdParty)]
    monkeypatch.setattr("harness.registry.entry_points", lambda group: found)
    monkeypatch.setenv("BENCH_DISABLE_PLUGINS", "bench-tiny-head")
    assert "tiny_head" not in Registry().names("strategy")


def test_train_briefly_finds_an_installed_plugin_backbone(tmp_path, monkeypatch) -> None:
    """Without a `registry=`, train_briefly uses this process's plugins (here via BENCH_PLUGINS)."""
    from harness.registry import reset_default_registry
    from harness.testing import train_briefly

    (tmp_path / "bench_my_backbone.py").write_text(
        "from bench_plugins.backbones.torchvision_backbones import ResNet18\n"
        "from harness import hookimpl\n\n\n"
        "class Mine(ResNet18):\n    name = 'mine'\n\n\n"
        "@hookimpl\ndef bench_backbones():\n    return [Mine]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BENCH_PLUGINS", "bench_my_backbone")
    reset_default_registry()
    try:
        strategy = Registry(entry_points=False).create("strategy", "full")
        run = train_briefly(strategy, steps=1, backbone="mine")
    finally:
        reset_default_registry()
    assert run.changed  # it trained: the plugin's backbone was found by name

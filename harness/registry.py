"""Plugin loading and the component registry.

Built-in plugins and third-party ones (entry-point group `bench`) go through the same hooks.
Loading happens once per `Registry`, never at import time, so tests can build their own.
Set `BENCH_DISABLE_PLUGINS` to a comma-separated list of plugin (distribution) names to
skip them, and `BENCH_PLUGINS` to a comma-separated list of importable modules to load as
plugins without installing a package (as pytest's `PYTEST_PLUGINS`).

A broken plugin (a module that fails to import, a misspelt hook, a registration hook that raises
or returns something else than component classes, an `Options` model whose defaults fail its own
validation or that lacks its kind's base class) is left out with one warning naming it and its
file; `Registry.broken` says which and why, and every other component works.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import traceback
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, entry_points, packages_distributions, version
from types import ModuleType
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError

from harness import hookspecs
from harness.components import COMPONENT_KINDS, Component, StrategyOptions
from harness.errors import PluginError
from harness.plugin_ref import PluginRef

BUILTIN = "bench (built-in)"
ENTRY_POINT_GROUP = "bench"
BUILTIN_PLUGINS = (
    "bench_plugins.backbones.torchvision_backbones",
    "bench_plugins.backbones.timm_backbone",
    "bench_plugins.tasks.classification",
    "bench_plugins.tasks.detection",
    "bench_plugins.tasks.segmentation",
    "bench_plugins.datasets.shapes",
    "bench_plugins.datasets.cifar",
    "bench_plugins.datasets.image_folder",
    "bench_plugins.datasets.voc",
    "bench_plugins.datasets.coco",
    "bench_plugins.datasets.cityscapes",
    "bench_plugins.datasets.ade20k",
    "bench_plugins.strategies.full",
    "bench_plugins.strategies.linear_probe",
    "bench_plugins.strategies.scratch",
    "bench_plugins.strategies.partial",
    "bench_plugins.strategies.discriminative_lr",
    "bench_plugins.strategies.gradual_unfreeze",
    "bench_plugins.strategies.bitfit",
    "bench_plugins.strategies.lora",
    "bench_plugins.strategies.l2sp",
    "bench_plugins.strategies.distill",
    "bench_plugins.strategies.wise_ft",
    "bench_plugins.strategies.ema",
    "bench_plugins.strategies.swa",
    "bench_plugins.strategies.lp_ft",
    "bench_plugins.strategies.sam",
    "bench_plugins.strategies.soup",
    "bench_plugins.executors.sequential",
    "bench_plugins.executors.processes",
    "bench_plugins.executors.ray_executor",
    "bench_plugins.reporters.tables",
    "bench_plugins.reporters.html",
    "bench_plugins.reporters.latex",
    "bench_plugins.loggers.tensorboard_logger",
    "bench_plugins.loggers.mlflow_logger",
)
HOOK_OF_KIND = {
    "backbone": "bench_backbones",
    "task": "bench_tasks",
    "dataset": "bench_datasets",
    "strategy": "bench_strategies",
    "executor": "bench_executors",
    "reporter": "bench_reporters",
    "logger": "bench_loggers",
}


#: the class each kind's `Options` must subclass (what the harness reads of every such model)
REQUIRED_OPTIONS: dict[str, type[BaseModel]] = {"strategy": StrategyOptions}


class BrokenPlugin(Exception):
    """Why a plugin was left out; `file` is where its code is, when known."""

    def __init__(self, provider: str, file: str | None, reason: str) -> None:
        super().__init__(reason)
        self.provider, self.file, self.reason = provider, file, reason

    def __str__(self) -> str:
        where = f" ({self.file})" if self.file else ""
        return f"plugin {self.provider}{where} left out: {self.reason}"


@dataclass(frozen=True)
class Registered:
    """One component and the package that provides it (its distribution and version when installed)."""

    kind: str
    name: str
    cls: type[Component]
    provider: str
    distribution: str | None = None
    version: str | None = None

    def identity(self) -> dict[str, str | None]:
        """What a cell's provenance records of the component."""
        release = {"distribution": self.distribution, "version": self.version}
        return {"name": self.name, "provider": self.provider, **release}


class Registry:
    """Every component by kind and name, filled from the plugins' registration hooks."""

    def __init__(self, plugins: list[tuple[object, str]] | None = None, entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.providers: dict[object, str] = {}
        self.load_warnings: list[str] = []
        #: plugins left out, each with its file and why
        self.broken: list[BrokenPlugin] = []
        self.entry_points = entry_points
        #: plugins given to this registry beyond the built-ins and entry points
        self.extra: list[tuple[object, str]] = list(plugins or [])
        for module_name in BUILTIN_PLUGINS:
            self.register(importlib.import_module(module_name), BUILTIN)
        for plugin, provider in self.extra:
            self.register(plugin, provider)
        if entry_points:
            self._load_entry_points()
            self._load_named_modules()
        self._drop_unknown_hooks()
        self.components: dict[str, dict[str, Registered]] = {kind: {} for kind in COMPONENT_KINDS}
        self._collect()

    def register(self, plugin: object, provider: str) -> None:
        try:
            self.pm.register(plugin, name=_plugin_name(plugin))
        except pluggy.PluginValidationError as exc:  # e.g. a hook argument the spec does not have
            self._leave_out(BrokenPlugin(provider, _file_of(plugin), str(exc)))
            return
        self.providers[plugin] = provider

    def _leave_out(self, broken: BrokenPlugin) -> None:
        """One warning, and the plugin stays out; the others are untouched."""
        self.broken.append(broken)
        self.load_warnings.append(str(broken))
        warnings.warn(str(broken), stacklevel=3)

    def _drop_unknown_hooks(self) -> None:
        """A hook name that is no hook of bench (a misspelling) leaves that plugin out, not the run."""
        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                plugin = exc.plugin
                provider = self.providers.pop(plugin, _plugin_name(plugin))
                self.pm.unregister(plugin)
                known = ", ".join(sorted(HOOK_OF_KIND.values()))
                self._leave_out(BrokenPlugin(provider, _file_of(plugin), f"{exc}; bench's hooks include {known}"))

    def _load_entry_points(self) -> None:
        disabled = {n.strip() for n in os.environ.get("BENCH_DISABLE_PLUGINS", "").split(",") if n.strip()}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else ep.value
            if dist in disabled or ep.name in disabled:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                reason = f"failed to load: {type(exc).__name__}: {exc}"
                self._leave_out(BrokenPlugin(f"{ep.name!r} from package {dist!r}", _failing_file(exc), reason))
                continue
            self.register(plugin, dist)

    def _load_named_modules(self) -> None:
        for name in (n.strip() for n in os.environ.get("BENCH_PLUGINS", "").split(",")):
            if not name:
                continue
            try:
                module = importlib.import_module(name)
            except Exception as exc:
                reason = f"BENCH_PLUGINS: cannot import {name!r}: {type(exc).__name__}: {exc}"
                self._leave_out(BrokenPlugin(name, _failing_file(exc, name), reason))
                continue
            if not self.pm.is_registered(module):
                self.register(module, name)

    def portable(self) -> tuple[PluginRef, ...]:
        """How another process rebuilds this registry's extra plugins (modules, or instances of importable classes)."""
        refs = []
        for plugin, provider in self.extra:
            if isinstance(plugin, ModuleType):
                target = plugin.__name__
            else:
                cls = type(plugin)
                if "<locals>" in cls.__qualname__:
                    raise PluginError(
                        f"plugin {cls.__qualname__} ({provider}) is defined inside a function and cannot be "
                        "loaded by another process; define it in a module, or use the sequential executor"
                    )
                target = f"{cls.__module__}:{cls.__qualname__}"
            refs.append(PluginRef(target, provider))
        return tuple(refs)

    def _collect(self) -> None:
        found: dict[object, list[tuple[str, type[Component]]]] = {}
        for kind, hook_name in HOOK_OF_KIND.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin in found and found[impl.plugin] is _LEFT_OUT:
                    continue
                try:
                    classes = _checked(kind, hook_name, impl.function)
                except BrokenPlugin as exc:
                    provider = self.providers.get(impl.plugin, impl.plugin_name)
                    self._leave_out(BrokenPlugin(provider, exc.file or _file_of(impl.plugin), exc.reason))
                    found[impl.plugin] = _LEFT_OUT
                    continue
                found.setdefault(impl.plugin, []).extend((kind, cls) for cls in classes)
        for plugin, components in found.items():  # a plugin's components go in together or not at all
            provider = self.providers.get(plugin, _plugin_name(plugin))
            for kind, cls in components:
                known = self.components[kind].get(cls.name)
                if known is not None:
                    raise PluginError(f"{kind} {cls.name!r} is provided twice: by {known.provider} and by {provider}")
                distribution, release = _distribution_of(cls, plugin)
                self.components[kind][cls.name] = Registered(kind, cls.name, cls, provider, distribution, release)

    def get(self, kind: str, name: str) -> type[Component]:
        found = self.components[kind].get(name)
        if found is None:
            raise KeyError(name)
        return found.cls

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def create(self, kind: str, name: str, options: Any = None) -> Any:
        """An instance of component `name` with validated `options`."""
        return self.get(kind, name)(options)

    def all(self) -> list[Registered]:
        return [reg for kind in COMPONENT_KINDS for reg in self.components[kind].values()]


_rebuilt: dict[tuple[tuple[PluginRef, ...], bool], Registry] = {}


def registry_for(plugins: tuple[PluginRef, ...], entry_points: bool) -> Registry:
    """The registry a job needs, built once per process (workers run many jobs)."""
    key = (plugins, entry_points)
    if key not in _rebuilt:
        with warnings.catch_warnings():  # the driver has said each broken plugin once; a worker says it again never
            warnings.simplefilter("ignore", UserWarning)
            _rebuilt[key] = Registry([(ref.load(), ref.provider) for ref in plugins], entry_points=entry_points)
    return _rebuilt[key]


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return dict(packages_distributions())


def _distribution_of(cls: type, plugin: object) -> tuple[str | None, str | None]:
    """The installed distribution whose top-level package holds `cls` (or else `plugin`), and its version."""
    for module in (cls.__module__, getattr(plugin, "__name__", type(plugin).__module__)):
        for name in _distributions().get(module.split(".")[0], []):
            try:
                return name, version(name)
            except PackageNotFoundError:
                continue
    return None, None


_LEFT_OUT: list[tuple[str, type[Component]]] = []


def _checked(kind: str, hook_name: str, hook: Any) -> list[type[Component]]:
    """The classes a registration hook returns, each a component of `kind` whose options hold up."""
    base = COMPONENT_KINDS[kind]
    try:
        classes = list(hook() or [])
    except Exception as exc:
        raise BrokenPlugin("", _failing_file(exc), f"{hook_name} raised {type(exc).__name__}: {exc}") from None
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise BrokenPlugin("", None, f"{hook_name} returned {cls!r}, not a {base.__name__} class")
        options = cls.Options
        required = REQUIRED_OPTIONS.get(kind, BaseModel)
        where = f"{kind} {getattr(cls, 'name', cls.__name__)!r}: {cls.__name__}.Options"
        if not (isinstance(options, type) and issubclass(options, required)):
            shown = getattr(options, "__name__", repr(options))
            raise BrokenPlugin(
                "", _file_of(cls), f"{where} ({shown}) must subclass {required.__module__}.{required.__name__}"
            )
        problem = _default_problem(options)
        if problem:
            raise BrokenPlugin("", _file_of(cls), f"{where} rejects its own default: {problem}")
    return classes


def _default_problem(options: type[BaseModel]) -> str | None:
    """What the model's validation says of its own defaults (fields without one left aside), or None."""
    defaults = {
        name: field.get_default(call_default_factory=True)
        for name, field in options.model_fields.items()
        if not field.is_required()
    }
    try:
        options.model_validate(defaults)
    except ValidationError as exc:
        wrong = [e for e in exc.errors() if e["type"] != "missing" and e["loc"] and e["loc"][0] in defaults]
        if wrong:
            first = wrong[0]
            field = ".".join(str(part) for part in first["loc"])
            return f"{field} = {defaults[str(first['loc'][0])]!r}: {first['msg']}"
    except Exception as exc:  # a validator of its own that raises something else
        return f"{type(exc).__name__}: {exc}"
    return None


def _file_of(thing: object) -> str | None:
    """The source file of a module, class or instance, when it has one."""
    target = thing if isinstance(thing, (ModuleType, type)) else type(thing)
    try:
        return inspect.getsourcefile(target)  # type: ignore[arg-type]
    except (TypeError, OSError):
        return None


def _failing_file(exc: BaseException, module: str | None = None) -> str | None:
    """The file where `exc` was raised (deepest frame), else where `module` would be found."""
    frames = traceback.extract_tb(exc.__traceback__)
    outside = [f.filename for f in frames if "importlib" not in f.filename and not f.filename.startswith("<")]
    if outside and outside[-1] != __file__:
        return outside[-1]
    if module:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return None
        return spec.origin if spec else None
    return None


def _plugin_name(plugin: object) -> str:
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    return f"{type(plugin).__module__}.{type(plugin).__qualname__}:{id(plugin)}"


_default: Registry | None = None


def default_registry() -> Registry:
    """The registry of this process, loaded on first use."""
    global _default
    if _default is None:
        _default = Registry()
    return _default


def reset_default_registry() -> None:
    """Forget the loaded registry (tests, or after installing a plugin in-process)."""
    global _default
    _default = None

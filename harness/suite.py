"""Suite files: TOML parsed with tomllib, validated into typed objects before anything runs.

Validation has two passes. The first checks the file's shape (types, ranges, unknown keys)
with pydantic; the second checks names against the plugin registry and validates each
component's options with that component's own `Options` model. Every error names the
file, the key path (``strategies[2].options.lr``) and what is allowed.
"""

from __future__ import annotations

import math
import re
import stat
import sys
import tomllib
import types
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from harness.callbacks import call
from harness.components import Strategy
from harness.errors import SuiteError
from harness.overrides import Override, ShadowedOverride, applied, apply_overrides, parse_overrides, shadowed
from harness.registry import Registry, default_registry
from harness.search_check import check_searches
from harness.settings import (
    MAX_DEPTH,
    BackboneSpec,
    DatasetRef,
    StrategySpec,
    Suite,
    TaskSpec,
    TrainingOverrides,
    output_problem,
)
from harness.sweeps import option_axes
from harness.weights import check_checkpoint, parse_weights, resolve_named

#: a suite file larger than this is refused before it is read (a suite is a few KiB)
MAX_SUITE_BYTES = 1 << 20


def load_suite(path: str | Path, registry: Registry | None = None, overrides: Sequence[str | Override] = ()) -> Suite:
    """Read and fully validate a suite file; raises `SuiteError` naming file and key.

    `overrides` (`--set PATH=VALUE`, see `harness.overrides`) change the file's data before it is
    validated, so they are validated as the file is; an error then also names the overrides.
    """
    given = parse_overrides(overrides)
    path = Path(path)
    text = _read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: invalid TOML: {one_line(str(exc))}") from None
    except RecursionError:
        raise SuiteError(f"{path}: invalid TOML: nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError:  # an integer of more digits than Python converts
        raise SuiteError(f"{path}: {_huge_integer(text)}") from None
    if not given:
        return parse_suite(data, str(path), registry)
    try:
        changed = apply_overrides(data, given)
        suite = parse_suite(changed, str(path), registry)
    except SuiteError as exc:
        raise SuiteError(f"{exc} (with {applied(given)})") from None
    for line in shadowed(changed, given):  # a task's own epochs wins over --set training.epochs: say so
        warnings.warn(line, ShadowedOverride, stacklevel=2)
    return suite


def _read_text(path: Path) -> str:
    """A suite file's text: a regular file of at most `MAX_SUITE_BYTES`, UTF-8."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise SuiteError(f"{path}: is a directory; give a suite file (TOML)")
        if not stat.S_ISREG(mode):
            raise SuiteError(f"{path}: not a regular file; give a suite file (TOML)")
        with path.open("rb") as f:
            raw = f.read(MAX_SUITE_BYTES + 1)
    except FileNotFoundError:
        raise SuiteError(f"{path}: no such suite file") from None
    except (OSError, ValueError) as exc:  # a symlink loop, no permission, a NUL in the path
        raise SuiteError(f"{path}: cannot read the suite file: {getattr(exc, 'strerror', None) or exc}") from None
    if len(raw) > MAX_SUITE_BYTES:
        raise SuiteError(f"{path}: larger than {MAX_SUITE_BYTES // 1024} KiB; a suite file is a small TOML file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(
            f"{path}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); a suite file is UTF-8 TOML"
        ) from None


def _huge_integer(text: str) -> str:
    """The message for a file holding an integer too long to convert, naming its line."""
    limit = sys.get_int_max_str_digits()
    found = re.search(rf"\d[\d_]{{{limit},}}", text)
    line = text.count("\n", 0, found.start()) + 1 if found else None
    where = f"line {line}: " if line else ""
    return f"{where}an integer of more than {limit} digits; allowed: integers of at most {limit} digits"


def shown(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters; an integer too long to write says how long it is."""
    try:
        text = repr(value)
    except ValueError:
        return f"an integer of more than {sys.get_int_max_str_digits()} digits"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str) -> str:
    """`text` with its line breaks and other control characters escaped, for a one-line message."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _depth_problem(value: Any, where: str, depth: int = 0) -> str | None:
    """'key.path: problem' for the first value nested deeper than `MAX_DEPTH` or not finite, or None."""
    if depth > MAX_DEPTH:
        return f"{where or '(top level)'}: nested too deeply (at most {MAX_DEPTH} levels)"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where or '(top level)'}: {value} is not a finite number; allowed: finite numbers"
    if isinstance(value, dict):
        items: Any = ((f"{where}.{k}" if where else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for key, item in items:
        found = _depth_problem(item, key, depth + 1)
        if found:
            return found
    return None


def _refuse_internal(data: dict[str, Any], source: str) -> None:
    """Fields the loader fills (`training_sweep`, `source`) are unknown keys in a file."""
    owners: list[tuple[Any, str, type[BaseModel]]] = [(data, "", Suite)]
    tables: tuple[tuple[str, type[BaseModel]], ...] = (("tasks", TaskSpec), ("strategies", StrategySpec))
    for table, model in tables:
        if isinstance(data.get(table), list):
            owners += [(item, f"{table}[{i}].", model) for i, item in enumerate(data[table])]
    for owner, prefix, model in owners:
        if not isinstance(owner, dict):
            continue
        for key in INTERNAL_FIELDS:
            if key in owner:
                allowed = ", ".join(f for f in model.model_fields if f not in INTERNAL_FIELDS)
                raise SuiteError(f"{source}: {prefix}{key}: unknown key; allowed: {allowed}")


def parse_suite(data: dict[str, Any], source: str = "<memory>", registry: Registry | None = None) -> Suite:
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: (top level): a suite is a TOML table (got {type(data).__name__})")
    deep = _depth_problem(data, "")
    if deep:
        raise SuiteError(f"{source}: {deep}")
    _refuse_internal(data, source)
    data = _split_training_sweeps(data, source)
    try:
        suite = Suite.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise SuiteError(f"{source}: {_describe(exc, Suite)}") from None
    if registry is None:
        registry = default_registry()
    check_names(suite, registry)
    return suite


def _split_training_sweeps(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Move list-valued training settings into `training_sweep`, each value validated on its own."""
    data = dict(data)
    owners: list[tuple[dict[str, Any], str]] = [(data, "")]
    for table in ("tasks", "strategies"):
        if isinstance(data.get(table), list):
            data[table] = [dict(item) if isinstance(item, dict) else item for item in data[table]]
            owners += [(item, f"{table}[{i}].") for i, item in enumerate(data[table]) if isinstance(item, dict)]
    for owner, prefix in owners:
        training = owner.get("training")
        if not isinstance(training, dict):
            continue
        sweep = {key: value for key, value in training.items() if isinstance(value, list)}
        for key, values in sweep.items():
            where = f"{prefix}training.{key}"
            if not values:
                raise SuiteError(f"{source}: {where}: a sweep needs at least one value")
            validated = []
            for i, value in enumerate(values):
                try:
                    # the validated value: `lr = [1, 1.0]` is one value twice, not two
                    validated.append(getattr(TrainingOverrides.model_validate({key: value}), key))
                except ValidationError as exc:
                    raise SuiteError(f"{source}: {where}[{i}]: {_problem(exc, TrainingOverrides)}") from None
            sweep[key] = validated
        if sweep:
            owner["training"] = {k: v for k, v in training.items() if k not in sweep}
            owner["training_sweep"] = sweep
    return data


def with_overrides(suite: Suite, **values: Any) -> Suite:
    """The suite with values given on the command line in place of the file's (None: keep the file's)."""
    given = {key: value for key, value in values.items() if value is not None}
    if not given:
        return suite
    # only what was set: a task's `training` must keep the settings it leaves unset unset, or they
    # would hide the suite's sweeps of them (`training_axes` reads `model_fields_set`)
    try:
        return Suite.model_validate({**suite.model_dump(exclude_unset=True), **given, "source": suite.source})
    except ValidationError as exc:
        raise SuiteError(f"command line: {_describe(exc, Suite)}") from None


#: fields filled by the loader, not written in suite files
INTERNAL_FIELDS = ("source", "training_sweep")


def _describe(exc: ValidationError, root: type[BaseModel], prefix: str = "") -> str:
    """The first validation error as 'key.path: what is wrong (what is allowed)'."""
    error = exc.errors()[0]
    loc = error["loc"]
    where = prefix + _key_path(loc)
    if error["type"] == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        allowed = ", ".join(f for f in parent.model_fields if f not in INTERNAL_FIELDS) if parent else "?"
        message = f"{where}: unknown key; " + (f"allowed: {allowed}" if allowed else "this table takes no keys")
    elif error["type"] == "missing":
        message = f"{where}: required key is missing"
    elif error["type"] == "search_space":  # a search's path: named in the key, its problem said plainly
        message = f"{where}.{error['ctx']['path']}: {error['ctx']['problem']}"
    else:
        got = shown(error.get("input"))
        message = f"{where}: {' '.join(str(error['msg']).split())} (got {got})"
    more = len(exc.errors()) - 1
    return one_line(message + (f" (and {more} more error{'s' * (more > 1)})" if more else ""))


def _problem(exc: ValidationError, root: type[BaseModel]) -> str:
    """What `_describe` says, without the key path (for callers that name the key themselves)."""
    return _describe(exc, root).split(": ", 1)[1]


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The pydantic model class that the key path `loc` points into."""
    current: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = _unwrap(current.model_fields[part].annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """list[X], X | None, Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated or origin is list:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        else:
            return annotation


def check_names(suite: Suite, registry: Registry) -> None:
    """Second pass: every name exists, every option is valid for its component. The first problem
    found raises, in the file's order of sections."""
    names = _NameCheck(suite, registry)
    for find in (names.output, names.executor, names.unique, names.pretraining, names.tasks, names.backbones,
                 names.strategies, names.teachers, names.inputs, names.searches, names.labels):  # fmt: skip
        find()


class _NameCheck:
    """One problem-finder per kind of problem of a suite's names and options; each raises a SuiteError."""

    def __init__(self, suite: Suite, registry: Registry) -> None:
        self.suite, self.registry, self.src = suite, registry, suite.source

    def fail(self, key: str, message: str) -> None:
        raise SuiteError(f"{self.src}: {key}: {message}")

    def known(self, kind: str, name: str, key: str) -> None:
        if name not in self.registry.components[kind]:
            broken = "".join(f" ({warning})" for warning in self.registry.load_warnings)
            self.fail(key, f"unknown {kind} {name!r}; allowed: {', '.join(self.registry.names(kind))}{broken}")

    def options(self, kind: str, name: str, values: dict[str, Any], key: str, sweeps: bool = False) -> None:
        cls = self.registry.get(kind, name)
        fixed, axes = option_axes(cls.Options, values) if sweeps else (values, {})
        try:
            cls.Options.model_validate({**fixed, **{k: v[0] for k, v in axes.items()}})
        except ValidationError as exc:
            raise SuiteError(f"{self.src}: {_describe(exc, cls.Options, prefix=key + '.')}") from None
        except RecursionError:  # e.g. a regular expression of 100,000 nested groups
            self.fail(key, "a value too deeply nested to check; allowed: values of at most a few levels")
        for option, choices in axes.items():
            for i, choice in enumerate(choices):
                try:
                    cls.Options.model_validate({**fixed, option: choice})
                except ValidationError as exc:
                    raise SuiteError(f"{self.src}: {key}.{option}[{i}]: {_problem(exc, cls.Options)}") from None

    def dataset(self, kind: str, ref: DatasetRef, key: str) -> None:
        self.known("dataset", ref.name, f"{key}.name")
        self.options("dataset", ref.name, ref.options, f"{key}.options")
        served = self.registry.get("dataset", ref.name).kinds  # type: ignore[attr-defined]
        if kind not in served:
            self.fail(f"{key}.name", f"dataset {ref.name!r} serves {', '.join(served)}, not {kind}")

    def task(self, kind: str, values: dict[str, Any], key: str) -> None:
        self.known("task", kind, f"{key}.kind")
        self.options("task", kind, values, f"{key}.options")

    def output(self) -> None:
        if self.suite.output is None:
            problem = output_problem(self.suite.output_dir())
            if problem:
                self.fail("name", f"the default results directory cannot be made: {problem}; or give `output`")

    def executor(self) -> None:
        self.known("executor", self.suite.executor.name, "executor")
        self.options("executor", self.suite.executor.name, self.suite.executor.options, "executor.options")
        check_loggers(self.suite, self.registry, self.src)

    def unique(self) -> None:
        suite = self.suite
        _unique([s.id for s in suite.strategies], "strategies", "label", self.fail)
        _unique([b.id for b in suite.backbones], "backbones", "label", self.fail)
        _unique([t.name for t in suite.tasks], "tasks", "name", self.fail)
        _unique([p.name for p in suite.pretrain], "pretrain", "name", self.fail)

    def pretraining(self) -> None:
        for i, spec in enumerate(self.suite.pretrain):
            key = f"pretrain[{i}]"
            self.known("backbone", spec.backbone, f"{key}.backbone")
            self.task(spec.kind, spec.options, key)
            self.dataset(spec.kind, spec.dataset, f"{key}.dataset")

    def tasks(self) -> None:
        for i, t in enumerate(self.suite.tasks):
            key = f"tasks[{i}]"
            self.task(t.kind, t.options, key)
            self.dataset(t.kind, t.dataset, f"{key}.dataset")
            metrics = self.registry.get("task", t.kind).metrics  # type: ignore[attr-defined]
            if t.metric is not None and t.metric not in metrics:
                self.fail(f"{key}.metric", f"unknown metric {t.metric!r} for {t.kind}; allowed: {', '.join(metrics)}")
            if t.metric is not None:
                _check_reported(t, self.registry, self.fail, key)

    def backbones(self) -> None:
        for i, b in enumerate(self.suite.backbones):
            key = f"backbones[{i}]"
            self.known("backbone", b.name, f"{key}.name")
            self.options("backbone", b.name, b.options, f"{key}.options")
            self.weights(b, f"{key}.weights")

    def weights(self, b: BackboneSpec, key: str) -> None:
        try:
            source = parse_weights(b.weights)
        except ValueError as exc:
            self.fail(key, str(exc))
        if source.kind == "named":
            try:
                resolve_named(self.registry.create("backbone", b.name, b.options), source.value)
            except ValueError as exc:
                self.fail(key, str(exc))
        if source.kind == "file" and any(not _from_scratch(s, self.registry) for s in self.suite.strategies):
            try:
                check_checkpoint(source.value)
            except ValueError as exc:
                self.fail(key, one_line(str(exc)))
        stages = [p.name for p in self.suite.pretrain]
        if source.kind == "pretrain" and source.value not in stages:
            allowed = ", ".join(stages) or "none declared in [[pretrain]]"
            self.fail(key, f"unknown pretraining stage {source.value!r}; allowed: {allowed}")

    def strategies(self) -> None:
        for i, s in enumerate(self.suite.strategies):
            key = f"strategies[{i}]"
            self.known("strategy", s.name, f"{key}.name")
            self.options("strategy", s.name, s.options, f"{key}.options", sweeps=True)
        _check_select_epoch(self.suite, self.registry, self.fail)

    def teachers(self) -> None:
        _check_teachers(self.suite, self.registry, self.fail)

    def inputs(self) -> None:
        """What `Strategy.inputs` names is a strategy (and backbone, seed) of this suite, not the strategy itself."""
        suite = self.suite
        labels, backbones = [s.id for s in suite.strategies], [b.id for b in suite.backbones]
        for i, spec in enumerate(suite.strategies):
            for ref in call(_first_of(spec, self.registry).inputs, seeds=list(suite.seeds), seed=suite.seeds[0]):
                key = _holding_key(spec, ref.strategy, f"strategies[{i}].options")
                if ref.strategy not in labels:
                    self.fail(key, f"unknown strategy {ref.strategy!r}; allowed: {', '.join(labels)}")
                if ref.strategy == spec.id:
                    self.fail(key, f"{spec.id!r} is this strategy itself; name the strategies whose models it uses")
                if ref.backbone is not None and ref.backbone not in backbones:
                    self.fail(key, f"unknown backbone {ref.backbone!r}; allowed: {', '.join(backbones)}")
                if ref.seed is not None and ref.seed not in suite.seeds:
                    self.fail(key, f"seed {ref.seed} is not one of the suite's seeds ({list(suite.seeds)})")

    def searches(self) -> None:
        check_searches(self.suite, self.registry, self.fail)

    def labels(self) -> None:
        suite = self.suite
        labels = {
            "task": [t.name for t in suite.tasks],
            "backbone": [b.id for b in suite.backbones],
            "strategy": [s.id for s in suite.strategies],
        }
        if suite.baseline is not None and suite.baseline not in labels["strategy"]:
            self.fail("baseline", f"unknown strategy {suite.baseline!r}; allowed: {', '.join(labels['strategy'])}")
        for i, ex in enumerate(suite.exclude):
            for field, names in labels.items():
                value = getattr(ex, field)
                if value is not None and value not in names:
                    self.fail(f"exclude[{i}].{field}", f"unknown {field} {value!r}; allowed: {', '.join(names)}")


def _from_scratch(spec: StrategySpec, registry: Registry) -> bool:
    """Whether a strategy ignores the backbone's weights (`scratch`); unknown ones are reported elsewhere."""
    known = spec.name in registry.components["strategy"]
    return known and bool(getattr(registry.get("strategy", spec.name), "from_scratch", False))


def _check_reported(task: TaskSpec, registry: Registry, fail: Any, key: str) -> None:
    """The ranking metric is one the task reports with these options and this dataset's classes."""
    plugin = registry.create("task", task.kind, task.options)
    reported = plugin.reported_metrics()  # type: ignore[attr-defined]
    if task.metric in reported and reported != plugin.reported_metrics(1):  # type: ignore[attr-defined]
        try:  # the metrics depend on the number of classes: count them where the data can tell
            dataset = registry.create("dataset", task.dataset.name, task.dataset.options)
            classes: int | None = len(dataset.class_names(task.kind))
        except Exception:  # data not there yet (downloaded later): checked when the cell runs
            classes = None
        reported = plugin.reported_metrics(classes)  # type: ignore[attr-defined]
        if task.metric not in reported:
            allowed = ", ".join(reported)
            fail(f"{key}.metric", f"{task.metric!r} needs more than {classes} classes; allowed: {allowed}")
    elif task.metric not in reported:
        fail(f"{key}.metric", f"{task.metric!r} is not reported with these options; allowed: {', '.join(reported)}")


def _check_select_epoch(suite: Suite, registry: Registry, fail: Any) -> None:
    """`select_epoch = "best_val"` tests the model of an earlier epoch than the last: refused for a strategy
    that makes its final model after the last epoch (`on_train_end`: SWA, EMA, WiSE-FT), which it would skip."""
    for i, spec in enumerate(suite.strategies):
        if getattr(registry.get("strategy", spec.name), "on_train_end", None) is Strategy.on_train_end:
            continue
        for j, task in enumerate(suite.tasks):
            chosen = suite.training_axes(task, spec).get("select_epoch", [suite.training_for(task, spec).select_epoch])
            if "best_val" not in chosen:
                continue
            key = "training.select_epoch"  # where it is set: the most specific level that gives it
            for where, level in ((f"strategies[{i}]", spec), (f"tasks[{j}]", task)):
                if "select_epoch" in level.training.model_fields_set | set(level.training_sweep):
                    key = f"{where}.training.select_epoch"
                    break
            fail(key, f"'best_val' would test an earlier epoch's model, not the one strategy {spec.name!r} makes "
                      "after the last epoch (on_train_end); use 'last' for it")  # fmt: skip


def _first_of(spec: StrategySpec, registry: Registry) -> Any:
    """The strategy of `spec` at the first value of each swept option."""
    cls = registry.get("strategy", spec.name)
    fixed, axes = option_axes(cls.Options, spec.options)
    return cls({**fixed, **{k: v[0] for k, v in axes.items()}})


def _teacher_of(spec: StrategySpec, registry: Registry) -> Any:
    return _first_of(spec, registry).teacher()


def _own_key(spec: StrategySpec, registry: Registry, value: Any, usual: str, key: str) -> str:
    """The key of the strategy's own option that holds `value` (a plugin names its options as it likes)."""
    holders = [name for name, given in spec.options.items() if given == value]
    if len(holders) == 1:
        return f"{key}.{holders[0]}"
    fields = registry.get("strategy", spec.name).Options.model_fields
    return f"{key}.{usual}" if usual in fields else key


def _holding_key(spec: StrategySpec, value: Any, key: str) -> str:
    """The key of the strategy's option that holds `value`, itself or in a list (else the options' key)."""
    for name, given in spec.options.items():
        if given == value or (isinstance(given, list) and value in given):
            return f"{key}.{name}"
    return key


def _check_teachers(suite: Suite, registry: Registry, fail: Any) -> None:
    """A teacher is a strategy x backbone of this suite that learns from no teacher itself, or a checkpoint."""
    strategies = {s.id: s for s in suite.strategies}
    backbones = [b.id for b in suite.backbones]
    for i, spec in enumerate(suite.strategies):
        ref = _teacher_of(spec, registry)
        if ref is None:
            continue
        key = f"strategies[{i}].options"

        def own(value: Any, usual: str, key: str = key, spec: StrategySpec = spec) -> str:
            return _own_key(spec, registry, value, usual, key)

        if ref.checkpoint is not None:
            if ref.backbone not in registry.components["backbone"]:
                allowed = ", ".join(registry.names("backbone"))
                fail(own(ref.backbone, "teacher_backbone"), f"unknown backbone {ref.backbone!r}; allowed: {allowed}")
            try:
                check_checkpoint(ref.checkpoint)
            except ValueError as exc:
                fail(own(ref.checkpoint, "teacher_checkpoint"), one_line(str(exc)))
            continue
        if ref.backbone not in backbones:
            allowed = ", ".join(backbones)
            fail(own(ref.backbone, "teacher_backbone"), f"unknown backbone {ref.backbone!r}; allowed: {allowed}")
        if ref.strategy not in strategies:
            allowed = ", ".join(strategies)
            fail(own(ref.strategy, "teacher_strategy"), f"unknown strategy {ref.strategy!r}; allowed: {allowed}")
        if _teacher_of(strategies[ref.strategy], registry) is not None:
            fail(
                own(ref.strategy, "teacher_strategy"),
                f"{ref.strategy!r} learns from a teacher itself; pick one that does not",
            )


def check_loggers(suite: Suite, registry: Registry, where: str) -> None:
    """Every logger is known, its options valid and its extra installed; `where`: the file or the option."""

    def fail(key: str, message: str) -> None:
        raise SuiteError(f"{where}: {key}: {message}")

    _unique([spec.name for spec in suite.loggers], "loggers", "name", fail)
    for i, spec in enumerate(suite.loggers):
        if spec.name not in registry.components["logger"]:
            fail(f"loggers[{i}].name", f"unknown logger {spec.name!r}; allowed: {', '.join(registry.names('logger'))}")
        cls = registry.get("logger", spec.name)
        try:
            cls.Options.model_validate(spec.options)
        except ValidationError as exc:
            raise SuiteError(f"{where}: {_describe(exc, cls.Options, prefix=f'loggers[{i}].options.')}") from None
        missing = registry.create("logger", spec.name, spec.options).available()
        if missing:
            fail(f"loggers[{i}].name", missing)


def _unique(values: list[str], table: str, field: str, fail: Any) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            fail(f"{table}[{i}].{field}", f"{value!r} appears twice; give each entry a distinct {field}")
        seen.add(value)

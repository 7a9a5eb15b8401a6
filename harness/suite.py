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
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from harness.errors import SuiteError
from harness.registry import Registry
from harness.weights import check_checkpoint, parse_weights, resolve_named

if typing.TYPE_CHECKING:
    from harness.overrides import Override

#: a suite file larger than this is refused before it is read (a suite is a few KiB)
MAX_SUITE_BYTES = 1 << 20
#: tables and lists nested deeper than this are refused (the deepest real option is a list of lists)
MAX_DEPTH = 32
#: the longest suite name (it is a folder name) and label
MAX_NAME = 100


class Strict(BaseModel):
    """Unknown keys are errors, and nothing is coerced: `lr = true` or `epochs = "1"` is refused.

    Strict mode still takes a TOML integer where a float is expected (`lr = 1` is 1.0).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _printable(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    if len(value) > MAX_NAME:
        raise ValueError(f"at most {MAX_NAME} characters (got {len(value)})")
    if not value.isprintable():
        raise ValueError("control characters (NUL, newline, tab, ...) are not allowed")
    return value


def _safe_name(value: str) -> str:
    """A suite name: the folder `results/<name>`, so one plain path part."""
    _printable(value)
    if value in (".", "..") or "/" in value or "\\" in value or value != value.strip() or value.startswith("~"):
        raise ValueError(
            "a suite name is a folder name under results/: no '/', '\\', leading '~', surrounding spaces, "
            "and not '.' or '..'"
        )
    return value


def _output(value: str) -> str:
    """The results directory: a directory that exists, or one that can be made (no file in the way)."""
    if not value or not value.isprintable():
        raise ValueError("a directory path without control characters")
    problem = output_problem(Path(value))
    if problem:
        raise ValueError(problem)
    return value


def output_problem(path: Path) -> str | None:
    """Why `path` cannot be a results directory (a file, a dangling link, or a file among its parents), or None."""
    try:
        path = path.expanduser()
    except RuntimeError:  # `~nosuchuser/x`
        return f"{str(path)!r}: no such user's home directory; give a plain path"
    for candidate in (path, *path.parents):
        try:
            mode = candidate.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            if candidate.is_symlink():
                return f"{str(path)!r}: {str(candidate)!r} is a symbolic link to nothing; give a results directory"
            continue
        except (OSError, ValueError) as exc:
            return f"{str(candidate)!r} cannot be used: {getattr(exc, 'strerror', None) or exc}"
        if stat.S_ISDIR(mode):
            return None
        if candidate == path:
            return f"{str(path)!r} exists and is not a directory; give a results directory"
        return f"{str(path)!r}: {str(candidate)!r} is not a directory"
    return None


PositiveInt = Annotated[int, Field(ge=1)]
#: a label (task name, backbone or strategy label, pretraining stage): printable, 1 to 100 characters
Label = Annotated[str, AfterValidator(_printable)]
#: a seed torch, numpy and random all take
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


def _one_of(*allowed: str | bool) -> BeforeValidator:
    """One plain error for a setting that takes a few words or a boolean, in TOML's spelling."""

    def check(value: Any) -> Any:
        if value is None or any(type(value) is type(a) and value == a for a in allowed):
            return value
        raise ValueError("allowed: " + ", ".join(repr(a) if isinstance(a, str) else str(a).lower() for a in allowed))

    return BeforeValidator(check)


#: mixed precision: `auto` picks per device and task (docs/suites.md); `true` is `auto`, `false` is off
Precision = Annotated[Literal["auto", "fp16", "bf16"] | bool, _one_of("auto", "fp16", "bf16", True, False)]
#: a speed setting the device decides unless told
Auto = Annotated[Literal["auto"] | bool, _one_of("auto", True, False)]


class TrainingOverrides(Strict):
    """Training settings; in a task or strategy, only the ones given override the defaults."""

    epochs: PositiveInt | None = None
    max_steps: PositiveInt | None = Field(None, description="stop after this many optimizer steps")
    batch_size: PositiveInt | None = None
    eval_batch_size: PositiveInt | None = None
    optimizer: Literal["sgd", "adamw"] | None = None
    lr: Annotated[float, Field(gt=0, le=10)] | None = None
    momentum: Annotated[float, Field(ge=0, lt=1)] | None = None
    weight_decay: Annotated[float, Field(ge=0, le=1)] | None = None
    schedule: Literal["cosine", "constant"] | None = None
    warmup_fraction: Annotated[float, Field(ge=0, lt=1)] | None = None
    grad_clip: Annotated[float, Field(gt=0)] | None = None
    amp: Precision | None = Field(
        None, description="mixed precision: auto (the device's default), fp16, bf16, or false (full precision)"
    )
    channels_last: Auto | None = Field(None, description="NHWC memory format for weights and images (auto: per device)")
    compile: bool | None = Field(None, description="torch.compile the training forward (compile time kept apart)")
    cudnn_benchmark: Auto | None = Field(None, description="let cuDNN time its kernels per shape (auto: on CUDA)")
    deterministic: bool | None = Field(None, description="torch deterministic algorithms (recorded in provenance)")
    no_decay_norm_bias: bool | None = Field(None, description="no weight decay on biases and normalisation weights")
    num_workers: Annotated[int, Field(ge=0, le=64)] | None = None
    threads: Annotated[int, Field(ge=1, le=512)] | None = None

    @field_validator("amp")
    @classmethod
    def _amp_true_is_auto(cls, value: Any) -> Any:
        return "auto" if value is True else value  # one spelling, one cell key


class Training(TrainingOverrides):
    """The resolved training settings of a cell (suite defaults, then task, then strategy)."""

    epochs: PositiveInt = 5
    batch_size: PositiveInt = 32
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: Annotated[float, Field(gt=0, le=10)] = 0.01
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 1e-4
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.05
    amp: Precision = "auto"
    channels_last: Auto = "auto"
    compile: bool = False
    cudnn_benchmark: Auto = "auto"
    deterministic: bool = False
    no_decay_norm_bias: bool = True
    num_workers: Annotated[int, Field(ge=0, le=64)] = 0

    def override(self, overrides: TrainingOverrides) -> Training:
        return self.model_copy(update=overrides.model_dump(exclude_none=True))


class DatasetRef(Strict):
    name: str
    options: dict[str, Any] = {}


class TaskSpec(Strict):
    name: Label
    kind: str
    dataset: DatasetRef
    metric: str | None = Field(None, description="metric to rank by; default: the task's first")
    options: dict[str, Any] = {}
    training: TrainingOverrides = TrainingOverrides()
    #: training settings given as lists (filled from `training` when the file is read)
    training_sweep: dict[str, list[Any]] = {}


class BackboneSpec(Strict):
    name: str
    label: Label | None = None
    weights: str = "none"
    options: dict[str, Any] = {}

    @property
    def id(self) -> str:
        return self.label or self.name


class StrategySpec(Strict):
    name: str
    label: Label | None = None
    options: dict[str, Any] = {}
    training: TrainingOverrides = TrainingOverrides()
    training_sweep: dict[str, list[Any]] = {}

    @property
    def id(self) -> str:
        return self.label or self.name


class PretrainSpec(Strict):
    """A backbone trained on a source task, whose checkpoint cells use as `pretrain:NAME`."""

    name: Label
    backbone: str
    kind: str = "classification"
    dataset: DatasetRef
    options: dict[str, Any] = {}
    training: TrainingOverrides = TrainingOverrides()
    seed: Seed = 0


class ExecutorSpec(Strict):
    """How cells run: `executor = "processes"`, or a table with options (`[executor] name = "ray"`)."""

    name: str = "sequential"
    options: dict[str, Any] = {}


class LoggerSpec(Strict):
    """A run logger: `loggers = ["tensorboard"]`, or a table with options (`{ name = "mlflow", options = {...} }`)."""

    name: str
    options: dict[str, Any] = {}


class Exclusion(Strict):
    task: str | None = None
    backbone: str | None = None
    strategy: str | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Exclusion:
        if self.task is None and self.backbone is None and self.strategy is None:
            raise ValueError("an exclusion names at least one of task, backbone, strategy")
        return self


class Suite(Strict):
    name: Annotated[str, AfterValidator(_safe_name)]
    output: Annotated[str, AfterValidator(_output)] | None = Field(
        None, description="results directory; default results/<name>"
    )
    seeds: Annotated[list[Seed], Field(min_length=1)] = [0]
    baseline: str | None = Field(None, description="strategy label gains are measured against")
    device: str = "auto"
    executor: ExecutorSpec = ExecutorSpec()
    #: loggers that follow the run (learning curves, metrics); not part of any cell's settings
    loggers: list[LoggerSpec] = []
    training: Training = Training()
    training_sweep: dict[str, list[Any]] = {}
    pretrain: list[PretrainSpec] = []
    tasks: Annotated[list[TaskSpec], Field(min_length=1)]
    backbones: Annotated[list[BackboneSpec], Field(min_length=1)]
    strategies: Annotated[list[StrategySpec], Field(min_length=1)]
    exclude: list[Exclusion] = []

    #: where the suite was read from (not part of the file)
    source: str = Field("<memory>", exclude=True)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        index = value[5:]  # ASCII digits only: "cuda:²" and "cuda:٣" pass str.isdigit
        if value in ("auto", "cpu", "cuda", "mps") or (
            value.startswith("cuda:") and index.isascii() and index.isdigit() and len(index) <= 4
        ):
            return value
        raise ValueError("allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")

    @field_validator("executor", mode="before")
    @classmethod
    def _executor(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("loggers", mode="before")
    @classmethod
    def _loggers(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("seeds must be distinct")
        return value

    def output_dir(self) -> Path:
        """The results directory; relative paths are relative to the working directory."""
        return Path(self.output) if self.output else Path("results") / self.name

    def training_for(self, task: TaskSpec, strategy: StrategySpec) -> Training:
        """Suite defaults, overridden by the task's settings, then by the strategy's."""
        return self.training.override(task.training).override(strategy.training)

    def training_axes(self, task: TaskSpec, strategy: StrategySpec) -> dict[str, list[Any]]:
        """The swept training settings of a task x strategy; a more specific level wins, list or not."""
        axes: dict[str, list[Any]] = {}
        for fixed, sweep in (
            (set(), self.training_sweep),
            (task.training.model_fields_set, task.training_sweep),
            (strategy.training.model_fields_set, strategy.training_sweep),
        ):
            for key in fixed:
                axes.pop(key, None)
            axes.update(sweep)
        return axes


def load_suite(path: str | Path, registry: Registry | None = None, overrides: Sequence[str | Override] = ()) -> Suite:
    """Read and fully validate a suite file; raises `SuiteError` naming file and key.

    `overrides` (`--set PATH=VALUE`, see `harness.overrides`) change the file's data before it is
    validated, so they are validated as the file is; an error then also names the overrides.
    """
    from harness.overrides import ShadowedOverride, applied, apply_overrides, parse_overrides, shadowed

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
        from harness.registry import default_registry

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


def option_axes(options: type[BaseModel], values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Split a component's options into fixed values and swept ones.

    A list is a sweep unless the option itself takes a list; then a list of lists is.
    """
    fixed, axes = {}, {}
    for key, value in values.items():
        field = options.model_fields.get(key)
        takes_list = field is not None and _accepts_list(field.annotation)
        if isinstance(value, list) and value and (not takes_list or all(isinstance(v, list) for v in value)):
            axes[key] = value
        else:
            fixed[key] = value
    return fixed, axes


def _accepts_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        return True
    if origin is Annotated:
        return _accepts_list(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_accepts_list(a) for a in typing.get_args(annotation))
    return False


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
                 names.strategies, names.teachers, names.labels):  # fmt: skip
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

    def teachers(self) -> None:
        _check_teachers(self.suite, self.registry, self.fail)

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


def _teacher_of(spec: StrategySpec, registry: Registry) -> Any:
    cls = registry.get("strategy", spec.name)
    fixed, axes = option_axes(cls.Options, spec.options)
    return cls({**fixed, **{k: v[0] for k, v in axes.items()}}).teacher()  # type: ignore[attr-defined]


def _own_key(spec: StrategySpec, registry: Registry, value: Any, usual: str, key: str) -> str:
    """The key of the strategy's own option that holds `value` (a plugin names its options as it likes)."""
    holders = [name for name, given in spec.options.items() if given == value]
    if len(holders) == 1:
        return f"{key}.{holders[0]}"
    fields = registry.get("strategy", spec.name).Options.model_fields
    return f"{key}.{usual}" if usual in fields else key


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

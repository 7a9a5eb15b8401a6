"""Settings: the typed, torch-free records of a suite and of the cells it resolves into.

A suite file is validated into `Suite` (its shape: types, ranges, unknown keys); the plan resolves
it into cells, each with a `CellSpec`: every setting the cell's result depends on, with defaults
filled in, validated once. The spec's JSON is what the cell key hashes, so the same experiment is
recognised across runs and machines. Nothing here imports torch: reading or checking a suite, or a
cell's settings, costs a pydantic import.
"""

from __future__ import annotations

import hashlib
import json
import math
import stat
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from harness.search_spec import SearchSpec

#: `Field(json_schema_extra=OMITTED_AT_DEFAULT)`: a component's option or a training setting is left out of a
#: cell's settings (and key) while it has its default. For one added in a later release whose default is the
#: old behaviour: every cell stored before keeps its key, and setting it makes new cells.
OMITTED_AT_DEFAULT: dict[str, Any] = {"omitted_at_default": True}

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
    select_epoch: Literal["last", "best_val"] | None = Field(
        None, description="the epoch whose model is tested: the last, or the one with the best validation metric"
    )

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
    select_epoch: Annotated[Literal["last", "best_val"], Field(json_schema_extra=OMITTED_AT_DEFAULT)] = "last"

    def override(self, overrides: TrainingOverrides) -> Training:
        return self.model_copy(update=overrides.model_dump(exclude_none=True))

    def as_json(self) -> dict[str, Any]:
        """The settings as a cell's settings hold them: those marked `OMITTED_AT_DEFAULT` left out at their default."""
        data = self.model_dump()
        for name, info in type(self).model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and extra.get("omitted_at_default") and data[name] == info.default:
                del data[name]
        return data


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
    #: this strategy's search over the suite's `[search]` (its fields win, its space adds paths); false: none
    search: SearchSpec | None = None

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
    #: the default search of every strategy (`harness.search_spec`); None: strategies run as given
    search: SearchSpec | None = None

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

    def search_for(self, strategy: StrategySpec) -> SearchSpec | None:
        """The search a strategy is tuned by: the suite's default under its own table; None: not searched."""
        if strategy.search is not None and not strategy.search.enabled:
            return None
        if strategy.search is None:
            merged = self.search
        else:
            merged = self.search.merged(strategy.search) if self.search is not None else strategy.search
        return merged.with_seed(self.seeds) if merged is not None and merged.space else None

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


# --- a cell's resolved settings --------------------------------------------------------------

#: bump when a change makes old results incomparable
SETTINGS_VERSION = 3


def settings_key(settings: dict[str, Any]) -> str:
    """The cell key: a hash of the settings' JSON (sorted keys, no spaces), so equal settings share it."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Resolved(BaseModel):
    """A part of a cell's settings: every value given or defaulted, validated once when the suite is planned."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSettings(Resolved):
    name: str
    #: the dataset's options with their defaults (JSON)
    options: dict[str, Any] = {}


class TaskSettings(Resolved):
    kind: str
    dataset: DatasetSettings
    #: the task's options with their defaults (JSON)
    options: dict[str, Any] = {}
    #: the metric the cell is ranked and its best epoch chosen by
    metric: str


class BackboneSettings(Resolved):
    name: str
    #: where the weights come from, as an identity: "none", "named:NAME@FILE", "pretrain:STAGE@KEY", "file:PATH#SHA"
    weights: str = "none"
    options: dict[str, Any] = {}

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "weights": self.weights, "options": self.options}


class StrategySettings(Resolved):
    name: str
    #: the strategy's options with their defaults (JSON)
    options: dict[str, Any] = {}
    #: the resolved BatchNorm policy (None for a pretraining stage, which has none in its key)
    batchnorm: str | None = None
    #: the identity of the checkpoint a distillation teacher is read from, when it is a file
    teacher_checkpoint: str | None = None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "options": self.options}
        if self.batchnorm is not None:
            data["batchnorm"] = self.batchnorm
        if self.teacher_checkpoint is not None:
            data["teacher_checkpoint"] = self.teacher_checkpoint
        return data


class TeacherSettings(Resolved):
    """A cell whose trained model another one uses (a distillation teacher, a soup's ingredient): its
    key, and the backbone and strategy its saved model needs; `seed` for an input (not for a teacher)."""

    key: str
    backbone: BackboneSettings
    strategy: StrategySettings
    seed: int | None = None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"key": self.key, "backbone": self.backbone.as_json()}
        data["strategy"] = self.strategy.as_json()
        if self.seed is not None:
            data["seed"] = self.seed
        return data


class CellSpec(Resolved):
    """Everything a cell's result depends on; its JSON is what the cell key hashes."""

    version: int = SETTINGS_VERSION
    task: TaskSettings
    backbone: BackboneSettings
    strategy: StrategySettings
    training: Training
    seed: int
    #: the cell whose trained model this one learns from (distillation), if any
    teacher: TeacherSettings | None = None
    #: the cells whose trained models this one uses (`Strategy.inputs`, e.g. a soup's ingredients)
    inputs: list[TeacherSettings] = []

    def as_json(self) -> dict[str, Any]:
        """The settings as stored with the result and hashed into the key (the same JSON since version 3)."""
        data: dict[str, Any] = {
            "version": self.version,
            "task": self.task.model_dump(),
            "backbone": self.backbone.as_json(),
            "strategy": self.strategy.as_json(),
            "training": self.training.as_json(),
            "seed": self.seed,
        }
        if self.teacher is not None:
            data["teacher"] = self.teacher.as_json()
        if self.inputs:  # absent when empty, so cells without inputs keep their keys
            data["inputs"] = [cell.as_json() for cell in self.inputs]
        return data

    @property
    def key(self) -> str:
        return settings_key(self.as_json())


def step_budget(training: Training, steps_per_epoch: int) -> tuple[int, int]:
    """(optimizer steps, epochs) of a cell: `epochs` full passes, cut at `max_steps` if given."""
    total = training.epochs * steps_per_epoch
    if training.max_steps is not None:
        total = min(total, training.max_steps)
    return total, math.ceil(total / steps_per_epoch)

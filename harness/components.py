"""The component kinds plugins provide: backbones, tasks, datasets, strategies, executors, reporters.

Each component is a class with a unique `name` and an optional pydantic `Options` model;
the harness validates a suite's options against `Options` before anything runs and hands
the validated object to the constructor.
"""

from __future__ import annotations

import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, model_validator
from torch import nn

from harness.batchnorm import BatchNormPolicy, apply_batchnorm_policy
from harness.errors import Unsupported
from harness.settings import OMITTED_AT_DEFAULT as OMITTED_AT_DEFAULT  # marks a component's option the same way

if TYPE_CHECKING:
    from harness.devices import DeviceSetup
    from harness.events import Observer
    from harness.job import Job, JobOutcome
    from harness.report import Report

#: what an executor is given to run a job in this process, with the run's own plugins, its events to the observer
JobRunner = Callable[["Job", "Observer"], "JobOutcome"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Options(BaseModel):
    """Base for component options: unknown keys are errors, not silently ignored; nothing is coerced.

    Strict mode: `rank = "8"` or `dropout = true` is refused, an integer is still taken where a
    float is expected, and (TOML and JSON having no tuples) a list where a tuple is.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _lists_as_tuples(cls, data: Any) -> Any:
        if isinstance(data, dict):
            tuples = {key for key, field in cls.model_fields.items() if _takes_tuple(field.annotation)}
            if tuples & data.keys():
                data = {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in data.items()}
        return data


def _takes_tuple(annotation: Any) -> bool:
    """Whether an option's type is a tuple (or an optional one)."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return True
    if origin is typing.Annotated:
        return _takes_tuple(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_takes_tuple(a) for a in typing.get_args(annotation))
    return False


class NoOptions(Options):
    """For components that take no options."""


class Component(ABC):
    """Common shape of every plugin component: a name, an options model, validated options."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel | dict[str, Any] | None = None) -> None:
        if options is None or isinstance(options, dict):
            options = self.Options(**(options or {}))
        self.options = options


# --- backbones -----------------------------------------------------------------------------


class BackboneModule(nn.Module):
    """A network cut into ordered stages, input to output; forward returns every stage's output.

    Tasks and strategies see only this shape, so one strategy serves every backbone and task.
    """

    def __init__(
        self,
        stages: Sequence[nn.Module],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        probe_size: int = 64,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.channels, self.strides = self._probe(probe_size)

    def _probe(self, size: int) -> tuple[list[int], list[int]]:
        """Channels and strides of each stage, read off one small forward pass."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            outs = self(torch.zeros(1, 3, size, size))
        self.train(was_training)
        return [o.shape[1] for o in outs], [max(1, round(size / o.shape[-1])) for o in outs]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


@dataclass(frozen=True)
class NamedWeights:
    """Published pretrained weights a backbone offers by name (e.g. torchvision's `IMAGENET1K_V2`)."""

    name: str
    url: str
    #: the file name in the torch hub cache (`<hub>/checkpoints/<filename>`)
    filename: str
    description: str = ""


class Backbone(Component):
    """Builds a `BackboneModule` and turns foreign checkpoints into its state-dict layout."""

    #: Output strides this backbone can be built with (via dilation of the last stages).
    output_strides: ClassVar[tuple[int, ...]] = (32,)
    #: Why this backbone's stages cannot feed a dense-prediction head (detection, segmentation); "" if they can.
    no_dense_prediction: ClassVar[str] = ""

    def named_weights(self) -> dict[str, NamedWeights]:
        """Weights by name, `DEFAULT` included as an alias of the recommended ones; none by default."""
        return {}

    @abstractmethod
    def build(self, output_stride: int = 32) -> BackboneModule: ...

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a checkpoint in another layout (e.g. torchvision's) onto `stages.*` keys."""
        raise ValueError(f"backbone {self.name!r} only reads checkpoints with 'stages.*' keys")


# --- tasks ---------------------------------------------------------------------------------


class TaskModel(nn.Module):
    """A backbone plus the new parts a task adds; every parameter is in exactly one of the two."""

    backbone: BackboneModule
    head: nn.Module


Batch = Any


class Task(Component):
    """A task kind: wraps any backbone into a task model, computes its loss and its metrics."""

    #: Metrics this task reports; the first is the default a suite ranks by.
    metrics: ClassVar[tuple[str, ...]]
    #: Those of `metrics` where lower is better (classification: `ece`): the best epoch, the report's
    #: ranks, gains, trivial comparison and Pareto marks, and `bench compare`'s regressions read them so.
    lower_is_better: ClassVar[tuple[str, ...]] = ()

    #: Whether the head reads a dense feature map (detection, segmentation) rather than a pooled vector.
    dense: ClassVar[bool] = False

    #: what `training.amp = "auto"` trains in on a GPU with bfloat16: "bf16" (float32's range, no
    #: gradient scaler) or "fp16" with a gradient scaler (detection: bfloat16's 8-bit mantissa is too
    #: coarse for box regression targets); GPUs without bfloat16 always get fp16
    preferred_amp: ClassVar[Literal["bf16", "fp16"]] = "fp16"
    #: whether `training.channels_last = "auto"` trains in channels_last on CUDA (convolutions over
    #: one 4-D batch; not where the model batches images itself, as Faster R-CNN does)
    channels_last: ClassVar[bool] = False

    def check(self, backbone: Backbone) -> str | None:
        """Why this task cannot wrap `backbone`, or None when it can."""
        return (backbone.no_dense_prediction or None) if self.dense else None

    def output_stride(self) -> int:
        return 32

    def reported_metrics(self, num_classes: int | None = None) -> tuple[str, ...]:
        """The metrics `evaluate` reports with these options and `num_classes` classes (None: any
        number), so a suite ranking by one it never reports fails when it loads, not after training."""
        return self.metrics

    def better(self, metric: str, value: float, than: float) -> bool:
        """Whether `value` of `metric` is strictly better than `than`: lower for `lower_is_better`, else higher."""
        return value < than if metric in self.lower_is_better else value > than

    @abstractmethod
    def build_model(self, backbone: BackboneModule, num_classes: int) -> TaskModel: ...

    @abstractmethod
    def collate(self, samples: list[Any]) -> Batch: ...

    @abstractmethod
    def to_device(self, batch: Batch, device: torch.device) -> Batch: ...

    @abstractmethod
    def batch_size(self, batch: Batch) -> int: ...

    @abstractmethod
    def loss(self, model: TaskModel, batch: Batch) -> torch.Tensor:
        """The training loss of one batch (model in train mode)."""
        ...

    @abstractmethod
    def evaluate(self, model: TaskModel, batches: Iterator[Batch], num_classes: int) -> dict[str, float | None]:
        """Metrics over all batches (model in eval mode, gradients off); None where a metric is
        undefined on this data (e.g. detection mAP without ground truth)."""
        ...

    #: what `distillation_loss` compares, e.g. "logits"; "" when the task has none (distill skips it)
    distilled: ClassVar[str] = ""

    def distillation_loss(self, outputs: Any, teacher: TaskModel, batch: Batch, temperature: float) -> torch.Tensor:
        """The loss of the student's `outputs` (from `loss_and_outputs`) toward the teacher's on the
        same `batch` (on the device; the teacher in eval mode), computed without the teacher's gradients."""
        raise Unsupported(f"task {self.name!r} has no distillation loss (Task.distillation_loss)")

    def synthetic_samples(self, size: int, num_classes: int, count: int) -> list[Any]:
        """`count` random samples as a dataset of this kind yields them (images in [0, 1], `size` px,
        with targets), for `collate`: what `bench plan` counts FLOPs on and `--calibrate` trains on.
        A task without them gets neither (the plan says why), and nothing else changes."""
        raise Unsupported(f"task {self.name!r} makes no synthetic samples (Task.synthetic_samples)")

    def evaluate_per_image(
        self, model: TaskModel, batches: Iterator[Batch], num_classes: int
    ) -> tuple[dict[str, float | None], dict[str, list[float]]]:
        """`evaluate`'s metrics and, for each metric that is the mean of a score per image (top-1:
        1 if the image is classified right), those scores in the split's order. The report's interval
        then resamples test images and seeds together (a bootstrap) instead of seeds alone. Override
        it where a metric is such a mean; the default stores no per-image scores."""
        return self.evaluate(model, batches, num_classes), {}

    #: what `trivial` predicts, for the report's footer (e.g. "majority class"); "" when it has none
    trivial_predictor: ClassVar[str] = ""

    def trivial(self, batches: Iterator[Batch], num_classes: int) -> dict[str, float | None]:
        """The metrics of a predictor that never looks at an image (the majority class, no detections),
        from the targets of `batches` (the test split) alone and with `evaluate`'s own metric code;
        the report marks rows that do not beat it. {} when the task has no trivial predictor."""
        return {}

    def loss_and_outputs(self, model: TaskModel, batch: Batch) -> tuple[torch.Tensor, Any]:
        """The training loss and the outputs it came from, which a strategy's `extra_loss` may read
        (classification: logits; segmentation: per-pixel logits; detection: `{"losses", "features"}`).
        Tasks without outputs worth sharing keep this default: (loss, None)."""
        return self.loss(model, batch), None

    def min_train_batch(self) -> int:
        return 1

    # --- training the head on cached backbone features (optional) ---

    def feature_cache_problem(self) -> str | None:
        """Why this task's head cannot train on cached backbone features, or None when it can
        (then `head_samples` and `head_model` are implemented)."""
        return f"the {self.name} task does not cache backbone features"

    def head_samples(self, model: TaskModel, batch: Batch) -> list[Any]:
        """Per sample of `batch`, what the head reads from the backbone and the target, in a shape
        `collate` takes; computed once (backbone frozen, eval mode, gradients off)."""
        raise NotImplementedError

    def head_model(self, model: TaskModel) -> TaskModel:
        """A model sharing `model`'s head that reads batches of `head_samples` instead of images."""
        raise NotImplementedError


# --- datasets ------------------------------------------------------------------------------


class Dataset(Component):
    """A source of labelled images for one or more task kinds, split into train / val / test.

    Samples are `(image, target)` with the image a float tensor in [0, 1] (C, H, W); the
    target is a class index (classification), a dict with `boxes` (xyxy) and `labels`
    in 0..C-1 (detection), or an int64 mask with 255 as void (segmentation).
    """

    kinds: ClassVar[tuple[str, ...]]
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    @abstractmethod
    def load(self, kind: str, split: str) -> torch.utils.data.Dataset: ...

    @abstractmethod
    def class_names(self, kind: str) -> list[str]: ...

    def shape(self, kind: str) -> tuple[dict[str, int], int]:
        """(images per split, number of classes), for planning; reads the data unless told otherwise."""
        return {split: len(self.load(kind, split)) for split in self.splits}, len(self.class_names(kind))  # type: ignore[arg-type]

    def deterministic(self, kind: str, split: str) -> bool:
        """Whether `split` yields the same tensors for a sample every time it is read (no random
        augmentation), so features computed from it once can stand for every epoch."""
        return False

    def data_report(self, kind: str, split: str) -> dict[str, Any]:
        """What loading `split` changes in its annotations, counted deterministically (e.g.
        `{"train_boxes_dropped": 3}`); the runner records the training split's in the cell's `data`."""
        return {}


# --- strategies ----------------------------------------------------------------------------


@dataclass
class ParamGroup:
    """An optimizer parameter group of a strategy: its parameters at `lr_scale` times the base rate.

    `weight_decay` (absolute) and `no_decay_norm_bias` (whether its biases and normalisation weights go
    without weight decay) replace the suite's settings for this group when given. A group may hold
    parameters that are frozen now and unfrozen later (gradual unfreezing): the optimizer skips a
    parameter while it has no gradient.
    """

    params: list[nn.Parameter]
    lr_scale: float = 1.0
    name: str = ""
    weight_decay: float | None = None
    no_decay_norm_bias: bool | None = None


class StrategyOptions(Options):
    """Options every strategy has; a strategy's own `Options` should subclass this."""

    #: BatchNorm running statistics: update them everywhere (`train`), keep them fixed in
    #: BatchNorm layers whose affine parameters do not train (`frozen_parts`), or keep them
    #: fixed everywhere (`freeze`). Default: the strategy's `default_batchnorm`.
    batchnorm: BatchNormPolicy | None = None


@dataclass(frozen=True)
class TeacherRef:
    """The trained model a strategy learns from (distillation).

    `backbone` and `strategy` are labels of this suite: the teacher is that cell on the same
    task and seed. With `checkpoint`, the teacher is instead `backbone` (a registered backbone
    name) with the task-model weights in that file.
    """

    backbone: str
    strategy: str = "full"
    checkpoint: str | None = None


@dataclass(frozen=True)
class CellRef:
    """Another cell of the suite whose trained model a strategy uses (`Strategy.inputs`): the cell of
    strategy label `strategy` on the same task, with backbone label `backbone` and seed `seed`, each the
    asking cell's own when None. A swept strategy label names every one of its settings."""

    strategy: str
    backbone: str | None = None
    seed: int | None = None


@dataclass(frozen=True)
class CellInput:
    """The trained model of a cell a strategy asked for (`TrainingContext.inputs`), loaded on demand:
    `load()` builds it (wrapped as its strategy wrapped it) on the cell's device, in eval mode, frozen."""

    key: str
    strategy: str
    options: dict[str, Any]
    seed: int
    load: Callable[[], TaskModel]


@dataclass(frozen=True)
class TrainingContext:
    """What a strategy may want to know about the cell it trains, passed to every callback that asks
    for it (a `context` parameter). Read-only: the loop hands what changes (the `optimizer`, the
    `schedule`, the `notes` to record) to the callbacks that ask for them by name."""

    task: Task
    device: torch.device
    steps_per_epoch: int
    total_steps: int
    #: the teacher model (eval mode, on `device`) when `teacher()` asked for one
    teacher: TaskModel | None = None
    epochs: int = 0
    #: the training split, shuffled and seeded as the loop sees it (e.g. to recompute BatchNorm statistics)
    train_loader: torch.utils.data.DataLoader | None = None
    num_classes: int = 0
    #: runs a block under the cell's mixed precision (a no-op on the CPU)
    autocast: Any = None
    #: the dataset component the loaders read (e.g. whether its training split is deterministic)
    dataset: Dataset | None = None
    #: the trained models of the cells `Strategy.inputs` named, in that order (e.g. a soup's ingredients)
    inputs: tuple[CellInput, ...] = ()


@dataclass
class FitOutcome:
    """What training produced: the curve, the best epoch, the test metrics, the timings (`Loop.run`)."""

    curve: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    samples: int = 0
    steps: int = 0
    #: the optimizer as training left it (its groups, learning rates and state)
    optimizer: torch.optim.Optimizer | None = None
    #: test-split metrics of the evaluated model (empty when the loop ran without a test split)
    metrics: dict[str, float | None] = field(default_factory=dict)
    #: per-image test scores of the metrics that are means over images (`Task.evaluate_per_image`)
    per_image: dict[str, list[float]] = field(default_factory=dict)
    #: the model that was validated last and tested: the trained one, or what `on_train_end` returned
    model: TaskModel | None = None
    #: of `train_seconds`, the time the loop waited for the next batch (loading and copying it)
    data_wait_seconds: float = 0.0
    #: the steps left out of `samples_per_second` (allocator, kernel selection, compilation)
    warmup_steps: int = 0
    #: training samples per second after the warm-up steps, data wait excluded
    samples_per_second: float = 0.0
    #: the first compiled step's time beyond an ordinary step's (not in `train_seconds`)
    compile_seconds: float = 0.0


class Loop(Protocol):
    """What `Strategy.fit` is handed: the cell's training loop (`harness.TrainingLoop`)."""

    #: the cell's model, as the strategy prepared it
    model: TaskModel
    task: Task
    strategy: Strategy
    context: TrainingContext
    #: the device and its speed settings (precision, memory format)
    setup: DeviceSetup
    #: "train", "val" and "test"
    loaders: dict[str, torch.utils.data.DataLoader]
    #: what the strategy wants recorded with the result, e.g. {"feature_cache": "used"}
    notes: dict[str, Any]

    @property
    def metric(self) -> str:
        """The metric the cell is ranked by (and its best epoch chosen by)."""
        ...

    def run(
        self,
        *,
        model: TaskModel | None = None,
        loaders: dict[str, torch.utils.data.DataLoader] | None = None,
        train_seconds: float = 0.0,
        eval_seconds: float = 0.0,
        train: bool = True,
    ) -> FitOutcome:
        """Train, validate after every epoch, test (`harness.TrainingLoop.run`); `train=False` only
        validates and tests `model` (a model made without training, e.g. a soup)."""
        ...

    def evaluate(self, model: TaskModel, split: str) -> dict[str, float | None]:
        """Metrics of `model` on `split` ("val" or "test")."""
        ...


class Strategy(Component):
    """Decides what trains and how: which parameters, at which learning rates, in which mode, and
    what happens around the steps (the lifecycle, in docs/writing-plugins.md).

    Every callback receives the model and its counter positionally; anything else only when its
    signature names it, so a callback asks for what it uses and strategies written for fewer
    arguments keep working. Every training callback may ask for `context` (read-only), `optimizer`,
    `schedule` and `notes` (a dict recorded with the result); some offer more (`batch`, `outputs`,
    `loss`, `train_loss`, `grad_scale`).
    (The `*args, **kwargs` below only let an override name any of them; nothing is passed there.)
    """

    Options: ClassVar[type[BaseModel]] = StrategyOptions
    options: StrategyOptions

    #: True when the strategy ignores pretrained weights and starts from random ones.
    from_scratch: ClassVar[bool] = False
    #: the BatchNorm policy when the suite does not set `batchnorm`
    default_batchnorm: ClassVar[BatchNormPolicy] = "train"

    #: the same context as the callbacks' `context` argument (kept for strategies written before it)
    context: TrainingContext | None = None

    def check(self, task_kind: str, *args: Any, **kwargs: Any) -> str | None:
        """Why this strategy cannot run on `task_kind` (may also ask for `backbone`: the Backbone
        component, and `task`: the Task), or None when it can. Called when the suite is planned."""
        return None

    def teacher(self) -> TeacherRef | None:
        """The trained model this strategy learns from, if any; the runner provides it as `context.teacher`."""
        return None

    def inputs(self, *args: Any, **kwargs: Any) -> list[CellRef]:
        """The other cells whose trained models this strategy uses (e.g. a soup's ingredients); they run
        first, keep their models, and arrive as `context.inputs`. Called when the suite is planned; may
        ask for `seeds` (the suite's seeds) and `seed` (the asking cell's)."""
        return []

    @abstractmethod
    def prepare(self, model: TaskModel, *args: Any, **kwargs: Any) -> list[ParamGroup]:
        """Set `requires_grad` (and wrap modules if need be); return the optimizer's parameter groups.
        May ask for `context`."""
        ...

    def batchnorm_policy(self) -> BatchNormPolicy:
        return self.options.batchnorm or self.default_batchnorm

    def train_mode(self, model: TaskModel) -> None:
        """Called after `model.train()`: applies the BatchNorm policy. Call it again after unfreezing."""
        apply_batchnorm_policy(model, self.batchnorm_policy())

    def fit(self, loop: Loop) -> FitOutcome:
        """The whole of training and evaluation; override only to change the loop itself (the cached
        linear probe trains its head on stored features). Must return `loop.run(...)`'s outcome."""
        return loop.run()

    def on_epoch_start(self, model: TaskModel, epoch: int, *args: Any, **kwargs: Any) -> None:
        """Before each epoch (0-based), before `model.train()`. May ask for `context`."""

    def on_step_start(self, model: TaskModel, step: int, *args: Any, **kwargs: Any) -> None:
        """Before each optimizer step (0-based, counted over the whole run). May ask for `context`."""

    def take_step(
        self, model: TaskModel, closure: Callable[[], torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """The gradients of one optimizer step; returns the loss to record.

        `closure()` zeroes the gradients, computes the task's loss plus `extra_loss` under the cell's
        precision and back-propagates it through the grad scaler; call it once (the default) or more
        (SAM: at the weights, then at perturbed weights, restoring them before returning). After it
        the loop unscales the gradients, clips them (`grad_clip`), steps the optimizer through the
        grad scaler, and the schedule. Gradients read here are scaled by `grad_scale()` (1.0 without
        fp16). The FLOPs of a step are counted through this method, so a second pass is counted.
        May ask for `optimizer`, `grad_scale` and `context`."""
        return closure()

    def extra_loss(self, model: TaskModel, *args: Any, **kwargs: Any) -> torch.Tensor | None:
        """A term added to the task loss of the step, or None. May ask for `batch` (on the device),
        `outputs` (the task's outputs for it, see `Task.loss_and_outputs`) and `context`."""
        return None

    def on_step_end(self, model: TaskModel, step: int, *args: Any, **kwargs: Any) -> None:
        """After the optimizer and schedule stepped (gradients still there). May ask for
        `optimizer`, `loss` (the step's loss, a tensor) and `context`."""

    def on_epoch_end(self, model: TaskModel, epoch: int, *args: Any, **kwargs: Any) -> None:
        """After the epoch's last step, before its validation; model in train mode. May ask for
        `train_loss` and `context`."""

    def on_train_end(self, model: TaskModel, *args: Any, **kwargs: Any) -> TaskModel | None:
        """After the last step, before the final validation and the test split: return the model to
        evaluate (e.g. an average of weights), or None for `model` itself (whose weights it may change
        in place). May ask for `context`."""
        return None


# --- loggers -------------------------------------------------------------------------------


class Logger(Component):
    """Follows runs for a tracking tool (TensorBoard, MLflow): an object whose methods are event
    hook implementations (`@hookimpl def bench_epoch_finished(...)`), registered for one run.

    `output` is the run's results folder, a default place for the tool's files.
    """

    def __init__(self, options: BaseModel | dict[str, Any] | None = None, output: Path | None = None) -> None:
        super().__init__(options)
        self.output = output

    def available(self) -> str | None:
        """Why this logger cannot run here (its extra is not installed), or None."""
        return None

    def close(self) -> None:
        """The run is over, finished or interrupted: flush and close what is open."""


# --- executors and reporters ---------------------------------------------------------------


class Executor(Component):
    """Runs jobs somewhere (this process, worker processes, a cluster) and hands back each outcome.

    The harness's scheduler decides *when* a job may run (its dependencies are `ok`, nobody else
    claims it) and submits at most `slots` jobs at a time; the executor decides *where*, and runs
    each with `harness.job.run_job`, which claims the job and writes its result to the store.
    """

    #: jobs cross a process boundary, so extra plugins must be importable there
    portable: ClassVar[bool] = False

    def start(self, observer: Observer, run_here: JobRunner) -> None:
        """Acquire workers; progress events from them go to `observer.slot(n)`. `run_here(job, observer)`
        runs a job in this process with the plugins the suite was planned with (an in-process executor's
        way to run); other processes call `harness.run_job_safely(job, observer=...)`, which rebuilds them."""

    @property
    def slots(self) -> int:
        """How many jobs may run at once."""
        return 1

    @abstractmethod
    def submit(self, job: Job) -> None:
        """Start `job` on a free slot (the scheduler never submits more than `slots`)."""

    @abstractmethod
    def wait(self, timeout: float | None) -> list[JobOutcome]:
        """Outcomes of finished jobs: at least one, or none after `timeout` seconds (None: no limit)."""

    def close(self) -> None:
        """Release workers; also called after an interruption."""

    def describe(self) -> str:
        """How this executor runs jobs, for the run summary (e.g. 'processes: 2 slots on cpu')."""
        return f"{self.name}: {self.slots} slot{'s' * (self.slots != 1)}"


class Reporter(Component):
    """Renders a report into one output format."""

    suffix: ClassVar[str] = ".txt"

    @abstractmethod
    def render(self, report: Report) -> str: ...


COMPONENT_KINDS: dict[str, type[Component]] = {
    "backbone": Backbone,
    "task": Task,
    "dataset": Dataset,
    "strategy": Strategy,
    "executor": Executor,
    "reporter": Reporter,
    "logger": Logger,
}

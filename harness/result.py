"""CellResult: what one run of a cell produced, as it is written to the store."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.cell import Cell, cell_label

Status = Literal["ok", "failed", "diverged", "skipped"]
STATUSES: tuple[str, ...] = ("ok", "failed", "diverged", "skipped")


@dataclass
class Cost:
    """What a cell cost. Seconds are wall-clock; device seconds equal wall seconds on one device."""

    wall_seconds: float = 0.0
    #: training: compute plus data wait, compilation excluded (what the ROI divides by)
    train_seconds: float = 0.0
    #: of `train_seconds`, the time spent waiting for the next batch (loading, collating, copying)
    data_wait_seconds: float = 0.0
    #: one-off torch.compile time, not in `train_seconds`
    compile_seconds: float = 0.0
    eval_seconds: float = 0.0
    train_samples: int = 0
    train_steps: int = 0
    #: training samples per second of compute, after `warmup_steps` and without data wait
    samples_per_second: float = 0.0
    warmup_steps: int = 0
    #: the host's 1-minute load average when the cell started and ended, and the cores it had:
    #: a load well above the cores means something else shared the machine and the timing is doubtful
    load_start: float | None = None
    load_end: float | None = None
    cores: int = 0
    peak_memory_bytes: int = 0
    #: the cell's own peak: CUDA max allocated since the cell started ("cuda_max_allocated"), or on the
    #: CPU the highest resident size above the cell's starting one, sampled every 2 ms ("cell_peak_rss")
    peak_memory_kind: str = ""
    trainable_params: int = 0
    total_params: int = 0
    flops_per_sample: float | None = None
    #: training device seconds of the cells whose models this one uses (its teacher, its inputs), and
    #: of those they used: what the report adds to `train_seconds` for the ROI
    upstream_seconds: float = 0.0
    device: str = ""
    device_name: str = ""


@dataclass
class CellResult:
    key: str
    status: Status
    task: str
    backbone: str
    strategy: str
    seed: int
    settings: dict[str, Any]
    #: the swept values of this cell ("" without sweeps)
    setting: str = ""
    #: final test metrics (None: undefined on the test split)
    metrics: dict[str, float | None] = field(default_factory=dict)
    #: per-image test scores of the metrics that are a mean over images (top-k: 1 per image classified
    #: right), in the test split's order; the report bootstraps its interval from them. {} for other metrics
    per_image: dict[str, list[float]] = field(default_factory=dict)
    #: those of `metrics` where lower is better (`Task.lower_is_better`, e.g. ece); the report and
    #: `bench compare` rank them so. [] in results written before it was recorded (all higher-is-better)
    lower_is_better: list[str] = field(default_factory=list)
    #: the test metrics of the task's trivial predictor (majority class, no detections), which a row must beat;
    #: {} in results written before it was recorded
    trivial: dict[str, float | None] = field(default_factory=dict)
    #: what that trivial predictor predicts, e.g. "majority class"
    trivial_predictor: str = ""
    #: best validation value of the ranking metric and its epoch
    best: dict[str, Any] = field(default_factory=dict)
    #: one entry per epoch: {"epoch", "step", "train_loss", "val": {metric: value}}
    curve: list[dict[str, Any]] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)
    reason: str | None = None
    traceback: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    #: what the data pipeline changed in the data, e.g. {"train_boxes_dropped": 3}
    data: dict[str, Any] = field(default_factory=dict)
    #: what the strategy recorded about how it trained, e.g. {"feature_cache": "used"}
    notes: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""

    @property
    def label(self) -> str:
        return cell_label(self.task, self.backbone, self.strategy, self.setting, self.seed)

    @classmethod
    def for_cell(cls, cell: Cell, status: Status, **fields: Any) -> CellResult:
        """A result carrying the cell's key, labels and settings."""
        labels = (
            cell.key,
            status,
            cell.task,
            cell.backbone,
            cell.strategy,
            cell.seed,
            cell.settings.as_json(),
            cell.setting,
        )
        return cls(*labels, **fields)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellResult:
        data = dict(data)
        data.pop("schema", None)  # the store's document version (harness.store.SCHEMA)
        data["cost"] = Cost(**data.get("cost", {}))
        return cls(**data)


@dataclass
class RunSummary:
    """What a suite run did: counts by status, what was reused, and how the executor spread the work."""

    output: Path
    total: int
    reused: int
    executor: str = "sequential"
    statuses: Counter[str] = field(default_factory=Counter)
    #: cells another `bench run` finished while this one was running
    elsewhere: int = 0
    #: cells run per executor slot
    per_slot: Counter[int] = field(default_factory=Counter)
    pretrained: int = 0
    #: why the run stopped before its end (a result it could not write), or None
    stopped: str | None = None

    @property
    def failed(self) -> int:
        return self.statuses["failed"] + self.statuses["diverged"]

    def describe(self) -> str:
        """What was reused, and what this run's executor did, slot by slot (the end of `bench run`)."""
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.statuses.items())) or "nothing to run"
        lines = [f"{self.total} cells: {self.reused} already done, this run: {counts}"]
        ran = sum(self.per_slot.values())
        if ran or self.pretrained:
            slots = ", ".join(f"slot {slot}: {n}" for slot, n in sorted(self.per_slot.items()))
            stages = f"; {self.pretrained} pretraining stage{'s' * (self.pretrained != 1)}" if self.pretrained else ""
            lines.append(f"{self.executor} ran {ran} cell{'s' * (ran != 1)} ({slots}){stages}")
        if self.elsewhere:
            lines.append(f"{self.elsewhere} cells were run by another `bench run` on the same results at the same time")
        return "\n".join(lines)

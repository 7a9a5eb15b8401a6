"""A task kind the core has never heard of, from a plugin: planned, estimated, run, reported, no core edit.

The plugin below (written to a temporary directory and loaded through BENCH_PLUGINS, as a
third party's module would be) adds a `regression` task (predict an image's brightness, scored
by R²) and a `brightness` dataset for it. Its defaults for precision, memory format and the
synthetic batch of the estimate are its own.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd

from harness.store import Store
from tests.conftest import to_toml

PLUGIN = '''
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import R2Score

from harness import BackboneModule, Dataset, Options, Task, TaskModel, hookimpl


class RegressionModel(TaskModel):
    def __init__(self, backbone: BackboneModule) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(backbone.channels[-1], 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images)[-1]).squeeze(1)


class Regression(Task):
    """Predict one number per image; R² on the test split."""

    name = "regression"
    metrics = ("r2",)
    preferred_amp = "bf16"

    def build_model(self, backbone: BackboneModule, num_classes: int) -> TaskModel:
        return RegressionModel(backbone)

    def collate(self, samples: list[Any]) -> Any:
        return torch.stack([image for image, _ in samples]), torch.tensor([float(t) for _, t in samples])

    def to_device(self, batch: Any, device: torch.device) -> Any:
        return tuple(t.to(device) for t in batch)

    def batch_size(self, batch: Any) -> int:
        return len(batch[1])

    def loss(self, model: TaskModel, batch: Any) -> torch.Tensor:
        images, targets = batch
        return F.mse_loss(model(images).float(), targets)

    def evaluate(self, model: TaskModel, batches: Any, num_classes: int) -> dict[str, float | None]:
        r2 = R2Score()
        for images, targets in batches:
            r2.update(model(images).float().cpu(), targets.cpu())
        return {"r2": float(r2.compute())}

    def synthetic_samples(self, size: int, num_classes: int, count: int) -> list[Any]:
        return [(torch.rand(3, size, size), float(torch.rand(()))) for _ in range(count)]


class BrightnessOptions(Options):
    image_size: int = 32
    train: int = 48
    val: int = 16
    test: int = 24


class BrightnessSplit(torch.utils.data.Dataset):
    def __init__(self, count: int, size: int, offset: int) -> None:
        self.count, self.size, self.offset = count, size, offset

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self.count:
            raise IndexError(index)
        generator = torch.Generator().manual_seed(self.offset + index)
        level = float(torch.rand((), generator=generator))
        image = (level + 0.1 * torch.randn(3, self.size, self.size, generator=generator)).clamp(0, 1)
        return image, level


class Brightness(Dataset):
    """Noisy grey images; the target is their brightness."""

    name = "brightness"
    kinds = ("regression",)
    Options = BrightnessOptions
    options: BrightnessOptions

    def load(self, kind: str, split: str) -> torch.utils.data.Dataset:
        offset = {"train": 0, "val": 10_000, "test": 20_000}[split]
        return BrightnessSplit(int(getattr(self.options, split)), self.options.image_size, offset)

    def class_names(self, kind: str) -> list[str]:
        return ["brightness"]

    def shape(self, kind: str) -> tuple[dict[str, int], int]:
        return {split: int(getattr(self.options, split)) for split in self.splits}, 1

    def deterministic(self, kind: str, split: str) -> bool:
        return True


@hookimpl
def bench_tasks() -> list[type[Task]]:
    return [Regression]


@hookimpl
def bench_datasets() -> list[type[Dataset]]:
    return [Brightness]
'''


def _bench(arguments: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "BENCH_PLUGINS": "bench_regression", "COLUMNS": "200"}
    command = [sys.executable, "-m", "harness", *arguments]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_a_fourth_task_kind_from_a_plugin_plans_runs_and_reports(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "bench_regression.py").write_text(textwrap.dedent(PLUGIN))
    suite = {
        "name": "toy",
        "output": str(tmp_path / "out"),
        "seeds": [0],
        "device": "cpu",
        "baseline": "scratch",
        "training": {"epochs": 3, "batch_size": 8, "optimizer": "adamw", "lr": 3e-3, "threads": 2},
        "tasks": [{"name": "bright", "kind": "regression", "dataset": {"name": "brightness"}}],
        "backbones": [{"name": "resnet18"}],
        "strategies": [{"name": "scratch"}, {"name": "bitfit"}],
    }
    path = tmp_path / "suite.toml"
    path.write_text(to_toml(suite))

    plugins = _bench(["plugins"], site, tmp_path)
    assert plugins.returncode == 0 and "regression" in plugins.stdout and "warning" not in plugins.stderr
    plan = _bench(["plan", str(path), "--format", "json"], site, tmp_path)
    assert plan.returncode == 0, plan.stderr
    estimate = json.loads(plan.stdout)
    assert len(estimate["cells"]) == 2
    (group,) = estimate["estimate"]["groups"]
    assert group["flops_per_image"] > 0  # counted on the task's own synthetic samples

    run = _bench(["run", str(path), "--quiet"], site, tmp_path)
    assert run.returncode == 0, run.stderr
    report = _bench(["report", str(tmp_path / "out"), "--format", "csv"], site, tmp_path)
    assert report.returncode == 0, report.stderr
    rows = pd.read_csv(io.StringIO(report.stdout)).set_index("strategy")
    assert set(rows.index) == {"scratch", "bitfit"} and (rows["status"] == "ok").all()
    assert (rows["metric"] == "r2").all() and rows["mean"].notna().all()
    for result in Store(tmp_path / "out").results():  # both train: the loss falls from the first epoch
        losses = [entry["train_loss"] for entry in result.curve]
        assert losses[-1] < losses[0], (result.strategy, losses)
    markdown = _bench(["report", str(tmp_path / "out")], site, tmp_path)
    assert "## bright (regression; metric `r2`, baseline `scratch`)" in markdown.stdout

"""Training a head on cached backbone features: the frozen backbone runs once per split, not every epoch.

A linear probe over a frozen backbone with fixed BatchNorm statistics and a deterministic training
split sees the same backbone features for an image in every epoch, so computing them once changes
nothing but the cost. The cached loader draws its batches from the training loader's own seeded
generator, so the head sees the same batches in the same order as without the cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd
from torch.utils.data import DataLoader

from harness.components import Loop, TaskModel
from harness.devices import synchronized
from harness.loaders import SampleList, make_loader

#: layers that compute differently in training mode; none may train in a cached backbone
_STOCHASTIC = (_BatchNorm, _DropoutNd)


def cache_problem(loop: Loop) -> str | None:
    """Why this cell's backbone features cannot be computed once, or None when they can."""
    context, model = loop.context, loop.model
    problem = loop.task.feature_cache_problem()
    if problem:
        return problem
    if any(p.requires_grad for p in model.backbone.parameters()):
        return "the backbone trains"
    if context.dataset is None or not context.dataset.deterministic(loop.task.name, "train"):
        return "the training split is augmented at random (e.g. the dataset's `augment`)"
    model.train()
    loop.strategy.train_mode(model)
    live = [name for name, m in model.backbone.named_modules() if m.training and isinstance(m, _STOCHASTIC)]
    model.eval()
    if live:
        return f"backbone layers behave differently in training ({live[0]}: BatchNorm statistics or dropout)"
    return None


@dataclass
class FeatureCache:
    """The head-only model and a loader per split over the stored features."""

    model: TaskModel
    loaders: dict[str, DataLoader]
    #: computing the training split's features (training cost) and the others' (evaluation cost)
    train_seconds: float
    eval_seconds: float


def build_cache(loop: Loop) -> FeatureCache:
    """Run the frozen backbone once over every split and keep what the head reads."""
    task, setup, model = loop.task, loop.setup, loop.model
    loaders: dict[str, DataLoader] = {}
    seconds = {"train": 0.0, "eval": 0.0}
    for split, original in loop.loaders.items():
        samples: list[Any] = []
        reader = make_loader(original.dataset, task, original.batch_size or 1, setup, original.num_workers, train=False)
        model.eval()
        with synchronized(setup):
            started = time.perf_counter()
            # the training split under the cell's mixed precision, as the head would see it without the cache
            precision = setup.autocast() if split == "train" else torch.autocast(setup.device.type, enabled=False)
            with torch.no_grad(), precision:
                for batch in reader:
                    samples.extend(task.head_samples(model, task.to_device(batch, setup.device)))
        seconds["train" if split == "train" else "eval"] += time.perf_counter() - started
        loaders[split] = DataLoader(
            SampleList([_to_cpu(s) for s in samples]),
            batch_size=original.batch_size,
            shuffle=split == "train",
            drop_last=original.drop_last,
            collate_fn=task.collate,
            pin_memory=setup.is_cuda,
            generator=original.generator,  # the same draws, so the same batches, as the uncached loader
        )
    return FeatureCache(task.head_model(model), loaders, seconds["train"], seconds["eval"])


def _to_cpu(sample: Any) -> Any:
    if isinstance(sample, torch.Tensor):
        return sample.detach().cpu().clone()
    if isinstance(sample, tuple | list):
        return type(sample)(_to_cpu(s) for s in sample)
    return sample


class HeadOnly(TaskModel):
    """A task model whose forward is the head alone, on features instead of images.

    It shares the parameters of the model it comes from, so training it trains that model's head.
    """

    def __init__(self, model: TaskModel, forward: Any) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.head = model.head
        self._forward = forward

    def forward(self, features: Any) -> Any:
        return self._forward(features)

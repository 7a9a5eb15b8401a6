"""Pieces the task plugins share: input normalisation and batches of stacked tensors."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness import BackboneModule, Task


class Normalizer(nn.Module):
    """The backbone's input normalisation, kept inside the model so datasets hand over [0, 1] images."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, backbone: BackboneModule) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


class StackedBatchesTask(Task):
    """A task whose batches are two stacked tensors, images and targets (class indices or masks)."""

    def collate(self, samples: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = zip(*samples, strict=True)
        return torch.stack(images), torch.stack([torch.as_tensor(t, dtype=torch.int64) for t in targets])

    def to_device(self, batch: Any, device: torch.device) -> Any:
        images, targets = batch
        return images.to(device, non_blocking=True), targets.to(device, non_blocking=True)

    def batch_size(self, batch: Any) -> int:
        return len(batch[0])

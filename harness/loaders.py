"""Loading a cell's data: seeded, worker-fed DataLoaders, and the seeding of every random source."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from harness.components import Task
from harness.devices import DeviceSetup


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: torch.utils.data.Dataset,
    task: Task,
    batch_size: int,
    setup: DeviceSetup,
    workers: int,
    *,
    train: bool,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader that keeps a GPU fed (workers, pinned memory) and is seeded for training."""
    generator = torch.Generator().manual_seed(seed) if train else None
    size = len(dataset)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train and size > batch_size,
        collate_fn=task.collate,
        num_workers=workers,
        pin_memory=setup.is_cuda,
        persistent_workers=workers > 0,
        worker_init_fn=_seed_worker if workers > 0 else None,
        generator=generator,
    )


class SampleList(torch.utils.data.Dataset):
    """Samples held in memory as a dataset (synthetic ones, cached features)."""

    def __init__(self, samples: list[Any]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:
        return self.samples[index]

"""Cells: the points of a suite's grid, task x backbone x strategy x seed, fully resolved.

A cell carries its `CellSpec` (every setting its result depends on) and the labels the suite
gives it; its key is the hash of the spec, so the same experiment is recognised across runs
(resume) and machines, and any change of setting makes a new cell. `harness.grid` plans them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.settings import CellSpec


def cell_label(task: str, backbone: str, strategy: str, setting: str, seed: int) -> str:
    """How progress lines and tables name a cell: `task / backbone / strategy (setting) / seed N`."""
    setting = f" ({setting})" if setting else ""
    return f"{task} / {backbone} / {strategy}{setting} / seed {seed}"


@dataclass(frozen=True)
class Cell:
    """One experiment: everything needed to run it is in `settings`, its labels say where it sits in the suite."""

    key: str
    task: str
    backbone: str
    strategy: str
    seed: int
    settings: CellSpec = field(compare=False)
    skip_reason: str | None = None
    #: pretraining stage this cell's weights come from, if any
    pretrain: str | None = None
    #: the swept values of this cell, e.g. "lr=0.01, rank=8" ("" without sweeps)
    setting: str = ""
    #: key of the cell whose trained model this one learns from (distillation)
    teacher: str | None = None
    #: keys of the cells whose trained models this one uses (`Strategy.inputs`)
    inputs: tuple[str, ...] = ()
    #: another cell learns from this one: keep its trained model
    keep_model: bool = False

    @property
    def needs(self) -> tuple[str, ...]:
        """Keys of the cells whose trained models this one needs: its teacher and its inputs."""
        return ((self.teacher,) if self.teacher else ()) + self.inputs

    @property
    def label(self) -> str:
        return cell_label(self.task, self.backbone, self.strategy, self.setting, self.seed)

    @property
    def is_pretraining(self) -> bool:
        """A pretraining stage of the suite rather than a cell of its grid."""
        return self.task.startswith("pretrain:")

"""How far a cell's timing can be trusted: loader-bound cells and disturbed measurements.

The report divides gains by device-hours, so a cell that waited for its data loader, or whose
seeds were timed while something else shared the machine, would look like a slow strategy. The
cost of every cell records its data wait and the machine's load; these rules turn them into the
marks the report shows, one place deciding both the marks and the words that explain them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

#: steps at the start of a run left out of `samples_per_second`: the allocator, cuDNN's kernel
#: timing and compilation happen there; a run of fewer than 4x this leaves out its first quarter
WARMUP_STEPS = 5
#: a cell is loader-bound when waiting for batches took more than this share of its training time
LOADER_BOUND_FRACTION = 0.2
#: seeds of one cell disagree when the slowest took more than this many times the fastest's time per step
SPREAD_LIMIT = 1.5
#: a machine was shared when its 1-minute load average exceeded this many times the cell's cores
LOAD_LIMIT = 1.5


def warmup_steps(total: int) -> int:
    """Steps of a run of `total` steps left out of its throughput."""
    return min(WARMUP_STEPS, total // 4)


@dataclass(frozen=True)
class SeedTiming:
    """What one seed's cost says about its timing."""

    train_seconds: float
    steps: int
    data_wait_seconds: float = 0.0
    load: float | None = None  # the higher of the load averages at the cell's start and end
    cores: int = 0


@dataclass
class TimingVerdict:
    data_wait_fraction: float = math.nan
    loader_bound: bool = False
    #: slowest / fastest seconds per step over the seeds (1.0: they agree; nan: one seed)
    spread: float = math.nan
    #: the highest load average over the seeds, divided by the cores
    load_ratio: float = math.nan
    #: why the timing is doubtful, in words; empty when nothing says so
    doubts: list[str] = field(default_factory=list)

    @property
    def disturbed(self) -> bool:
        return bool(self.doubts)


def judge_timing(seeds: Sequence[SeedTiming]) -> TimingVerdict:
    """Loader-bound and disturbed verdicts over the seeds of one backbone x strategy x setting."""
    verdict = TimingVerdict()
    timed = [s for s in seeds if s.train_seconds > 0]
    if not timed:
        return verdict
    verdict.data_wait_fraction = sum(s.data_wait_seconds for s in timed) / sum(s.train_seconds for s in timed)
    verdict.loader_bound = verdict.data_wait_fraction > LOADER_BOUND_FRACTION
    per_step = [s.train_seconds / max(s.steps, 1) for s in timed]  # no steps recorded: one cell, the same steps
    if len(per_step) > 1:
        verdict.spread = max(per_step) / min(per_step)
        if verdict.spread > SPREAD_LIMIT:
            verdict.doubts.append(f"seeds' time per step differs {verdict.spread:.1f}x")
    loads = [(s.load / s.cores, s.load, s.cores) for s in timed if s.load is not None and s.cores]
    if loads:
        ratio, load, cores = max(loads)
        verdict.load_ratio = ratio
        if ratio > LOAD_LIMIT:
            verdict.doubts.append(f"load average {load:g} on {cores} cores")
    return verdict

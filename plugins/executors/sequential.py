"""`sequential`: run cells one after another in this process (the default)."""

from collections.abc import Callable, Sequence

from harness import Executor, hookimpl
from harness.cell import Cell
from harness.result import CellResult


class Sequential(Executor):
    """Run cells one after another in this process."""

    name = "sequential"

    def run(
        self,
        cells: Sequence[Cell],
        run_cell: Callable[[Cell], CellResult],
        on_result: Callable[[CellResult], None],
    ) -> None:
        for cell in cells:
            on_result(run_cell(cell))


@hookimpl
def bench_executors() -> list[type[Executor]]:
    return [Sequential]

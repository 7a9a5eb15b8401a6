"""`scratch`: the baseline. Random initialisation whatever the backbone's weights, everything trains."""

from bench_plugins.strategies.full import Full

from harness import Strategy, hookimpl


class Scratch(Full):
    """Train everything from random weights (the usual baseline)."""

    name = "scratch"
    from_scratch = True


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [Scratch]

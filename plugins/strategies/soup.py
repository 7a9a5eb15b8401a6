"""`soup`: a model soup, the weights of several fine-tuned cells of the suite averaged, trained no further.

Model soups (Wortsman et al., "Model soups: averaging weights of multiple fine-tuned models improves
accuracy without increasing inference time", ICML 2022). The ingredients are other cells of the
suite on the same task and backbone (`Strategy.inputs`): every setting of each strategy label in
`ingredients` (a swept label gives one ingredient per setting, the paper's hyperparameter soup), at
the soup's own seed, or at every seed of the suite with `seeds = "all"`.

- `uniform`: the average of every ingredient's weights;
- `greedy`: the ingredients in order of their validation score (best first); each joins the soup
  when the soup with it scores at least as high on the validation split as without it (the paper's
  recipe; the first always joins).

Floating-point parameters and buffers are averaged; integer buffers (`num_batches_tracked`) are
the first ingredient's. After averaging, the BatchNorm statistics of every candidate are recomputed
over one pass of the training split (`harness.recompute_batchnorm`), in the layers the BatchNorm
policy trains (all by default; none with `batchnorm = "freeze"`), so that each validation score,
and the test, see statistics of the averaged weights.

Nothing trains: the cell's device time is the time making the soup took (loading, validating each
ingredient and candidate, the BatchNorm passes); its trainable parameters and FLOPs per sample are
those of training its model as a whole (what its ingredients were trained at). The report adds the
ingredients' device-hours to the soup's for its ROI, since a soup costs its ingredients. Ingredients
must share one architecture (the same parameter names and shapes): LoRA cells soup with LoRA cells.
With `seeds = "all"` the soups of different seeds share their ingredients, so their spread over
seeds measures the BatchNorm pass, not training noise.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from harness import (
    BenchError,
    CellInput,
    CellRef,
    FitOutcome,
    Loop,
    ParamGroup,
    Strategy,
    StrategyOptions,
    TaskModel,
    backbone_and_head_groups,
    batchnorm_layers,
    hookimpl,
    recompute_batchnorm,
    set_trainable,
)

State = dict[str, torch.Tensor]


class SoupOptions(StrategyOptions):
    #: strategy labels of this suite whose cells are the ingredients (each of its settings, if swept)
    ingredients: Annotated[list[str], Field(min_length=1)] = ["full"]
    #: the ingredients' seeds: the soup's own, or every seed of the suite
    seeds: Literal["own", "all"] = "own"
    method: Literal["uniform", "greedy"] = "greedy"


def average(states: list[State]) -> State:
    """The mean of `states` entry by entry for floating-point tensors; other tensors are the first's."""
    first = states[0]
    return {
        name: torch.stack([s[name] for s in states]).mean(0) if tensor.is_floating_point() else tensor.clone()
        for name, tensor in first.items()
    }


class Soup(Strategy):
    """Average the weights of other cells of the suite (uniform, or greedy on the validation split)."""

    name = "soup"
    Options = SoupOptions
    options: SoupOptions

    def inputs(self, seeds: list[int]) -> list[CellRef]:
        chosen: list[int | None] = list(seeds) if self.options.seeds == "all" else [None]
        return [CellRef(strategy=label, seed=seed) for label in self.options.ingredients for seed in chosen]

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        set_trainable(model, True)  # the cost of training the model as a whole; nothing trains here
        return backbone_and_head_groups(model)

    def fit(self, loop: Loop) -> FitOutcome:
        started = time.perf_counter()
        inputs = loop.context.inputs
        if not inputs:
            raise BenchError("soup: no ingredient cells (Strategy.inputs named none)")
        model = inputs[0].load()
        states = [_cpu_state(model)] + [_cpu_state(i.load()) for i in inputs[1:]]
        _same_architecture(inputs, states)
        if self.options.method == "uniform" or len(inputs) == 1:
            kept = list(range(len(inputs)))
            scores: list[float | None] = [None] * len(inputs)
            self._mix(loop, model, [states[i] for i in kept])
        else:
            kept, scores = self._greedy(loop, model, states)
        loop.notes["soup"] = {
            "method": self.options.method,
            "ingredients": [
                _described(cell, score, n in kept) for n, (cell, score) in enumerate(zip(inputs, scores, strict=True))
            ],
            "kept": len(kept),
        }
        return loop.run(model=model, train=False, train_seconds=time.perf_counter() - started)

    def _greedy(self, loop: Loop, model: TaskModel, states: list[State]) -> tuple[list[int], list[float | None]]:
        """Wortsman et al.'s greedy soup: ingredients by validation score, each kept if the soup does not get
        worse. The soup evaluated is the best candidate as it was scored (its BatchNorm statistics included)."""
        scores = []
        for state in states:
            model.load_state_dict(state)
            scores.append(_score(loop, model))
        lower = loop.metric in loop.task.lower_is_better
        order = sorted(range(len(states)), key=lambda i: -_rank(scores[i], lower))
        kept, best, chosen = [order[0]], scores[order[0]], states[order[0]]
        for i in order[1:]:
            self._mix(loop, model, [states[j] for j in (*kept, i)])
            score = _score(loop, model)
            if _rank(score, lower) >= _rank(best, lower):
                kept, best, chosen = [*kept, i], score, _cpu_state(model)
        model.load_state_dict(chosen)
        return sorted(kept), list(scores)

    def _mix(self, loop: Loop, model: TaskModel, states: list[State]) -> None:
        """Load the average of `states` into `model` and recompute its BatchNorm statistics."""
        model.load_state_dict(average(states) if len(states) > 1 else states[0])
        if len(states) > 1:
            self._recompute_batchnorm(loop, model)

    def _recompute_batchnorm(self, loop: Loop, model: TaskModel) -> None:
        context = loop.context
        model.train()
        self.train_mode(model)
        layers = [m for m in batchnorm_layers(model) if m.training]
        model.eval()
        if layers and context.train_loader is not None:
            recompute_batchnorm(
                model, context.task, context.train_loader, context.device, layers=layers, autocast=context.autocast
            )


def _described(cell: CellInput, score: float | None, kept: bool) -> dict[str, Any]:
    """An ingredient as the result's notes record it."""
    return {"key": cell.key, "strategy": cell.strategy, "options": cell.options, "seed": cell.seed, "val": score,
            "kept": kept}  # fmt: skip


def _cpu_state(model: TaskModel) -> State:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _same_architecture(inputs: tuple[CellInput, ...], states: list[State]) -> None:
    first = {k: v.shape for k, v in states[0].items()}
    for cell, state in zip(inputs[1:], states[1:], strict=True):
        if {k: v.shape for k, v in state.items()} != first:
            raise BenchError(
                f"soup: ingredient {cell.strategy} (cell {cell.key[:12]}) has other parameters than "
                f"{inputs[0].strategy} (cell {inputs[0].key[:12]}); a soup averages models of one architecture"
            )


def _score(loop: Loop, model: TaskModel) -> float | None:
    return loop.evaluate(model, "val").get(loop.metric)


def _rank(score: Any, lower: bool = False) -> float:
    """A validation score to compare, higher is better (negated where `lower` is better): an undefined one
    (None) ranks below every number."""
    return float("-inf") if score is None else (-float(score) if lower else float(score))


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [Soup]

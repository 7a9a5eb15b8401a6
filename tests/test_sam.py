"""`sam` owns the optimizer step through `take_step`: two passes per step, the update of the paper, twice the FLOPs."""

from __future__ import annotations

import pytest
import torch
from bench_plugins.strategies.sam import SAM

from harness.assembly import Parts, assemble
from harness.devices import resolve_device, setup_for
from harness.loaders import make_loader
from harness.registry import Registry
from harness.runner import _count_flops
from harness.settings import StrategySettings, Training
from harness.testing import KINDS, brief_spec, tiny_model, train_briefly
from harness.training import TrainingLoop


def _reference_step(rho: float, adaptive: bool, lr: float) -> dict[str, torch.Tensor]:
    """One SAM step written out by hand (Foret et al., Algorithm 1) on the model and batch `train_briefly` uses."""
    task, model, dataset = tiny_model("classification")
    loader = make_loader(dataset.load("classification", "train"), task, 4, resolve_device("cpu"), 0, train=True)
    batch = next(iter(loader))
    model.train()
    task.loss(model, batch).backward()  # the gradient at w (BatchNorm statistics updated once)
    params = [p for p in model.parameters() if p.grad is not None]
    with torch.no_grad():
        scaled = [p.grad * (p.abs() if adaptive else 1) for p in params]
        norm = torch.sqrt(sum((g**2).sum() for g in scaled))
        ascent = [rho * (p.abs() if adaptive else 1) * g / norm for p, g in zip(params, scaled, strict=True)]
        for p, e in zip(params, ascent, strict=True):
            p.add_(e)
    model.zero_grad()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    kept = [(m.running_mean.clone(), m.running_var.clone()) for m in norms]
    task.loss(model, batch).backward()  # the gradient at w + e
    with torch.no_grad():
        for m, (mean, var) in zip(norms, kept, strict=True):  # the second pass leaves the statistics alone
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
        for p, e in zip(params, ascent, strict=True):
            p.sub_(e)
            p.sub_(lr * p.grad)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _relative_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], start: dict[str, torch.Tensor]) -> float:
    """|a - b| / |b - start| over the weights: how far apart two updates from `start` are, relative to one's size."""
    keys = [k for k, v in b.items() if v.is_floating_point() and "running" not in k]
    apart = sum(((a[k] - b[k]) ** 2).sum() for k in keys)
    size = sum(((b[k] - start[k]) ** 2).sum() for k in keys)
    return float(torch.sqrt(apart / size))


@pytest.mark.parametrize("adaptive", [False, True])
def test_one_step_is_the_papers_update_from_the_original_weights(adaptive: bool) -> None:
    start = {k: v.clone() for k, v in tiny_model("classification")[1].state_dict().items()}
    run = train_briefly(SAM({"rho": 0.5, "adaptive": adaptive}), "classification", steps=1)
    expected = _reference_step(0.5, adaptive, lr=0.1)
    got = run.model.state_dict()
    assert run.changed == run.names()
    # the same update up to float32 rounding, which this tiny model amplifies: changing rho by one part
    # in a million moves the reference's own update by 1.5e-3, while plain descent lands 1.4 away
    assert _relative_distance(got, expected, start) < 1e-2
    for key in (k for k in expected if "running" in k):  # the statistics of the first pass only, exactly
        assert torch.equal(got[key], expected[key]), key
    # and it is not plain gradient descent: the gradient at the perturbed weights moved them elsewhere
    plain = train_briefly(_Plain(), "classification", steps=1).model.state_dict()
    assert _relative_distance(plain, expected, start) > 0.05


class _Plain(SAM):
    """The same strategy with the default one-pass step."""

    name = "plain"

    def take_step(self, model, closure):  # type: ignore[no-untyped-def, override]
        return closure()


@pytest.mark.parametrize("kind", KINDS)
def test_it_trains_on_every_task_kind_with_clipping_through_the_loop(kind: str) -> None:
    run = train_briefly(SAM(), kind, steps=2, grad_clip=1.0)
    assert run.changed == run.names()
    assert run.outcome.steps == 2 and all(torch.isfinite(torch.tensor(p["train_loss"])) for p in run.outcome.curve)


@pytest.mark.parametrize("kind", ["classification", "segmentation"])
def test_a_step_costs_twice_the_flops_of_full_fine_tuning(kind: str) -> None:
    registry = Registry(entry_points=False)
    flops = {}
    for name in ("full", "sam"):
        spec = brief_spec(kind, "resnet18", Training(batch_size=4), registry)
        spec = spec.model_copy(update={"strategy": StrategySettings(name=name)})
        parts = Parts.of(spec, registry)
        cell = assemble(spec, parts, setup_for("cpu", spec.training, parts.task), registry=registry)
        flops[name] = _count_flops(TrainingLoop(cell), cell.first_batch())
    assert flops["full"] and flops["sam"] == pytest.approx(2 * flops["full"], rel=1e-6)


def test_rho_is_checked() -> None:
    registry = Registry(entry_points=False)
    with pytest.raises(ValueError, match="rho"):
        registry.create("strategy", "sam", {"rho": 0})

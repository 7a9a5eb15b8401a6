"""wise_ft, ema, swa and lp_ft do exactly what they promise to the weights, on every task kind.

Each test trains a tiny model through the real loop with a subclass of the strategy that records
the weights at the points that matter, then recomputes what the evaluated weights must be.
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from bench_plugins.strategies.ema import EMA
from bench_plugins.strategies.lp_ft import LPFT
from bench_plugins.strategies.swa import SWA
from bench_plugins.strategies.wise_ft import WiseFT
from torch import nn
from torch.optim.swa_utils import update_bn

from harness import TaskModel, TrainingContext
from harness.devices import resolve_device
from harness.loaders import make_loader
from harness.testing import KINDS, tiny_model, train_briefly
from harness.training import lr_factor
from harness.weight_averaging import batchnorm_layers, interpolate_weights, recompute_batchnorm, snapshot

State = dict[str, torch.Tensor]


def state(module: nn.Module) -> State:
    """Every parameter and buffer (persistent or not), cloned."""
    return {n: t.detach().clone() for n, t in (*module.named_parameters(), *module.named_buffers())}


def assert_same(actual: State, expected: State) -> None:
    assert actual.keys() == expected.keys()
    different = [n for n in expected if not torch.equal(actual[n], expected[n])]
    assert different == []


def differs(a: State, b: State, names: set[str] | None = None) -> set[str]:
    return {n for n in (a.keys() if names is None else names) if not torch.equal(a[n], b[n])}


# --- wise_ft -------------------------------------------------------------------------------


class RecordingWiseFT(WiseFT):
    def on_train_end(self, model: TaskModel) -> None:
        self.theta_0 = {n: t.clone() for n, t in self.start.items()}
        self.before_end = state(model)
        super().on_train_end(model)


@pytest.mark.parametrize("kind", KINDS)
def test_wise_ft_interpolates_the_backbone_toward_its_starting_weights(kind: str) -> None:
    alpha = 0.3
    strategy = RecordingWiseFT({"alpha": alpha})
    run = train_briefly(strategy, kind, steps=2)
    fresh = state(tiny_model(kind)[1])
    after, tuned = state(run.model), strategy.before_end
    assert run.outcome.model is run.model and run.outcome.metrics  # interpolated in place, then tested

    backbone = {n for n in after if n.startswith("backbone.")}
    floating = {n for n in backbone if after[n].is_floating_point()}
    counters = backbone - floating
    assert counters and all(n.endswith("num_batches_tracked") for n in counters)
    # theta_0 is the model as prepared, i.e. its starting (pretrained) weights
    assert {f"backbone.{n}" for n in strategy.theta_0} == floating
    assert_same({f"backbone.{n}": t for n, t in strategy.theta_0.items()}, {n: fresh[n] for n in floating})
    for name in floating:
        start, end = fresh[name], tuned[name]
        assert torch.equal(after[name], torch.lerp(start, end, alpha)), name
        torch.testing.assert_close(after[name], (1 - alpha) * start + alpha * end, rtol=1e-6, atol=1e-7)
    assert differs(after, tuned, floating) == run.changed & floating | (run.changed_buffers & floating)
    # integer buffers and the new parts keep their fine-tuned values
    assert_same({n: after[n] for n in counters}, {n: tuned[n] for n in counters})
    head = {n for n in after if n.startswith("head.")}
    assert_same({n: after[n] for n in head}, {n: tuned[n] for n in head})
    assert differs(tuned, fresh, run.names("head.")) == run.names("head.")  # the head did train
    assert differs(tuned, fresh, {n for n in floating if "running_" in n})  # so did the statistics


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wise_ft_endpoints_are_the_pretrained_and_the_fine_tuned_backbone(alpha: float) -> None:
    _, model, _ = tiny_model("classification")
    start = state(model)
    strategy = WiseFT({"alpha": alpha})
    strategy.prepare(model)
    with torch.no_grad():  # stands in for training: every weight and buffer moves
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.add_(torch.ones_like(tensor))
    tuned = state(model)
    strategy.on_train_end(model)
    expected = tuned if alpha == 1 else {n: start[n] if n.startswith("backbone.") else tuned[n] for n in tuned}
    counters = {n for n in tuned if n.endswith("num_batches_tracked")}
    expected.update({n: tuned[n] for n in counters})  # integer buffers are never interpolated
    assert_same(state(model), expected)


def test_interpolate_weights_wants_every_starting_value() -> None:
    layer = nn.BatchNorm2d(2)
    start = snapshot(layer)
    del start["running_var"]
    with pytest.raises(KeyError, match="running_var"):
        interpolate_weights(layer, start, 0.5)


# --- ema -----------------------------------------------------------------------------------


class RecordingEMA(EMA):
    def prepare(self, model: TaskModel) -> list:
        self.snapshots: list[State] = []
        return super().prepare(model)

    def on_step_end(self, model: TaskModel, step: int) -> None:
        super().on_step_end(model, step)
        self.snapshots.append(state(model))


def manual_ema(snapshots: list[State], decay: float, warmup: bool) -> State:
    """The average the strategy promises: a copy of the first step's weights, then one lerp per step."""
    average = dict(snapshots[0])
    for k, weights in enumerate(snapshots[1:], start=1):
        d = min(decay, (1 + k) / (10 + k)) if warmup else decay
        average = {
            n: torch.lerp(average[n], w, 1 - d) if w.is_floating_point() else w.clone() for n, w in weights.items()
        }
    return average


@pytest.mark.parametrize("kind", KINDS)
def test_ema_evaluates_the_moving_average_of_the_weights_after_each_step(kind: str) -> None:
    strategy = RecordingEMA({"decay": 0.9})
    run = train_briefly(strategy, kind, steps=3)
    evaluated = run.outcome.model
    assert isinstance(evaluated, TaskModel) and evaluated is not run.model
    assert len(strategy.snapshots) == 3 and run.changed == run.names()
    actual = state(evaluated)
    assert_same(actual, manual_ema(strategy.snapshots, 0.9, warmup=True))
    assert_same(
        {n: t for n, t in actual.items() if not t.is_floating_point()},
        {n: t for n, t in strategy.snapshots[-1].items() if not t.is_floating_point()},
    )
    trained = state(run.model)
    assert differs(actual, trained, run.names())  # not the trained model
    assert run.outcome.metrics.keys() == run.outcome.curve[-1]["val"].keys()  # and it was tested


def test_ema_without_warmup_is_torchs_ema_at_a_fixed_decay() -> None:
    _, model, _ = tiny_model("classification")
    strategy = EMA({"decay": 0.75, "warmup": False})
    strategy.prepare(model)
    snapshots = []
    for step in range(4):  # stands in for optimizer steps: parameters and buffers move
        with torch.no_grad():
            for tensor in (*model.parameters(), *model.buffers()):
                tensor.add_(torch.full_like(tensor, step + 1))
        strategy.on_step_end(model, step)
        snapshots.append(state(model))
    actual = state(strategy.on_train_end(model))
    assert_same(actual, manual_ema(snapshots, 0.75, warmup=False))
    counter = next(n for n in actual if n.endswith("num_batches_tracked"))
    assert actual[counter] == snapshots[-1][counter] == 10  # copied, not averaged


# --- swa -----------------------------------------------------------------------------------


class RecordingSWA(SWA):
    """Records, per step, the learning rates in force and what one backbone and one head parameter did."""

    watched = ("backbone.", "head.")

    def prepare(self, model: TaskModel) -> list:
        self.lrs: list[list[float]] = []
        self.updates: list[tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.epoch_ends: dict[int, State] = {}
        named = dict(model.named_parameters())
        self.params = [named[next(n for n in named if n.startswith(w))] for w in self.watched]
        return super().prepare(model)

    def on_step_start(self, model: TaskModel, step: int, context: Any, optimizer: Any) -> None:
        super().on_step_start(model, step, context, optimizer)
        self.lrs.append([g["lr"] for g in optimizer.param_groups])
        self.before = [p.detach().clone() for p in self.params]

    def on_step_end(self, model: TaskModel, step: int, context: Any, optimizer: Any) -> None:
        for (p, before), lr in zip(zip(self.params, self.before, strict=True), self.lrs[-1], strict=True):
            self.updates.append((lr, before, p.grad.clone(), p.detach().clone()))
        super().on_step_end(model, step, context, optimizer)

    def on_epoch_end(self, model: TaskModel, epoch: int, context: Any, notes: Any) -> None:
        self.epoch_ends[epoch] = state(model)
        super().on_epoch_end(model, epoch, context, notes)

    def on_train_end(self, model: TaskModel, context: Any) -> TaskModel:
        assert self.average is not None
        self.unrecomputed = copy.deepcopy(self.average.module)
        # the recomputation's batches and random draws (ASPP's dropout, detection's sampling), to replay them
        self.loader_state = context.train_loader.generator.get_state()
        self.rng_state = torch.get_rng_state()
        return super().on_train_end(model, context)


def test_swa_averages_the_epoch_ends_from_its_start_at_the_swa_rate() -> None:
    # 3 epochs of 2 steps; start 0.34 -> epoch 1; the suite's cosine schedule until then, 0.3 x 0.1 after
    strategy = RecordingSWA({"start": 0.34, "swa_lr_scale": 0.3})
    run = train_briefly(strategy, "classification", steps=6, schedule="cosine")
    groups = len(run.optimizer.param_groups)
    cosine = [0.1 * lr_factor(s, 6, 0, "cosine") for s in range(2)]
    assert strategy.lrs == [[lr] * groups for lr in cosine] + [[pytest.approx(0.03)] * groups] * 4
    for lr, before, grad, after in strategy.updates:  # the rate set before the step is the one SGD used
        assert torch.equal(after, before.add(grad, alpha=-lr))  # SGD without momentum and decay
    assert run.outcome.model is strategy.average.module and run.outcome.metrics  # type: ignore[union-attr]
    assert run.outcome.curve[-1]["val"].keys() == run.outcome.metrics.keys()
    # parameters: the mean of the weights at the ends of epochs 1 and 2; not those of epoch 0
    averaged = state(strategy.unrecomputed)
    ends = [strategy.epoch_ends[e] for e in (1, 2)]
    for name in run.names():
        torch.testing.assert_close(averaged[name], (ends[0][name] + ends[1][name]) / 2, rtol=0, atol=1e-7)
    assert differs(averaged, strategy.epoch_ends[2], run.names())
    assert run.outcome.optimizer is not None


def bn_inputs(model: nn.Module) -> tuple[dict[str, list[torch.Tensor]], list[Any]]:
    """Forward pre-hooks that record each BatchNorm layer's per-batch input mean and unbiased variance."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):

            def hook(module: nn.Module, args: tuple[torch.Tensor, ...], name: str = name) -> None:
                x = args[0]
                dims = [0, *range(2, x.dim())]
                seen.setdefault(name, []).append(torch.stack([x.mean(dims), x.var(dims, unbiased=True)]))

            handles.append(module.register_forward_pre_hook(hook))
    return seen, handles


@pytest.mark.parametrize("kind", KINDS)
def test_swa_recomputes_batchnorm_statistics_of_the_average_over_the_training_data(kind: str) -> None:
    # 2 epochs of 2 steps; start 0.5 -> epoch 1 alone is averaged
    strategy = RecordingSWA({"start": 0.5})
    run = train_briefly(strategy, kind, steps=4)
    evaluated = run.outcome.model
    assert evaluated is not None and evaluated is not run.model
    assert strategy.lrs[2:] == [[pytest.approx(0.05)] * len(strategy.lrs[0])] * 2
    assert strategy.lrs[:2] == [[pytest.approx(0.1)] * len(strategy.lrs[0])] * 2
    names = run.names()
    assert_same(
        {n: t for n, t in state(evaluated).items() if n in names}, {n: strategy.epoch_ends[1][n] for n in names}
    )
    # replay the training loader's next pass through the average as it was before the recomputation
    context = strategy.context
    assert context is not None and context.train_loader is not None
    context.train_loader.generator.set_state(strategy.loader_state)
    torch.set_rng_state(strategy.rng_state)
    manual = strategy.unrecomputed
    manual.train()
    seen, handles = bn_inputs(manual)
    with torch.no_grad():
        for batch in context.train_loader:
            context.task.loss(manual, context.task.to_device(batch, context.device))
    for handle in handles:
        handle.remove()
    layers = dict(evaluated.named_modules())
    assert seen and {n for n, m in layers.items() if isinstance(m, nn.modules.batchnorm._BatchNorm)} == seen.keys()
    for name, stats in seen.items():
        layer = layers[name]
        assert isinstance(layer, nn.modules.batchnorm._BatchNorm)
        assert layer.momentum is not None and int(layer.num_batches_tracked) == len(stats) == 2  # type: ignore[arg-type]
        mean, var = torch.stack(stats).mean(0)
        torch.testing.assert_close(layer.running_mean, mean, rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(layer.running_var, var, rtol=1e-5, atol=1e-6, msg=name)
    assert differs(state(evaluated), state(strategy.unrecomputed), {f"{n}.running_mean" for n in seen})


@pytest.mark.parametrize("kind", ["classification", "segmentation"])
def test_recompute_batchnorm_matches_torchs_update_bn(kind: str) -> None:
    task, model, dataset = tiny_model(kind)
    loader = make_loader(dataset.load(kind, "train"), task, 4, resolve_device("cpu", amp=False), 0, train=False)
    model.eval()
    with torch.no_grad():  # statistics away from their defaults, momenta of both kinds
        for m in batchnorm_layers(model):
            m.running_mean.uniform_()
    batchnorm_layers(model)[0].momentum = 0.3
    ours, theirs = copy.deepcopy(model), copy.deepcopy(model)
    torch.manual_seed(1)  # the same dropout masks (ASPP) in both passes
    assert recompute_batchnorm(ours, task, loader, torch.device("cpu")) == len(loader)
    torch.manual_seed(1)
    update_bn(loader, theirs)  # classification and segmentation models take the images alone
    assert_same(state(ours), state(theirs))
    assert not ours.training and batchnorm_layers(ours)[0].momentum == 0.3  # modes and momenta restored


def test_swa_learning_rates_per_group_constant_and_cyclic() -> None:
    weights = [nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": weights[:1], "lr": 0.1}, {"params": weights[1:], "lr": 1.0}])
    torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5)  # sets initial_lr, then lr = 0.5 x
    # 3 epochs of 4 steps cut at 11 steps: the last epoch has 3
    context: Any = SimpleNamespace(steps_per_epoch=4, epochs=3, total_steps=11)
    constant = SWA({"start": 0.5, "swa_lr_scale": 0.2})  # epoch 1 on
    cyclic = SWA({"start": 0.5, "schedule": "cyclic", "swa_lr_scale": 0.4, "swa_min_lr_scale": 0.1})
    rates: dict[str, list[list[float]]] = {"constant": [], "cyclic": []}
    for label, strategy in (("constant", constant), ("cyclic", cyclic)):
        for step in range(11):
            strategy.on_step_start(None, step, context, optimizer)  # type: ignore[arg-type]
            rates[label].append([g["lr"] for g in optimizer.param_groups])
            for g in optimizer.param_groups:
                g["lr"] = 0.5 * g["initial_lr"]  # the schedule's value, back
    scheduled = [[0.05, 0.5]] * 4
    assert rates["constant"] == scheduled + [[pytest.approx(0.02), pytest.approx(0.2)]] * 7
    ramp4 = [(1 - t) * 0.4 + t * 0.1 for t in (0.25, 0.5, 0.75, 1.0)]
    ramp3 = [(1 - t) * 0.4 + t * 0.1 for t in (1 / 3, 2 / 3, 1.0)]
    assert rates["cyclic"] == scheduled + [[pytest.approx(0.1 * f), pytest.approx(f)] for f in ramp4 + ramp3]
    assert math.isclose(ramp3[-1], 0.1) and math.isclose(ramp4[-1], 0.1)  # each cycle ends at the minimum


def test_swa_options_are_checked() -> None:
    with pytest.raises(ValueError, match="swa_min_lr_scale must not exceed swa_lr_scale"):
        SWA({"schedule": "cyclic", "swa_lr_scale": 0.1, "swa_min_lr_scale": 0.2})
    with pytest.raises(ValueError, match="less than 1"):
        SWA({"start": 1.0})


# --- lp_ft ---------------------------------------------------------------------------------


class RecordingLPFT(LPFT):
    def prepare(self, model: TaskModel, context: TrainingContext) -> list:
        groups = super().prepare(model, context)
        self.start = state(model)
        self.epoch_ends: dict[int, State] = {}
        self.trainable: dict[int, bool] = {}
        return groups

    def on_epoch_end(self, model: TaskModel, epoch: int) -> None:
        self.epoch_ends[epoch] = state(model)
        self.trainable[epoch] = all(p.requires_grad for p in model.backbone.parameters())


@pytest.mark.parametrize("kind", KINDS)
def test_lp_ft_probes_with_a_fixed_backbone_then_fine_tunes_everything(kind: str) -> None:
    strategy = RecordingLPFT({"probe_epochs": 1})
    run = train_briefly(strategy, kind, steps=4)  # 2 epochs of 2 steps
    start, probed, final = strategy.start, strategy.epoch_ends[0], strategy.epoch_ends[1]
    backbone = {n for n in start if n.startswith("backbone.")}
    statistics = {n for n in backbone if "running_" in n or n.endswith("num_batches_tracked")}
    assert statistics
    assert strategy.trainable == {0: False, 1: True}
    # the probe: only the new parts moved; the backbone's weights and BatchNorm statistics did not
    assert differs(probed, start, backbone) == set()
    assert differs(probed, start, run.names("head.")) == run.names("head.")
    # then everything trains, statistics included, at the base rate from the start
    assert differs(final, probed, run.names()) == run.names() == run.changed
    assert differs(final, probed, statistics) == statistics
    assert run.group_of(next(iter(run.names("backbone."))))["initial_lr"] == pytest.approx(0.1)


def test_lp_ft_needs_an_epoch_after_the_probe() -> None:
    _, model, _ = tiny_model("classification")
    strategy = LPFT({"probe_epochs": 2})
    with pytest.raises(ValueError, match="probe_epochs = 2 leaves no epoch to fine-tune in a run of 2 epochs"):
        strategy.prepare(model, SimpleNamespace(epochs=2))  # type: ignore[arg-type]
    strategy.prepare(model, SimpleNamespace(epochs=3))  # type: ignore[arg-type]
    assert not any(p.requires_grad for p in model.backbone.parameters())
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        LPFT({"probe_epochs": 0})

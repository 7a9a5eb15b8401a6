"""The speed settings and the timing split, wherever their effect can be seen on the CPU."""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.components import ParamGroup
from harness.devices import execution_settings, resolve_device, setup_for
from harness.driver import run_suite
from harness.errors import BenchError
from harness.registry import Registry
from harness.settings import Training
from harness.store import Store
from harness.suite import parse_suite
from harness.testing import train_briefly
from harness.timing import SeedTiming, judge_timing, warmup_steps
from harness.training import build_optimizer
from tests.conftest import tiny_suite

TASKS = {
    kind: Registry(entry_points=False).create("task", kind) for kind in ("classification", "segmentation", "detection")
}


def _first_conv(model: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))


def _recording_inputs(model: torch.nn.Module, seen: list[Any]) -> None:
    _first_conv(model).register_forward_hook(lambda module, args, output: seen.append((args[0], output)))


def test_channels_last_puts_the_weights_and_the_training_images_in_nhwc(registry: Registry) -> None:
    strategy = registry.create("strategy", "full")
    seen: list[Any] = []
    original = strategy.prepare

    def prepare(model: Any) -> Any:
        _recording_inputs(model, seen)
        return original(model)

    strategy.prepare = prepare  # type: ignore[method-assign]
    run = train_briefly(strategy, steps=2, channels_last=True)
    assert _first_conv(run.model).weight.is_contiguous(memory_format=torch.channels_last)
    images = [x for x, _ in seen]
    assert images and all(x.is_contiguous(memory_format=torch.channels_last) for x in images)
    assert not images[0].is_contiguous()  # really NHWC, not a 1x1 image that is both


def test_channels_last_computes_the_same_function(registry: Registry) -> None:
    task = registry.create("task", "classification")
    torch.manual_seed(0)
    model = task.build_model(registry.create("backbone", "resnet18").build(), 5).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        plain = model(images)
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        nhwc = model(images.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(plain, nhwc, atol=1e-5)  # the kernels sum in another order, nothing more


@pytest.mark.skipif(not hasattr(torch, "autocast"), reason="no torch.autocast")
def test_bf16_autocasts_the_training_forward_on_the_cpu(registry: Registry) -> None:
    assert (
        resolve_device("cpu", "auto", task=TASKS["classification"]).amp_dtype is None
    )  # auto: full precision on a CPU
    assert resolve_device("cpu", "bf16").amp_dtype == torch.bfloat16
    strategy = registry.create("strategy", "full")
    seen: list[Any] = []
    original = strategy.prepare

    def prepare(model: Any) -> Any:
        conv = _first_conv(model)
        conv.register_forward_hook(lambda module, args, output: seen.append((module.training, output)))
        return original(model)

    strategy.prepare = prepare  # type: ignore[method-assign]
    run = train_briefly(strategy, steps=2, amp="bf16")
    training = [out.dtype for mode, out in seen if mode]
    evaluation = [out.dtype for mode, out in seen if not mode]
    assert training == [torch.bfloat16, torch.bfloat16]  # the two training steps
    assert evaluation and set(evaluation) == {torch.float32}  # evaluation in full precision, as the references
    assert next(run.model.parameters()).dtype == torch.float32  # the weights stay float32


def test_auto_precision_follows_the_device_and_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_device("cuda", "auto", task=TASKS["classification"]).amp_dtype == torch.bfloat16
    assert resolve_device("cuda", "auto", task=TASKS["segmentation"]).amp_dtype == torch.bfloat16
    detection = resolve_device("cuda", "auto", task=TASKS["detection"])
    assert detection.amp_dtype == torch.float16 and detection.needs_grad_scaler()
    assert resolve_device("cuda", False, task=TASKS["classification"]).amp_dtype is None
    setup = setup_for("cuda", Training(), TASKS["classification"])
    assert setup.channels_last and setup.cudnn_benchmark and not setup.compile
    assert not setup_for("cuda", Training(), TASKS["detection"]).channels_last
    assert not setup_for("cuda", Training(deterministic=True), TASKS["classification"]).cudnn_benchmark
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100")
    assert resolve_device("cuda", "auto", task=TASKS["classification"]).amp_dtype == torch.float16
    with pytest.raises(BenchError, match="Tesla V100 has no bfloat16"):
        resolve_device("cuda", "bf16", task=TASKS["classification"])


def test_biases_and_norm_weights_get_no_weight_decay(registry: Registry) -> None:
    task, model = registry.create("task", "classification"), None
    model = task.build_model(registry.create("backbone", "resnet18").build(), 3)
    groups = registry.create("strategy", "full").prepare(model)
    optimizer = build_optimizer(groups, Training(weight_decay=0.05), model)
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert {decay[id(p)] for p in model.parameters() if p.ndim <= 1} == {0.0}
    assert {decay[id(p)] for p in model.parameters() if p.ndim > 1} == {0.05}
    # off for the suite, or for one group: everything decays as before
    everything = build_optimizer(groups, Training(weight_decay=0.05, no_decay_norm_bias=False), model)
    assert {g["weight_decay"] for g in everything.param_groups} == {0.05}
    own = [replace(g, no_decay_norm_bias=False) for g in groups]
    assert {g["weight_decay"] for g in build_optimizer(own, Training(weight_decay=0.05), model).param_groups} == {0.05}


def test_without_decay_a_bias_with_no_gradient_stays_put(registry: Registry) -> None:
    """The split's effect in a step: decay alone moves the matrices, not the biases."""
    layer = torch.nn.Linear(3, 2)
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    optimizer = build_optimizer([ParamGroup(params=list(layer.parameters()))], Training(lr=0.1, weight_decay=0.5))
    for p in layer.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert torch.equal(layer.bias, before["bias"])
    assert torch.allclose(layer.weight, before["weight"] * (1 - 0.1 * 0.5))


def test_a_failing_compile_falls_back_to_eager_with_a_message(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.inner = model

        def __getattr__(self, name: str) -> Any:
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.inner, name)

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("backend 'inductor' failed: no C++ compiler\nlong traceback")

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: Broken(model))
    eager = train_briefly(registry.create("strategy", "full"), steps=2)
    with pytest.warns(RuntimeWarning, match="torch.compile failed, training eagerly: RuntimeError: backend"):
        compiled = train_briefly(registry.create("strategy", "full"), steps=2, compile=True)
    assert compiled.outcome.metrics == eager.outcome.metrics  # the same training, eagerly


def test_compile_fallback_is_noted_in_the_result(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(model: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", unavailable)
    data = tiny_suite(tmp_path / "out", strategies=[{"name": "full"}])
    data["tasks"] = data["tasks"][:1]
    data["training"] = {**data.get("training", {}), "compile": True}
    with pytest.warns(RuntimeWarning, match="torch.compile unavailable"):
        summary = run_suite(parse_suite(data, registry=registry), registry)
    assert summary.statuses == {"ok": 1}
    (result,) = Store(tmp_path / "out").results()
    assert result.notes["compile"] == "fell back to eager: RuntimeError: Dynamo is not supported on this Python"
    assert result.provenance["execution"]["compile"] is True


def test_deterministic_is_recorded_and_the_process_state_restored(tmp_path: Path, registry: Registry) -> None:
    data = tiny_suite(tmp_path / "out", strategies=[{"name": "full"}])
    data["tasks"] = data["tasks"][:1]
    data["training"] = {**data.get("training", {}), "deterministic": True}
    assert not torch.are_deterministic_algorithms_enabled()
    summary = run_suite(parse_suite(data, registry=registry), registry)
    assert summary.statuses == {"ok": 1}
    assert not torch.are_deterministic_algorithms_enabled()  # a worker's next cell is not affected
    (result,) = Store(tmp_path / "out").results()
    execution = result.provenance["execution"]
    assert execution["deterministic"] is True and execution["cudnn_benchmark"] is False
    assert execution["precision"] == "fp32" and isinstance(execution["nondeterministic_ops"], list)


def test_execution_settings_collect_operations_without_a_deterministic_kernel() -> None:
    found: list[str] = []
    setup = resolve_device("cpu")
    with execution_settings(dataclasses.replace(setup, deterministic=True), found):
        assert torch.are_deterministic_algorithms_enabled()
        message = "scatter_add_cuda_kernel does not have a deterministic implementation, but ..."
        warnings.warn(message, UserWarning, stacklevel=1)
    assert found == ["scatter_add_cuda_kernel"]
    assert not torch.are_deterministic_algorithms_enabled()


class SlowLoader:
    """A training loader that takes `delay` seconds to produce each batch."""

    def __init__(self, loader: Any, delay: float) -> None:
        self.loader, self.delay = loader, delay
        self.dataset = loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Any:
        for batch in self.loader:
            time.sleep(self.delay)
            yield batch


def test_data_wait_is_measured_apart_from_compute_and_left_out_of_throughput(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.assembly as assembly

    real = assembly.make_loader

    def slow(*args: Any, train: bool, **kwargs: Any) -> Any:
        loader = real(*args, train=train, **kwargs)
        return SlowLoader(loader, 0.05) if train else loader

    monkeypatch.setattr(assembly, "make_loader", slow)
    run = train_briefly(registry.create("strategy", "linear_probe", {"cache_features": False}), steps=8)
    outcome = run.outcome
    assert outcome.steps == 8 and outcome.warmup_steps == warmup_steps(8) == 2
    assert 8 * 0.05 <= outcome.data_wait_seconds < outcome.train_seconds
    # throughput: the 6 steps after the warm-up over their compute time, which is part of all compute
    compute = outcome.train_seconds - outcome.data_wait_seconds
    assert outcome.samples_per_second >= 6 * 4 / compute
    assert outcome.samples_per_second * (outcome.train_seconds - 8 * 0.05) > 6 * 4  # the waits are left out


def test_timing_verdicts() -> None:
    steady = [SeedTiming(10.0, 100, 1.0, 2.0, 2), SeedTiming(11.0, 100, 1.0, 2.1, 2)]
    verdict = judge_timing(steady)
    assert not verdict.disturbed and not verdict.loader_bound and verdict.spread == pytest.approx(1.1)
    # the case: two seeds of one cell, 35.3 s and 8.4 s, while another process shared the CPU
    shared = judge_timing([SeedTiming(35.3, 100, 0.5, 4.2, 2), SeedTiming(8.4, 100, 0.1, 1.9, 2)])
    assert shared.doubts == ["seeds' time per step differs 4.2x", "load average 4.2 on 2 cores"]
    waiting = judge_timing([SeedTiming(10.0, 100, 4.0, None, 0)])
    assert waiting.loader_bound and waiting.data_wait_fraction == pytest.approx(0.4) and not waiting.disturbed


def test_the_compiling_step_is_kept_out_of_the_throughput(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)  # compiles instantly, as a stand-in
    two = train_briefly(registry.create("strategy", "full"), steps=2, compile=True)
    assert warmup_steps(2) == 0 and two.outcome.warmup_steps == 1  # a run this short still leaves the first out
    assert two.outcome.compile_seconds >= 0.0
    one = train_briefly(registry.create("strategy", "full"), steps=1, compile=True)
    assert one.outcome.compile_seconds == 0.0
    assert one.outcome.model is not None

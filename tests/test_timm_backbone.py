"""The timm backbone (the `timm` extra): stages cut where features_only taps, timm checkpoints, suites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from harness.cli import create_app
from harness.weights import load_into, read_checkpoint
from tests.conftest import tiny_suite

timm = pytest.importorskip("timm")
runner = CliRunner()
app = create_app()


def test_stages_end_where_timm_taps_features(registry) -> None:
    backbone = registry.create("backbone", "timm", {"model": "resnet18"})
    module = backbone.build()
    reference = timm.create_model("resnet18", features_only=True)
    assert module.channels == reference.feature_info.channels()
    assert module.strides == reference.feature_info.reduction()
    assert backbone.build(output_stride=16).strides[-1] == 16


def test_timm_checkpoint_loads_and_gives_timm_features(registry, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(3)
    reference = timm.create_model("convnext_atto").eval()
    path = tmp_path / "model.safetensors"  # the file a timm model's Hugging Face page offers
    save_file(reference.state_dict(), str(path))
    backbone = registry.create("backbone", "timm", {"model": "convnext_atto"})
    module = backbone.build().eval()
    load_into(backbone, module, read_checkpoint(path), str(path))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(module(x)[-1], reference.forward_features(x), atol=1e-5)


def test_models_without_a_module_sequence_are_refused(registry) -> None:
    from harness.errors import Unsupported

    with pytest.raises(Unsupported, match="not a module sequence"):
        registry.create("backbone", "timm", {"model": "vit_tiny_patch16_224"}).build()


def test_a_suite_runs_a_timm_backbone_and_keys_its_model(write_suite, tmp_path: Path) -> None:
    data = tiny_suite(tmp_path / "out", strategies=[{"name": "full"}])
    data["tasks"] = data["tasks"][:1]
    data["backbones"] = [{"name": "timm", "label": "r10", "options": {"model": "resnet10t"}}]
    done = runner.invoke(app, ["run", str(write_suite(data)), "-q"])
    assert done.exit_code == 0, done.output
    (cell,) = [json.loads(p.read_text()) for p in (tmp_path / "out" / "cells").glob("*.json")]
    assert cell["status"] == "ok" and cell["settings"]["backbone"]["options"] == {"model": "resnet10t"}
    data["backbones"][0]["options"] = {"model": "resnet_nosuch"}
    bad = runner.invoke(app, ["run", str(write_suite(data, "bad.toml")), "-q"])
    assert bad.exit_code == 2
    assert "backbones[0].options.model: Value error, unknown timm model 'resnet_nosuch'" in bad.output

"""Backbones: ordered stages with channels and strides, dilation, and checkpoints in either layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision import models

from harness.errors import BenchError
from harness.weights import load_into, parse_weights, read_checkpoint


@pytest.mark.parametrize(
    ("name", "channels"),
    [
        ("resnet18", [64, 64, 128, 256, 512]),
        ("resnet50", [64, 256, 512, 1024, 2048]),
        ("mobilenet_v3_large", [16, 24, 40, 112, 960]),
        ("convnext_tiny", [96, 192, 384, 768]),
        ("efficientnet_b0", [16, 24, 40, 112, 1280]),
    ],
)
def test_stages_channels_and_strides(registry, name: str, channels: list[int]) -> None:
    backbone = registry.create("backbone", name)
    module = backbone.build()
    assert module.channels == channels
    assert module.strides[-3:] == [8, 16, 32]
    outputs = module(torch.zeros(1, 3, 64, 64))
    assert [o.shape[1] for o in outputs] == channels
    if 16 in backbone.output_strides:
        assert backbone.build(output_stride=16).strides[-1] == 16


def test_resnet_dilation_matches_torchvision(registry) -> None:
    ours = registry.create("backbone", "resnet50").torchvision_model(output_stride=8)
    reference = models.resnet50(replace_stride_with_dilation=[False, True, True])
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(ours.eval()(x), reference.eval()(x), atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_large", "convnext_tiny", "efficientnet_b0"])
def test_torchvision_checkpoint_loads_with_weights_only(registry, tmp_path: Path, name: str) -> None:
    torch.manual_seed(1)
    reference = getattr(models, name)()
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    backbone = registry.create("backbone", name)
    module = backbone.build()
    load_into(backbone, module, read_checkpoint(path), str(path))
    x = torch.randn(2, 3, 64, 64)
    reference.eval()
    module.eval()
    features = module(x)[-1]
    if name == "resnet18":
        expected = reference.layer4(
            reference.layer3(
                reference.layer2(reference.layer1(reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))))
            )
        )
    elif name == "convnext_tiny":  # the classifier's LayerNorm ends the last stage
        expected = reference.classifier[0](reference.features(x))
    else:
        expected = reference.features(x)
    assert torch.allclose(features, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["convnext_tiny", "efficientnet_b0"])
@pytest.mark.parametrize("output_stride", [16, 8])
def test_dilated_builds_reach_their_stride_and_take_the_same_weights(registry, name: str, output_stride: int) -> None:
    """Dilation changes strides and padding only, so ImageNet weights load into a dilated build unchanged."""
    backbone = registry.create("backbone", name)
    torch.manual_seed(0)
    plain = backbone.build(32).eval()
    dilated = backbone.build(output_stride).eval()
    dilated.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        dense, coarse = dilated(x)[-1], plain(x)[-1]
    assert dense.shape[-1] == 128 // output_stride and coarse.shape[-1] == 4
    assert torch.isfinite(dense).all()


def test_stage_layout_checkpoint_round_trips(registry, tmp_path: Path) -> None:
    backbone = registry.create("backbone", "resnet18")
    source = backbone.build()
    path = tmp_path / "stages.pt"
    torch.save(source.state_dict(), path)
    target = backbone.build()
    load_into(backbone, target, read_checkpoint(path), str(path))
    for a, b in zip(source.state_dict().values(), target.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_of_another_architecture_is_refused(registry, tmp_path: Path) -> None:
    path = tmp_path / "r50.pth"
    torch.save(models.resnet50().state_dict(), path)
    backbone = registry.create("backbone", "resnet18")
    with pytest.raises(ValueError, match="does not fit resnet18"):
        load_into(backbone, backbone.build(), read_checkpoint(path), str(path))


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="checkpoint file not found"):
        read_checkpoint(tmp_path / "absent.pt")


def test_weights_sources_parse() -> None:
    assert parse_weights("none").kind == "none"
    assert parse_weights("pretrain:src").value == "src"
    assert parse_weights("ckpt/model.pth").kind == "file"
    assert parse_weights("IMAGENET1K_V2") == parse_weights("named:IMAGENET1K_V2@resnet50-11ad3fa6.pth")
    with pytest.raises(ValueError, match="allowed: 'none', 'pretrain:NAME', a name the backbone publishes"):
        parse_weights("imagenet")


@pytest.mark.parametrize("kind", ["classification", "detection", "segmentation"])
@pytest.mark.parametrize("name", ["convnext_tiny", "efficientnet_b0"])
def test_new_backbones_train_under_every_task(registry, name: str, kind: str) -> None:
    from harness.testing import train_briefly

    run = train_briefly(registry.create("strategy", "full"), kind, steps=1, backbone=name)
    assert run.changed and run.outcome.steps == 1


def test_vit_reads_torchvision_checkpoints_and_matches_its_classifier_input(registry, tmp_path: Path) -> None:
    """The last stage returns what torchvision's ViT feeds its head: the normalised class token."""
    torch.manual_seed(2)
    reference = models.vit_b_16().eval()
    path = tmp_path / "vit_b_16.pth"
    torch.save(reference.state_dict(), path)
    backbone = registry.create("backbone", "vit_b_16")
    module = backbone.build().eval()
    load_into(backbone, module, read_checkpoint(path), str(path))
    reference.heads = torch.nn.Identity()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ours = module(x)[-1]
        expected = reference(x)
    assert ours.shape == (1, 768, 1, 1)
    assert torch.allclose(ours.flatten(1), expected, atol=1e-4)
    with torch.no_grad():  # other sizes divisible by 16 read resized position embeddings
        assert module(torch.randn(2, 3, 48, 64))[-1].shape == (2, 768, 1, 1)
    with pytest.raises(ValueError, match="divisible by 16"):
        module(torch.randn(1, 3, 40, 40))


def test_vit_is_classification_only_with_the_reason_recorded(registry) -> None:
    from harness.testing import train_briefly

    vit = registry.create("backbone", "vit_b_16")
    for kind in ("detection", "segmentation"):
        assert "no feature pyramid" in registry.create("task", kind).check(vit)
    assert registry.create("task", "classification").check(vit) is None
    run = train_briefly(registry.create("strategy", "full"), "classification", steps=1, backbone="vit_b_16")
    assert run.changed and run.outcome.steps == 1

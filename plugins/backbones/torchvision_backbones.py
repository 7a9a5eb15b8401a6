"""torchvision's ResNet, MobileNetV3, ConvNeXt, EfficientNet and ViT as staged backbones.

Each is cut into five stages (strides 4/2, 4, 8, 16, 32) so tasks can take an FPN over the
last stages or a dense head on the last one. Checkpoints in torchvision's own layout (e.g.
``resnet50-0676ba61.pth``) load too: the classifier is dropped, every other key must match.
BatchNorm stays ordinary BatchNorm: whether its statistics train is the strategy's call.

Published weights are torchvision's weight enums (`IMAGENET1K_V1`, `IMAGENET1K_V2`, `DEFAULT`):
the file torchvision would download, read from the torch hub cache.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn
from torchvision import models

from harness import Backbone, BackboneModule, NamedWeights, Unsupported, first_mismatch, hookimpl

# a 2x2 convolution at stride 1 (dilated ConvNeXt) pads asymmetrically, which torch warns about
warnings.filterwarnings("ignore", message="Using padding='same' with even kernel lengths")


def dilate_stage(layer: nn.Sequential, previous: int, dilation: int) -> None:
    """Trade a ResNet stage's stride 2 for dilation, as torchvision's `_make_layer(dilate=True)` does.

    The first block keeps the dilation of the stage before (`previous`), later blocks use `dilation`.
    """
    for index, block in enumerate(layer):
        rate = previous if index == 0 else dilation
        for conv in block.modules():
            if isinstance(conv, nn.Conv2d):
                if conv.stride == (2, 2):
                    conv.stride = (1, 1)
                if conv.kernel_size == (3, 3):
                    conv.dilation, conv.padding = (rate, rate), (rate, rate)


def torchvision_weights(builder: str) -> dict[str, NamedWeights]:
    """torchvision's weight enum of a model builder, by name; `DEFAULT` as an alias."""
    enum = models.get_model_weights(builder)
    found = {}
    for name, member in enum.__members__.items():
        metrics = member.meta.get("_metrics", {}).get("ImageNet-1K", {})
        described = ", ".join(f"{k} {v}" for k, v in metrics.items())
        alias = f" (= {member.name})" if name != member.name else ""
        filename = member.url.rsplit("/", 1)[1]
        found[name] = NamedWeights(member.name, member.url, filename, f"ImageNet-1K {described}{alias}".strip())
    return found


class TorchvisionBackbone(Backbone):
    """A torchvision classification model cut into stages, with torchvision's published weights."""

    builder: ClassVar[str]
    classifier_prefixes: ClassVar[tuple[str, ...]] = ("fc.",)

    def named_weights(self) -> dict[str, NamedWeights]:
        return torchvision_weights(self.builder)

    @abstractmethod
    def torchvision_model(self, output_stride: int = 32) -> Any:
        """The torchvision model, dilated so its last stage has `output_stride`."""

    @abstractmethod
    def stages(self, net: Any) -> list[nn.Module]:
        """The model's modules that make the backbone's stages, input to output."""

    def build(self, output_stride: int = 32) -> BackboneModule:
        return BackboneModule(self.stages(self.torchvision_model(output_stride)))

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        net = self.torchvision_model()
        kept = {k: v for k, v in state_dict.items() if not k.startswith(self.classifier_prefixes)}
        try:
            missing, unexpected = net.load_state_dict(kept, strict=False)
        except RuntimeError as exc:
            raise ValueError(f"checkpoint does not fit {self.name}: {first_mismatch(exc)}") from None
        missing = [k for k in missing if not k.startswith(self.classifier_prefixes)]
        if missing or unexpected:
            raise ValueError(f"checkpoint does not fit {self.name}: missing {missing[:3]}, unexpected {unexpected[:3]}")
        return BackboneModule(self.stages(net)).state_dict()


class ResNetBackbone(TorchvisionBackbone):
    """torchvision ResNet: stem, layer1..layer4."""

    output_strides: ClassVar[tuple[int, ...]] = (8, 16, 32)

    def torchvision_model(self, output_stride: int = 32) -> Any:
        if output_stride not in self.output_strides:
            raise Unsupported(f"{self.name} supports output strides {self.output_strides}, not {output_stride}")
        net = getattr(models, self.builder)(weights=None)
        # torchvision's replace_stride_with_dilation refuses BasicBlock (resnet18/34); dilating
        # the built layers the way it does for Bottleneck serves every ResNet alike
        if output_stride <= 16:
            dilate_stage(net.layer4, previous=2 if output_stride == 8 else 1, dilation=32 // output_stride)
        if output_stride == 8:
            dilate_stage(net.layer3, previous=1, dilation=2)
        return net

    def stages(self, net: Any) -> list[nn.Module]:
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        return [stem, net.layer1, net.layer2, net.layer3, net.layer4]


class ResNet18(ResNetBackbone):
    """torchvision ResNet-18 (11.7M parameters), stages at strides 4, 4, 8, 16, 32."""

    name = "resnet18"
    builder = "resnet18"


class ResNet50(ResNetBackbone):
    """torchvision ResNet-50 (25.6M parameters), stages at strides 4, 4, 8, 16, 32."""

    name = "resnet50"
    builder = "resnet50"


class MobileNetV3Large(TorchvisionBackbone):
    """torchvision MobileNetV3-Large (5.5M parameters), stages at strides 2, 4, 8, 16, 32.

    Stages end where the feature map halves: features[0:2], [2:4], [4:7], [7:13], [13:17].
    """

    name = "mobilenet_v3_large"
    builder = "mobilenet_v3_large"
    output_strides: ClassVar[tuple[int, ...]] = (16, 32)
    classifier_prefixes = ("classifier.",)
    bounds = (0, 2, 4, 7, 13, 17)

    def torchvision_model(self, output_stride: int = 32) -> nn.Module:
        if output_stride not in self.output_strides:
            raise Unsupported(f"{self.name} supports output strides {self.output_strides}, not {output_stride}")
        # torchvision's `dilated` halves the stride of the last stage, as in its DeepLabV3 models
        return models.mobilenet_v3_large(weights=None, dilated=output_stride == 16)

    def stages(self, net: Any) -> list[nn.Module]:
        features = net.features
        return [features[a:b] for a, b in zip(self.bounds, self.bounds[1:], strict=False)]


def dilate_after_stride(stage: nn.Module, previous: int, rate: int) -> None:
    """Trade a stage's stride-2 convolution for dilation (DeepLab's rule, for any conv net).

    The strided convolution runs at stride 1 with the dilation of the stage before (`previous`);
    every later convolution of the stage gets `rate`. An even kernel (ConvNeXt's 2x2 downsampling)
    keeps its size with "same" padding.
    """
    seen_stride = False
    for conv in stage.modules():
        if not isinstance(conv, nn.Conv2d):
            continue
        k = conv.kernel_size[0]
        if conv.stride == (2, 2) and not seen_stride:
            seen_stride, conv.stride, d = True, (1, 1), previous
            if k % 2 == 0:
                conv.padding = "same"
                continue
        elif not seen_stride:
            continue
        else:
            d = rate
        if k > 1:
            conv.dilation, conv.padding = (d, d), (d * (k - 1) // 2, d * (k - 1) // 2)


class FeaturesBackbone(TorchvisionBackbone):
    """A torchvision model whose `features`, cut at `bounds`, are the stages; the last ones dilate for stride 16 / 8."""

    output_strides: ClassVar[tuple[int, ...]] = (8, 16, 32)
    classifier_prefixes = ("classifier.",)
    bounds: ClassVar[tuple[int, ...]]

    def torchvision_model(self, output_stride: int = 32) -> nn.Module:
        if output_stride not in self.output_strides:
            raise Unsupported(f"{self.name} supports output strides {self.output_strides}, not {output_stride}")
        net = getattr(models, self.builder)(weights=None)
        stages = self.stages(net)
        if output_stride <= 16:
            dilate_after_stride(stages[-1], previous=2 if output_stride == 8 else 1, rate=32 // output_stride)
        if output_stride == 8:
            dilate_after_stride(stages[-2], previous=1, rate=2)
        return net

    def stages(self, net: Any) -> list[nn.Module]:
        return [net.features[a:b] for a, b in zip(self.bounds, self.bounds[1:], strict=False)]


class ConvNeXtTiny(FeaturesBackbone):
    """torchvision ConvNeXt-Tiny (28.6M parameters), stages at strides 4, 8, 16, 32.

    The classifier's LayerNorm is kept as the end of the last stage (applied per position, before
    the task's pooling), so its pretrained statistics are not lost.
    """

    name = "convnext_tiny"
    builder = "convnext_tiny"
    classifier_prefixes = ("classifier.2.",)
    bounds = (0, 2, 4, 6, 8)

    def stages(self, net: Any) -> list[nn.Module]:
        *early, last = super().stages(net)
        return [*early, nn.Sequential(*last.children(), net.classifier[0])]


class EfficientNetB0(FeaturesBackbone):
    """torchvision EfficientNet-B0 (5.3M parameters), stages at strides 2, 4, 8, 16, 32."""

    name = "efficientnet_b0"
    builder = "efficientnet_b0"
    bounds = (0, 2, 3, 4, 6, 9)


def as_token_map(tokens: torch.Tensor) -> torch.Tensor:
    """(N, L, D) tokens as an (N, D, 1, L) map, the 4-d shape every backbone stage returns."""
    return tokens.transpose(1, 2).unsqueeze(2)


def as_tokens(token_map: torch.Tensor) -> torch.Tensor:
    return token_map.squeeze(2).transpose(1, 2)


def resized_positions(positions: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """ViT position embeddings (class token first, then a square grid) resized bicubically to `grid`.

    Lets a ViT pretrained at 224 px read other image sizes, as timm's `dynamic_img_size` does.
    """
    cls, patches = positions[:, :1], positions[:, 1:]
    side = int(patches.shape[1] ** 0.5)
    if (side, side) == grid:
        return positions
    square = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    resized = nn.functional.interpolate(square, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([cls, resized.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)


class PatchEmbedding(nn.Module):
    """ViT's first stage: 16x16 patches projected, class token prepended, position embeddings added."""

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.patch_size = net.patch_size
        self.conv_proj = net.conv_proj
        self.class_token = net.class_token
        self.pos_embedding = net.encoder.pos_embedding
        self.dropout = net.encoder.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"ViT needs image sides divisible by {self.patch_size}, got {height}x{width}")
        patches = self.conv_proj(x)
        grid = (patches.shape[-2], patches.shape[-1])
        tokens = torch.cat([self.class_token.expand(x.shape[0], -1, -1), patches.flatten(2).transpose(1, 2)], dim=1)
        return as_token_map(self.dropout(tokens + resized_positions(self.pos_embedding, grid)))


class EncoderStage(nn.Module):
    """A run of ViT encoder blocks; the last stage ends with the final LayerNorm and returns the class token."""

    def __init__(self, blocks: list[nn.Module], final_norm: nn.Module | None = None) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.norm = final_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.blocks(as_tokens(x))
        if self.norm is None:
            return as_token_map(tokens)
        return self.norm(tokens[:, :1]).transpose(1, 2).unsqueeze(-1)  # (N, D, 1, 1): the class token


class ViTB16(TorchvisionBackbone):
    """torchvision ViT-B/16 (86.6M parameters): patch embedding, then four stages of three encoder blocks.

    Between stages the tokens travel as an (N, D, 1, 1 + patches) map; the last stage returns the
    class token after the final LayerNorm as an (N, D, 1, 1) map, so classification's pooling and
    linear head read exactly what torchvision's ViT classifier reads. Any image size divisible by
    16 works (position embeddings are resized). Classification only: the stages are not a
    feature pyramid.
    """

    name = "vit_b_16"
    builder = "vit_b_16"
    classifier_prefixes = ("heads.",)
    no_dense_prediction = (
        "vit_b_16 has no feature pyramid (one 1/16 token grid, no strided stages) for Faster R-CNN's FPN or "
        "DeepLabV3's dilated stages; a dense ViT needs its own neck (e.g. ViTDet's simple pyramid)"
    )
    blocks_per_stage = 3

    def torchvision_model(self, output_stride: int = 32) -> Any:
        if output_stride not in self.output_strides:
            raise Unsupported(f"{self.name} supports output strides {self.output_strides}, not {output_stride}")
        return models.vit_b_16(weights=None)

    def stages(self, net: Any) -> list[nn.Module]:
        blocks = list(net.encoder.layers)
        k = self.blocks_per_stage
        groups = [blocks[i : i + k] for i in range(0, len(blocks), k)]
        encoder = [EncoderStage(g, net.encoder.ln if i == len(groups) - 1 else None) for i, g in enumerate(groups)]
        return [PatchEmbedding(net), *encoder]

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        positions = state_dict.get("encoder.pos_embedding")
        if positions is not None and positions.shape[1] != 197:  # e.g. SWAG weights, trained at 384 px
            state_dict = {**state_dict, "encoder.pos_embedding": resized_positions(positions, (14, 14))}
        return super().convert_state_dict(state_dict)


@hookimpl
def bench_backbones() -> list[type[Backbone]]:
    return [ResNet18, ResNet50, MobileNetV3Large, ConvNeXtTiny, EfficientNetB0, ViTB16]

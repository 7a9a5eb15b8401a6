"""torchvision's ResNet and MobileNetV3 as staged backbones.

Each is cut into five stages (strides 4/2, 4, 8, 16, 32) so tasks can take an FPN over the
last stages or a dense head on the last one. Checkpoints in torchvision's own layout (e.g.
``resnet50-0676ba61.pth``) load too: the classifier is dropped, every other key must match.
BatchNorm stays ordinary BatchNorm: whether its statistics train is the strategy's call.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torchvision import models

from harness import Backbone, BackboneModule, hookimpl
from harness.errors import Unsupported


class ResNetBackbone(Backbone):
    output_strides = (8, 16, 32)
    builder: ClassVar[str]
    classifier_prefixes: ClassVar[tuple[str, ...]] = ("fc.",)

    def torchvision_model(self, output_stride: int = 32) -> nn.Module:
        dilate = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}
        if output_stride not in dilate:
            raise Unsupported(f"{self.name} supports output strides {self.output_strides}, not {output_stride}")
        return getattr(models, self.builder)(weights=None, replace_stride_with_dilation=dilate[output_stride])

    def stages(self, net: nn.Module) -> list[nn.Module]:
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        return [stem, net.layer1, net.layer2, net.layer3, net.layer4]

    def build(self, output_stride: int = 32) -> BackboneModule:
        return BackboneModule(self.stages(self.torchvision_model(output_stride)))

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        net = self.torchvision_model()
        kept = {k: v for k, v in state_dict.items() if not k.startswith(self.classifier_prefixes)}
        missing, unexpected = net.load_state_dict(kept, strict=False)
        missing = [k for k in missing if not k.startswith(self.classifier_prefixes)]
        if missing or unexpected:
            raise ValueError(
                f"checkpoint does not fit {self.name}: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        return BackboneModule(self.stages(net)).state_dict()


class ResNet18(ResNetBackbone):
    name = "resnet18"
    builder = "resnet18"


class ResNet50(ResNetBackbone):
    name = "resnet50"
    builder = "resnet50"


class MobileNetV3Large(ResNetBackbone):
    """Stages end where the feature map halves: features[0:2], [2:4], [4:7], [7:13], [13:17]."""

    name = "mobilenet_v3_large"
    output_strides = (16, 32)
    classifier_prefixes = ("classifier.",)
    bounds = (0, 2, 4, 7, 13, 17)

    def torchvision_model(self, output_stride: int = 32) -> nn.Module:
        if output_stride not in self.output_strides:
            raise Unsupported(f"{self.name} supports output strides {self.output_strides}, not {output_stride}")
        # torchvision's `dilated` halves the stride of the last stage, as in its DeepLabV3 models
        return models.mobilenet_v3_large(weights=None, dilated=output_stride == 16)

    def stages(self, net: nn.Module) -> list[nn.Module]:
        features = net.features
        return [features[a:b] for a, b in zip(self.bounds, self.bounds[1:], strict=False)]


@hookimpl
def bench_backbones() -> list[type[Backbone]]:
    return [ResNet18, ResNet50, MobileNetV3Large]

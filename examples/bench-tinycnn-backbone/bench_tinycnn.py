"""`tinycnn`: a small four-stage CNN backbone (a stem, then three stages), for every task kind.

Stages at strides 4, 8, 16, 32 with `width`, 2, 4 and 8 x `width` channels; built for output
stride 16 or 8, the last stages trade their stride 2 for dilation (DeepLab's rule), so
segmentation's dilated head and detection's feature pyramid both read it.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field
from torch import nn

from harness import Backbone, BackboneModule, Options, Unsupported, hookimpl


class TinyCNNOptions(Options):
    width: Annotated[int, Field(ge=4, le=256, description="channels of the stem; each stage doubles them")] = 16


def block(inputs: int, outputs: int, stride: int, dilation: int, previous: int) -> nn.Sequential:
    """Two 3x3 convolutions; the first strides (or, dilated, runs at the dilation of the stage before)."""
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, stride, padding=previous, dilation=previous, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
        nn.Conv2d(outputs, outputs, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
    )


class TinyCNN(Backbone):
    """A tiny four-stage CNN (stem at stride 4, stages at 8, 16, 32), trained from scratch or a checkpoint."""

    name = "tinycnn"
    Options = TinyCNNOptions
    options: TinyCNNOptions
    output_strides: ClassVar[tuple[int, ...]] = (8, 16, 32)

    def build(self, output_stride: int = 32) -> BackboneModule:
        if output_stride not in self.output_strides:
            raise Unsupported(f"{self.name} supports output strides {self.output_strides}, not {output_stride}")
        w = self.options.width
        stages: list[nn.Module] = [block(3, w, 4, 1, 1)]  # stride 4 in one strided convolution
        stride, dilation = 4, 1
        for channels in (2 * w, 4 * w, 8 * w):
            previous = dilation
            if stride * 2 <= output_stride:
                stride, step = stride * 2, 2
            else:  # past the output stride: keep the resolution, widen the view instead
                dilation, step = dilation * 2, 1
            stages.append(block(channels // 2, channels, step, dilation, previous))
        # the harness reads channels and strides off one forward pass of a probe_size image
        return BackboneModule(stages, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), probe_size=64)


@hookimpl
def bench_backbones() -> list[type[Backbone]]:
    return [TinyCNN]

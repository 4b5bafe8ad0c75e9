"""The networks of the tasks: the LAB/LAQ-style small models and ResNet-18.

The small models follow the loss-aware quantization papers: batch norm (with affine scale and
shift) after every layer, the output layer included; no bias in Linear/Conv2d (batch norm
carries the shift); ReLU; max pooling before batch norm; Glorot-uniform initialisation
U(-h, h) with h = sqrt(1.5 / (fan_in + fan_out)), fans counting the kernel area. ``width``
multiplies every hidden width (quick profiles use narrower models).
"""

from __future__ import annotations

import math

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

BN_EPS = 1e-4  # batch-norm epsilon of the LAB/LAQ networks (momentum 0.1 is torch's default)


def scaled(channels: int, width: float) -> int:
    """A hidden width times the profile's width multiplier, at least 1."""
    return max(1, round(channels * width))


def glorot_bound(module: nn.Linear | nn.Conv2d) -> float:
    """h = sqrt(1.5 / (fan_in + fan_out)) of the LAB/LAQ initialisation (fans include the kernel area)."""
    w = module.weight
    receptive = w[0, 0].numel()
    fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
    return math.sqrt(1.5 / (fan_in + fan_out))


def init_glorot_uniform(model: nn.Module) -> nn.Module:
    """Draw every Linear/Conv2d weight from U(-h, h) (see ``glorot_bound``); returns the model."""
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            h = glorot_bound(module)
            nn.init.uniform_(module.weight, -h, h)
    return model


def _dense(n_in: int, n_out: int, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(n_in, n_out, bias=False), nn.BatchNorm1d(n_out, eps=BN_EPS)]
    return [*layers, nn.ReLU()] if relu else layers


def _conv(c_in: int, c_out: int, kernel: int, pad: int, pool: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, padding=pad, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return [*layers, nn.BatchNorm2d(c_out, eps=BN_EPS), nn.ReLU()]


def mlp(width: float = 1.0, hidden: int = 2048, depth: int = 3, n_in: int = 784,
        num_classes: int = 10) -> nn.Sequential:
    """The MNIST MLP: 784-2048-2048-2048-10 at width 1, batch norm after every layer."""
    h = scaled(hidden, width)
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers += _dense(n_in if i == 0 else h, h)
    layers += _dense(h, num_classes, relu=False)
    return init_glorot_uniform(nn.Sequential(*layers))


def lenet5(width: float = 1.0, in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """LeNet5 as 20C5-MP2-50C5-MP2-500FC-10 on 28x28 inputs (5x5 kernels; the BLAQ appendix writes C3)."""
    c1, c2, fc = scaled(20, width), scaled(50, width), scaled(500, width)
    layers = [
        *_conv(in_channels, c1, 5, 0, pool=True),   # 28 -> 24 -> 12
        *_conv(c1, c2, 5, 0, pool=True),            # 12 -> 8 -> 4
        nn.Flatten(),
        *_dense(c2 * 4 * 4, fc),
        *_dense(fc, num_classes, relu=False),
    ]
    return init_glorot_uniform(nn.Sequential(*layers))


def vgg_style(channels: tuple[int, int, int], fc: int, width: float = 1.0, in_channels: int = 3,
              num_classes: int = 10, image_size: int = 32) -> nn.Sequential:
    """2xC3-MP2-2xC3-MP2-2xC3-MP2-2xFC-out with 3x3 same-padding convs (VGG-small, the SVHN net)."""
    cs = [scaled(c, width) for c in channels]
    f = scaled(fc, width)
    layers: list[nn.Module] = []
    c_prev = in_channels
    for c in cs:
        layers += _conv(c_prev, c, 3, 1, pool=False) + _conv(c, c, 3, 1, pool=True)
        c_prev = c
    side = image_size // 8
    layers += [nn.Flatten(), *_dense(c_prev * side * side, f), *_dense(f, f),
               *_dense(f, num_classes, relu=False)]
    return init_glorot_uniform(nn.Sequential(*layers))


def vgg_small(width: float = 1.0, num_classes: int = 10) -> nn.Sequential:
    """CIFAR-10 VGG-small: 2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-2x1024FC-10."""
    return vgg_style((128, 256, 512), 1024, width, num_classes=num_classes)


def svhn_net(width: float = 1.0, num_classes: int = 10) -> nn.Sequential:
    """The SVHN net: 2x64C3-MP2-2x128C3-MP2-2x256C3-MP2-2x1024FC-10."""
    return vgg_style((64, 128, 256), 1024, width, num_classes=num_classes)


class SmallInputResNet18(nn.Module):
    """ResNet-18 (torchvision's BasicBlock, [2, 2, 2, 2]) for small inputs at a reduced width.

    Differs from torchvision's resnet18 only where small images need it: a 3x3 stride-1 stem
    without max pooling, and stage widths ``base``, 2, 4, 8 x ``base`` (torchvision: 64).
    """

    def __init__(self, base: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, base, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(base), nn.ReLU(inplace=True))
        stages: list[nn.Module] = []
        c_in = base
        for i, c in enumerate((base, 2 * base, 4 * base, 8 * base)):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or c_in != c:
                down = nn.Sequential(nn.Conv2d(c_in, c, 1, stride=stride, bias=False),
                                     nn.BatchNorm2d(c))
            stages.append(nn.Sequential(BasicBlock(c_in, c, stride, down), BasicBlock(c, c)))
            c_in = c
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def resnet18(width: float = 1.0, num_classes: int = 1000, small_input: bool = False) -> nn.Module:
    """torchvision's resnet18 unchanged (paper), or ``SmallInputResNet18`` at 64 x ``width`` (quick, smoke)."""
    if small_input:
        return SmallInputResNet18(base=scaled(64, width), num_classes=num_classes)
    if width != 1.0:
        raise ValueError("torchvision's resnet18 has a fixed width; use small_input=True to narrow it")
    return torchvision.models.resnet18(weights=None, num_classes=num_classes)

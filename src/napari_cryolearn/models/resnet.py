"""2D ResNet-18, -34 and -50 in plain torch, with torchvision's parameter names and shapes.

The modules are named as in ``torchvision.models.resnet`` (``conv1``, ``bn1``, ``layer1`` …
``layer4`` of ``BasicBlock`` or ``Bottleneck`` blocks, each with ``downsample.0`` / ``.1`` where
the shape changes, and ``fc``), so ``state_dict()`` has exactly torchvision's keys and shapes:
torchvision's ImageNet weights and the official SimSiam checkpoints load without renaming.
The Bottleneck strides in its 3×3 convolution (torchvision's "ResNet v1.5"). torchvision itself
is not needed.

Micrographs have one channel: ``in_channels=1`` makes ``conv1`` take one channel, and
:func:`adapt_first_conv` turns a pretrained 3-channel ``conv1.weight`` into a 1-channel one by
summing over the input channels. A grey image fed to the 1-channel network then gives exactly
what the 3-channel network gives for that image repeated on its three channels.

>>> net = resnet("resnet18", in_channels=1)
>>> net.feature_dim
512
>>> net.forward_features(torch.zeros(2, 1, 64, 64)).shape
torch.Size([2, 512])
>>> sum(p.numel() for p in resnet("resnet18", in_channels=3, num_classes=1000).parameters())
11689512
"""

from __future__ import annotations

import torch
from torch import nn

#: Block type and number of blocks per stage.
ARCHITECTURES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv(cin, cout, 1, stride), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions and a shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv(cin, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(cin, planes, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x if self.downsample is None else self.downsample(x)
        return self.relu(out + short)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand ×4, and a shortcut (ResNet-50)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv(cin, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * 4, 1)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes * 4, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        short = x if self.downsample is None else self.downsample(x)
        return self.relu(out + short)


class ResNet(nn.Module):
    """A torchvision-compatible 2D ResNet; build one with :func:`resnet`.

    Attributes
    ----------
    name:
        ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
    in_channels:
        Input channels of ``conv1``.
    feature_dim:
        Width of :meth:`forward_features` (512 for ResNet-18/34, 2048 for ResNet-50).
    fc:
        The classifier (``Linear(feature_dim, num_classes)``), or ``None`` without one.
    """

    def __init__(self, name: str, in_channels: int = 3, num_classes: int | None = None,
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        if name not in ARCHITECTURES:
            raise ValueError(f"unknown ResNet {name!r}; expected one of {', '.join(ARCHITECTURES)}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be at least 1, got {in_channels}")
        kind, depths = ARCHITECTURES[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.name, self.in_channels = name, int(in_channels)
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths)):
            blocks = []
            for j in range(depth):
                blocks.append(block(cin, planes, stride=2 if (j == 0 and i > 0) else 1))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.feature_dim = cin
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = None if num_classes is None else nn.Linear(cin, num_classes)
        self._init(zero_init_residual)

    def _init(self, zero_init_residual: bool) -> None:
        # torchvision's initialisation: He (fan-out) convolutions, BatchNorm γ=1, β=0
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # each block starts as the identity (SimSiam, prismpyp from scratch)
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) → (N, feature_dim): the globally average-pooled ``layer4``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (N, num_classes) with ``fc``, else the features of :meth:`forward_features`."""
        features = self.forward_features(x)
        return features if self.fc is None else self.fc(features)


def resnet(name: str, *, in_channels: int = 3, num_classes: int | None = None,
           zero_init_residual: bool = False) -> ResNet:
    """A ResNet-18/34/50 with torchvision's state-dict keys.

    Parameters
    ----------
    name:
        ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
    in_channels:
        3 for RGB (torchvision's weights as they are), 1 for micrographs (load 3-channel
        weights through :func:`adapt_first_conv`).
    num_classes:
        Adds the classifier ``fc`` (1000 for ImageNet weights); ``None`` leaves it out, and
        ``forward`` returns the features.
    zero_init_residual:
        Start the last BatchNorm of every block at γ=0, so each block begins as the identity.

    >>> resnet("resnet50", num_classes=1000).fc
    Linear(in_features=2048, out_features=1000, bias=True)
    """
    return ResNet(name, in_channels=in_channels, num_classes=num_classes, zero_init_residual=zero_init_residual)


def adapt_first_conv(state: dict[str, torch.Tensor], in_channels: int, *,
                     key: str = "conv1.weight") -> dict[str, torch.Tensor]:
    """A copy of ``state`` whose first convolution ``key`` takes ``in_channels`` inputs.

    A 3-channel weight (out, 3, k, k) going to 1 channel is summed over its input channels:
    convolving a grey image with the sum is the same as convolving the grey image repeated on
    three channels with the original. From 1 channel to ``in_channels`` the weight is repeated
    and divided by ``in_channels`` (the same equivalence the other way). A weight that already
    has ``in_channels`` inputs, or a ``state`` without ``key``, is returned unchanged; any
    other conversion raises ``ValueError``.

    >>> w = torch.arange(6.0).reshape(1, 3, 1, 2)
    >>> adapt_first_conv({"conv1.weight": w}, 1)["conv1.weight"].flatten().tolist()
    [6.0, 9.0]
    """
    if key not in state or state[key].shape[1] == in_channels:
        return dict(state)
    weight = state[key]
    have = weight.shape[1]
    if in_channels == 1:
        new = weight.sum(dim=1, keepdim=True)
    elif have == 1:
        new = weight.repeat(1, in_channels, 1, 1) / in_channels
    else:
        raise ValueError(f"{key} has {have} input channels; cannot adapt it to {in_channels} "
                         "(only to or from 1 channel)")
    return {**state, key: new}

"""The dense encoder-decoder backbone, in 2D or 3D (CryoSiam's ``DenseSimSiam`` layout).

The backbone follows CryoSiam's ``DenseSimSiam`` layout so that its published weights load:
a MONAI ``ResNet`` encoder (7³ first convolution, stride 1, no max-pool) gives four feature
levels (full, 1/2, 1/4, 1/8 resolution), an FPN decoder merges them back to full resolution,
and a 1×1 projector maps to ``dense_dim`` channels per pixel or voxel. Parameter names are
``encoder.*``, ``decoder.layer{1..4}.*``, ``projector.{0,1,3,4,6,7}.*`` as in CryoSiam, in 2D
and in 3D (``spatial_dims``): a 2D backbone has the same names with 2D kernels.

Everything is fully convolutional: any input whose spatial size is a multiple of
:attr:`DenseBackbone.size_divisor` works. Tensors are (N, C, Z, Y, X) in 3D, (N, C, Y, X) in 2D.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import ResNet
from torch import nn


def _check_spatial_dims(spatial_dims: int) -> int:
    """``spatial_dims`` as an int, 2 or 3 (``ValueError`` otherwise)."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return int(spatial_dims)


def conv_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.Conv2d`` or ``nn.Conv3d``."""
    return nn.Conv3d if _check_spatial_dims(spatial_dims) == 3 else nn.Conv2d


def batch_norm_type(spatial_dims: int) -> type[nn.Module]:
    """``nn.BatchNorm2d`` or ``nn.BatchNorm3d``."""
    return nn.BatchNorm3d if _check_spatial_dims(spatial_dims) == 3 else nn.BatchNorm2d


class FPNDecoder(nn.Module):
    """Feature-pyramid decoder: 1×1 lateral convolutions, upsample (bi- or trilinear) and add.

    ``layer1`` reads the coarsest level (encoder ``layer4``), ``layer4`` the finest, as in
    CryoSiam. Output: ``out_channels`` at the finest level's resolution.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        add_later_conv: bool = False,
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        self.mode = "trilinear" if spatial_dims == 3 else "bilinear"
        fine, c2, c3, coarse = in_channels
        self.layer4 = conv(fine, out_channels, 1)
        self.layer3 = conv(c2, out_channels, 1)
        self.layer2 = conv(c3, out_channels, 1)
        self.layer1 = conv(coarse, out_channels, 1)
        self.add_later_conv = add_later_conv
        if add_later_conv:
            for i in range(1, 5):
                setattr(self, f"later_conv{i}", conv(out_channels, out_channels, 3, padding=1))

    def _up_add(self, coarse: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        return F.interpolate(coarse, size=lateral.shape[2:], mode=self.mode, align_corners=False) + lateral

    def levels(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``feats``: encoder levels finest first. Returns the decoder's maps finest first: full
        resolution (what :meth:`forward` returns), 1/2, 1/4 and 1/8 (CryoSiam's level outputs)."""
        f1, f2, f3, f4 = feats
        o1 = self.layer1(f4)
        o2 = self._up_add(o1, self.layer2(f3))
        o3 = self._up_add(o2, self.layer3(f2))
        o4 = self._up_add(o3, self.layer4(f1))
        if self.add_later_conv:
            o4 = self.later_conv4(o4)
        return [o4, o3, o2, o1]

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """``feats``: encoder levels finest first. Returns the full-resolution map."""
        return self.levels(feats)[0]


class DenseBackbone(nn.Module):
    """Dense per-pixel or per-voxel encoder (CryoSiam ``DenseSimSiam`` without its pretraining heads).

    Parameters
    ----------
    block_type:
        ``"basic"`` or ``"bottleneck"`` ResNet blocks (bottleneck multiplies channels by 4).
    in_channels:
        Image channels (1 for a tomogram).
    num_layers, num_filters:
        Blocks and channels per ResNet level (four levels).
    fpn_channels:
        Channels of the decoder.
    dense_dim:
        Channels of the output embedding, per voxel.
    no_max_pool:
        CryoSiam uses ``True`` (the encoder keeps full resolution at its first level).
    add_later_conv:
        A 3×3×3 convolution after the decoder (a CryoSiam option).
    spatial_dims:
        3 (volumes, the default) or 2 (images, micrographs).

    ``forward(x)`` maps (N, in_channels, *spatial) to (N, dense_dim, *spatial).

    Examples
    --------
    >>> net = DenseBackbone(num_filters=(4, 4, 4, 4), fpn_channels=4, dense_dim=3, spatial_dims=2)
    >>> tuple(net(torch.zeros(1, 1, 16, 24)).shape)
    (1, 3, 16, 24)
    """

    def __init__(
        self,
        block_type: str = "basic",
        in_channels: int = 1,
        num_layers: Sequence[int] = (1, 1, 1, 1),
        num_filters: Sequence[int] = (8, 16, 32, 64),
        fpn_channels: int = 16,
        dense_dim: int = 16,
        no_max_pool: bool = True,
        add_later_conv: bool = False,
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        conv, bn = conv_type(spatial_dims), batch_norm_type(spatial_dims)
        self.spatial_dims = spatial_dims
        self.encoder = ResNet(
            block_type,
            list(num_layers),
            list(num_filters),
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=1,
            no_max_pool=no_max_pool,
            feed_forward=False,
            act=("relu", {"inplace": False}),
        )
        expansion = 4 if block_type == "bottleneck" else 1
        self.decoder = FPNDecoder([f * expansion for f in num_filters], fpn_channels, add_later_conv, spatial_dims)
        self.projector = nn.Sequential(
            conv(fpn_channels, fpn_channels, 1, bias=False),
            bn(fpn_channels),
            nn.ReLU(inplace=False),
            conv(fpn_channels, fpn_channels, 1, bias=False),
            bn(fpn_channels),
            nn.ReLU(inplace=False),
            conv(fpn_channels, dense_dim, 1),
            bn(dense_dim, affine=False),
        )
        self.dense_dim = dense_dim
        self.size_divisor = 8 if no_max_pool else 16

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four encoder levels, finest first."""
        enc = self.encoder
        x = enc.act(enc.bn1(enc.conv1(x)))
        if not enc.no_max_pool:
            x = enc.maxpool(x)
        feats = []
        for layer in (enc.layer1, enc.layer2, enc.layer3, enc.layer4):
            x = layer(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.decoder(self.encode(x)))

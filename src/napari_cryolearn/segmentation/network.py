"""The 3D segmentation network: a dense encoder-decoder backbone and two small heads.

The backbone follows CryoSiam's ``DenseSimSiam`` layout so that its published weights load:
a MONAI ``ResNet`` encoder (7³ first convolution, stride 1, no max-pool) gives four feature
levels (full, 1/2, 1/4, 1/8 resolution), an FPN decoder merges them back to full resolution,
and a 1×1×1 projector maps to ``dense_dim`` channels per voxel. Parameter names are
``encoder.*``, ``decoder.layer{1..4}.*``, ``projector.{0,1,3,4,6,7}.*`` as in CryoSiam.

The heads (CryoSiam's ``SemanticHeads``) are two parallel conv-BN-ReLU-conv-BN-ReLU-conv
branches: ``semantic_head`` (class logits) and optionally ``distance_head`` (one signed
distance channel per class, trained through ``tanh``).

Everything is fully convolutional: any input whose spatial size is a multiple of
:attr:`DenseBackbone.size_divisor` works. Tensors are (N, C, Z, Y, X).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import ResNet
from torch import nn


class FPNDecoder(nn.Module):
    """Feature-pyramid decoder: 1×1×1 lateral convolutions, upsample (trilinear) and add.

    ``layer1`` reads the coarsest level (encoder ``layer4``), ``layer4`` the finest, as in
    CryoSiam. Output: ``out_channels`` at the finest level's resolution.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        add_later_conv: bool = False,
    ) -> None:
        super().__init__()
        fine, c2, c3, coarse = in_channels
        self.layer4 = nn.Conv3d(fine, out_channels, 1)
        self.layer3 = nn.Conv3d(c2, out_channels, 1)
        self.layer2 = nn.Conv3d(c3, out_channels, 1)
        self.layer1 = nn.Conv3d(coarse, out_channels, 1)
        self.add_later_conv = add_later_conv
        if add_later_conv:
            for i in range(1, 5):
                setattr(self, f"later_conv{i}", nn.Conv3d(out_channels, out_channels, 3, padding=1))

    @staticmethod
    def _up_add(coarse: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        return F.interpolate(coarse, size=lateral.shape[2:], mode="trilinear", align_corners=False) + lateral

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """``feats``: encoder levels finest first. Returns the full-resolution map."""
        f1, f2, f3, f4 = feats
        o1 = self.layer1(f4)
        o2 = self._up_add(o1, self.layer2(f3))
        o3 = self._up_add(o2, self.layer3(f2))
        o4 = self._up_add(o3, self.layer4(f1))
        if self.add_later_conv:
            o4 = self.later_conv4(o4)
        return o4


class DenseBackbone(nn.Module):
    """Dense per-voxel encoder (CryoSiam ``DenseSimSiam`` without its pretraining heads).

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

    ``forward(x)`` maps (N, in_channels, Z, Y, X) to (N, dense_dim, Z, Y, X).
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
    ) -> None:
        super().__init__()
        self.encoder = ResNet(
            block_type,
            list(num_layers),
            list(num_filters),
            spatial_dims=3,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=1,
            no_max_pool=no_max_pool,
            feed_forward=False,
            act=("relu", {"inplace": False}),
        )
        expansion = 4 if block_type == "bottleneck" else 1
        self.decoder = FPNDecoder([f * expansion for f in num_filters], fpn_channels, add_later_conv)
        self.projector = nn.Sequential(
            nn.Conv3d(fpn_channels, fpn_channels, 1, bias=False),
            nn.BatchNorm3d(fpn_channels),
            nn.ReLU(inplace=False),
            nn.Conv3d(fpn_channels, fpn_channels, 1, bias=False),
            nn.BatchNorm3d(fpn_channels),
            nn.ReLU(inplace=False),
            nn.Conv3d(fpn_channels, dense_dim, 1),
            nn.BatchNorm3d(dense_dim, affine=False),
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


def _head(in_channels: int, out_channels: int, filters: Sequence[int], kernel_size: int, padding: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, filters[0], kernel_size, padding=padding),
        nn.BatchNorm3d(filters[0]),
        nn.ReLU(inplace=False),
        nn.Conv3d(filters[0], filters[1], kernel_size, padding=padding),
        nn.BatchNorm3d(filters[1]),
        nn.ReLU(inplace=False),
        nn.Conv3d(filters[1], out_channels, kernel_size, padding=padding),
    )


class SemanticHeads(nn.Module):
    """Class-logit head and optional distance head on a dense embedding (CryoSiam layout).

    ``forward(z)`` maps (N, in_channels, ...) to ``(logits, distances)``: logits
    (N, num_classes, ...) and raw distance outputs (N, num_classes, ...) or ``None``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        filters: Sequence[int] = (16, 16),
        kernel_size: int = 3,
        padding: int = 1,
        distance_prediction: bool = False,
    ) -> None:
        super().__init__()
        self.semantic_head = _head(in_channels, num_classes, filters, kernel_size, padding)
        self.distance_head = (
            _head(in_channels, num_classes, filters, kernel_size, padding) if distance_prediction else None
        )

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.semantic_head(z)
        dist = self.distance_head(z) if self.distance_head is not None else None
        return logits, dist


class SegmentationNet(nn.Module):
    """Backbone + heads. ``forward(x)`` → ``(logits, distances or None)``, same spatial size as x.

    ``backbone`` is any module mapping (N, C_in, Z, Y, X) to (N, heads' in_channels, Z, Y, X);
    swap it to start from a self-supervised encoder.
    """

    def __init__(self, backbone: nn.Module, heads: SemanticHeads) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads

    @property
    def size_divisor(self) -> int:
        """Spatial sizes must be multiples of this (the encoder's total stride)."""
        return int(getattr(self.backbone, "size_divisor", 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.heads(self.backbone(x))

    def set_trainable(self, *, backbone: bool, decoder: bool) -> None:
        """CryoSiam's fine-tuning switches.

        ``backbone=True``: everything trains. Else ``decoder=True``: the encoder is frozen,
        decoder, projector and heads train. Else only the heads train. Frozen parts are also
        kept in eval mode by :class:`~napari_cryolearn.segmentation.module.SegmentationModule`.
        """
        for p in self.parameters():
            p.requires_grad = True
        if backbone:
            return
        frozen = self.backbone.encoder if (decoder and hasattr(self.backbone, "encoder")) else self.backbone
        for p in frozen.parameters():
            p.requires_grad = False

    def frozen_modules(self) -> list[nn.Module]:
        """Submodules whose parameters are all frozen (their BN statistics should not move)."""
        out = []
        for m in (getattr(self.backbone, "encoder", None), self.backbone):
            if m is not None and all(not p.requires_grad for p in m.parameters()):
                out.append(m)
        return out


def build_network(cfg) -> SegmentationNet:
    """A :class:`SegmentationNet` from a :class:`~napari_cryolearn.segmentation.config.NetworkConfig`."""
    backbone = DenseBackbone(**cfg.backbone.model_dump())  # the config's fields are its arguments
    heads = SemanticHeads(
        in_channels=cfg.backbone.dense_dim,
        num_classes=cfg.out_channels,
        filters=cfg.filters,
        kernel_size=cfg.kernel_size,
        padding=cfg.padding,
        distance_prediction=cfg.distance_prediction,
    )
    return SegmentationNet(backbone, heads)

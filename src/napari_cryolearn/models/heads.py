"""Heads on a dense embedding, in 2D or 3D, and the backbone + heads network.

The heads (CryoSiam's ``SemanticHeads``) are two parallel conv-BN-ReLU-conv-BN-ReLU-conv
branches: ``semantic_head`` (class logits) and optionally ``distance_head`` (one signed
distance channel per class, trained through ``tanh``: :func:`distance_from_output`).
:class:`SegmentationNet` puts a backbone and heads together; its parameter names
(``backbone.*``, ``heads.*``) are what :mod:`napari_cryolearn.models.checkpoints` loads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from napari_cryolearn.models.backbones import batch_norm_type, conv_type

#: Distances are clipped to ±DISTANCE_CLIP pixels or voxels and divided by it (CryoSiam).
DISTANCE_CLIP = 5.0


def distance_from_output(raw: torch.Tensor) -> torch.Tensor:
    """Raw distance-head output → signed distance in voxels, in [−5, 5]."""
    return torch.tanh(raw) * DISTANCE_CLIP


def _head(in_channels: int, out_channels: int, filters: Sequence[int], kernel_size: int, padding: int,
          spatial_dims: int) -> nn.Sequential:
    conv, bn = conv_type(spatial_dims), batch_norm_type(spatial_dims)
    return nn.Sequential(
        conv(in_channels, filters[0], kernel_size, padding=padding),
        bn(filters[0]),
        nn.ReLU(inplace=False),
        conv(filters[0], filters[1], kernel_size, padding=padding),
        bn(filters[1]),
        nn.ReLU(inplace=False),
        conv(filters[1], out_channels, kernel_size, padding=padding),
    )


class SemanticHeads(nn.Module):
    """Class-logit head and optional distance head on a dense embedding (CryoSiam layout).

    ``forward(z)`` maps (N, in_channels, ...) to ``(logits, distances)``: logits
    (N, num_classes, ...) and raw distance outputs (N, num_classes, ...) or ``None``.
    ``spatial_dims``: 3 (default) or 2.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        filters: Sequence[int] = (16, 16),
        kernel_size: int = 3,
        padding: int = 1,
        distance_prediction: bool = False,
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        self.semantic_head = _head(in_channels, num_classes, filters, kernel_size, padding, spatial_dims)
        self.distance_head = (
            _head(in_channels, num_classes, filters, kernel_size, padding, spatial_dims)
            if distance_prediction else None
        )

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.semantic_head(z)
        dist = self.distance_head(z) if self.distance_head is not None else None
        return logits, dist


class SegmentationNet(nn.Module):
    """Backbone + heads. ``forward(x)`` → ``(logits, distances or None)``, same spatial size as x.

    ``backbone`` is any module mapping (N, C_in, *spatial) to (N, heads' in_channels, *spatial);
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

    @property
    def has_distance_head(self) -> bool:
        """Whether ``forward`` returns distances."""
        return self.heads.distance_head is not None

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

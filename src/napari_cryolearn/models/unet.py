"""A fast segmentation network for fresh training: MONAI's residual U-Net, with our output contract.

The CryoSiam-style network (:class:`~napari_cryolearn.models.heads.SegmentationNet`) decodes
back to full resolution with an FPN, then runs its heads there: on a CPU most of its time goes
into full-resolution convolutions. MONAI's ``UNet`` does most of its work at reduced
resolution and trains several times faster per voxel (``benchmarks/bench_train_step.py``).

:class:`UNetSegmentationNet` returns what :class:`SegmentationNet` returns, ``(logits,
distances or None)``, with the same spatial size as the input: one U-Net whose last layer has
``num_classes`` channels, or ``2 × num_classes`` with a distance output (the first half are the
class logits, the second the raw distances, trained through ``tanh`` as with the distance
head). Parameter names are ``backbone.*`` (the MONAI ``UNet``), so that checkpoints of ours
are recognised by :func:`~napari_cryolearn.models.checkpoints.detect_layout`; there are no
``heads.*`` tensors. CryoSiam weights do not fit it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class UNetSegmentationNet(nn.Module):
    """MONAI ``UNet`` (strides 2, residual units) → ``(logits, distances or None)``.

    Parameters
    ----------
    in_channels:
        Image channels (1 for a tomogram).
    num_classes:
        Class logits (background included).
    channels:
        Channels per level, finest first (one stride-2 downsampling between levels).
    num_res_units:
        Residual units per block (MONAI ``num_res_units``; 0: plain convolutions).
    distance_prediction:
        Also output one raw distance channel per class.
    spatial_dims:
        3 (volumes) or 2 (images).

    Examples
    --------
    >>> net = UNetSegmentationNet(num_classes=3, channels=(4, 8), spatial_dims=2)
    >>> logits, dist = net(torch.zeros(1, 1, 16, 24))
    >>> tuple(logits.shape), dist
    ((1, 3, 16, 24), None)
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        channels: Sequence[int] = (16, 32, 64, 128),
        num_res_units: int = 1,
        distance_prediction: bool = False,
        spatial_dims: int = 3,
    ) -> None:
        super().__init__()
        from monai.networks.nets import UNet

        channels = tuple(int(c) for c in channels)
        if len(channels) < 2:
            raise ValueError(f"a U-Net needs at least two levels of channels, got {channels}")
        self.num_classes = int(num_classes)
        self.distance_prediction = bool(distance_prediction)
        out = self.num_classes * (2 if distance_prediction else 1)
        self.backbone = UNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out,
                             channels=channels, strides=(2,) * (len(channels) - 1), num_res_units=num_res_units)
        self._divisor = 2 ** (len(channels) - 1)

    @property
    def size_divisor(self) -> int:
        """Spatial sizes must be multiples of this (2 to the number of downsamplings)."""
        return self._divisor

    @property
    def has_distance_head(self) -> bool:
        """Whether ``forward`` returns distances."""
        return self.distance_prediction

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.backbone(x)
        if not self.distance_prediction:
            return out, None
        return out[:, : self.num_classes], out[:, self.num_classes:]

    def set_trainable(self, *, backbone: bool, decoder: bool) -> None:
        """Everything trains (the U-Net has no separately pretrained encoder to freeze).

        ``backbone=False`` is refused with a ``ValueError``: freezing parts of a U-Net is not
        offered.
        """
        if not backbone:
            raise ValueError("architecture 'unet' trains as a whole: unfreeze_backbone must be true")
        for p in self.parameters():
            p.requires_grad = True

    def frozen_modules(self) -> list[nn.Module]:
        """None: every part trains."""
        return []

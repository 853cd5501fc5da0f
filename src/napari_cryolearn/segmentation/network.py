"""The segmentation network a :class:`~napari_cryolearn.segmentation.config.NetworkConfig` describes.

``architecture: cryosiam``: a :class:`~napari_cryolearn.models.backbones.DenseBackbone`
and :class:`~napari_cryolearn.models.heads.SemanticHeads`, put together as a
:class:`~napari_cryolearn.models.heads.SegmentationNet` (3D: tomograms), which CryoSiam's
checkpoints fit. ``architecture: unet``: a
:class:`~napari_cryolearn.models.unet.UNetSegmentationNet` (MONAI's U-Net), for fresh
training (the training job resolves ``auto``, the default, to ``unet`` for a new run; a
config that says ``auto`` here comes from a checkpoint written before the field: ``cryosiam``).
Both map (N, 1, Z, Y, X) to ``(logits, distances or None)``.
"""

from __future__ import annotations

from torch import nn

from napari_cryolearn.models.backbones import DenseBackbone
from napari_cryolearn.models.heads import SegmentationNet, SemanticHeads


def build_network(cfg) -> nn.Module:
    """A :class:`SegmentationNet` (or, with ``architecture: unet``, a
    :class:`~napari_cryolearn.models.unet.UNetSegmentationNet`) from a
    :class:`~napari_cryolearn.segmentation.config.NetworkConfig`."""
    if getattr(cfg, "architecture", "cryosiam") == "unet":
        from napari_cryolearn.models.unet import UNetSegmentationNet

        return UNetSegmentationNet(
            in_channels=cfg.backbone.in_channels,
            num_classes=cfg.out_channels,
            channels=cfg.unet_channels,
            num_res_units=cfg.unet_res_units,
            distance_prediction=cfg.distance_prediction,
        )
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


def architecture_of(state_dict) -> str:
    """``"unet"`` or ``"cryosiam"``: which of our networks a state dict (ours, ``net.`` prefixed
    or not) holds, from its tensor names (for a checkpoint without a config to say so)."""
    names = [k[4:] if k.startswith("net.") else k for k in state_dict]
    return "unet" if any(k.startswith("backbone.model.") for k in names) else "cryosiam"

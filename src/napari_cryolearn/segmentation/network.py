"""The segmentation network a :class:`~napari_cryolearn.segmentation.config.NetworkConfig` describes.

A :class:`~napari_cryolearn.models.backbones.DenseBackbone` and
:class:`~napari_cryolearn.models.heads.SemanticHeads`, put together as a
:class:`~napari_cryolearn.models.heads.SegmentationNet` (3D: tomograms).
"""

from __future__ import annotations

from napari_cryolearn.models.backbones import DenseBackbone
from napari_cryolearn.models.heads import SegmentationNet, SemanticHeads


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

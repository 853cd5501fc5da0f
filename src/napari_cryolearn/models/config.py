"""Configs of the shared model parts: the dense backbone's architecture and the augmentation.

Plain pydantic (no torch), so that a command line or a widget can build them cheaply.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from napari_cryolearn.engine.config import Config


class BackboneConfig(Config):
    """Architecture of :class:`~napari_cryolearn.models.backbones.DenseBackbone`.

    Names follow CryoSiam's DenseSimSiam pretraining config (``parameters.network``). The
    defaults are a small network that trains on a CPU.
    """

    block_type: Literal["basic", "bottleneck"] = "basic"
    in_channels: int = Field(1, ge=1)
    num_layers: tuple[int, int, int, int] = (1, 1, 1, 1)
    num_filters: tuple[int, int, int, int] = (8, 16, 32, 64)
    fpn_channels: int = Field(16, ge=1)
    dense_dim: int = Field(16, ge=1)
    no_max_pool: bool = True
    add_later_conv: bool = False


class TransformsConfig(Config):
    """On-the-fly augmentation (CryoSiam ``parameters.transforms``); ``None`` turns one off.

    Sigmas are in voxels, rotation ranges in radians (± per axis z, y, x), zoom a factor
    range. One of {low-pass, band-pass, noise, nothing} is applied to the image (all three in
    a row when ``combine_transforms``).
    """

    flip: bool = True
    flip_prob: float = Field(0.5, ge=0, le=1)
    rotate90: bool = False
    rotate: tuple[float, float, float] | None = (math.pi, math.pi, math.pi)
    rotate_prob: float = Field(0.5, ge=0, le=1)
    zoom: tuple[float, float] | None = (0.8, 1.2)
    zoom_prob: float = Field(0.5, ge=0, le=1)
    low_pass_sigma_range: tuple[float, float] | None = (0.5, 2.0)
    high_pass_sigma_range: tuple[float, float] | None = (0.1, 0.5)
    high_pass_sigma2_range: tuple[float, float] | None = (4.0, 5.0)
    noise_sigma_range: tuple[float, float] | None = (0.1, 0.5)
    combine_transforms: bool = False
    filter_prob: float = Field(0.5, ge=0, le=1)
    scale_intensity_factors: float | None = None
    scale_intensity_prob: float = Field(0.5, ge=0, le=1)

"""Configs of the shared model parts: the dense backbone's architecture and the augmentation.

Plain pydantic (no torch), so that a command line or a widget can build them cheaply.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from napari_cryolearn.engine.config import EXPERT, Config


class BackboneConfig(Config):
    """Architecture of :class:`~napari_cryolearn.models.backbones.DenseBackbone`.

    Names follow CryoSiam's DenseSimSiam pretraining config (``parameters.network``). The
    defaults are a small network that trains on a CPU.
    """

    block_type: Literal["basic", "bottleneck"] = Field("basic", description='residual block of the backbone (CryoSiam: basic)')
    in_channels: int = Field(1, ge=1, description='input channels (1 for a tomogram)')
    num_layers: tuple[int, int, int, int] = Field((1, 1, 1, 1), description='blocks in each of the four backbone stages')
    num_filters: tuple[int, int, int, int] = Field((8, 16, 32, 64), description='channels of each of the four backbone stages')
    fpn_channels: int = Field(16, ge=1, description='channels of the feature-pyramid decoder')
    dense_dim: int = Field(16, ge=1, description='channels of the dense (per-voxel) features')
    no_max_pool: bool = Field(True, description='leave out the max-pooling after the stem (CryoSiam: true)')
    add_later_conv: bool = Field(False, description="an extra convolution after the decoder (CryoSiam's option)")


class TransformsConfig(Config):
    """On-the-fly augmentation (CryoSiam ``parameters.transforms``); ``None`` turns one off.

    Sigmas are in voxels, rotation ranges in radians (± per axis z, y, x), zoom a factor
    range. One of {low-pass, band-pass, noise, nothing} is applied to the image (all three in
    a row when ``combine_transforms``).
    """

    flip: bool = Field(True, description='random flips along each axis')
    flip_prob: float = Field(0.5, ge=0, le=1, description='probability of a flip per axis', json_schema_extra=EXPERT)
    rotate90: bool = Field(False, description='random 90-degree rotations in the y-x plane')
    rotate: tuple[float, float, float] | None = Field((math.pi, math.pi, math.pi), description='random rotation range, radians (+- per axis z, y, x); empty: none', json_schema_extra=EXPERT)
    rotate_prob: float = Field(0.5, ge=0, le=1, description='probability of a random rotation', json_schema_extra=EXPERT)
    zoom: tuple[float, float] | None = Field((0.8, 1.2), description='random zoom factor range (min, max); empty: none', json_schema_extra=EXPERT)
    zoom_prob: float = Field(0.5, ge=0, le=1, description='probability of a random zoom', json_schema_extra=EXPERT)
    low_pass_sigma_range: tuple[float, float] | None = Field((0.5, 2.0), description='Gaussian low-pass sigma range, voxels; empty: none', json_schema_extra=EXPERT)
    high_pass_sigma_range: tuple[float, float] | None = Field((0.1, 0.5), description='band-pass: smaller sigma range, voxels; empty: none', json_schema_extra=EXPERT)
    high_pass_sigma2_range: tuple[float, float] | None = Field((4.0, 5.0), description='band-pass: larger sigma range, voxels', json_schema_extra=EXPERT)
    noise_sigma_range: tuple[float, float] | None = Field((0.1, 0.5), description='Gaussian noise sigma range (intensity units); empty: none', json_schema_extra=EXPERT)
    combine_transforms: bool = Field(False, description='apply low-pass, band-pass and noise in a row instead of one of them', json_schema_extra=EXPERT)
    filter_prob: float = Field(0.5, ge=0, le=1, description='probability of the filter / noise augmentation', json_schema_extra=EXPERT)
    scale_intensity_factors: float | None = Field(None, description='random intensity scaling x * (1 + f), f drawn in [-factor, factor]; empty: none', json_schema_extra=EXPERT)
    scale_intensity_prob: float = Field(0.5, ge=0, le=1, description='probability of the intensity scaling', json_schema_extra=EXPERT)

"""On-the-fly augmentation of training patches with MONAI dictionary transforms.

A sample is a dict with ``image`` (1, Z, Y, X) float32, ``labels`` (Z, Y, X) int64 and
optionally ``distances`` (C, Z, Y, X) float32 (in 2D: (1, Y, X), (Y, X), (C, Y, X), with
``spatial_dims=2``). Spatial transforms move all three together;
labels use nearest-neighbour interpolation, and voxels that a rotation, zoom or padding
brings in from outside the patch become ``ignore_index`` (not background): labels are
shifted by one during the spatial steps so that the zero fill means "unknown".

Rotation ranges are radians around z, y and x (default ±π around each; ``rotate=(π, 0, 0)``
rotates within the yx plane only, which keeps the missing wedge along z as in real tomograms).
In 2D only the first range is used (the rotation in the image plane).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.networks.layers import GaussianFilter
from monai.transforms import (
    CenterSpatialCropd,
    Compose,
    MapTransform,
    OneOf,
    RandFlipd,
    RandomizableTransform,
    RandRotate90d,
    RandRotated,
    Randomizable,
    RandScaleIntensityd,
    RandZoomd,
    SpatialPadd,
)

from napari_cryolearn.models.config import TransformsConfig


def _as_tensor(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Isotropic Gaussian blur of a (C, Z, Y, X) or (C, Y, X) tensor; ``sigma`` in voxels."""
    if sigma <= 0:
        return image
    filt = GaussianFilter(spatial_dims=image.ndim - 1, sigma=float(sigma))
    return filt(image.float().unsqueeze(0))[0]


class _RandSigmad(RandomizableTransform, MapTransform):
    """Base of transforms with one ``sigma`` drawn uniformly from ``sigma_range`` per call."""

    def __init__(self, keys: Sequence[Hashable], sigma_range: Sequence[float], *, prob: float = 1.0) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.sigma_range = tuple(float(s) for s in sigma_range)
        self.sigma = 0.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.sigma = self.R.uniform(*self.sigma_range)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        self.randomize()
        if self._do_transform:
            for k in self.key_iterator(d):
                d[k] = self.apply(_as_tensor(d[k]))
        return d


class RandLowPassd(_RandSigmad):
    """Gaussian low-pass with ``sigma`` drawn uniformly from ``sigma_range`` (voxels)."""

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return _gaussian_blur(x, self.sigma)


class RandBandPassd(RandomizableTransform, MapTransform):
    """Difference of Gaussians ``G(σ1)·x − G(σ2)·x`` (a high-/band-pass), σ1 < σ2 in voxels.

    With σ1 small this is CryoSiam's high-pass sharpening: it removes the slow background.
    """

    def __init__(
        self,
        keys: Sequence[Hashable],
        sigma1_range: Sequence[float],
        sigma2_range: Sequence[float],
        *,
        prob: float = 1.0,
    ) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.sigma1_range = tuple(float(s) for s in sigma1_range)
        self.sigma2_range = tuple(float(s) for s in sigma2_range)
        self.sigmas = (0.0, 0.0)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.sigmas = (self.R.uniform(*self.sigma1_range), self.R.uniform(*self.sigma2_range))

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        self.randomize()
        if self._do_transform:
            s1, s2 = self.sigmas
            for k in self.key_iterator(d):
                x = _as_tensor(d[k]).float()
                d[k] = _gaussian_blur(x, s1) - _gaussian_blur(x, s2)
        return d


class RandNoised(_RandSigmad):
    """Additive Gaussian noise with standard deviation drawn from ``sigma_range``."""

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        noise = self.R.standard_normal(tuple(x.shape)).astype(np.float32)
        return x + self.sigma * torch.from_numpy(noise)


class _Identityd(MapTransform):
    def __call__(self, data: Mapping) -> dict:
        return dict(data)


class LabelsToSpatiald(MapTransform):
    """labels (Z, Y, X) or (Y, X) int → (1, ...) float ``labels + 1`` (0 then means 'outside')."""

    def __init__(self, *, key: str = "labels") -> None:
        super().__init__([key])

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for k in self.key_iterator(d):
            d[k] = _as_tensor(d[k]).float().unsqueeze(0) + 1.0
        return d


class LabelsFromSpatiald(MapTransform):
    """Inverse of :class:`LabelsToSpatiald`; voxels that came from outside → ``ignore_index``."""

    def __init__(self, ignore_index: int, *, key: str = "labels") -> None:
        super().__init__([key])
        self.ignore_index = ignore_index

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for k in self.key_iterator(d):
            lab = torch.round(_as_tensor(d[k]).as_tensor() if hasattr(d[k], "as_tensor") else _as_tensor(d[k]))
            lab = lab[0].long() - 1
            lab[lab < 0] = self.ignore_index
            d[k] = lab
        return d


class _PlainTensorsd(MapTransform):
    """MONAI MetaTensors → plain float32 tensors (the collate and the loss want plain ones)."""

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for k in self.key_iterator(d):
            v = d[k]
            v = v.as_tensor() if hasattr(v, "as_tensor") else _as_tensor(v)
            d[k] = v.float().contiguous()
        return d


#: Sample key naming the class a training crop is centred on (set by the dataset for a patch the
#: foreground sampler drew; :data:`ANY_FOREGROUND`: any class but background).
CROP_CLASS = "crop_class"
ANY_FOREGROUND = -1


class RandForegroundCropd(Randomizable, MapTransform):
    """Crop ``keys`` to ``roi_size`` at a random place, or centred on a foreground voxel.

    A sample holding ``crop_class`` (:data:`CROP_CLASS`) is cropped around a voxel drawn
    uniformly among those of that class (:data:`ANY_FOREGROUND`: of any class but 0) in
    ``label_key`` — nnU-Net's foreground oversampling, which lets a class of a few hundred
    voxels be seen in most batches; the window is shifted inwards where the voxel lies near a
    border. Without it (or when that class is absent from the patch) every position of the
    window is equally likely. The key is removed from the sample. Labels are those of
    :class:`LabelsToSpatiald` (shifted by one: class ``c`` is ``c + 1``), and the image must be
    at least ``roi_size`` (pad first).

    Example
    -------
    >>> import torch
    >>> lab = torch.zeros(1, 32, 32, 32)
    >>> lab[0, 30, 30, 30] = 3.0  # class 2, shifted by one
    >>> crop = RandForegroundCropd(["labels"], roi_size=(8, 8, 8))
    >>> crop.set_random_state(0)  # doctest: +ELLIPSIS
    <...>
    >>> out = crop({"labels": lab, "crop_class": 2})
    >>> tuple(out["labels"].shape), float(out["labels"].max()), "crop_class" in out
    ((1, 8, 8, 8), 3.0, False)
    """

    def __init__(self, keys: Sequence[Hashable], roi_size: Sequence[int], *, label_key: str = "labels") -> None:
        MapTransform.__init__(self, keys)
        self.roi_size = tuple(int(s) for s in roi_size)
        self.label_key = label_key

    def randomize(self, data: Any = None) -> None:  # draws happen in __call__, from self.R
        pass

    def _start(self, shape: Sequence[int], labels: torch.Tensor | None, cls: int | None) -> list[int]:
        room = [int(s) - r for s, r in zip(shape, self.roi_size)]
        if cls is not None and labels is not None:
            lab = labels[0]
            hit = lab > 1.5 if cls == ANY_FOREGROUND else (lab - (cls + 1)).abs() < 0.5
            where = torch.nonzero(hit)
            if len(where):
                centre = where[int(self.R.randint(len(where)))].tolist()
                return [min(max(c - r // 2, 0), m) for c, r, m in zip(centre, self.roi_size, room)]
        return [int(self.R.randint(m + 1)) for m in room]

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        cls = d.pop(CROP_CLASS, None)
        first = next(iter(self.key_iterator(d)), None)
        if first is None:
            return d
        shape = d[first].shape[1:]
        start = self._start(shape, d.get(self.label_key), None if cls is None else int(cls))
        window = (slice(None), *(slice(a, a + r) for a, r in zip(start, self.roi_size)))
        for k in self.key_iterator(d):
            d[k] = d[k][window]
        return d


def _crop_steps(keys: list[str], patch_size: Sequence[int] | None, random: bool) -> list:
    if patch_size is None:
        return []
    size = [int(s) for s in patch_size]
    crop = RandForegroundCropd(keys, roi_size=size) if random else CenterSpatialCropd(keys, size)
    return [SpatialPadd(keys, spatial_size=size, mode="constant"), crop]


def filter_step(cfg: TransformsConfig, keys: Sequence[str] = ("image",)) -> OneOf | None:
    """One of {low-pass, band-pass, noise} with probability ``cfg.filter_prob`` (all three in a
    row when ``combine_transforms``), else nothing; ``None`` when none is configured."""
    keys = list(keys)
    filters: list = []
    if cfg.low_pass_sigma_range:
        filters.append(RandLowPassd(keys, cfg.low_pass_sigma_range))
    if cfg.high_pass_sigma_range and cfg.high_pass_sigma2_range:
        filters.append(RandBandPassd(keys, cfg.high_pass_sigma_range, cfg.high_pass_sigma2_range))
    if cfg.noise_sigma_range:
        filters.append(RandNoised(keys, cfg.noise_sigma_range))
    if not filters or cfg.filter_prob <= 0:
        return None
    if cfg.combine_transforms:
        filters = [Compose(list(filters))]
    options = [*filters, _Identityd(keys)]
    # nothing with probability 1 - filter_prob, the filters sharing the rest
    p = cfg.filter_prob / len(filters)
    return OneOf(options, weights=[p] * len(filters) + [1.0 - cfg.filter_prob])


def build_train_transform(
    cfg: TransformsConfig,
    ignore_index: int,
    with_distances: bool = False,
    patch_size: Sequence[int] | None = None,
    spatial_dims: int = 3,
) -> Compose:
    """The training augmentation pipeline described by ``cfg``, for 3D (default) or 2D samples.

    Order: (pad and random crop to ``patch_size``) → one of {low-pass, band-pass, noise,
    nothing} on the image → zoom → rotation → 90° turns in yx → flips per axis → intensity
    scaling. Returns a MONAI ``Compose``; seed it with ``set_random_state``.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    interp = "trilinear" if spatial_dims == 3 else "bilinear"
    spatial = ["image", "labels"] + (["distances"] if with_distances else [])
    modes = ["bilinear", "nearest"] + (["bilinear"] if with_distances else [])
    zoom_modes = [interp, "nearest"] + ([interp] if with_distances else [])
    steps: list = [LabelsToSpatiald()]
    steps += _crop_steps(spatial, patch_size, random=True)

    filters = filter_step(cfg)
    if filters is not None:
        steps.append(filters)

    if cfg.zoom and cfg.zoom_prob > 0:
        steps.append(
            RandZoomd(
                spatial, prob=cfg.zoom_prob, min_zoom=cfg.zoom[0], max_zoom=cfg.zoom[1],
                mode=zoom_modes, padding_mode="constant", keep_size=True,
            )
        )
    if cfg.rotate and any(cfg.rotate) and cfg.rotate_prob > 0:
        ranges = ({"range_x": cfg.rotate[0], "range_y": cfg.rotate[1], "range_z": cfg.rotate[2]}
                  if spatial_dims == 3 else {"range_x": cfg.rotate[0]})
        steps.append(
            RandRotated(spatial, **ranges, prob=cfg.rotate_prob, mode=modes, padding_mode="zeros", keep_size=True)
        )
    if cfg.rotate90:
        steps.append(RandRotate90d(spatial, prob=0.75, max_k=3, spatial_axes=(spatial_dims - 2, spatial_dims - 1)))
    if cfg.flip and cfg.flip_prob > 0:
        steps += [RandFlipd(spatial, prob=cfg.flip_prob, spatial_axis=a) for a in range(spatial_dims)]
    if cfg.scale_intensity_factors:
        steps.append(RandScaleIntensityd(["image"], factors=cfg.scale_intensity_factors, prob=cfg.scale_intensity_prob))
    steps += [LabelsFromSpatiald(ignore_index), _PlainTensorsd(["image"] + (["distances"] if with_distances else []))]
    return Compose(steps, lazy=False)


def build_eval_transform(
    ignore_index: int, with_distances: bool = False, patch_size: Sequence[int] | None = None
) -> Compose:
    """Validation pipeline: only pad and centre-crop to ``patch_size`` (when given)."""
    spatial = ["image", "labels"] + (["distances"] if with_distances else [])
    steps: list = [LabelsToSpatiald()]
    steps += _crop_steps(spatial, patch_size, random=False)
    steps += [LabelsFromSpatiald(ignore_index), _PlainTensorsd(["image"] + (["distances"] if with_distances else []))]
    return Compose(steps, lazy=False)

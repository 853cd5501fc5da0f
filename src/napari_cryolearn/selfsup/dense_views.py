"""Two views of one 3D patch with their geometry kept, and the voxel correspondence between them.

Dense SimSiam compares the two views voxel by voxel, so it must know which voxel of view 2
shows the place a voxel of view 1 shows. CryoSiam's pretraining fork only crops (no flip or
rotation between the views, so the overlap box is a shift). Here each view is sampled from the
source patch through a known affine map, so flips, 90° turns, small rotations and zoom can
differ between the views and the correspondence stays exact:

    source coordinate  s = M · (v − c_v) + c        (voxel indices, axes z, y, x)

for the voxel ``v`` of a view of shape ``view_shape`` (centre ``c_v = (view_shape − 1) / 2``),
with ``M = R / zoom`` (``R`` a product of flips, 90° turns in the y-x plane and a small
rotation) and ``c`` the view's centre in the source patch (:class:`ViewGeometry`). A voxel
``v1`` of view 1 is therefore at ``v2 = M2⁻¹ (M1 (v1 − c_v) + c1 − c2) + c_v`` in view 2
(:func:`correspondence`), and lies in view 2 when every coordinate is within ``[0, size − 1]``.
Views are sampled with trilinear interpolation (``torch.nn.functional.grid_sample``,
``align_corners=True``, reflection outside the source patch); the dense loss samples view 2's
output at the corresponding coordinates the same way (:func:`to_grid`).

The intensity augmentations (one of low-pass, band-pass, Gaussian noise or nothing, then a
random intensity scaling) are MONAI transforms from :mod:`napari_cryolearn.models.augment`
applied to each view separately, and so is CryoSiam's coarse dropout (:func:`coarse_dropout`);
they do not move voxels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ViewGeometry", "coarse_dropout", "correspondence", "geometry_options", "intensity_transform",
           "random_geometry",
           "rotation_matrix", "sample_view", "source_coords", "to_grid", "view_pair"]


@dataclass(frozen=True)
class ViewGeometry:
    """Where a view samples its source patch: ``s = matrix @ (v − c_v) + centre`` (z, y, x).

    ``matrix``: (3, 3) float64, ``centre``: (3,) float64 in source voxel indices.
    """

    matrix: np.ndarray
    centre: np.ndarray

    @classmethod
    def identity(cls, centre: Sequence[float]) -> ViewGeometry:
        """No flip, turn, rotation or zoom: a plain crop centred at ``centre``."""
        return cls(np.eye(3), np.asarray(centre, np.float64))


def rotation_matrix(axis: int, angle: float) -> np.ndarray:
    """The (3, 3) rotation by ``angle`` radians in the plane of the two axes other than ``axis``
    (0 z, 1 y, 2 x).

    >>> np.round(rotation_matrix(0, np.pi / 2) @ np.array([0.0, 1.0, 0.0]), 6).tolist()
    [0.0, 0.0, 1.0]
    """
    a, b = [i for i in range(3) if i != axis]
    r = np.eye(3)
    c, s = math.cos(angle), math.sin(angle)
    r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
    return r


def _view_centre(view_shape: Sequence[int]) -> np.ndarray:
    return (np.asarray(view_shape, np.float64) - 1.0) / 2.0


def source_coords(geom: ViewGeometry, view_shape: Sequence[int]) -> np.ndarray:
    """(Z, Y, X, 3) source coordinates (z, y, x) of every voxel of a view."""
    idx = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in view_shape], indexing="ij"), -1)
    return (idx - _view_centre(view_shape)) @ np.asarray(geom.matrix).T + np.asarray(geom.centre)


def correspondence(geom1: ViewGeometry, geom2: ViewGeometry, view_shape: Sequence[int]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """For every voxel of view 1, its coordinates (z, y, x) in view 2 and whether it lies in view 2.

    Returns ``(coords, inside)``: (Z, Y, X, 3) float64 and (Z, Y, X) bool.

    >>> g1 = ViewGeometry.identity((7.5, 7.5, 7.5))
    >>> g2 = ViewGeometry(np.diag([1.0, 1.0, -1.0]), np.array([7.5, 7.5, 9.5]))   # x flipped, shifted 2
    >>> coords, inside = correspondence(g1, g2, (8, 8, 8))
    >>> coords[0, 0, 7].tolist(), bool(inside[0, 0, 7]), bool(inside[0, 0, 0])
    ([0.0, 0.0, 2.0], True, False)
    """
    src = source_coords(geom1, view_shape)
    inv = np.linalg.inv(np.asarray(geom2.matrix, np.float64))
    coords = (src - np.asarray(geom2.centre)) @ inv.T + _view_centre(view_shape)
    hi = np.asarray(view_shape, np.float64) - 1.0
    eps = 1e-6
    inside = np.all((coords >= -eps) & (coords <= hi + eps), axis=-1)
    return coords, inside


def to_grid(coords: np.ndarray | torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Voxel coordinates (…, 3) in (z, y, x) of a volume of ``shape`` → a ``grid_sample`` grid
    (…, 3) in (x, y, z), normalised to [−1, 1] with ``align_corners=True``."""
    c = torch.as_tensor(coords, dtype=torch.float32)
    size = torch.as_tensor([max(int(s) - 1, 1) for s in shape], dtype=torch.float32)
    return (2.0 * c / size - 1.0).flip(-1)


def sample_view(patch: torch.Tensor, geom: ViewGeometry, view_shape: Sequence[int]) -> torch.Tensor:
    """The view (C, *view_shape) of a source patch (C, Z, Y, X) through ``geom`` (trilinear,
    reflection outside the patch)."""
    grid = to_grid(source_coords(geom, view_shape), patch.shape[1:])
    out = F.grid_sample(patch[None].float(), grid[None], mode="bilinear", padding_mode="reflection",
                        align_corners=True)
    return out[0]


def random_geometry(
    rng: np.random.Generator,
    centre: Sequence[float],
    *,
    flip_prob: float = 0.5,
    rotate90: bool = True,
    rotate: Sequence[float] | None = (0.26, 0.26, 0.26),
    rotate_prob: float = 1.0,
    zoom: Sequence[float] | None = (0.9, 1.1),
    zoom_prob: float = 1.0,
) -> ViewGeometry:
    """A random :class:`ViewGeometry` centred at ``centre``: a flip per axis (each with
    ``flip_prob``), a multiple of 90° in the y-x plane (``rotate90``), with ``rotate_prob`` a
    rotation of up to ``rotate`` radians about each axis (z, y, x), and with ``zoom_prob`` an
    isotropic zoom factor drawn in ``zoom`` (> 1 magnifies)."""
    m = np.eye(3)
    if rotate is not None and rng.random() < rotate_prob:
        for axis, limit in enumerate(rotate):
            if limit:
                m = rotation_matrix(axis, rng.uniform(-limit, limit)) @ m
    if rotate90:
        m = rotation_matrix(0, (math.pi / 2) * int(rng.integers(4))) @ m
    flips = [(-1.0 if rng.random() < flip_prob else 1.0) for _ in range(3)]
    m = m @ np.diag(flips)
    if zoom is not None and rng.random() < zoom_prob:
        m = m / rng.uniform(float(zoom[0]), float(zoom[1]))
    return ViewGeometry(np.round(m, 12), np.asarray(centre, np.float64))


def geometry_options(cfg) -> dict:
    """:func:`random_geometry`'s options from a :class:`~napari_cryolearn.models.config.TransformsConfig`."""
    return {"flip_prob": cfg.flip_prob if cfg.flip else 0.0, "rotate90": cfg.rotate90,
            "rotate": cfg.rotate, "rotate_prob": cfg.rotate_prob, "zoom": cfg.zoom, "zoom_prob": cfg.zoom_prob}


def intensity_transform(cfg):
    """The per-view intensity augmentation of a ``TransformsConfig`` (MONAI, on ``{"image": (1, Z, Y, X)}``):
    one of low-pass, band-pass, noise or nothing, then the random intensity scaling; ``None`` when
    there is none."""
    from monai.transforms import Compose, RandScaleIntensityd

    from napari_cryolearn.models.augment import filter_step

    steps = [s for s in [filter_step(cfg)] if s is not None]
    if cfg.scale_intensity_factors:
        steps.append(RandScaleIntensityd(["image"], factors=cfg.scale_intensity_factors,
                                         prob=cfg.scale_intensity_prob))
    return Compose(steps, lazy=False) if steps else None


def coarse_dropout(view_shape: Sequence[int], prob: float, fraction: float):
    """CryoSiam's coarse dropout of a view (MONAI ``RandCoarseDropoutd`` on ``{"image": (1, Z, Y, X)}``):
    with probability ``prob``, between 10 % and ``fraction`` of one hole per 4³ voxels, each
    hole 1-4 voxels a side, filled with 0; ``None`` when ``prob`` is 0.

    >>> t = coarse_dropout((16, 16, 16), 1.0, 0.5)
    >>> t.set_random_state(seed=0) is t
    True
    >>> view = t({"image": torch.ones(1, 16, 16, 16)})["image"]
    >>> 0.0 < float((view == 0).float().mean()) < 0.5
    True
    """
    if prob <= 0:
        return None
    from monai.transforms import RandCoarseDropoutd

    cells = float(np.prod(view_shape)) / 4 ** len(view_shape)
    holes = max(1, int(cells * 0.1))
    return RandCoarseDropoutd(["image"], prob=float(prob), holes=holes, max_holes=max(holes, int(cells * fraction)),
                              spatial_size=[1] * len(view_shape), max_spatial_size=[4] * len(view_shape), fill_value=0)


def view_pair(
    rng: np.random.Generator,
    patch_shape: Sequence[int],
    view_shape: Sequence[int],
    *,
    view_overlap: float = 0.5,
    min_shift: float = 0.0,
    **geometry,
) -> tuple[ViewGeometry, ViewGeometry]:
    """Two random geometries of views of ``view_shape`` in a patch of ``patch_shape``.

    View 1's centre is drawn so that an unrotated view would fit in the patch; view 2's is
    moved from it by ``min_shift · view`` to ``(1 − view_overlap) · view`` voxels per axis, in a
    random direction that keeps it in the same range where it can (else as far as the patch
    allows), so the views share at least ``view_overlap`` of each axis before rotation and zoom
    (CryoSiam's rule). A shift matters: a code of the distance to the view's centre or border
    (which zero-padded convolutions can learn) is the same in two views turned or flipped about
    one centre, and matching it would solve the task without looking at the tomogram.
    ``geometry``: :func:`random_geometry`'s options.

    >>> g1, g2 = view_pair(np.random.default_rng(0), (64, 64, 64), (32, 32, 32), min_shift=0.25)
    >>> bool(np.all(np.abs(g2.centre - g1.centre) >= 8))
    True
    """
    patch, view = np.asarray(patch_shape, np.float64), np.asarray(view_shape, np.float64)
    lo = np.minimum((view - 1) / 2, (patch - 1) / 2)
    hi = np.maximum(patch - 1 - lo, lo)
    c1 = rng.uniform(lo, hi)
    most = (1.0 - float(view_overlap)) * view
    least = np.minimum(float(min_shift) * view, most)
    size = rng.uniform(least, most)
    sign = np.where(rng.random(len(view)) < 0.5, -1.0, 1.0)
    fits = (c1 + sign * size >= lo) & (c1 + sign * size <= hi)
    sign = np.where(fits, sign, -sign)
    c2 = np.clip(c1 + sign * size, lo, hi)
    return random_geometry(rng, c1, **geometry), random_geometry(rng, c2, **geometry)

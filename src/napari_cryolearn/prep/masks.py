"""Label volumes made when no labels exist: spheres at coordinates, or a thresholded map.

``spheres_mask`` turns particle picks (e.g. a STAR file's coordinates) into a label volume:
a ball (an ellipsoid in voxels when the radius is in Angstrom and the voxel size is not
isotropic) of the particle's class around each coordinate. ``threshold_mask`` turns a density
or probability map into a mask, optionally without the connected pieces smaller than a size.

Axis order is (z, y, x); coordinates are in voxels, 0-based, a voxel's centre at its integer
index; voxel sizes in Angstrom. Nothing here reads or writes files.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io.star import check_in_bounds
from napari_cryolearn.io.dtypes import smallest_unsigned_dtype

__all__ = ["radius_in_voxels", "spheres_mask", "threshold_mask"]


def radius_in_voxels(
    radius: float, *, voxel_size: Sequence[float] = (1.0, 1.0, 1.0), radius_unit: str = "voxel"
) -> tuple[float, float, float]:
    """Semi-axes (z, y, x) in voxels of a ball of ``radius``.

    ``radius_unit="voxel"``: the same radius on every axis. ``"angstrom"``: the radius divided
    by each axis' voxel size (Å/voxel), an ellipsoid in voxels when the voxel is not a cube.
    """
    if not np.isfinite(radius) or radius <= 0:
        raise InputError(f"expected a radius > 0, got {radius}", field="radius")
    if radius_unit == "voxel":
        return (float(radius),) * 3
    if radius_unit == "angstrom":
        vs = tuple(float(v) for v in voxel_size)
        if len(vs) != 3 or not all(np.isfinite(v) and v > 0 for v in vs):
            raise InputError(f"expected 3 voxel sizes > 0 (z, y, x) in Å, got {voxel_size}", field="voxel_size")
        return tuple(float(radius) / v for v in vs)  # type: ignore[return-value]
    raise InputError(f"expected 'voxel' or 'angstrom', got {radius_unit!r}", field="radius_unit")


def spheres_mask(
    shape: Sequence[int],
    coords_zyx,
    radius: float,
    *,
    classes=None,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    radius_unit: str = "voxel",
    dtype=np.uint8,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """A label volume with a ball of each coordinate's class around each coordinate.

    Parameters
    ----------
    shape:
        (Z, Y, X) of the volume.
    coords_zyx:
        (N, 3) centres in voxels, (z, y, x), 0-based (a voxel's centre is at its integer
        index); fractional values are kept (the ball is not snapped to a voxel).
    radius:
        In voxels, or in Å when ``radius_unit="angstrom"`` (then divided per axis by
        ``voxel_size``: an ellipsoid in voxels for anisotropic voxels). A voxel belongs to the
        ball when ``Σ ((i - c) / r)² ≤ 1`` over the three axes.
    classes:
        The value of each ball: one per coordinate (N,), or one value for all (default 1).
        Values must be whole numbers ≥ 0 that fit ``dtype``.
    voxel_size:
        Å per voxel (z, y, x); used only with ``radius_unit="angstrom"``.
    dtype:
        Output dtype (an unsigned integer type).
    out:
        Optional array of ``shape`` to draw into (e.g. a memory-mapped output file); it is not
        cleared first. Default: a new zeroed array.

    Returns
    -------
    Labels (Z, Y, X). Where balls overlap, the coordinate that comes later in the list wins
    (its class overwrites the earlier ones), whatever the class values.

    Raises
    ------
    InputError
        Coordinates outside the volume (the message lists them; field ``coordinates``): a
        coordinate is inside when its nearest voxel is, i.e. ``-0.5 ≤ c < size - 0.5`` per axis
        (:func:`napari_cryolearn.io.check_in_bounds`).
        Bad radius, classes or shape.

    Notes
    -----
    Each ball is drawn into its bounding box only, so the cost is proportional to the balls'
    volume, not the volume's.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise InputError(f"expected a 3D shape with sizes > 0, got {shape}", field="shape")
    coords = np.asarray(coords_zyx, dtype=np.float64)
    if coords.size == 0:
        coords = coords.reshape(0, 3)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise InputError(f"expected coordinates of shape (N, 3), got {coords.shape}", field="coordinates")
    check_in_bounds(coords, shape)
    dtype = np.dtype(dtype)
    if dtype.kind != "u":
        raise InputError(f"expected an unsigned integer dtype, got {dtype}", field="dtype")
    n = coords.shape[0]
    values = np.broadcast_to(np.asarray(1 if classes is None else classes), (n,)) if n else np.zeros(0)
    if n:
        vals = values.astype(np.float64)
        if not np.all(np.isfinite(vals)) or np.any(vals != np.round(vals)) or np.any(vals < 0) or np.any(
            vals > np.iinfo(dtype).max
        ):
            raise InputError(f"classes must be whole numbers in 0..{np.iinfo(dtype).max}", field="classes")
        values = vals.astype(dtype)
    semi = np.asarray(radius_in_voxels(radius, voxel_size=voxel_size, radius_unit=radius_unit))

    if out is None:
        out = np.zeros(shape, dtype=dtype)
    elif tuple(out.shape) != shape:
        raise InputError(f"out has shape {out.shape}, expected {shape}", field="out")
    size = np.asarray(shape)
    for c, value in zip(coords, values, strict=True):
        lo = np.maximum(np.ceil(c - semi), 0).astype(int)
        hi = np.minimum(np.floor(c + semi), size - 1).astype(int) + 1
        if np.any(hi <= lo):
            continue
        dz = ((np.arange(lo[0], hi[0]) - c[0]) / semi[0]) ** 2
        dy = ((np.arange(lo[1], hi[1]) - c[1]) / semi[1]) ** 2
        dx = ((np.arange(lo[2], hi[2]) - c[2]) / semi[2]) ** 2
        inside = (dz[:, None, None] + dy[None, :, None] + dx[None, None, :]) <= 1.0
        box = out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        box[inside] = value
    return out


def threshold_mask(
    density,
    threshold: float,
    *,
    min_size: int = 0,
    above: bool = True,
    label_value: int = 1,
) -> np.ndarray:
    """A mask of the voxels of a density or probability map above (or below) a threshold.

    Parameters
    ----------
    density:
        Map (z, y, x), any real dtype.
    threshold:
        In the map's units.
    min_size:
        Connected pieces (face-connected: 6 neighbours in 3D) with fewer voxels are dropped.
        0 keeps everything.
    above:
        True: voxels with ``density > threshold``; False: ``density < threshold``. Voxels equal
        to the threshold are never in the mask.
    label_value:
        Value of the mask voxels (≥ 1).

    Returns
    -------
    Labels of the same shape, ``label_value`` in the mask and 0 elsewhere, the smallest
    unsigned dtype that holds ``label_value``.
    """
    density = np.asarray(density)
    if density.dtype.kind not in "biuf":
        raise InputError(f"expected a real-valued map, got dtype {density.dtype}", field="density")
    check_mask_params(threshold, min_size, label_value)
    mask = density > threshold if above else density < threshold
    if min_size > 1 and mask.any():
        from scipy import ndimage as ndi  # only here: the spheres need no scipy

        comp, _ = ndi.label(mask)
        sizes = np.bincount(comp.ravel())
        small = sizes < min_size
        small[0] = True
        mask = ~small[comp]
    out = mask.astype(smallest_unsigned_dtype(int(label_value)))
    if label_value != 1:
        out *= out.dtype.type(label_value)
    return out


def check_mask_params(threshold: float, min_size: int, label_value: int) -> None:
    """``InputError`` for a non-finite threshold, a negative ``min_size`` or ``label_value`` < 1."""
    if not np.isfinite(threshold):
        raise InputError(f"expected a finite threshold, got {threshold}", field="threshold")
    if min_size < 0:
        raise InputError(f"expected min_size ≥ 0 voxels, got {min_size}", field="min_size")
    if label_value < 1 or int(label_value) != label_value:
        raise InputError(f"expected a whole label value ≥ 1, got {label_value}", field="label_value")

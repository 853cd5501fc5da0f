"""Training patches: grids of patch origins, extraction, background filtering and reassembly.

A patch is a box of ``patch_size`` voxels (pz, py, px) whose first voxel (its *origin*) is at
(z, y, x) in the volume. Axis order is (z, y, x); all sizes are in voxels. Nothing here reads or
writes files.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import product

import numpy as np

__all__ = [
    "as_patch_size",
    "cryosiam_grid",
    "extract_patches",
    "grid_steps",
    "iter_patches",
    "keep_nonbackground",
    "patch_grid",
    "reassemble",
]


def as_patch_size(patch_size: int | Sequence[int], *, ndim: int = 3) -> tuple[int, ...]:
    """``patch_size`` as a tuple of ``ndim`` positive ints (one int is used for every axis)."""
    if np.isscalar(patch_size):
        sizes = (int(patch_size),) * ndim  # type: ignore[arg-type]
    else:
        sizes = tuple(int(p) for p in patch_size)  # type: ignore[union-attr]
        if len(sizes) != ndim:
            raise ValueError(f"patch_size must have {ndim} values (z, y, x), got {patch_size!r}")
    if any(p < 1 for p in sizes):
        raise ValueError(f"patch_size must be positive, got {patch_size!r}")
    return sizes


def grid_steps(patch_size: Sequence[int], *, overlap: float | int | Sequence[float | int] = 0.5) -> tuple[int, ...]:
    """Grid step per axis: ``round(p·(1 − overlap))`` for a fractional overlap (a float in
    [0, 1)), ``p − overlap`` for an overlap in voxels (an int), and at least 1."""
    ndim = len(patch_size)
    overlaps = [overlap] * ndim if np.isscalar(overlap) else list(overlap)  # type: ignore[arg-type]
    if len(overlaps) != ndim:
        raise ValueError(f"overlap must be one value or {ndim}, got {overlap!r}")
    steps = []
    for p, o in zip(patch_size, overlaps):
        if isinstance(o, (bool, np.bool_)):
            raise ValueError(f"overlap must be a fraction or a number of voxels, got {o!r}")
        if isinstance(o, (int, np.integer)):
            if not 0 <= o < p:
                raise ValueError(f"overlap of {o} voxels must be in [0, {p}) for patch size {p}")
            step = p - int(o)
        else:
            if not 0.0 <= float(o) < 1.0:
                raise ValueError(f"overlap fraction must be in [0, 1), got {o}")
            step = round(p * (1.0 - float(o)))
        steps.append(max(1, int(step)))
    return tuple(steps)


def patch_grid(
    shape: Sequence[int],
    patch_size: int | Sequence[int],
    *,
    overlap: float | int | Sequence[float | int] = 0.5,
) -> np.ndarray:
    """Origins of patches that cover every voxel of a volume.

    Along each axis the starts are ``0, step, 2·step, …`` while the patch fits, plus a last
    patch flush with the far edge (start ``S − p``) when the regular starts leave a remainder.
    (CryoSiam's grid, :func:`cryosiam_grid`, drops that remainder.)

    Parameters
    ----------
    shape:
        Volume shape (Z, Y, X).
    patch_size:
        (pz, py, px), or one int for all axes.
    overlap:
        Fraction of the patch shared with the next patch (float in [0, 1)) or voxels (int).

    Returns
    -------
    (N, 3) int64 origins in z-then-y-then-x order.

    Raises
    ------
    ValueError
        When the patch is larger than the volume along an axis (the message names both sizes).
    """
    shape = tuple(int(s) for s in shape)
    sizes = as_patch_size(patch_size, ndim=len(shape))
    for axis, (s, p) in zip("zyx"[-len(shape):], zip(shape, sizes)):
        if p > s:
            raise ValueError(f"patch size {tuple(sizes)} is larger than the volume {shape} along {axis}")
    steps = grid_steps(sizes, overlap=overlap)
    axes = []
    for s, p, step in zip(shape, sizes, steps):
        starts = list(range(0, s - p + 1, step))
        if starts[-1] != s - p:
            starts.append(s - p)
        axes.append(starts)
    return _product(axes)


def cryosiam_grid(
    shape: Sequence[int],
    patch_size: int | Sequence[int],
    *,
    overlap: float | int | Sequence[float | int] = 0.5,
) -> np.ndarray:
    """Origins of CryoSiam's patches (MONAI ``iter_patch_slices(..., padded=False)``).

    The patch size is first cut to the volume (``min(p, S)``), the steps are as in
    :func:`grid_steps` but not forced to 1, and the starts are ``range(0, S − p + 1, step)``:
    the remainder at the far edge is never patched (S=250, p=128, overlap 0.5: starts 0, 64;
    voxels 192–249 are in no patch).

    Returns
    -------
    (N, 3) int64 origins in z-then-y-then-x order.
    """
    shape = tuple(int(s) for s in shape)
    sizes = tuple(min(s, p) for s, p in zip(shape, as_patch_size(patch_size, ndim=len(shape))))
    ndim = len(shape)
    overlaps = [overlap] * ndim if np.isscalar(overlap) else list(overlap)  # type: ignore[arg-type]
    if isinstance(overlaps[0], (float, np.floating)):
        steps = [round(p * (1.0 - float(o))) for p, o in zip(sizes, overlaps)]
    else:
        steps = [p - int(o) for p, o in zip(sizes, overlaps)]
    if any(step < 1 for step in steps):
        raise ValueError(f"overlap {overlap!r} leaves no step for patch size {sizes}")
    return _product([list(range(0, s - p + 1, step)) for s, p, step in zip(shape, sizes, steps)])


def _product(axes: list[list[int]]) -> np.ndarray:
    origins = np.array(list(product(*axes)), dtype=np.int64)
    return origins.reshape(-1, len(axes))


def _box(origin: Sequence[int], sizes: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(int(o), int(o) + int(p)) for o, p in zip(origin, sizes))


def iter_patches(
    volume: np.ndarray, origins: np.ndarray, patch_size: int | Sequence[int]
) -> Iterator[np.ndarray]:
    """Yield each patch as a copy, one at a time (bounded memory on a memory-mapped volume).

    ``volume`` is (Z, Y, X) or channel-first (C, Z, Y, X); the box is taken along the last
    three axes, channels are kept whole.
    """
    sizes = as_patch_size(patch_size, ndim=3)
    lead = (slice(None),) * (volume.ndim - 3)
    for origin in np.asarray(origins):
        yield np.array(volume[lead + _box(origin, sizes)])


def extract_patches(volume: np.ndarray, origins: np.ndarray, patch_size: int | Sequence[int]) -> np.ndarray:
    """Stack of patches ``(N, [C,] pz, py, px)`` of ``volume`` ((Z, Y, X) or (C, Z, Y, X)) at
    ``origins`` ((N, 3) voxel indices), same dtype as ``volume``.

    Raises ``ValueError`` when a patch leaves the volume.
    """
    sizes = as_patch_size(patch_size, ndim=3)
    origins = np.asarray(origins, dtype=np.int64).reshape(-1, 3)
    spatial = volume.shape[-3:]
    if len(origins) and (np.any(origins < 0) or np.any(origins + np.array(sizes) > np.array(spatial))):
        raise ValueError(f"patches of size {sizes} at these origins leave the volume {tuple(spatial)}")
    out = np.empty((len(origins), *volume.shape[:-3], *sizes), dtype=volume.dtype)
    for i, patch in enumerate(iter_patches(volume, origins, sizes)):
        out[i] = patch
    return out


def keep_nonbackground(labels: np.ndarray, origins: np.ndarray, patch_size: int | Sequence[int]) -> np.ndarray:
    """(N,) bool: True for the patches of ``labels`` (Z, Y, X) that hold any nonzero voxel.

    CryoSiam's ``remove_only_background`` drops the patches where this is False.
    """
    sizes = as_patch_size(patch_size, ndim=3)
    origins = np.asarray(origins, dtype=np.int64).reshape(-1, 3)
    return np.array([bool(np.any(labels[_box(o, sizes)])) for o in origins], dtype=bool)


def reassemble(
    patches: np.ndarray,
    origins: np.ndarray,
    shape: Sequence[int],
    *,
    mode: str = "first",
    fill: float = 0,
) -> np.ndarray:
    """Put patches back into a volume.

    Parameters
    ----------
    patches:
        (N, [C,] pz, py, px) patches: an array, or any sequence of N equal-shaped arrays read
        one at a time (``len`` and ``patches[i]``; e.g. a patch store's lazy view), so that only
        the output volume and one patch are in memory.
    origins:
        (N, 3) origins (z, y, x) in voxels.
    shape:
        Spatial shape (Z, Y, X) of the volume.
    mode:
        ``"first"``: each voxel takes its value from the first patch that covers it (exact and
        dtype-preserving; the patches of one volume agree wherever they overlap).
        ``"mean"``: the average of all patches that cover it (float64 accumulation, float32
        output unless the patches are float64), for predictions that disagree on overlaps.
    fill:
        Value of voxels that no patch covers.

    Returns
    -------
    ([C,] Z, Y, X) volume. With ``mode="first"`` and patches cut from a volume by a grid that
    covers it, the volume is reproduced exactly.
    """
    if not hasattr(patches, "__getitem__") or not hasattr(patches, "__len__"):
        patches = np.asarray(patches)
    origins = np.asarray(origins, dtype=np.int64).reshape(-1, 3)
    if len(patches) != len(origins):
        raise ValueError(f"{len(patches)} patches but {len(origins)} origins")
    if mode not in ("first", "mean"):
        raise ValueError(f"mode must be 'first' or 'mean', got {mode!r}")
    shape = tuple(int(s) for s in shape)
    if len(patches) == 0:
        lead = tuple(getattr(patches, "shape", (0, 0, 0, 0))[1:-3])
        return np.full((*lead, *shape), fill, dtype=getattr(patches, "dtype", np.float32))
    first = np.asarray(patches[0])
    sizes = first.shape[-3:]
    lead = first.shape[:-3]
    lead_idx = (slice(None),) * len(lead)
    if mode == "first":
        out = np.full((*lead, *shape), fill, dtype=first.dtype)
        # Writing in reverse order lets the first patch win without masking.
        for i in range(len(origins) - 1, -1, -1):
            out[lead_idx + _box(origins[i], sizes)] = patches[i]
        return out
    if mode == "mean":
        total = np.zeros((*lead, *shape), dtype=np.float64)
        count = np.zeros(shape, dtype=np.int64)
        for i, origin in enumerate(origins):
            box = _box(origin, sizes)
            total[lead_idx + box] += patches[i]
            count[box] += 1
        out_dtype = np.float64 if first.dtype == np.float64 else np.float32
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (total / np.maximum(count, 1)).astype(out_dtype)
        out[lead_idx + (count == 0,)] = fill
    return out

"""Signed Euclidean distance maps of label volumes, and skeletons of thin structures.

The targets of CryoSiam's distance head: for every class ``i`` (background included), the
distance of each voxel to the border of class ``i``, positive inside the class and negative
outside. The values match ``edt.sdf(labels == i, black_border=True)``: a voxel inside the class
gets the distance to the nearest voxel outside it (≥ 1 voxel), a voxel outside gets minus the
distance to the nearest voxel of the class (≤ −1); with ``black_border`` the image is taken to be
surrounded by one layer of voxels that belong to neither the class nor its complement, so the
image border counts as outside for both terms. With scipy, the same numbers are
``edt(pad(m)) − edt(pad(~m))`` cropped, where ``pad`` adds one layer of ``False``.

Axis order is (z, y, x); voxel sizes are in Ångström. Nothing here reads or writes files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import edt
import numpy as np

from napari_cryolearn.io.dtypes import smallest_unsigned_dtype

__all__ = [
    "class_count",
    "own_class_distance",
    "signed_distance_map",
    "signed_distance_maps",
    "signed_distance_map_slabs",
    "signed_distance_maps_blocks",
    "tube_skeleton",
]


def _anisotropy(voxel_size: float | Sequence[float] | None) -> tuple[float, float, float]:
    if voxel_size is None:
        return (1.0, 1.0, 1.0)
    if np.isscalar(voxel_size):
        v = float(voxel_size)  # type: ignore[arg-type]
        out = (v, v, v)
    else:
        out = tuple(float(v) for v in voxel_size)  # type: ignore[union-attr]
        if len(out) != 3:
            raise ValueError(f"voxel_size must be one number or three (z, y, x), got {voxel_size!r}")
    if not all(np.isfinite(v) and v > 0 for v in out):
        raise ValueError(f"voxel_size must be positive, got {voxel_size!r}")
    return out  # type: ignore[return-value]


def _finish(d: np.ndarray, clip: float | None, normalize: bool) -> np.ndarray:
    if clip is not None:
        np.clip(d, -clip, clip, out=d)
        if normalize:
            d /= clip
    return d


def _check_clip(clip: float | None, normalize: bool) -> float | None:
    if clip is None:
        if normalize:
            raise ValueError("normalize needs clip (the maps are divided by clip)")
        return None
    clip = float(clip)
    if not (np.isfinite(clip) and clip > 0):
        raise ValueError(f"clip must be a positive number, got {clip!r}")
    return clip


def class_count(labels: np.ndarray) -> int:
    """Number of classes ``max(labels) + 1`` (at least 1) of an integer label volume."""
    if labels.size == 0:
        return 1
    return int(labels.max()) + 1


def signed_distance_map(
    mask: np.ndarray,
    *,
    voxel_size: float | Sequence[float] | None = None,
    black_border: bool = True,
    clip: float | None = None,
    normalize: bool = False,
    parallel: int = 0,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Signed Euclidean distance of every voxel to the border of ``mask``.

    Parameters
    ----------
    mask:
        Boolean (Z, Y, X) array (other dtypes: nonzero is inside).
    voxel_size:
        (z, y, x) voxel size in Å (or one number); ``None`` gives distances in voxels.
    black_border:
        Count the image border as outside (for the class and for its complement).
    clip:
        Clip distances to ``[-clip, clip]`` (same unit as the distances).
    normalize:
        Divide by ``clip`` after clipping, giving values in [-1, 1]; needs ``clip``.
    parallel:
        Threads for ``edt`` (0: all cores).
    dtype:
        Output dtype.

    Returns
    -------
    (Z, Y, X) array: ``edt(mask) - edt(~mask)``, positive inside (distance to the nearest
    outside voxel), negative outside. Without ``black_border`` a mask that is all inside (or
    all outside) has no border: its distances are +inf (or -inf), i.e. ``±clip`` when clipped.
    """
    mask = np.asarray(mask)
    if mask.dtype != bool:
        mask = mask != 0
    clip = _check_clip(clip, normalize)
    aniso = _anisotropy(voxel_size)
    threads = parallel if parallel > 0 else -1
    d = edt.edt(mask, anisotropy=aniso, black_border=black_border, parallel=threads)
    d = d.astype(dtype, copy=False)
    d -= edt.edt(~mask, anisotropy=aniso, black_border=black_border, parallel=threads)
    return _finish(d, clip, normalize)


def signed_distance_maps(
    labels: np.ndarray,
    *,
    n_classes: int | None = None,
    voxel_size: float | Sequence[float] | None = None,
    black_border: bool = True,
    clip: float | None = None,
    normalize: bool = False,
    parallel: int = 0,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Per-class signed distance maps of an integer label volume.

    Parameters
    ----------
    labels:
        Integer (Z, Y, X) label volume, classes 0..n_classes-1 (0 is background).
    n_classes:
        Number of channels; ``None`` gives ``max(labels) + 1``. Classes absent from ``labels``
        get a map that is negative everywhere (minus the distance to the image border when
        ``black_border``).
    voxel_size, black_border, clip, normalize, parallel, dtype:
        As in :func:`signed_distance_map`.

    Returns
    -------
    (C, Z, Y, X) array; channel ``i`` is ``signed_distance_map(labels == i)``: positive inside
    class ``i``, negative outside, in voxels (or Å with ``voxel_size``), clipped to
    ``[-clip, clip]`` and divided by ``clip`` when ``normalize``.
    (CryoSiam's loss compares ``tanh`` of its distance head with ``clip(d, -5, 5) / 5``, i.e.
    ``clip=5, normalize=True`` here; its stored targets are unclipped.)
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be 3D (z, y, x), got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if n_classes is None:
        n_classes = class_count(labels)
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}")
    clip = _check_clip(clip, normalize)
    aniso = _anisotropy(voxel_size)
    threads = parallel if parallel > 0 else -1
    # One multi-label transform gives every voxel's distance to the border of its own class
    # (the positive part of all channels at once); one transform per class adds the negative part.
    inside = own_class_distance(labels, voxel_size=voxel_size, black_border=black_border, parallel=parallel)
    out = np.empty((n_classes, *labels.shape), dtype=dtype)
    for i in range(n_classes):
        mask = labels == i
        np.negative(edt.edt(~mask, anisotropy=aniso, black_border=black_border, parallel=threads), out=out[i], casting="unsafe")
        np.copyto(out[i], inside, where=mask, casting="unsafe")
        _finish(out[i], clip, normalize)
    return out


def own_class_distance(
    labels: np.ndarray,
    *,
    voxel_size: float | Sequence[float] | None = None,
    black_border: bool = True,
    parallel: int = 0,
) -> np.ndarray:
    """Distance of every voxel to the nearest voxel of another label (or to the image border
    with ``black_border``), float32 (Z, Y, X), in voxels or Å with ``voxel_size``.

    For the voxels of class ``i`` this is the positive part of channel ``i`` of
    :func:`signed_distance_maps`: one multi-label transform for all classes.
    """
    labels = np.asarray(labels)
    aniso = _anisotropy(voxel_size)
    threads = parallel if parallel > 0 else -1
    if labels.dtype == bool:
        shifted = labels.astype(np.uint8) + 1
    elif labels.size and labels.max() >= np.iinfo(labels.dtype).max:
        shifted = labels.astype(np.int64) + 1
    else:
        shifted = labels + 1  # no zero (edt's "background") left: every label is a segment
    return edt.edt(shifted, anisotropy=aniso, black_border=black_border, parallel=threads).astype(np.float32, copy=False)


def signed_distance_map_slabs(
    mask_source,
    shape: Sequence[int],
    clip: float,
    *,
    voxel_size: float | Sequence[float] | None = None,
    black_border: bool = True,
    normalize: bool = False,
    parallel: int = 0,
    slab: int = 64,
):
    """Clipped signed distances computed slab by slab along z; exact thanks to clipping.

    An exact Euclidean distance transform needs the whole volume, unless distances are clipped:
    a voxel whose true distance is ``d ≤ clip`` has its nearest border voxel within ``clip``, so
    a slab extended by a halo of ``ceil(clip / voxel_size_z)`` planes on each side gives the exact
    value; farther voxels get a value ``≥ clip`` in the slab, clipped to ``clip`` either way.

    Parameters
    ----------
    mask_source:
        ``mask_source(z0, z1) -> bool (z1 - z0, Y, X)``: the mask for planes ``z0 ≤ z < z1``
        (e.g. ``lambda a, b: labels[a:b] == i`` on a memory-mapped label volume).
    shape:
        (Z, Y, X) of the whole volume.
    clip, voxel_size, black_border, normalize, parallel:
        As in :func:`signed_distance_map` (``clip`` is required).
    slab:
        Planes per slab (without the halo).

    Yields
    ------
    ``(z0, z1, block)``: float32 ``block`` = the finished map of planes ``z0..z1-1``, equal to
    the same planes of ``signed_distance_map(mask, ..., clip=clip)``.
    """
    clip = _check_clip(clip, normalize)
    if clip is None:
        raise ValueError("slab-wise distances need clip")
    aniso = _anisotropy(voxel_size)
    threads = parallel if parallel > 0 else -1
    nz = int(shape[0])
    halo = int(np.ceil(clip / aniso[0])) + 1
    slab = max(1, int(slab))
    for z0 in range(0, nz, slab):
        z1 = min(nz, z0 + slab)
        h0, h1 = max(0, z0 - halo), min(nz, z1 + halo)
        m = np.asarray(mask_source(h0, h1), dtype=bool)
        # Pad real image borders with one plane outside both terms (black border); slab cuts
        # inside the volume are open (no border there).
        pad_lo = 1 if black_border and h0 == 0 else 0
        pad_hi = 1 if black_border and h1 == nz else 0
        yx = 1 if black_border else 0
        pad = ((pad_lo, pad_hi), (yx, yx), (yx, yx))
        core = (slice(pad_lo + z0 - h0, pad_lo + z1 - h0), slice(yx, yx + m.shape[1]), slice(yx, yx + m.shape[2]))
        # Distances inside the slab are never shorter than the true ones, and equal wherever
        # the true distance is within the halo; a term without any border gives inf.
        block = edt.edt(np.pad(m, pad), anisotropy=aniso, black_border=False, parallel=threads)[core]
        block = block.astype(np.float32, copy=True)
        block -= edt.edt(np.pad(~m, pad), anisotropy=aniso, black_border=False, parallel=threads)[core]
        yield z0, z1, _finish(block, clip, normalize)


def signed_distance_maps_blocks(
    label_source: Callable[[int, int, int, int], np.ndarray],
    shape: Sequence[int],
    n_classes: int,
    clip: float,
    *,
    voxel_size: float | Sequence[float] | None = None,
    black_border: bool = True,
    normalize: bool = False,
    parallel: int = 0,
    block: Sequence[int] = (128, 128),
) -> Iterator[tuple[slice, slice, int, np.ndarray]]:
    """Clipped per-class signed distances of a label volume, block by block; exact thanks to clipping.

    The volume is cut into blocks of ``block[0]`` planes (z) by ``block[1]`` rows (y), whole
    along x, each read once with a halo of ``ceil(clip / voxel_size) + 1`` planes and rows (the
    argument of :func:`signed_distance_map_slabs`, along two axes). Per block, one multi-label
    transform gives the inside part of every class (as :func:`own_class_distance`) and one
    transform per class present in the block (and one shared by the classes absent from it) the
    outside part, so the values are those of :func:`signed_distance_maps` with ``clip``.

    Parameters
    ----------
    label_source:
        ``label_source(z0, z1, y0, y1) -> (z1 - z0, y1 - y0, X)`` integer labels of those planes
        and rows (e.g. ``lambda a, b, c, d: np.array(labels[a:b, c:d])`` on a memory map), all
        below ``n_classes``.
    shape:
        (Z, Y, X) of the whole volume.
    n_classes:
        Number of channels (classes ``0..n_classes-1``).
    clip, voxel_size, black_border, normalize, parallel:
        As in :func:`signed_distance_maps` (``clip`` is required).
    block:
        Planes and rows per block, without the halo.

    Yields
    ------
    ``(zs, ys, cls, values)``: float32 ``values`` (``zs``, ``ys``, X) = the finished map of class
    ``cls`` on planes ``zs`` and rows ``ys``, equal to ``signed_distance_maps(...)[cls, zs, ys]``.
    ``values`` is a view into the block's transform: write it out and drop it before asking for
    the next one (holding it keeps that transform's memory alive during the next).
    """
    clip = _check_clip(clip, normalize)
    if clip is None:
        raise ValueError("block-wise distances need clip")
    n_classes = int(n_classes)
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}")
    aniso = _anisotropy(voxel_size)
    threads = parallel if parallel > 0 else -1
    nz, ny, nx = (int(s) for s in shape)
    hz = int(np.ceil(clip / aniso[0])) + 1
    hy = int(np.ceil(clip / aniso[1])) + 1
    bz, by = max(1, int(block[0])), max(1, int(block[1]))
    # Labels shifted by one, so that 0 (edt's background) is free for the black border.
    shifted_dtype = smallest_unsigned_dtype(n_classes, largest=np.uint64)
    b = 1 if black_border else 0
    for z0 in range(0, nz, bz):
        z1 = min(nz, z0 + bz)
        hz0, hz1 = max(0, z0 - hz), min(nz, z1 + hz)
        for y0 in range(0, ny, by):
            y1 = min(ny, y0 + by)
            hy0, hy1 = max(0, y0 - hy), min(ny, y1 + hy)
            lab = np.asarray(label_source(hz0, hz1, hy0, hy1))
            if lab.shape != (hz1 - hz0, hy1 - hy0, nx):
                raise ValueError(f"label_source gave shape {lab.shape}, expected {(hz1 - hz0, hy1 - hy0, nx)}")
            # Real image borders get one layer outside both terms (black border); cuts are open.
            pz0, pz1 = (b if hz0 == 0 else 0), (b if hz1 == nz else 0)
            py0, py1 = (b if hy0 == 0 else 0), (b if hy1 == ny else 0)
            full = (lab.shape[0] + pz0 + pz1, lab.shape[1] + py0 + py1, nx + 2 * b)
            inner = (slice(pz0, pz0 + lab.shape[0]), slice(py0, py0 + lab.shape[1]), slice(b, b + nx))
            core = (slice(pz0 + z0 - hz0, pz0 + z1 - hz0), slice(py0 + y0 - hy0, py0 + y1 - hy0), slice(b, b + nx))
            lab_core = lab[z0 - hz0 : z1 - hz0, y0 - hy0 : y1 - hy0]
            buf = np.zeros(full, dtype=shifted_dtype)
            np.add(lab, 1, out=buf[inner], casting="unsafe")
            inside = edt.edt(buf, anisotropy=aniso, black_border=False, parallel=threads)
            inside = np.array(inside[core], dtype=np.float32)  # the core only; frees the halo's part
            del buf
            outside = np.zeros(full, dtype=bool)
            is_cls = np.empty(lab_core.shape, dtype=bool)
            absent = []  # classes with no voxel in the block and its halo: one map for them all
            for cls in range(n_classes):
                np.not_equal(lab, cls, out=outside[inner])
                if outside[inner].all():
                    absent.append(cls)
                    continue
                d = edt.edt(outside, anisotropy=aniso, black_border=False, parallel=threads)
                values = d[core]
                np.negative(values, out=values, casting="unsafe")
                np.copyto(values, inside, where=np.equal(lab_core, cls, out=is_cls), casting="unsafe")
                yield slice(z0, z1), slice(y0, y1), cls, _finish(values, clip, normalize)
                del d, values
            del inside, is_cls, lab, lab_core
            if absent:  # outside is all True now: minus the distance to the black border, or -inf
                outside[inner] = True
                d = edt.edt(outside, anisotropy=aniso, black_border=False, parallel=threads)
                values = d[core]
                _finish(np.negative(values, out=values), clip, normalize)
                for cls in absent:
                    yield slice(z0, z1), slice(y0, y1), cls, values
                del d, values
            del outside


def tube_skeleton(
    labels: np.ndarray,
    class_id: int = 1,
    *,
    fraction: float = 0.5,
    voxel_size: float | Sequence[float] | None = None,
    neighbourhood: int | None = None,
    black_border: bool = False,
    parallel: int = 0,
) -> np.ndarray:
    """The central voxels of thin structures (filaments, tubes, membranes) of one class.

    A voxel of class ``class_id`` is kept when its distance to the class border is at least
    ``fraction`` times the *local* maximum of that distance. The local maximum is taken per
    connected component (26-connectivity) by default, so every filament keeps its own core
    whatever its thickness relative to the others; with ``neighbourhood`` (an odd window width
    in voxels) it is instead a ``maximum_filter`` over that cube, for one component whose
    thickness changes along its length.

    Parameters
    ----------
    labels:
        Integer (Z, Y, X) label volume.
    class_id:
        The class to skeletonise.
    fraction:
        In [0, 1]: 0 keeps the whole class, 1 only the voxels at the local maximum.
    voxel_size:
        (z, y, x) Å for anisotropic volumes; ``None`` measures in voxels.
    neighbourhood:
        ``None`` → per connected component; an int → cube window for the local maximum.
    black_border:
        Count the image border as outside the class (a filament cut by the border then thins
        towards it). Default ``False``: cut structures keep their core up to the border.
    parallel:
        Threads for ``edt``.

    Returns
    -------
    Boolean (Z, Y, X) mask, a subset of ``labels == class_id``.
    """
    from scipy import ndimage as ndi  # here, not at module level: only the skeleton needs scipy

    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    mask = np.asarray(labels) == class_id
    if not mask.any():
        return mask
    aniso = _anisotropy(voxel_size)
    threads = parallel if parallel > 0 else -1
    d = edt.edt(mask, anisotropy=aniso, black_border=black_border, parallel=threads).astype(np.float32, copy=False)
    if neighbourhood is None:
        comp, n = ndi.label(mask, structure=np.ones((3, 3, 3), bool))
        peaks = np.asarray(ndi.maximum(d, comp, index=np.arange(1, n + 1)), dtype=np.float32)
        local_max = np.concatenate([[0.0], peaks]).astype(np.float32)[comp]
    else:
        size = int(neighbourhood)
        if size < 1:
            raise ValueError(f"neighbourhood must be a positive window width, got {neighbourhood}")
        local_max = ndi.maximum_filter(d, size=size, mode="nearest")
    return mask & (d >= fraction * local_max)

"""Keep some classes of a label volume: a binary mask, a subset, or a renumbered subset.

The operation behind ``cryolearn prep filter-labels``. CryoSiam's own filter step
(``filter_ground_truth_labels.py``) always writes a binary mask and then grows it by one voxel
with ``skimage.segmentation.expand_labels(.., 1)``; ``binary=True, expand=1`` reproduces it.

Axis order is (z, y, x). Nothing here reads or writes files.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from napari_cryolearn.io.dtypes import smallest_unsigned_dtype

from napari_cryolearn.engine.errors import InputError

__all__ = [
    "apply_label_mapping",
    "check_integer_labels",
    "expand_labels",
    "filter_labels",
    "label_mapping",
    "warn_absent",
]


def label_mapping(
    keep: int | Sequence[int], *, binary: bool | None = None, renumber: bool = False
) -> dict[int, int]:
    """The output value of every kept input value.

    Parameters
    ----------
    keep:
        One label value, or a list of them (no repeats).
    binary:
        Every kept value → 1. ``None`` (default): binary when exactly one value is kept.
    renumber:
        Kept values → 1..n in the order of ``keep`` (ignored when only one value is kept).

    Returns
    -------
    ``{old: new}``; input values not in it become 0.

    Raises
    ------
    InputError
        (field ``keep``/``renumber``) for an empty or repeated list, values that are not
        integers, negative values kept unchanged, or ``binary`` together with ``renumber``.
    """
    values = [keep] if np.isscalar(keep) else list(keep)  # type: ignore[arg-type]
    if not values:
        raise InputError("expected at least one label value to keep", field="keep")
    clean = []
    for v in values:
        if isinstance(v, bool) or not float(v).is_integer():
            raise InputError(f"label values must be integers, got {v!r}", field="keep")
        clean.append(int(v))
    if len(set(clean)) != len(clean):
        raise InputError(f"repeated label values in {clean}", field="keep")
    if binary is None:
        binary = len(clean) == 1
    if binary:
        if renumber and len(clean) > 1:
            raise InputError("binary and renumber exclude each other for several labels", field="renumber")
        return {v: 1 for v in clean}
    if renumber:
        return {v: i + 1 for i, v in enumerate(clean)}
    negative = [v for v in clean if v < 0]
    if negative:
        raise InputError(
            f"negative labels {negative} cannot be kept unchanged in an unsigned output "
            "(use binary or renumber)",
            field="keep",
        )
    return {v: v for v in clean}


def check_integer_labels(labels: np.ndarray) -> None:
    """Raise ``InputError`` (field ``labels``) unless every value of ``labels`` is a whole number.

    Integer and boolean arrays pass; float arrays pass when all values are whole numbers
    (label volumes are often stored as float32 MRC); anything else fails.
    """
    kind = labels.dtype.kind
    if kind in "biu":
        return
    if kind != "f":
        raise InputError(f"labels must be integers, got dtype {labels.dtype}", field="labels")
    if labels.size == 0:
        return
    with np.errstate(invalid="ignore"):
        whole = np.array_equal(labels, np.floor(labels))
    if not whole:
        bad = labels[~(labels == np.floor(labels))].ravel()[:5]
        raise InputError(
            f"labels must be integers, found values such as {[float(b) for b in bad]} "
            f"(dtype {labels.dtype})",
            field="labels",
        )


def apply_label_mapping(labels: np.ndarray, mapping: dict[int, int], out: np.ndarray) -> np.ndarray:
    """Write ``mapping[v]`` into ``out`` where ``labels == v``, 0 elsewhere.

    Parameters
    ----------
    labels:
        Any shape, whole-number values.
    mapping:
        ``{old: new}`` from :func:`label_mapping`.
    out:
        Same shape as ``labels``, an unsigned dtype that holds the new values; overwritten.

    Returns
    -------
    Voxel counts of each key of ``mapping`` in ``labels`` (int64, in the mapping's order).
    """
    out[...] = 0
    olds = list(mapping)
    counts = np.zeros(len(olds), dtype=np.int64)
    if len(olds) <= 8:
        for i, old in enumerate(olds):
            hit = labels == old
            counts[i] = np.count_nonzero(hit)
            if counts[i]:
                np.copyto(out, mapping[old], where=hit)
        return counts
    keys = np.array(sorted(olds), dtype=np.float64 if labels.dtype.kind == "f" else np.int64)
    news = np.array([mapping[int(k)] for k in keys], dtype=out.dtype)
    hit = np.isin(labels, keys)
    pos = np.searchsorted(keys, labels[hit])
    out[hit] = news[pos]
    per_sorted = np.bincount(pos, minlength=len(keys))
    order = {int(k): i for i, k in enumerate(keys)}
    counts[:] = [per_sorted[order[o]] for o in olds]
    return counts


def expand_labels(labels: np.ndarray, distance: float) -> np.ndarray:
    """Grow every label into the background by up to ``distance`` voxels (Euclidean), in place.

    Equal to ``skimage.segmentation.expand_labels(labels, distance)``: a background voxel takes
    the label of its nearest labelled voxel when that is at most ``distance`` away; labels never
    overwrite each other. Binary masks (values 0/1) take a faster route with the same result.

    Parameters
    ----------
    labels:
        Integer labels, any number of dimensions; modified in place.
    distance:
        Growth in voxels (≥ 0).

    Returns
    -------
    ``labels``.
    """
    if distance <= 0 or labels.size == 0:
        return labels
    if labels.max() <= 1:
        background = labels == 0
        if not background.all() and background.any():
            if labels.ndim == 3 and 1 <= distance < math.sqrt(2):
                from scipy import ndimage as ndi

                grown = ndi.binary_dilation(~background, ndi.generate_binary_structure(3, 1))
            else:
                import edt

                grown = edt.edtsq(background, black_border=False) <= distance * distance
            labels[grown] = 1
        return labels
    from skimage.segmentation import expand_labels as _sk_expand

    labels[...] = _sk_expand(labels, distance)
    return labels


def filter_labels(
    labels: np.ndarray,
    keep: int | Sequence[int],
    *,
    binary: bool | None = None,
    renumber: bool = False,
    expand: float = 0,
) -> tuple[np.ndarray, dict[int, int]]:
    """Keep only some classes of a label volume.

    Parameters
    ----------
    labels:
        Label volume (z, y, x) of whole numbers (integer dtype, or float holding integers).
        Never modified.
    keep:
        One value → a binary 0/1 mask of that value. A list → only those classes are kept
        (everything else → 0), with their values unchanged, or renumbered 1..n in the order
        given when ``renumber``, or all set to 1 when ``binary``.
    binary:
        Force a 0/1 mask for a list (CryoSiam's behaviour). ``None``: binary only for one value.
    renumber:
        Renumber kept classes 1..n in the order of ``keep``.
    expand:
        Grow the kept classes into the background by this many voxels, as
        ``skimage.segmentation.expand_labels`` (CryoSiam uses 1). Default 0 (no growth).

    Returns
    -------
    out:
        New array, same shape, the smallest unsigned dtype that holds the output values.
    mapping:
        ``{old: new}`` for every kept value.

    Raises
    ------
    InputError
        Labels that are not whole numbers, or a bad ``keep`` list (see :func:`label_mapping`).

    Warns
    -----
    UserWarning
        When a kept value does not occur in ``labels`` (the warning names the values).

    Examples
    --------
    >>> import numpy as np
    >>> out, mapping = filter_labels(np.array([[[0, 3, 5, 7]]]), [7, 3], renumber=True)
    >>> out.tolist(), mapping
    ([[[0, 2, 0, 1]]], {7: 1, 3: 2})
    """
    labels = np.asarray(labels)
    check_integer_labels(labels)
    if expand < 0:
        raise InputError(f"expected a growth ≥ 0 voxels, got {expand}", field="expand")
    mapping = label_mapping(keep, binary=binary, renumber=renumber)
    out = np.empty(labels.shape, dtype=smallest_unsigned_dtype(max(mapping.values())))
    counts = apply_label_mapping(labels, mapping, out)
    warn_absent(mapping, counts)
    expand_labels(out, expand)
    return out, mapping


def warn_absent(mapping: dict[int, int], counts: np.ndarray, *, where: str = "the labels") -> None:
    """``warnings.warn`` naming the kept values whose count is 0."""
    absent = [old for old, n in zip(mapping, counts, strict=True) if n == 0]
    if absent:
        warnings.warn(
            f"label value(s) {absent} selected but absent from {where}", UserWarning, stacklevel=3
        )

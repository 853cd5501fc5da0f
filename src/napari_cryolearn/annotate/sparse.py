"""A simulated annotator: sparse brush strokes taken from a truth volume (demo, tests, benchmark).

A person paints a few strokes per class on a few slices, then corrects what a round got wrong;
:func:`simulated_annotations` does the first from the truth: on ``n_slices`` z slices spread
over the volume, discs of ``radius`` voxels around random voxels of each class, kept inside that
class (a careful brush), until the class's share of the voxel budget (``fraction`` of the
volume, split evenly over slices and classes) is used. :func:`simulated_corrections` paints the
same strokes around the voxels a prediction got wrong.
"""

from __future__ import annotations

import numpy as np


def _disc(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return yy ** 2 + xx ** 2 <= radius ** 2


def _paint(plane: np.ndarray, painted: np.ndarray, where: np.ndarray, value: int, budget: int,
           rng: np.random.Generator, radius: int) -> int:
    """Discs around random voxels of ``where`` (a (N, 2) list), inside ``plane == value`` and
    not yet painted, into ``painted``, until ``budget`` voxels; returns the voxels painted."""
    disc = _disc(radius)
    done = 0
    for _ in range(10 * max(1, budget // int(disc.sum()))):
        if done >= budget or not len(where):
            break
        cy, cx = where[rng.integers(len(where))]
        y0, x0 = max(cy - radius, 0), max(cx - radius, 0)
        y1, x1 = min(cy + radius + 1, plane.shape[0]), min(cx + radius + 1, plane.shape[1])
        d = disc[y0 - cy + radius:y1 - cy + radius, x0 - cx + radius:x1 - cx + radius]
        take = np.argwhere(d & (plane[y0:y1, x0:x1] == value) & (painted[y0:y1, x0:x1] == 0))[: budget - done]
        painted[y0 + take[:, 0], x0 + take[:, 1]] = value
        done += len(take)
    return done


def _slices(depth: int, n: int, offset: float = 0.0) -> np.ndarray:
    z = np.linspace(0, depth - 1, n + 2)[1:-1] + offset * depth / (n + 1)
    return np.clip(z.round().astype(int), 0, depth - 1)


def simulated_annotations(truth: np.ndarray, *, n_slices: int = 4, fraction: float = 0.01, radius: int = 3,
                          seed: int = 0, near: float = 0.5) -> np.ndarray:
    """Sparse annotations (uint8, 0 = not annotated) of ``truth`` (annotation values 1..K everywhere);
    a ``near`` fraction of each class's strokes is centred within ``radius`` voxels of another
    class (where an annotator paints to show the boundary).

    >>> truth = np.ones((8, 32, 32), np.uint8); truth[:, 10:14] = 2
    >>> a = simulated_annotations(truth, n_slices=2, fraction=0.02)
    >>> sorted(np.unique(a).tolist()), bool((a[a > 0] == truth[a > 0]).all()), bool((a > 0).mean() <= 0.02)
    ([0, 1, 2], True, True)
    """
    truth = np.asarray(truth)
    rng = np.random.default_rng(seed)
    out = np.zeros(truth.shape, np.uint8)
    values = [int(v) for v in np.unique(truth) if v > 0]
    zs = _slices(truth.shape[0], n_slices)
    budget = int(fraction * truth.size / (len(zs) * max(len(values), 1)))
    from scipy import ndimage

    for z in zs:
        for v in values:
            mine = truth[z] == v
            edge = mine & ndimage.binary_dilation(~mine, iterations=radius)
            near_budget = int(budget * near) if edge.any() else 0
            done = _paint(truth[z], out[z], np.argwhere(edge), v, near_budget, rng, radius)
            _paint(truth[z], out[z], np.argwhere(mine), v, budget - done, rng, radius)
    return out


def simulated_corrections(truth: np.ndarray, prediction: np.ndarray, annotations: np.ndarray, *,
                          n_slices: int = 4, voxels: int = 10000, radius: int = 3, seed: int = 1) -> int:
    """Correct ``annotations`` in place where ``prediction`` (annotation values) is wrong: strokes
    of the true class around wrong voxels on ``n_slices`` new z slices, ``voxels`` in all (split
    over slices and classes). Returns the voxels painted."""
    rng = np.random.default_rng(seed)
    values = [int(v) for v in np.unique(truth) if v > 0]
    zs = _slices(truth.shape[0], n_slices, offset=0.5)
    budget = int(voxels / (len(zs) * max(len(values), 1)))
    done = 0
    for z in zs:
        wrong = (prediction[z] != truth[z]) & (annotations[z] == 0)
        for v in values:
            done += _paint(truth[z], annotations[z], np.argwhere(wrong & (truth[z] == v)), v, budget, rng, radius)
    return done

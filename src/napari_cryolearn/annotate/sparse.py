"""A simulated annotator: sparse brush strokes taken from a truth volume (demo, tests, benchmark).

A person paints a few strokes per class on a few slices; :func:`simulated_annotations` does the
same from the truth: on ``n_slices`` z slices spread over the volume, discs of ``radius`` voxels
around random voxels of each class, kept inside that class (a careful brush), until the class's
share of the voxel budget (``fraction`` of the volume, split evenly over slices and classes)
is used.
"""

from __future__ import annotations

import numpy as np


def simulated_annotations(truth: np.ndarray, *, n_slices: int = 4, fraction: float = 0.01, radius: int = 3,
                          seed: int = 0) -> np.ndarray:
    """Sparse annotations (uint8, 0 = not annotated) of ``truth`` (annotation values 1..K everywhere).

    >>> truth = np.ones((8, 32, 32), np.uint8); truth[:, 10:14] = 2
    >>> a = simulated_annotations(truth, n_slices=2, fraction=0.02)
    >>> sorted(np.unique(a).tolist()), bool((a[a > 0] == truth[a > 0]).all()), bool((a > 0).mean() <= 0.02)
    ([0, 1, 2], True, True)
    """
    truth = np.asarray(truth)
    rng = np.random.default_rng(seed)
    out = np.zeros(truth.shape, np.uint8)
    values = [int(v) for v in np.unique(truth) if v > 0]
    zs = np.linspace(0, truth.shape[0] - 1, n_slices + 2)[1:-1].round().astype(int)
    budget = int(fraction * truth.size / (len(zs) * max(len(values), 1)))
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disc = yy ** 2 + xx ** 2 <= radius ** 2
    for z in zs:
        plane, painted = truth[z], out[z]
        for v in values:
            where = np.argwhere(plane == v)
            done = 0
            for _ in range(10 * max(1, budget // max(int(disc.sum()), 1))):
                if done >= budget or not len(where):
                    break
                cy, cx = where[rng.integers(len(where))]
                y0, x0 = max(cy - radius, 0), max(cx - radius, 0)
                y1, x1 = min(cy + radius + 1, plane.shape[0]), min(cx + radius + 1, plane.shape[1])
                d = disc[y0 - cy + radius:y1 - cy + radius, x0 - cx + radius:x1 - cx + radius]
                sel = d & (plane[y0:y1, x0:x1] == v) & (painted[y0:y1, x0:x1] == 0)
                take = np.argwhere(sel)[: budget - done]
                painted[y0 + take[:, 0], x0 + take[:, 1]] = v
                done += len(take)
    return out

"""Speed of per-class signed distance maps: ours (edt, threaded) against scipy.

The reference is the scipy construction with the same values as CryoSiam's targets:
``distance_transform_edt(pad(m)) - distance_transform_edt(pad(~m))``, cropped, per class.

    .venv/bin/python benchmarks/bench_distances.py [--shape Z Y X] [--classes 3] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy import ndimage as ndi

from napari_cryolearn.prep.distances import signed_distance_maps


def make_labels(shape, n_classes, seed=0):
    """Spheres of classes 1..n-1 and a membrane-like slab of class 1 in a (Z, Y, X) volume."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    slab = np.abs(z - shape[0] // 2 + 0.3 * (y - shape[1] // 2)) < 3
    labels[np.broadcast_to(slab, shape)] = 1
    for _ in range(40):
        c = [rng.integers(0, s) for s in shape]
        r = rng.integers(4, max(5, min(shape) // 8))
        cls = rng.integers(1, n_classes)
        labels[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r**2] = cls
    return labels


def scipy_reference(labels, n_classes):
    out = np.empty((n_classes, *labels.shape), np.float32)
    inner = (slice(1, -1),) * 3
    for i in range(n_classes):
        m = labels == i
        out[i] = ndi.distance_transform_edt(np.pad(m, 1))[inner]
        out[i] -= ndi.distance_transform_edt(np.pad(~m, 1))[inner]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    labels = make_labels(tuple(args.shape), args.classes)
    print(f"labels {tuple(args.shape)} uint8, {args.classes} classes, {os.cpu_count()} cores")

    ours_t = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ours = signed_distance_maps(labels, n_classes=args.classes)
        ours_t.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ref = scipy_reference(labels, args.classes)
    ref_t = time.perf_counter() - t0
    diff = float(np.abs(ours - ref).max())
    best = min(ours_t)
    print(f"ours (edt, all threads):            {best:8.2f} s")
    print(f"reference (scipy edt, class+compl.): {ref_t:8.2f} s")
    print(f"speed-up: {ref_t / best:.1f}x   (goal >= 4x)   max |ours - scipy| = {diff:.2e}")


if __name__ == "__main__":
    main()

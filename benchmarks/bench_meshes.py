"""Time of the membrane meshes (``picking.meshes``) per membrane, against plain marching cubes.

    .venv/bin/python benchmarks/bench_meshes.py [--shape 96 128 128] [--repeats 3]

For each membrane of ``make_synthetic_tomogram(seed=0)`` (components of at least 1000 voxels):
``mesh_from_mask`` (signed distance, resampling to about one vertex per 400 Å², Taubin
smoothing), ``vertex_normals`` and ``normal_profiles`` against the reference in the same run,
scikit-image's ``marching_cubes`` of the same mask at level 0.5 and step 1 (the mesh before any
of our work). Prints the median seconds per membrane, the ratio, and vertices and Å² per vertex.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from skimage.measure import marching_cubes

from napari_cryolearn.picking.meshes import (
    mean_vertex_area,
    membrane_components,
    mesh_from_mask,
    normal_profiles,
    vertex_normals,
)
from napari_cryolearn.sample import make_synthetic_tomogram


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=(96, 128, 128))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tomo = make_synthetic_tomogram(shape=tuple(args.shape), seed=0)
    vs = tomo.voxel_size
    for c in membrane_components(tomo.labels, classes=(1,), min_voxels=1000):
        def ours(c=c):
            verts, faces = mesh_from_mask(c.mask, voxel_size=vs, offset=c.offset)
            normals = vertex_normals(verts, faces)
            normal_profiles(tomo.volume, verts, normals, voxel_size=vs)
            return verts, faces

        verts, faces = ours()
        t_ours = _median_time(ours, args.repeats)
        t_ref = _median_time(lambda c=c: marching_cubes(c.mask.astype(np.float32), level=0.5), args.repeats)
        print(f"membrane {c.label}: {c.voxels} voxels, {len(verts)} vertices, "
              f"{mean_vertex_area(verts, faces) * vs**2:.0f} Å² per vertex; ours {t_ours:.3f} s, "
              f"marching cubes alone {t_ref:.3f} s, ratio {t_ours / t_ref:.2f}")


if __name__ == "__main__":
    main()

"""Time of a DiffusionNet's operators per ~2000-vertex partition, and of loading them cached.

The mesh is a partition of ``--size`` vertices of an icosphere (subdivisions 5, 10242
vertices), so it has a boundary like a membrane patch. ``compute_operators`` (Laplacian, mass,
``k`` eigenpairs by shift-invert with ``L + εI``, gradients) is timed against a plain
``scipy.sparse.linalg.eigsh(L, k, M, sigma=-0.01)`` of the same matrices, and the cached load
(:func:`cached_operators`' second call) against both.

    .venv/bin/python benchmarks/bench_operators.py [--size 2000] [--k 128] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import trimesh
from scipy import sparse
from scipy.sparse.linalg import eigsh

from napari_cryolearn.picking.operators import cached_operators, compute_operators
from napari_cryolearn.picking.partitions import partition_mesh


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--k", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)

    m = trimesh.creation.icosphere(subdivisions=5)
    t = time.perf_counter()
    parts = partition_mesh(m.vertices, m.faces, size=a.size)
    t_part = time.perf_counter() - t
    p = parts[0]
    verts, faces = np.asarray(m.vertices)[p.vertices], p.faces
    print(f"mesh: {len(m.vertices)} vertices -> {len(parts)} partitions in {t_part:.2f} s; "
          f"timing partition 0: {len(verts)} vertices, {len(faces)} faces, k={a.k}")

    t_ours, ops = best(lambda: compute_operators(verts, faces, k=a.k), a.repeat)
    L = ops.laplacian.astype(np.float64).tocsc()
    M = sparse.diags(ops.mass.astype(np.float64)).tocsc()
    t_plain, (w, _) = best(lambda: eigsh(L, k=min(a.k, len(verts) - 1), M=M, sigma=-0.01), a.repeat)
    print(f"compute_operators: {t_ours * 1e3:8.1f} ms")
    print(f"plain eigsh(L, k, M, sigma=-0.01): {t_plain * 1e3:8.1f} ms")
    print(f"ratio ours / plain eigsh: {t_ours / t_plain:.2f}x")
    print(f"max |λ_ours - λ_plain|: {np.max(np.abs(np.sort(w) - ops.evals)):.2e}")

    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        cached_operators(verts, faces, k=a.k, cache_dir=d)
        t_first = time.perf_counter() - t
        t_load, _ = best(lambda: cached_operators(verts, faces, k=a.k, cache_dir=d), a.repeat)
    print(f"cached_operators first call (compute + write, one run, so noisy): {t_first * 1e3:8.1f} ms")
    print(f"cached_operators load: {t_load * 1e3:8.1f} ms ({t_ours / t_load:.0f}x faster than computing)")
    print(f"whole mesh: {len(parts)} partitions x {t_ours:.2f} s = {len(parts) * t_ours:.1f} s to compute, "
          f"{len(parts) * t_load:.2f} s to load")


if __name__ == "__main__":
    main()

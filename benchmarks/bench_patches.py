"""Speed of writing training patches: our patch store against one ``numpy.save`` file per patch.

Both cut the same patches (image float32 + labels uint8) from the same memory-mapped MRC files
and write the same bytes; the reference writes ``<i>_image.npy`` and ``<i>_labels.npy`` per patch
(the fastest uncompressed layout). Also prints, per compressor (``auto`` is the default), the store's size and the time
of random single-patch reads.

    .venv/bin/python benchmarks/bench_patches.py [--shape Z Y X] [--patch 128] [--overlap 0.5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.io.mrc import create_mrc, read_mrc
from napari_cryolearn.io.patch_store import open_patch_store, write_patch_store
from napari_cryolearn.io.patch_grid import patch_grid


def make_inputs(folder: Path, shape, seed=0):
    """A smooth-plus-noise float32 tomogram and labels of blobs, written slab by slab."""
    rng = np.random.default_rng(seed)
    with create_mrc(folder / "tomo.mrc", shape, np.float32, voxel_size=10.0) as img, create_mrc(
        folder / "labels.mrc", shape, np.uint8, voxel_size=10.0
    ) as lab:
        y, x = np.ogrid[: shape[1], : shape[2]]
        for z in range(0, shape[0], 16):
            n = min(16, shape[0] - z)
            smooth = np.sin((y + z) / 17.0) * np.cos(x / 23.0)
            img[z : z + n] = (smooth + rng.normal(0, 1, (n, *shape[1:]))).astype(np.float32)
            lab[z : z + n] = (smooth > 0.6).astype(np.uint8) + (smooth < -0.8).astype(np.uint8) * 2
    return folder / "tomo.mrc", folder / "labels.mrc"


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def reference(image, labels, origins, patch, out: Path) -> float:
    out.mkdir()
    os.sync()  # start with no dirty pages, as the store writes do
    t0 = time.perf_counter()
    for i, o in enumerate(origins):
        box = tuple(slice(int(a), int(a) + p) for a, p in zip(o, patch))
        np.save(out / f"{i}_image.npy", np.array(image[box], dtype=np.float32))
        np.save(out / f"{i}_labels.npy", np.array(labels[box]))
    return time.perf_counter() - t0


def store_time(image, labels, origins, patch, target: Path, compressor) -> float:
    os.sync()
    t0 = time.perf_counter()
    run_job(write_patch_store(target, image, labels, patch_size=patch, origins=origins, compressor=compressor))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(192, 384, 384), metavar=("Z", "Y", "X"))
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--reads", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7, help="interleaved runs of reference and store (after one warm-up)")
    args = parser.parse_args()
    shape, patch = tuple(args.shape), (args.patch,) * 3
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        tmp = Path(tmp)
        image_path, labels_path = make_inputs(tmp, shape)
        image, labels = read_mrc(image_path).data, read_mrc(labels_path).data
        origins = patch_grid(shape, patch, overlap=args.overlap)
        n_bytes = len(origins) * np.prod(patch) * 5
        print(f"volume {shape}, {len(origins)} patches of {patch}, {n_bytes / 2**20:.0f} MiB of patch data")

        # writing hundreds of MiB makes page-cache allocation a large, noisy part of any timing
        # (on a VM, memory the guest freed and touches again can cost 10x; runs are bimodal):
        # start each run synced, warm up once, interleave reference and store, and report both
        # the best and the median of the repeats
        ref_runs, auto_runs = [], []
        for rep in range(args.repeats + 1):
            ref = reference(image, labels, origins, patch, tmp / "npy")
            ref_size = du(tmp / "npy")
            shutil.rmtree(tmp / "npy")
            ours = store_time(image, labels, origins, patch, tmp / "auto.zarr", "auto")
            shutil.rmtree(tmp / "auto.zarr")
            if rep:  # the first pair warms up
                ref_runs.append(ref)
                auto_runs.append(ours)
        ref_t = float(np.median(ref_runs))
        reference(image, labels, origins, patch, tmp / "npy")
        rng = np.random.default_rng(1)
        picks = rng.integers(0, len(origins), args.reads)
        t0 = time.perf_counter()
        for i in picks:
            np.load(tmp / "npy" / f"{i}_image.npy")
            np.load(tmp / "npy" / f"{i}_labels.npy")
        ref_read = (time.perf_counter() - t0) / args.reads
        shutil.rmtree(tmp / "npy")
        print(f"reference numpy.save per patch: write {ref_t:6.2f} s (median of {args.repeats}), "
              f"{ref_size / 2**20:7.1f} MiB, read {ref_read * 1e3:6.1f} ms/patch")

        results = {}
        for compressor in ("auto", "blosc-lz4", "zstd", None):
            target = tmp / f"store-{compressor}.zarr"
            t = store_time(image, labels, origins, patch, target, compressor)
            store = open_patch_store(target)
            t0 = time.perf_counter()
            for i in picks:
                store[int(i)]
            read = (time.perf_counter() - t0) / args.reads
            results[compressor] = t
            print(
                f"store, {str(compressor):9s} (one run): write {t:6.2f} s, {du(target) / 2**20:7.1f} MiB, "
                f"read {read * 1e3:6.1f} ms/patch, speed ratio (reference time / ours) {ref_t / t:.2f}"
            )
            shutil.rmtree(target)
        auto_t = float(np.median(auto_runs))
        print("runs, s:  reference " + " ".join(f"{t:.2f}" for t in ref_runs))
        print("          store     " + " ".join(f"{t:.2f}" for t in auto_runs))
        print(f"default ('auto': image raw, labels blosc-lz4), {args.repeats} interleaved runs after a warm-up:")
        print(f"  median {auto_t:.2f} s vs reference {ref_t:.2f} s: ratio reference / ours {ref_t / auto_t:.2f}x")
        print(f"  best   {min(auto_runs):.2f} s vs reference {min(ref_runs):.2f} s: "
              f"ratio reference / ours {min(ref_runs) / min(auto_runs):.2f}x   (goal >= 0.5x)")


if __name__ == "__main__":
    main()

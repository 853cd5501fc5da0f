"""Peak memory of the patches job on a large tomogram (goal: 1 GiB float32 under 400 MiB RSS).

Writes a float32 tomogram MRC (default 256 x 1024 x 1024 = 1 GiB) and a uint8 label MRC slab by
slab into a temporary folder, then runs ``patches_job`` (zarr store, labels, remove nothing) in
a subprocess and prints that process's peak RSS (its own ``ru_maxrss``), the peak of a
subprocess that only imports the same modules, and the ratio to the tomogram's size.

Each child's peak is taken from ``os.wait4`` (that child's rusage) rather than
``getrusage(RUSAGE_CHILDREN)``, which is the maximum over all children, and the inputs are made
in a child too: on Linux a child started with vfork/fork starts with the parent's high-water
RSS recorded, so a parent that had written a 1 GiB memory map would report >1 GiB for any child.

    .venv/bin/python benchmarks/bench_patches_memory.py [--shape Z Y X] [--patch 128] [--overlap 0.0]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from napari_cryolearn.io.mrc import create_mrc

IMPORTS = """
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.prep.patch_job import PatchesConfig, patches_job
"""


MAKE_INPUTS = """
import sys
from pathlib import Path
sys.path.insert(0, {here!r})
from bench_patches_memory import make_inputs
make_inputs(Path({folder!r}), {shape!r})
"""


def make_inputs(folder: Path, shape) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    with create_mrc(folder / "tomo.mrc", shape, np.float32, voxel_size=10.0) as img:
        for z in range(0, shape[0], 8):
            img[z : z + 8] = rng.normal(0, 1, (min(8, shape[0] - z), *shape[1:])).astype(np.float32)
            img.flush()
    with create_mrc(folder / "labels.mrc", shape, np.uint8, voxel_size=10.0) as lab:
        for z in range(0, shape[0], 32):
            block = np.zeros((min(32, shape[0] - z), *shape[1:]), np.uint8)
            block[:, ::50, :] = 1
            lab[z : z + 32] = block
    return folder / "tomo.mrc", folder / "labels.mrc"


def child_peak_mib(code: str) -> float:
    """Run ``code`` in a fresh interpreter; its peak RSS in MiB."""
    proc = subprocess.Popen([sys.executable, "-c", code])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child failed with exit code {proc.returncode}")
    return usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 1024, 1024), metavar=("Z", "Y", "X"))
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--overlap", type=float, default=0.0)
    parser.add_argument("--format", choices=("zarr", "cryosiam"), default="zarr")
    args = parser.parse_args()
    shape = tuple(args.shape)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        child_peak_mib(MAKE_INPUTS.format(here=str(Path(__file__).resolve().parent), folder=str(tmp), shape=shape))
        image, labels = tmp / "tomo.mrc", tmp / "labels.mrc"
        size = image.stat().st_size
        print(f"tomogram {shape} float32: {size / 2**20:.0f} MiB (+ labels {labels.stat().st_size / 2**20:.0f} MiB), "
              f"written in {time.perf_counter() - t0:.1f} s")
        baseline = child_peak_mib(IMPORTS)
        out = tmp / ("tomo.zarr" if args.format == "zarr" else "patches")
        job = IMPORTS + textwrap.dedent(
            f"""
            config = PatchesConfig(image={str(image)!r}, labels={str(labels)!r}, output={str(out)!r},
                                   patch_size={args.patch}, overlap={args.overlap}, format={args.format!r})
            run_job(patches_job(config))
            """
        )
        t0 = time.perf_counter()
        peak = child_peak_mib(job)
        took = time.perf_counter() - t0
        print(f"imports only: peak RSS {baseline:7.1f} MiB")
        print(f"patches job:  peak RSS {peak:7.1f} MiB in {took:.1f} s "
              f"({peak * 2**20 / size:.2f} x the tomogram's size; goal < 400 MiB)")


if __name__ == "__main__":
    main()

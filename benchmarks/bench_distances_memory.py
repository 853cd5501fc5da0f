"""Peak memory and CPU of the distance-map job on a large label volume (goal: a "1 GiB tomogram"
under 400 MiB RSS with ``--clip 5 --normalize``).

Writes a uint8 label MRC (default 256 x 1024 x 1024: the voxel count of a 1 GiB float32 tomogram;
the labels themselves are 256 MiB) with 4 classes (0 background, 1 membranes as thick planes,
2 spheres, 3 tubes along x) slab by slab into a temporary folder, then runs ``distance_map_job``
(``.npy`` output, 4 float32 channels = 4 GiB at the default size) in a subprocess per mode and
prints that process's peak RSS (its own ``ru_maxrss``), the peak minus that of a subprocess that
only imports the same modules, the ratio to the size of a float32 tomogram of that shape, and the
CPU seconds (user + system) of the child.

Modes: ``clip`` (``clip=5, normalize=True``: CryoSiam's loss targets) and ``exact`` (no clip).

Each child's peak is taken from ``os.wait4`` (that child's rusage) rather than
``getrusage(RUSAGE_CHILDREN)``, which is the maximum over all children, and the inputs are made
in a child too: on Linux a child started with vfork/fork starts with the parent's high-water
RSS recorded.

    .venv/bin/python benchmarks/bench_distances_memory.py [--shape Z Y X] [--modes clip exact] [--dir FOLDER]
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

IMPORTS = """
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.prep.distance_job import DistanceMapConfig, distance_map_job
"""


MAKE_INPUTS = """
import sys
from pathlib import Path
sys.path.insert(0, {here!r})
from bench_distances_memory import make_inputs
make_inputs(Path({folder!r}), {shape!r})
"""

MODES = {
    "clip": {"clip": 5.0, "normalize": True},
    "exact": {},
}


def label_block(z0: int, z1: int, shape) -> np.ndarray:
    """Planes ``z0..z1-1`` of the synthetic labels: membranes (1), spheres (2), tubes (3)."""
    nz, ny, nx = shape
    z = np.arange(z0, z1, dtype=np.float32)[:, None, None]
    y = np.arange(ny, dtype=np.float32)[None, :, None]
    x = np.arange(nx, dtype=np.float32)[None, None, :]
    block = np.zeros((z1 - z0, ny, nx), np.uint8)
    # Membranes: sheets 4 voxels thick, tilted in z, every ~120 voxels in y.
    block[np.broadcast_to(((y + 0.3 * z) % 120) < 4, block.shape)] = 1
    # Spheres of radius 12 on a grid, cut by slab boundaries wherever they fall.
    rng = np.random.default_rng(0)
    centres = rng.uniform((0, 0, 0), (nz, ny, nx), size=(max(1, nz * ny * nx // 400_000), 3)).astype(np.float32)
    for cz, cy, cx in centres:
        if z1 <= cz - 12 or z0 > cz + 12:
            continue
        block[((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) <= 144] = 2
    # Tubes along x, radius 5.
    for cz, cy in ((nz * 0.3, ny * 0.25), (nz * 0.6, ny * 0.7), (nz * 0.85, ny * 0.45)):
        block[np.broadcast_to(((z - cz) ** 2 + (y - cy) ** 2) <= 25, block.shape)] = 3
    return block


def make_inputs(folder: Path, shape) -> Path:
    from napari_cryolearn.io.mrc import create_mrc

    with create_mrc(folder / "labels.mrc", shape, np.uint8, voxel_size=10.0) as lab:
        for z in range(0, shape[0], 16):
            z1 = min(shape[0], z + 16)
            lab[z:z1] = label_block(z, z1, shape)
            lab.flush()
    return folder / "labels.mrc"


def run_child(code: str) -> tuple[float, float]:
    """Run ``code`` in a fresh interpreter; its peak RSS in MiB and its CPU seconds."""
    proc = subprocess.Popen([sys.executable, "-c", code])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child failed with exit code {proc.returncode}")
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 1024, 1024), metavar=("Z", "Y", "X"))
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["clip", "exact"])
    parser.add_argument("--dir", type=Path, default=None, help="folder for the temporary files (default: the system's)")
    args = parser.parse_args()
    shape = tuple(args.shape)
    tomo_bytes = int(np.prod(shape)) * 4
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        run_child(MAKE_INPUTS.format(here=str(Path(__file__).resolve().parent), folder=str(tmp), shape=shape))
        labels = tmp / "labels.mrc"
        print(f"labels {shape} uint8: {labels.stat().st_size / 2**20:.0f} MiB (a float32 tomogram of this shape: "
              f"{tomo_bytes / 2**20:.0f} MiB), written in {time.perf_counter() - t0:.1f} s")
        baseline, base_cpu = run_child(IMPORTS)
        print(f"imports only:     peak RSS {baseline:7.1f} MiB, {base_cpu:.1f} s CPU")
        for mode in args.modes:
            out = tmp / f"{mode}.npy"
            options = MODES[mode]
            job = IMPORTS + textwrap.dedent(
                f"""
                config = DistanceMapConfig(input={str(labels)!r}, output={str(out)!r}, **{options!r})
                run_job(distance_map_job(config))
                """
            )
            t0 = time.perf_counter()
            peak, cpu = run_child(job)
            took = time.perf_counter() - t0
            print(f"{mode + ' ' + str(options or '(no clip)'):<40s} peak RSS {peak:7.1f} MiB "
                  f"(+{peak - baseline:.1f} over imports; {peak * 2**20 / tomo_bytes:.2f} x the tomogram's size), "
                  f"{cpu:.1f} s CPU, {took:.1f} s wall (output {out.stat().st_size / 2**20:.0f} MiB)")
            out.unlink()
            for extra in tmp.glob(f"{mode}.npy*"):
                extra.unlink()


if __name__ == "__main__":
    main()

"""Peak memory of the scaling job on a 1 GiB tomogram (goal: under 400 MiB RSS).

    .venv/bin/python benchmarks/bench_scaling_memory.py [--shape Z Y X] [--chunk-mb MB] [--method M]

Writes a float32 MRC of ``--shape`` (default 1024×512×512 = 1 GiB) into a temporary folder,
chunk by chunk, then runs ``scale_job`` on it in a subprocess and prints the subprocess's peak
RSS (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``) and its ratio to the file size. The
subprocess also reports its peak RSS after the imports, and when the last slab was written
(before ``create_mrc`` finishes the file), to show where the memory goes.

On Linux a child's ``ru_maxrss`` starts from its parent's peak (the counter survives fork and
exec), so the file is written by one subprocess and the job is started by another, small one
that only imports the standard library and reads ``RUSAGE_CHILDREN`` after the job.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.prep.scale_job import ScaleConfig, scale_job
after_imports = peak_mib()
cfg = ScaleConfig(input=sys.argv[1], output=sys.argv[2], chunk_mb=float(sys.argv[3]), method=sys.argv[4])
marks = {}
def on_progress(p):
    if p.message.startswith("writing"):
        marks["last_slab_written"] = peak_mib()
t0 = time.perf_counter()
run_job(scale_job(cfg), on_progress)
print(json.dumps({"after_imports": after_imports, "seconds": time.perf_counter() - t0, **marks}))
"""


LAUNCHER = r"""
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
print(json.dumps({"rc": proc.returncode, "peak": peak, "stdout": proc.stdout, "stderr": proc.stderr}))
"""


def generate(path: Path, shape: tuple[int, int, int]) -> None:
    import numpy as np

    from napari_cryolearn.io import create_mrc

    rng = np.random.default_rng(0)
    with create_mrc(path, shape, np.float32, voxel_size=(10.0, 10.0, 10.0)) as out:
        for z in range(0, shape[0], 16):
            out[z : z + 16] = rng.standard_normal((min(16, shape[0] - z), *shape[1:]), dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", nargs=3, type=int, default=(1024, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--chunk-mb", type=float, default=64)
    parser.add_argument("--method", default="auto", choices=["auto", "exact", "histogram", "sample"])
    parser.add_argument("--dir", default=None, help="folder for the temporary files (default: the system's)")
    parser.add_argument("--generate", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = tuple(args.shape)
    if args.generate:
        generate(Path(args.generate), shape)
        return

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        src, dst = Path(tmp) / "tomo.mrc", Path(tmp) / "scaled.mrc"
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--generate", str(src), "--shape", *map(str, shape)], check=True
        )
        size_mib = src.stat().st_size / 2**20
        print(f"wrote {shape} float32, {size_mib:.0f} MiB, in {time.perf_counter() - t0:.1f} s")

        job = [sys.executable, "-c", CHILD, str(src), str(dst), str(args.chunk_mb), args.method]
        launched = subprocess.run([sys.executable, "-c", LAUNCHER, *job], capture_output=True, text=True, check=True)
        result = json.loads(launched.stdout)
        if result["rc"] != 0:
            print(result["stderr"])
            raise SystemExit("the job failed")
        peak = result["peak"]
        proc_stdout = result["stdout"]
        marks = json.loads(proc_stdout.strip().splitlines()[-1])
        print(f"job: {marks['seconds']:.1f} s, chunk_mb={args.chunk_mb}, method={args.method}")
        print(f"peak RSS after imports:             {marks['after_imports']:.0f} MiB")
        if "last_slab_written" in marks:
            print(f"peak RSS when the last slab was written: {marks['last_slab_written']:.0f} MiB")
        print(f"peak RSS of the job process:        {peak:.0f} MiB (goal < 400 MiB)")
        print(f"peak RSS / file size:               {peak / size_mib:.2f}")


if __name__ == "__main__":
    main()

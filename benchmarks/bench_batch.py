"""Speed-up of ``cryolearn batch --workers 2`` over ``--workers 1`` on a folder of CPU-stage jobs.

    .venv/bin/python benchmarks/bench_batch.py [--files 8] [--shape 96 256 256]
        [--stages prep.scale prep.filter prep.threshold prep.distances] [--rounds 2] [--dask]

Writes ``--files`` random tomograms (float32) and label volumes (three classes of smoothed-noise
blobs) into a temporary folder, then runs each stage over the folder with one worker and with
two (interleaved, ``--rounds`` times, fresh output folders, medians), and with ``--dask`` on a
local Dask cluster of two workers too. Prints seconds per batch and the speed-up over one
worker, and checks that the outputs are byte-identical. ``prep.scale`` reads, takes
percentiles and writes (light on CPU, mostly I/O); ``prep.filter`` (``--keep 1 2 --expand 2``)
and ``prep.threshold`` (``--min-size 50``: connected pieces) run single-threaded numpy/scipy;
``prep.distances`` already uses every core (edt's threads). Starting two worker processes
costs about 2.5 s here, so the speed-up shows on files that take longer than that.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_cryolearn.cli import main
from napari_cryolearn.io import write_mrc


#: Each stage's own flags in the benchmark.
STAGE_FLAGS = {"prep.filter": ["--keep", "1", "2", "--expand", "2"],
               "prep.threshold": ["--threshold", "1.5", "--min-size", "50"]}


def make_inputs(folder: Path, n: int, shape: tuple[int, int, int]) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    tomos, labels = folder / "tomos", folder / "labels"
    tomos.mkdir()
    labels.mkdir()
    for i in range(n):
        v = rng.normal(size=shape).astype(np.float32)
        write_mrc(tomos / f"TS_{i:03d}.mrc", v, voxel_size=10.0)
        smooth = ndimage.gaussian_filter(v, 3)
        cut = np.quantile(smooth, [0.8, 0.93])
        write_mrc(labels / f"TS_{i:03d}.mrc", np.digitize(smooth, cut).astype(np.uint8), voxel_size=10.0)
    return tomos, labels


def _burn(n: int) -> float:
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return time.perf_counter() - start


def parallel_ceiling(n: int = 20_000_000) -> float:
    """How much faster two processes finish two pure-CPU tasks than one process does: the
    machine's own limit for any ``--workers 2`` speed-up (2.0 on two free cores)."""
    import multiprocessing as mp

    one = _burn(n) * 2
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_burn, [1000, 1000])  # the workers started
        start = time.perf_counter()
        pool.map(_burn, [n, n])
        two = time.perf_counter() - start
    return one / two


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith("batch_log")}


def run(stage: str, source: Path, out: Path, extra: list[str]) -> float:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # each batch's table
        code = main(["-q", "batch", stage, "--input", str(source), "--output", str(out), *extra])
    seconds = time.perf_counter() - start
    if code != 0:
        sys.exit(f"batch {stage} {' '.join(extra)} failed (exit {code})")
    return seconds


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 256, 256))
    parser.add_argument("--stages", nargs="+", default=["prep.scale", "prep.filter", "prep.threshold",
                                                        "prep.distances"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dask", action="store_true", help="also time --dask local:2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tomos, labels = make_inputs(tmp, args.files, tuple(args.shape))
        ceiling = parallel_ceiling()
        print(f"{args.files} files of {tuple(args.shape)}; this machine's ceiling for two processes "
              f"(two pure-CPU tasks, 1 vs 2 processes): {ceiling:.2f}x")
        for stage in args.stages:
            source = labels if stage in ("prep.distances", "prep.filter") else tomos
            own = STAGE_FLAGS.get(stage, [])
            settings = {"one worker": ["--workers", "1", *own], "two workers": ["--workers", "2", *own]}
            if args.dask:
                settings["dask local:2"] = ["--dask", "local:2", *own]
            times: dict[str, list[float]] = {k: [] for k in settings}
            outputs: dict[str, dict[str, str]] = {}
            for r in range(args.rounds):
                for name, extra in settings.items():
                    out = tmp / f"{stage}_{name.replace(' ', '_').replace(':', '')}_{r}"
                    times[name].append(run(stage, source, out, extra))
                    outputs[name] = digest(out)
            same = all(o == outputs["one worker"] for o in outputs.values())
            base = statistics.median(times["one worker"])
            for name, ts in times.items():
                t = statistics.median(ts)
                print(f"{stage:16s} {name:13s} {t:7.2f} s  speed-up {base / t:4.2f}x "
                      f"({base / t / ceiling:4.2f} of the ceiling)")
            print(f"{stage:16s} outputs identical across settings: {same}")


if __name__ == "__main__":
    main_bench()

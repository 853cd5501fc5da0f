"""Speed of intensity scaling: ours against the straightforward numpy formula (CryoSiam's).

    .venv/bin/python benchmarks/bench_scaling.py [--shape Z Y X] [--repeats N] [--memmap]

Both run on the same float32 volume (in memory, or memory-mapped from a temporary file with
``--memmap``) in the same process; each is timed ``--repeats`` times and the best time is
reported (the first run of each also pays for page faults of its output). The reference is::

    lo, hi = np.percentile(x, [0.1, 99.9])
    np.clip((x - lo) / (hi - lo), 0, 1).astype(np.float32)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_cryolearn.prep.scaling import percentiles, scale_intensity


def reference(x: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(x, [0.1, 99.9])
    return np.clip((x - lo) / (hi - lo), 0, 1).astype(np.float32)


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        result = None  # let the previous output go before the next run
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", nargs=3, type=int, default=(256, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memmap", action="store_true", help="read the volume from a memory-mapped file")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    shape = tuple(args.shape)
    x = np.empty(shape, np.float32)
    for z in range(shape[0]):
        x[z] = rng.standard_normal(shape[1:], dtype=np.float32)
    tmp = None
    if args.memmap:
        tmp = tempfile.TemporaryDirectory()
        path = Path(tmp.name) / "vol.f32"
        x.tofile(path)
        x = np.memmap(path, dtype=np.float32, mode="r", shape=shape)

    print(f"volume {shape} float32 ({x.nbytes / 2**20:.0f} MiB){' memory-mapped' if args.memmap else ''}")
    t_ref, ref = best_of(lambda: reference(x), args.repeats)
    t_pct, (lo, hi) = best_of(lambda: percentiles(x, 0.1, 99.9), args.repeats)
    t_ours, ours = best_of(lambda: scale_intensity(x, 0.1, 99.9), args.repeats)
    err = float(np.abs(ours - ref).max())
    print(f"reference (np.percentile + clip formula): {t_ref:.3f} s")
    print(f"ours, percentiles only:                   {t_pct:.3f} s")
    print(f"ours (scale_intensity):                   {t_ours:.3f} s")
    print(f"speed-up: {t_ref / t_ours:.1f}x   (goal >= 3x)   max |ours - reference| = {err:.2e}")
    ref_lo, ref_hi = np.percentile(x, [0.1, 99.9])
    print(f"percentiles equal to numpy's: {lo == ref_lo and hi == ref_hi} ({lo!r}, {hi!r})")
    if tmp is not None:
        del x
        tmp.cleanup()


if __name__ == "__main__":
    main()

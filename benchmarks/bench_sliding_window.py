"""Sliding-window prediction: our streamed inference against MONAI's ``sliding_window_inference``.

    .venv/bin/python benchmarks/bench_sliding_window.py [--shape Z Y X | --full] [--window W]
        [--overlap F] [--batch B] [--classes C] [--threads N]

Same network (the default segmentation network, eval mode, seeded), same window, overlap,
Gaussian blending and batch. Each method runs in its own subprocess, which reports its time
and peak RSS:

- ours: the volume is a memory-mapped ``.npy`` (as an MRC is read), windows are read from it
  and blended into a buffer one window deep in z; labels are written to a uint8 array.
- MONAI: the volume is loaded as a float32 tensor, the output is a (C, Z, Y, X) float32
  tensor plus MONAI's count map, then argmax to uint8.

The default volume is 64×256×256 (a 2-core CPU runs the full 200×512×512 in many minutes);
``--full`` uses 200×512×512 as in the goal; with ``--tiny-net`` (two channels everywhere) the
convolutions no longer dominate, which shows the cost of the windowing itself and the memory
of the buffers. Goal: our time ≤ 1.1× MONAI's.

On Linux a child's ``ru_maxrss`` starts from its parent's peak, so the volume is written by
one subprocess and this script itself only imports the standard library.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

WRITE = r"""
import sys, numpy as np
shape = tuple(int(v) for v in sys.argv[2:5])
out = np.lib.format.open_memmap(sys.argv[1], mode="w+", dtype=np.float32, shape=shape)
rng = np.random.default_rng(0)
for z in range(shape[0]):
    out[z] = rng.standard_normal(shape[1:], dtype=np.float32)
out.flush()
"""

CHILD = r"""
import json, resource, sys, time
def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
import numpy as np, torch
from monai.inferers import sliding_window_inference
from napari_cryolearn.segmentation.config import NetworkConfig
from napari_cryolearn.models.sliding_window import sliding_window_predict
from napari_cryolearn.segmentation.network import build_network
mode, path = sys.argv[1], sys.argv[2]
window = (int(sys.argv[3]),) * 3
overlap, batch, classes, threads = float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
tiny = sys.argv[8] == "1"
torch.set_num_threads(threads)
torch.manual_seed(0)
backbone = {"num_filters": (2, 2, 2, 2), "fpn_channels": 2, "dense_dim": 2} if tiny else {}
net = build_network(NetworkConfig(out_channels=classes, filters=(2, 2) if tiny else (16, 16),
                                  backbone=backbone)).eval()
after_imports = peak_mib()
t0 = time.perf_counter()
if mode == "ours":
    vol = np.load(path, mmap_mode="r")
    labels = sliding_window_predict(net, vol, window, num_classes=classes, overlap=overlap, batch_size=batch).labels
else:
    vol = torch.from_numpy(np.load(path))
    with torch.no_grad():
        probs = sliding_window_inference(vol[None, None], window, batch, lambda x: torch.softmax(net(x)[0], 1),
                                         overlap=overlap, mode="gaussian")
    labels = probs[0].argmax(0).to(torch.uint8).numpy()
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "peak_mib": peak_mib(), "after_imports_mib": after_imports,
                  "checksum": int(labels.astype(np.int64).sum())}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=(64, 256, 256))
    ap.add_argument("--full", action="store_true", help="use 200×512×512")
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tiny-net", action="store_true",
                    help="a 2-channel network, to measure the inference machinery rather than the convolutions")
    args = ap.parse_args()
    shape = (200, 512, 512) if args.full else tuple(args.shape)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "volume.npy"
        subprocess.run([sys.executable, "-c", WRITE, str(path), *map(str, shape)], check=True)
        size_mib = path.stat().st_size / 2**20
        res = {}
        for mode in ("monai", "ours"):
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), str(args.window), str(args.overlap),
                                  str(args.batch), str(args.classes), str(args.threads),
                                  "1" if args.tiny_net else "0"],
                                 check=True, capture_output=True, text=True)
            res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"volume {shape} float32 = {size_mib:.0f} MiB, window {args.window}, overlap {args.overlap}, "
          f"batch {args.batch}, {args.classes} classes, {args.threads} threads"
          + (", tiny network" if args.tiny_net else ""))
    for mode, r in res.items():
        print(f"{mode:6s} {r['seconds']:8.2f} s   peak RSS {r['peak_mib']:7.0f} MiB "
              f"(after imports {r['after_imports_mib']:.0f} MiB, working {r['peak_mib'] - r['after_imports_mib']:.0f} MiB)")
    ratio = res["ours"]["seconds"] / res["monai"]["seconds"]
    print(f"time ratio ours / MONAI: {ratio:.3f} (goal <= 1.1)")
    print(f"labels agree (checksum): {res['ours']['checksum'] == res['monai']['checksum']}")


if __name__ == "__main__":
    main()

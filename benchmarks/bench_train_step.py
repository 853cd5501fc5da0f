"""Where a segmentation training step spends its time: data (loading + augmentation) against the
network's forward + backward + AdamW step, ours against MONAI's plain U-Net, in the same run.

    .venv/bin/python benchmarks/bench_train_step.py [--batch 4] [--patch 32] [--threads 2]
        [--rounds 5] [--steps 4] [--shape 64 96 96] [--arch cryosiam unet monai] [--levers]

A patch store is written from ``make_synthetic_tomogram`` (``--patch``³ patches, overlap 0.5).
Measured, in interleaved rounds (each case runs ``--steps`` steps per round; the median per
step over the rounds is printed, so a noisy neighbour hits every case alike):

- ``data (default augmentation)``: one batch of ``--batch`` samples from the patch store
  through :class:`SegmentationDataset` with the default :class:`TransformsConfig` (CryoSiam's
  flips, rotation, zoom, filters) and :func:`collate`, in this process (``num_workers=0``);
- ``data (cpu preset augmentation)``: the same with the CPU preset's augmentation (flips, 90°
  turns, noise: ``CPU_TRANSFORMS``);
- ``data (no augmentation)``: the same with every augmentation off (reading the store only);
- ``step <arch>``: forward + :class:`SegmentationLoss` (cross-entropy + generalised Dice) +
  backward + AdamW on one batch, for our network of the default :class:`NetworkConfig`
  (``cryosiam``), the same config with ``architecture="unet"`` when this version has it
  (``unet``), and MONAI's ``UNet(spatial_dims=3, in_channels=1, out_channels=4,
  channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1)`` (``monai``), the reference;
  with ``--levers`` also the ``unet`` step with ``channels_last_3d`` tensors and weights, and
  under ``torch.autocast("cpu", dtype=torch.bfloat16)``.

Each line gives wall seconds per step, CPU seconds per step (user + system of this process:
with two threads up to twice the wall time) and wall seconds per voxel; the ratios are against
the MONAI step (wall and CPU). Threads: ``torch.set_num_threads(--threads)``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from napari_cryolearn.io.patch_store import open_patch_store, write_patch_store
from napari_cryolearn.models.augment import build_train_transform
from napari_cryolearn.models.config import TransformsConfig
from napari_cryolearn.sample import make_synthetic_tomogram
from napari_cryolearn.segmentation.config import CPU_TRANSFORMS, NetworkConfig
from napari_cryolearn.segmentation.data import SegmentationDataset, collate
from napari_cryolearn.segmentation.losses import SegmentationLoss
from napari_cryolearn.segmentation.network import build_network

NO_AUGMENT = TransformsConfig(flip=False, rotate=None, zoom=None, low_pass_sigma_range=None,
                              high_pass_sigma_range=None, noise_sigma_range=None)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _timed(fn: Callable[[], None], steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds per call of ``fn``, over ``steps`` calls."""
    w0, c0 = time.perf_counter(), _cpu()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - w0) / steps, (_cpu() - c0) / steps


def _monai_unet(out_channels: int) -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=out_channels, channels=(16, 32, 64, 128),
                strides=(2, 2, 2), num_res_units=1)


def _network(arch: str, out_channels: int) -> torch.nn.Module | None:
    if arch == "monai":
        return _monai_unet(out_channels)
    if arch == "cryosiam":
        return build_network(NetworkConfig(out_channels=out_channels))
    if "architecture" not in NetworkConfig.model_fields:
        return None  # a version without the fast architecture
    return build_network(NetworkConfig(out_channels=out_channels, architecture=arch))


def _step_fn(net: torch.nn.Module, batches: list[dict], out_channels: int, *, channels_last: bool = False,
             bf16: bool = False) -> Callable[[], None]:
    loss_fn = SegmentationLoss(out_channels)
    if channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
        batches = [{**b, "image": b["image"].to(memory_format=torch.channels_last_3d)} for b in batches]
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net.train()
    state = {"i": 0}

    def step() -> None:
        b = batches[state["i"] % len(batches)]
        state["i"] += 1
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = net(b["image"])
        logits = out[0] if isinstance(out, (tuple, list)) else out
        loss = loss_fn(logits, b["labels"]).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _data_fn(ds: SegmentationDataset, batch: int) -> Callable[[], None]:
    state = {"i": 0}

    def load() -> None:
        n = len(ds)
        samples = [ds[((state["i"] + k) % n, 0)] for k in range(batch)]
        state["i"] += batch
        collate(samples)

    return load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--shape", type=int, nargs=3, default=(64, 96, 96))
    ap.add_argument("--arch", nargs="+", default=["cryosiam", "unet", "monai"],
                    choices=["cryosiam", "unet", "monai"])
    ap.add_argument("--levers", action="store_true",
                    help="also time the unet step with channels_last_3d tensors and with bf16 autocast")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    classes = 4
    tomo = make_synthetic_tomogram(shape=tuple(args.shape), seed=0)
    voxels = args.batch * args.patch ** 3
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.zarr"
        for _ in write_patch_store(path, tomo.volume, tomo.labels, patch_size=args.patch, overlap=0.5):
            pass
        store = open_patch_store(path)
        items = [(0, i) for i in range(len(store))]
        ds_aug = SegmentationDataset([store], items, build_train_transform(TransformsConfig(), 255))
        ds_plain = SegmentationDataset([store], items, build_train_transform(NO_AUGMENT, 255))
        ds_cpu = SegmentationDataset([store], items, build_train_transform(
            TransformsConfig(**CPU_TRANSFORMS), 255))
        batches = [collate([ds_plain[(k * args.batch + j) % len(ds_plain)] for j in range(args.batch)])
                   for k in range(4)]

        cases: dict[str, Callable[[], None]] = {
            "data (default augmentation)": _data_fn(ds_aug, args.batch),
            "data (cpu preset augmentation)": _data_fn(ds_cpu, args.batch),
            "data (no augmentation)": _data_fn(ds_plain, args.batch),
        }
        params: dict[str, int] = {}
        for arch in args.arch:
            net = _network(arch, classes)
            if net is None:
                print(f"(no architecture {arch!r} in this version: skipped)")
                continue
            params[arch] = sum(p.numel() for p in net.parameters())
            cases[f"step {arch}"] = _step_fn(net, batches, classes)
        if args.levers and "unet" in args.arch:
            for name, opts in (("channels_last_3d", {"channels_last": True}), ("bf16 autocast", {"bf16": True})):
                arch = f"unet {name}"
                net = _network("unet", classes)
                params[arch] = sum(p.numel() for p in net.parameters())
                cases[f"step {arch}"] = _step_fn(net, batches, classes, **opts)

        print(f"{len(store)} stored patches of {args.patch}^3; batch {args.batch}x1x{args.patch}^3 "
              f"({voxels} voxels), {torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} steps")
        for fn in cases.values():  # warm-up: allocations, MONAI's lazy imports, first-call costs
            fn()
        wall: dict[str, list[float]] = {k: [] for k in cases}
        cpu: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.rounds):
            for name, fn in cases.items():
                w, c = _timed(fn, args.steps)
                wall[name].append(w)
                cpu[name].append(c)

    med_w = {k: statistics.median(v) for k, v in wall.items()}
    med_c = {k: statistics.median(v) for k, v in cpu.items()}
    ref = "step monai" if "step monai" in cases else None
    print(f"{'case':36s} {'wall s/step':>11s} {'CPU s/step':>10s} {'wall s/voxel':>12s}  {'params':>8s}"
          + ("  ratio to MONAI (wall, CPU)" if ref else ""))
    for name in cases:
        arch = name[5:] if name.startswith("step ") else None
        p = f"{params[arch]:8d}" if arch else " " * 8
        line = f"{name:36s} {med_w[name]:11.4f} {med_c[name]:10.4f} {med_w[name] / voxels:12.3e}  {p}"
        if ref and arch:
            line += f"  {med_w[name] / med_w[ref]:6.2f}x {med_c[name] / med_c[ref]:6.2f}x"
        print(line)
    step_cases = [k for k in cases if k.startswith("step ")]
    for kind in ("default", "cpu preset"):
        data = med_w[f"data ({kind} augmentation)"]
        for k in step_cases:
            print(f"{k}: data with the {kind} augmentation is {data / (data + med_w[k]):.0%} of a data + step of "
                  f"{data + med_w[k]:.3f} s (data loaded in the training process, num_workers=0)")


if __name__ == "__main__":
    main()

"""Segmentation in five minutes on a CPU (#18's acceptance): train with the defaults a user gets,
bounded by time, and score a held-out tomogram.

    .venv/bin/python benchmarks/bench_fast_training.py [--max-time 5m] [--shape 96 128 128]
        [--store-patch 64] [--overlap 0.5] [--threads 2] [--set network.architecture=cryosiam ...]

The sample tomogram (``make_synthetic_tomogram(seed=0)``, 96×128×128 by default, as ``cryolearn
sample`` writes it) is cut into a patch store (``--store-patch``³ patches, ``--overlap``), and
``train_job`` runs on it with ``SegmentationTrainConfig(patch_stores, log_dir, out_channels=4,
class_names, device="cpu", max_time=--max-time)`` and nothing else: the defaults (``--set
key=value`` overrides a field, dotted for nested ones, the value read as YAML, to compare
settings). The best checkpoint then predicts a held-out tomogram (``seed=1``) with
:func:`~napari_cryolearn.segmentation.predict_array.predict_array`'s defaults (the window is
the training patch), and the script prints the per-class Dice against its ground truth
(goals: membrane ≥ 0.85, particle ≥ 0.8, membrane_protein ≥ 0.5), the seconds per epoch, the
patches per second, and, in the same process afterwards, the trained network's training step
against MONAI's plain ``UNet(channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1)``
step on the same batch (interleaved rounds, medians; per voxel; goal: no slower), ours with the
channels-last tensors training gives the U-Net on a CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.io.patch_store import write_patch_store
from napari_cryolearn.sample import make_synthetic_tomogram
from napari_cryolearn.segmentation.config import SegmentationTrainConfig
from napari_cryolearn.segmentation.losses import SegmentationLoss, dice_counts, dice_from_counts
from napari_cryolearn.segmentation.predict_array import predict_array
from napari_cryolearn.segmentation.predict_job import load_model
from napari_cryolearn.segmentation.train_job import train_job

sys.path.insert(0, str(Path(__file__).parent))
from bench_train_step import _monai_unet, _timed  # noqa: E402

NAMES = ["background", "membrane", "membrane_protein", "particle"]
GOALS = {"membrane": 0.85, "particle": 0.8, "membrane_protein": 0.5}


def _overrides(pairs: list[str]) -> dict:
    out: dict = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = yaml.safe_load(value)
    return out


def _merge(base: dict, more: dict) -> dict:
    out = dict(base)
    for k, v in more.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def _step_times(net: torch.nn.Module, reference: torch.nn.Module, batch: dict, *, channels_last: bool,
                rounds: int = 5, steps: int = 3):
    """Median wall seconds of forward + loss + backward + AdamW, ours then MONAI's, interleaved."""
    loss = SegmentationLoss(4, 255, True, "generalized", 1.0)
    cases = {}
    for name, model in (("ours", net), ("monai", reference)):
        model.train()
        image = batch["image"]
        if name == "ours" and channels_last:  # as training does it (SegmentationModule.setup)
            model.to(memory_format=torch.channels_last_3d)
            image = image.contiguous(memory_format=torch.channels_last_3d)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step(model=model, opt=opt, image=image):
            opt.zero_grad()
            out = model(image)
            logits = out[0] if isinstance(out, tuple) else out
            loss(logits, batch["labels"], None, None).total.backward()
            opt.step()

        step()  # warm-up
        cases[name] = (step, [])
    for _ in range(rounds):
        for step, times in cases.values():
            times.append(_timed(step, steps)[0])
    return {name: statistics.median(times) for name, (_, times) in cases.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-time", default="5m")
    ap.add_argument("--shape", type=int, nargs=3, default=(96, 128, 128))
    ap.add_argument("--store-patch", type=int, default=64)
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(args.shape)
    train = make_synthetic_tomogram(shape=shape, seed=0)
    test = make_synthetic_tomogram(shape=shape, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "train.zarr"
        for _ in write_patch_store(store, train.volume, train.labels, patch_size=args.store_patch,
                                   overlap=args.overlap, voxel_size=(10.0,) * 3):
            pass
        base = {"patch_stores": [str(store)], "log_dir": str(Path(tmp) / "run"), "device": "cpu",
                "max_time": args.max_time, "network": {"out_channels": 4, "class_names": NAMES},
                "progress_every_n_batches": 10**6}
        cfg = SegmentationTrainConfig.from_dict(_merge(base, _overrides(args.set)))
        epochs: list[tuple[float, dict]] = []
        t0 = time.perf_counter()
        last = [t0]

        steps_done = [0]

        def on(e):
            steps_done[0] = max(steps_done[0], int(e.step or 0))
            if "epoch" in e.metrics and "batch" not in e.metrics:
                now = time.perf_counter()
                epochs.append((now - last[0], dict(e.metrics)))
                last[0] = now
                per_class = " ".join(f"{n} {e.metrics.get(f'val_dice_{n}', float('nan')):.2f}" for n in NAMES[1:])
                print(f"epoch {e.metrics['epoch']:3d} {now - t0:6.1f} s: train_loss "
                      f"{e.metrics.get('train_loss', float('nan')):.3f}  val_dice {per_class}", flush=True)
            elif "device" in e.metrics or e.total == e.step:
                print(e.message, flush=True)

        result = run_job(train_job(cfg), on)
        train_s = time.perf_counter() - t0
        used = SegmentationTrainConfig.from_yaml(Path(cfg.log_dir) / "config.yaml")
        model = load_model(result.best_checkpoint or result.last_checkpoint, torch.device("cpu"))
        t1 = time.perf_counter()
        pred, _ = run_job(predict_array(model, test.volume, device="cpu"))
        predict_s = time.perf_counter() - t1
        dice = dice_from_counts(dice_counts(torch.from_numpy(pred.labels.astype(np.int64)),
                                            torch.from_numpy(test.labels.astype(np.int64)), 4)).tolist()
        patch = tuple(model.patch_shape)
        batch_size = used.batch_size
        n_batches = steps_done[0] or None
        batch = {"image": torch.randn(batch_size, 1, *patch), "labels": torch.randint(0, 4, (batch_size, *patch))}
        steps = _step_times(model.net, _monai_unet(4), batch, channels_last=used.network.architecture == "unet")
    seconds = [s for s, _ in epochs]
    print()
    print(f"sample {shape}, store patches {args.store_patch}^3 overlap {args.overlap}, max_time {args.max_time}, "
          f"{args.threads} threads; overrides: {args.set or 'none (defaults)'}")
    print(f"resolved: architecture {used.network.architecture}, patch {patch}, batch {batch_size}, lr {used.lr}, "
          f"foreground_probability {used.foreground_probability}, epochs {result.epochs}")
    if seconds:
        print(f"training {train_s:.0f} s: {result.epochs} epochs, median {statistics.median(seconds):.2f} s per epoch"
              + (f", {n_batches * batch_size / train_s:.1f} patches/s" if n_batches else ""))
    print(f"prediction of the held-out tomogram: {predict_s:.1f} s")
    print("per-class Dice (held-out): " + ", ".join(f"{n} {d:.3f}" for n, d in zip(NAMES, dice)))
    for name, goal in GOALS.items():
        d = dice[NAMES.index(name)]
        print(f"  {name}: {d:.3f} (goal >= {goal}: {'PASS' if d >= goal else 'MISS'})")
    per_voxel = {k: v / (batch_size * int(np.prod(patch))) for k, v in steps.items()}
    print(f"training step, batch {batch_size}x1x{'x'.join(map(str, patch))}: ours {steps['ours']:.3f} s, MONAI UNet "
          f"{steps['monai']:.3f} s; per voxel ratio {per_voxel['ours'] / per_voxel['monai']:.2f} (goal <= 1)")


if __name__ == "__main__":
    main()

"""Segmentation training on the synthetic tomogram: time per epoch and per-class Dice.

    .venv/bin/python benchmarks/bench_segmentation.py [--shape Z Y X] [--epochs N] [--patch P]
        [--filters F] [--lr LR] [--device auto|cpu|cuda] [--arch cryosiam|unet]
        [--foreground-probability P] [--class-weights W0 W1 W2 W3]

Trains on ``make_synthetic_tomogram(seed=0)`` (patches of ``--patch``³, overlap 0.5), predicts
``make_synthetic_tomogram(seed=1)`` with the prediction job's operation, and prints the time of
each epoch and the Dice of every class on the held-out tomogram. ``--arch unet`` trains
``NetworkConfig(architecture="unet")`` (its default channels; ``--filters`` is then unused);
``--foreground-probability`` and ``--class-weights`` set the training fields of those names.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.engine.lightning import torch_device
from napari_cryolearn.io.patch_store import write_patch_store
from napari_cryolearn.sample import make_synthetic_tomogram
from napari_cryolearn.segmentation.config import (
    BackboneConfig,
    NetworkConfig,
    SegmentationTrainConfig,
    TransformsConfig,
)
from napari_cryolearn.models.sliding_window import sliding_window_predict
from napari_cryolearn.segmentation.losses import dice_counts, dice_from_counts
from napari_cryolearn.segmentation.predict_job import load_model
from napari_cryolearn.segmentation.train_job import train_job

NAMES = ["background", "membrane", "membrane_protein", "particle"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=(64, 96, 96))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--filters", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--arch", choices=["cryosiam", "unet"], default="cryosiam")
    ap.add_argument("--foreground-probability", type=float, default=0.0)
    ap.add_argument("--class-weights", type=float, nargs=4, default=None)
    args = ap.parse_args()
    shape = tuple(args.shape)
    train = make_synthetic_tomogram(shape=shape, seed=0)
    test = make_synthetic_tomogram(shape=shape, seed=1)
    f = args.filters
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "train.zarr"
        for _ in write_patch_store(store, train.volume, train.labels, patch_size=args.patch, overlap=0.5):
            pass
        net = NetworkConfig(out_channels=4, class_names=NAMES, filters=(2 * f, 2 * f),
                            backbone=BackboneConfig(num_filters=(f, 2 * f, 2 * f, 4 * f), fpn_channels=2 * f,
                                                    dense_dim=2 * f),
                            architecture=args.arch, class_weights=args.class_weights)
        augment = TransformsConfig(rotate=None, zoom=None, rotate90=True, low_pass_sigma_range=None,
                                   high_pass_sigma_range=None, noise_sigma_range=(0.0, 0.3))
        cfg = SegmentationTrainConfig(patch_stores=[store], log_dir=Path(tmp) / "run", network=net,
                                      transforms=augment, batch_size=4, max_epochs=args.epochs, lr=args.lr,
                                      device=args.device, validation_ratio=0.1, progress_every_n_batches=10**6,
                                      foreground_probability=args.foreground_probability)
        stamps = [time.perf_counter()]

        def on(e):
            if "epoch" in e.metrics and "batch" not in e.metrics:
                stamps.append(time.perf_counter())
                print(f"epoch {e.metrics['epoch']:3d}: {stamps[-1] - stamps[-2]:6.2f} s  "
                      f"train_loss {e.metrics.get('train_loss', float('nan')):.3f}  "
                      f"val_dice {e.metrics.get('val_dice', float('nan')):.3f}")

        result = run_job(train_job(cfg), on)
        model = load_model(result.last_checkpoint, torch_device(args.device))
        t0 = time.perf_counter()
        pred = sliding_window_predict(model.net, test.volume, (args.patch,) * 3, num_classes=4, batch_size=4,
                                      device=torch_device(args.device))
        t_pred = time.perf_counter() - t0
    epochs = np.diff(stamps)
    dice = dice_from_counts(dice_counts(torch.from_numpy(pred.labels.astype(np.int64)),
                                        torch.from_numpy(test.labels.astype(np.int64)), 4)).tolist()
    print(f"synthetic {shape}, patches {args.patch}^3, {args.arch}" + (f" filters {f}" if args.arch == "cryosiam" else "")
          + f", foreground_probability {args.foreground_probability}, class_weights {args.class_weights}, "
          f"{args.epochs} epochs on {args.device}")
    print(f"time per epoch: mean {epochs.mean():.2f} s, median {np.median(epochs):.2f} s (first {epochs[0]:.2f} s)")
    print(f"prediction of the held-out tomogram: {t_pred:.2f} s")
    print("per-class Dice (held-out): " + ", ".join(f"{n} {d:.3f}" for n, d in zip(NAMES, dice)))


if __name__ == "__main__":
    main()

"""Acceptance: an autoencoder trained on one generated scan reconstructs a held-out scan (another
seed: other grains, orientations and noise) at PSNR ≥ 25 dB and SSIM ≥ 0.8 on the normalised
scale, with the training normalisation (the reference's success criteria: PSNR > 20, SSIM > 0.7).

Tiny on purpose (CPU): a 24 × 24 scan of 16 × 16 patterns, residual blocks of 16 channels, 8
epochs. λ_div is 0 here: with the original divergence term subtracted at its documented weight
the loss is unbounded below (the latent's scale grows, ``benchmarks/bench_ae.py`` shows it), and
a run this short ends wherever that drift has taken it.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from napari_cryolearn.sample.stem4d import make_4dstem_scan
from napari_cryolearn.selfsup.ae_apply_job import ae_apply_job
from napari_cryolearn.selfsup.ae_config import AEApplyConfig, AETrainConfig
from napari_cryolearn.selfsup.ae_train_job import ae_train_job


def run(job):
    try:
        while True:
            next(job)
    except StopIteration as stop:
        return stop.value


def test_held_out_scan_is_reconstructed(tmp_path):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    train = make_4dstem_scan((24, 24), (16, 16), n_grains=30, seed=0)
    held_out = make_4dstem_scan((24, 24), (16, 16), n_grains=30, seed=1)
    np.save(tmp_path / "train.npy", train.data)
    np.save(tmp_path / "held_out.npy", held_out.data)
    cfg = AETrainConfig(data=tmp_path / "train.npy", log_dir=tmp_path / "run", width=16, batch_size=16, lr=3e-3,
                        max_epochs=8, lambda_div=0.0, device="cpu")
    result = run(ae_train_job(cfg))
    out = tmp_path / "out"
    applied = run(ae_apply_job(AEApplyConfig(model=result.best_checkpoint, data=tmp_path / "held_out.npy",
                                             output_dir=out, device="cpu")))
    metrics = json.loads((out / "metrics.json").read_text())
    print(f"held-out PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.3f}")
    assert metrics == applied.metrics
    assert metrics["psnr"] >= 25.0
    assert metrics["ssim"] >= 0.8

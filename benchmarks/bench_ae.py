"""The 4D-STEM autoencoder on generated scans: held-out reconstruction and phase maps from latents.

    .venv/bin/python benchmarks/bench_ae.py [--scan 32] [--detector 32] [--grains 40] [--epochs 10]
        [--width 16] [--batch-size 32] [--lr 3e-3] [--settings default no-div plain]

Two scans of ``make_4dstem_scan`` (seed 2S to train, 2S + 1 held out, ``--seed S``: other grains,
orientations and noise). For each setting of the loss weights (``default``: λ_act 1e-4, λ_sim
5e-5, λ_div 2e-4 as documented; ``no-div``: λ_div 0; ``plain``: all three 0, a plain
autoencoder) ``ae train`` runs for ``--epochs`` and ``ae apply`` encodes the held-out scan.
Prints per setting: held-out PSNR and SSIM (normalised scale, the training normalisation),
seconds per epoch, the regularisers' last values, and the adjusted Rand index of k-means
(k = the number of phases, 10 starts) on the held-out latents (as they are, and scaled to unit
length: the direction of the latent, not its thickness-dependent size) against the true phase
map; and
once, the same ARI for k-means on the raw normalised patterns and on their first 32 principal
components.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

SETTINGS = {"default": dict(lambda_act=1e-4, lambda_sim=5e-5, lambda_div=2e-4),
            "original": dict(lambda_act=1e-4, lambda_sim=5e-5, lambda_div=2e-4, divergence="original"),
            "no-div": dict(lambda_act=1e-4, lambda_sim=5e-5, lambda_div=0.0),
            "plain": dict(lambda_act=0.0, lambda_sim=0.0, lambda_div=0.0)}


def _run(job):
    try:
        while True:
            next(job)
    except StopIteration as stop:
        return stop.value


def kmeans_ari(features: np.ndarray, labels: np.ndarray, k: int, seed: int = 0) -> float:
    """Adjusted Rand index of k-means (``k`` clusters, 10 starts) of ``features`` (n, d) against ``labels``."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    pred = KMeans(k, n_init=10, random_state=seed).fit_predict(features)
    return float(adjusted_rand_score(labels, pred))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scan", type=int, default=32)
    ap.add_argument("--detector", type=int, default=32)
    ap.add_argument("--grains", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0, help="scans of seeds 2S (train) and 2S+1 (held out), training "
                    "seed S")
    args = ap.parse_args()

    from sklearn.decomposition import PCA

    from napari_cryolearn.io.stem4d import normalise
    from napari_cryolearn.sample.stem4d import make_4dstem_scan
    from napari_cryolearn.selfsup.ae_apply_job import ae_apply_job
    from napari_cryolearn.selfsup.ae_config import AEApplyConfig, AETrainConfig
    from napari_cryolearn.selfsup.ae_module import load_ae_model
    from napari_cryolearn.selfsup.ae_train_job import ae_train_job

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_ae_"))
    work.mkdir(parents=True, exist_ok=True)
    shape = dict(scan_shape=(args.scan, args.scan), detector_shape=(args.detector, args.detector),
                 n_grains=args.grains)
    train, held = make_4dstem_scan(**shape, seed=2 * args.seed), make_4dstem_scan(**shape, seed=2 * args.seed + 1)
    np.save(work / "train.npy", train.data)
    np.save(work / "held_out.npy", held.data)
    labels = held.phase.ravel()
    k = held.n_phases
    print(f"scan {args.scan}², detector {args.detector}², {args.grains} grains, {k} phases "
          f"(counts {np.bincount(labels).tolist()}), {args.epochs} epochs, width {args.width}, latent "
          f"{args.latent}, batch {args.batch_size}, lr {args.lr}, seed {args.seed}; work folder {work}")
    raw_norm = None
    for name in args.settings:
        cfg = AETrainConfig(data=work / "train.npy", log_dir=work / f"run-{name}", overwrite=True,
                            max_epochs=args.epochs, width=args.width, latent=args.latent,
                            batch_size=args.batch_size, lr=args.lr, device=args.device, seed=args.seed,
                            **SETTINGS[name])
        t0 = time.perf_counter()
        result = _run(ae_train_job(cfg))
        per_epoch = (time.perf_counter() - t0) / max(1, result.epochs)
        out = work / f"out-{name}"
        applied = _run(ae_apply_job(AEApplyConfig(model=result.best_checkpoint, data=work / "held_out.npy",
                                                  output_dir=out, overwrite=True, device=args.device)))
        m = applied.metrics
        latent = np.load(out / "latent.npy").reshape(-1, args.latent)
        alive = int((latent.max(0) > 0).sum())
        ari = kmeans_ari(latent, labels, k)
        unit = latent / np.maximum(np.linalg.norm(latent, axis=1, keepdims=True), 1e-12)
        ari_unit = kmeans_ari(unit, labels, k)
        r = result.metrics
        print(f"{name:8s} held-out PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.3f}  {per_epoch:.2f} s/epoch (incl. "
              f"validation, checkpoints)  act {r.get('train_act', float('nan')):.3g}  sim "
              f"{r.get('train_sim', float('nan')):.3g}  div {r.get('train_div', float('nan')):.3g}  live latent "
              f"channels {alive}/{args.latent}  k-means ARI (latents) {ari:.3f}, (unit latents) {ari_unit:.3f}")
        if raw_norm is None:
            _, raw_norm, _ = load_ae_model(result.best_checkpoint)
    if raw_norm is not None:
        raw = normalise(held.data.reshape(len(labels), -1), raw_norm)
        print(f"raw      k-means ARI (normalised patterns) {kmeans_ari(raw, labels, k):.3f}  "
              f"(first 32 PCs) {kmeans_ari(PCA(32, random_state=0).fit_transform(raw), labels, k):.3f}")


if __name__ == "__main__":
    main()

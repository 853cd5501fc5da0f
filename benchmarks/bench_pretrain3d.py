"""Dense 3D SimSiam pretraining → segmentation with few labels, and the embedding volume's clusters.

    .venv/bin/python benchmarks/bench_pretrain3d.py [--pretrain-epochs 10] [--samples 48] [--labelled 2]
        [--finetune-epochs 20] [--shape 64 96 96] [--seeds 0 1 2 3] [--pretrain-lr 5e-3] [--levels 3]
        [--global-loss]

A synthetic tomogram (seed 0) is pretrained on without labels (``ssl pretrain3d``); a held-out
one is made with another generator setting and seed (seed 17: 4 vesicles, 2 open membranes,
SNR 0.4). Segmentation (membrane vs the rest, the CryoSiam network) is then trained on only
``--labelled`` labelled 32³ patches of the training tomogram (chosen around membrane), once from the
pretrained encoder and decoder and once from scratch, with the same labels, epochs, rate and
seed; both are scored by the membrane Dice on the whole held-out tomogram. ``ssl embed3d`` of
the held-out tomogram with the pretrained model gives k-means clusters (k = 2), scored by the
adjusted Rand index against membrane vs the rest (and, for reference, k-means of the voxel
intensities, raw and Gaussian-smoothed with sigma 2 voxels). Prints both Dice values, their ratio,
the ARIs and the seconds per epoch of pretraining and fine-tuning. ``seed`` sets the pretraining,
the choice of labelled patches and the fine-tuning.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

#: The small network of the benchmark and of the acceptance test (CPU).
BACKBONE = {"num_filters": (8, 16, 16, 32), "fpn_channels": 16, "dense_dim": 16}


def scaled(volume: np.ndarray) -> np.ndarray:
    """prep scale's mapping: inverted (dense = bright), 0.1-99.9 percentiles to [0, 1]."""
    v = -np.asarray(volume, np.float32)
    lo, hi = np.percentile(v, [0.1, 99.9])
    return np.clip((v - lo) / (hi - lo), 0, 1).astype(np.float32)


def make_data(shape, root: Path):
    """``(train_mrc, train, held_out)``: the two synthetic tomograms (scaled) and the training one's MRC."""
    import warnings

    from napari_cryolearn.io.mrc import write_mrc
    from napari_cryolearn.sample.synthetic import make_synthetic_tomogram

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        train = make_synthetic_tomogram(tuple(shape), seed=0)
        held = make_synthetic_tomogram(tuple(shape), seed=17, n_vesicles=4, n_open_membranes=2, snr=0.4)
    root.mkdir(parents=True, exist_ok=True)
    path = write_mrc(root / "train.mrc", scaled(train.volume), voxel_size=(10.0, 10.0, 10.0))
    held_path = write_mrc(root / "held_out.mrc", scaled(held.volume), voxel_size=(10.0, 10.0, 10.0))
    return path, held_path, train, held


def labelled_patches(volume: np.ndarray, labels: np.ndarray, n: int, size: int = 32, seed: int = 0):
    """``n`` (image, membrane labels) crops of ``size``³ from a tomogram, each with ≥ 3 % membrane."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(10000):
        o = [int(rng.integers(0, s - size + 1)) for s in volume.shape]
        box = tuple(slice(a, a + size) for a in o)
        lab = (labels[box] == 1).astype(np.uint8)
        if lab.mean() >= 0.03:
            images.append(np.ascontiguousarray(volume[box]))
            masks.append(lab)
            if len(images) == n:
                break
    return images, masks


def pretrain(data: Path, run: Path, epochs: int, *, samples: int = 48, seed: int = 0, quiet: bool = True,
             backbone=BACKBONE, patch: int = 64, view: int = 32, dim: int = 64, **options):
    from napari_cryolearn.engine.jobs import run_job
    from napari_cryolearn.selfsup.pretrain3d_config import Pretrain3DConfig
    from napari_cryolearn.selfsup.pretrain3d_job import pretrain3d_job

    cfg = Pretrain3DConfig(data=[data], log_dir=run, max_epochs=epochs, samples_per_epoch=samples, batch_size=4,
                           patch_size=(patch,) * 3, view_size=(view,) * 3, backbone=backbone, dim=dim, pred_dim=16,
                           dense_pred_dim=16, device="cpu", seed=seed, overwrite=True, **options)
    t0 = time.perf_counter()
    result = run_job(pretrain3d_job(cfg), None if quiet else (lambda e: print("  ", e.message)))
    return result, (time.perf_counter() - t0) / epochs


def finetune(images, masks, run: Path, epochs: int, pretrained: Path | None, *, seed: int = 0, lr: float = 3e-3,
             backbone=BACKBONE):
    from napari_cryolearn.engine.jobs import run_job
    from napari_cryolearn.segmentation.config import CPU_TRANSFORMS, NetworkConfig, SegmentationTrainConfig
    from napari_cryolearn.segmentation.train_job import train_arrays_job

    net = NetworkConfig(out_channels=2, architecture="cryosiam", backbone=backbone, class_names=["background", "membrane"])
    cfg = SegmentationTrainConfig(log_dir=run, network=net, pretrained_model=pretrained, max_epochs=epochs,
                                  batch_size=2, lr=lr, preset="none", transforms=CPU_TRANSFORMS, validation_ratio=0,
                                  device="cpu", seed=seed, overwrite=True, scheduler="onecycle")
    t0 = time.perf_counter()
    result = run_job(train_arrays_job(images, masks, cfg, patch_size=(32, 32, 32), overlap=0.0))
    return result, (time.perf_counter() - t0) / epochs


def membrane_dice(model: Path, volume: np.ndarray, labels: np.ndarray) -> float:
    from napari_cryolearn.engine.jobs import run_job
    from napari_cryolearn.segmentation.predict_array import predict_array

    prediction, _ = run_job(predict_array(model, volume, window=(32, 32, 32), overlap=0.25, device="cpu"))
    pred, true = prediction.labels == 1, labels == 1
    return float(2 * (pred & true).sum() / max(1, pred.sum() + true.sum()))


def embedding_ari(model: Path, tomogram: Path, labels: np.ndarray, out: Path) -> float:
    from sklearn.metrics import adjusted_rand_score

    from napari_cryolearn.engine.jobs import run_job
    from napari_cryolearn.io.mrc import read_mrc
    from napari_cryolearn.selfsup.embed3d_job import embed3d_job
    from napari_cryolearn.selfsup.pretrain3d_config import Embed3DConfig

    result = run_job(embed3d_job(Embed3DConfig(model=model, tomogram=tomogram, output_dir=out, clusters=2,
                                               window=(32, 32, 32), device="cpu", overwrite=True)))
    clusters = np.asarray(read_mrc(result.outputs["clusters"]).data)
    return float(adjusted_rand_score((labels == 1).ravel(), clusters.ravel()))


def intensity_ari(volume: np.ndarray, labels: np.ndarray, sigma: float = 0.0) -> float:
    """The reference of :func:`embedding_ari`: k-means (k = 2) of the voxel intensities, after a
    Gaussian blur of ``sigma`` voxels when it is > 0."""
    from scipy import ndimage
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    v = np.asarray(volume, np.float32)
    v = (ndimage.gaussian_filter(v, sigma) if sigma > 0 else v).reshape(-1, 1)
    clusters = KMeans(2, n_init=4, random_state=0).fit(v[::7]).predict(v)
    return float(adjusted_rand_score((labels == 1).ravel(), clusters))


def compare(root: Path, *, shape=(64, 96, 96), pretrain_epochs=10, labelled=2, finetune_epochs=20, seed=0,
            quiet=True, samples=48, finetune_lr=3e-3, backbone=BACKBONE, patch=64, view=32, dim=64, draws=3,
            **options) -> dict:
    """One run of the benchmark (see the module docstring); returns its figures.

    The pretraining runs once (seed ``seed``); fine-tuning from it and from scratch runs for
    ``draws`` draws of labelled patches (seeds ``100 · seed + d``), each pair with the same labels,
    epochs, rate and seed. ``dice_pretrained`` / ``dice_scratch`` are the means over the draws,
    ``dice_draws`` the pairs, ``wins`` how many draws the pretrained start won.
    """
    train_mrc, held_mrc, train, held = make_data(shape, root)
    from napari_cryolearn.io.mrc import read_mrc

    train_v = np.asarray(read_mrc(train_mrc).data)
    held_v = np.asarray(read_mrc(held_mrc).data)
    pre, pre_epoch = pretrain(train_mrc, root / "pretrain", pretrain_epochs, seed=seed, quiet=quiet,
                              samples=samples, backbone=backbone, patch=patch, view=view, dim=dim, **options)
    ckpt = pre.outputs["last"]
    out = {"pretrain_s_per_epoch": pre_epoch, "collapse_level": pre.metrics.get("collapse_level"),
           "dice_draws": [], "finetune_s_per_epoch": []}
    for d in range(draws):
        draw = 100 * seed + d
        images, masks = labelled_patches(train_v, train.labels, labelled, seed=draw)
        out["labelled_patches"] = len(images)
        pair = []
        for name, start in (("pretrained", ckpt), ("scratch", None)):
            result, per_epoch = finetune(images, masks, root / f"seg_{name}_{d}", finetune_epochs, start, seed=draw,
                                          lr=finetune_lr, backbone=backbone)
            pair.append(membrane_dice(result.outputs["last"], held_v, held.labels))
            out["finetune_s_per_epoch"].append(per_epoch)
        out["dice_draws"].append(tuple(pair))
    out["dice_pretrained"] = float(np.mean([p for p, _ in out["dice_draws"]]))
    out["dice_scratch"] = float(np.mean([s for _, s in out["dice_draws"]]))
    out["wins"] = sum(p > s for p, s in out["dice_draws"])
    out["ratio"] = out["dice_pretrained"] / max(out["dice_scratch"], 1e-9)
    out["ari"] = embedding_ari(ckpt, held_mrc, held.labels, root / "embed")
    out["ari_intensity"] = intensity_ari(held_v, held.labels)
    out["ari_smoothed"] = intensity_ari(held_v, held.labels, sigma=2.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=(64, 96, 96))
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--labelled", type=int, default=2)
    ap.add_argument("--finetune-epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--draws", type=int, default=3, help="draws of labelled patches per pretraining")
    ap.add_argument("--samples", type=int, default=48, help="pretraining patches per epoch")
    ap.add_argument("--pretrain-lr", type=float, default=None, help="default: the stage's (5e-3)")
    ap.add_argument("--finetune-lr", type=float, default=3e-3)
    ap.add_argument("--global-loss", action="store_true", help="add the global loss term (off by default)")
    ap.add_argument("--levels", type=int, default=None, help="level losses (default: the stage's)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    options = {"include_global_loss": True} if args.global_loss else {}
    if args.levels is not None:
        options["include_levels_loss"] = args.levels
    if args.pretrain_lr is not None:
        options["lr"] = args.pretrain_lr
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench_pretrain3d_"))
    for seed in args.seeds:
        r = compare(root / f"seed{seed}", shape=args.shape, pretrain_epochs=args.pretrain_epochs,
                    labelled=args.labelled, finetune_epochs=args.finetune_epochs, seed=seed, quiet=False,
                    samples=args.samples, finetune_lr=args.finetune_lr, draws=args.draws, **options)
        pairs = ", ".join(f"{p:.3f}/{q:.3f}" for p, q in r["dice_draws"])
        print(f"seed {seed}: {r['labelled_patches']} labelled 32³ patches, {args.finetune_epochs} epochs, "
              f"{len(r['dice_draws'])} draws: membrane Dice on the held-out tomogram pretrained/scratch {pairs}; "
              f"mean {r['dice_pretrained']:.3f} vs {r['dice_scratch']:.3f} (ratio {r['ratio']:.2f}, pretrained better "
              f"in {r['wins']}); embed3d k=2 ARI {r['ari']:.3f} (k-means of intensities {r['ari_intensity']:.3f}, "
              f"smoothed {r['ari_smoothed']:.3f}); pretraining {r['pretrain_s_per_epoch']:.1f} s/epoch "
              f"({args.pretrain_epochs} epochs, collapse level {r['collapse_level']:.3f}), fine-tuning "
              f"{np.mean(r['finetune_s_per_epoch']):.2f} s/epoch")

if __name__ == "__main__":
    main()

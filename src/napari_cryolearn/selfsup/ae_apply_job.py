"""Applying a trained 4D-STEM autoencoder to a scan: latent maps, reconstruction, metrics.

The model loads strictly (:func:`~napari_cryolearn.selfsup.ae_module.load_ae_model`), and the
scan must be 4D (a stack needs ``scan_shape``), free of NaN and infinite values, and have the
detector the model was trained for after its crop and binning; every check is made before
anything is written. Written atomically into ``output_dir``, batch by batch through memory
maps:

- ``latent.npy``: (Sy, Sx, latent) float32;
- ``reconstruction.npy``: (Sy, Sx, Ky, Kx) float32 in the input's units (after the model's
  crop and binning: the input's shape and units when there are none);
- ``metrics.json``: ``mse``, ``psnr``, ``ssim`` (means over the patterns, on the normalised
  scale with the training normalisation, data range 1), ``n_patterns``;
- ``latent_maps.mrc``: the latent channels as a stack (latent, Sy, Sx), voxel size the scan
  step (``step``, else the file's, else 1 nm) in Å;
- with ``clusters``: ``cluster_labels.mrc``, (1, Sy, Sx) labels numbered from 1, a k-means of
  the unit-length latents (spherical, as the *Latent maps* widget shows them), and ``k`` and
  ``silhouette`` in the metrics.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Generator
from pathlib import Path

import numpy as np

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobResult, check_stop
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.selfsup.ae_config import AEApplyConfig

STAGE = "ae.apply"
OUTPUT_FILES = ("latent.npy", "reconstruction.npy", "metrics.json", "latent_maps.mrc")
CLUSTERS_FILE = "cluster_labels.mrc"

__all__ = ["OUTPUT_FILES", "ae_apply_job"]


class _Stopped(Exception):
    """Raised inside the writers to discard their temporaries."""


def ae_apply_job(config: AEApplyConfig, stop: StopFlag | None = None) -> Generator[Progress, None, JobResult]:
    """Apply (see the module docstring). Returns a :class:`JobResult` with outputs ``latent``,
    ``reconstruction``, ``metrics``, ``latent_maps`` and metrics ``mse``, ``psnr``, ``ssim``,
    ``n_patterns``; a stopped job writes nothing."""
    import torch

    from napari_cryolearn.engine.atomic import atomic_path
    from napari_cryolearn.engine.lightning import torch_device
    from napari_cryolearn.engine.outputs import check_output
    from napari_cryolearn.io.mrc import write_mrc
    from napari_cryolearn.io.npy import create_npy
    from napari_cryolearn.io.stem4d import denormalise, iter_chunks, normalise, prepare
    from napari_cryolearn.selfsup.ae_module import load_ae_model
    from napari_cryolearn.selfsup.ae_train_job import open_scan
    from napari_cryolearn.selfsup.autoencoder import psnr_per_pattern, ssim_per_pattern

    out_dir = Path(config.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("is a file; expected a folder", path=out_dir, field="output_dir")
    targets = {name: out_dir / name for name in OUTPUT_FILES}
    if config.clusters is not None:
        targets[CLUSTERS_FILE] = out_dir / CLUSTERS_FILE
    for target in targets.values():
        check_output([config.data, config.model], target, config.overwrite, field="output_dir")
    device = torch_device(config.device)
    model, norm, _ = load_ae_model(config.model, device=device)
    stem = open_scan(config.data, dataset=config.dataset, scan_shape=config.scan_shape, require_4d=True)
    shape = norm.output_shape(stem.detector_shape)
    if norm.crop is not None and (norm.crop[1] > stem.detector_shape[0] or norm.crop[3] > stem.detector_shape[1]):
        shape = (0, 0)
    if tuple(shape) != model.detector_shape:
        raise InputError(f"the model was trained on patterns of {model.detector_shape} pixels (after crop "
                         f"{norm.crop} and binning {norm.binning}); this scan's detector {stem.detector_shape} "
                         f"gives {tuple(shape)}", path=config.model, field="model")
    sy, sx = stem.scan_shape
    n = stem.n_patterns
    step = config.step or stem.step or 1.0
    sums = {"se": 0.0, "psnr": 0.0, "ssim": 0.0}
    with_ssim = min(shape) >= 7
    yield Progress(0, n, f"encoding {n} patterns of {config.data}", STAGE)
    try:
        with contextlib.ExitStack() as stack:
            tmp = {name: stack.enter_context(atomic_path(path, overwrite=config.overwrite))
                   for name, path in targets.items()}
            latent = create_npy(tmp["latent.npy"], (sy, sx, model.latent), target=targets["latent.npy"])
            recon = create_npy(tmp["reconstruction.npy"], (sy, sx, *shape), target=targets["reconstruction.npy"])
            flat_latent = latent.reshape(n, model.latent)
            flat_recon = recon.reshape(n, *shape)
            done = 0
            with torch.no_grad():
                for start, block in iter_chunks(stem, chunk=config.batch_size):
                    x = normalise(prepare(block, crop=norm.crop, binning=norm.binning), norm)
                    xt = torch.from_numpy(x[:, None]).to(device)
                    rt, zt = model(xt)
                    stop_at = start + len(block)
                    flat_latent[start:stop_at] = zt.float().cpu().numpy()
                    flat_recon[start:stop_at] = denormalise(rt[:, 0].float().cpu().numpy(), norm)
                    sums["se"] += float(((rt.double() - xt.double()) ** 2).sum())
                    sums["psnr"] += float(psnr_per_pattern(xt, rt).sum())
                    if with_ssim:
                        sums["ssim"] += float(ssim_per_pattern(xt, rt).sum())
                    done = stop_at
                    yield Progress(done, n, f"encoded {done}/{n}", STAGE)
                    if check_stop(stop):
                        raise _Stopped
            metrics = {"mse": sums["se"] / (n * shape[0] * shape[1]), "psnr": sums["psnr"] / n,
                       "ssim": sums["ssim"] / n if with_ssim else None, "n_patterns": int(n)}
            latent.flush()
            recon.flush()
            maps = np.ascontiguousarray(np.moveaxis(np.asarray(latent), -1, 0))
            del latent, recon, flat_latent, flat_recon
            write_mrc(tmp["latent_maps.mrc"], maps, voxel_size=(1.0, step * 10.0, step * 10.0))
            if config.clusters is not None:
                yield Progress(n, n, "clustering the latents", STAGE)
                labels, k, silhouette = cluster_latents(maps, config.clusters or None)
                metrics.update(k=k, silhouette=silhouette)
                write_mrc(tmp[CLUSTERS_FILE], labels[None], voxel_size=(1.0, step * 10.0, step * 10.0))
            tmp["metrics.json"].write_text(json.dumps(metrics, indent=2))
    except _Stopped:
        return JobResult(stopped=True)
    yield Progress(n, n, f"PSNR {metrics['psnr']:.2f} dB, SSIM "
                   f"{'n/a' if metrics['ssim'] is None else format(metrics['ssim'], '.3f')}", STAGE, metrics)
    outputs = {"latent": targets["latent.npy"], "reconstruction": targets["reconstruction.npy"],
               "metrics": targets["metrics.json"], "latent_maps": targets["latent_maps.mrc"]}
    if config.clusters is not None:
        outputs["clusters"] = targets[CLUSTERS_FILE]
    return JobResult(outputs, metrics=metrics)


def cluster_latents(maps: np.ndarray, k: int | None = None) -> tuple[np.ndarray, int, float | None]:
    """Labels (Sy, Sx) of a spherical k-means of latent maps (C, Sy, Sx), numbered from 1 in
    scan order (the first position's cluster is 1), with the ``k`` used and its cosine silhouette (``None`` when undefined); ``k`` ``None``: the
    best of 2–10. Patterns whose latent is all zero cannot be normalised: every pattern's zero
    latent makes one cluster.

    >>> maps = np.zeros((2, 2, 4), np.float32)
    >>> maps[0, :, :2], maps[1, :, 2:] = 1.0, 1.0
    >>> cluster_latents(maps, 2)[0]
    array([[1, 1, 2, 2],
           [1, 1, 2, 2]], dtype=uint8)
    """
    from napari_cryolearn.selfsup.embedding import cluster_embeddings

    c, sy, sx = maps.shape
    flat = np.moveaxis(maps, 0, -1).reshape(-1, c)
    if not np.any(flat):
        return np.ones((sy, sx), np.uint8), 1, None
    clusters = cluster_embeddings(flat, k=k, seed=0)
    raw = np.asarray(clusters.labels)
    values, first = np.unique(raw, return_index=True)
    rank = np.empty(int(values.max()) + 1, np.int64)
    rank[values[np.argsort(first)]] = np.arange(1, len(values) + 1)  # in scan order: the first position is 1
    labels = rank[raw].reshape(sy, sx)
    silhouette = None if np.isnan(clusters.silhouette) else float(clusters.silhouette)
    return labels.astype(np.uint8 if clusters.k < 255 else np.uint16), int(clusters.k), silhouette

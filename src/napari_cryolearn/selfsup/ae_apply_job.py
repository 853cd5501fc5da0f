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
  step (``step``, else the file's, else 1 nm) in Å.
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
            tmp["metrics.json"].write_text(json.dumps(metrics, indent=2))
    except _Stopped:
        return JobResult(stopped=True)
    yield Progress(n, n, f"PSNR {metrics['psnr']:.2f} dB, SSIM "
                   f"{'n/a' if metrics['ssim'] is None else format(metrics['ssim'], '.3f')}", STAGE, metrics)
    return JobResult({"latent": targets["latent.npy"], "reconstruction": targets["reconstruction.npy"],
                      "metrics": targets["metrics.json"], "latent_maps": targets["latent_maps.mrc"]},
                     metrics=metrics)

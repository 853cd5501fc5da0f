"""The label-free training job: micrographs in, a trained encoder out (SimSiam or SimCLR).

The micrographs (:func:`~napari_cryolearn.selfsup.images.list_micrographs`) are checked before
the run folder is touched: an empty source, an unreadable or non-2D file (named), fewer
micrographs than a batch. A ``validation_ratio`` of them (seeded) is held out; its loss picks
the best checkpoint. Each micrograph is read from disk when a batch needs it (memory-mapped
MRC), binned to ``image_size`` and normalised; ``fft`` turns it into its centred log power
spectrum. Two augmented views per micrograph (prismpyp's real- or Fourier-space recipe for
SimSiam, the SimCLR recipe for SimCLR).

The run folder is the harness's (``config.yaml``, ``model/model_best.ckpt``,
``model/last.ckpt``, logs; resume, stop) plus prismpyp's outputs: ``checkpoints/
model_best.pth.tar`` (lowest loss), ``model_lowest_collapse.pth.tar`` (SimSiam),
``model_last.pth.tar`` (each ``{epoch, arch, state_dict, optimizer}``), ``total_loss.webp``,
``collapse_level.webp`` and ``training_config.yaml``; a SimCLR run also the SimCLR trainer's
``checkpoints/best_model.pt`` and ``training_history.csv``
(:mod:`~napari_cryolearn.selfsup.exports`).
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import numpy as np

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.engine.training import RunFolder, TrainResult, check_log_dir, fit, resume_checkpoint, start_weights
from napari_cryolearn.selfsup.config import SSLTrainConfig

STAGE = "ssl.train"
#: prismpyp's outputs in the run folder (``overwrite`` removes them with the run).
PRISMPYP_FILES = ("total_loss.webp", "collapse_level.webp", "training_config.yaml", "training_history.csv")
PRISMPYP_FOLDER = "checkpoints"


def split_refs(n: int, ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation micrographs (at least one of each when ``ratio``
    > 0 and ``n`` > 1).

    >>> [a.tolist() for a in split_refs(5, 0.4, 0)]
    [[0, 1, 3], [2, 4]]
    """
    order = np.random.default_rng(seed).permutation(n)
    k = 0 if ratio <= 0 or n < 2 else min(n - 1, max(1, round(n * ratio)))
    return np.sort(order[k:]), np.sort(order[:k])


def ssl_train_job(config: SSLTrainConfig, stop: StopFlag | None = None) -> Generator[Progress, None, TrainResult]:
    """Train (see the module docstring). Returns a :class:`TrainResult` with outputs ``log_dir``,
    ``model`` (best), ``last``; metrics ``epochs``, ``train_loss``, ``val_loss``,
    ``collapse_level``."""
    import torch
    from torch.utils.data import DataLoader

    from napari_cryolearn.selfsup.data import training_datasets
    from napari_cryolearn.selfsup.images import check_micrographs, list_micrographs
    from napari_cryolearn.selfsup.module import SSLModule

    refs = list_micrographs(config.data)
    check_log_dir(config.log_dir, [config.data], what="micrograph folder")
    folder = RunFolder(config, inputs=[config.data], files=PRISMPYP_FILES, clear_more=_clear_checkpoints)
    folder.check()
    resume = resume_checkpoint(config)
    pretrained = start_weights(config, resume)
    yield Progress(0, None, f"checking {len(refs)} micrographs in {config.data}", STAGE)
    check_micrographs(refs)
    train_idx, val_idx = split_refs(len(refs), config.validation_ratio, config.seed)
    if len(train_idx) < config.batch_size:
        raise InputError(f"{len(train_idx)} training micrographs (of {len(refs)}, after holding out "
                         f"{len(val_idx)} to validate) are fewer than a batch of {config.batch_size}: lower "
                         "--batch-size or add micrographs", path=config.data, field="batch_size")
    torch.manual_seed(config.seed)
    module = SSLModule(config.to_dict())
    if pretrained is not None:
        from napari_cryolearn.selfsup.checkpoints import load_encoder_weights

        report = load_encoder_weights(module.model, pretrained)
        yield Progress(0, None, f"pretrained weights ({report.layout}): {len(report.loaded)} tensors loaded, "
                       f"{len(report.skipped)} skipped", STAGE)
    train_ds, val_ds = training_datasets(config, [refs[i] for i in train_idx], [refs[i] for i in val_idx])
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(train_ds, batch_size=config.batch_size, shuffle=True, drop_last=True,
                              generator=generator, num_workers=config.num_workers)
    val_loader = (DataLoader(val_ds, batch_size=config.batch_size, num_workers=config.num_workers)
                  if val_ds is not None and len(val_ds) >= 2 else None)
    mode = "power spectra" if config.fft else "micrographs"
    yield Progress(0, None, f"{config.method} on {len(train_idx)} training and {len(val_idx)} validation {mode}",
                   STAGE)
    monitor = ("val_loss", "min") if val_loader is not None else ("train_loss", "min")
    module.monitor = monitor[0]
    result = yield from fit(module, train_loader, val_loader, config, folder, stage=STAGE, monitor=monitor,
                            shown=("train_loss", "val_loss", "collapse_level"), resume=resume, stop=stop,
                            extra_callbacks=_collapse_checkpoint(config))
    from napari_cryolearn.selfsup.exports import export_prismpyp

    export_prismpyp(config, result)
    return result


def _collapse_checkpoint(config: SSLTrainConfig) -> list:
    if config.method != "simsiam":
        return []
    from napari_cryolearn.engine.lightning import BestCheckpoint

    return [BestCheckpoint(dirpath=str(Path(config.log_dir) / "model"), filename="model_lowest_collapse",
                           monitor="collapse_level", mode="min", save_top_k=1, save_last=False,
                           enable_version_counter=False, auto_insert_metric_name=False)]


def _clear_checkpoints(folder: RunFolder) -> list[Path]:
    import shutil

    p = folder.path / PRISMPYP_FOLDER
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
        return [p]
    return []

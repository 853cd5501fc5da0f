"""The 4D-STEM autoencoder's training job: a scan in, a trained autoencoder out.

Before the run folder is touched the scan is opened lazily (:func:`~napari_cryolearn.io.
stem4d.read_stem4d`) and checked chunk by chunk (missing or empty file, wrong number of axes,
NaN or infinite values: :class:`InputError` naming the file), and the
:class:`~napari_cryolearn.io.stem4d.Normalisation` is fitted over it chunk-wise. A
``validation_ratio`` of the patterns (seeded) is held out. :class:`PatternDataset` reads each
pattern from the memory map (or HDF5 dataset) when a batch needs it, crops, bins and
normalises it: the scan is never in memory as float32. Training runs on the harness
(:func:`~napari_cryolearn.engine.training.fit`): ``config.yaml``, ``model/model_best.ckpt``
(lowest ``val_loss``, else ``train_loss``), ``model/last.ckpt``, CSV and TensorBoard logs,
resume (``continue_training``) and stop. ``pretrained_model`` starts a new run from a
checkpoint of this stage, loaded strictly (an error names the missing tensors).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path

import numpy as np

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.engine.training import RunFolder, TrainResult, check_log_dir, fit, resume_checkpoint, start_weights
from napari_cryolearn.io.stem4d import Normalisation, Stem4D, fit_normalisation, normalise, prepare, read_stem4d
from napari_cryolearn.selfsup.ae_config import AETrainConfig

STAGE = "ae.train"

__all__ = ["PatternDataset", "ae_train_job", "open_scan"]


def open_scan(path, *, dataset: str | None = None, scan_shape=None, require_4d: bool = False,
              field: str = "data") -> Stem4D:
    """:func:`read_stem4d` with this stage's field name (checked for NaN and infinite values)."""
    return read_stem4d(path, dataset=dataset, scan_shape=scan_shape, require_4d=require_4d, field=field)


class PatternDataset:
    """Normalised patterns (1, Ky, Kx) float32 tensors of a scan at flat ``indices``, read lazily.

    Holds the file's name, not its data: each worker (and the main process) opens the file
    once, memory-mapped, when it first reads.
    """

    def __init__(self, path: str | Path, indices: Sequence[int], norm: Normalisation, *,
                 dataset: str | None = None, scan_shape=None) -> None:
        self.path, self.dataset, self.scan_shape = Path(path), dataset, scan_shape
        self.indices = np.asarray(indices, dtype=np.int64)
        self.norm = norm
        self._stem: Stem4D | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_stem"] = None  # h5py datasets do not pickle; workers reopen
        return state

    def _scan(self) -> Stem4D:
        if self._stem is None:
            self._stem = read_stem4d(self.path, dataset=self.dataset, scan_shape=self.scan_shape,
                                     check_finite=False)
        return self._stem

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        import torch

        pattern = self._scan().take([int(self.indices[i])])
        x = normalise(prepare(pattern, crop=self.norm.crop, binning=self.norm.binning), self.norm)
        return torch.from_numpy(np.ascontiguousarray(x))  # (1, Ky, Kx)


def ae_train_job(config: AETrainConfig, stop: StopFlag | None = None) -> Generator[Progress, None, TrainResult]:
    """Train (see the module docstring). Returns a :class:`TrainResult` with outputs ``log_dir``,
    ``model`` (best), ``last``; metrics ``epochs``, ``train_loss``, ``train_mse``, ``val_loss``
    (and ``val_psnr``, ``val_ssim`` with ``realtime_metrics``)."""
    import torch
    from torch.utils.data import DataLoader

    from napari_cryolearn.selfsup.ae_module import AEModule, load_state_strict, read_ae_checkpoint
    from napari_cryolearn.selfsup.train_job import split_refs

    check_log_dir(config.log_dir, [config.data], what="4D-STEM scan")
    folder = RunFolder(config, inputs=[config.data])
    folder.check()
    resume = resume_checkpoint(config)
    pretrained = start_weights(config, resume)
    yield Progress(0, None, f"checking {config.data}", STAGE)
    stem = open_scan(config.data, dataset=config.dataset, scan_shape=config.scan_shape)
    norm = fit_normalisation(stem, binning=config.binning, crop=config.crop)
    shape = norm.output_shape(stem.detector_shape)
    if min(shape) < 1:
        raise InputError(f"binning {config.binning} leaves no detector pixels of {stem.detector_shape}",
                         path=config.data, field="binning")
    n = stem.n_patterns
    train_idx, val_idx = split_refs(n, config.validation_ratio, config.seed)
    if len(train_idx) < config.batch_size:
        raise InputError(f"{len(train_idx)} training patterns (of {n}, after holding out {len(val_idx)} to "
                         f"validate) are fewer than a batch of {config.batch_size}: lower batch_size",
                         path=config.data, field="batch_size")
    pre_state = None
    if pretrained is not None:
        ckpt, pcfg, _, pshape = read_ae_checkpoint(pretrained, field="pretrained_model")
        if pshape != shape or pcfg.latent != config.latent or pcfg.width != config.width:
            raise InputError(f"was trained for detector {pshape}, latent {pcfg.latent}, width {pcfg.width}; this "
                             f"run has detector {shape}, latent {config.latent}, width {config.width}",
                             path=pretrained, field="pretrained_model")
        pre_state = ckpt["state_dict"]
    torch.manual_seed(config.seed)
    module = AEModule(config.to_dict(), norm.to_dict(), list(shape))
    if pre_state is not None:
        load_state_strict(module.model, pre_state, pretrained, field="pretrained_model")
        yield Progress(0, None, f"fine-tuning from {pretrained}", STAGE)
    common = dict(dataset=config.dataset, scan_shape=config.scan_shape)
    train_ds = PatternDataset(config.data, train_idx, norm, **common)
    val_ds = PatternDataset(config.data, val_idx, norm, **common) if len(val_idx) else None
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(train_ds, batch_size=config.batch_size, shuffle=True, drop_last=True,
                              generator=generator, num_workers=config.num_workers)
    val_loader = (DataLoader(val_ds, batch_size=config.batch_size, num_workers=config.num_workers)
                  if val_ds is not None else None)
    yield Progress(0, None, f"autoencoder on {len(train_idx)} training and {len(val_idx)} validation patterns of "
                   f"{shape[0]} × {shape[1]} pixels", STAGE)
    monitor = ("val_loss", "min") if val_loader is not None else ("train_loss", "min")
    shown = ("train_loss", "train_mse", "val_loss") + (("val_psnr", "val_ssim") if config.realtime_metrics else ())
    result = yield from fit(module, train_loader, val_loader, config, folder, stage=STAGE, monitor=monitor,
                            shown=shown, resume=resume, stop=stop)
    return result

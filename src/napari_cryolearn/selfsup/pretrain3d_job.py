"""Dense 3D SimSiam pretraining's job: tomograms in, a pretrained DenseSimSiam out (``ssl.pretrain3d``).

Before the run folder is touched every input is opened and checked (:func:`open_volumes`):
an empty list, a missing file, a volume that is not 3D, NaN or infinite values (read slab by
slab from the memory map), or a ``patch_size`` larger than a tomogram (or a store's patches)
gives an :class:`InputError` naming the file. :class:`DenseViewDataset` reads one random
``patch_size`` patch at a time from the memory-mapped tomogram (never the whole set in
memory), samples two views with tracked geometry and returns them with their correspondence
(:mod:`.dense_views`). Training runs on the harness (:func:`~napari_cryolearn.engine.training.fit`):
``config.yaml``, ``model/model_best.ckpt`` (lowest ``val_loss``, else ``train_loss``),
``model/last.ckpt``, CSV and TensorBoard logs, resume (``continue_training``), stop, several
GPUs or nodes (DDP). ``pretrained_model`` starts a new run from a DenseSimSiam checkpoint
(strictly loaded).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.engine.training import RunFolder, TrainResult, check_log_dir, fit, resume_checkpoint, start_weights
from napari_cryolearn.selfsup.pretrain3d_config import Pretrain3DConfig

STAGE = "ssl.pretrain3d"

__all__ = ["DenseViewDataset", "VolumeSource", "open_volumes", "pretrain3d_job"]


class VolumeSource:
    """A tomogram (MRC, memory-mapped) or a patch store (its image patches), read a patch at a time.

    Holds the path, not the data: each data-loader worker opens the file when it first reads.
    """

    def __init__(self, path: str | Path, kind: str, shape: tuple[int, ...], n_patches: int = 1) -> None:
        self.path, self.kind, self.shape, self.n_patches = Path(path), kind, tuple(shape), int(n_patches)
        self._data: Any = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_data"] = None
        return state

    def _open(self):
        if self._data is None:
            if self.kind == "mrc":
                from napari_cryolearn.io.mrc import read_mrc

                self._data = read_mrc(self.path, mmap=True).data
            else:
                from napari_cryolearn.io.patch_store import open_patch_store

                self._data = open_patch_store(self.path)
        return self._data

    def crop(self, rng: np.random.Generator, size: Sequence[int]) -> np.ndarray:
        """A random (Z, Y, X) float32 patch of ``size``."""
        data = self._open()
        if self.kind == "mrc":
            volume = data
        else:
            volume = data.read("image", int(rng.integers(self.n_patches)))
        origin = [int(rng.integers(0, s - p + 1)) for s, p in zip(self.shape, size)]
        box = tuple(slice(o, o + p) for o, p in zip(origin, size))
        return np.asarray(volume[box], dtype=np.float32)


def _check_finite_slabs(data: np.ndarray, path: Path, field: str) -> None:
    step = max(1, (16 << 20) // max(1, int(np.prod(data.shape[1:])) * data.itemsize))
    for z in range(0, data.shape[0], step):
        slab = np.asarray(data[z:z + step])
        if slab.dtype.kind == "f" and not np.isfinite(slab).all():
            first = z + int(np.flatnonzero(~np.isfinite(slab).reshape(len(slab), -1).all(axis=1))[0])
            raise InputError(f"holds NaN or infinite values (first in slice {first})", path=path, field=field)


def open_volumes(paths: Sequence[str | Path], patch_size: Sequence[int], *, field: str = "data") -> list[VolumeSource]:
    """Check and describe the inputs (see the module docstring); nothing is written."""
    from napari_cryolearn.io.mrc import read_mrc_3d
    from napari_cryolearn.io.patch_store import is_patch_store, open_patch_store

    if not paths:
        raise InputError("no tomogram or patch store given", field=field)
    size = tuple(int(p) for p in patch_size)
    sources = []
    for path in paths:
        path = Path(path)
        if is_patch_store(path):
            store = open_patch_store(path)
            if len(store) == 0:
                raise InputError("holds no patch", path=path, field=field)
            shape = tuple(store.patch_size)
            for i in range(len(store)):
                image = np.asarray(store.read("image", i))
                if image.dtype.kind == "f" and not np.isfinite(image).all():
                    raise InputError(f"image patch {i} holds NaN or infinite values", path=path, field=field)
            source = VolumeSource(path, "store", shape, len(store))
            what = "its patches"
        else:
            if not path.exists():
                raise InputError("not found (expected a tomogram MRC or a patch store)", path=path, field=field)
            vol = read_mrc_3d(path, field=field, what="tomogram")
            _check_finite_slabs(vol.data, path, field)
            source = VolumeSource(path, "mrc", tuple(vol.data.shape))
            what = "the tomogram"
        if any(p > s for p, s in zip(size, source.shape)):
            raise InputError(f"patch_size {size} is larger than {what} ({source.shape}); lower patch_size and "
                             "view_size", path=path, field="patch_size")
        sources.append(source)
    return sources


class DenseViewDataset:
    """Pairs of views of random patches, with their correspondence; ``len`` is ``n_samples``.

    Each item is a dict of tensors: ``view1``, ``view2`` (1, *view_size) float32, ``grid12``
    (*view_size, 3) (where each voxel of view 1 is in view 2, a ``grid_sample`` grid),
    ``mask12`` (*view_size) bool (whether it is there), ``grid21``, ``mask21``. With
    ``fixed`` (validation) item ``i`` is the same every time; otherwise every draw differs.
    """

    def __init__(self, sources: Sequence[VolumeSource], config: Pretrain3DConfig, n_samples: int, *,
                 fixed: bool = False) -> None:
        self.sources = list(sources)
        self.cfg = config
        self.n = int(n_samples)
        self.fixed = fixed
        self._draws = 0
        self._intensity = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        import torch

        from napari_cryolearn.selfsup.dense_views import (
            coarse_dropout,
            correspondence,
            geometry_options,
            intensity_transform,
            sample_view,
            to_grid,
            view_pair,
        )

        cfg = self.cfg
        if self.fixed:
            rng = np.random.default_rng([cfg.seed, 1, int(i)])
        else:
            info = torch.utils.data.get_worker_info()
            rng = np.random.default_rng([cfg.seed, 0, int(i), self._draws, 0 if info is None else info.id])
            self._draws += 1
        source = self.sources[int(rng.integers(len(self.sources)))]
        patch = cfg.intensity.apply(source.crop(rng, cfg.patch_size))
        g1, g2 = view_pair(rng, cfg.patch_size, cfg.view_size, view_overlap=cfg.view_overlap,
                           min_shift=cfg.view_min_shift, **geometry_options(cfg.transforms))
        t = torch.from_numpy(np.ascontiguousarray(patch, np.float32))[None]
        if self._intensity is None:
            self._intensity = [x for x in (intensity_transform(cfg.transforms),
                                           coarse_dropout(cfg.view_size, cfg.dropout_prob, cfg.dropout)) if x]
        views = []
        for g in (g1, g2):
            v = sample_view(t, g, cfg.view_size)
            for transform in self._intensity:
                transform.set_random_state(seed=int(rng.integers(2**31)))
                v = torch.as_tensor(transform({"image": v})["image"]).float()
            views.append(v.contiguous())
        c12, m12 = correspondence(g1, g2, cfg.view_size)
        c21, m21 = correspondence(g2, g1, cfg.view_size)
        return {"view1": views[0], "view2": views[1], "grid12": to_grid(c12, cfg.view_size),
                "mask12": torch.from_numpy(m12), "grid21": to_grid(c21, cfg.view_size), "mask21": torch.from_numpy(m21)}


def _check_resumable(ckpt: dict, module, path: Path) -> None:
    from napari_cryolearn.selfsup.pretrain3d_module import state_problems

    problems = state_problems(module.state_dict(), ckpt["state_dict"])
    if problems or "optimizer_states" not in ckpt:
        raise InputError(f"cannot be continued with this config: {problems or 'no training state'}; continue with "
                         "the settings of the stopped run (its config.yaml)", path=path, field="continue_training")


def pretrain3d_job(config: Pretrain3DConfig, stop: StopFlag | None = None) -> Generator[Progress, None, TrainResult]:
    """Pretrain (see the module docstring). Returns a :class:`TrainResult` with outputs ``log_dir``,
    ``model`` (best), ``last``; metrics ``epochs``, ``train_loss``, ``collapse_level`` (and
    ``val_loss`` with ``val_data``)."""
    import torch
    from torch.utils.data import DataLoader

    from napari_cryolearn.models.checkpoints import read_checkpoint
    from napari_cryolearn.selfsup.pretrain3d_module import (
        Pretrain3DModule,
        load_state_strict,
        read_dense_checkpoint,
        strip_prefix,
    )

    inputs = [*config.data, *(config.val_data or [])]
    if not config.data:
        raise InputError("no tomogram or patch store given", field="data")
    check_log_dir(config.log_dir, inputs, what="input")
    folder = RunFolder(config, inputs=inputs)
    folder.check()
    resume = resume_checkpoint(config)
    pretrained = start_weights(config, resume)
    yield Progress(0, None, f"checking {len(inputs)} input(s)", STAGE)
    sources = open_volumes(config.data, config.patch_size)
    val_sources = open_volumes(config.val_data, config.patch_size, field="val_data") if config.val_data else []
    if config.samples_per_epoch < config.batch_size:
        raise InputError(f"samples_per_epoch {config.samples_per_epoch} is fewer than a batch of {config.batch_size}",
                         field="samples_per_epoch")
    pre_state = None
    if pretrained is not None:
        ckpt, _ = read_dense_checkpoint(pretrained, field="pretrained_model")
        pre_state = strip_prefix(ckpt["state_dict"])
    torch.manual_seed(config.seed)
    module = Pretrain3DModule(config.cryosiam_dict())
    if pre_state is not None:
        load_state_strict(module._model, pre_state, pretrained, field="pretrained_model")
        yield Progress(0, None, f"starting from {pretrained}", STAGE)
    if resume is not None:
        _check_resumable(read_checkpoint(resume), module, resume)
    train_ds = DenseViewDataset(sources, config, config.samples_per_epoch)
    train_loader = DataLoader(train_ds, batch_size=config.batch_size, shuffle=False, drop_last=True,
                              num_workers=config.num_workers, persistent_workers=config.num_workers > 0)
    val_loader = None
    if val_sources:
        val_ds = DenseViewDataset(val_sources, config, config.val_samples, fixed=True)
        val_loader = DataLoader(val_ds, batch_size=config.batch_size, num_workers=config.num_workers)
    n_params = sum(p.numel() for p in module._model.parameters())
    yield Progress(0, None, f"dense SimSiam ({n_params:,} parameters) on {len(sources)} input(s): "
                   f"{config.samples_per_epoch} patches of {tuple(config.patch_size)} per epoch, views "
                   f"{tuple(config.view_size)}", STAGE)
    monitor = ("val_loss", "min") if val_loader is not None else ("train_loss", "min")
    shown = ("train_loss", "collapse_level") + (("val_loss",) if val_loader is not None else ())
    try:
        return (yield from fit(module, train_loader, val_loader, config, folder, stage=STAGE, monitor=monitor,
                               shown=shown, resume=resume, stop=stop))
    finally:
        folder.release()

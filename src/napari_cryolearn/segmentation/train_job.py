"""Segmentation training jobs: from patch stores (:func:`train_job`) or arrays (:func:`train_arrays_job`).

Both are generators of :class:`Progress` events (stage ``"segment.train"``) that return a
:class:`TrainResult`. Everything the user can get wrong is checked before anything is
written: stores (NaN or ±inf in any array included), labels against ``out_channels``,
distances, the pretrained checkpoint, the device, the run folder (one that holds a run
needs ``continue_training`` or ``overwrite``) and ``last.ckpt`` when continuing. A run
folder holds ``config.yaml``, ``train_val_split.json``, ``model/model_best.ckpt``,
``model/last.ckpt`` and the CSV and TensorBoard logs; one job at a time writes it (a lock,
held by global rank zero for the whole run). Setting the stop flag (or closing the
generator) finishes the current batch, writes ``model/last.ckpt`` and returns; continuing
from it resumes at the next batch, and ends where an uninterrupted run ends. A non-finite
loss stops training with :class:`~napari_cryolearn.engine.lightning.DivergedError`, keeping
the checkpoints written before it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Generator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader

from napari_cryolearn.engine.errors import InputError, OutputError
from napari_cryolearn.engine.lightning import (
    BestCheckpoint,
    LastCheckpoint,
    ProgressRelay,
    StopOnDivergence,
    StopOnFlag,
    fit_in_thread,
    make_trainer,
    resolve_accelerator,
)
from napari_cryolearn.engine.locks import output_lock
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.models.augment import build_eval_transform, build_train_transform
from napari_cryolearn.models.checkpoints import (
    backbone_config_from_checkpoint,
    check_resumable,
    load_weights,
    read_checkpoint,
)
from napari_cryolearn.segmentation.config import SegmentationTrainConfig
from napari_cryolearn.segmentation.data import (
    ArrayPatchSource,
    EpochSampler,
    ResumableLoader,
    SegmentationDataset,
    check_sources,
    collate,
    open_stores,
    split_items,
)
from napari_cryolearn.segmentation.module import SegmentationModule
from napari_cryolearn.segmentation.sources import is_cryosiam_folder, resolve_patch_stores

STAGE = "segment.train"


@dataclass
class TrainResult:
    """What a training run left: its folder, checkpoints, whole epochs done, last metrics."""

    log_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    epochs: int
    stopped: bool
    metrics: dict[str, float] = field(default_factory=dict)


def model_dir(log_dir: Path) -> Path:
    """Where checkpoints go: ``log_dir/model``."""
    return Path(log_dir) / "model"


def train_job(config: SegmentationTrainConfig, stop: StopFlag | None = None) -> Generator[Progress, None, TrainResult]:
    """Train on the patch stores of ``config`` (see module docstring)."""
    if not config.patch_stores:
        raise InputError("no patch store given", field="patch_stores")
    _check_log_dir(config.log_dir, [*config.patch_stores, *(config.val_stores or [])])
    folder = _RunFolder(config)
    folder.check()
    try:
        yield Progress(0, None, "checking patch stores", STAGE)
        if any(is_cryosiam_folder(p) for p in config.patch_stores):
            folder.claim()  # the import writes into log_dir/patch_stores
            yield Progress(0, None, "importing CryoSiam patch folders", STAGE)
        train_paths, val_paths = resolve_patch_stores(config.patch_stores, config.val_stores, config.log_dir)
        train_sources = open_stores(train_paths, "patch_stores")
        val_sources = open_stores(val_paths, "val_stores") if val_paths else []
        sources = train_sources + val_sources
        folder.in_use = [*train_paths, *(val_paths or [])]
        names = [str(p) for p in train_paths] + [str(p) for p in (val_paths or [])]
        train_items, val_items = split_items(
            [len(s) for s in train_sources],
            [len(s) for s in val_sources] if val_paths else None,
            config.validation_ratio,
            config.seed,
        )
        split = {"train": sorted({names[s] for s, _ in train_items}),
                 "val": sorted({names[s] for s, _ in val_items}),
                 "train_items": train_items, "val_items": val_items}
        return (yield from _train(config, sources, names, train_items, val_items, split, stop, folder,
                                  need_foreground=True))
    finally:
        folder.release()


def _check_log_dir(log_dir, stores: Sequence = ()) -> None:
    if log_dir is not None and Path(log_dir).exists() and not Path(log_dir).is_dir():
        raise InputError("is a file; expected a folder for the run", path=log_dir, field="log_dir")
    run = Path(log_dir).resolve()
    for store in stores:
        store = Path(store).resolve()
        if run == store or store in run.parents:
            raise InputError(f"is inside the patch store {store}; choose a run folder outside the inputs",
                             path=log_dir, field="log_dir")


#: What a training run writes into its folder (removed by ``overwrite``); ``patch_stores/``
#: holds the stores imported from CryoSiam patch folders.
RUN_FILES = ("config.yaml", "train_val_split.json")
RUN_FOLDERS = ("model", "csv_logs", "lightning_logs")
IMPORTED_STORES = "patch_stores"


def _previous_run(log_dir: Path) -> list[str]:
    """The files in ``log_dir`` that show it holds a training run (relative names)."""
    found = [name for name in ("config.yaml",) if (log_dir / name).is_file()]
    if (log_dir / "model").is_dir():
        found += sorted(f"model/{p.name}" for p in (log_dir / "model").glob("*.ckpt"))
    return found


def _global_rank_zero(config: SegmentationTrainConfig) -> bool:
    """Whether this process is global rank zero of the run (before Lightning sets ranks up).

    ``rank_zero_only.rank`` comes from ``RANK``, ``LOCAL_RANK`` or ``SLURM_PROCID``; a process
    started by hand on another node of a multi-node run has only ``NODE_RANK`` to say so.
    """
    if rank_zero_only.rank != 0:
        return False
    return config.nodes == 1 or int(os.environ.get("NODE_RANK", "0") or 0) == 0


def _inside(path: Path, folder: Path) -> bool:
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


class _RunFolder:
    """The run folder of one training job, as global rank zero sees it.

    :meth:`check` refuses a folder that holds a run unless ``continue_training`` or
    ``overwrite`` is set (and both together), and an input inside what ``overwrite`` would
    remove. :meth:`claim` takes the folder's lock (another job writing it → ``OutputError``
    naming its pid) and checks again under it; :meth:`clear_previous` (with ``overwrite``)
    removes what a previous run wrote, and nothing else: ``RUN_FILES``, ``RUN_FOLDERS`` and
    the stores in ``patch_stores/`` this run does not use. :meth:`release` frees the lock.
    Other DDP ranks (started by Lightning inside the run of rank zero) do none of this.
    """

    def __init__(self, config: SegmentationTrainConfig) -> None:
        self.config = config
        self.path = Path(config.log_dir)
        self.primary = _global_rank_zero(config)
        self.in_use: list[Path] = []
        self._lock = ExitStack()
        self._claimed = False

    def check(self) -> None:
        cfg = self.config
        if not self.primary:
            return
        if cfg.continue_training and cfg.overwrite:
            raise InputError("continue_training resumes the run in log_dir and overwrite replaces it: set one",
                             path=self.path, field="overwrite")
        if cfg.overwrite:
            inputs = [*(cfg.patch_stores or []), *(cfg.val_stores or [])]
            if cfg.pretrained_model is not None:
                inputs.append(cfg.pretrained_model)
            for given in inputs:
                for name in (*RUN_FOLDERS, *RUN_FILES):
                    if _inside(given, self.path / name):
                        raise InputError(f"lies in {self.path / name}, which overwrite removes; copy it out of "
                                         "the run folder first", path=given, field="overwrite")
        if cfg.continue_training or cfg.overwrite:
            return
        found = _previous_run(self.path)
        if found:
            raise InputError(f"already holds a training run ({', '.join(found[:3])}); pass --continue-training "
                             "(continue_training) to resume it, --overwrite (overwrite) to start afresh and replace "
                             "its checkpoints, config and logs, or choose another folder",
                             path=self.path, field="log_dir")

    def claim(self) -> None:
        if not self.primary or self._claimed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot make the folder ({err.strerror})", path=self.path.parent,
                              field="log_dir") from None
        self._lock.enter_context(output_lock(self.path, field="log_dir"))
        self._claimed = True
        self.check()  # another job may have written a run here since the first check

    def clear_previous(self) -> list[Path]:
        """With ``overwrite``: remove the previous run's files; returns what was removed."""
        if not self.primary or not self.config.overwrite or not self.path.is_dir():
            return []
        from napari_cryolearn.io.patch_store import is_patch_store

        removed = []
        for name in RUN_FILES:
            p = self.path / name
            if p.is_file() or p.is_symlink():
                p.unlink()
                removed.append(p)
        for name in RUN_FOLDERS:
            p = self.path / name
            if p.is_symlink():
                p.unlink()
                removed.append(p)
            elif p.is_dir():
                shutil.rmtree(p)
                removed.append(p)
        stores = self.path / IMPORTED_STORES
        if stores.is_dir() and not stores.is_symlink():
            used = {Path(p).resolve() for p in self.in_use}
            for p in sorted(stores.iterdir()):
                if p.resolve() not in used and is_patch_store(p):
                    shutil.rmtree(p)
                    removed.append(p)
            if not any(stores.iterdir()):
                stores.rmdir()
        return removed

    def release(self) -> None:
        self._lock.close()
        self._claimed = False


def train_arrays_job(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    config: SegmentationTrainConfig,
    *,
    distances: Sequence[np.ndarray] | None = None,
    val_images: Sequence[np.ndarray] | None = None,
    val_labels: Sequence[np.ndarray] | None = None,
    patch_size: Sequence[int] = (64, 64, 64),
    overlap: float = 0.5,
    stop: StopFlag | None = None,
) -> Generator[Progress, None, TrainResult]:
    """Train on in-memory volumes (the viewer's annotate → train loop).

    ``images``/``labels``: (Z, Y, X) volumes; unannotated voxels hold
    ``config.network.ignore_index``. Patches of ``patch_size`` (overlap fraction ``overlap``)
    with at least one annotated voxel are used; validation on ``val_images``/``val_labels``
    when given, else a ``validation_ratio`` of the patches. ``config.patch_stores`` is
    ignored.
    """
    ignore = config.network.ignore_index
    src = ArrayPatchSource(images, labels, patch_size, overlap, distances, ignore)
    if len(src) == 0:
        raise InputError("no patch has any annotated voxel", field="labels")
    sources: list[Any] = [src]
    names = ["images"]
    if val_images is not None and val_labels is not None:
        sources.append(ArrayPatchSource(val_images, val_labels, patch_size, overlap, None, ignore))
        names.append("val_images")
        train_items, val_items = split_items([len(src)], [len(sources[1])], 0, config.seed)
    else:
        train_items, val_items = split_items([len(src)], None, config.validation_ratio, config.seed)
    split = {"train": names[:1], "val": names[1:], "train_items": train_items, "val_items": val_items}
    _check_log_dir(config.log_dir)
    folder = _RunFolder(config)
    folder.check()
    try:
        return (yield from _train(config, sources, names, train_items, val_items, split, stop, folder))
    finally:
        folder.release()


def _epochs_done(trainer) -> int:
    # a stop in the middle of an epoch ends Lightning's epoch too; count whole epochs only
    n = trainer.num_training_batches
    if not n or n == float("inf"):
        return int(trainer.current_epoch)
    return int(trainer.global_step // int(n))


def _patch_shape(sources: Sequence[Any], items: Sequence[tuple[int, int]]) -> tuple[int, int, int]:
    s, i = items[0]
    return tuple(int(v) for v in np.asarray(sources[s][i]["image"]).shape)  # type: ignore[return-value]


def _train(
    config: SegmentationTrainConfig,
    sources: list[Any],
    names: list[str],
    train_items: list,
    val_items: list,
    split: dict,
    stop: StopFlag | None,
    folder: _RunFolder,
    need_foreground: bool = False,
) -> Generator[Progress, None, TrainResult]:
    stop = stop if stop is not None else StopFlag()
    net_cfg = config.network
    accelerator = resolve_accelerator(config.device)
    _check_log_dir(config.log_dir)
    if not train_items:
        raise InputError("no training patches after the validation split", field="validation_ratio")
    log_dir = Path(config.log_dir)
    mdir = model_dir(log_dir)
    last = mdir / "last.ckpt"
    resume = resume_ckpt = None
    if config.continue_training:
        if not last.is_file():
            raise InputError("continue_training is set but there is no checkpoint to continue from",
                             path=last, field="continue_training")
        resume = last
        resume_ckpt = read_checkpoint(last)
        previous = log_dir / "config.yaml"
        if config.scheduler == "onecycle" and previous.is_file():
            before = SegmentationTrainConfig.from_yaml(previous).max_epochs
            if before != config.max_epochs:
                raise InputError(
                    f"the stopped run's one-cycle learning-rate schedule spans {before} epochs: continue with "
                    f"max_epochs {before}, or train further in a new run with pretrained_model {last}",
                    path=previous, field="max_epochs")

    # the backbone architecture travels with a pretrained model, and with the run being continued
    pre_ckpt = None
    if config.pretrained_model is not None and resume is None:
        pre_ckpt = read_checkpoint(config.pretrained_model)
    described = resume_ckpt if resume_ckpt is not None else pre_ckpt
    if described is not None:
        bb = backbone_config_from_checkpoint(described, resume or config.pretrained_model)
        if bb is not None and bb != net_cfg.backbone:
            config = config.model_copy(update={"network": net_cfg.model_copy(update={"backbone": bb})})
            net_cfg = config.network

    # patch stores of background only are a wrong file; a correction round in the viewer may paint only 0
    check_sources(sources, names, net_cfg.out_channels, net_cfg.ignore_index, net_cfg.distance_prediction,
                  net_cfg.backbone.in_channels, need_foreground=need_foreground)
    patch_shape = tuple(config.patch_size) if config.patch_size else _patch_shape(sources, train_items)
    torch.manual_seed(config.seed)  # same initial weights for the same config
    module = SegmentationModule(config.to_dict(), pretrained=config.pretrained_model is not None,
                                patch_shape=patch_shape)
    divisor = module.net.size_divisor
    if any(s % divisor for s in patch_shape):
        raise InputError(f"patch shape {patch_shape} must be a multiple of {divisor} along every axis "
                         "(set patch_size)", field="patch_size")
    loaded = None
    if pre_ckpt is not None:
        loaded = load_weights(module.net, config.pretrained_model, ckpt=pre_ckpt)
    if resume_ckpt is not None:
        check_resumable(resume_ckpt, module, last, config.to_dict())
    yield Progress(0, None, f"{len(train_items)} training and {len(val_items)} validation patches, on "
                   f"{accelerator}", STAGE,
                   {"train_patches": len(train_items), "val_patches": len(val_items)})
    if loaded is not None and loaded.skipped:
        yield Progress(0, None, f"pretrained model {Path(config.pretrained_model).name}: {len(loaded.skipped)} "
                       f"head tensors of another shape start untrained ({loaded.skipped[0]})", STAGE)

    folder.claim()
    removed = folder.clear_previous()
    if removed:
        yield Progress(0, None, f"overwrite: removed the previous run's {', '.join(p.name for p in removed)}",
                       STAGE)
    if folder.primary:
        log_dir.mkdir(parents=True, exist_ok=True)
        # overwrite acted on the folder once; a config.yaml that kept it could not be continued from
        config.model_copy(update={"overwrite": False}).to_yaml(log_dir / "config.yaml")
        (log_dir / "train_val_split.json").write_text(json.dumps(split, indent=1))

    dist = net_cfg.distance_prediction
    train_ds = SegmentationDataset(
        sources, train_items,
        build_train_transform(config.transforms, net_cfg.ignore_index, dist, config.patch_size),
        config.intensity, config.seed, dist)
    train_loader = ResumableLoader(
        train_ds, batch_size=config.batch_size, sampler=EpochSampler(len(train_ds), True, config.seed),
        num_workers=config.num_workers, collate_fn=collate, drop_last=len(train_ds) > config.batch_size,
        persistent_workers=config.num_workers > 0,
    )
    position = _loader_position(resume_ckpt)
    if position is not None:
        train_loader.load_state_dict(position)
    val_loader = None
    if val_items:
        val_ds = SegmentationDataset(
            sources, val_items, build_eval_transform(net_cfg.ignore_index, dist, config.patch_size),
            config.intensity, config.seed, dist)
        val_loader = DataLoader(val_ds, batch_size=config.batch_size, sampler=EpochSampler(len(val_ds), False),
                                num_workers=config.num_workers, collate_fn=collate)

    monitor, mode = ("val_dice", "max") if val_loader is not None else ("train_loss", "min")
    guard = StopOnDivergence()
    best_cb = BestCheckpoint(
        dirpath=str(mdir), filename="model_best", monitor=monitor, mode=mode, save_top_k=1, save_last=False,
        enable_version_counter=False, auto_insert_metric_name=False, guard=guard,
    )
    last_cb = LastCheckpoint(last, guard=guard)
    relay = ProgressRelay(lambda e: None, STAGE, config.progress_every_n_batches)
    stopper = StopOnFlag(stop)
    trainer = make_trainer(
        log_dir, config.max_epochs, device=config.device, devices=config.gpu_devices, num_nodes=config.nodes,
        strategy=config.strategy, precision=config.precision, callbacks=[guard, relay, stopper, best_cb, last_cb],
        check_val_every_n_epoch=config.val_interval, use_distributed_sampler=False,
        deterministic=False,
    )

    def run(emit) -> TrainResult:
        relay.emit = emit
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(resume) if resume else None)
        if guard.diverged:
            raise guard.error(last, path=log_dir)
        best = Path(best_cb.best_model_path) if best_cb.best_model_path else None
        if best is None and (mdir / "model_best.ckpt").is_file():
            best = mdir / "model_best.ckpt"
        return TrainResult(
            log_dir=log_dir,
            best_checkpoint=best,
            last_checkpoint=last if last.is_file() else None,
            epochs=_epochs_done(trainer),
            stopped=stopper.stopped,
            metrics={k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1},
        )

    result = yield from fit_in_thread(run, stop)
    message = "done"
    if result.stopped:
        n = trainer.num_training_batches
        partial = int(trainer.global_step) % int(n) if n and n != float("inf") else 0
        message = (f"stopped in epoch {result.epochs + 1} after batch {partial}/{int(n)}: continue_training "
                   f"resumes at the next batch" if partial else f"stopped after epoch {result.epochs}")
    yield Progress(trainer.global_step, trainer.global_step, message, STAGE, dict(result.metrics))
    return result


def _loader_position(ckpt: dict | None) -> dict | None:
    """The training loader's position saved in a checkpoint (:class:`ResumableLoader`), if any."""
    if ckpt is None:
        return None
    try:
        states = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]
        state = states[0]
        return {"epoch": int(state["epoch"]), "batches": int(state["batches"])}
    except (KeyError, IndexError, TypeError, ValueError):
        return None  # a checkpoint of an older version: Lightning's own restart applies

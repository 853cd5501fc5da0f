"""Segmentation training jobs: from patch stores (:func:`train_job`) or arrays (:func:`train_arrays_job`).

Both are generators of :class:`Progress` events (stage ``"segment.train"``) that return a
:class:`TrainResult`. Everything the user can get wrong is checked before anything is
written: stores, labels against ``out_channels``, distances, the pretrained checkpoint, the
device, and ``last.ckpt`` when continuing. A run folder holds ``config.yaml``,
``train_val_split.json``, ``model/model_best.ckpt``, ``model/last.ckpt`` and the CSV and
TensorBoard logs. Setting the stop flag (or closing the generator) finishes the current
batch, writes ``model/last.ckpt`` (resumable with ``continue_training``) and returns.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.lightning import (
    ProgressRelay,
    StopOnFlag,
    fit_in_thread,
    make_trainer,
    resolve_accelerator,
)
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.segmentation.augment import build_eval_transform, build_train_transform
from napari_cryolearn.segmentation.checkpoints import (
    backbone_config_from_checkpoint,
    load_weights,
    read_checkpoint,
)
from napari_cryolearn.segmentation.config import SegmentationTrainConfig
from napari_cryolearn.segmentation.data import (
    ArrayPatchSource,
    EpochSampler,
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
    yield Progress(0, None, "checking patch stores", STAGE)
    if any(is_cryosiam_folder(p) for p in config.patch_stores):
        yield Progress(0, None, "importing CryoSiam patch folders", STAGE)
    train_paths, val_paths = resolve_patch_stores(config.patch_stores, config.val_stores, config.log_dir)
    train_sources = open_stores(train_paths, "patch_stores")
    val_sources = open_stores(val_paths, "val_stores") if val_paths else []
    sources = train_sources + val_sources
    names = [str(p) for p in train_paths] + [str(p) for p in (val_paths or [])]
    train_items, val_items = split_items(
        [len(s) for s in train_sources],
        [len(s) for s in val_sources] if val_paths else None,
        config.validation_ratio,
        config.seed,
    )
    split = {"train": sorted({names[s] for s, _ in train_items}), "val": sorted({names[s] for s, _ in val_items}),
             "train_items": train_items, "val_items": val_items}
    return (yield from _train(config, sources, names, train_items, val_items, split, stop, need_foreground=True))


def _check_log_dir(log_dir, stores: Sequence = ()) -> None:
    if log_dir is not None and Path(log_dir).exists() and not Path(log_dir).is_dir():
        raise InputError("is a file; expected a folder for the run", path=log_dir, field="log_dir")
    run = Path(log_dir).resolve()
    for store in stores:
        store = Path(store).resolve()
        if run == store or store in run.parents:
            raise InputError(f"is inside the patch store {store}; choose a run folder outside the inputs",
                             path=log_dir, field="log_dir")


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
    return (yield from _train(config, sources, names, train_items, val_items, split, stop))


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
    resume = None
    if config.continue_training:
        if not last.is_file():
            raise InputError("continue_training is set but there is no checkpoint to continue from",
                             path=last, field="continue_training")
        resume = last
        previous = log_dir / "config.yaml"
        if config.scheduler == "onecycle" and previous.is_file():
            before = SegmentationTrainConfig.from_yaml(previous).max_epochs
            if before != config.max_epochs:
                raise InputError(
                    f"the stopped run's one-cycle learning-rate schedule spans {before} epochs: continue with "
                    f"max_epochs {before}, or train further in a new run with pretrained_model {last}",
                    path=previous, field="max_epochs")

    # the backbone architecture travels with a pretrained model
    pre_ckpt = None
    if config.pretrained_model is not None and resume is None:
        pre_ckpt = read_checkpoint(config.pretrained_model)
        bb = backbone_config_from_checkpoint(pre_ckpt, config.pretrained_model)
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
    if pre_ckpt is not None:
        load_weights(module.net, config.pretrained_model, ckpt=pre_ckpt)
    yield Progress(0, None, f"{len(train_items)} training and {len(val_items)} validation patches, on "
                   f"{accelerator}", STAGE,
                   {"train_patches": len(train_items), "val_patches": len(val_items)})

    if rank_zero_only.rank == 0:
        log_dir.mkdir(parents=True, exist_ok=True)
        config.to_yaml(log_dir / "config.yaml")
        (log_dir / "train_val_split.json").write_text(json.dumps(split, indent=1))

    dist = net_cfg.distance_prediction
    train_ds = SegmentationDataset(
        sources, train_items,
        build_train_transform(config.transforms, net_cfg.ignore_index, dist, config.patch_size),
        config.intensity, config.seed, dist)
    train_loader = DataLoader(
        train_ds, batch_size=config.batch_size, sampler=EpochSampler(len(train_ds), True, config.seed),
        num_workers=config.num_workers, collate_fn=collate, drop_last=len(train_ds) > config.batch_size,
        persistent_workers=config.num_workers > 0,
    )
    val_loader = None
    if val_items:
        val_ds = SegmentationDataset(
            sources, val_items, build_eval_transform(net_cfg.ignore_index, dist, config.patch_size),
            config.intensity, config.seed, dist)
        val_loader = DataLoader(val_ds, batch_size=config.batch_size, sampler=EpochSampler(len(val_ds), False),
                                num_workers=config.num_workers, collate_fn=collate)

    monitor, mode = ("val_dice", "max") if val_loader is not None else ("train_loss", "min")
    ckpt_cb = ModelCheckpoint(
        dirpath=str(mdir), filename="model_best", monitor=monitor, mode=mode, save_top_k=1, save_last=True,
        enable_version_counter=False, auto_insert_metric_name=False,
    )
    relay = ProgressRelay(lambda e: None, STAGE, config.progress_every_n_batches)
    stopper = StopOnFlag(stop, last)
    trainer = make_trainer(
        log_dir, config.max_epochs, device=config.device, devices=config.gpu_devices, num_nodes=config.nodes,
        strategy=config.strategy, precision=config.precision, callbacks=[relay, stopper, ckpt_cb],
        check_val_every_n_epoch=config.val_interval, use_distributed_sampler=False,
        deterministic=False,
    )

    def run(emit) -> TrainResult:
        relay.emit = emit
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(resume) if resume else None)
        best = Path(ckpt_cb.best_model_path) if ckpt_cb.best_model_path else None
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
    yield Progress(trainer.global_step, trainer.global_step, "stopped" if result.stopped else "done", STAGE,
                   dict(result.metrics))
    return result

"""The Lightning module of segmentation training: network, loss, optimiser, Dice on validation."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from napari_cryolearn.engine.lightning import make_optimizer, one_cycle_schedule
from napari_cryolearn.segmentation.config import SegmentationTrainConfig
from napari_cryolearn.segmentation.losses import SegmentationLoss, dice_counts, dice_from_counts
from napari_cryolearn.segmentation.network import build_network


class SegmentationModule(L.LightningModule):
    """Trains a :class:`~napari_cryolearn.models.heads.SegmentationNet`.

    Parameters
    ----------
    config:
        A :class:`SegmentationTrainConfig` as a plain dict (what is saved in checkpoints as
        ``hyper_parameters.config``).
    pretrained:
        True when the weights come from a pretrained model: then ``unfreeze_backbone`` /
        ``unfreeze_decoder`` decide what trains; otherwise everything trains.
    patch_shape:
        Training patch shape (z, y, x), kept for prediction's default window.

    Logged: ``train_loss`` (and its parts), ``val_loss``, ``val_dice_<class>`` per class and
    ``val_dice``, the mean over the foreground classes (over both classes with one output).
    """

    def __init__(
        self,
        config: dict[str, Any],
        pretrained: bool = False,
        patch_shape: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = SegmentationTrainConfig.from_dict(config)
        net_cfg = self.cfg.network
        self.net = build_network(net_cfg)
        if pretrained:
            self.net.set_trainable(backbone=net_cfg.unfreeze_backbone, decoder=net_cfg.unfreeze_decoder)
        self.loss_fn = SegmentationLoss(
            net_cfg.out_channels, net_cfg.ignore_index, net_cfg.use_dice_loss, net_cfg.dice_type,
            net_cfg.distance_weight, class_weights=net_cfg.class_weights,
        )
        self.class_names = net_cfg.names()
        n_count = max(2, net_cfg.out_channels)
        self.register_buffer("_val_counts", torch.zeros(3, n_count, dtype=torch.float64), persistent=False)

    def forward(self, x: torch.Tensor):
        return self.net(x)

    def setup(self, stage: str) -> None:
        # the U-Net's 3D convolutions run about 10 % faster on a CPU with channels-last tensors
        # (benchmarks/bench_train_step.py --levers); the same numbers, another memory layout
        from lightning.pytorch.accelerators import CPUAccelerator

        trainer = getattr(self, "_trainer", None)
        self._channels_last = (self.cfg.network.architecture == "unet" and trainer is not None
                               and isinstance(trainer.accelerator, CPUAccelerator))
        if self._channels_last:
            self.net.to(memory_format=torch.channels_last_3d)

    def _sync(self) -> bool:
        return self.trainer is not None and self.trainer.world_size > 1

    def _step(self, batch: dict, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        image = batch["image"]
        if getattr(self, "_channels_last", False):
            image = image.contiguous(memory_format=torch.channels_last_3d)
        logits, dist = self.net(image)
        terms = self.loss_fn(logits, batch["labels"], dist, batch.get("distances"))
        bs = batch["image"].shape[0]
        self.log(f"{prefix}_loss", terms.total, on_step=False, on_epoch=True, batch_size=bs, sync_dist=self._sync())
        for name in ("labels", "dice", "distance"):
            v = getattr(terms, name)
            if v is not None:
                self.log(f"{prefix}_{name}_loss", v, on_step=False, on_epoch=True, batch_size=bs,
                         sync_dist=self._sync())
        return terms.total, logits

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, _ = self._step(batch, "train")
        return loss

    def on_train_epoch_start(self) -> None:
        for m in self.net.frozen_modules():
            m.eval()

    def on_validation_epoch_start(self) -> None:
        self._val_counts.zero_()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        _, logits = self._step(batch, "val")
        pred = predict_classes(logits)
        n = self._val_counts.shape[1]
        self._val_counts += dice_counts(pred, batch["labels"], n, self.cfg.network.ignore_index).to(
            self._val_counts.device)

    def on_validation_epoch_end(self) -> None:
        counts = self._val_counts.clone()
        if self._sync():
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        dice = dice_from_counts(counts).cpu()
        names = self.class_names if len(self.class_names) == dice.numel() else ["background", *self.class_names]
        for name, d in zip(names, dice.tolist()):
            if not math.isnan(d):
                self.log(f"val_dice_{name}", d, on_epoch=True, sync_dist=self._sync())  # equal on all ranks
        fg = [d for d in dice.tolist()[1:] if not math.isnan(d)]
        if len(dice) == 2:
            fg = [d for d in dice.tolist() if not math.isnan(d)]
        self.log("val_dice", float(sum(fg) / len(fg)) if fg else 0.0, on_epoch=True, sync_dist=self._sync())

    def configure_optimizers(self):
        cfg = self.cfg
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = make_optimizer(params, cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        if cfg.scheduler == "none":
            return opt
        return {"optimizer": opt, "lr_scheduler": one_cycle_schedule(opt, self.trainer, time_limit=cfg.time_limit())}


def predict_classes(logits: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
    """Logits (N, C, ...) → class map (N, ...) int64.

    One channel: sigmoid > 0.5 (or ``threshold``). Several: argmax of softmax; with a
    ``threshold``, voxels whose best probability is below it become 0.
    """
    if logits.shape[1] == 1:
        return (torch.sigmoid(logits[:, 0]) > (0.5 if threshold is None else threshold)).long()
    if threshold is None:
        return logits.argmax(1)
    probs = torch.softmax(logits, 1)
    best, cls = probs.max(1)
    return torch.where(best >= threshold, cls, torch.zeros_like(cls))

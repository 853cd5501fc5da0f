"""The Lightning module of label-free training: SimSiam or SimCLR on two views of each micrograph.

Logged per epoch: ``train_loss`` and ``val_loss`` (the method's loss on held-out micrographs),
and for SimSiam ``collapse_level`` (prismpyp's measure with its moving averages bias-corrected,
:class:`~napari_cryolearn.selfsup.simsiam.CollapseMonitor`: 0 healthy, 1 collapsed).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from napari_cryolearn.engine.lightning import make_optimizer
from napari_cryolearn.selfsup.config import SSLTrainConfig


def build_model(cfg: SSLTrainConfig) -> torch.nn.Module:
    """The network a config describes (one input channel)."""
    if cfg.method == "simsiam":
        from napari_cryolearn.selfsup.simsiam import SimSiam

        return SimSiam(cfg.backbone, in_channels=1, dim=cfg.dim, pred_dim=cfg.pred_dim)
    from napari_cryolearn.selfsup.simclr import SimCLR

    return SimCLR(cfg.backbone, in_channels=1, out_dim=cfg.projection_dim)


def embed(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The embedding of images ``x`` (N, 1, H, W): SimSiam's L2-normalised reducer output, SimCLR's
    encoder features (both before the projector, as prismpyp and the SimCLR trainer use)."""
    return model.embed(x)


class SSLModule(L.LightningModule):
    """Trains :func:`build_model`'s network; ``config`` is a :class:`SSLTrainConfig` as a dict."""

    #: the metric ``scheduler="plateau"`` watches (the job sets ``train_loss`` when nothing is validated)
    monitor: str = "val_loss"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = SSLTrainConfig.from_dict(config)
        self.model = build_model(self.cfg)
        if self.cfg.freeze_backbone:
            from napari_cryolearn.selfsup.simsiam import set_trainable

            set_trainable(self.model, freeze_backbone=True)
        self.collapse = None
        if self.cfg.method == "simsiam":
            from napari_cryolearn.selfsup.simsiam import CollapseMonitor

            self.collapse = CollapseMonitor(self.cfg.dim)

    def _loss(self, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        (v1, v2), _ = batch  # MicrographDataset with a two-view transform: ((x1, x2), index)
        if self.cfg.method == "simsiam":
            from napari_cryolearn.selfsup.simsiam import simsiam_loss

            p1, p2, z1, z2 = self.model(v1, v2)
            return simsiam_loss(p1, p2, z1, z2), p1
        from napari_cryolearn.selfsup.simclr import nt_xent

        z1, z2 = self.model(v1), self.model(v2)
        return nt_xent(z1, z2, temperature=self.cfg.temperature), None

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, p1 = self._loss(batch)
        n = batch[0][0].shape[0]
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=n)
        if p1 is not None and self.collapse is not None:
            self.collapse.update(p1.detach().float())
            if batch_idx + 1 >= self.trainer.num_training_batches and self.collapse.epoch_level is not None:
                # logged at the epoch's last batch, so that the callbacks of this epoch (the
                # progress relay, the lowest-collapse checkpoint after validation) see this
                # epoch's level, not the previous one's (callbacks' epoch-end hooks run before
                # the module's)
                self.log("collapse_level", float(self.collapse.end_epoch()), on_step=True, on_epoch=False)
        return loss

    def on_train_epoch_end(self) -> None:
        # the rate of the epoch (the SimCLR trainer's lr_history), for the logs
        self.log("lr", float(self.trainer.optimizers[0].param_groups[0]["lr"]), on_step=False, on_epoch=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, _ = self._loss(batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=batch[0][0].shape[0])

    def configure_optimizers(self):
        cfg = self.cfg
        lr, name = cfg.resolved_lr(), cfg.resolved_optimizer()
        predictor = getattr(self.model, "predictor", None) if cfg.method == "simsiam" else None
        fixed = {id(p) for p in predictor.parameters()} if predictor is not None else set()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in trainable if id(p) not in fixed], "fixed": False},
                  {"params": [p for p in trainable if id(p) in fixed], "fixed": True}]
        groups = [g for g in groups if g["params"]]
        opt = make_optimizer(groups, name, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        if cfg.scheduler == "none":
            return opt
        if cfg.scheduler == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": plateau, "monitor": self.monitor,
                                                       "interval": "epoch", "frequency": 1}}
        if cfg.scheduler == "onecycle":
            from napari_cryolearn.engine.lightning import one_cycle_schedule

            return {"optimizer": opt, "lr_scheduler": one_cycle_schedule(opt, self.trainer,
                                                                         time_limit=cfg.time_limit())}
        from napari_cryolearn.engine.lightning import run_progress

        limit = cfg.time_limit()

        def factor(group_fixed: bool):
            # SimSiam's schedule: cosine decay over the run; its predictor keeps the initial rate
            return lambda _step: 1.0 if group_fixed else 0.5 * (1 + math.cos(math.pi * run_progress(self.trainer, limit)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, [factor(g["fixed"]) for g in groups])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

"""The Lightning module of dense 3D SimSiam pretraining, and reading its checkpoints.

The network is the module's ``_model`` attribute, so the checkpoint's ``state_dict`` keys are
``_model.<DenseSimSiam key>`` (CryoSiam's layout), and its ``hyper_parameters`` are
``{"config": <the run as the CryoSiam fork's YAML mapping>}``: ``config.parameters.network``
is a plain dict in CryoSiam's key names (what CryoSiam's and our segmentation loaders read),
``config.cryolearn`` our config.

Logged per epoch: ``train_loss`` (and ``train_dense``, ``train_global``, ``train_level_{2,4,8}``
with those terms), ``val_loss`` with
validation data, ``collapse_level`` (prismpyp's measure, :class:`~napari_cryolearn.selfsup.simsiam.
CollapseMonitor`, on a sample of voxels of the dense predictions: 0 healthy, 1 collapsed) and ``lr``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.lightning import make_optimizer
from napari_cryolearn.selfsup.dense_simsiam import DenseSimSiam, dense_samples, dense_simsiam_loss
from napari_cryolearn.selfsup.pretrain3d_config import Pretrain3DConfig

#: The state-dict prefix of CryoSiam's DenseSimSiam checkpoints.
PREFIX = "_model."


def build_dense_simsiam(network: dict[str, Any]) -> DenseSimSiam:
    """The :class:`DenseSimSiam` a CryoSiam ``parameters.network`` mapping describes."""
    n = network
    return DenseSimSiam(
        block_type=n.get("block_type", "bottleneck"), in_channels=int(n.get("in_channels", 1)),
        num_layers=tuple(n.get("num_layers", (1, 1, 1, 1))), num_filters=tuple(n.get("num_filters", (64, 128, 256, 512))),
        fpn_channels=int(n.get("fpn_channels", 128)), dense_dim=int(n.get("dense_dim", 32)),
        no_max_pool=bool(n.get("no_max_pool", True)), add_later_conv=bool(n.get("add_fpn_later_conv", False)),
        dim=int(n.get("dim", 2048)), pred_dim=int(n.get("pred_dim", 512)), dense_pred_dim=int(n.get("dense_pred_dim", 64)),
        include_levels=_levels(n.get("include_levels_loss", 0)))


def _levels(value) -> int:
    """CryoSiam's ``include_levels_loss`` (a bool, or the number of levels) as a number of levels."""
    return (3 if value else 0) if isinstance(value, bool) else int(value or 0)


class Pretrain3DModule(L.LightningModule):
    """Trains a :class:`DenseSimSiam`; ``config`` is :meth:`Pretrain3DConfig.cryosiam_dict`."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = Pretrain3DConfig.from_dict(config["cryolearn"])
        self._model = build_dense_simsiam(config["parameters"]["network"])
        from napari_cryolearn.selfsup.simsiam import CollapseMonitor

        self.collapse = CollapseMonitor(self._model.dense_dim)
        self._voxels = torch.Generator().manual_seed(self.cfg.seed)

    def _losses(self, batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        out = self._model(batch["view1"], batch["view2"])
        terms = dense_simsiam_loss(out, batch["grid12"], batch["mask12"], batch["grid21"], batch["mask21"],
                                   include_global_loss=self.cfg.include_global_loss,
                                   weight_dense_loss=self.cfg.weight_dense_loss)
        return terms, out.p1

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        terms, p1 = self._losses(batch)
        n = batch["view1"].shape[0]
        self.log("train_loss", terms["total"], on_step=False, on_epoch=True, batch_size=n)
        for key in ("dense", "global", "level_2", "level_4", "level_8"):
            if key in terms:
                self.log(f"train_{key}", terms[key].detach(), on_step=False, on_epoch=True, batch_size=n)
        self.collapse.update(dense_samples(p1, 512, self._voxels))
        if batch_idx + 1 >= self.trainer.num_training_batches and self.collapse.epoch_level is not None:
            # logged at the epoch's last batch so that this epoch's callbacks see this epoch's level
            self.log("collapse_level", float(self.collapse.end_epoch()), on_step=True, on_epoch=False)
        return terms["total"]

    def on_train_epoch_end(self) -> None:
        self.log("lr", float(self.trainer.optimizers[0].param_groups[0]["lr"]), on_step=False, on_epoch=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        terms, _ = self._losses(batch)
        self.log("val_loss", terms["total"], on_step=False, on_epoch=True, batch_size=batch["view1"].shape[0])

    def configure_optimizers(self):
        cfg = self.cfg
        params = [p for p in self._model.parameters() if p.requires_grad]
        opt = make_optimizer(params, cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        if cfg.scheduler == "none":
            return opt
        from napari_cryolearn.engine.lightning import one_cycle_schedule

        return {"optimizer": opt, "lr_scheduler": one_cycle_schedule(opt, self.trainer, time_limit=cfg.time_limit())}


def strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CryoSiam's loader: the ``_model.`` keys with the prefix removed (others dropped)."""
    return {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}


def read_dense_checkpoint(path: str | Path, *, field: str = "model") -> tuple[dict, dict[str, Any]]:
    """``(checkpoint, network)`` of a DenseSimSiam checkpoint (ours or CryoSiam's): ``network``
    is its ``hyper_parameters.config.parameters.network``. :class:`InputError` naming ``path``
    when it is not one (e.g. a segmentation model)."""
    from napari_cryolearn.models.checkpoints import detect_layout, read_checkpoint

    ckpt = read_checkpoint(path)
    layout = detect_layout(ckpt["state_dict"])
    hp = ckpt.get("hyper_parameters") or {}
    try:
        network = dict(hp["config"]["parameters"]["network"])
    except (KeyError, TypeError):
        network = None
    if layout != "cryosiam_pretrain" or not any(k.startswith(PREFIX + "predictor.") for k in ckpt["state_dict"]) \
            or network is None:
        what = {"ours": "a segmentation model of napari-cryolearn", "cryosiam_semantic": "a CryoSiam segmentation "
                "model"}.get(layout, f"another network (layout {layout})")
        raise InputError(f"not a DenseSimSiam pretraining checkpoint (_model.encoder.*, _model.predictor.* and "
                         f"hyper_parameters.config.parameters.network): it is {what}", path=path, field=field)
    return ckpt, network


def state_problems(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str:
    """The first missing, unexpected and mismatched tensors of ``state`` against ``own`` ("" when it fits)."""
    from napari_cryolearn.models.checkpoints import _describe

    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in own.items()
                 if k in state and tuple(state[k].shape) != tuple(v.shape)]
    return _describe(problems) if problems else ""


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], path, *, field: str = "model") -> None:
    """Load ``_model.``-stripped ``state`` into ``model`` strictly; :class:`InputError` naming ``path``
    and the first missing, unexpected or mismatched tensors when it does not fit."""
    problems = state_problems(model.state_dict(), state)
    if problems:
        raise InputError(f"does not fit this DenseSimSiam network: {problems}", path=path, field=field)
    model.load_state_dict(state, strict=True)


def load_dense_model(path: str | Path, *, device=None, field: str = "model") -> tuple[DenseSimSiam, dict[str, Any]]:
    """``(network, checkpoint hyper_parameters.config)`` of a DenseSimSiam checkpoint, strictly
    loaded, in eval mode."""
    ckpt, network = read_dense_checkpoint(path, field=field)
    model = build_dense_simsiam(network)
    load_state_strict(model, strip_prefix(ckpt["state_dict"]), path, field=field)
    return model.to(device).eval(), dict(ckpt["hyper_parameters"]["config"])

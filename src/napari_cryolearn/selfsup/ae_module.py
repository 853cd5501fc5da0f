"""The Lightning module of the 4D-STEM autoencoder, and strict loading of its checkpoints.

Logged per epoch: ``train_mse``, ``train_act``, ``train_sim``, ``train_div`` and
``train_loss`` (the total), ``val_loss`` and ``val_mse``, and with ``realtime_metrics``
``val_psnr`` and ``val_ssim`` (on the normalised scale, data range 1). The hyper-parameters
(the config, the :class:`~napari_cryolearn.io.stem4d.Normalisation`, the detector shape the
network was built for) travel in every checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.lightning import make_optimizer
from napari_cryolearn.io.stem4d import Normalisation
from napari_cryolearn.selfsup.ae_config import AETrainConfig
from napari_cryolearn.selfsup.autoencoder import StemAutoencoder, ae_loss, psnr_per_pattern, ssim_per_pattern


class AEModule(L.LightningModule):
    """Trains a :class:`StemAutoencoder`; ``config`` is an :class:`AETrainConfig` as a dict,
    ``normalisation`` a :meth:`Normalisation.to_dict`, ``detector_shape`` the network's (Ky, Kx)
    after crop and binning."""

    def __init__(self, config: dict[str, Any], normalisation: dict[str, Any], detector_shape: list[int]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = AETrainConfig.from_dict(config)
        self.norm = Normalisation.from_dict(normalisation)
        self.model = StemAutoencoder(self.cfg.latent, tuple(detector_shape), width=self.cfg.width)

    def _losses(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        recon, z = self.model(x)
        cfg = self.cfg
        return ae_loss(x, recon, z, lambda_act=cfg.lambda_act, lambda_sim=cfg.lambda_sim,
                       lambda_div=cfg.lambda_div, divergence=cfg.divergence), recon

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch
        losses, _ = self._losses(x)
        n = x.shape[0]
        for key in ("mse", "act", "sim", "div"):
            self.log(f"train_{key}", losses[key].detach(), on_step=False, on_epoch=True, batch_size=n)
        self.log("train_loss", losses["total"], on_step=False, on_epoch=True, batch_size=n)
        return losses["total"]

    def validation_step(self, batch, batch_idx: int) -> None:
        x = batch
        losses, recon = self._losses(x)
        n = x.shape[0]
        self.log("val_loss", losses["total"], on_step=False, on_epoch=True, batch_size=n)
        self.log("val_mse", losses["mse"], on_step=False, on_epoch=True, batch_size=n)
        if self.cfg.realtime_metrics:
            self.log("val_psnr", psnr_per_pattern(x, recon).mean().float(), on_step=False, on_epoch=True,
                     batch_size=n)
            if min(x.shape[-2:]) >= 7:
                self.log("val_ssim", ssim_per_pattern(x, recon).mean().float(), on_step=False, on_epoch=True,
                         batch_size=n)

    def configure_optimizers(self):
        cfg = self.cfg
        opt = make_optimizer(self.model.parameters(), cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum,
                             weight_decay=cfg.weight_decay)
        if cfg.scheduler == "none":
            return opt
        from napari_cryolearn.engine.lightning import one_cycle_schedule

        return {"optimizer": opt, "lr_scheduler": one_cycle_schedule(opt, self.trainer, time_limit=cfg.time_limit())}


def _network_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if any(k.startswith("model.") for k in state):
        state = {k[6:]: v for k, v in state.items() if k.startswith("model.")}
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path, *,
                      field: str = "model") -> None:
    """Load a checkpoint's ``state_dict`` (a Lightning module's ``model.`` prefix, or DDP's
    ``module.``, removed) into ``model``; :class:`InputError` naming ``path``, the missing,
    unexpected and mismatched tensors when it does not fit exactly."""
    state = _network_state(state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})")
        if extra:
            parts.append(f"{len(extra)} unexpected ({', '.join(extra[:4])}{', ...' if len(extra) > 4 else ''})")
        if wrong:
            parts.append(f"{len(wrong)} of another shape ({', '.join(wrong[:3])}{', ...' if len(wrong) > 3 else ''})")
        raise InputError(f"does not fit the autoencoder: {'; '.join(parts)} tensors", path=path, field=field)
    model.load_state_dict(state, strict=True)


def read_ae_checkpoint(path: str | Path, *, field: str = "model") -> tuple[dict, AETrainConfig, Normalisation,
                                                                            tuple[int, int]]:
    """``(checkpoint, config, normalisation, detector_shape)`` of a checkpoint ``ae train`` wrote;
    :class:`InputError` naming ``path`` when it is not one."""
    from napari_cryolearn.models.checkpoints import read_checkpoint

    ckpt = read_checkpoint(path)
    hp = ckpt.get("hyper_parameters") or {}
    if not (isinstance(hp, dict) and {"config", "normalisation", "detector_shape"} <= set(hp)):
        raise InputError("not a checkpoint of the 4D-STEM autoencoder (no config, normalisation and detector "
                         "shape in its hyper_parameters)", path=path, field=field)
    cfg = AETrainConfig.from_dict(dict(hp["config"]), source=path)
    return ckpt, cfg, Normalisation.from_dict(hp["normalisation"]), tuple(int(s) for s in hp["detector_shape"])


def load_ae_model(path: str | Path, *, device=None) -> tuple[StemAutoencoder, Normalisation, AETrainConfig]:
    """``(network, normalisation, config)`` of a checkpoint, strictly loaded, in eval mode."""
    ckpt, cfg, norm, shape = read_ae_checkpoint(path)
    model = StemAutoencoder(cfg.latent, shape, width=cfg.width)
    load_state_strict(model, ckpt["state_dict"], path)
    return model.to(device).eval(), norm, cfg

"""The picker's Lightning module and its dataset of partitions.

One sample is one partition of one mesh (:class:`~.training_data.PartitionItem`): its profile
window, operators, targets and stitching weights; a batch is one sample (partitions differ in
size), and ``batch_size`` partitions are accumulated per optimiser step. Training sees a random
window of each profile and random augmentations; validation the centre window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from napari_cryolearn.engine.lightning import make_optimizer, one_cycle_schedule
from napari_cryolearn.picking.config import PickerNetworkConfig, PickTrainConfig
from napari_cryolearn.picking.diffusionnet import DiffusionNetPicker, operators_to_torch, weighted_mse
from napari_cryolearn.picking.training_data import PartitionItem, augment_profiles, profile_windows

_OPERATORS = ("mass", "evals", "evecs", "grad_x", "grad_y")


def build_picker(network: PickerNetworkConfig) -> DiffusionNetPicker:
    """The network a :class:`PickerNetworkConfig` describes."""
    return DiffusionNetPicker(profile_length=network.profile_window, conv_width=network.conv_width,
                              c_width=network.c_width, n_blocks=network.n_blocks, dropout=network.dropout)


class PartitionDataset(Dataset):
    """Partitions as network inputs: ``{"profiles", "target", "weights", "mass", "evals", "evecs",
    "grad_x", "grad_y"}`` (torch; the gradients sparse).

    ``train``: a random profile window and (``augment``) augmentations, drawn from a generator
    seeded by ``seed``, the epoch and the index, so a run is repeatable; otherwise the centre
    window.
    """

    def __init__(self, items: Sequence[PartitionItem], *, window: int, train: bool, augment: bool = True,
                 seed: int = 0) -> None:
        self.items = list(items)
        self.window = int(window)
        self.train = bool(train)
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0
        self._ops = [operators_to_torch(it.operators) for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.items[index]
        starts = profile_windows(item.profiles.shape[1], self.window)
        if self.train:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            start = int(rng.choice(starts))
            x = item.profiles[:, start:start + self.window]
            if self.augment:
                x = augment_profiles(x, rng)
        else:
            start = starts[len(starts) // 2]
            x = item.profiles[:, start:start + self.window]
        out = {"profiles": torch.from_numpy(np.ascontiguousarray(x, np.float32)),
               "target": torch.from_numpy(np.asarray(item.target, np.float32)),
               "weights": torch.from_numpy(item.weights)}
        out.update(zip(_OPERATORS, self._ops[index]))
        return out


def first(batch: list[dict]) -> dict:
    """The collate function of batches of one partition."""
    return batch[0]


class PickerModule(L.LightningModule):
    """Trains a :class:`DiffusionNetPicker` with MemBrain-pick's weighted MSE (the partitions'
    Gaussian weights). ``config``: a :class:`PickTrainConfig` as a dict (saved in checkpoints as
    ``hyper_parameters.config``). Logged: ``train_loss``, ``val_loss`` (squared distance error in
    units of 15 Å) and ``val_mae_A`` (the mean absolute error in Å over vertices within the
    clip distance of a protein). ``profile_step``: the Å between the training meshes' profile
    samples, kept in the checkpoint so that prediction refuses meshes sampled otherwise."""

    def __init__(self, config: dict[str, Any], profile_step: float | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()  # profile_step (Å between profile samples) is checked at prediction
        self.cfg = PickTrainConfig.from_dict(config)
        self.net = build_picker(self.cfg.network)
        self.register_buffer("_near", torch.zeros(2, dtype=torch.float64), persistent=False)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.net(batch["profiles"], *(batch[k] for k in _OPERATORS))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = weighted_mse(self(batch), batch["target"], batch["weights"])
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=1)
        return loss

    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if isinstance(dataset, PartitionDataset):
            dataset.set_epoch(self.current_epoch)

    def on_validation_epoch_start(self) -> None:
        self._near.zero_()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        pred = self(batch)
        self.log("val_loss", weighted_mse(pred, batch["target"], batch["weights"]), on_step=False, on_epoch=True,
                 batch_size=1)
        from napari_cryolearn.picking.training_data import DISTANCE_UNIT

        near = batch["target"] < self.cfg.clip / DISTANCE_UNIT
        self._near[0] += (pred[near] - batch["target"][near]).abs().sum().double() * DISTANCE_UNIT
        self._near[1] += near.sum()

    def on_validation_epoch_end(self) -> None:
        if self._near[1] > 0:
            self.log("val_mae_A", float(self._near[0] / self._near[1]), on_epoch=True)

    def configure_optimizers(self):
        cfg = self.cfg
        params = self.net.parameters()
        opt = make_optimizer(params, cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        if cfg.scheduler == "none":
            return opt
        return {"optimizer": opt, "lr_scheduler": one_cycle_schedule(opt, self.trainer, time_limit=cfg.time_limit())}

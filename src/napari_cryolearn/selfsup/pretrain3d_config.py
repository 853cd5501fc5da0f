"""The configs of dense 3D SimSiam pretraining (``ssl.pretrain3d``) and of embedding volumes
(``ssl.embed3d``), and the reader of the CryoSiam pretraining fork's YAML.

Training runs on the engine's harness (:class:`~napari_cryolearn.engine.training.TrainerConfig`:
run folder, resume, devices, DDP, epochs, time limit). The network's fields follow CryoSiam's
``parameters.network`` names; the defaults are a small network that trains on a CPU (the
segmentation backbone's defaults, so a pretrained model fine-tunes with ``segment train``'s
defaults), not CryoSiam's 64-512-filter network (see docs/stages/pretrain3d.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from napari_cryolearn.engine.config import EXPERT, Config
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.training import Device, TrainerConfig
from napari_cryolearn.models.config import BackboneConfig, TransformsConfig
from napari_cryolearn.segmentation.config import IntensityConfig

#: The views' augmentation: flips, 90° turns, rotations up to 15°, zoom 0.9-1.1 (the geometric
#: ones tracked for the correspondence), and one of low-pass, band-pass, noise or nothing.
VIEW_TRANSFORMS = TransformsConfig(flip=True, flip_prob=0.5, rotate90=True, rotate=(0.26, 0.26, 0.26),
                                   rotate_prob=0.5, zoom=(0.9, 1.1), zoom_prob=0.5, filter_prob=0.75,
                                   scale_intensity_factors=0.2)


class Pretrain3DConfig(TrainerConfig):
    """Dense SimSiam pretraining (CryoSiam's DenseSimSiam) of the 3D segmentation backbone on
    tomograms, without labels.

    ``data``: tomograms (MRC; read memory-mapped, a random patch at a time) or patch stores
    (their image patches). Each sample is a ``patch_size`` patch from which two views of
    ``view_size`` are sampled with their own flips, 90° turns, rotation and zoom
    (``transforms``), sharing at least ``view_overlap`` of each axis. Checkpoints are in
    CryoSiam's layout (``_model.encoder.*``, ...): ``segment train --pretrained-model`` and
    CryoSiam's loaders read them.
    """

    data: list[Path] = Field([], description="tomograms (MRC) or patch stores to learn from")
    val_data: list[Path] | None = Field(None, description="tomograms or patch stores whose loss (on fixed views) "
                                        "picks the best checkpoint (default: none; the training loss does)")
    backbone: BackboneConfig = Field(BackboneConfig(), description="the backbone's architecture (the segmentation "
                                     "network's)", json_schema_extra=EXPERT)
    dim: int = Field(256, ge=4, description="width of the global projector and predictor output (CryoSiam "
                     "fork: 256)", json_schema_extra=EXPERT)
    pred_dim: int = Field(64, ge=2, description="hidden width of the global predictor (CryoSiam fork: 64)",
                          json_schema_extra=EXPERT)
    dense_pred_dim: int = Field(16, ge=2, description="hidden width of the dense predictor (CryoSiam fork: 16)",
                                json_schema_extra=EXPERT)
    include_global_loss: bool = Field(False, description="add SimSiam's loss on the pooled (global) vectors "
                                      "(CryoSiam fork: true; off by default: with the few patches a batch holds on a "
                                      "CPU it keeps the dense features from learning membranes, see the docs)",
                                      json_schema_extra=EXPERT)
    weight_dense_loss: float = Field(0.5, ge=0, le=1, description="loss = w * dense + (1 - w) * global (with the "
                                     "global loss and no level losses)", json_schema_extra=EXPERT)
    include_levels_loss: int = Field(0, ge=0, le=3, description="CryoSiam's level losses: the dense loss also on the "
                                     "decoder's maps at 1/2, 1/4 and 1/8 resolution, each with its own projector and "
                                     "predictor; 0 none, n the first n levels (true: all 3)", json_schema_extra=EXPERT)
    dropout_prob: float = Field(0.0, ge=0, le=1, description="probability of CryoSiam's coarse dropout on each view "
                                "(holes of 1-4 voxels filled with 0; CryoSiam fork: 0.5)", json_schema_extra=EXPERT)
    dropout: float = Field(0.5, ge=0.1, le=1, description="coarse dropout: at most this many holes per 4^3 voxels "
                           "of a view (at least 0.1; CryoSiam fork: 0.5)", json_schema_extra=EXPERT)
    patch_size: tuple[int, int, int] = Field((64, 64, 64), description="patch (z, y, x) voxels read from a "
                                             "tomogram; both views are sampled inside it (CryoSiam: 128; twice the "
                                             "view leaves room to shift the views)")
    view_size: tuple[int, int, int] = Field((32, 32, 32), description="each view (z, y, x) voxels, a multiple of "
                                            "8 (CryoSiam: 64)")
    view_overlap: float = Field(0.5, ge=0, le=1, description="least fraction of each axis the two views share "
                                "(before rotation and zoom)", json_schema_extra=EXPERT)
    view_min_shift: float = Field(0.25, ge=0, le=0.5, description="least shift between the two views' centres, as "
                                  "a fraction of the view, per axis (CryoSiam: 0; without a shift the network can "
                                  "match the views by their borders)", json_schema_extra=EXPERT)
    samples_per_epoch: int = Field(64, ge=1, description="random patches per epoch (over all tomograms)")
    val_samples: int = Field(16, ge=1, description="fixed patches of val_data validated each time",
                             json_schema_extra=EXPERT)
    transforms: TransformsConfig = Field(VIEW_TRANSFORMS, description="augmentation of the views (geometric ones "
                                         "tracked)", json_schema_extra=EXPERT)
    intensity: IntensityConfig = Field(IntensityConfig(), description="intensity mapping of every patch (default: "
                                       "none; scale tomograms with prep scale first, as for segmentation)",
                                       json_schema_extra=EXPERT)
    # the harness's fields with this stage's defaults
    batch_size: int = Field(4, ge=2, description="patches per batch (two views each; BatchNorm needs 2)")
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description="optimiser (CryoSiam: sgd with lr "
                                                       "0.5 x batch / 256)", json_schema_extra=EXPERT)
    lr: float = Field(5e-3, gt=0, description="learning rate (the peak of the one-cycle schedule)")
    max_epochs: int | None = Field(10, ge=1, description="epochs to train (CryoSiam fork: 200)")

    @field_validator("include_levels_loss", mode="before")
    @classmethod
    def _levels_flag(cls, value):
        return (3 if value else 0) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _check_views(self) -> Pretrain3DConfig:
        if any(v > p for v, p in zip(self.view_size, self.patch_size)):
            raise ValueError(f"view_size {tuple(self.view_size)} is larger than patch_size {tuple(self.patch_size)}")
        if any(v % 8 for v in self.view_size):
            raise ValueError(f"view_size {tuple(self.view_size)} must be a multiple of 8 along every axis")
        return self

    def network_dict(self) -> dict[str, Any]:
        """CryoSiam's ``parameters.network`` of this network (a plain dict, CryoSiam's key names)."""
        b = self.backbone
        return {"spatial_dims": 3, "in_channels": b.in_channels, "block_type": b.block_type,
                "num_layers": list(b.num_layers), "num_filters": list(b.num_filters), "no_max_pool": b.no_max_pool,
                "fpn_channels": b.fpn_channels, "add_fpn_later_conv": b.add_later_conv, "decoder_type": "fpn",
                "dim": self.dim, "pred_dim": self.pred_dim, "dense_dim": b.dense_dim,
                "dense_pred_dim": self.dense_pred_dim, "include_levels_loss": self.include_levels_loss,
                "include_global_loss": self.include_global_loss, "weight_dense_loss": self.weight_dense_loss}

    def cryosiam_dict(self) -> dict[str, Any]:
        """This run as the CryoSiam pretraining fork's YAML mapping (what the checkpoint holds as
        ``hyper_parameters.config``), with ours under ``cryolearn``."""
        t, i = self.transforms, self.intensity
        return {
            "data_folder": None, "train_files": [str(p) for p in self.data],
            "val_files": [str(p) for p in self.val_data or []], "log_dir": str(self.log_dir),
            "parameters": {
                "nodes": self.nodes, "gpu_devices": self.gpu_devices,
                "data": {"patch_size": list(self.patch_size), "view_size": list(self.view_size),
                         "view_overlap": self.view_overlap, "min": i.min, "max": i.max, "mean": i.mean, "std": i.std},
                "transforms": {"low_pass_sigma_range": _list(t.low_pass_sigma_range),
                               "high_pass_sigma_range": _list(t.high_pass_sigma_range),
                               "high_pass_sigma2_range": _list(t.high_pass_sigma2_range),
                               "noise_sigma_range": _list(t.noise_sigma_range),
                               "combine_transforms": t.combine_transforms, "drop_out_prob": self.dropout_prob,
                               "drop_out": self.dropout},
                "network": self.network_dict(),
            },
            "hyper_parameters": {"batch_size": self.batch_size, "lr": self.lr, "momentum": self.momentum,
                                 "weight_decay": self.weight_decay, "max_epochs": self.max_epochs,
                                 "val_interval": self.val_interval},
            "cryolearn": self.to_dict(),
        }

    @classmethod
    def from_cryosiam(cls, data: dict[str, Any], source: str | os.PathLike | None = None) -> Pretrain3DConfig:
        """Build a config from the CryoSiam pretraining fork's YAML mapping.

        Read: ``data_folder`` with ``train_files`` (names in it; default: every ``.mrc``
        there), or ``patches_folder`` (a patch store of ours), ``val_files``, ``log_dir``,
        ``continue_training``, ``parameters.{nodes, gpu_devices}``, ``parameters.data.{patch_size,
        view_size, view_overlap, min, max, mean, std}``, ``parameters.transforms.{low_pass_sigma_range,
        high_pass_sigma_range, high_pass_sigma2_range, noise_sigma_range, combine_transforms,
        drop_out_prob, drop_out}``, ``parameters.network.{block_type, in_channels, num_layers,
        num_filters, no_max_pool, fpn_channels, add_fpn_later_conv, dim, pred_dim, dense_dim,
        dense_pred_dim, include_levels_loss, include_global_loss, weight_dense_loss}`` and
        ``hyper_parameters.{batch_size, lr, momentum, weight_decay, max_epochs, val_interval}``.
        As the fork: SGD at ``lr · batch_size / 256``; the global loss on unless
        ``include_global_loss`` is false. ``include_levels_loss: true`` is all three levels (the
        fork's loss reads ``True`` as the number 1 and uses only the 1/2 level: write 1 for that);
        ``weight_dense_loss: null`` (the fork adds the two terms) is 0.5 here (the same
        minimum, half the scale). Not used: ``lr_warmup_epochs`` (the one-cycle schedule warms up
        over its first 30 %), ``validation_ratio``.
        """
        params = data.get("parameters") or {}
        net = params.get("network") or {}
        dat = params.get("data") or {}
        tr = params.get("transforms") or {}
        hp = data.get("hyper_parameters") or {}
        if net.get("spatial_dims", 3) != 3:
            raise InputError("only spatial_dims 3 is supported", path=source, field="parameters.network.spatial_dims")
        if net.get("decoder_type", "fpn") != "fpn":
            raise InputError(f"decoder_type {net['decoder_type']!r} is not supported (only 'fpn')", path=source,
                             field="parameters.network.decoder_type")
        files = _cryosiam_files(data, "train_files", source)
        if not files:
            raise InputError("names no tomogram: set data_folder (with train_files) or patches_folder", path=source,
                             field="data_folder")
        backbone = {ours: net[theirs] for ours, theirs in (
            ("block_type", "block_type"), ("in_channels", "in_channels"), ("num_layers", "num_layers"),
            ("num_filters", "num_filters"), ("no_max_pool", "no_max_pool"), ("fpn_channels", "fpn_channels"),
            ("dense_dim", "dense_dim"), ("add_later_conv", "add_fpn_later_conv")) if net.get(theirs) is not None}
        out: dict[str, Any] = {"data": files, "backbone": backbone, "optimizer": "sgd",
                               "log_dir": data.get("log_dir") or "."}
        out.update({k: net[k] for k in ("dim", "pred_dim", "dense_pred_dim", "include_global_loss",
                                        "weight_dense_loss", "include_levels_loss") if net.get(k) is not None})
        out.setdefault("include_global_loss", True)
        if tr.get("drop_out"):  # the fork: no coarse dropout when drop_out is 0 or missing
            out["dropout"], out["dropout_prob"] = tr["drop_out"], tr.get("drop_out_prob") or 0.0
        val = _cryosiam_files(data, "val_files", source) if data.get("val_files") else None
        if val:
            out["val_data"] = val
        for key in ("patch_size", "view_size", "view_overlap"):
            if dat.get(key) is not None:
                value = dat[key]
                out[key] = [value] * 3 if key != "view_overlap" and isinstance(value, (int, float)) else value
        out["intensity"] = {k: dat.get(k) for k in ("min", "max", "mean", "std")}
        transforms = VIEW_TRANSFORMS.to_dict()
        transforms.update({k: tr[k] for k in ("low_pass_sigma_range", "high_pass_sigma_range",
                                              "high_pass_sigma2_range", "noise_sigma_range",
                                              "combine_transforms") if k in tr})
        out["transforms"] = transforms
        for key in ("nodes", "gpu_devices"):
            if params.get(key):
                out[key] = params[key]
        for key in ("batch_size", "lr", "momentum", "weight_decay", "max_epochs", "val_interval"):
            if hp.get(key) is not None:
                out[key] = hp[key]
        if "lr" in out:
            out["lr"] = float(out["lr"]) * float(out.get("batch_size", cls.model_fields["batch_size"].default)) / 256
        if data.get("continue_training") is not None:
            out["continue_training"] = bool(data["continue_training"])
        return cls.from_dict(out, source=source)


def _list(value):
    return None if value is None else list(value)


def _cryosiam_files(data: dict[str, Any], key: str, source) -> list[str]:
    """The files a CryoSiam YAML names under ``key`` (in ``data_folder``), or its patches_folder."""
    folder = data.get("data_folder")
    names = data.get(key)
    if folder:
        if names:
            return [str(Path(folder) / n) for n in names]
        if key == "train_files":
            found = sorted(str(p) for p in Path(folder).glob("*.mrc"))
            val = set(data.get("val_files") or [])
            return [p for p in found if Path(p).name not in val]
        return []
    if key == "train_files" and data.get("patches_folder"):
        return [str(data["patches_folder"])]
    return [str(n) for n in names or []]


class Embed3DConfig(Config):
    """Per-voxel embeddings of a tomogram by a pretrained DenseSimSiam: 3 PCA components (RGB)
    and k-means clusters, window by window.

    Written into ``output_dir``: ``<name>_pca_r.mrc``, ``<name>_pca_g.mrc``, ``<name>_pca_b.mrc``
    (the 3 components, each scaled to [0, 1] between its 1st and 99th percentile; float32),
    ``<name>_clusters.mrc`` (uint8 labels 1..k) and ``<name>_embed3d.json`` (the fit), with the
    tomogram's voxel size and origin. PCA and k-means are fitted on ``fit_voxels`` voxels drawn
    from a first pass; a second pass writes the outputs slab by slab.
    """

    model: Path = Field(description="checkpoint of ssl pretrain3d (or any DenseSimSiam checkpoint in CryoSiam's "
                        "layout)")
    tomogram: Path = Field(description="tomogram MRC")
    output_dir: Path = Field(description="folder for <name>_pca_r.mrc, <name>_pca_g.mrc, <name>_pca_b.mrc, "
                             "<name>_clusters.mrc and <name>_embed3d.json")
    clusters: int = Field(2, ge=2, le=50, description="k-means clusters")
    window: tuple[int, int, int] | None = Field(None, description="sliding window (z, y, x) voxels (default: the "
                                                "training view size)")
    overlap: float = Field(0.25, ge=0, lt=1, description="fraction of a window shared with its neighbour",
                           json_schema_extra=EXPERT)
    fit_voxels: int = Field(20000, ge=100, description="voxels the PCA and k-means are fitted on",
                            json_schema_extra=EXPERT)
    batch_size: int = Field(2, ge=1, description="windows per forward pass")
    seed: int = Field(0, description="seed of the voxel sample and k-means", json_schema_extra=EXPERT)
    device: Device = Field("auto", description="auto (CUDA, else MPS, else CPU), cpu, cuda or mps")
    overwrite: bool = Field(False, description="replace the outputs of an earlier run in output_dir")


__all__ = ["VIEW_TRANSFORMS", "Embed3DConfig", "Pretrain3DConfig"]

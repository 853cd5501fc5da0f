"""Typed configs of segmentation training and prediction, and the reader of CryoSiam's YAML."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from napari_cryolearn.engine.config import EXPERT, Config
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.training import Device, TrainerConfig
from napari_cryolearn.models.config import BackboneConfig, TransformsConfig

#: Label value of unannotated voxels: excluded from every loss term and from Dice.
DEFAULT_IGNORE_INDEX = 255


class NetworkConfig(Config):
    """Heads, losses and fine-tuning switches (CryoSiam ``parameters.network``).

    ``out_channels`` counts classes including background (class 0). Label voxels equal to
    ``ignore_index`` are unannotated: no loss, no Dice. ``unfreeze_backbone`` /
    ``unfreeze_decoder`` only matter when a pretrained model is given (otherwise everything
    trains).
    """

    backbone: BackboneConfig = Field(BackboneConfig(), description="the backbone's architecture", json_schema_extra=EXPERT)
    out_channels: int = Field(2, ge=1, le=255, description='classes, background (class 0) included')
    class_names: list[str] | None = Field(None, description='one name per class (default: class_0, class_1, ...)')
    filters: tuple[int, int] = Field((16, 16), description='channels of the two convolutions of the segmentation head', json_schema_extra=EXPERT)
    kernel_size: int = Field(3, ge=1, description="kernel size of the head's convolutions", json_schema_extra=EXPERT)
    padding: int = Field(1, ge=0, description="padding of the head's convolutions", json_schema_extra=EXPERT)
    distance_prediction: bool = Field(False, description='also predict per-class distance maps (needs distances in the patch stores)')
    use_dice_loss: bool = Field(True, description='add a Dice loss to the cross-entropy', json_schema_extra=EXPERT)
    dice_type: Literal["generalized", "dice"] = Field("dice", description='plain Dice (every class alike) or generalized (classes weighted by 1/volume², CryoSiam\'s)', json_schema_extra=EXPERT)
    distance_weight: float = Field(1.0, ge=0, description='weight of the distance loss', json_schema_extra=EXPERT)
    ignore_index: int = Field(DEFAULT_IGNORE_INDEX, description='label value of unannotated voxels: no loss, no Dice', json_schema_extra=EXPERT)
    unfreeze_backbone: bool = Field(True, description='train the pretrained backbone too (false: frozen)')
    unfreeze_decoder: bool = Field(True, description='train the pretrained decoder too (false: frozen)')
    architecture: Literal["auto", "cryosiam", "unet"] = Field("auto", description="auto: unet for a new run (cryosiam when its backbone, filters, kernel_size or padding are given), the checkpoint's network when fine-tuning or continuing; cryosiam: the CryoSiam-compatible network (its checkpoints, fine-tuning); unet: MONAI's U-Net, several times faster")
    unet_channels: tuple[int, ...] = Field((16, 32, 64, 128), min_length=2, description="unet: channels per level, finest first (a stride-2 step between levels)", json_schema_extra=EXPERT)
    unet_res_units: int = Field(1, ge=0, description="unet: residual units per block (0: plain convolutions)", json_schema_extra=EXPERT)
    class_weights: list[float] | Literal["auto"] | None = Field(None, description="one weight per class, background first, for the cross-entropy and the Dice (raise a rare class's); auto: from the training labels, sqrt(voxels of the largest foreground class / voxels of the class), 1 to 10, background 1; empty: all 1")

    @model_validator(mode="after")
    def _check(self) -> NetworkConfig:
        if self.class_names is not None and len(self.class_names) != self.out_channels:
            raise ValueError(f"class_names has {len(self.class_names)} names, out_channels is {self.out_channels}")
        if 0 <= self.ignore_index < self.out_channels:
            raise ValueError(f"ignore_index {self.ignore_index} is a class (out_channels {self.out_channels})")
        return self

    @model_validator(mode="after")
    def _check_class_weights(self) -> NetworkConfig:
        w = self.class_weights
        if w == "auto" and self.out_channels < 2:
            raise ValueError("class_weights needs out_channels >= 2 (one output channel is a sigmoid)")
        if w is not None and w != "auto":
            if self.out_channels < 2:
                raise ValueError("class_weights needs out_channels >= 2 (one output channel is a sigmoid)")
            if len(w) != self.out_channels:
                raise ValueError(f"class_weights has {len(w)} weights, out_channels is {self.out_channels}")
            if min(w) < 0 or not sum(w) > 0:
                raise ValueError(f"class_weights must be >= 0 and not all 0, got {w}")
        return self

    def resolved_class_weights(self, counts) -> list[float] | None:
        """``class_weights`` with ``auto`` worked out from ``counts``, the labelled voxels per class:
        background 1; a foreground class ``sqrt(largest foreground count / its count)``, kept in
        [1, 10] (a class with no voxel: 1).

        >>> NetworkConfig(out_channels=4, class_weights="auto").resolved_class_weights([10**6, 40000, 2500, 10000])
        [1.0, 1.0, 4.0, 2.0]
        """
        if self.class_weights != "auto":
            return self.class_weights
        fg = [float(c) for c in list(counts)[1:self.out_channels]]
        top = max(fg, default=0.0)
        return [1.0] + [min(10.0, max(1.0, (top / c) ** 0.5)) if c > 0 else 1.0 for c in fg]

    def names(self) -> list[str]:
        """One name per class (``class_names`` or ``class_0``, ``class_1``, ...)."""
        return list(self.class_names) if self.class_names else [f"class_{i}" for i in range(self.out_channels)]


class IntensityConfig(Config):
    """Intensity mapping applied to every patch and prediction window (CryoSiam ``data``).

    When ``min``/``max`` are set: ``clip((x - min) / (max - min), 0, 1)``; then
    ``(x - mean) / std`` when those are set. All ``None`` (default): inputs are used as they
    are (the prep stages already scaled them).
    """

    min: float | None = Field(None, description='with max: clip((x - min) / (max - min), 0, 1) first; empty: no clipping')
    max: float | None = Field(None, description='upper end of the min/max mapping')
    mean: float | None = Field(None, description='with std: (x - mean) / std after the min/max mapping; empty: none')
    std: float | None = Field(None, description='standard deviation of the mean/std normalisation')

    def apply(self, x):
        """Map a numpy array or torch tensor (float) as described above."""
        if self.min is not None and self.max is not None:
            x = (x - self.min) / (self.max - self.min)
            x = x.clip(0, 1)
        if self.mean is not None:
            x = x - self.mean
        if self.std is not None:
            x = x / self.std
        return x


#: Augmentation of the CPU preset: flips, 90° turns and noise (cheap), no free rotation or zoom
#: (their resampling costs about half a training step on a CPU).
CPU_TRANSFORMS = {"flip": True, "rotate90": True, "rotate": None, "zoom": None, "low_pass_sigma_range": None,
                  "high_pass_sigma_range": None, "noise_sigma_range": (0.0, 0.3)}

#: What ``preset`` sets, per device kind, in a run that leaves these fields unset (see
#: :meth:`SegmentationTrainConfig.with_preset`; a dotted key is a nested field). ``patch_size``
#: is at most the stored patches'.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"batch_size": 4, "patch_size": (32, 32, 32), "lr": 0.01, "foreground_probability": 0.67,
            "network.class_weights": "auto", "transforms": CPU_TRANSFORMS},
    "gpu": {"batch_size": 4, "patch_size": (64, 64, 64), "lr": 0.01, "foreground_probability": 0.67,
            "network.class_weights": "auto"},
}


def preset_words(values: dict[str, Any]) -> str:
    """A preset's values for a person: ``batch_size 4, ..., transforms flips/turns/noise``."""
    return ", ".join(f"{k} {v if k != 'transforms' else 'flips/turns/noise'}" for k, v in values.items())


class SegmentationTrainConfig(TrainerConfig):
    """Everything a segmentation training run needs; saved as ``log_dir/config.yaml``.

    Inputs are patch stores (``prep`` stage output). Validation: ``val_stores`` when given;
    else, with several stores, a ``validation_ratio`` of the stores (at least one); with one
    store, a ``validation_ratio`` of its patches. Checkpoints go to ``log_dir/model/``:
    ``model_best.ckpt`` (highest mean foreground validation Dice) and ``last.ckpt``. A
    ``log_dir`` that already holds a run is refused unless ``continue_training`` (resume it)
    or ``overwrite`` (replace it) is set. The fields every training stage shares (run folder,
    devices, optimiser, schedule, epochs, ...) are :class:`~napari_cryolearn.engine.training.TrainerConfig`'s.
    """

    patch_stores: list[Path] = Field([], description="patch stores to train on (or CryoSiam patch folders)")
    val_stores: list[Path] | None = Field(None, description="patch stores to validate on (default: a "
                                          "validation_ratio of the stores, or of the patches of one store)")
    validation_ratio: float = Field(0.1, ge=0, lt=1, description="fraction of stores (or patches) kept for "
                                    "validation when val_stores is not given", json_schema_extra=EXPERT)
    network: NetworkConfig = NetworkConfig()
    transforms: TransformsConfig = TransformsConfig()
    intensity: IntensityConfig = Field(IntensityConfig(), description="intensity mapping of every patch (default: none, "
                                       "the prep stages scaled the tomograms)", json_schema_extra=EXPERT)
    patch_size: tuple[int, int, int] | None = Field(None, description="training patch (z, y, x), cropped from "
                                                    "the stored patches (default: the stored patch shape)")
    foreground_probability: float = Field(0.0, ge=0, le=1, description="chance that a training patch is drawn for a foreground class (each class alike) and cropped around one of its voxels (nnU-Net's oversampling); 0: every patch and place alike")
    preset: Literal["auto", "cpu", "gpu", "none"] = Field("auto", description=f"settings for fields left unset, by device (auto: cpu or gpu as training runs); cpu: {preset_words(PRESETS['cpu'])}; gpu: {preset_words(PRESETS['gpu'])}; none: the fields' defaults")

    def with_preset(self, accelerator: str, stored_patch: tuple[int, ...] | None = None, multiple: int = 1
                    ) -> tuple[SegmentationTrainConfig, dict[str, Any]]:
        """This config with its preset's values in the fields the user left unset, and those values.

        ``preset: auto`` takes ``cpu`` when ``accelerator`` is ``"cpu"``, ``gpu`` otherwise. A
        field counts as set when it was given (a flag, a YAML key, a keyword); ``transforms`` as
        a whole when any of its fields was. ``patch_size`` is not made larger than
        ``stored_patch`` (and is a multiple of ``multiple``, the network's stride, where the
        stored patch allows); ``lr`` is kept when fine-tuning a pretrained model. The returned
        config says which preset it took, so a run folder's ``config.yaml`` repeats the run.
        """
        kind = self.preset if self.preset != "auto" else ("cpu" if accelerator == "cpu" else "gpu")
        if kind == "none":
            return self, {}
        applied: dict[str, Any] = {}
        for key, value in PRESETS[kind].items():
            owner, _, name = key.rpartition(".")
            if name in (getattr(self, owner) if owner else self).model_fields_set or (
                    key == "lr" and self.pretrained_model is not None):
                continue
            if key == "patch_size" and stored_patch is not None:
                value = tuple(min(int(v), int(s)) for v, s in zip(value, stored_patch))
                value = tuple(v - v % multiple if v >= multiple else v for v in value)
            applied[key] = value
        data = self.to_dict()
        for key, value in applied.items():
            owner, _, name = key.rpartition(".")
            (data[owner] if owner else data)[name] = dict(value) if isinstance(value, dict) else value
        data["preset"] = kind
        return type(self).from_dict(data), applied

    @classmethod
    def from_cryosiam(
        cls, data: dict[str, Any], source: str | os.PathLike | None = None
    ) -> SegmentationTrainConfig:
        """Build a config from a CryoSiam ``semantic_train`` YAML mapping.

        Read: ``patches_folder`` (CryoSiam's patch folder, imported into stores when training
        starts, or one of our stores), ``val_files`` (tomogram names choosing validation stores),
        ``validation_ratio``, ``log_dir``, ``pretrained_model``, ``continue_training``,
        ``parameters.{nodes, gpu_devices}``, ``parameters.data.{patch_size, min, max, mean,
        std}``, ``parameters.network.*``, ``parameters.transforms.*`` and
        ``hyper_parameters.{batch_size, optimizer, lr, momentum, weight_decay, max_epochs,
        val_interval}``. Not used: ``elastic`` and ``use_noisy_input`` (CryoSiam deforms the
        image without its labels), ``cache_rate``, ``patch_overlap``, the preprocessing keys.
        """
        params = data.get("parameters") or {}
        net = params.get("network") or {}
        tr = params.get("transforms") or {}
        dat = params.get("data") or {}
        hp = data.get("hyper_parameters") or {}
        if net.get("spatial_dims", 3) != 3:
            raise InputError("only spatial_dims 3 is supported", path=source, field="parameters.network.spatial_dims")
        if not data.get("patches_folder"):
            raise InputError("missing (the patch store to train on)", path=source, field="patches_folder")
        backbone = {}
        if "in_channels" in net:
            backbone["in_channels"] = net["in_channels"]
        if "dense_dim" in net:
            backbone["dense_dim"] = net["dense_dim"]
        network = {k: net[k] for k in (
            "out_channels", "filters", "kernel_size", "padding", "distance_prediction", "use_dice_loss",
            "unfreeze_decoder", "unfreeze_backbone") if k in net}
        network["backbone"] = backbone
        network["architecture"] = "cryosiam"  # their network: its filters and dense_dim apply
        network.setdefault("dice_type", "generalized")  # and their loss
        transforms = {k: tr[k] for k in (
            "low_pass_sigma_range", "high_pass_sigma_range", "high_pass_sigma2_range", "noise_sigma_range",
            "combine_transforms", "scale_intensity_factors", "zoom", "rotate", "flip") if k in tr}
        if transforms.get("flip") is None and "flip" in transforms:
            transforms["flip"] = False
        out: dict[str, Any] = {
            "preset": "none",  # their hyper-parameters, not our device presets
            "patch_stores": [data["patches_folder"]],
            "log_dir": data.get("log_dir") or ".",
            "network": network,
            "transforms": transforms,
            "intensity": {k: dat.get(k) for k in ("min", "max", "mean", "std")},
        }
        for key in ("pretrained_model", "validation_ratio"):
            if data.get(key) is not None:
                out[key] = data[key]
        if data.get("continue_training") is not None:
            out["continue_training"] = bool(data["continue_training"])
        if data.get("val_files"):
            out["val_stores"] = list(data["val_files"])
        if dat.get("patch_size"):
            out["patch_size"] = dat["patch_size"]
        if params.get("nodes"):
            out["nodes"] = params["nodes"]
        if params.get("gpu_devices"):
            out["gpu_devices"] = params["gpu_devices"]
        for key in ("batch_size", "optimizer", "lr", "momentum", "weight_decay", "max_epochs", "val_interval"):
            if hp.get(key) is not None:
                out[key] = hp[key]
        return cls.from_dict(out, source=source)


class SegmentationPredictConfig(Config):
    """Prediction of one tomogram with a trained checkpoint.

    ``output`` receives the label volume (uint8 MRC, the input's voxel size and origin).
    ``probabilities`` / ``distances`` (optional): a ``.npy`` path gets one (C, Z, Y, X)
    float32 array; an ``.mrc`` path gets one file per class, ``<stem>_<class name>.mrc``.
    Distances are in voxels, clipped to ±5 as in training. ``window`` defaults to the
    training patch size; ``overlap`` is the fraction shared by neighbouring windows;
    ``margin`` voxels at each window face inside the volume get no weight.
    """

    model: Path = Field(description='trained checkpoint (.ckpt)')
    input: Path = Field(description='tomogram MRC')
    output: Path = Field(description="label MRC to write (uint8, the input's voxel size and origin)")
    probabilities: Path | None = Field(None, description='class probabilities: .npy (C, Z, Y, X) or .mrc (one file per class)')
    distances: Path | None = Field(None, description='predicted distance maps, .npy or .mrc per class (a model with a distance head)')
    window: tuple[int, int, int] | None = Field(None, description='sliding window (z, y, x) voxels (default: the training patch size)')
    overlap: float = Field(0.5, ge=0, lt=1, description='fraction of a window shared with its neighbour', json_schema_extra=EXPERT)
    blend: Literal["gaussian", "constant"] = Field("gaussian", description='weighting of overlapping windows', json_schema_extra=EXPERT)
    margin: int = Field(0, ge=0, description='voxels at each window face (inside the volume) given no weight', json_schema_extra=EXPERT)
    batch_size: int = Field(2, ge=1, description='windows per forward pass')
    tta_flips: bool = Field(False, description='average over flipped copies (test-time augmentation, 4x slower)')
    threshold: float | None = Field(None, ge=0, le=1, description='softmax probability below which a voxel is labelled 0 (default: argmax; one class: sigmoid cut)')
    device: Device = Field("auto", description='where to run: auto, cpu, cuda or mps')
    overwrite: bool = Field(False, description="replace existing outputs")

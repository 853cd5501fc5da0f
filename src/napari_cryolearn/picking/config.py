"""The picker's configs: its network, its training run and its prediction.

Training runs on the engine's harness (:class:`~napari_cryolearn.engine.training.TrainerConfig`:
run folder, resume, devices, epochs, time limit), so its flags are those of every training
stage; the network's fields travel in the checkpoint (``hyper_parameters.config``), and
prediction builds the same network from them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from napari_cryolearn.engine.config import EXPERT, Config
from napari_cryolearn.engine.training import Device, TrainerConfig

Coordinates = Literal["pixel", "angstrom"]


def default_cache_dir() -> Path:
    """Where operators are cached when no ``cache_dir`` is given:
    ``$XDG_CACHE_HOME/napari-cryolearn/operators`` (else ``~/.cache/...``). Entries are keyed by
    the partition's content, so training and prediction share them."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "napari-cryolearn" / "operators"


class PickerNetworkConfig(Config):
    """The DiffusionNet picker (MemBrain-pick's network and its CLI's widths)."""

    profile_window: int = Field(16, ge=4, description="profile samples the network sees (a window of the 20 "
                                "stored: random in training, every one at prediction)")
    conv_width: int = Field(16, ge=1, description="channels of the convolutions along the profile",
                            json_schema_extra=EXPERT)
    c_width: int = Field(16, ge=1, description="features per vertex in the DiffusionNet blocks", json_schema_extra=EXPERT)
    n_blocks: int = Field(4, ge=0, description="DiffusionNet blocks", json_schema_extra=EXPERT)
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout in the blocks' MLPs", json_schema_extra=EXPERT)
    eigenpairs: int = Field(128, ge=1, description="Laplacian eigenpairs per partition (spectral diffusion)",
                            json_schema_extra=EXPERT)
    partition_size: int = Field(2000, ge=50, description="vertices per partition of a mesh", json_schema_extra=EXPERT)


class PickTrainConfig(TrainerConfig):
    """Training of the membrane-protein picker on mesh containers and their protein positions.

    ``data`` is MemBrain-pick's layout: ``data/train/`` and ``data/val/``, each holding
    ``<name>.h5`` mesh containers with ``<name>.star`` protein positions (or one STAR per
    tomogram, ``<tomogram stem>.star``, whose positions go to the membrane they lie on). A
    folder without ``train/`` is all training data (no validation).
    """

    data: Path = Field(description="folder of mesh containers and STAR files: train/ and val/ (MemBrain-pick's "
                       "layout), or one folder to train on")
    network: PickerNetworkConfig = Field(default_factory=PickerNetworkConfig, description="the picker network")
    coordinates: Coordinates = Field("pixel", description="units of the STAR files' rlnCoordinateX/Y/Z: pixel (voxels "
                                     "of the tomogram, MemBrain-pick's training files) or angstrom")
    position_classes: list[int] | None = Field(None, description="keep only positions of these rlnClassNumber "
                                               "values (default: all)")
    clip: float = Field(150.0, gt=0, description="distances to a protein are learnt up to this, Å (MemBrain-pick: 150)",
                        json_schema_extra=EXPERT)
    max_distance: float = Field(100.0, gt=0, description="a position farther than this from every membrane (Å) is "
                                "reported and left out")
    pixel_size: float | None = Field(None, gt=0, description="Å per voxel of containers that do not record it "
                                     "(MemBrain-pick's own; its default is 10)")
    augment: bool = Field(True, description="random intensity augmentations of the training profiles",
                          json_schema_extra=EXPERT)
    keep_best: int = Field(3, ge=1, description="checkpoints kept of the best validations (model/top-*.ckpt; "
                           "model_best.ckpt is the best)", json_schema_extra=EXPERT)
    cache_dir: Path | None = Field(None, description="folder of cached operators (default: the user's cache, "
                                   "~/.cache/napari-cryolearn/operators)", json_schema_extra=EXPERT)
    # the harness's fields with the picker's defaults (MemBrain-pick: Adam 5e-3, 200 epochs)
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adam", description="optimiser", json_schema_extra=EXPERT)
    lr: float = Field(5e-3, gt=0, description="learning rate (the peak of the one-cycle schedule)")
    batch_size: int = Field(1, ge=1, description="partitions per optimiser step (gradients accumulated; "
                            "MemBrain-pick: 16)")
    max_epochs: int | None = Field(200, ge=1, description="epochs to train (one epoch visits every partition)")
    weight_decay: float = Field(0.0, ge=0, description="weight decay", json_schema_extra=EXPERT)


class PickPredictConfig(Config):
    """Prediction of per-vertex scores and picks on mesh containers (see :mod:`.predict_job`)."""

    model: Path = Field(description="checkpoint of a trained picker (model/model_best.ckpt of its run)")
    meshes: list[Path] = Field(min_length=1, description="mesh containers (.h5) to pick on, or folders of them")
    output_dir: Path = Field(description="folder for <mesh>.h5 (scores, picks) and <mesh>_picks.star")
    bandwidth: float = Field(50.0, gt=0, description="mean-shift kernel radius, Å (about a protein's width)")
    score_threshold: float = Field(4.0, gt=0, description="vertices predicted closer than this to a protein seed "
                                   "the picks, in MemBrain-pick's unit of 15 Å (4 = 60 Å)")
    weighting: Literal["threshold", "membrain"] = Field(
        "threshold", description="mean-shift weight of a vertex: its margin under score_threshold, or MemBrain-pick's "
        "10 − score", json_schema_extra=EXPERT)
    windows: Literal["mean", "min"] = Field(
        "mean", description="how the profile windows' predictions are combined per vertex: their mean, or "
        "MemBrain-pick's minimum", json_schema_extra=EXPERT)
    min_samples: int = Field(5, ge=1, description="converged seeds a pick needs", json_schema_extra=EXPERT)
    angstrom: bool = Field(False, description="write STAR coordinates in Å (MemBrain-pick's convention) instead of "
                           "voxels of the tomogram")
    pixel_size: float | None = Field(None, gt=0, description="Å per voxel of containers that do not record it")
    cache_dir: Path | None = Field(None, description="folder of cached operators (default: the user's cache)",
                                   json_schema_extra=EXPERT)
    device: Device = Field("auto", description="auto (CUDA, else MPS, else CPU), cpu, cuda or mps")
    seed: int = Field(0, description="seed of the random in-plane angles (rlnAnglePsi)", json_schema_extra=EXPERT)
    overwrite: bool = Field(False, description="replace existing outputs")

"""The configs of the 4D-STEM autoencoder: training on a scan, and applying a trained model.

Training runs on the engine's harness (:class:`~napari_cryolearn.engine.training.TrainerConfig`:
run folder, resume, fine-tuning, devices, epochs, time limit); the fields here and the
scan's :class:`~napari_cryolearn.io.stem4d.Normalisation` travel in the checkpoint
(``hyper_parameters``), so applying a model needs nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from napari_cryolearn.engine.config import EXPERT, Config
from napari_cryolearn.engine.training import Device, TrainerConfig


class AETrainConfig(TrainerConfig):
    """Train the regularised 4D-STEM autoencoder (after m3_learning's STEM_AE) on a scan.

    ``data``: a 4D-STEM scan (Sy, Sx, Ky, Kx) or a stack of patterns (N, Ky, Kx): ``.npy``,
    ``.h5``/``.hdf5``, ``.mrc``, or the reference's ``train_tensor.pt``. Patterns are cropped,
    binned, then normalised as the reference does (log, global min → 0, max → 1).
    """

    data: Path = Field(description="4D-STEM scan (Sy, Sx, Ky, Kx) or stack of patterns (N, Ky, Kx): .npy, .h5/.hdf5, "
                       ".mrc, or the reference's train_tensor.pt")
    dataset: str | None = Field(None, description="HDF5 dataset path (default: the only, else the largest, 3D or 4D "
                                "dataset)")
    scan_shape: tuple[int, int] | None = Field(None, description="scan positions (Sy, Sx) of a stack of patterns, "
                                               "e.g. a train_tensor.pt in row-major scan order")
    latent: int = Field(32, ge=1, description="latent channels (the size of each pattern's embedding)")
    width: int = Field(128, ge=4, description="channels of the residual blocks (the reference: 128; fewer train "
                       "much faster on a CPU)", json_schema_extra=EXPERT)
    lambda_act: float = Field(1e-4, ge=0, description="weight of the activity (L1 sparsity) term of the latent")
    lambda_sim: float = Field(5e-5, ge=0, description="weight of the similarity term (cosine similarity between "
                              "the latents of different patterns, penalised)")
    lambda_div: float = Field(2e-4, ge=0, description="weight of the divergence term (spread between latent "
                              "channels, rewarded: subtracted from the loss)")
    divergence: Literal["scale_free", "original"] = Field(
        "scale_free", description="divergence term: scale_free (each latent divided by its L1 norm first; bounded) "
        "or original (m3_learning's; with the documented weights the loss is unbounded below and the latents "
        "collapse)", json_schema_extra=EXPERT)
    binning: int = Field(1, ge=1, description="bin the detector by this factor (mean over factor × factor "
                         "pixels) before normalising")
    crop: tuple[int, int, int, int] | None = Field(None, description="detector box (y0, y1, x0, x1) in pixels kept "
                                                   "before binning (default: the whole detector)")
    realtime_metrics: bool = Field(False, description="log validation PSNR and SSIM every epoch (slower)")
    validation_ratio: float = Field(0.1, ge=0, lt=1, description="fraction of the patterns held out (seeded) to "
                                    "validate; their loss picks the best checkpoint")
    # the harness's fields with this stage's defaults
    batch_size: int = Field(256, ge=2, description="patterns per batch (the reference's 2048 is for a GPU)")
    lr: float = Field(1e-3, gt=0, description="learning rate (the reference: 1e-3 with Adam)")
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adam", description="optimiser (the reference: Adam)",
                                                       json_schema_extra=EXPERT)
    weight_decay: float = Field(0.0, ge=0, description="weight decay", json_schema_extra=EXPERT)
    scheduler: Literal["onecycle", "none"] = Field("none", description="learning-rate schedule over the run (the "
                                                   "reference: a constant rate)", json_schema_extra=EXPERT)
    max_epochs: int | None = Field(30, ge=1, description="epochs to train")


class AEApplyConfig(Config):
    """Apply a trained 4D-STEM autoencoder to a scan: latent maps, reconstruction and metrics."""

    model: Path = Field(description="checkpoint of ae train (model/model_best.ckpt)")
    data: Path = Field(description="4D-STEM scan (Sy, Sx, Ky, Kx): .npy, .h5/.hdf5, .mrc, or a train_tensor.pt "
                       "with scan_shape")
    dataset: str | None = Field(None, description="HDF5 dataset path (default: the only, else the largest, 3D or "
                                "4D dataset)")
    scan_shape: tuple[int, int] | None = Field(None, description="scan positions (Sy, Sx) of a stack of patterns")
    output_dir: Path = Field(description="folder for latent.npy, reconstruction.npy, metrics.json and "
                             "latent_maps.mrc")
    step: float | None = Field(None, gt=0, description="nm per scan step, when the file does not say (the voxel "
                               "size of latent_maps.mrc)")
    clusters: int | None = Field(None, ge=0, description="also write cluster_labels.mrc: a k-means of the "
                                 "unit-length latents into this many clusters, numbered from 1 (0: the number of "
                                 "2-10 with the best silhouette score)")
    batch_size: int = Field(256, ge=1, description="patterns per forward pass")
    device: Device = Field("auto", description="auto (CUDA, else MPS, else CPU), cpu, cuda or mps")
    overwrite: bool = Field(False, description="replace the outputs of an earlier run in output_dir")

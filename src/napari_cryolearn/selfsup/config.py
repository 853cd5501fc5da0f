"""The configs of label-free training on micrographs and of their embeddings.

Training runs on the engine's harness (:class:`~napari_cryolearn.engine.training.TrainerConfig`:
run folder, resume, devices, epochs, time limit), so its flags are those of every training
stage; the method's and the network's fields travel in the checkpoint
(``hyper_parameters.config``), and embedding builds the same network from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from napari_cryolearn.engine.config import EXPERT, Config
from napari_cryolearn.engine.training import Device, TrainerConfig

Method = Literal["simsiam", "simclr"]
Backbone = Literal["resnet18", "resnet34", "resnet50"]


class SSLTrainConfig(TrainerConfig):
    """Self-supervised training of an image encoder on micrographs (SimSiam or SimCLR).

    ``data``: a folder of micrographs (MRC, MRCS stacks, TIFF, PNG, JPEG, WEBP), a text file
    listing them, or prismpyp's metadata folder. ``fft`` trains on each micrograph's centred
    log power spectrum (computed here) with prismpyp's Fourier-space augmentations; otherwise on
    the micrograph with its real-space recipe.
    """

    data: Path = Field(description="folder of micrographs (MRC, MRCS, TIFF, PNG, JPEG, WEBP), a text file "
                       "listing them, or prismpyp's metadata folder")
    method: Method = Field("simsiam", description="simsiam (prismpyp's) or simclr")
    fft: bool = Field(False, description="learn from the micrographs' power spectra (Fourier space) instead of "
                      "the images")
    backbone: Backbone = Field("resnet18", description="ResNet encoder")
    image_size: int = Field(128, ge=32, description="pixels of the (square) network input; micrographs are "
                            "binned to it (prismpyp: 224)")
    dim: int = Field(512, ge=8, description="embedding size (SimSiam's reducer output)", json_schema_extra=EXPERT)
    pred_dim: int = Field(256, ge=8, description="SimSiam predictor's hidden size", json_schema_extra=EXPERT)
    projection_dim: int = Field(128, ge=8, description="SimCLR projection size", json_schema_extra=EXPERT)
    temperature: float = Field(0.5, gt=0, description="SimCLR's NT-Xent temperature", json_schema_extra=EXPERT)
    freeze_backbone: bool = Field(False, description="train only the heads on a pretrained backbone (prismpyp "
                                  "freezes its ImageNet ResNet)")
    validation_ratio: float = Field(0.1, ge=0, lt=1, description="fraction of the micrographs held out to "
                                    "validate (the loss on them picks the best checkpoint)")
    pixel_size: float | None = Field(None, gt=0, description="Å per pixel of the micrographs, when their files "
                                     "do not say (the Fourier high-pass needs it)", json_schema_extra=EXPERT)
    # the harness's fields with this stage's defaults
    batch_size: int = Field(32, ge=2, description="micrographs per batch (two views each)")
    lr: float | None = Field(None, gt=0, description="learning rate (default: SimSiam 0.05 × batch / 256 with SGD, "
                             "SimCLR 3e-4 with AdamW)")
    optimizer: Literal["auto", "adamw", "adam", "sgd"] = Field(
        "auto", description="optimiser (auto: SGD for SimSiam, AdamW for SimCLR)", json_schema_extra=EXPERT)
    weight_decay: float = Field(1e-4, ge=0, description="weight decay", json_schema_extra=EXPERT)
    scheduler: Literal["cosine", "onecycle", "plateau", "none"] = Field(
        "cosine", description="learning-rate schedule over the run (SimSiam's predictor keeps a fixed rate); "
        "plateau halves it after 5 epochs without a lower validation loss (the SimCLR trainer's)",
        json_schema_extra=EXPERT)
    max_epochs: int | None = Field(100, ge=1, description="epochs to train")

    def resolved_lr(self) -> float:
        """``lr``, else the method's default (SimSiam: 0.05 × batch / 256)."""
        if self.lr is not None:
            return float(self.lr)
        return 0.05 * self.batch_size / 256 if self.method == "simsiam" else 3e-4

    def resolved_optimizer(self) -> str:
        """``optimizer``, else SGD for SimSiam and AdamW for SimCLR."""
        if self.optimizer != "auto":
            return self.optimizer
        return "sgd" if self.method == "simsiam" else "adamw"


class EmbedConfig(Config):
    """Embeddings of micrographs by a trained encoder, their 2D map and clusters."""

    model: Path = Field(description="checkpoint of ssl train (model/model_best.ckpt or checkpoints/*.pth.tar)")
    data: Path = Field(description="folder of micrographs, a text file listing them, or prismpyp's metadata folder")
    output: Path = Field(description="table of embeddings: .csv or .parquet (file, index, emb_*, x, y, cluster)")
    map: Literal["umap", "pca", "tsne"] = Field("umap", description="2D map of the embeddings")
    clusters: int | None = Field(None, ge=2, description="k-means clusters (default: the k of 2–10 with the best "
                                 "silhouette score)")
    batch_size: int = Field(32, ge=1, description="micrographs per forward pass")
    pixel_size: float | None = Field(None, gt=0, description="Å per pixel when the files do not say",
                                     json_schema_extra=EXPERT)
    device: Device = Field("auto", description="auto (CUDA, else MPS, else CPU), cpu, cuda or mps")
    seed: int = Field(0, description="seed of the map and of k-means", json_schema_extra=EXPERT)
    overwrite: bool = Field(False, description="replace an existing table")


class IntersectConfig(Config):
    """Micrographs whose clusters are good in both the real-space and the Fourier-space tables."""

    real: Path = Field(description="embedding table of the micrographs (ssl embed)")
    fft: Path = Field(description="embedding table of their power spectra (ssl embed, a --fft model)")
    good_real: list[int] = Field(min_length=1, description="clusters of the real-space table to keep")
    good_fft: list[int] = Field(min_length=1, description="clusters of the Fourier-space table to keep")
    output: Path = Field(description="text file of the micrographs kept, one path per line")
    overwrite: bool = Field(False, description="replace an existing file")

"""The datasets of label-free training and of embedding, from a config and micrograph refs.

Training: two augmented views of each micrograph: prismpyp's real-space recipe (SimSiam) or
the SimCLR trainer's (SimCLR), or, with ``fft``, prismpyp's Fourier-space recipe on the power
spectrum for either method. Embedding: the micrograph (or spectrum) prepared the same way,
unaugmented.
"""

from __future__ import annotations

from collections.abc import Sequence

from napari_cryolearn.selfsup.config import SSLTrainConfig

__all__ = ["embedding_dataset", "training_datasets", "two_view_transform"]


def _pixel_size(dataset, given: float | None) -> float:
    if given is not None:
        return float(given)
    px = dataset.item_pixel_size(0) if len(dataset) else None
    return float(px) if px else 1.0


def two_view_transform(config: SSLTrainConfig, pixel_size: float):
    """The two-view augmentation of a config (see the module docstring)."""
    from napari_cryolearn.selfsup.augment import TwoViews, fourier_recipe, real_space_recipe, simclr_recipe

    size = config.image_size
    if config.fft:
        return TwoViews(fourier_recipe(size, pixel_size))
    return TwoViews(real_space_recipe(size) if config.method == "simsiam" else simclr_recipe(size))


def training_datasets(config: SSLTrainConfig, train_refs: Sequence, val_refs: Sequence):
    """``(train, val)`` datasets of two views per micrograph (``val`` None without refs)."""
    from napari_cryolearn.selfsup.images import MicrographDataset

    train = MicrographDataset(train_refs, size=config.image_size, fourier=config.fft, pixel_size=config.pixel_size)
    transform = two_view_transform(config, _pixel_size(train, config.pixel_size))
    train.transform = transform
    val = None
    if len(val_refs):
        val = MicrographDataset(val_refs, size=config.image_size, fourier=config.fft, transform=transform,
                                pixel_size=config.pixel_size)
    return train, val


def embedding_dataset(config: SSLTrainConfig, refs: Sequence, *, pixel_size: float | None = None):
    """The micrographs (or their spectra, for a ``fft`` model) as the model saw them, unaugmented."""
    from napari_cryolearn.selfsup.images import MicrographDataset

    return MicrographDataset(refs, size=config.image_size, fourier=config.fft,
                             pixel_size=pixel_size if pixel_size is not None else config.pixel_size)

"""Sampling the classes that matter (#18): foreground oversampling of training patches."""

import numpy as np
import pytest
import torch

from napari_cryolearn.models.augment import build_train_transform
from napari_cryolearn.segmentation.data import (
    ArrayPatchSource,
    EpochSampler,
    ResumableLoader,
    SegmentationDataset,
    check_sources,
    collate,
)
from napari_cryolearn.segmentation.train_job import train_job

from .conftest import NO_AUGMENT


def _rate(sampler, flags, epochs):
    hits = total = 0
    for e in range(epochs):
        sampler.set_epoch(e)
        items = list(sampler)
        assert len(items) == len(sampler) == sampler.n
        hits += sum(bool(flags[k[0]]) for k in items)
        total += len(items)
    return hits / total


@pytest.mark.parametrize("p", [0.25, 0.5, 0.9])
def test_sampled_patches_hold_foreground_at_the_set_rate(p):
    n = 200
    flags = np.zeros(n, bool)
    flags[np.random.default_rng(1).permutation(n)[:20]] = True  # 10% of the patches hold foreground
    sampler = EpochSampler(n, True, seed=4, foreground=flags, foreground_probability=p)
    expected = p + (1 - p) * 0.1  # forced places, plus the foreground the other places draw anyway
    assert _rate(sampler, flags, epochs=20) == pytest.approx(expected, abs=0.03)  # 4000 draws: sd < 0.008
    # the same (seed, epoch) draws the same (a resumed run sees the same patches)
    again = EpochSampler(n, True, seed=4, foreground=flags, foreground_probability=p)
    sampler.set_epoch(3)
    again.set_epoch(3)
    assert list(sampler) == list(again)


def test_probability_zero_is_the_plain_shuffle_and_one_is_only_foreground():
    n = 50
    flags = np.arange(n) % 10 == 0
    plain = EpochSampler(n, True, seed=2)
    zero = EpochSampler(n, True, seed=2, foreground=flags, foreground_probability=0.0)
    for e in range(3):
        plain.set_epoch(e)
        zero.set_epoch(e)
        assert list(plain) == list(zero) and all(len(k) == 2 for k in zero)
    assert _rate(EpochSampler(n, True, seed=2, foreground=flags, foreground_probability=1.0), flags, 3) == 1.0
    # no foreground patch at all: the plain order
    none = EpochSampler(n, True, seed=2, foreground=np.zeros(n, bool), foreground_probability=0.7)
    plain.set_epoch(0)
    assert list(none) == list(plain)


def test_loader_batches_hit_foreground_at_the_set_rate_and_repeats_are_augmented_differently():
    # 16 patches of 8^3, one of which holds a particle (class 1)
    labels = np.zeros((8, 32, 32), np.uint8)
    labels[2:6, 2:6, 2:6] = 1
    image = np.random.default_rng(0).normal(size=labels.shape).astype(np.float32)
    src = ArrayPatchSource([image], [labels], (8, 8, 8), overlap=0.0)
    assert len(src) == 16
    flags = check_sources([src], ["volume"], 2, 255, False)[0]
    assert flags.sum() == 1
    items = [(0, i) for i in range(len(src))]
    transform = build_train_transform(NO_AUGMENT.model_copy(update={"noise_sigma_range": (0.1, 0.5),
                                                                    "filter_prob": 1.0}), 255)
    ds = SegmentationDataset([src], items, transform, seed=1)
    loader = ResumableLoader(ds, batch_size=4, sampler=EpochSampler(16, True, 1, foreground=flags,
                                                                    foreground_probability=0.5),
                             collate_fn=collate, drop_last=True)
    hits = total = 0
    for e in range(30):
        loader.sampler.set_epoch(e)
        for batch in loader:
            fg = (batch["labels"] == 1).flatten(1).any(1)
            hits += int(fg.sum())
            total += len(fg)
            if fg.sum() > 1:  # the same patch twice in a batch, with other noise
                a, b = batch["image"][fg][:2]
                assert not torch.equal(a, b)
    assert total == 30 * 16
    assert hits / total == pytest.approx(0.5 + 0.5 / 16, abs=0.07)  # 480 draws: sd 0.023


def test_training_with_foreground_oversampling(tmp_path, blob_store, make_config, run_collecting):
    cfg = make_config([blob_store], tmp_path / "run", max_epochs=1, foreground_probability=0.5)
    result, events = run_collecting(train_job(cfg))
    assert result.epochs == 1 and result.best_checkpoint.is_file() and "val_dice" in events[-1].metrics

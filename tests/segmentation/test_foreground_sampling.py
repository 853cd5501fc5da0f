"""Sampling the classes that matter (#18): foreground oversampling of training patches."""

import numpy as np
import pytest
import torch

from napari_cryolearn.models.augment import ANY_FOREGROUND, CROP_CLASS, RandForegroundCropd, build_train_transform
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
    assert flags.shape == (16, 2) and flags[:, 0].all() and flags[:, 1].sum() == 1
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


def test_a_class_found_in_few_patches_is_drawn_as_often_as_one_found_in_all():
    n = 300
    present = np.zeros((n, 4), bool)
    present[:, 0] = True
    present[:, 1] = True  # membrane everywhere
    present[[5, 77], 2] = True  # a rare class in two patches
    present[100:130, 3] = True
    sampler = EpochSampler(n, True, seed=7, foreground=present, foreground_probability=1.0)
    drawn = []
    for e in range(10):
        sampler.set_epoch(e)
        drawn += list(sampler)
    assert all(len(k) == 4 for k in drawn)
    classes = np.array([k[3] for k in drawn])
    # each class that occurs is drawn with probability 1/3, and the patch holds it
    for c in (1, 2, 3):
        assert np.mean(classes == c) == pytest.approx(1 / 3, abs=0.03)  # 3000 draws: sd 0.009
        assert all(present[k[0], c] for k in drawn if k[3] == c)
    assert {k[0] for k in drawn if k[3] == 2} == {5, 77}
    # a resumed run draws the same
    again = EpochSampler(n, True, seed=7, foreground=present, foreground_probability=1.0)
    sampler.set_epoch(4)
    again.set_epoch(4)
    assert list(sampler) == list(again)


@pytest.mark.parametrize("cls", [2, ANY_FOREGROUND])
def test_foreground_crops_are_centred_on_the_drawn_class(cls):
    lab = torch.zeros(1, 40, 40, 40)
    lab[0, 38, 1, 20] = 3.0  # one voxel of class 2 (labels are shifted by one here), near two borders
    lab[0, 10:12, 10:12, 10:12] = 2.0  # class 1
    crop = RandForegroundCropd(["labels"], roi_size=(8, 8, 8))
    seen = set()
    for seed in range(40):
        crop.set_random_state(seed)
        out = crop({"labels": lab, CROP_CLASS: cls})
        assert out["labels"].shape == (1, 8, 8, 8) and CROP_CLASS not in out
        values = set(out["labels"].unique().tolist())
        if cls == 2:
            assert 3.0 in values  # the window is shifted inwards to hold the voxel
        else:
            assert values & {2.0, 3.0}
            seen |= values
    if cls == ANY_FOREGROUND:
        assert {2.0, 3.0} <= seen  # any foreground voxel: both classes get centred
    # without a class: every position alike, so this small class is mostly missed
    crop.set_random_state(0)
    hits = sum(bool((crop({"labels": lab})["labels"] == 3.0).any()) for _ in range(50))
    assert hits < 10


def test_a_foreground_draw_centres_the_training_crop_on_its_class():
    labels = np.zeros((16, 64, 64), np.uint8)
    labels[:, 40, :] = 1  # a membrane plane in every patch
    labels[8, 44, 50] = 2  # one protein voxel
    image = np.random.default_rng(0).normal(size=labels.shape).astype(np.float32)
    src = ArrayPatchSource([image], [labels], (16, 64, 64), overlap=0.0)
    present = check_sources([src], ["volume"], 3, 255, False)[0]
    transform = build_train_transform(NO_AUGMENT, 255, patch_size=(8, 8, 8))
    ds = SegmentationDataset([src], [(0, 0)], transform, seed=1)
    sampler = EpochSampler(1, True, 0, foreground=present, foreground_probability=1.0)
    protein = plain = 0
    for e in range(40):
        sampler.set_epoch(e)
        (key,) = list(sampler)
        sample = ds[key]
        assert sample["labels"].shape == (8, 8, 8) and CROP_CLASS not in sample
        protein += int((sample["labels"] == 2).any()) if key[3] == 2 else 0
        plain += int((ds[(0, e)]["labels"] == 2).any())
    assert protein >= 12  # about half the draws are for class 2, each crop holds its voxel
    assert plain <= 4  # a random 8^3 crop of 16x64x64 rarely does

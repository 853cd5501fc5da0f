import math

import numpy as np
import pytest
import torch

from napari_cryolearn.models.augment import (
    RandBandPassd,
    RandLowPassd,
    build_eval_transform,
    build_train_transform,
)
from napari_cryolearn.segmentation.config import TransformsConfig

IGN = 255
EXACT = TransformsConfig(flip=True, flip_prob=0.5, rotate90=True, rotate=None, zoom=None,
                         low_pass_sigma_range=None, high_pass_sigma_range=None, noise_sigma_range=None)


def _sample(shape=(12, 16, 20), seed=0):
    rng = np.random.default_rng(seed)
    labels = torch.from_numpy(rng.integers(0, 3, shape))
    image = labels.float()[None].clone()
    dist = torch.stack([labels.float() * (c + 1) for c in range(3)])
    return {"image": image, "labels": labels, "distances": dist}


def test_flips_and_quarter_turns_move_image_labels_distances_together():
    t = build_train_transform(EXACT, IGN, with_distances=True)
    changed = 0
    for seed in range(8):
        t.set_random_state(seed)
        s = _sample()
        out = t(s)
        assert torch.equal(out["image"][0].long(), out["labels"])
        assert torch.equal(out["distances"][2], 3 * out["labels"].float())
        changed += not torch.equal(out["labels"], s["labels"]) if out["labels"].shape == s["labels"].shape else 1
    assert changed > 0


def test_rotation_and_zoom_use_nearest_labels_and_mark_outside_as_ignored():
    cfg = TransformsConfig(flip=False, rotate=(math.pi / 4, 0, 0), rotate_prob=1.0, zoom=(0.8, 0.8), zoom_prob=1.0,
                           low_pass_sigma_range=None, high_pass_sigma_range=None, noise_sigma_range=None)
    t = build_train_transform(cfg, IGN)
    t.set_random_state(3)
    s = _sample((8, 32, 32))
    s["labels"] = torch.ones_like(s["labels"])
    out = t(s)
    vals = set(torch.unique(out["labels"]).tolist())
    assert vals == {1, IGN}  # no interpolated values, corners from outside are ignored (not background 0)
    assert out["labels"][:, 0, 0].eq(IGN).all() and out["labels"][2:6, 16, 16].eq(1).all()
    assert out["labels"].dtype == torch.int64 and out["image"].dtype == torch.float32


def test_same_seed_same_sample_and_crop_to_patch_size():
    cfg = TransformsConfig(noise_sigma_range=(0.1, 0.5), filter_prob=1.0, rotate_prob=1.0)
    t = build_train_transform(cfg, IGN, patch_size=(8, 8, 8))
    t.set_random_state(5)
    a = t(_sample())
    t.set_random_state(5)
    b = t(_sample())
    t.set_random_state(6)
    c = t(_sample())
    assert a["image"].shape == (1, 8, 8, 8) and a["labels"].shape == (8, 8, 8)
    assert torch.equal(a["image"], b["image"]) and not torch.equal(a["image"], c["image"])
    e = build_eval_transform(IGN, patch_size=(16, 20, 24))(_sample())
    assert e["image"].shape == (1, 16, 20, 24)
    assert (e["labels"][:2] == IGN).all() and (e["labels"][2:14, 2:18, 2:22] != IGN).all()


def test_filters_change_frequencies_as_named():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((1, 24, 24, 24)).astype(np.float32))
    lo = RandLowPassd(["image"], (2.0, 2.0))
    lo.set_random_state(0)
    smooth = lo({"image": x})["image"]
    assert smooth.std() < 0.3 * x.std()
    ramp = torch.linspace(0, 10, 24)[None, None, None, :].expand(1, 24, 24, 24).contiguous()
    bp = RandBandPassd(["image"], (0.1, 0.1), (4.0, 4.0))
    bp.set_random_state(0)
    out = bp({"image": ramp + x})["image"]
    # the slow ramp is removed away from the borders, the fine noise stays
    inner = out[0, 8:16, 8:16, 8:16]
    assert abs(float(inner.mean())) < 0.2 and inner.std() > 0.6 * x.std()


@pytest.mark.parametrize("combine", [False, True])
def test_default_pipeline_runs_and_keeps_classes(combine):
    t = build_train_transform(TransformsConfig(combine_transforms=combine, scale_intensity_factors=0.1), IGN, True)
    t.set_random_state(1)
    out = t(_sample())
    assert set(torch.unique(out["labels"]).tolist()) <= {0, 1, 2, IGN}
    assert out["distances"].shape == (3, 12, 16, 20)


def test_2d_pipeline_moves_image_labels_distances_together():
    t = build_train_transform(EXACT, IGN, with_distances=True, spatial_dims=2)
    changed = 0
    for seed in range(8):
        t.set_random_state(seed)
        s = _sample(shape=(16, 20))
        out = t(s)
        assert out["labels"].shape in ((16, 20), (20, 16)) and out["image"].shape[0] == 1
        assert torch.equal(out["image"][0].long(), out["labels"])
        assert torch.equal(out["distances"][2], 3 * out["labels"].float())
        changed += not torch.equal(out["labels"], s["labels"]) if out["labels"].shape == s["labels"].shape else 1
    assert changed > 0
    blurred = build_train_transform(TransformsConfig(flip=False, rotate=(math.pi / 4, 0, 0), rotate_prob=1.0,
                                                     zoom=None, low_pass_sigma_range=(2.0, 2.0), filter_prob=1.0,
                                                     high_pass_sigma_range=None, noise_sigma_range=None),
                                    IGN, spatial_dims=2)
    blurred.set_random_state(0)
    out = blurred(_sample(shape=(16, 20)))
    assert out["image"].shape == (1, 16, 20) and IGN in torch.unique(out["labels"]).tolist()

import math

import pytest
import torch
import torch.nn.functional as F

from napari_cryolearn.segmentation.losses import (
    SegmentationLoss,
    dice_counts,
    dice_from_counts,
    distance_target,
)

IGN = 255


def _data(seed=0, c=3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, c, 4, 5, 6, generator=g)
    labels = torch.randint(0, c, (2, 4, 5, 6), generator=g)
    labels[:, :2] = IGN  # half unannotated
    return logits, labels


def test_cross_entropy_uses_only_annotated_voxels():
    logits, labels = _data()
    loss = SegmentationLoss(3, IGN, use_dice=False)(logits, labels)
    valid = labels != IGN
    manual = F.cross_entropy(logits.movedim(1, -1)[valid], labels[valid])
    assert loss.total.item() == pytest.approx(manual.item(), rel=1e-6)


@pytest.mark.parametrize("dice_type", ["generalized", "dice"])
def test_ignored_voxels_change_nothing(dice_type):
    logits, labels = _data()
    dist = torch.randn(2, 3, 4, 5, 6)
    raw = torch.randn(2, 3, 4, 5, 6)
    fn = SegmentationLoss(3, IGN, use_dice=True, dice_type=dice_type, distance_weight=0.5)
    a = fn(logits, labels, raw, dist).total
    logits2, raw2, dist2 = logits.clone(), raw.clone(), dist.clone()
    logits2[:, :, :2] = 100 * torch.randn_like(logits2[:, :, :2])
    raw2[:, :, :2] = 7.0
    dist2[:, :, :2] = -100.0
    b = fn(logits2, labels, raw2, dist2).total
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    # and annotated voxels do matter
    logits2[:, :, 2:] += 3 * torch.randn_like(logits2[:, :, 2:])
    assert fn(logits2, labels, raw2, dist2).total.item() != pytest.approx(a.item(), rel=1e-3)


def test_negative_ignore_index():
    logits, labels = _data()
    labels[labels == IGN] = -1
    ref = SegmentationLoss(3, IGN, use_dice=True)(logits, torch.where(labels < 0, IGN, labels)).total
    assert SegmentationLoss(3, -1, use_dice=True)(logits, labels).total.item() == pytest.approx(ref.item(), rel=1e-6)


def test_distance_term_is_masked_mse_of_tanh():
    logits, labels = _data()
    raw = torch.randn(2, 3, 4, 5, 6)
    d = 8 * torch.randn(2, 3, 4, 5, 6)
    terms = SegmentationLoss(3, IGN, use_dice=False, distance_weight=2.0)(logits, labels, raw, d)
    valid = (labels != IGN).unsqueeze(1).expand_as(raw)
    target = d.clamp(-5, 5) / 5
    manual = ((torch.tanh(raw) - target)[valid] ** 2).mean()
    assert terms.distance.item() == pytest.approx(manual.item(), rel=1e-5)
    assert terms.total.item() == pytest.approx(terms.labels.item() + 2 * manual.item(), rel=1e-5)
    assert distance_target(torch.tensor([-9.0, 2.5, 9.0])).tolist() == [-1.0, 0.5, 1.0]


def test_perfect_prediction_gives_small_dice_loss_and_all_ignored_gives_zero_with_grad():
    _, labels = _data()
    safe = torch.where(labels == IGN, 0, labels)
    logits = 50 * F.one_hot(safe, 3).movedim(-1, 1).float()
    terms = SegmentationLoss(3, IGN, use_dice=True, dice_type="dice")(logits, labels)
    assert terms.dice.item() < 1e-3 and terms.labels.item() < 1e-6
    logits = torch.randn(1, 3, 2, 2, 2, requires_grad=True)
    out = SegmentationLoss(3, IGN, use_dice=False)(logits, torch.full((1, 2, 2, 2), IGN))
    out.total.backward()
    assert out.total.item() == 0.0 and torch.all(logits.grad == 0)


def test_binary_single_channel():
    logits = torch.tensor([[[[[4.0, -4.0, 9.0]]]]])
    labels = torch.tensor([[[[1, 0, IGN]]]])
    terms = SegmentationLoss(1, IGN, use_dice=False)(logits, labels)
    assert terms.total.item() == pytest.approx(math.log1p(math.exp(-4.0)), rel=1e-5)


def test_dice_counts_and_values():
    pred = torch.tensor([0, 1, 1, 2, 2, 2, 1])
    lab = torch.tensor([0, 1, 2, 2, 2, IGN, IGN])
    counts = dice_counts(pred, lab, 4, IGN)
    assert counts.tolist() == [[1, 1, 2, 0], [1, 2, 2, 0], [1, 1, 3, 0]]
    dice = dice_from_counts(counts)
    assert dice[:3].tolist() == pytest.approx([1.0, 2 / 3, 0.8])
    assert math.isnan(dice[3].item())

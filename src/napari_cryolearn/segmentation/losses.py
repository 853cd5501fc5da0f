"""Segmentation losses with an ignore value, and per-class Dice counts.

Tensors: logits (N, C, Z, Y, X); labels (N, Z, Y, X) integer, where ``ignore_index`` marks
unannotated voxels; distances (N, C, Z, Y, X) signed distances in voxels (positive inside).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, GeneralizedDiceLoss
from torch import nn

from napari_cryolearn.models.heads import DISTANCE_CLIP


@dataclass
class LossTerms:
    """The total loss and its parts (each a scalar tensor; ``None`` when not computed)."""

    total: torch.Tensor
    labels: torch.Tensor
    dice: torch.Tensor | None = None
    distance: torch.Tensor | None = None


def distance_target(distances: torch.Tensor) -> torch.Tensor:
    """Signed distances (voxels) → training target in [−1, 1]: ``clip(d, −5, 5) / 5``."""
    return distances.clamp(-DISTANCE_CLIP, DISTANCE_CLIP) / DISTANCE_CLIP


class SegmentationLoss(nn.Module):
    """Cross-entropy (+ Dice) (+ weighted distance MSE), all ignoring ``ignore_index`` voxels.

    With one output channel the label term is binary cross-entropy with logits (labels 0/1),
    as in CryoSiam. The distance term is the MSE between ``tanh(raw)`` and
    :func:`distance_target` over annotated voxels.

    Parameters
    ----------
    num_classes:
        Output channels.
    ignore_index:
        Label value excluded from all terms.
    use_dice:
        Add a Dice loss computed on softmax (sigmoid) probabilities.
    dice_type:
        ``"generalized"`` (MONAI ``GeneralizedDiceLoss``, CryoSiam's choice) or ``"dice"``.
    distance_weight:
        Weight of the distance term.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        use_dice: bool = True,
        dice_type: str = "generalized",
        distance_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.distance_weight = distance_weight
        if not use_dice:
            self.dice = None
        elif dice_type == "generalized":
            self.dice = GeneralizedDiceLoss(include_background=True, softmax=False, sigmoid=False, batch=True)
        else:
            self.dice = DiceLoss(include_background=True, softmax=False, sigmoid=False, batch=True)

    def forward(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        distance_raw: torch.Tensor | None = None,
        distances: torch.Tensor | None = None,
    ) -> LossTerms:
        logits = logits.float()
        valid = labels != self.ignore_index
        safe = torch.where(valid, labels, torch.zeros_like(labels)).long()
        mask = valid.unsqueeze(1).to(logits.dtype)
        n_valid = valid.sum()
        if self.num_classes == 1:
            per_voxel = F.binary_cross_entropy_with_logits(
                logits[:, 0], safe.to(logits.dtype), reduction="none"
            )
            label_loss = (per_voxel * valid).sum() / n_valid.clamp(min=1)
            probs = torch.sigmoid(logits)
            onehot = safe.unsqueeze(1).to(logits.dtype)
        else:
            label_loss = F.cross_entropy(logits, labels.long(), ignore_index=self.ignore_index)
            if n_valid == 0:
                label_loss = logits.sum() * 0.0
            probs = torch.softmax(logits, dim=1)
            onehot = F.one_hot(safe, self.num_classes).movedim(-1, 1).to(logits.dtype)
        total = label_loss
        dice = None
        if self.dice is not None:
            dice = self.dice(probs * mask, onehot * mask)
            total = total + dice
        dist = None
        if distance_raw is not None and distances is not None and self.distance_weight > 0:
            err = (torch.tanh(distance_raw.float()) - distance_target(distances.float())) ** 2
            denom = (n_valid * err.shape[1]).clamp(min=1)
            dist = (err * mask).sum() / denom
            total = total + self.distance_weight * dist
        return LossTerms(total=total, labels=label_loss, dice=dice, distance=dist)


def dice_counts(
    pred: torch.Tensor, labels: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """Per-class counts for Dice over annotated voxels.

    ``pred`` and ``labels``: integer class maps of the same shape. Returns a float64 tensor
    (3, num_classes): intersection, predicted voxels, true voxels. Sum these over batches,
    then :func:`dice_from_counts`.
    """
    valid = labels != ignore_index
    p = pred[valid].long()
    t = labels[valid].long()
    n = num_classes
    inter = torch.bincount(t[p == t], minlength=n)[:n]
    psum = torch.bincount(p, minlength=n)[:n]
    tsum = torch.bincount(t, minlength=n)[:n]
    return torch.stack([inter, psum, tsum]).double()


def dice_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """Dice per class from :func:`dice_counts` sums; NaN for a class absent from both."""
    inter, psum, tsum = counts
    denom = psum + tsum
    return torch.where(denom > 0, 2 * inter / denom.clamp(min=1), torch.full_like(denom, float("nan")))

"""Segmentation losses with an ignore value, and per-class Dice counts.

Tensors: logits (N, C, Z, Y, X); labels (N, Z, Y, X) integer, where ``ignore_index`` marks
unannotated voxels; distances (N, C, Z, Y, X) signed distances in voxels (positive inside).
"""

from __future__ import annotations

from collections.abc import Sequence
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
    class_weights:
        One weight per class (``num_classes`` ≥ 2), background first, or ``None`` (all 1). The
        cross-entropy weighs each voxel by its class's weight (and averages over the weights,
        as :func:`torch.nn.functional.cross_entropy` does); the plain Dice weighs each class's
        ``1 − Dice``; the generalised Dice multiplies its 1/volume² class weights by them. A
        rare class with a larger weight pulls harder on its logits.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        use_dice: bool = True,
        dice_type: str = "generalized",
        distance_weight: float = 1.0,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.distance_weight = distance_weight
        weights = None
        if class_weights is not None:
            if num_classes < 2 or len(class_weights) != num_classes:
                raise ValueError(f"class_weights needs one weight per class ({num_classes} classes, at least 2), "
                                 f"got {len(class_weights)}")
            weights = torch.tensor([float(w) for w in class_weights], dtype=torch.float32)
        # not in the state dict: checkpoints of runs with and without weights hold the same tensors
        self.register_buffer("class_weights", weights, persistent=False)
        if not use_dice:
            self.dice = None
        elif dice_type == "generalized":
            if weights is None:
                self.dice = GeneralizedDiceLoss(include_background=True, softmax=False, sigmoid=False, batch=True)
            else:
                self.dice = _ClassWeightedGeneralizedDiceLoss(weights)
        else:
            self.dice = DiceLoss(include_background=True, softmax=False, sigmoid=False, batch=True,
                                 weight=None if weights is None else weights.tolist())
            # MONAI keeps the weights as a (persistent) buffer: left out of checkpoints, as above
            self.dice._non_persistent_buffers_set.add("class_weight")

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
            label_loss = F.cross_entropy(logits, labels.long(), ignore_index=self.ignore_index,
                                         weight=self.class_weights)
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


class _ClassWeightedGeneralizedDiceLoss(GeneralizedDiceLoss):
    """MONAI's generalised Dice (batch, 1/volume² weights) with those weights times ``class_weights``."""

    def __init__(self, class_weights: torch.Tensor) -> None:
        super().__init__(include_background=True, softmax=False, sigmoid=False, batch=True)
        self.register_buffer("class_weights", class_weights.clone(), persistent=False)
        self._volume_weights = self.w_func
        self.w_func = self._weights

    def _weights(self, volumes: torch.Tensor) -> torch.Tensor:
        # an absent class's weight is infinite here; MONAI then gives it the largest finite weight
        return self._volume_weights(volumes) * self.class_weights.to(volumes)


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

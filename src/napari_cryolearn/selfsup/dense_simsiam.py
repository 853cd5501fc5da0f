"""CryoSiam's DenseSimSiam network and its loss, for label-free pretraining of the 3D backbone.

The network is the segmentation backbone (:class:`~napari_cryolearn.models.backbones.DenseBackbone`:
``encoder.*``, ``decoder.*``, ``projector.*``) with CryoSiam's pretraining heads, under
CryoSiam's names so that ``_model.`` + a key of :meth:`DenseSimSiam.state_dict` is CryoSiam's
checkpoint layout:

- ``predictor``: dense predictor, 1×1 convolutions dense_dim → dense_pred_dim (BN, ReLU) → dense_dim;
- ``global_projector``: Linear-BN-ReLU ×2 on the pooled last encoder level → ``encoder.fc``
  (the same module, so both keys are saved) → BN(affine=False), ``dim`` wide;
- ``global_predictor``: dim → pred_dim (BN, ReLU) → dim.

The loss (:func:`dense_simsiam_loss`) is SimSiam's negative cosine with stop-gradient, per
voxel of view 1 against the corresponding place of view 2's projection (sampled there
trilinearly, :mod:`.dense_views`) and back, over the voxels both views show, plus the same on
the pooled (global) vectors: ``w · L_dense + (1 − w) · L_global`` (CryoSiam's
``weight_dense_loss``; ``include_global_loss`` false: ``L_dense`` only).

>>> torch.manual_seed(0) is not None
True
>>> net = DenseSimSiam(num_filters=(4, 4, 8, 8), fpn_channels=4, dense_dim=4, dim=8, pred_dim=4, dense_pred_dim=4)
>>> out = net(torch.randn(2, 1, 16, 16, 16), torch.randn(2, 1, 16, 16, 16))
>>> out.p1.shape, out.z2.requires_grad, out.p1_global.shape
(torch.Size([2, 4, 16, 16, 16]), False, torch.Size([2, 8]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from napari_cryolearn.models.backbones import DenseBackbone, batch_norm_type, conv_type


class DenseOutputs(NamedTuple):
    """Dense (N, dense_dim, *spatial) and global (N, dim) predictions p and projections z (detached)."""

    p1: torch.Tensor
    p2: torch.Tensor
    z1: torch.Tensor
    z2: torch.Tensor
    p1_global: torch.Tensor
    p2_global: torch.Tensor
    z1_global: torch.Tensor
    z2_global: torch.Tensor


class DenseSimSiam(DenseBackbone):
    """CryoSiam's ``DenseSimSiam`` (without the optional level heads); see the module docstring.

    Parameters are :class:`DenseBackbone`'s, and ``dim``, ``pred_dim`` (global projector and
    predictor widths), ``dense_pred_dim`` (dense predictor's hidden width).
    """

    def __init__(self, block_type: str = "basic", in_channels: int = 1, num_layers: Sequence[int] = (1, 1, 1, 1),
                 num_filters: Sequence[int] = (8, 16, 32, 64), fpn_channels: int = 16, dense_dim: int = 16,
                 no_max_pool: bool = True, add_later_conv: bool = False, spatial_dims: int = 3, *,
                 dim: int = 256, pred_dim: int = 64, dense_pred_dim: int = 16) -> None:
        super().__init__(block_type, in_channels, num_layers, num_filters, fpn_channels, dense_dim, no_max_pool,
                         add_later_conv, spatial_dims)
        conv, bn = conv_type(spatial_dims), batch_norm_type(spatial_dims)
        prev = int(num_filters[-1]) * (4 if block_type == "bottleneck" else 1)
        self.encoder.fc = nn.Linear(prev, dim)
        self.global_projector = nn.Sequential(
            nn.Linear(prev, prev, bias=False), nn.BatchNorm1d(prev), nn.ReLU(inplace=False),
            nn.Linear(prev, prev, bias=False), nn.BatchNorm1d(prev), nn.ReLU(inplace=False),
            self.encoder.fc, nn.BatchNorm1d(dim, affine=False))
        self.global_projector[6].bias.requires_grad = False  # followed by BN (CryoSiam, SimSiam)
        self.global_predictor = nn.Sequential(nn.Linear(dim, pred_dim, bias=False), nn.BatchNorm1d(pred_dim),
                                              nn.ReLU(inplace=False), nn.Linear(pred_dim, dim))
        self.predictor = nn.Sequential(conv(dense_dim, dense_pred_dim, 1, bias=False), bn(dense_pred_dim),
                                       nn.ReLU(inplace=False), conv(dense_pred_dim, dense_dim, 1))
        self.dim, self.pred_dim, self.dense_pred_dim = int(dim), int(pred_dim), int(dense_pred_dim)

    def _one(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.encode(x)
        pooled = torch.flatten(self.encoder.avgpool(feats[-1]), 1)
        return self.projector(self.decoder(feats)), self.global_projector(pooled)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> DenseOutputs:  # type: ignore[override]
        """Two views (N, C, *spatial) → :class:`DenseOutputs` (views one after the other, as SimSiam)."""
        z1, g1 = self._one(x1)
        z2, g2 = self._one(x2)
        return DenseOutputs(self.predictor(z1), self.predictor(z2), z1.detach(), z2.detach(),
                            self.global_predictor(g1), self.global_predictor(g2), g1.detach(), g2.detach())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Per-voxel embedding (N, dense_dim, *spatial): the dense projection z, L2-normalised."""
        return F.normalize(DenseBackbone.forward(self, x), dim=1)


def warp(z: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``z`` (N, C, Z, Y, X) sampled at ``grid`` (N, Z', Y', X', 3), trilinear (:func:`~.dense_views.to_grid`)."""
    return F.grid_sample(z, grid.to(z.dtype), mode="bilinear", padding_mode="border", align_corners=True)


def masked_negative_cosine(p: torch.Tensor, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """−cos(p, z) over channels, averaged over the voxels where ``mask`` (N, *spatial) is true
    (0 where no voxel is)."""
    cos = F.cosine_similarity(p, z.detach(), dim=1)
    m = mask.to(cos.dtype)
    return -(cos * m).sum() / m.sum().clamp_min(1.0)


def dense_simsiam_loss(out: DenseOutputs, grid12: torch.Tensor, mask12: torch.Tensor, grid21: torch.Tensor,
                       mask21: torch.Tensor, *, include_global_loss: bool = True, weight_dense_loss: float = 0.5
                       ) -> dict[str, torch.Tensor]:
    """The loss terms of a batch: ``dense`` −½[cos(p1, z2∘c12) + cos(p2, z1∘c21)] over the
    corresponding voxels, ``global`` −½[cos(p1g, z2g) + cos(p2g, z1g)], ``total``.

    ``grid12`` (N, Z, Y, X, 3): for each voxel of view 1, where it is in view 2 (a grid of
    :func:`~.dense_views.to_grid`), ``mask12`` (N, Z, Y, X) whether it is there; ``grid21``,
    ``mask21`` the other way round.
    """
    from napari_cryolearn.selfsup.simsiam import simsiam_loss

    dense = 0.5 * (masked_negative_cosine(out.p1, warp(out.z2, grid12), mask12)
                   + masked_negative_cosine(out.p2, warp(out.z1, grid21), mask21))
    terms = {"dense": dense}
    if include_global_loss:
        glob = simsiam_loss(out.p1_global, out.p2_global, out.z1_global, out.z2_global)
        terms["global"] = glob
        terms["total"] = weight_dense_loss * dense + (1.0 - weight_dense_loss) * glob
    else:
        terms["total"] = dense
    return terms


def dense_samples(p: torch.Tensor, n: int = 256, generator: torch.Generator | None = None) -> torch.Tensor:
    """Up to ``n`` voxels' predictions of ``p`` (N, C, *spatial) as rows (n, C), for the collapse level."""
    flat = p.detach().float().movedim(1, -1).reshape(-1, p.shape[1])
    if flat.shape[0] > n:
        idx = torch.randperm(flat.shape[0], generator=generator, device="cpu")[:n].to(flat.device)
        flat = flat[idx]
    return flat

"""CryoSiam's DenseSimSiam network and its loss, for label-free pretraining of the 3D backbone.

The network is the segmentation backbone (:class:`~napari_cryolearn.models.backbones.DenseBackbone`:
``encoder.*``, ``decoder.*``, ``projector.*``) with CryoSiam's pretraining heads, under
CryoSiam's names so that ``_model.`` + a key of :meth:`DenseSimSiam.state_dict` is CryoSiam's
checkpoint layout:

- ``predictor``: dense predictor, 1×1 convolutions dense_dim → dense_pred_dim (BN, ReLU) → dense_dim;
- ``global_projector``: Linear-BN-ReLU ×2 on the pooled last encoder level → ``encoder.fc``
  (the same module, so both keys are saved) → BN(affine=False), ``dim`` wide;
- ``global_predictor``: dim → pred_dim (BN, ReLU) → dim;
- with ``include_levels`` (CryoSiam's level losses): ``level_projector_{2,4,8}`` and
  ``level_predictor_{2,4,8}``, a projector and predictor like the dense ones on the decoder's
  maps at 1/2, 1/4 and 1/8 resolution.

The loss (:func:`dense_simsiam_loss`) is SimSiam's negative cosine with stop-gradient, per
voxel of view 1 against the corresponding place of view 2's projection (sampled there
trilinearly, :mod:`.dense_views`) and back, over the voxels both views show, plus the same on
the pooled (global) vectors: ``w · L_dense + (1 − w) · L_global`` (CryoSiam's
``weight_dense_loss``; ``include_global_loss`` false: ``L_dense`` only). With level losses the
same dense term on each of the first ``include_levels`` coarser maps is added, as in CryoSiam's
pretraining fork: ``L_dense + Σ L_level (+ L_global)``. A voxel ``j`` of the map at 1/s shows
the place of full-resolution voxel ``s·j`` (stride-2 convolutions), so its correspondence is
the full-resolution one subsampled and divided by ``s`` (:func:`level_grid`).

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
    #: per level used (1/2, 1/4, 1/8 resolution): ``(p1, p2, z1, z2)`` of that level's heads
    levels: tuple = ()


#: The resolution factors of CryoSiam's level heads.
LEVEL_FACTORS = (2, 4, 8)


class DenseSimSiam(DenseBackbone):
    """CryoSiam's ``DenseSimSiam``; see the module docstring.

    Parameters are :class:`DenseBackbone`'s, and ``dim``, ``pred_dim`` (global projector and
    predictor widths), ``dense_pred_dim`` (dense predictor's hidden width), ``include_levels``
    (0: no level heads; 1-3: the heads of all three levels, the first ``include_levels`` of them
    in the loss).
    """

    def __init__(self, block_type: str = "basic", in_channels: int = 1, num_layers: Sequence[int] = (1, 1, 1, 1),
                 num_filters: Sequence[int] = (8, 16, 32, 64), fpn_channels: int = 16, dense_dim: int = 16,
                 no_max_pool: bool = True, add_later_conv: bool = False, spatial_dims: int = 3, *,
                 dim: int = 256, pred_dim: int = 64, dense_pred_dim: int = 16, include_levels: int = 0) -> None:
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
        self.predictor = self._dense_predictor(conv, bn, dense_dim, dense_pred_dim)
        self.include_levels = int(include_levels)
        if not 0 <= self.include_levels <= len(LEVEL_FACTORS):
            raise ValueError(f"include_levels must be 0 to {len(LEVEL_FACTORS)}, got {include_levels!r}")
        if self.include_levels:
            for f in LEVEL_FACTORS:
                setattr(self, f"level_projector_{f}", self._dense_projector(conv, bn, fpn_channels, dense_dim))
                setattr(self, f"level_predictor_{f}", self._dense_predictor(conv, bn, dense_dim, dense_pred_dim))
        self.dim, self.pred_dim, self.dense_pred_dim = int(dim), int(pred_dim), int(dense_pred_dim)

    @staticmethod
    def _dense_projector(conv, bn, fpn_channels: int, dense_dim: int) -> nn.Sequential:
        """The backbone's projector layout (1×1 convolutions, BN, ReLU ×2 → dense_dim → BN(affine=False))."""
        return nn.Sequential(conv(fpn_channels, fpn_channels, 1, bias=False), bn(fpn_channels), nn.ReLU(inplace=False),
                             conv(fpn_channels, fpn_channels, 1, bias=False), bn(fpn_channels), nn.ReLU(inplace=False),
                             conv(fpn_channels, dense_dim, 1), bn(dense_dim, affine=False))

    @staticmethod
    def _dense_predictor(conv, bn, dense_dim: int, dense_pred_dim: int) -> nn.Sequential:
        return nn.Sequential(conv(dense_dim, dense_pred_dim, 1, bias=False), bn(dense_pred_dim),
                             nn.ReLU(inplace=False), conv(dense_pred_dim, dense_dim, 1))

    def _one(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        feats = self.encode(x)
        pooled = torch.flatten(self.encoder.avgpool(feats[-1]), 1)
        maps = self.decoder.levels(feats)
        levels = [getattr(self, f"level_projector_{f}")(m)
                  for f, m in zip(LEVEL_FACTORS[:self.include_levels], maps[1:])]
        return self.projector(maps[0]), self.global_projector(pooled), levels

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> DenseOutputs:  # type: ignore[override]
        """Two views (N, C, *spatial) → :class:`DenseOutputs` (views one after the other, as SimSiam)."""
        z1, g1, l1 = self._one(x1)
        z2, g2, l2 = self._one(x2)
        levels = tuple((getattr(self, f"level_predictor_{f}")(a), getattr(self, f"level_predictor_{f}")(b),
                        a.detach(), b.detach()) for f, a, b in zip(LEVEL_FACTORS, l1, l2))
        return DenseOutputs(self.predictor(z1), self.predictor(z2), z1.detach(), z2.detach(),
                            self.global_predictor(g1), self.global_predictor(g2), g1.detach(), g2.detach(), levels)

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


def level_grid(grid: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The correspondence at 1/``factor`` resolution from the full-resolution one.

    ``grid`` (N, Z, Y, X, 3): for each voxel of view 1, where it is in view 2 (a ``grid_sample``
    grid of the full-resolution view, :func:`~.dense_views.to_grid`). Voxel ``j`` of a map at
    1/``factor`` shows full-resolution voxel ``factor·j``; returns that map's grid (N, Z/f, Y/f,
    X/f, 3) and whether each voxel lies in view 2's map (N, Z/f, Y/f, X/f).

    >>> from napari_cryolearn.selfsup.dense_views import to_grid
    >>> coords = torch.stack(torch.meshgrid(*[torch.arange(8.0)] * 3, indexing="ij"), -1) + torch.tensor([0, 0, 2.0])
    >>> g, inside = level_grid(to_grid(coords, (8, 8, 8))[None], 2)   # shifted by 2 voxels in x
    >>> g.shape, bool(inside[0, 0, 0, 0]), bool(inside[0, 0, 0, 3])
    (torch.Size([1, 4, 4, 4, 3]), True, False)
    """
    s = int(factor)
    sub = grid[:, ::s, ::s, ::s]
    n = torch.tensor([grid.shape[3], grid.shape[2], grid.shape[1]], dtype=grid.dtype, device=grid.device)  # x, y, z
    n_level = torch.ceil(n / s)
    coords = (sub + 1.0) / 2.0 * (n - 1).clamp_min(1) / s
    level = 2.0 * coords / (n_level - 1).clamp_min(1) - 1.0
    inside = (level.abs() <= 1.0 + 1e-5).all(-1)
    return level, inside


def dense_simsiam_loss(out: DenseOutputs, grid12: torch.Tensor, mask12: torch.Tensor, grid21: torch.Tensor,
                       mask21: torch.Tensor, *, include_global_loss: bool = True, weight_dense_loss: float = 0.5
                       ) -> dict[str, torch.Tensor]:
    """The loss terms of a batch: ``dense`` −½[cos(p1, z2∘c12) + cos(p2, z1∘c21)] over the
    corresponding voxels, ``global`` −½[cos(p1g, z2g) + cos(p2g, z1g)], ``level_2``,
    ``level_4``, ``level_8`` (the dense term of each level in ``out.levels``), ``total``.

    ``grid12`` (N, Z, Y, X, 3): for each voxel of view 1, where it is in view 2 (a grid of
    :func:`~.dense_views.to_grid`), ``mask12`` (N, Z, Y, X) whether it is there; ``grid21``,
    ``mask21`` the other way round. ``total``: without levels ``w · dense + (1 − w) · global``
    (``dense`` without the global term); with levels ``dense + Σ levels (+ global)``, as
    CryoSiam's pretraining fork.
    """
    from napari_cryolearn.selfsup.simsiam import simsiam_loss

    def pair(p1, p2, z1, z2, g12, m12, g21, m21):
        return 0.5 * (masked_negative_cosine(p1, warp(z2, g12), m12) + masked_negative_cosine(p2, warp(z1, g21), m21))

    dense = pair(out.p1, out.p2, out.z1, out.z2, grid12, mask12, grid21, mask21)
    terms = {"dense": dense}
    for factor, (p1, p2, z1, z2) in zip(LEVEL_FACTORS, out.levels):
        (g12, m12), (g21, m21) = level_grid(grid12, factor), level_grid(grid21, factor)
        terms[f"level_{factor}"] = pair(p1, p2, z1, z2, g12, m12, g21, m21)
    levels = [terms[f"level_{f}"] for f in LEVEL_FACTORS[:len(out.levels)]]
    glob = simsiam_loss(out.p1_global, out.p2_global, out.z1_global, out.z2_global) if include_global_loss else None
    if glob is not None:
        terms["global"] = glob
    if levels:
        terms["total"] = dense + sum(levels) + (glob if glob is not None else 0.0)
    elif glob is not None:
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

"""SimSiam as prismpyp trains it on micrographs: model, loss, collapse level, frozen backbone.

The network (prismpyp's, with the reducer sized to the backbone):

    image ─ encoder (ResNet, pooled features, f = 512 or 2048)
          ─ reducer   Linear(f, f/2) BN ReLU · Linear(f/2, dim) BN ReLU · Linear(dim, dim) BN
          ─ projector Linear(dim, dim) BN ReLU ×2 · Linear(dim, dim) BN(affine=False)   → z
          ─ predictor Linear(dim, pred_dim) BN ReLU · Linear(pred_dim, dim)            → p

Module names and ``nn.Sequential`` indices are prismpyp's (``reducer.{0,1,3,4,6,7}``,
``projector.{0,1,3,4,6,7}``, ``predictor.{0,1,3}``); the encoder has torchvision's names
(see :mod:`napari_cryolearn.models.resnet`), so their checkpoints load through
:mod:`napari_cryolearn.selfsup.checkpoints`. prismpyp hard-wires the reducer to 2048 inputs
(ResNet-50 only); here it follows the backbone. The embedding of an image (:meth:`SimSiam.embed`)
is prismpyp's: the L2-normalised reducer output, before the projector.

The collapse level (:class:`CollapseMonitor`) is prismpyp's formula with its moving averages
bias-corrected; see there.

>>> torch.manual_seed(0) is not None
True
>>> model = SimSiam("resnet18", dim=64, pred_dim=16)
>>> p1, p2, z1, z2 = model(torch.randn(4, 1, 64, 64), torch.randn(4, 1, 64, 64))
>>> p1.shape, z2.requires_grad
(torch.Size([4, 64]), False)
>>> -1.0 <= float(simsiam_loss(p1, p2, z1, z2).detach()) <= 1.0
True
>>> e = model.eval().embed(torch.randn(3, 1, 64, 64))
>>> e.shape, torch.allclose(e.norm(dim=1), torch.ones(3))
(torch.Size([3, 64]), True)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from napari_cryolearn.models.resnet import resnet


def _linear_bn(cin: int, cout: int, *, bias: bool = True, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(cin, cout, bias=bias), nn.BatchNorm1d(cout)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class SimSiam(nn.Module):
    """prismpyp's SimSiam: ResNet encoder → reducer → projector → predictor.

    Parameters
    ----------
    backbone:
        ``"resnet18"``, ``"resnet34"`` or ``"resnet50"`` (prismpyp: ``"resnet50"``).
    in_channels:
        1 for micrographs or power spectra, 3 for RGB thumbnails (prismpyp's webp images).
    dim:
        Width of the embedding (the reducer output), of z and of p (prismpyp: 512).
    pred_dim:
        Hidden width of the predictor (prismpyp: 256).
    zero_init_residual:
        Every residual block starts as the identity (SimSiam's and prismpyp's choice when
        training the backbone from scratch; irrelevant once weights are loaded).
    """

    def __init__(self, backbone: str = "resnet18", *, in_channels: int = 1, dim: int = 512, pred_dim: int = 256,
                 zero_init_residual: bool = True) -> None:
        super().__init__()
        self.encoder = resnet(backbone, in_channels=in_channels, zero_init_residual=zero_init_residual)
        f = self.encoder.feature_dim
        self.dim, self.pred_dim = int(dim), int(pred_dim)
        self.reducer = nn.Sequential(*_linear_bn(f, f // 2), *_linear_bn(f // 2, dim),
                                     *_linear_bn(dim, dim, relu=False))
        self.projector = nn.Sequential(*_linear_bn(dim, dim, bias=False), *_linear_bn(dim, dim, bias=False),
                                       nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim, affine=False))
        self.predictor = nn.Sequential(*_linear_bn(dim, pred_dim, bias=False), nn.Linear(pred_dim, dim))

    def _z(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.reducer(self.encoder.forward_features(x)))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Two views (N, C, H, W) → ``(p1, p2, z1.detach(), z2.detach())``, each (N, dim).

        The views go through the network one after the other, so BatchNorm sees one view per
        batch, as in SimSiam.
        """
        z1, z2 = self._z(x1), self._z(x2)
        return self.predictor(z1), self.predictor(z2), z1.detach(), z2.detach()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, dim): the L2-normalised reducer output (prismpyp's embedding)."""
        return F.normalize(self.reducer(self.encoder.forward_features(x)), dim=1)


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """−½ [cos(p1, z2) + cos(p2, z1)], averaged over the batch; z is detached (stop-gradient).

    −1 when every prediction points the way of the other view's projection, +1 opposite.

    >>> p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> float(simsiam_loss(p, p, p, p)), float(simsiam_loss(p, p, -p, -p))
    (-1.0, 1.0)
    """
    cos = F.cosine_similarity
    return -0.5 * (cos(p1, z2.detach(), dim=1).mean() + cos(p2, z1.detach(), dim=1).mean())


def output_std(p: torch.Tensor) -> float:
    """Mean over dimensions of the standard deviation over the batch of L2-normalised ``p``.

    ``p`` is (N, dim) with N ≥ 2 (the unbiased std, as ``torch.std``). 0 when every row points
    the same way; about 1/√dim when the rows point in random directions.

    >>> output_std(torch.ones(4, 8))
    0.0
    """
    if p.ndim != 2 or p.shape[0] < 2:
        raise ValueError(f"output_std needs (N, dim) outputs with N >= 2, got shape {tuple(p.shape)}")
    return float(F.normalize(p.detach().float(), dim=1).std(dim=0).mean())


def collapse_level(std: float, dim: int) -> float:
    """max(0, 1 − √dim · std): 0 healthy (outputs spread over the sphere), 1 collapsed.

    Lower is better (prismpyp's documentation says "higher is better"; its formula says lower).

    >>> collapse_level(0.0, 512), collapse_level(1 / math.sqrt(512), 512)
    (1.0, 0.0)
    """
    return max(0.0, 1.0 - math.sqrt(dim) * std)


class _BiasCorrectedEMA:
    """Exponential moving average m ← β m + (1 − β) x started at 0, read as m / (1 − βⁿ)."""

    def __init__(self, beta: float) -> None:
        self.beta, self.m, self.n = beta, 0.0, 0

    def add(self, x: float) -> None:
        self.m = self.beta * self.m + (1.0 - self.beta) * x
        self.n += 1

    @property
    def value(self) -> float | None:
        return None if self.n == 0 else self.m / (1.0 - self.beta ** self.n)


class CollapseMonitor:
    """prismpyp's collapse level of SimSiam training, with its moving averages bias-corrected.

    Per batch, s = :func:`output_std` of the predictions ``p1``. Within an epoch the s are
    averaged by an exponential moving average (β = 0.9); at the end of the epoch that average
    enters a second moving average (β = 0.9) across epochs. Both are **bias-corrected**: an
    average started at 0 after n values is divided by 1 − βⁿ, so it is a weighted mean of the
    values seen (after two batches s₁, s₂ it is (0.9·s₁ + s₂)/1.9; for equal values exactly
    that value). prismpyp does not correct them, so with few batches its level reads near 1
    (collapsed) however healthy the training: after two equal batches its average is 0.19·s.

    The level is :func:`collapse_level` of the average: max(0, 1 − √dim · average), 0 healthy,
    1 collapsed (every output the same direction). Lower is better.

    >>> monitor = CollapseMonitor(dim=8)
    >>> monitor.update(torch.ones(4, 8))      # identical outputs: collapsed
    1.0
    >>> monitor.end_epoch()
    1.0
    """

    def __init__(self, dim: int, beta: float = 0.9) -> None:
        self.dim, self.beta = int(dim), float(beta)
        self._batches = _BiasCorrectedEMA(beta)
        self._epochs = _BiasCorrectedEMA(beta)

    def update(self, p1: torch.Tensor) -> float:
        """Add a batch of predictions (N, dim); return the level of the epoch so far."""
        if p1.ndim != 2 or p1.shape[1] != self.dim:
            raise ValueError(f"expected predictions (N, {self.dim}), got shape {tuple(p1.shape)}")
        self._batches.add(output_std(p1))
        return self.epoch_level

    @property
    def epoch_level(self) -> float | None:
        """Level of the current epoch's batches (``None`` before the first batch)."""
        value = self._batches.value
        return None if value is None else collapse_level(value, self.dim)

    def end_epoch(self) -> float:
        """Close the epoch: its average joins the average across epochs; return :attr:`level`."""
        value = self._batches.value
        if value is None:
            raise ValueError("end_epoch before any batch of this epoch (call update first)")
        self._epochs.add(value)
        self._batches = _BiasCorrectedEMA(self.beta)
        return self.level

    @property
    def level(self) -> float | None:
        """Level across the finished epochs (``None`` before the first :meth:`end_epoch`)."""
        value = self._epochs.value
        return None if value is None else collapse_level(value, self.dim)


def set_trainable(model: nn.Module, freeze_backbone: bool) -> int:
    """Freeze or unfreeze ``model.encoder``; everything else trains. Return the trainable count.

    prismpyp trains only the reducer, projector and predictor on a frozen ImageNet backbone
    (``freeze_backbone=True``). Works for any model with an ``encoder`` (:class:`SimSiam`,
    :class:`~napari_cryolearn.selfsup.simclr.SimCLR`). BatchNorm running statistics still
    follow ``model.train()`` / ``model.eval()``, as in prismpyp.

    >>> model = SimSiam("resnet18", dim=32, pred_dim=8)
    >>> set_trainable(model, True) == sum(p.numel() for n, p in model.named_parameters()
    ...                                   if not n.startswith("encoder."))
    True
    """
    for name, param in model.named_parameters():
        param.requires_grad_(not (freeze_backbone and name.startswith("encoder.")))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

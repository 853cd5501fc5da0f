"""SimCLR: a ResNet encoder, a projection head, and the NT-Xent loss.

The network is the SimCLR trainer's (prism-h image classifier): ResNet without ``fc`` (f = 512
or 2048 features) → ``Linear(f, hidden)`` · ReLU · ``Linear(hidden, out_dim)``. Its state-dict
keys are the trainer's, ``encoder.<torchvision key>`` and ``projection_head.projection.{0,2}.*``,
so its checkpoints load (:mod:`napari_cryolearn.selfsup.checkpoints`). The trainer's hidden
width is 2048 for every backbone; ours defaults to the backbone width (the same for
ResNet-50): pass ``hidden=2048`` to load one of its ResNet-18 checkpoints.

Embeddings for clustering and exploration are the encoder features (:meth:`SimCLR.embed`), not
the projection, as in SimCLR and in the trainer.

>>> torch.manual_seed(0) is not None
True
>>> model = SimCLR("resnet18", out_dim=16)
>>> model(torch.randn(3, 1, 64, 64)).shape, model.embed(torch.randn(3, 1, 64, 64)).shape
(torch.Size([3, 16]), torch.Size([3, 512]))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_cryolearn.models.resnet import resnet


class ProjectionHead(nn.Module):
    """``projection``: Linear(in_dim, hidden) · ReLU · Linear(hidden, out_dim)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.projection = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x)


class SimCLR(nn.Module):
    """ResNet encoder and SimCLR projection head.

    Parameters
    ----------
    backbone:
        ``"resnet18"``, ``"resnet34"`` or ``"resnet50"`` (the trainer: ``"resnet50"``).
    in_channels:
        1 for micrographs, 3 for RGB images.
    hidden:
        Hidden width of the projection head; ``None``: the encoder's feature width.
    out_dim:
        Width of the projection the loss sees (128).
    """

    def __init__(self, backbone: str = "resnet18", *, in_channels: int = 1, hidden: int | None = None,
                 out_dim: int = 128) -> None:
        super().__init__()
        self.encoder = resnet(backbone, in_channels=in_channels)
        f = self.encoder.feature_dim
        self.projection_head = ProjectionHead(f, f if hidden is None else int(hidden), out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, out_dim): the projection (not normalised; :func:`nt_xent` does that)."""
        return self.projection_head(self.encoder.forward_features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, feature_dim): the encoder features, the embedding for downstream use."""
        return self.encoder.forward_features(x)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent loss of two views' projections (N, d) each, any N ≥ 1.

    The 2N rows ``[z1; z2]`` are L2-normalised; their cosine similarities divided by
    ``temperature`` are the logits of a 2N-way classification per row whose answer is the other
    view of the same image (row i ↔ row i ± N), with the row itself left out. The cross
    entropy is summed over the 2N rows and divided by 2N. The mask is built for each call, so
    the last, smaller batch of an epoch needs no ``drop_last``.

    A batch of one image has no negatives: its loss is 0.

    >>> z = torch.eye(3)
    >>> round(float(nt_xent(z, z, temperature=0.5)), 4)   # log(1 + 4·e^−2)
    0.4327
    """
    if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] < 1:
        raise ValueError(f"nt_xent needs two (N, d) batches of the same shape, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T) / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    other_view = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, other_view, reduction="sum") / (2 * n)

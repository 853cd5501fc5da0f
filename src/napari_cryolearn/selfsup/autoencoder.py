"""The regularised 4D-STEM autoencoder (after m3_learning's STEM_AE), its losses and metrics.

Network (:class:`StemAutoencoder`), for patterns (B, 1, Ky, Kx) on the normalised [0, 1] scale:

- encoder: conv 1 → width/2 → width (3 × 3, ReLU); three residual blocks (two 3 × 3 convs and
  the identity, ReLU), each followed by a ÷4 max-pool; conv width → width/2 → 1; adaptive
  average pool to 4 × 4; Linear(16, latent) + ReLU, so the latent is non-negative.
- decoder: Linear(latent, width·16) → (width, 4, 4); three residual blocks each upsampling
  ×4 (bilinear) first; conv width → 1 with no output activation; resized (bilinear) to the
  input size.

The reference (``width`` 128, a 256 × 256 detector) pools 256 → 64 → 16 → 4 and upsamples
4 → 16 → 64 → 256. Small detectors must not pool to nothing, so the pooling adapts: a block
pools an axis by 4 only when the result keeps at least 4 pixels on it (a side ≥ 16), else it
does not pool that axis; 32 × 32 pools once to 8 × 8, 24 × 20 to 6 × 5, 16 × 16 to 4 × 4, 256 ×
256 exactly as the reference. Likewise the decoder's blocks end at the detector's size, each earlier one a
factor 4 smaller but never below 4 (4 → 4 → 8 → 32 for 32 pixels), so the full resolution is
computed once and never exceeded; the reference's sizes (4 → 16 → 64 → 256) are unchanged.

Losses (pure functions, the original STEM_AE definitions, ``B`` the batch size):

- :func:`activity_loss` ``Σ|z| / B``;
- :func:`similarity_loss` ``Σ_i (Σ_j cos(z_i, z_j) − 1) / (2B)`` over the non-zero rows;
- :func:`divergence_loss` ``(1/B) Σ_i Σ_{a,b} |z_ia − z_ib| / 2`` over the channels that are
  non-zero somewhere in the batch;
- :func:`ae_loss` ``MSE + λ_act·L_act + λ_sim·L_sim − λ_div·L_div``.

Metrics: :func:`psnr` and :func:`ssim` per pattern, mean over the batch; they agree with
scikit-image's ``peak_signal_noise_ratio`` and ``structural_similarity(data_range=...)``
(7 × 7 uniform window, sample covariance, K1 0.01, K2 0.03, the mean over the window's valid
region).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "StemAutoencoder",
    "activity_loss",
    "ae_loss",
    "divergence_loss",
    "pool_factors",
    "psnr",
    "similarity_loss",
    "ssim",
    "upsample_sizes",
]


def pool_factors(shape: Sequence[int], *, blocks: int = 3, factor: int = 4, keep: int = 4) -> list[tuple[int, int]]:
    """The (y, x) max-pool of each encoder block for a detector of ``shape``: ``factor`` on an axis
    while the pooled side keeps at least ``keep`` pixels, else 1.

    >>> pool_factors((256, 256)), pool_factors((32, 32)), pool_factors((24, 20))
    ([(4, 4), (4, 4), (4, 4)], [(4, 4), (1, 1), (1, 1)], [(4, 4), (1, 1), (1, 1)])
    """
    sides = [int(s) for s in shape]
    out = []
    for _ in range(blocks):
        f = tuple(factor if s // factor >= keep else 1 for s in sides)
        sides = [s // k for s, k in zip(sides, f)]
        out.append(f)
    return out


def upsample_sizes(shape: Sequence[int], *, blocks: int = 3, start: int = 4, factor: int = 4) -> list[tuple[int, int]]:
    """The (y, x) size after each decoder block for a detector of ``shape``: the last block
    reaches the detector's size, each earlier one ``factor`` times less (never below ``start``),
    so that the full resolution is only computed once.

    >>> upsample_sizes((256, 256)), upsample_sizes((32, 32)), upsample_sizes((24, 20))
    ([(16, 16), (64, 64), (256, 256)], [(4, 4), (8, 8), (32, 32)], [(4, 4), (6, 5), (24, 20)])
    """
    out = []
    for k in range(blocks):
        div = factor ** (blocks - 1 - k)
        out.append(tuple(max(start, -(-int(t) // div)) for t in shape))
    return out


class _Residual(nn.Module):
    """Two 3 × 3 convs (ReLU between) plus the identity, then ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class StemAutoencoder(nn.Module):
    """The autoencoder of the module docstring for a ``detector_shape`` (Ky, Kx) and ``latent``
    channels; ``width`` channels in the residual blocks (the reference: 128).

    >>> m = StemAutoencoder(latent=8, detector_shape=(24, 20), width=16)
    >>> recon, z = m(torch.rand(3, 1, 24, 20))
    >>> tuple(recon.shape), tuple(z.shape), bool((z >= 0).all())
    ((3, 1, 24, 20), (3, 8), True)
    """

    def __init__(self, latent: int = 32, detector_shape: Sequence[int] = (256, 256), *, width: int = 128) -> None:
        super().__init__()
        if len(detector_shape) != 2 or min(int(s) for s in detector_shape) < 1:
            raise ValueError(f"detector_shape must be (Ky, Kx), got {detector_shape!r}")
        if width < 2 or latent < 1:
            raise ValueError(f"width ≥ 2 and latent ≥ 1 expected, got width {width}, latent {latent}")
        self.latent = int(latent)
        self.width = int(width)
        self.detector_shape = tuple(int(s) for s in detector_shape)
        half = max(1, width // 2)
        self.enc_in = nn.Sequential(nn.Conv2d(1, half, 3, padding=1), nn.ReLU(),
                                    nn.Conv2d(half, width, 3, padding=1), nn.ReLU())
        self.enc_blocks = nn.ModuleList(_Residual(width) for _ in range(3))
        self.pools = pool_factors(self.detector_shape)
        self.enc_out = nn.Sequential(nn.Conv2d(width, half, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(half, 1, 3, padding=1), nn.AdaptiveAvgPool2d((4, 4)))
        self.enc_fc = nn.Linear(16, latent)
        self.dec_fc = nn.Linear(latent, width * 16)
        self.dec_blocks = nn.ModuleList(_Residual(width) for _ in range(3))
        self.sizes = upsample_sizes(self.detector_shape)
        self.dec_out = nn.Conv2d(width, 1, 3, padding=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Patterns (B, 1, Ky, Kx) → latent (B, latent), non-negative."""
        h = self.enc_in(x)
        for block, pool in zip(self.enc_blocks, self.pools):
            h = block(h)
            if pool != (1, 1):
                h = F.max_pool2d(h, pool)
        h = self.enc_out(h).flatten(1)
        return F.relu(self.enc_fc(h))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (B, latent) → patterns (B, 1, Ky, Kx) (no output activation)."""
        h = self.dec_fc(z).view(z.shape[0], self.width, 4, 4)
        for block, size in zip(self.dec_blocks, self.sizes):
            if tuple(h.shape[-2:]) != size:
                h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
            h = block(h)
        out = self.dec_out(h)
        if tuple(out.shape[-2:]) != self.detector_shape:
            out = F.interpolate(out, size=self.detector_shape, mode="bilinear", align_corners=False)
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reconstruction, latent)`` of patterns ``x``."""
        z = self.encode(x)
        return self.decode(z), z


# ---------------------------------------------------------------------------------------------
# losses


def activity_loss(z: torch.Tensor) -> torch.Tensor:
    """``Σ|z| / B``: the batch L1 of the latent (sparse activations).

    >>> float(activity_loss(torch.tensor([[1.0, -2.0], [0.0, 3.0]])))
    3.0
    """
    return z.abs().sum() / z.shape[0]


def similarity_loss(z: torch.Tensor) -> torch.Tensor:
    """``Σ_i (Σ_j cos(z_i, z_j) − 1) / (2B)`` over the rows of ``z`` (B, C) that are not all zero:
    the similarity between the latents of different patterns (0 for orthogonal latents).

    >>> float(similarity_loss(torch.eye(3)))
    0.0
    >>> round(float(similarity_loss(torch.ones(4, 2))), 4)  # 4 identical rows: 4·3 / 8
    1.5
    """
    b = z.shape[0]
    rows = z[(z != 0).any(dim=1)]
    if rows.shape[0] == 0:
        return z.sum() * 0.0
    unit = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = unit @ unit.T
    return (cos.sum(dim=1) - 1).sum() / (2 * b)


def divergence_loss(z: torch.Tensor, *, scale_free: bool = False) -> torch.Tensor:
    """``(1/B) Σ_i Σ_{a,b} |z_ia − z_ib| / 2`` over the channels of ``z`` (B, C) that are non-zero
    somewhere in the batch: the spread between the latent channels within each sample (0 when
    every channel of a sample has one value).

    ``scale_free``: each sample's latent is first divided by its L1 norm, and the sum by C − 1
    (C the channels counted), so the term measures how the sample's activity is spread over the
    channels, not its size: in [0, 1] (0 for equal channels, 1 for one active channel). The
    original term grows with the latent's scale faster than the activity term shrinks it, so,
    subtracted at its documented weight, it makes the loss unbounded below (:func:`ae_loss`).

    >>> float(divergence_loss(torch.tensor([[1.0, 3.0, 0.0]])))  # channel 3 is zero: |1 − 3|
    2.0
    >>> float(divergence_loss(torch.tensor([[1.0, 3.0, 0.0]]), scale_free=True))  # |0.25 − 0.75|
    0.5
    """
    b = z.shape[0]
    cols = z[:, (z != 0).any(dim=0)]
    if cols.shape[1] == 0:
        return z.sum() * 0.0
    if scale_free:
        cols = cols / cols.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)
    diff = (cols[:, :, None] - cols[:, None, :]).abs()
    spread = diff.sum() / 2 / b
    return spread / max(cols.shape[1] - 1, 1) if scale_free else spread


def ae_loss(x: torch.Tensor, recon: torch.Tensor, z: torch.Tensor, *, lambda_act: float = 1e-4,
            lambda_sim: float = 5e-5, lambda_div: float = 2e-4, divergence: str = "scale_free") -> dict[str, torch.Tensor]:
    """The regularised loss ``total = mse + λ_act·act + λ_sim·sim − λ_div·div``, with each term:
    a dict ``mse, act, sim, div, total``. ``divergence``: ``"scale_free"`` (default) or
    ``"original"`` (m3_learning's, unbounded below at the documented weights; see
    :func:`divergence_loss`)."""
    if divergence not in ("scale_free", "original"):
        raise ValueError(f"divergence must be 'scale_free' or 'original', got {divergence!r}")
    mse = F.mse_loss(recon, x)
    act, sim = activity_loss(z), similarity_loss(z)
    div = divergence_loss(z, scale_free=divergence == "scale_free")
    total = mse + lambda_act * act + lambda_sim * sim - lambda_div * div
    return {"mse": mse, "act": act, "sim": sim, "div": div, "total": total}


# ---------------------------------------------------------------------------------------------
# metrics


def _as_images(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"expected (B, 1, H, W), (B, H, W) or (H, W), got {tuple(x.shape)}")
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"expected (B, 1, H, W), (B, H, W) or (H, W), got {tuple(x.shape)}")
    return x.double()


def psnr_per_pattern(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB of each pattern of ``y`` against ``x`` (B,): ``10·log10(range² / MSE)``."""
    x, y = _as_images(x), _as_images(y)
    mse = ((x - y) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """The mean over the batch of :func:`psnr_per_pattern` (as ``skimage.metrics.
    peak_signal_noise_ratio(x_i, y_i, data_range=...)``)."""
    return psnr_per_pattern(x, y, data_range=data_range).mean()


def ssim_per_pattern(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, win_size: int = 7,
                     k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """SSIM of each pattern (B,), computed as scikit-image's ``structural_similarity`` with its
    defaults: a ``win_size`` uniform window, sample covariance (``N/(N−1)``), and the mean of
    the SSIM map over the pixels at least ``(win_size − 1)/2`` from the border. In float64."""
    x, y = _as_images(x), _as_images(y)
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size} × {win_size}, got {tuple(x.shape[-2:])}")
    x, y = x[:, None], y[:, None]
    n = win_size**2
    cov_norm = n / (n - 1)

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, win_size, stride=1)

    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """The mean over the batch of :func:`ssim_per_pattern`."""
    return ssim_per_pattern(x, y, data_range=data_range).mean()

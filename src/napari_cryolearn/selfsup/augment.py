"""Augmentations of micrographs and of their power spectra for SimSiam and SimCLR, in torch.

Each transform is a small callable ``t(x, generator=None)`` on a float tensor (C, H, W) or a
batch (B, C, H, W); random parameters are drawn per image from ``generator`` (a
``torch.Generator``, a ``numpy.random.Generator`` or None for torch's global generator, which
a ``DataLoader`` seeds per worker). Geometric transforms resample once with
``torch.nn.functional.grid_sample`` (bilinear), so a batch of 64 images of 128^2 takes
milliseconds on a CPU.

The recipes are prismpyp's (``reference/ssl.md``), on grey float images instead of 8-bit RGB:

- :func:`real_space_recipe`: RandomResizedCrop (scale 0.8-1) -> h/v flips p 0.5 -> rotation
  +-60 degrees -> intensity jitter 0.2 -> Gaussian blur sigma 0.1-0.5 px (always).
- :func:`fourier_recipe`: resize -> high-pass p 0.5 (blank a disk of radius
  ``size * pixel_size / 20`` px: frequencies below 1/20 per Angstrom) -> CLAHE (clip 0.02,
  5 x 5 tiles) or sharpen x3, p 0.3 each, exclusive -> centred RandomResizedCrop (scale
  0.9-1) -> h/v flips -> radial stretch x U(0.8, 1.2) p 0.5. Every step keeps the spectrum's
  origin at pixel ``(S // 2, S // 2)``: no translation, no rotation, so Friedel symmetry
  survives (prismpyp's torchvision crop is not centred and moves the origin by up to 5 %).
- :func:`simclr_recipe`: RandomResizedCrop (0.08-1) -> h-flip -> strong intensity jitter
  (0.8, p 0.8) -> Gaussian blur sigma 0.1-2 px (prism-h's kernel of 23 px).

Wrap a recipe in :class:`TwoViews` for the two views of a Siamese network.

Example
-------
>>> import torch
>>> views = TwoViews(real_space_recipe(32))
>>> x = torch.randn(1, 48, 48)
>>> a, b = views(x, torch.Generator().manual_seed(0))
>>> a.shape, b.shape, bool(torch.equal(a, b))
(torch.Size([1, 32, 32]), torch.Size([1, 32, 32]), False)
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F


def _torch_generator(generator) -> torch.Generator | None:
    if isinstance(generator, np.random.Generator):
        return torch.Generator().manual_seed(int(generator.integers(0, 2**63 - 1)))
    return generator


def _rand(n: int, generator, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)


def _batch(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if x.ndim == 3:
        return x[None], True
    if x.ndim != 4:
        raise ValueError(f"expected a (C, H, W) or (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    return x, False


def _unbatch(x: torch.Tensor, single: bool) -> torch.Tensor:
    return x[0] if single else x


def _sample(x, matrix, centre_in, centre_out, out_hw, padding_mode="zeros"):
    """Resample a batch: input pixel = ``matrix @ (output pixel - centre_out) + centre_in``.

    Pixel coordinates are (y, x), pixel centres at integers; ``matrix`` (B, 2, 2),
    ``centre_in`` (B, 2), ``centre_out`` (2,).
    """
    b, _, h, w = x.shape
    oh, ow = out_hw
    # straight to grid_sample's normalised (x, y) in [-1, 1] (align_corners=False): one affine map
    m = matrix.to(torch.float32)
    cin = centre_in.to(torch.float32)
    py = (torch.arange(oh, dtype=torch.float32) - centre_out[0]).view(1, oh, 1)
    px = (torch.arange(ow, dtype=torch.float32) - centre_out[1]).view(1, 1, ow)
    qy = m[:, 0, 0].view(b, 1, 1) * py + m[:, 0, 1].view(b, 1, 1) * px + cin[:, 0].view(b, 1, 1)
    qx = m[:, 1, 0].view(b, 1, 1) * py + m[:, 1, 1].view(b, 1, 1) * px + cin[:, 1].view(b, 1, 1)
    grid = torch.stack([(2 * qx + 1) / w - 1, (2 * qy + 1) / h - 1], dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


class Compose:
    """Apply transforms in order, each with the same generator."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, x, generator=None):
        g = _torch_generator(generator)
        for t in self.transforms:
            x = t(x, g)
        return x

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(type(t).__name__ for t in self.transforms) + ")"


class TwoViews:
    """Two independent draws of ``transform`` of the same image: ``(view1, view2)``."""

    def __init__(self, transform: Callable):
        self.transform = transform

    def __call__(self, x, generator=None):
        g = _torch_generator(generator)
        return self.transform(x, g), self.transform(x, g)


class Resize:
    """Resize to ``size`` x ``size`` (bilinear, antialiased when shrinking); with ``origin=True``
    the pixel ``(H // 2, W // 2)`` (a centred spectrum's zero frequency) goes to
    ``(size // 2, size // 2)``."""

    def __init__(self, size: int, origin: bool = False):
        self.size, self.origin = int(size), origin

    def __call__(self, x, generator=None):
        x, single = _batch(x)
        h, w = x.shape[-2:]
        if (h, w) == (self.size, self.size):
            return _unbatch(x, single)
        if not self.origin:
            out = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                antialias=self.size < min(h, w))
            return _unbatch(out, single)
        m = torch.diag(torch.tensor([h / self.size, w / self.size], dtype=torch.float64)).expand(len(x), 2, 2)
        c_in = torch.tensor([h // 2, w // 2], dtype=torch.float64).expand(len(x), 2)
        c = self.size // 2
        return _unbatch(_sample(x, m, c_in, (c, c), (self.size, self.size), "border"), single)


class RandomResizedCrop:
    """Crop a random area (``scale`` of the image, aspect ``ratio``) and resize it to ``size``.

    ``centred=True`` keeps the crop centred on pixel ``(H // 2, W // 2)`` (zoom and aspect only,
    no translation: for spectra).
    """

    def __init__(self, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), centred: bool = False):
        self.size, self.scale, self.ratio, self.centred = int(size), scale, ratio, centred

    def __call__(self, x, generator=None):
        x, single = _batch(x)
        b, _, h, w = x.shape
        area = _rand(b, generator, *self.scale)
        log_r = _rand(b, generator, math.log(self.ratio[0]), math.log(self.ratio[1]))
        r = torch.exp(log_r)
        ch = torch.clamp(torch.sqrt(area / r), max=1.0) * h  # crop height and width, pixels
        cw = torch.clamp(torch.sqrt(area * r), max=1.0) * w
        s = self.size
        m = torch.zeros(b, 2, 2, dtype=torch.float64)
        m[:, 0, 0], m[:, 1, 1] = ch / s, cw / s
        if self.centred:
            c_in = torch.tensor([h // 2, w // 2], dtype=torch.float64).expand(b, 2)
            c_out = (s // 2, s // 2)
        else:
            cy = (ch / 2 + _rand(b, generator) * (h - ch)) - 0.5
            cx = (cw / 2 + _rand(b, generator) * (w - cw)) - 0.5
            c_in = torch.stack([cy, cx], dim=1)
            c_out = ((s - 1) / 2, (s - 1) / 2)
        return _unbatch(_sample(x, m, c_in, c_out, (s, s), "border"), single)


class RandomFlip:
    """Flip left-right with probability ``p_h`` and up-down with ``p_v``, per image.

    ``origin=True`` mirrors about pixel ``S // 2`` (a centred spectrum's origin; row and column
    0 wrap around) instead of about the image centre, so the origin stays put.
    """

    def __init__(self, p_h: float = 0.5, p_v: float = 0.5, origin: bool = False):
        self.p_h, self.p_v, self.origin = p_h, p_v, origin

    def _flip(self, x, dim):
        y = torch.flip(x, dims=(dim,))
        return torch.roll(y, 1, dims=dim) if self.origin and x.shape[dim] % 2 == 0 else y

    def __call__(self, x, generator=None):
        x, single = _batch(x)
        b = len(x)
        h = (_rand(b, generator) < self.p_h).view(b, 1, 1, 1)
        v = (_rand(b, generator) < self.p_v).view(b, 1, 1, 1)
        x = torch.where(h, self._flip(x, 3), x)
        x = torch.where(v, self._flip(x, 2), x)
        return _unbatch(x, single)


class RandomRotation:
    """Rotate by a uniform angle in ``[-degrees, degrees]`` about the image centre; corners
    outside the image are filled with 0 (a normalised image's mean)."""

    def __init__(self, degrees: float = 60.0):
        self.degrees = float(degrees)

    def __call__(self, x, generator=None):
        x, single = _batch(x)
        b, _, h, w = x.shape
        a = torch.deg2rad(_rand(b, generator, -self.degrees, self.degrees))
        m = torch.stack([torch.stack([a.cos(), -a.sin()], -1), torch.stack([a.sin(), a.cos()], -1)], 1)
        c = ((h - 1) / 2, (w - 1) / 2)
        c_in = torch.tensor(c, dtype=torch.float64).expand(b, 2)
        return _unbatch(_sample(x, m, c_in, c, (h, w), "zeros"), single)


class IntensityJitter:
    """With probability ``p``: contrast x U(1 - contrast, 1 + contrast) about the image mean,
    then brightness + U(-brightness, brightness) standard deviations.

    torchvision's ColorJitter on 8-bit images multiplies (brightness) and blends with the mean
    (contrast); on zero-mean float images a multiplication is a contrast change, so brightness
    is a shift here. Saturation and hue have no meaning in grey images.
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, p: float = 1.0):
        self.brightness, self.contrast, self.p = brightness, contrast, p

    def __call__(self, x, generator=None):
        x, single = _batch(x)
        b = len(x)
        shape = (b, 1, 1, 1)
        on = (_rand(b, generator) < self.p).view(shape)
        c = _rand(b, generator, 1 - self.contrast, 1 + self.contrast).view(shape).to(x.dtype)
        d = _rand(b, generator, -self.brightness, self.brightness).view(shape).to(x.dtype)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        y = (x - mean) * c + mean + d * std
        return _unbatch(torch.where(on, y, x), single)


class GaussianBlur:
    """With probability ``p``, blur with a Gaussian of sigma U(``sigma``) pixels (per image),
    reflecting at the edges."""

    def __init__(self, sigma=(0.1, 0.5), p: float = 1.0):
        self.sigma, self.p = sigma, p

    def __call__(self, x, generator=None):
        x, single = _batch(x)
        b, c, h, w = x.shape
        sig = _rand(b, generator, *self.sigma)
        on = _rand(b, generator) < self.p
        radius = max(1, int(math.ceil(3 * self.sigma[1])))
        radius = min(radius, (min(h, w) - 1) // 2)
        t = torch.arange(-radius, radius + 1, dtype=torch.float64)
        k = torch.exp(-(t[None] ** 2) / (2 * sig[:, None] ** 2))
        k = k / k.sum(1, keepdim=True)
        k = torch.where(on[:, None], k, (t == 0).to(k.dtype)[None])  # identity where off
        k = k.repeat_interleave(c, 0).to(x.dtype)  # (B*C, K)
        y = x.reshape(1, b * c, h, w)
        y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=b * c)
        y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=b * c)
        return _unbatch(y.reshape(b, c, h, w), single)


class HighPass:
    """With probability ``p``, blank the disk of ``radius`` pixels about a centred spectrum's
    origin ``(H // 2, W // 2)``, to the image's minimum (prismpyp's black)."""

    def __init__(self, radius: float, p: float = 0.5):
        self.radius, self.p = float(radius), p

    def __call__(self, x, generator=None):
        x, single = _batch(x)
        b, _, h, w = x.shape
        on = (_rand(b, generator) < self.p).view(b, 1, 1, 1)
        yy, xx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
        disk = (yy**2 + xx**2 < self.radius**2).view(1, 1, h, w)
        low = x.amin(dim=(1, 2, 3), keepdim=True)
        return _unbatch(torch.where(on & disk, low, x), single)


def _clahe(image: torch.Tensor, clip: float, tiles: int) -> torch.Tensor:
    from skimage.exposure import equalize_adapthist

    a = image.detach().cpu().double().numpy()
    lo, hi = a.min(), a.max()
    if hi <= lo:
        return image
    out = equalize_adapthist((a - lo) / (hi - lo), kernel_size=max(a.shape[-1] // tiles, 2), clip_limit=clip)
    out = torch.from_numpy(out).to(image.dtype)
    # back to the input's mean and spread
    return (out - out.mean()) / out.std().clamp_min(1e-12) * image.std() + image.mean()


def _sharpen(x: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision's adjust_sharpness: blend with the 3 x 3 smoothed image ([1 1 1; 1 5 1; 1 1 1]/13)."""
    k = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=x.dtype) / 13
    c = x.shape[1]
    smooth = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(c, 1, 3, 3), groups=c)
    return smooth + factor * (x - smooth)


class ClaheOrSharpen:
    """Contrast-limited adaptive histogram equalisation (probability ``p_clahe``) or sharpening by
    ``factor`` (probability ``p_sharpen``), never both. CLAHE is scikit-image's
    ``equalize_adapthist`` (clip ``clip`` of [0, 1] images, ``tiles`` x ``tiles`` regions), and
    keeps the image's mean and std."""

    def __init__(self, p_clahe: float = 0.3, p_sharpen: float = 0.3, clip: float = 0.02, tiles: int = 5,
                 factor: float = 3.0):
        self.p_clahe, self.p_sharpen, self.clip, self.tiles, self.factor = p_clahe, p_sharpen, clip, tiles, factor

    def __call__(self, x, generator=None):
        x, single = _batch(x)
        u = _rand(len(x), generator)
        out = x.clone()
        sharp = (u >= self.p_clahe) & (u < self.p_clahe + self.p_sharpen)
        if sharp.any():
            out[sharp] = _sharpen(x[sharp], self.factor)
        for i in torch.nonzero(u < self.p_clahe).flatten().tolist():
            out[i] = torch.stack([_clahe(ch, self.clip, self.tiles) for ch in x[i]])
        return _unbatch(out, single)


class RadialStretch:
    """With probability ``p``, stretch a centred spectrum about its origin by U(``factor``):
    output radius ``r`` shows input radius ``r * f`` (f > 1 shrinks the rings)."""

    def __init__(self, factor=(0.8, 1.2), p: float = 0.5):
        self.factor, self.p = factor, p

    def __call__(self, x, generator=None):
        x, single = _batch(x)
        b, _, h, w = x.shape
        f = _rand(b, generator, *self.factor)
        on = _rand(b, generator) < self.p
        f = torch.where(on, f, torch.ones_like(f))
        m = f.view(b, 1, 1) * torch.eye(2, dtype=torch.float64)
        c = (h // 2, w // 2)
        c_in = torch.tensor(c, dtype=torch.float64).expand(b, 2)
        y = _sample(x, m, c_in, c, (h, w), "border")
        return _unbatch(torch.where(on.view(b, 1, 1, 1), y, x), single)


def real_space_recipe(size: int) -> Compose:
    """prismpyp's real-space augmentation of micrographs, to ``size`` x ``size``."""
    return Compose([
        RandomResizedCrop(size, scale=(0.8, 1.0)),
        RandomFlip(0.5, 0.5),
        RandomRotation(60.0),
        IntensityJitter(0.2, 0.2),
        GaussianBlur((0.1, 0.5)),
    ])


def fourier_recipe(size: int, pixel_size: float, cutoff: float = 20.0) -> Compose:
    """prismpyp's Fourier-space augmentation of centred power spectra, to ``size`` x ``size``.

    ``pixel_size`` (Angstrom) is the micrograph's: the high-pass blanks frequencies below
    ``1 / cutoff`` per Angstrom, a disk of ``size * pixel_size / cutoff`` pixels.
    """
    return Compose([
        Resize(size, origin=True),
        HighPass(size * float(pixel_size) / float(cutoff), p=0.5),
        ClaheOrSharpen(0.3, 0.3),
        RandomResizedCrop(size, scale=(0.9, 1.0), centred=True),
        RandomFlip(0.5, 0.5, origin=True),
        RadialStretch((0.8, 1.2), p=0.5),
    ])


def simclr_recipe(size: int) -> Compose:
    """The SimCLR trainer's augmentation (prism-h), grey: crop 0.08-1, h-flip, strong jitter."""
    return Compose([
        RandomResizedCrop(size, scale=(0.08, 1.0)),
        RandomFlip(0.5, 0.0),
        IntensityJitter(0.8, 0.8, p=0.8),
        GaussianBlur((0.1, 2.0)),
    ])

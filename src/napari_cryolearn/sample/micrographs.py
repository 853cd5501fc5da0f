"""Synthetic 2D cryo-EM micrographs of a few visually distinct kinds, made from arrays alone.

Each image is a projection of a scene of one kind: vesicles (projected lipid shells, a dark
rim around a paler lumen), filaments (straight projected hollow tubes, like microtubules),
particles (scattered compact projected spheres) or ice (only low-frequency thickness
variation). Every kind sits on the same low-frequency ice background; the projection is
blurred by the point-spread function, noise is added at a chosen SNR, the contrast is
inverted (dense = dark) and each image is normalised to zero mean and unit standard deviation.

Axis order is (y, x); sizes are in Angstrom and converted to pixels with ``pixel_size``.

Example
-------
>>> stack = make_micrographs(n=8, size=64, seed=0)
>>> stack.images.shape, [stack.kind_names[k] for k in stack.kinds[:4]]
((8, 64, 64), ['vesicles', 'filaments', 'particles', 'ice'])
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_cryolearn.engine.errors import InputError

MICROGRAPH_KINDS: tuple[str, ...] = ("vesicles", "filaments", "particles", "ice")

# Physical sizes, Angstrom.
MEMBRANE_THICKNESS_A = 45.0
FILAMENT_RADIUS_A = (110.0, 130.0)  # outer radius of a hollow, microtubule-like tube
FILAMENT_WALL_A = 50.0
FILAMENT_REPEAT_A = (55.0, 75.0)
PARTICLE_DIAMETER_A = (80.0, 120.0)
RESOLUTION_SIGMA_A = 8.0
ICE_SIGMA_A = 80.0
ICE_STD = 1.0  # in the projected-thickness units of the objects (pixels of matter)

_MIN_SIZE = 16


@dataclass
class MicrographStack:
    """A stack of synthetic micrographs.

    Attributes
    ----------
    images : (N, H, W) float32
        Each image zero mean and unit standard deviation; dense matter is dark.
    kinds : (N,) int64
        Index of each image's kind into ``kind_names``.
    kind_names : tuple[str, ...]
        Names of the kinds, ``MICROGRAPH_KINDS``.
    pixel_size : float
        Angstrom per pixel.
    """

    images: np.ndarray
    kinds: np.ndarray
    kind_names: tuple[str, ...]
    pixel_size: float


def _sphere_projection(r2: np.ndarray, radius: float) -> np.ndarray:
    """Projected thickness (pixels) of a solid sphere at squared distance ``r2`` from its axis."""
    return 2.0 * np.sqrt(np.maximum(radius * radius - r2, 0.0))


def _vesicles(rng: np.random.Generator, yy, xx, size: int, pixel_size: float) -> np.ndarray:
    """1-3 projected lipid shells of outer radius 18-38 % of the image size."""
    out = np.zeros((size, size))
    thickness = MEMBRANE_THICKNESS_A / pixel_size
    for _ in range(int(rng.integers(1, 4))):
        r_out = rng.uniform(0.18, 0.38) * size
        r_in = max(r_out - thickness, 0.0)
        cy, cx = rng.uniform(0.1 * size, 0.9 * size, size=2)
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        out += _sphere_projection(r2, r_out) - _sphere_projection(r2, r_in)
    return out


def _filaments(rng: np.random.Generator, yy, xx, size: int, pixel_size: float) -> np.ndarray:
    """1-2 straight projected hollow tubes (microtubule-like: two dense walls seen edge-on)
    across the image, with a density repeat along their length."""
    out = np.zeros((size, size))
    for _ in range(int(rng.integers(1, 3))):
        r_out = rng.uniform(*FILAMENT_RADIUS_A) / pixel_size
        r_in = max(r_out - FILAMENT_WALL_A / pixel_size, 0.0)
        repeat = rng.uniform(*FILAMENT_REPEAT_A) / pixel_size
        angle = rng.uniform(0, math.pi)
        cy, cx = rng.uniform(0.25 * size, 0.75 * size, size=2)
        along = (yy - cy) * math.sin(angle) + (xx - cx) * math.cos(angle)
        across2 = ((yy - cy) * math.cos(angle) - (xx - cx) * math.sin(angle)) ** 2
        modulation = 1.0 + 0.3 * np.cos(2 * math.pi * along / repeat + rng.uniform(0, 2 * math.pi))
        out += (_sphere_projection(across2, r_out) - _sphere_projection(across2, r_in)) * modulation
    return out


def _particles(rng: np.random.Generator, yy, xx, size: int, pixel_size: float) -> np.ndarray:
    """Scattered compact particles (projected spheres), about one per 250 pixels."""
    out = np.zeros((size, size))
    n = max(2, int(round(size * size / 250 * rng.uniform(0.7, 1.3))))
    for _ in range(n):
        radius = rng.uniform(*PARTICLE_DIAMETER_A) / pixel_size / 2
        cy, cx = rng.uniform(0, size, size=2)
        out += _sphere_projection((yy - cy) ** 2 + (xx - cx) ** 2, radius)
    return out


def _ice(rng: np.random.Generator, size: int, pixel_size: float) -> np.ndarray:
    """Low-frequency thickness variation with standard deviation ``ICE_STD``."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), ICE_SIGMA_A / pixel_size, mode="wrap")
    field -= field.mean()
    return field * (ICE_STD / max(float(field.std()), 1e-12))


_DRAW = {"vesicles": _vesicles, "filaments": _filaments, "particles": _particles}


def _check_number(value, name: str, integer: bool, minimum: float, strict: bool = False):
    if integer:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise InputError(f"expected an integer >= {minimum}, got {value!r}", field=name)
        return int(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"expected a number, got {value!r}", field=name) from None
    if not math.isfinite(v) or v < minimum or (strict and v == minimum):
        raise InputError(f"expected a finite number {'>' if strict else '>='} {minimum}, got {value!r}", field=name)
    return v


def make_micrographs(
    n: int = 32, size: int = 64, *, pixel_size: float = 10.0, seed: int = 0, snr: float = 1.0
) -> MicrographStack:
    """Make ``n`` noisy synthetic micrographs of the kinds in ``MICROGRAPH_KINDS``.

    Parameters
    ----------
    n : int
        Number of images; kinds go round-robin (image i has kind ``i % len(MICROGRAPH_KINDS)``).
    size : int
        Height and width in pixels, >= 16.
    pixel_size : float
        Angstrom per pixel; membranes are ~45 A thick, filaments hollow tubes ~220-260 A wide, particles
        ~80-120 A across, vesicle radii 18-38 % of ``size``.
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives identical images.
    snr : float
        Standard deviation of the blurred noise-free image over that of the noise, per image.

    Returns
    -------
    MicrographStack
        ``images`` (n, size, size) float32, each zero mean and unit std, dense = dark;
        ``kinds`` (n,) int64.

    Raises
    ------
    InputError
        For a parameter out of range.
    """
    n = _check_number(n, "n", integer=True, minimum=0)
    size = _check_number(size, "size", integer=True, minimum=_MIN_SIZE)
    pixel_size = _check_number(pixel_size, "pixel_size", integer=False, minimum=0.0, strict=True)
    seed = _check_number(seed, "seed", integer=True, minimum=0)
    snr = _check_number(snr, "snr", integer=False, minimum=0.0, strict=True)

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    sigma = max(0.5, RESOLUTION_SIGMA_A / pixel_size)
    kinds = np.arange(n, dtype=np.int64) % len(MICROGRAPH_KINDS)
    images = np.empty((n, size, size), dtype=np.float32)
    for i, k in enumerate(kinds):
        name = MICROGRAPH_KINDS[k]
        density = _ice(rng, size, pixel_size)
        if name in _DRAW:
            density += _DRAW[name](rng, yy, xx, size, pixel_size)
        signal = ndimage.gaussian_filter(density, sigma)
        noise = rng.standard_normal((size, size)) * (float(signal.std()) / snr)
        image = -(signal + noise)
        image -= image.mean()
        image /= max(float(image.std()), 1e-12)
        images[i] = image
    return MicrographStack(images=images, kinds=kinds, kind_names=MICROGRAPH_KINDS, pixel_size=pixel_size)

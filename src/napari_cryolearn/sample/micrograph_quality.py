"""Synthetic cryo-EM micrographs of four quality kinds, for label-free sorting benchmarks.

Every image is the same physics: particles (projected blobs of protein) in amorphous vitreous
ice, imaged as a weak phase object through the contrast transfer function (CTF) of a 300 kV
microscope at a random defocus, with a B-factor envelope, and recorded with shot (Poisson)
noise. Thon rings therefore appear in every power spectrum. The kinds add what makes a real
micrograph good or bad:

``vitreous``
    Nothing else: good ice.
``crystalline``
    Patches of crystalline (hexagonal) ice: a weak lattice of 3.90 Angstrom spacing (the
    (100) reflections of ice Ih), one orientation per crystallite, seen as Bragg spots at
    1/3.90 per Angstrom in the power spectrum and barely in the image.
``carbon``
    The carbon film beside the hole over part of the image (a circular-arc edge): amorphous
    texture much stronger than ice, so stronger Thon rings there, and stronger low-frequency
    contrast, slightly darker (thicker).
``contamination``
    Large, irregular, dark blobs of ice contamination (thick crystalline ice on the surface):
    a few percent of the beam gets through, with Fresnel fringes at their edges.

Each image is normalised to zero mean and unit standard deviation, and defocus, particle
count and size, ice-thickness gradient, dose, the position, orientation and area of every
feature are drawn per image, so that the kinds overlap in simple pixel statistics (see the
tests: percentiles alone do not sort them).

Sizes are physical (Angstrom) and converted with ``pixel_size``, except the contamination
blobs and carbon areas, which are drawn as fractions of the image: real ones are hundreds of
nm across, larger than a 256-pixel image at 1.5 Angstrom per pixel (38 nm).

Axis order is (y, x).

Example
-------
>>> stack = make_quality_micrographs(8, size=64, seed=0)
>>> stack.images.shape, stack.images.dtype, [stack.kind_names[k] for k in stack.kinds[:4]]
((8, 64, 64), dtype('float32'), ['vitreous', 'crystalline', 'carbon', 'contamination'])
>>> bool(0.8 <= stack.defocus.min() and stack.defocus.max() <= 3.0)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.sample.micrographs import _check_number

QUALITY_KINDS: tuple[str, ...] = ("vitreous", "crystalline", "carbon", "contamination")

#: Relativistic electron wavelength at 300 kV, Angstrom.
WAVELENGTH_A = 0.019687
#: Spherical aberration, Angstrom (2.7 mm).
CS_A = 2.7e7
#: Amplitude contrast fraction of ice and protein.
AMPLITUDE_CONTRAST = 0.07
#: Lattice spacing of the strongest in-plane reflections of hexagonal ice, Angstrom.
ICE_SPACING_A = 3.90
#: Ranges drawn per image.
DEFOCUS_UM = (0.8, 3.0)
B_FACTOR_A2 = (40.0, 120.0)
PARTICLE_DIAMETER_A = (60.0, 160.0)
#: Area fractions (of the image) of each kind's feature.
CRYSTAL_FRACTION = (0.25, 0.8)
CARBON_FRACTION = (0.2, 0.65)
CONTAMINATION_FRACTION = (0.06, 0.3)

#: Std of the amorphous-ice phase texture (phase units of a particle sub-blob's peak); carbon's
#: is this many times stronger.
ICE_TEXTURE = 0.5
CARBON_TEXTURE = (2.0, 4.0)
#: Amplitude of each of the lattice's three cosines, in units of the shot noise's std.
CRYSTAL_AMPLITUDE = (0.2, 0.4)
#: Fraction of the beam a crystallite scatters out of the objective aperture (Bragg reflections).
CRYSTAL_DARKENING = (0.02, 0.1)

_MIN_SIZE = 32


def _canvas(size: int) -> int:
    """Side of the canvas an image of ``size`` is cut from: 1.5 times larger, FFT-friendly."""
    n = scipy.fft.next_fast_len(size + 2 * (size // 4))
    return n + (n - size) % 2


@dataclass
class QualityStack:
    """A stack of synthetic micrographs of known quality kinds.

    Attributes
    ----------
    images : (N, H, W) float32
        Each image zero mean and unit standard deviation; dense matter is dark.
    kinds : (N,) int64
        Index of each image's kind into ``kind_names``.
    kind_names : tuple[str, ...]
        Names of the kinds (a subset of ``QUALITY_KINDS``, in the order asked for).
    pixel_size : float
        Angstrom per pixel.
    defocus : (N,) float64
        Mean defocus of each image, micrometres (underfocus positive).
    masks : (N, H, W) bool
        Where each image's defect is: crystalline patches, carbon film, contamination;
        all False for vitreous images.
    """

    images: np.ndarray
    kinds: np.ndarray
    kind_names: tuple[str, ...]
    pixel_size: float
    defocus: np.ndarray
    masks: np.ndarray

    @property
    def fraction(self) -> np.ndarray:
        """(N,) area fraction of each image's defect (0 for vitreous images)."""
        return self.masks.mean(axis=(1, 2))


def ctf(size: int, pixel_size: float, defocus_um: float, *, astigmatism_um: float = 0.0,
        astigmatism_angle: float = 0.0, b_factor: float = 0.0) -> np.ndarray:
    """Phase-contrast transfer function with envelope on the unshifted FFT grid of a square image.

    ``-[sqrt(1 - w^2) sin(chi) + w cos(chi)] * exp(-B k^2 / 4)`` with
    ``chi = pi lambda df k^2 - pi/2 Cs lambda^3 k^4`` (300 kV, Cs 2.7 mm, amplitude contrast
    ``w = 0.07``), ``k`` in 1/Angstrom; underfocus is positive ``defocus_um``. With this sign,
    dense matter (positive phase) is dark at low frequency.

    >>> t = ctf(128, 1.5, 1.0)
    >>> t.shape, round(float(t[0, 0]), 3)  # at k = 0 only amplitude contrast is left
    ((128, 128), -0.07)
    """
    return _Grid(size, pixel_size).ctf(defocus_um, astigmatism_um, astigmatism_angle, b_factor)


def _rfft(a: np.ndarray) -> np.ndarray:
    return scipy.fft.rfft2(np.asarray(a, dtype=np.float32), workers=-1)


def _irfft(a: np.ndarray, shape) -> np.ndarray:
    return scipy.fft.irfft2(a, s=shape, workers=-1)


class _Grid:
    """Coordinates and frequencies of a square canvas, computed once per stack."""

    def __init__(self, size: int, pixel_size: float, rfft: bool = False):
        self.size = size
        f = np.fft.fftfreq(size)  # cycles per pixel
        fx = np.fft.rfftfreq(size) if rfft else f
        ky, kx = np.meshgrid(f, fx, indexing="ij")
        dtype = np.float32 if rfft else np.float64  # single precision is plenty for the scenes
        self.k2_px = (ky * ky + kx * kx).astype(dtype)
        self.k2 = self.k2_px / dtype(pixel_size * pixel_size)  # 1/A^2
        self.angle = np.arctan2(ky, kx).astype(dtype)
        self.yy, self.xx = np.mgrid[0:size, 0:size].astype(np.float64)

    def ctf(self, defocus_um, astigmatism_um=0.0, astigmatism_angle=0.0, b_factor=0.0) -> np.ndarray:
        df = 1e4 * (defocus_um + 0.5 * astigmatism_um * np.cos(2 * (self.angle - astigmatism_angle)))
        k2 = self.k2
        chi = math.pi * WAVELENGTH_A * df * k2 - 0.5 * math.pi * CS_A * WAVELENGTH_A**3 * k2 * k2
        w = AMPLITUDE_CONTRAST
        return -(math.sqrt(1 - w * w) * np.sin(chi) + w * np.cos(chi)) * np.exp(-b_factor / 4 * k2)

    def blur(self, a: np.ndarray, sigma_px: float) -> np.ndarray:
        """Gaussian blur (periodic) through the FFT."""
        return _irfft(_rfft(a) * np.exp(-2 * math.pi**2 * sigma_px**2 * self.k2_px), a.shape)

    def smooth_noise(self, rng: np.random.Generator, sigma_px: float) -> np.ndarray:
        field = self.blur(rng.standard_normal((self.size, self.size)), sigma_px)
        return (field - field.mean()) / max(float(field.std()), 1e-12)


def _top_fraction(field: np.ndarray, fraction: float) -> np.ndarray:
    """The ``fraction`` of pixels where ``field`` is highest."""
    return field > np.quantile(field, 1.0 - fraction)


def _particles(rng: np.random.Generator, size: int, pixel_size: float) -> np.ndarray:
    """Projected phase of particles (one per ~1600 nm^2 on average, clustered 3-6 Gaussian
    sub-blobs each)."""
    out = np.zeros((size, size))
    area_nm2 = (size * pixel_size / 10) ** 2
    count = int(rng.poisson(area_nm2 / 1600 * rng.uniform(0.4, 2.0)))
    for _ in range(count):
        radius = rng.uniform(*PARTICLE_DIAMETER_A) / pixel_size / 2
        cy, cx = rng.uniform(0, size, size=2)
        for _ in range(int(rng.integers(3, 7))):
            oy, ox = rng.normal(0.0, radius / 2.5, size=2)
            s = radius * rng.uniform(0.3, 0.55)
            y0, x0 = cy + oy, cx + ox
            lo_y, hi_y = max(int(y0 - 3 * s), 0), min(int(y0 + 3 * s) + 1, size)
            lo_x, hi_x = max(int(x0 - 3 * s), 0), min(int(x0 + 3 * s) + 1, size)
            if lo_y >= hi_y or lo_x >= hi_x:
                continue
            yy = np.arange(lo_y, hi_y)[:, None] - y0
            xx = np.arange(lo_x, hi_x)[None, :] - x0
            out[lo_y:hi_y, lo_x:hi_x] += rng.uniform(0.6, 1.0) * np.exp(-(yy * yy + xx * xx) / (2 * s * s))
    return out


def _crystal(rng, g: _Grid, pixel_size: float, inner: slice):
    """(lattice contrast of unit amplitude, transmission, patch mask): crystallites of hexagonal
    ice, each its own orientation, over a drawn fraction of the image (``inner``: the image in
    the canvas)."""
    fraction = rng.uniform(*CRYSTAL_FRACTION)
    field = g.smooth_noise(rng, g.size / 12)
    mask = field > np.quantile(field[inner, inner], 1.0 - fraction)
    seeds = rng.uniform(0, g.size, size=(int(rng.integers(1, 4)), 2))
    nearest = np.argmin([(g.yy - sy) ** 2 + (g.xx - sx) ** 2 for sy, sx in seeds], axis=0)
    k = 2 * math.pi * pixel_size / ICE_SPACING_A  # radians per pixel
    lattice = np.zeros((g.size, g.size))
    loss = np.zeros((g.size, g.size))
    for i in range(len(seeds)):
        theta = rng.uniform(0, math.pi / 3)
        wave = sum(np.cos(k * (g.yy * math.sin(theta + j * math.pi / 3) + g.xx * math.cos(theta + j * math.pi / 3))
                          + rng.uniform(0, 2 * math.pi)) for j in range(3))
        lattice += wave * (nearest == i)
        # diffraction contrast: Bragg-scattered electrons miss the objective aperture, by how
        # much depends on the crystallite's orientation
        loss += rng.uniform(*CRYSTAL_DARKENING) * (nearest == i)
    soft = g.blur(mask.astype(float), 1.5)
    return lattice * soft, 1.0 - loss * soft, mask


def _carbon(rng, g: _Grid, inner: slice):
    """Carbon mask: outside a circular hole whose edge (radius 1-4 image widths) crosses the image."""
    fraction = rng.uniform(*CARBON_FRACTION)
    angle = rng.uniform(0, 2 * math.pi)
    radius = rng.uniform(1.0, 4.0) * g.size
    cy = g.size / 2 - math.sin(angle) * radius
    cx = g.size / 2 - math.cos(angle) * radius
    dist = np.hypot(g.yy - cy, g.xx - cx) + 1.5 * g.smooth_noise(rng, 4.0)
    return dist > np.quantile(dist[inner, inner], 1.0 - fraction)


def _contamination(rng, g: _Grid, inner: slice, size: int):
    """Contamination mask: one or two irregular compact blobs."""
    fraction = rng.uniform(*CONTAMINATION_FRACTION)
    field = 0.6 * g.smooth_noise(rng, size / 12)
    lo = inner.start
    centres = lo + rng.uniform(0.1 * size, 0.9 * size, size=(int(rng.integers(1, 3)), 2))
    pull = np.min([np.hypot(g.yy - cy, g.xx - cx) for cy, cx in centres], axis=0) / size
    field = field - 4.0 * pull
    return field > np.quantile(field[inner, inner], 1.0 - fraction)


def _image(rng, kind: str, g: _Grid, size: int, pixel_size: float, snr: float):
    """One noisy micrograph (float64, not normalised), its mean defocus (um) and defect mask.

    The scene is drawn on a canvas larger than the image (``g``) and the image is cut from its
    centre after the CTF, so that the CTF's delocalisation does not wrap edges into the image.
    """
    pad = (g.size - size) // 2
    inner = slice(pad, pad + size)
    defocus = rng.uniform(*DEFOCUS_UM)
    transfer = g.ctf(defocus, rng.uniform(0, 0.1), rng.uniform(0, math.pi), rng.uniform(*B_FACTOR_A2))
    shape = (g.size, g.size)
    # phase of the good sample: particles in amorphous ice (white texture at ~1 A)
    phase = _particles(rng, g.size, pixel_size) * rng.uniform(0.6, 1.0)
    texture_sigma = 1.0 / pixel_size
    phase += ICE_TEXTURE * g.blur(rng.standard_normal((g.size, g.size)), texture_sigma)
    # transmission: ice-thickness gradient (inelastic losses), +-3 %
    grad = rng.normal(size=2)
    transmission = 1.0 + rng.uniform(0, 0.06) * ((g.yy - g.size / 2) * grad[0] + (g.xx - g.size / 2) * grad[1]) \
        / size / np.hypot(*grad)
    base = _irfft(_rfft(phase) * transfer, shape) * 2
    noise_std = float(base[inner, inner].std()) / (snr * math.exp(rng.uniform(-0.3, 0.3)))
    mask = np.zeros((g.size, g.size), dtype=bool)
    extra_phase = None
    contrast = base
    if kind == "crystalline":
        lattice, bragg, mask = _crystal(rng, g, pixel_size, inner)
        contrast = contrast + rng.uniform(*CRYSTAL_AMPLITUDE) * noise_std * lattice
        transmission = transmission * bragg
    elif kind == "carbon":
        mask = _carbon(rng, g, inner)
        soft = g.blur(mask.astype(float), 1.0)
        texture = g.blur(rng.standard_normal((g.size, g.size)), texture_sigma)
        lowfreq = g.smooth_noise(rng, 20.0 / pixel_size)
        extra_phase = soft * (ICE_TEXTURE * rng.uniform(*CARBON_TEXTURE) * texture + rng.uniform(0.1, 0.4) * lowfreq
                              + rng.uniform(0.3, 1.0))
        transmission = transmission * (1.0 - rng.uniform(0.03, 0.1) * soft)
    elif kind == "contamination":
        mask = _contamination(rng, g, inner, size)
        thickness = g.blur(mask.astype(float), rng.uniform(2.0, 5.0))
        thickness *= rng.uniform(1.5, 3.5) * (1.0 + 0.1 * g.smooth_noise(rng, 3.0))
        extra_phase = 0.5 * thickness
        transmission = transmission * np.exp(-thickness)
    elif kind != "vitreous":
        raise InputError(f"unknown kind {kind!r}; expected one of {QUALITY_KINDS}", field="kinds")
    if extra_phase is not None:
        contrast = contrast + _irfft(_rfft(extra_phase) * transfer, shape) * 2
    intensity = np.clip(transmission * (1.0 + contrast), 0.0, None)[inner, inner]
    dose = 1.0 / (noise_std * noise_std)  # counts per pixel where intensity is 1
    counts = rng.poisson(intensity * dose).astype(np.float64)
    return counts, defocus, mask[inner, inner]


def make_quality_micrographs(
    n: int,
    *,
    size: int = 256,
    pixel_size: float = 1.5,
    seed: int = 0,
    kinds: tuple[str, ...] = QUALITY_KINDS,
    snr: float = 0.5,
) -> QualityStack:
    """Make ``n`` noisy synthetic micrographs of the quality kinds ``kinds``.

    Parameters
    ----------
    n : int
        Number of images; kinds go round-robin (image i has kind ``i % len(kinds)``).
    size : int
        Height and width in pixels, >= 32.
    pixel_size : float
        Angstrom per pixel (cryo-EM micrographs: 0.5-2). The ice lattice at 3.90 Angstrom must be
        below Nyquist when ``crystalline`` is asked for: ``pixel_size < 1.95``.
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives identical images.
    kinds : tuple of str
        Which of ``QUALITY_KINDS`` to make, in this order.
    snr : float
        Standard deviation of the CTF-filtered particles-and-ice contrast over that of the shot
        noise, per image (drawn within a factor 1.35 of this value). Defects come on top, with
        the same dose.

    Returns
    -------
    QualityStack
        ``images`` (n, size, size) float32, zero mean and unit std each; ``kinds`` (n,) int64;
        ``defocus`` (n,) um; ``masks`` (n, size, size) bool.

    Raises
    ------
    InputError
        For a parameter out of range or an unknown kind.
    """
    n = _check_number(n, "n", integer=True, minimum=0)
    size = _check_number(size, "size", integer=True, minimum=_MIN_SIZE)
    pixel_size = _check_number(pixel_size, "pixel_size", integer=False, minimum=0.0, strict=True)
    seed = _check_number(seed, "seed", integer=True, minimum=0)
    snr = _check_number(snr, "snr", integer=False, minimum=0.0, strict=True)
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    unknown = [k for k in kinds if k not in QUALITY_KINDS]
    if not kinds or unknown:
        raise InputError(f"expected kinds among {QUALITY_KINDS}, got {kinds!r}", field="kinds")
    if "crystalline" in kinds and pixel_size >= ICE_SPACING_A / 2:
        raise InputError(
            f"the {ICE_SPACING_A} A ice lattice is beyond Nyquist at {pixel_size} A/px: use pixel_size < "
            f"{ICE_SPACING_A / 2}", field="pixel_size")

    rng = np.random.default_rng(seed)
    grid = _Grid(_canvas(size), pixel_size, rfft=True)
    labels = np.arange(n, dtype=np.int64) % len(kinds)
    images = np.empty((n, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=bool)
    defocus = np.empty(n, dtype=np.float64)
    for i, k in enumerate(labels):
        counts, defocus[i], masks[i] = _image(rng, kinds[k], grid, size, pixel_size, snr)
        counts -= counts.mean()
        counts /= max(float(counts.std()), 1e-12)
        images[i] = counts
    return QualityStack(images=images, kinds=labels, kind_names=kinds, pixel_size=pixel_size,
                        defocus=defocus, masks=masks)

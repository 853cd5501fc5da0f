"""Power spectra of micrographs: the "Fourier space" input of SimSiam on micrographs.

prismpyp feeds its Fourier-space network the CTF-fit diagnostic image of CTFFIND4/nextPYP;
we compute the power spectrum from the micrograph itself (no CTF fit needed), and also accept
their diagnostic images (:func:`friedel_image`).

The spectrum is centred: zero frequency at pixel ``(S // 2, S // 2)``. Computed from tiles of
``S`` pixels (no ``max_resolution``), radius ``r`` pixels is the spatial frequency
``r / (S * pixel_size)`` per Angstrom, so a spacing of ``d`` Angstrom sits at
``r = S * pixel_size / d``.

Example
-------
>>> import numpy as np
>>> yy, xx = np.mgrid[0:128, 0:128]
>>> grating = np.cos(2 * np.pi * 16 * xx / 128)  # 16 cycles across the image
>>> s = power_spectrum(grating)
>>> s.shape, s.dtype
((128, 128), dtype('float32'))
>>> peak = np.unravel_index(np.argmax(s), s.shape)
>>> int(peak[0]) - 64, abs(int(peak[1]) - 64)
(0, 16)
"""

from __future__ import annotations

import math

import numpy as np

from napari_cryolearn.engine.errors import InputError


def edge_taper(shape: tuple[int, int], fraction: float = 0.1) -> np.ndarray:
    """A window that is 1 inside and falls to 0 at the edges with a cosine over ``fraction`` of
    each side (a 2D Tukey window); ``fraction=0`` is all ones.

    Multiplying a micrograph by it before the FFT removes the bright cross that the jump
    between opposite edges (the FFT's periodic wrap) puts through the spectrum's centre.

    >>> w = edge_taper((5, 5), 0.5)
    >>> float(w[2, 2]), float(w[0, 2])
    (1.0, 0.0)
    """
    def one(n: int) -> np.ndarray:
        ramp = int(round(fraction * n))
        w = np.ones(n)
        if ramp > 0:
            t = np.arange(ramp) / ramp
            w[:ramp] = 0.5 - 0.5 * np.cos(math.pi * t)
            w[n - ramp:] = w[:ramp][::-1]
        return w

    return np.outer(one(shape[0]), one(shape[1]))


def _centre_square(image: np.ndarray) -> np.ndarray:
    h, w = image.shape
    m = min(h, w)
    y0, x0 = (h - m) // 2, (w - m) // 2
    return image[y0:y0 + m, x0:x0 + m]


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    from skimage.transform import resize

    return resize(a, (size, size), order=1, anti_aliasing=a.shape[0] > size, mode="edge")


def power_spectrum(
    image,
    *,
    size: int | None = None,
    pixel_size: float | None = None,
    max_resolution: float | None = None,
    taper: float = 0.1,
) -> np.ndarray:
    """Centred log power spectrum of a micrograph, normalised to zero mean and unit std.

    The image (centre-cropped to a square of side ``m``) is scaled to unit std; each tile has
    its window-weighted mean removed (so the zero frequency is empty), is multiplied by
    :func:`edge_taper` and transformed (orthonormal FFT, so white noise has power 1 per
    pixel); ``log(1 + |F|^2)`` of the (averaged) power is then normalised.

    Parameters
    ----------
    image : (H, W) array
        The micrograph.
    size : int, optional
        Side of the output, <= ``m``. ``None``: ``m`` (one periodogram of the whole image).
        Smaller: the power is averaged over half-overlapping tiles of that side (Welch's
        method, as CTFFIND does): the same frequencies (up to Nyquist) with less noise.
    pixel_size : float, optional
        Angstrom per pixel; needed with ``max_resolution``.
    max_resolution : float, optional
        Keep frequencies up to ``1 / max_resolution`` per Angstrom only (the Thon-ring region),
        as ``size`` pixels: tiles of ``size / (2 pixel_size / max_resolution)`` pixels (at most
        ``m``; then the cropped spectrum is resampled to ``size``).
    taper : float
        Fraction of each tile's side over which :func:`edge_taper` falls to 0.

    Returns
    -------
    (size, size) float32
        Zero frequency at ``(size // 2, size // 2)``; Friedel-symmetric about it.

    Raises
    ------
    InputError
        Not a 2D image; ``size`` out of range; ``max_resolution`` without ``pixel_size``, or
        finer than Nyquist.
    """
    a = np.asarray(image, dtype=np.float64)
    if a.ndim != 2:
        raise InputError(f"expected a 2D image, got shape {a.shape}", field="image")
    a = _centre_square(a)
    m = a.shape[0]
    if m < 4:
        raise InputError(f"image too small for a spectrum: {image.shape}", field="image")
    size = m if size is None else int(size)
    if not 4 <= size <= m:
        raise InputError(f"expected 4 <= size <= {m} (the image's shorter side), got {size}", field="size")
    crop = 1.0
    if max_resolution is not None:
        if pixel_size is None or pixel_size <= 0:
            raise InputError("max_resolution needs a positive pixel_size", field="pixel_size")
        crop = 2.0 * float(pixel_size) / float(max_resolution)
        if crop > 1.0:
            raise InputError(f"max_resolution {max_resolution} A is finer than Nyquist "
                             f"({2 * pixel_size} A)", field="max_resolution")
    tile = min(m, int(round(size / crop)))
    tile -= tile % 2 if tile > size else 0

    a = a - a.mean()
    a /= max(float(a.std()), 1e-12)
    window = edge_taper((tile, tile), taper)
    norm = math.sqrt(float((window**2).mean()))
    step = max(tile // 2, 1)
    starts = list(range(0, m - tile + 1, step))
    if starts[-1] != m - tile:
        starts.append(m - tile)
    power = np.zeros((tile, tile))
    for y in starts:
        for x in starts:
            t = a[y:y + tile, x:x + tile]
            t = (t - (t * window).sum() / window.sum()) * window / norm
            power += np.abs(np.fft.fft2(t, norm="ortho")) ** 2
    power = np.fft.fftshift(power / (len(starts) ** 2))
    if crop < 1.0 or tile != size:
        keep = max(int(round(crop * tile)), 1)
        c0 = tile // 2 - keep // 2
        power = power[c0:c0 + keep, c0:c0 + keep]
        if keep != size:
            power = _resize(power, size)
    out = np.log1p(power)
    out -= out.mean()
    out /= max(float(out.std()), 1e-12)
    return out.astype(np.float32)


def radial_profile(spectrum) -> np.ndarray:
    """Mean of a centred spectrum over rings one pixel wide: element ``r`` is radius ``r``,
    for ``r`` from 0 to ``S // 2 - 1`` (the inscribed circle).

    >>> import numpy as np
    >>> radial_profile(np.ones((8, 8))).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    s = np.asarray(spectrum, dtype=np.float64)
    h, w = s.shape
    yy, xx = np.indices(s.shape)
    r = np.rint(np.hypot(yy - h // 2, xx - w // 2)).astype(np.int64).ravel()
    n = min(h, w) // 2
    sums = np.bincount(r, s.ravel(), minlength=n)[:n]
    counts = np.bincount(r, minlength=n)[:n]
    return sums / np.maximum(counts, 1)


def friedel_image(ctffit) -> np.ndarray:
    """A CTFFIND / nextPYP ``_ctffit`` diagnostic image made Friedel-symmetric, as prismpyp does.

    Those images show the fitted CTF in one half and the measured spectrum in the other;
    prismpyp keeps the top half and pastes a copy rotated by 180 degrees below it, so that the
    result is a centred power spectrum with the symmetry a real one has. Colour images are
    averaged to grey first.

    Parameters
    ----------
    ctffit : (H, W) or (H, W, C) array

    Returns
    -------
    (2 * (H // 2), W) float32
        Rows ``0 .. H//2 - 1`` are the input's top half; row ``H//2 + i`` is row
        ``H//2 - 1 - i`` reversed left to right.

    >>> import numpy as np
    >>> friedel_image(np.arange(12).reshape(4, 3)).astype(int).tolist()
    [[0, 1, 2], [3, 4, 5], [5, 4, 3], [2, 1, 0]]
    """
    a = np.asarray(ctffit)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=-1) if a.shape[-1] in (3, 4) else a.mean(axis=-1)
    if a.ndim != 2 or a.shape[0] < 2:
        raise InputError(f"expected a 2D image of at least 2 rows, got shape {np.shape(ctffit)}", field="ctffit")
    top = a[: a.shape[0] // 2].astype(np.float32)
    return np.concatenate([top, top[::-1, ::-1]], axis=0)

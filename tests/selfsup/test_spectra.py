"""Power spectra of micrographs and prismpyp's Friedel-symmetric ctffit images."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.selfsup.spectra import edge_taper, friedel_image, power_spectrum, radial_profile


def _grating(n=128, cycles=(10, 6), noise=0.0, seed=0, shape=None):
    h, w = shape or (n, n)
    yy, xx = np.mgrid[0:h, 0:w]
    g = np.cos(2 * np.pi * (cycles[0] * yy / h + cycles[1] * xx / w))
    return g + noise * np.random.default_rng(seed).standard_normal(g.shape)


def _two_brightest(s):
    flat = np.argsort(s.ravel())[::-1][:2]
    return sorted(tuple(int(v) for v in np.unravel_index(i, s.shape)) for i in flat)


def test_a_grating_gives_two_symmetric_peaks_at_its_frequency():
    s = power_spectrum(_grating(noise=0.5))
    assert s.shape == (128, 128) and s.dtype == np.float32
    assert abs(float(s.mean())) < 1e-5 and abs(float(s.std()) - 1) < 1e-4
    assert _two_brightest(s) == [(64 - 10, 64 - 6), (64 + 10, 64 + 6)]


def test_tiles_keep_the_frequency_scale():
    # 64-pixel tiles of a 256-pixel image: 40 cycles over 256 px are 10 over 64 px
    s = power_spectrum(_grating(256, cycles=(40, 0), noise=0.5), size=64)
    assert s.shape == (64, 64)
    assert _two_brightest(s) == [(32 - 10, 32), (32 + 10, 32)]


def test_max_resolution_crops_to_the_thon_ring_region():
    # pixel 1 A, grating of 8 A period: 1/8 per A; keeping up to 4 A puts it at half the radius
    image = _grating(256, cycles=(256 / 8, 0), noise=0.5)
    s = power_spectrum(image, size=64, pixel_size=1.0, max_resolution=4.0)
    assert s.shape == (64, 64)
    (y1, x1), (y2, x2) = _two_brightest(s)
    assert (x1, x2) == (32, 32) and abs(y1 - 16) <= 1 and abs(y2 - 48) <= 1


def test_spectra_are_friedel_symmetric():
    image = np.random.default_rng(1).standard_normal((96, 96))
    s = power_spectrum(image)
    # |F(-k)| = |F(k)|: point reflection about the centre (rows/cols 1.. since 0 has no partner)
    inner = s[1:, 1:]
    assert np.allclose(inner, inner[::-1, ::-1], atol=1e-4)


def test_the_taper_removes_the_edge_cross():
    yy, xx = np.mgrid[0:128, 0:128]
    ramp = (yy + xx) / 128.0 + 0.1 * np.random.default_rng(2).standard_normal((128, 128))  # wrap jump
    cross = lambda s: float(np.r_[s[64, 80:], s[80:, 64]].mean() - np.median(s))  # noqa: E731
    assert cross(power_spectrum(ramp, taper=0.0)) > 1.0
    assert cross(power_spectrum(ramp, taper=0.1)) < 0.5


def test_rectangular_images_are_centre_cropped_and_constant_images_do_not_fail():
    s = power_spectrum(_grating(shape=(100, 140)))
    assert s.shape == (100, 100)
    assert np.isfinite(power_spectrum(np.ones((32, 32)))).all()


@pytest.mark.parametrize("kw", [{"size": 200}, {"size": 2}, {"max_resolution": 4.0},
                                {"pixel_size": 2.0, "max_resolution": 3.0}])
def test_bad_parameters_are_input_errors(kw):
    with pytest.raises(InputError):
        power_spectrum(np.zeros((64, 64)), **kw)


def test_not_2d_is_an_input_error():
    with pytest.raises(InputError, match="2D"):
        power_spectrum(np.zeros((2, 8, 8)))


def test_edge_taper_and_radial_profile():
    w = edge_taper((20, 10), 0.2)
    assert w.shape == (20, 10) and w.max() == 1 and w[0].max() == 0 and w[:, 0].max() == 0
    yy, xx = np.indices((9, 9))
    prof = radial_profile(np.hypot(yy - 4, xx - 4))
    assert np.allclose(prof, [0, 1, 2, 3], atol=0.25)  # rings of rounded radius


def test_friedel_image_keeps_the_top_and_pastes_it_rotated_below():
    rng = np.random.default_rng(0)
    ctffit = rng.integers(0, 255, size=(7, 6, 3)).astype(np.uint8)
    out = friedel_image(ctffit)
    grey = ctffit.mean(axis=-1)
    assert out.shape == (6, 6) and out.dtype == np.float32
    assert np.allclose(out[:3], grey[:3])
    assert np.allclose(out, np.rot90(out, 2))  # symmetric under a half turn
    with pytest.raises(InputError):
        friedel_image(np.zeros(5))

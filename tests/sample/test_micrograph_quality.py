"""Synthetic micrographs of quality kinds: arrays, reproducibility, what their spectra show, and
that pixel statistics alone do not sort them (so a learned embedding that does means something)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.sample.micrograph_quality import (
    ICE_SPACING_A,
    QUALITY_KINDS,
    QualityStack,
    ctf,
    make_quality_micrographs,
)
from napari_cryolearn.selfsup.spectra import power_spectrum, radial_profile


@pytest.fixture(scope="module")
def stack() -> QualityStack:
    return make_quality_micrographs(64, size=256, seed=3)


def _knn_accuracy(train, y_train, test, y_test, k=5) -> float:
    mu, sd = train.mean(0), train.std(0) + 1e-12
    a, b = (train - mu) / sd, (test - mu) / sd
    dist = ((b[:, None, :] - a[None]) ** 2).sum(-1)
    votes = y_train[np.argsort(dist, axis=1)[:, :k]]
    pred = np.array([np.bincount(v, minlength=y_train.max() + 1).argmax() for v in votes])
    return float((pred == y_test).mean())


def _pixel_statistics(images) -> np.ndarray:
    flat = images.reshape(len(images), -1).astype(np.float64)
    pct = np.percentile(flat, [1, 5, 10, 25, 50, 75, 90, 95, 99], axis=1).T
    return np.column_stack([flat.mean(1), flat.std(1), pct])


def test_shapes_types_kinds_and_normalisation(stack):
    assert stack.images.shape == (64, 256, 256) and stack.images.dtype == np.float32
    assert np.allclose(stack.images.mean(axis=(1, 2)), 0, atol=1e-4)
    assert np.allclose(stack.images.std(axis=(1, 2)), 1, atol=1e-3)
    assert stack.kind_names == QUALITY_KINDS
    assert stack.kinds.tolist()[:8] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert stack.pixel_size == 1.5
    assert stack.defocus.shape == (64,) and stack.defocus.min() >= 0.8 and stack.defocus.max() <= 3.0
    assert stack.defocus.std() > 0.3  # drawn per image
    assert stack.masks.shape == stack.images.shape and stack.masks.dtype == bool


def test_same_seed_same_images_other_seed_differs():
    a = make_quality_micrographs(4, size=64, seed=7)
    b = make_quality_micrographs(4, size=64, seed=7)
    c = make_quality_micrographs(4, size=64, seed=8)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.defocus, b.defocus)
    assert not np.array_equal(a.images, c.images)


def test_a_subset_of_kinds_in_the_order_asked():
    s = make_quality_micrographs(4, size=64, kinds=("carbon", "vitreous"))
    assert s.kind_names == ("carbon", "vitreous") and s.kinds.tolist() == [0, 1, 0, 1]
    assert s.fraction[1] == 0 and s.fraction[0] > 0.1


@pytest.mark.parametrize("kw, field", [({"n": -1}, "n"), ({"size": 8}, "size"), ({"snr": 0}, "snr"),
                                       ({"kinds": ("ice",)}, "kinds"), ({"pixel_size": 2.0}, "pixel_size")])
def test_bad_parameters_are_named(kw, field):
    with pytest.raises(InputError) as err:
        make_quality_micrographs(**{"n": 2, **kw})
    assert err.value.field == field


def test_ctf_has_its_first_zero_where_theory_puts_it():
    # chi = pi lambda df k^2 (Cs negligible at low k): first zero of sqrt(1-w^2) sin + w cos at
    # chi = pi - atan(w / sqrt(1 - w^2))
    size, px, df = 512, 1.0, 2.0
    t = ctf(size, px, df)[0, : size // 2]
    k = np.arange(size // 2) / (size * px)
    first = k[np.argmax(np.diff(np.sign(t)) != 0)]
    w = 0.07
    expected = np.sqrt((np.pi - np.arctan(w / np.sqrt(1 - w * w))) / (np.pi * 0.019687 * df * 1e4))
    assert abs(first - expected) <= 1 / (size * px)


def test_thon_rings_oscillate_with_the_period_the_defocus_gives():
    s = make_quality_micrographs(1, size=256, seed=0, kinds=("vitreous",), snr=2.0)
    prof = radial_profile(power_spectrum(s.images[0]))
    k = np.arange(len(prof)) / (256 * 1.5)
    model = np.sin(np.pi * 0.019687 * s.defocus[0] * 1e4 * k**2) ** 2  # |CTF|^2 without envelope
    band = (k > 0.02) & (k < 0.12)
    corr = np.corrcoef(prof[band], model[band])[0, 1]
    assert corr > 0.5


def test_crystalline_spectra_peak_at_the_ice_spacing_and_vitreous_do_not(stack):
    r0 = int(round(256 * stack.pixel_size / ICE_SPACING_A))

    def peak(image):
        power = np.fft.fftshift(np.abs(np.fft.fft2(image)) ** 2)
        prof = radial_profile(power)
        return prof[r0 - 1 : r0 + 2].max() / np.median(prof[r0 - 12 : r0 + 12])

    peaks = np.array([peak(im) for im in stack.images])
    crystalline = peaks[stack.kinds == 1]
    others = peaks[stack.kinds != 1]
    assert crystalline.min() > 1.5 and others.max() < 1.3


def test_defect_areas_are_in_their_ranges_and_show_in_the_image(stack):
    frac = stack.fraction
    assert np.all(frac[stack.kinds == 0] == 0)
    assert np.all((frac[stack.kinds == 1] > 0.2) & (frac[stack.kinds == 1] < 0.85))
    assert np.all((frac[stack.kinds == 2] > 0.15) & (frac[stack.kinds == 2] < 0.7))
    assert np.all((frac[stack.kinds == 3] > 0.04) & (frac[stack.kinds == 3] < 0.35))
    for i in np.flatnonzero(stack.kinds == 3):  # contamination is dark
        im, m = stack.images[i], stack.masks[i]
        assert im[m].mean() < im[~m].mean() - 1.0
    for i in np.flatnonzero(stack.kinds == 2):  # carbon has the stronger texture (above the shot noise)
        im, m = stack.images[i], ndimage.binary_erosion(stack.masks[i], iterations=6)
        band = ndimage.gaussian_filter(im, 1.5) - ndimage.gaussian_filter(im, 6.0)
        assert band[m].std() > 1.3 * band[~stack.masks[i]].std()


def test_pixel_statistics_alone_do_not_sort_the_kinds():
    train = make_quality_micrographs(96, size=128, seed=10)
    test = make_quality_micrographs(96, size=128, seed=11)
    acc = _knn_accuracy(_pixel_statistics(train.images), train.kinds, _pixel_statistics(test.images), test.kinds)
    assert acc < 0.8  # measured 0.55 at 256 px; chance is 0.25

"""The synthetic micrograph stacks: arrays, kinds, determinism and separability of kinds."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.sample import MICROGRAPH_KINDS, MicrographStack, make_micrographs


def _radial_log_power(image: np.ndarray) -> np.ndarray:
    """Log of the radially averaged power spectrum, radii 1 .. size/2 - 1."""
    size = image.shape[0]
    power = np.abs(np.fft.fftshift(np.fft.fft2(image))) ** 2
    yy, xx = np.indices(image.shape)
    radius = np.hypot(yy - size // 2, xx - size // 2).astype(int).ravel()
    mean = np.bincount(radius, power.ravel()) / np.bincount(radius)
    return np.log(mean[1 : size // 2])


def _skewness(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(len(images), -1).astype(np.float64)
    centred = flat - flat.mean(axis=1, keepdims=True)
    return (centred**3).mean(axis=1) / (centred**2).mean(axis=1) ** 1.5


def test_stack_has_the_documented_shapes_types_and_kinds():
    stack = make_micrographs(n=10, size=48, pixel_size=12.0, seed=0)
    assert isinstance(stack, MicrographStack)
    assert stack.images.shape == (10, 48, 48) and stack.images.dtype == np.float32
    assert np.allclose(stack.images.mean(axis=(1, 2)), 0.0, atol=1e-5)
    assert np.allclose(stack.images.std(axis=(1, 2)), 1.0, atol=1e-4)
    assert stack.kind_names == MICROGRAPH_KINDS and len(MICROGRAPH_KINDS) >= 3
    assert np.issubdtype(stack.kinds.dtype, np.integer)
    assert stack.kinds.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]  # round-robin
    assert stack.pixel_size == 12.0


def test_same_seed_gives_identical_images_and_another_seed_differs():
    a = make_micrographs(n=8, seed=5)
    b = make_micrographs(n=8, seed=5)
    c = make_micrographs(n=8, seed=6)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.kinds, b.kinds)
    assert not np.array_equal(a.images, c.images)


def test_dense_matter_is_dark():
    stack = make_micrographs(n=40, seed=0, snr=100.0)
    skew = _skewness(stack.images)
    # Sparse dense particles on pale ice: a long tail of dark values in every such image.
    assert np.all(skew[stack.kinds == MICROGRAPH_KINDS.index("particles")] < -1.0)
    for kind in ("vesicles", "filaments"):
        assert skew[stack.kinds == MICROGRAPH_KINDS.index(kind)].mean() < -0.3, kind


def test_ice_has_only_low_frequencies():
    stack = make_micrographs(n=40, seed=1, snr=1e4)
    spectra = np.array([_radial_log_power(image) for image in stack.images])
    mid = slice(6, 16)  # radii 7-16 of 64: wavelengths of about 9 down to 4 pixels
    ice = stack.kinds == MICROGRAPH_KINDS.index("ice")
    # Objects put power at these spatial frequencies, ice leaves them orders of magnitude emptier.
    assert spectra[ice][:, mid].mean() < spectra[~ice][:, mid].mean() - 4.0


def test_kinds_are_separable_by_their_power_spectra():
    train = make_micrographs(n=64, seed=0)
    test = make_micrographs(n=64, seed=1)
    features_train = np.array([_radial_log_power(image) for image in train.images])
    features_test = np.array([_radial_log_power(image) for image in test.images])
    centroids = np.array([features_train[train.kinds == k].mean(axis=0) for k in range(len(train.kind_names))])
    predicted = np.argmin(((features_test[:, None] - centroids[None]) ** 2).sum(axis=-1), axis=1)
    assert np.mean(predicted == test.kinds) > 0.8


def test_empty_stack_is_allowed():
    stack = make_micrographs(n=0)
    assert stack.images.shape == (0, 64, 64) and stack.kinds.shape == (0,)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n": -1}, "n"),
        ({"size": 8}, "size"),
        ({"size": 64.0}, "size"),
        ({"pixel_size": 0.0}, "pixel_size"),
        ({"snr": 0}, "snr"),
        ({"seed": -3}, "seed"),
    ],
)
def test_bad_parameters_raise_input_error_naming_the_field(kwargs, field):
    with pytest.raises(InputError) as info:
        make_micrographs(**kwargs)
    assert info.value.field == field and field in str(info.value)

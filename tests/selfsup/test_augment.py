"""The augmentations: shapes, seeds, that each step does what it says, Friedel symmetry kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cryolearn.selfsup.augment import (
    ClaheOrSharpen,
    Compose,
    GaussianBlur,
    HighPass,
    IntensityJitter,
    RadialStretch,
    RandomFlip,
    RandomResizedCrop,
    RandomRotation,
    Resize,
    TwoViews,
    fourier_recipe,
    real_space_recipe,
    simclr_recipe,
)
from napari_cryolearn.selfsup.spectra import power_spectrum


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _spectra(n=4, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([power_spectrum(rng.standard_normal((size, size))
                                                      + np.cos(2 * np.pi * (rng.integers(3, 12) * np.arange(size)
                                                                            / size))[None, :]) for _ in range(n)]))[:, None]


def _friedel_error(x):
    """Mean |x(k) - x(-k)| about pixel S//2 (rows/columns 1.. have partners)."""
    inner = x[..., 1:, 1:]
    return float((inner - torch.flip(inner, dims=(-2, -1))).abs().mean())


@pytest.mark.parametrize("recipe", [lambda: real_space_recipe(32), lambda: fourier_recipe(32, 1.5),
                                    lambda: simclr_recipe(32)])
def test_recipes_give_the_size_asked_for_images_and_batches(recipe):
    t = recipe()
    assert t(torch.randn(1, 48, 48), _g()).shape == (1, 32, 32)
    assert t(torch.randn(5, 1, 32, 32), _g()).shape == (5, 1, 32, 32)
    assert t(torch.randn(1, 32, 32), _g()).dtype == torch.float32


@pytest.mark.parametrize("recipe", [lambda: real_space_recipe(32), lambda: fourier_recipe(32, 1.5),
                                    lambda: simclr_recipe(32)])
def test_the_same_seed_gives_the_same_views(recipe):
    t = recipe()
    x = torch.randn(6, 1, 32, 32)
    assert torch.equal(t(x, _g(3)), t(x, _g(3)))
    assert not torch.equal(t(x, _g(3)), t(x, _g(4)))
    a = t(x, np.random.default_rng(9))
    assert torch.equal(a, t(x, np.random.default_rng(9)))  # numpy generators seed too


def test_two_views_are_independent_draws():
    views = TwoViews(real_space_recipe(32))
    a, b = views(torch.randn(1, 32, 32), _g(1))
    assert a.shape == b.shape == (1, 32, 32) and not torch.equal(a, b)


def test_flips_are_exact_mirrors_and_happen_at_their_rates():
    x = torch.randn(400, 1, 8, 8)
    y = RandomFlip(1.0, 0.0)(x, _g())
    assert torch.equal(y, torch.flip(x, dims=(3,)))
    y = RandomFlip(0.5, 0.0)(x, _g())
    flipped = (y == torch.flip(x, dims=(3,))).flatten(1).all(1)
    assert 150 < int(flipped.sum()) < 250
    z = RandomFlip(0.0, 1.0, origin=True)(x, _g())  # about pixel 4: row 4 stays, row 3 <-> row 5
    assert torch.equal(z[..., 4, :], x[..., 4, :]) and torch.equal(z[..., 3, :], x[..., 5, :])


def test_rotation_turns_the_image():
    x = torch.zeros(1, 1, 33, 33)
    x[..., 16, 20:30] = 1.0  # a bar to the right of the centre
    y = RandomRotation(60.0)(x, _g(0))
    assert not torch.allclose(x, y, atol=1e-3)
    # mass is kept (the bar stays inside) and its centroid stays on the circle it lies on
    yy, xx = torch.meshgrid(torch.arange(33.0), torch.arange(33.0), indexing="ij")
    w = y[0, 0]
    cy, cx = float((w * yy).sum() / w.sum()), float((w * xx).sum() / w.sum())
    assert abs(float(w.sum()) - 10) < 0.2 and abs(np.hypot(cy - 16, cx - 16) - 8.5) < 0.3
    angle = np.degrees(np.arctan2(cy - 16, cx - 16))
    assert 1 < abs(angle) <= 60.5


def test_resized_crop_keeps_a_scale_of_the_image():
    x = torch.arange(64.0).repeat(64, 1)[None, None]  # x coordinate as the value
    y = RandomResizedCrop(32, scale=(0.25, 0.25), ratio=(1.0, 1.0))(x, _g(2))
    span = float(y[0, 0, 0, -1] - y[0, 0, 0, 0])
    assert abs(span - 31) < 1.5  # half the width (32 px of 64) shown over 32 px
    y = RandomResizedCrop(32, scale=(0.25, 0.25), ratio=(1.0, 1.0), centred=True)(x, _g(2))
    assert float(y[0, 0, 0, 16]) == pytest.approx(32.0)  # pixel S//2 shows pixel H//2


def test_intensity_jitter_and_blur():
    x = torch.randn(8, 1, 32, 32)
    y = IntensityJitter(0.2, 0.2)(x, _g())
    ratio = y.std(dim=(1, 2, 3)) / x.std(dim=(1, 2, 3))
    assert torch.all((ratio > 0.79) & (ratio < 1.21)) and not torch.allclose(ratio, torch.ones(8))
    assert torch.equal(IntensityJitter(0.8, 0.8, p=0.0)(x, _g()), x)
    b = GaussianBlur((0.5, 0.5))(x, _g())
    assert float(b.std()) < 0.8 * float(x.std())  # white noise loses power
    assert torch.allclose(b.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.02)
    assert torch.allclose(GaussianBlur((1.0, 2.0), p=0.0)(x, _g()), x, atol=1e-6)


def test_high_pass_blanks_the_centre_only():
    x = _spectra(2, 64)
    y = HighPass(6.0, p=1.0)(x, _g())
    yy, xx = torch.meshgrid(torch.arange(64) - 32, torch.arange(64) - 32, indexing="ij")
    disk = yy**2 + xx**2 < 36
    for i in range(2):
        assert torch.all(y[i, 0][disk] == x[i].min()) and torch.equal(y[i, 0][~disk], x[i, 0][~disk])
    # the recipe's radius: frequencies below 1/20 per A at 1.5 A per pixel on 64 px
    assert fourier_recipe(64, 1.5).transforms[1].radius == pytest.approx(64 * 1.5 / 20)


def test_clahe_or_sharpen_are_exclusive_and_keep_mean_and_std():
    x = _spectra(40, 32)
    t = ClaheOrSharpen(0.5, 0.5)
    y = t(x, _g(0))
    changed = ~(y == x).flatten(1).all(1)
    assert bool(changed.all())  # p 0.5 + 0.5: every image is one or the other
    clahe = ClaheOrSharpen(1.0, 0.0)(x[:2], _g())
    assert torch.allclose(clahe.std(dim=(1, 2, 3)), x[:2].std(dim=(1, 2, 3)), rtol=1e-3)
    assert torch.allclose(clahe.mean(dim=(1, 2, 3)), x[:2].mean(dim=(1, 2, 3)), atol=1e-4)
    assert not torch.allclose(clahe, x[:2], atol=0.05)
    sharp = ClaheOrSharpen(0.0, 1.0)(x[:2], _g())
    assert float(sharp.std()) > float(x[:2].std())


def test_radial_stretch_moves_rings_about_the_origin():
    size = 64
    yy, xx = torch.meshgrid(torch.arange(size) - 32.0, torch.arange(size) - 32.0, indexing="ij")
    ring = torch.exp(-((torch.hypot(yy, xx) - 20) ** 2) / 2)[None, None]
    y = RadialStretch((1.25, 1.25), p=1.0)(ring, _g())
    prof = y[0, 0, 32, 32:]
    assert int(torch.argmax(prof)) == 16  # r * 1.25 = 20
    assert _friedel_error(y) < 1e-4


def test_the_fourier_recipe_keeps_friedel_symmetry():
    x = _spectra(16, 64)
    assert _friedel_error(x) < 1e-4
    y = fourier_recipe(64, 1.5)(x, _g(5))
    assert _friedel_error(y) < 0.05 * float(y.std())
    # the real-space recipe (translations, rotations) does not keep it
    z = real_space_recipe(64)(x, _g(5))
    assert _friedel_error(z) > 5 * _friedel_error(y)


def test_resize_about_the_origin():
    x = _spectra(1, 64)
    y = Resize(32, origin=True)(x)
    assert y.shape == (1, 1, 32, 32) and _friedel_error(y) < 0.05
    assert Resize(32)(torch.randn(1, 48, 48)).shape == (1, 32, 32)


def test_compose_repr_and_bad_shapes():
    assert repr(Compose([RandomFlip(), HighPass(3)])) == "Compose(RandomFlip, HighPass)"
    with pytest.raises(ValueError, match="expected a"):
        RandomFlip()(torch.randn(8, 8))

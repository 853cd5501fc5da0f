"""Intensity scaling: equal to CryoSiam's formula, exact streamed percentiles, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_cryolearn.prep import scaling
from napari_cryolearn.prep.scaling import SlabReader, percentiles, scale_intensity


def reference(x: np.ndarray, lower, upper, invert: bool) -> np.ndarray:
    """CryoSiam's scale_tomogram, in float64."""
    y = x.astype(np.float64) * (-1 if invert else 1)
    lo, hi = np.percentile(y, [lower, upper])
    return np.clip((y - lo) / (hi - lo), 0, 1)


@st.composite
def volumes(draw) -> np.ndarray:
    """Small volumes of several dtypes; float values often repeat (ties), ints always do."""
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int16, np.uint8]))
    shape = draw(hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=7))
    x = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1000, 1000, width=32)))
    if dtype == np.uint8:
        x = np.clip(x, 0, 255)
    return x.astype(dtype)


@settings(max_examples=150)
@given(
    x=volumes(),
    q=st.tuples(st.floats(0, 50), st.floats(50.001, 100)),
    invert=st.booleans(),
    method=st.sampled_from(["exact", "histogram"]),
)
def test_scaling_equals_the_formula(x, q, invert, method):
    ref_vals = np.percentile(x.astype(np.float64) * (-1 if invert else 1), list(q))
    if not ref_vals[1] > ref_vals[0]:
        with pytest.raises(ValueError, match="constant"):
            scale_intensity(x, *q, invert=invert, method=method, chunk_slices=2)
        return
    before = x.copy()
    out = scale_intensity(x, *q, invert=invert, method=method, chunk_slices=2, threads=2)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reference(x, *q, invert), rtol=0, atol=2e-6)
    np.testing.assert_array_equal(x, before)


@settings(max_examples=100)
@given(x=volumes(), q=st.lists(st.floats(0, 100), min_size=2, max_size=2, unique=True), invert=st.booleans(),
       chunk=st.integers(1, 4))
def test_streamed_percentiles_equal_numpy(x, q, invert, chunk):
    q = sorted(q)
    expected = np.percentile(x.astype(np.float64) * (-1 if invert else 1), q)
    for method in ("exact", "histogram"):
        got = percentiles(x, *q, method=method, invert=invert, chunk_slices=chunk)
        assert got == pytest.approx(tuple(expected), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint16, np.int32, np.float16])
@pytest.mark.parametrize("q", [(0.1, 99.9), (0.0, 100.0), (40.0, 60.0), (0.001, 99.999)])
def test_streamed_percentiles_on_a_larger_volume(rng, dtype, q):
    x = (rng.standard_normal((40, 48, 56)) * 300).astype(dtype)
    for invert in (False, True):
        y = x.astype(np.float64) * (-1 if invert else 1)
        got = percentiles(x, *q, method="histogram", invert=invert, chunk_slices=5, threads=2)
        assert got == pytest.approx(tuple(np.percentile(y, q)), rel=1e-12, abs=0)


def test_radix_selection_when_the_sample_misses():
    """A volume whose sample says nothing about the extreme values: the fallback is still exact."""
    x = np.zeros((32, 32, 32), np.float32)
    x[::2] = 1.0
    x[3, 5, 1:9] = -np.arange(1, 9, dtype=np.float32)
    x[7, 1, :3] = 1e30
    reader = SlabReader(x, chunk_bytes=4 * 32 * 32 * 4)
    ordered = np.sort(x.ravel())
    for rank in (0, 3, 7, 8, 16000, x.size - 3, x.size - 1):
        steps = scaling._radix_select(reader, rank, 2)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                assert done.value == ordered[rank]
                break
    q = (0.02, 99.99)
    assert percentiles(x, *q, method="histogram") == pytest.approx(tuple(np.percentile(x, q)), rel=1e-12)


def test_requested_fraction_is_clipped(rng):
    x = rng.standard_normal((32, 64, 64)).astype(np.float32)
    out = scale_intensity(x, 0.1, 99.9)
    n = x.size
    # exactly ⌈q (n-1)⌉-ish voxels lie at or beyond each percentile
    assert abs(np.count_nonzero(out == 0) - 0.001 * n) <= 2
    assert abs(np.count_nonzero(out == 1) - 0.001 * n) <= 2
    assert out.min() == 0 and out.max() == 1
    inside = out[(out > 0) & (out < 1)]
    assert inside.size == n - np.count_nonzero(out == 0) - np.count_nonzero(out == 1)


def test_invert_flips_the_contrast(rng):
    x = rng.standard_normal((8, 16, 16)).astype(np.float32)
    a = scale_intensity(x, None, None)
    b = scale_intensity(x, None, None, invert=True)
    np.testing.assert_allclose(a + b, 1.0, atol=1e-6)
    assert a.ravel()[np.argmax(x)] == 1 and b.ravel()[np.argmax(x)] == 0


def test_min_max_rescale_without_percentiles():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4) * 2 + 10
    for lower, upper in ((None, None), (0, None), (0, 100)):
        out = scale_intensity(x, lower, upper)
        np.testing.assert_allclose(out, (x - 10) / 46, atol=1e-7)


def test_no_clip_keeps_values_beyond(rng):
    x = rng.standard_normal((8, 16, 16)).astype(np.float32)
    out = scale_intensity(x, 1, 99, clip=False)
    assert out.min() < 0 and out.max() > 1
    np.testing.assert_allclose(out, (x - np.percentile(x, 1)) / np.subtract(*np.percentile(x, [99, 1])), atol=2e-6)


def test_large_offset_keeps_precision():
    """Values near 1e6 spread over 1: float32 arithmetic would lose the digits."""
    x = (1e6 + np.linspace(0, 1, 4096)).reshape(16, 16, 16)
    out = scale_intensity(x, 0, 100)
    np.testing.assert_allclose(out, np.linspace(0, 1, 4096).reshape(16, 16, 16), atol=1e-6)


def test_sample_method_is_close(rng):
    x = rng.standard_normal((64, 64, 64)).astype(np.float32)
    lo, hi = percentiles(x, 1, 99, method="sample")
    assert lo == pytest.approx(np.percentile(x, 1), abs=0.02)
    assert hi == pytest.approx(np.percentile(x, 99), abs=0.02)


def test_out_array_is_filled(rng):
    x = rng.integers(0, 255, (8, 16, 16)).astype(np.uint8)
    out = np.full(x.shape, -1, np.float32)
    res = scale_intensity(x, 0.1, 99.9, out=out, method="histogram", chunk_slices=3)
    assert res is out
    np.testing.assert_allclose(out, reference(x, 0.1, 99.9, False), atol=2e-6)


@pytest.mark.parametrize("method", ["exact", "histogram", "sample"])
def test_nan_and_inf_are_refused(method):
    x = np.zeros((4, 4, 4), np.float32)
    x[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        scale_intensity(x, method=method)
    x[1, 2, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        percentiles(x, method=method)


def test_constant_volume_is_refused():
    with pytest.raises(ValueError, match="constant"):
        scale_intensity(np.full((4, 5, 6), 3.0, np.float32))


def test_bad_arguments():
    x = np.zeros((2, 2, 2), np.float32)
    with pytest.raises(ValueError, match="below"):
        percentiles(x, 60, 40)
    with pytest.raises(ValueError, match="0..100"):
        percentiles(x, -1, 40)
    with pytest.raises(ValueError, match="method"):
        percentiles(x, 1, 40, method="median")
    with pytest.raises(ValueError, match="3D"):
        scale_intensity(np.zeros((4, 4)))

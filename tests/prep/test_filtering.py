"""Label filtering: binary masks, subsets, renumbering, CryoSiam's growth, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.segmentation import expand_labels as sk_expand

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io.dtypes import smallest_unsigned_dtype
from napari_cryolearn.prep.filtering import (
    expand_labels,
    filter_labels,
    label_mapping,
)


@pytest.fixture
def labels(rng) -> np.ndarray:
    return rng.integers(0, 6, size=(16, 20, 24)).astype(np.int16)


def test_single_value_gives_binary_uint8(labels):
    out, mapping = filter_labels(labels, 3)
    assert out.dtype == np.uint8
    assert mapping == {3: 1}
    np.testing.assert_array_equal(out, (labels == 3).astype(np.uint8))


def test_list_keeps_values_and_zeroes_the_rest(labels):
    out, mapping = filter_labels(labels, [5, 2])
    assert mapping == {5: 5, 2: 2}
    expected = np.where(np.isin(labels, [2, 5]), labels, 0)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8


def test_renumber_follows_the_given_order(labels):
    out, mapping = filter_labels(labels, [5, 2, 4], renumber=True)
    assert mapping == {5: 1, 2: 2, 4: 3}
    np.testing.assert_array_equal(out[labels == 5], 1)
    np.testing.assert_array_equal(out[labels == 2], 2)
    np.testing.assert_array_equal(out[labels == 4], 3)
    np.testing.assert_array_equal(out[np.isin(labels, [0, 1, 3])], 0)


def test_many_values_take_the_vectorised_route(rng):
    lab = rng.integers(0, 40, size=(8, 16, 16)).astype(np.int32)
    keep = list(range(30, 0, -3))  # 10 values, more than the loop handles
    out, mapping = filter_labels(lab, keep, renumber=True)
    expected = np.zeros_like(lab)
    for old, new in mapping.items():
        expected[lab == old] = new
    np.testing.assert_array_equal(out, expected)


def test_binary_list_with_expand_equals_skimage(labels):
    """CryoSiam: kept classes → 1, then expand_labels(.., 1)."""
    out, mapping = filter_labels(labels, [1, 4], binary=True, expand=1)
    assert mapping == {1: 1, 4: 1}
    sparse = labels * (labels > 4)  # a sparser mask, so that growth matters
    out2, _ = filter_labels(sparse, [5], expand=1)
    expected = sk_expand(np.isin(sparse, [5]).astype(np.uint8), 1)
    np.testing.assert_array_equal(out2, expected)
    np.testing.assert_array_equal(out, sk_expand(np.isin(labels, [1, 4]).astype(np.uint8), 1))


@pytest.mark.parametrize("distance", [1, 1.5, 2.5])
def test_expand_equals_skimage_for_binary_and_multiclass(rng, distance):
    sparse = np.where(rng.random((14, 18, 22)) < 0.01, rng.integers(1, 4, (14, 18, 22)), 0).astype(np.uint8)
    binary = (sparse > 0).astype(np.uint8)
    np.testing.assert_array_equal(expand_labels(binary.copy(), distance), sk_expand(binary, distance))
    np.testing.assert_array_equal(expand_labels(sparse.copy(), distance), sk_expand(sparse, distance))


def test_expand_grows_a_point_into_a_ball():
    lab = np.zeros((9, 9, 9), np.uint8)
    lab[4, 4, 4] = 1
    out, _ = filter_labels(lab, 1, expand=2)
    assert out.sum() == 33  # lattice points with |d|² ≤ 4
    assert out[4, 4, 6] == 1 and out[4, 5, 6] == 0


def test_input_is_not_modified(labels):
    before = labels.copy()
    filter_labels(labels, [1, 2], renumber=True, expand=1)
    filter_labels(labels, 3, expand=2)
    np.testing.assert_array_equal(labels, before)


def test_absent_label_warns_naming_it(labels):
    with pytest.warns(UserWarning, match=r"\[7, 9\]"):
        out, _ = filter_labels(labels, [2, 7, 9])
    assert (out == 2).sum() == (labels == 2).sum()


def test_float_labels_with_fractions_are_refused():
    with pytest.raises(InputError, match="integers"):
        filter_labels(np.array([[[0.0, 1.5]]], dtype=np.float32), 1)
    with pytest.raises(InputError, match="integers"):
        filter_labels(np.array([[[0.0, np.nan]]], dtype=np.float32), 1)


def test_float_labels_holding_whole_numbers_are_accepted():
    out, _ = filter_labels(np.array([[[0.0, 2.0, 3.0]]], dtype=np.float32), [3, 2], renumber=True)
    assert out.tolist() == [[[0, 2, 1]]]


def test_output_dtype_is_the_smallest_unsigned():
    lab = np.array([[[0, 300, 70000]]], dtype=np.int64)
    assert filter_labels(lab, [300])[0].dtype == np.uint8
    assert filter_labels(lab, [300, 70000], binary=False)[0].dtype == np.uint32
    assert filter_labels(lab, [300, 70000], renumber=True)[0].dtype == np.uint8
    assert smallest_unsigned_dtype(256) == np.uint16


@pytest.mark.parametrize(
    "keep, kwargs, match",
    [
        ([], {}, "at least one"),
        ([1, 1], {}, "repeated"),
        ([1.5], {}, "integers"),
        ([-1, 2], {}, "negative"),
        ([1, 2], {"binary": True, "renumber": True}, "exclude"),
    ],
)
def test_bad_keep_lists(keep, kwargs, match):
    with pytest.raises(InputError, match=match):
        label_mapping(keep, **kwargs)


def test_negative_values_can_be_renumbered():
    lab = np.array([[[-1, 0, 2]]], dtype=np.int8)
    out, mapping = filter_labels(lab, [-1, 2], renumber=True)
    assert mapping == {-1: 1, 2: 2}
    assert out.tolist() == [[[1, 0, 2]]]


@settings(max_examples=40, deadline=None)
@given(
    labels=arrays(np.int32, st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
                  elements=st.integers(0, 9)),
    keep=st.lists(st.integers(0, 12), min_size=1, max_size=5, unique=True),
    renumber=st.booleans(),
    binary=st.sampled_from([None, True, False]),
)
def test_filtering_semantics_match_a_voxel_by_voxel_reference(labels, keep, renumber, binary):
    before = labels.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # absent values warn; tested above
        try:
            out, mapping = filter_labels(labels, keep, binary=binary, renumber=renumber)
        except InputError:
            assert binary is True and renumber and len(keep) > 1  # the one refused combination
            return
    np.testing.assert_array_equal(labels, before)
    as_binary = binary if binary is not None else len(keep) == 1
    for value, new in mapping.items():
        if as_binary:
            assert new == 1
        elif renumber:
            assert new == keep.index(value) + 1
        else:
            assert new == value
    assert sorted(mapping) == sorted(keep)
    expected = np.zeros_like(labels)
    for value in keep:
        expected[labels == value] = mapping[value]
    np.testing.assert_array_equal(out, expected)
    assert out.dtype.kind == "u"

import sys

import numpy as np
import pytest

from napari_cryolearn.io.pages import byte_bounds, release_pages


@pytest.mark.parametrize(
    "view",
    [
        lambda a: a,
        lambda a: a[1:3, 2:5, 1:4],
        lambda a: a[:, ::-1, 2:4],
        lambda a: a[::-2, :, ::3],
        lambda a: a[2, 3:4, :],
        lambda a: a.transpose(2, 0, 1)[1:, ::-1],
    ],
)
def test_byte_bounds_cover_exactly_the_elements(view):
    base = np.arange(4 * 5 * 6, dtype=np.int64).reshape(4, 5, 6)  # each element holds its own index
    elements = view(base)
    lo, hi = byte_bounds(elements)
    assert lo == base.ctypes.data + elements.min() * base.itemsize
    assert hi == base.ctypes.data + (elements.max() + 1) * base.itemsize


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise")
def test_release_pages_of_a_strided_view_keeps_data_and_neighbours(tmp_path):
    data = np.arange(16 * 64 * 64, dtype=np.float32).reshape(16, 64, 64)
    np.save(tmp_path / "v.npy", data)
    mm = np.load(tmp_path / "v.npy", mmap_mode="r")
    neighbour = np.full(1 << 20, 7, np.uint8)  # anonymous memory a wrong span would zero
    release_pages(mm[::-3, 5:9, ::2])
    release_pages(mm[2:3].transpose(2, 1, 0))
    np.testing.assert_array_equal(mm, data)  # file pages come back from the page cache
    assert (neighbour == 7).all()

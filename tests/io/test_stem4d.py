"""Reading 4D-STEM arrays (.npy, .pt, .h5, .mrc), their checks, detector crop/binning, normalisation."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io.mrc import write_mrc
from napari_cryolearn.io.stem4d import (
    Normalisation,
    bin_detector,
    crop_detector,
    denormalise,
    fit_normalisation,
    normalise,
    read_stem4d,
)


@pytest.fixture
def scan(rng):
    return rng.poisson(50, size=(4, 5, 8, 6)).astype(np.float32)


def test_npy_is_memory_mapped_4d(tmp_path, scan):
    np.save(tmp_path / "s.npy", scan)
    stem = read_stem4d(tmp_path / "s.npy")
    assert isinstance(stem.data, np.memmap) and stem.is_4d and stem.scan_shape == (4, 5)
    assert stem.detector_shape == (8, 6) and stem.n_patterns == 20
    np.testing.assert_array_equal(stem.patterns(3, 9), scan.reshape(20, 8, 6)[3:9])
    np.testing.assert_array_equal(stem.take([7, 2]), scan.reshape(20, 8, 6)[[7, 2]])


def test_pt_needs_scan_shape_for_4d(tmp_path, scan):
    torch.save(torch.from_numpy(scan.reshape(20, 1, 8, 6)), tmp_path / "train_tensor.pt")
    stack = read_stem4d(tmp_path / "train_tensor.pt")
    assert stack.shape == (20, 8, 6) and not stack.is_4d
    full = read_stem4d(tmp_path / "train_tensor.pt", scan_shape=(4, 5))
    np.testing.assert_array_equal(np.asarray(full.data), scan)
    with pytest.raises(InputError, match="scan_shape"):
        read_stem4d(tmp_path / "train_tensor.pt", scan_shape=(3, 5))
    with pytest.raises(InputError, match="4D scan"):
        read_stem4d(tmp_path / "train_tensor.pt", require_4d=True)


def test_h5_largest_dataset_lazy_and_named(tmp_path, scan):
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["small"] = np.zeros((2, 3, 4), np.float32)
        d = f.create_dataset("group/scan", data=scan)
        d.attrs["step"] = 2.5
    stem = read_stem4d(tmp_path / "s.h5")
    assert isinstance(stem.data, h5py.Dataset) and stem.shape == scan.shape and stem.step == 2.5
    np.testing.assert_array_equal(stem.patterns(3, 12), scan.reshape(20, 8, 6)[3:12])
    np.testing.assert_array_equal(stem.take([11, 0, 4]), scan.reshape(20, 8, 6)[[11, 0, 4]])
    assert read_stem4d(tmp_path / "s.h5", dataset="small").shape == (2, 3, 4)
    with pytest.raises(InputError, match="no dataset 'nope'") as err:
        read_stem4d(tmp_path / "s.h5", dataset="nope")
    assert "s.h5" in str(err.value) and "group/scan" in str(err.value)


def test_mrc_stack(tmp_path, scan):
    write_mrc(tmp_path / "s.mrc", scan.reshape(20, 8, 6), voxel_size=(1.0, 20.0, 20.0))
    stem = read_stem4d(tmp_path / "s.mrc")
    assert stem.shape == (20, 8, 6) and stem.step == pytest.approx(2.0)
    assert read_stem4d(tmp_path / "s.mrc", scan_shape=(4, 5)).is_4d


def test_errors_name_the_file(tmp_path, scan):
    with pytest.raises(InputError, match="not found"):
        read_stem4d(tmp_path / "missing.npy")
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(InputError, match="empty") as err:
        read_stem4d(tmp_path / "empty.npy")
    assert "empty.npy" in str(err.value)
    np.save(tmp_path / "flat.npy", np.zeros((8, 8), np.float32))
    with pytest.raises(InputError, match="shape"):
        read_stem4d(tmp_path / "flat.npy")
    np.save(tmp_path / "stack.npy", np.zeros((3, 8, 8), np.float32))
    with pytest.raises(InputError, match="4D"):
        read_stem4d(tmp_path / "stack.npy", require_4d=True)
    bad = scan.copy()
    bad[3, 2, 1, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(InputError, match=r"NaN.*\(3, 2\)") as err:
        read_stem4d(tmp_path / "nan.npy")
    assert "nan.npy" in str(err.value)
    (tmp_path / "s.tif").write_bytes(b"xx")
    with pytest.raises(InputError, match="unknown file type"):
        read_stem4d(tmp_path / "s.tif")


def test_nan_check_is_chunked(tmp_path, scan, monkeypatch):
    import napari_cryolearn.io.stem4d as mod

    bad = scan.copy()
    bad[-1, -1, 0, 0] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    monkeypatch.setattr(mod, "CHUNK_BYTES", 8 * 6 * 4 * 3)  # three patterns a chunk
    seen = []
    real = mod.Stem4D.patterns
    monkeypatch.setattr(mod.Stem4D, "patterns", lambda self, a, b: seen.append(b - a) or real(self, a, b))
    with pytest.raises(InputError, match="NaN or infinite"):
        read_stem4d(tmp_path / "inf.npy")
    assert max(seen) == 3 and sum(seen) == 20


def test_crop_and_bin():
    x = np.arange(2 * 7 * 9, dtype=np.float32).reshape(2, 7, 9)
    b = bin_detector(x, 2)
    assert b.shape == (2, 3, 4)
    assert b[0, 0, 0] == pytest.approx(x[0, :2, :2].mean())  # the mean, remainders cropped
    assert crop_detector(x, (1, 4, 2, 9)).shape == (2, 3, 7)
    with pytest.raises(InputError, match="crop"):
        crop_detector(x, (0, 8, 0, 9))
    with pytest.raises(InputError, match="binning"):
        bin_detector(x, 10)


def test_normalisation_range_inverse_and_dict(tmp_path, scan, monkeypatch):
    import napari_cryolearn.io.stem4d as mod

    scan[0, 0, 0, 0] = 0.0
    np.save(tmp_path / "s.npy", scan)
    monkeypatch.setattr(mod, "CHUNK_BYTES", 8 * 6 * 4 * 2)
    norm = fit_normalisation(read_stem4d(tmp_path / "s.npy"), binning=1)
    assert norm.log_min == pytest.approx(np.log(1e-6)) and norm.log_max == pytest.approx(np.log(scan.max() + 1e-6))
    y = normalise(scan, norm)
    assert y.min() == pytest.approx(0.0, abs=1e-6) and y.max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(denormalise(y, norm), scan, rtol=1e-4, atol=1e-4)
    yt = normalise(torch.from_numpy(scan).double(), norm)
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-5)
    np.testing.assert_allclose(denormalise(yt, norm).numpy(), scan, rtol=1e-6, atol=1e-5)
    binned = fit_normalisation(scan, binning=2, crop=(0, 8, 0, 6))
    assert binned.binning == 2 and binned.output_shape((8, 6)) == (4, 3)
    assert Normalisation.from_dict(binned.to_dict()) == binned
    import yaml

    assert Normalisation.from_dict(yaml.safe_load(yaml.safe_dump(binned.to_dict()))) == binned

"""MRC reading and writing: dtypes, voxel size and origin round trips, laziness, atomicity, errors."""

from __future__ import annotations

import gc
import os
import tracemalloc
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io import (
    MRC_SUFFIXES,
    Volume,
    create_mrc,
    looks_like_labels,
    read_mrc,
    read_voxel_size,
    write_mrc,
)

VOXEL = (12.0, 10.0, 8.0)  # z, y, x: all different so that an axis swap shows
ORIGIN = (300.0, 200.0, 100.0)


def _ramp(dtype, shape=(6, 7, 8)) -> np.ndarray:
    """Values spanning the dtype's range (negative ones for signed, > 127 for uint8), z-y-x distinct."""
    n = int(np.prod(shape))
    if np.dtype(dtype).kind == "f":
        return (np.arange(n, dtype=np.float64).reshape(shape) * 0.37 - 11.0).astype(dtype)
    info = np.iinfo(dtype)
    return np.linspace(info.min, info.max, n).round().astype(dtype).reshape(shape)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("dtype", ["float32", "int8", "uint8", "int16", "uint16", "float16"])
def test_round_trip_keeps_dtype_values_voxel_size_and_origin(tmp_path, dtype):
    data = _ramp(dtype)
    path = write_mrc(tmp_path / "vol.mrc", data, voxel_size=VOXEL, origin=ORIGIN)
    assert path == tmp_path / "vol.mrc"

    vol = read_mrc(path)
    assert isinstance(vol, Volume)
    assert vol.data.dtype == np.dtype(dtype)
    assert vol.data.shape == (6, 7, 8)
    np.testing.assert_array_equal(vol.data, data)
    assert vol.voxel_size == VOXEL
    assert vol.origin == ORIGIN
    assert vol.path == path
    assert read_voxel_size(path) == VOXEL

    # The header itself says x, y, z: check it with another reader.
    with mrcfile.open(path, permissive=False) as mrc:
        assert (float(mrc.voxel_size.x), float(mrc.voxel_size.y), float(mrc.voxel_size.z)) == (8.0, 10.0, 12.0)
        assert (float(mrc.header.origin.x), float(mrc.header.origin.y), float(mrc.header.origin.z)) == (
            100.0,
            200.0,
            300.0,
        )
        assert (int(mrc.header.nx), int(mrc.header.ny), int(mrc.header.nz)) == (8, 7, 6)


def test_uint8_is_stored_as_imod_unsigned_bytes(tmp_path):
    data = np.arange(256, dtype=np.uint8).reshape(4, 8, 8)
    path = write_mrc(tmp_path / "u8.mrc", data)
    raw = path.read_bytes()
    assert np.frombuffer(raw[12:16], "<i4")[0] == 0  # mode 0: one byte per voxel
    assert np.frombuffer(raw[152:160], "<i4").tolist() == [1146047817, 0]  # IMOD stamp, unsigned bytes
    assert len(raw) == 1024 + data.size
    np.testing.assert_array_equal(read_mrc(path).data, data)


def test_mode0_without_imod_stamp_or_with_signed_flag_reads_as_int8(tmp_path):
    data = np.array([[[-128, -1, 0, 127]]], dtype=np.int8)
    plain = tmp_path / "plain.mrc"
    with mrcfile.new(plain) as mrc:
        mrc.set_data(data)
    assert read_mrc(plain).data.dtype == np.int8
    np.testing.assert_array_equal(read_mrc(plain).data, data)

    signed = tmp_path / "signed.mrc"
    with mrcfile.new(signed) as mrc:
        mrc.set_data(data)
        extra = bytearray(bytes(mrc.header.extra2))
        extra[40:48] = np.array([1146047817, 1], dtype="<i4").tobytes()
        mrc.header.extra2 = bytes(extra)
    np.testing.assert_array_equal(read_mrc(signed).data, data)


def test_imod_inverted_origin_flag_is_honoured(tmp_path):
    path = tmp_path / "imod.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((2, 3, 4), np.float32))
        mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = 1.0, 2.0, 3.0
        extra = bytearray(bytes(mrc.header.extra2))
        extra[40:48] = np.array([1146047817, 4], dtype="<i4").tobytes()
        mrc.header.extra2 = bytes(extra)
    assert read_mrc(path).origin == (-3.0, -2.0, -1.0)


def test_2d_image_reads_as_yx_with_a_voxel_size_triple(tmp_path):
    img = _ramp("float32", (5, 9))
    path = write_mrc(tmp_path / "img.mrc", img, voxel_size=(1.0, 3.0, 2.0))
    vol = read_mrc(path)
    assert vol.data.shape == (5, 9)
    np.testing.assert_array_equal(vol.data, img)
    assert vol.voxel_size == (1.0, 3.0, 2.0)


def test_mrcs_is_written_as_an_image_stack(tmp_path):
    stack = _ramp("float32", (3, 4, 5))
    path = write_mrc(tmp_path / "stack.mrcs", stack, voxel_size=(1.0, 4.0, 4.0))
    with mrcfile.open(path) as mrc:
        assert mrc.is_image_stack()
    vol = read_mrc(path)
    assert vol.data.shape == (3, 4, 5)
    assert vol.voxel_size == (1.0, 4.0, 4.0)
    with mrcfile.open(write_mrc(tmp_path / "vol.mrc", stack)) as mrc:
        assert mrc.is_volume()


def test_scalar_voxel_size_means_isotropic(tmp_path):
    path = write_mrc(tmp_path / "v.mrc", np.zeros((2, 2, 2), np.float32), voxel_size=7.5)
    assert read_voxel_size(path) == (7.5, 7.5, 7.5)


def test_conversions_of_dtypes_mrc_cannot_store(tmp_path):
    mask = np.zeros((2, 3, 4), dtype=bool)
    mask[1, 2, 3] = True
    vol = read_mrc(write_mrc(tmp_path / "mask.mrc", mask))
    assert vol.data.dtype == np.uint8
    assert vol.data.sum() == 1 and vol.data[1, 2, 3] == 1

    labels = np.arange(24, dtype=np.int64).reshape(2, 3, 4) * 2000  # up to 46000: fits uint16 only
    vol = read_mrc(write_mrc(tmp_path / "labels64.mrc", labels))
    assert vol.data.dtype == np.uint16
    np.testing.assert_array_equal(vol.data, labels)

    signed = (np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 12) * 1000  # -12000..11000: int16
    vol = read_mrc(write_mrc(tmp_path / "signed32.mrc", signed))
    assert vol.data.dtype == np.int16
    np.testing.assert_array_equal(vol.data, signed)

    doubles = np.linspace(-1, 1, 24).reshape(2, 3, 4)
    vol = read_mrc(write_mrc(tmp_path / "f64.mrc", doubles))
    assert vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data, doubles.astype(np.float32))


def test_integers_that_do_not_fit_are_refused_before_writing(tmp_path):
    labels = np.array([[[0, 70000]]], dtype=np.int64)
    with pytest.raises(InputError, match=r"big\.mrc.*0\.\.70000"):
        write_mrc(tmp_path / "big.mrc", labels)
    assert _files(tmp_path) == []


@pytest.mark.parametrize(
    "data, match",
    [
        (np.zeros((2, 2, 2, 2), np.float32), "2D or 3D"),
        (np.zeros(5, np.float32), "2D or 3D"),
        (np.zeros((0, 4, 4), np.float32), "empty"),
        (np.zeros((2, 2), dtype=object), "object"),
    ],
)
def test_bad_data_is_refused_before_anything_is_written(tmp_path, data, match):
    with pytest.raises(InputError, match=match) as err:
        write_mrc(tmp_path / "out.mrc", data)
    assert "out.mrc" in str(err.value)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("voxel_size", [0.0, -1.0, (1.0, float("nan"), 1.0), (1.0, 2.0)])
def test_bad_voxel_size_is_refused(tmp_path, voxel_size):
    with pytest.raises(InputError, match="voxel_size"):
        write_mrc(tmp_path / "out.mrc", np.zeros((2, 2, 2), np.float32), voxel_size=voxel_size)
    assert _files(tmp_path) == []


def test_nan_is_allowed_and_left_out_of_header_statistics(tmp_path):
    data = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    data[0, 0, 0] = np.nan
    path = write_mrc(tmp_path / "nan.mrc", data)
    vol = read_mrc(path)
    assert np.isnan(vol.data[0, 0, 0])
    np.testing.assert_array_equal(vol.data[~np.isnan(vol.data)], np.arange(1, 8))
    with mrcfile.open(path) as mrc:
        assert (float(mrc.header.dmin), float(mrc.header.dmax)) == (1.0, 7.0)
        assert float(mrc.header.dmean) == pytest.approx(4.0)


def test_header_statistics_match_the_data(tmp_path):
    data = _ramp("int16", (4, 5, 6))
    with mrcfile.open(write_mrc(tmp_path / "s.mrc", data)) as mrc:
        h = mrc.header
        assert float(h.dmin) == data.min() and float(h.dmax) == data.max()
        assert float(h.dmean) == pytest.approx(data.mean(), rel=1e-6)
        assert float(h.rms) == pytest.approx(data.std(), rel=1e-6)


def test_zero_voxel_size_in_header_reads_as_one(tmp_path):
    path = tmp_path / "nosize.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((2, 3, 4), np.float32))
        mrc.voxel_size = 0.0
    assert read_mrc(path).voxel_size == (1.0, 1.0, 1.0)
    assert read_voxel_size(path) == (1.0, 1.0, 1.0)


def test_big_endian_file_reads_the_right_values(tmp_path):
    data = _ramp("float32", (2, 3, 4))
    path = tmp_path / "be.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data.astype(">f4"))
        mrc.voxel_size = (8.0, 10.0, 12.0)
    for mmap in (True, False):
        vol = read_mrc(path, mmap=mmap)
        np.testing.assert_array_equal(vol.data, data)
        assert vol.voxel_size == (12.0, 10.0, 8.0)


def test_mmap_read_is_lazy_read_only_and_leaves_the_file_alone(tmp_path):
    # 128 MiB data block, created sparse: reading it lazily allocates next to nothing.
    path = tmp_path / "big.mrc"
    with mrcfile.new_mmap(path, shape=(64, 1024, 512), mrc_mode=2):
        pass
    before = path.read_bytes()[:1024]
    tracemalloc.start()
    try:
        vol = read_mrc(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(vol.data, np.memmap)
    assert vol.data.shape == (64, 1024, 512)
    assert peak < 1024**2
    assert not vol.data.flags.writeable
    with pytest.raises(ValueError):
        vol.data[0, 0, 0] = 1.0
    assert float(vol.data[63, 1023, 511]) == 0.0
    del vol
    assert path.read_bytes()[:1024] == before

    small = write_mrc(tmp_path / "small.mrc", _ramp("float32"))
    eager = read_mrc(small, mmap=False)
    assert not isinstance(eager.data, np.memmap)
    np.testing.assert_array_equal(eager.data, _ramp("float32"))


def test_memmap_stays_valid_and_many_reads_leak_no_file_handles(tmp_path):
    if not Path("/proc/self/fd").exists():
        pytest.skip("needs /proc to count open files")
    data = _ramp("float32", (4, 4, 4))
    paths = [write_mrc(tmp_path / f"v{i}.mrc", data + i) for i in range(40)]
    gc.collect()
    baseline = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        vols = [read_mrc(p) for p in paths]
        sums = [float(v.data.sum()) for v in vols]  # valid after read_mrc returned
        assert sums == [float((data + i).sum()) for i in range(40)]
        del vols
    for p in paths:
        read_voxel_size(p)
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= baseline


def test_create_mrc_streamed_equals_in_memory_write(tmp_path):
    data = _ramp("float32", (10, 12, 14))
    expected = write_mrc(tmp_path / "memory.mrc", data, voxel_size=VOXEL, origin=ORIGIN)
    target = tmp_path / "streamed.mrc"
    with create_mrc(target, data.shape, np.float32, voxel_size=VOXEL, origin=ORIGIN) as out:
        assert isinstance(out, np.memmap) and out.shape == data.shape and out.dtype == np.float32
        assert not target.exists()  # written under a temporary name until the end
        for z in range(0, 10, 3):
            out[z : z + 3] = data[z : z + 3]
    assert target.read_bytes() == expected.read_bytes()
    assert _files(tmp_path) == ["memory.mrc", "streamed.mrc"]


def test_create_mrc_uint8_and_unwritten_parts_are_zero(tmp_path):
    path = tmp_path / "labels.mrc"
    with create_mrc(path, (3, 4, 5), np.uint8) as out:
        out[1] = 200
    vol = read_mrc(path)
    assert vol.data.dtype == np.uint8
    assert vol.data[1].min() == 200 and vol.data[0].max() == 0 and vol.data[2].max() == 0
    assert vol.is_labels


def test_create_mrc_failure_midway_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="stop"):
        with create_mrc(tmp_path / "new.mrc", (4, 4, 4), np.float32) as out:
            out[0] = 1.0
            raise RuntimeError("stop")
    assert _files(tmp_path) == []


def test_create_mrc_failure_leaves_an_existing_target_untouched(tmp_path):
    target = write_mrc(tmp_path / "keep.mrc", _ramp("int16", (2, 3, 4)), voxel_size=VOXEL)
    before = target.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with create_mrc(target, (4, 4, 4), np.float32) as out:
            out[:] = 5.0
            raise KeyboardInterrupt
    assert target.read_bytes() == before
    assert _files(tmp_path) == ["keep.mrc"]


def test_create_mrc_refuses_bad_arguments_before_writing(tmp_path):
    with pytest.raises(InputError, match="shape"):
        with create_mrc(tmp_path / "a.mrc", (4, 0, 4), np.float32):
            pass
    with pytest.raises(InputError, match="int64"):
        with create_mrc(tmp_path / "a.mrc", (4, 4, 4), np.int64):
            pass
    assert _files(tmp_path) == []


def test_overwrite_false_refuses_and_keeps_the_file(tmp_path):
    target = write_mrc(tmp_path / "x.mrc", np.ones((2, 2, 2), np.float32))
    before = target.read_bytes()
    with pytest.raises(InputError, match="exists"):
        write_mrc(target, np.zeros((3, 3, 3), np.float32), overwrite=False)
    assert target.read_bytes() == before
    assert _files(tmp_path) == ["x.mrc"]


def test_truncated_file_error_says_what_is_missing(tmp_path):
    full = write_mrc(tmp_path / "full.mrc", np.ones((8, 8, 8), np.float32))
    cut = tmp_path / "cut.mrc"
    cut.write_bytes(full.read_bytes()[:-100])
    with pytest.raises(InputError) as err:
        read_mrc(cut)
    msg = str(err.value)
    assert "cut.mrc" in msg and "truncated" in msg
    assert "8x8x8 float32 = 2048 bytes" in msg and "file has 1948" in msg


@pytest.mark.parametrize(
    "content",
    [b"this is a text file, not a tomogram\n" * 100, b"short", np.random.default_rng(1).bytes(4096)],
    ids=["text", "short", "random"],
)
def test_not_an_mrc_file(tmp_path, content):
    path = tmp_path / "fake.mrc"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"fake\.mrc.*not an MRC file"):
        read_mrc(path)
    with pytest.raises(InputError, match="not an MRC file"):
        read_voxel_size(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nowhere\.mrc.*not found"):
        read_mrc(tmp_path / "nowhere.mrc")


@pytest.mark.parametrize(
    "name, dtype, expected",
    [
        ("TS_01_labels.mrc", np.uint8, True),
        ("membrane-seg.mrc", np.int16, True),
        ("tomoMask.rec", np.uint16, True),
        ("GT01.mrc", np.int8, True),
        ("/data/segmentation/Annotations.mrc", np.int32, True),
        ("mask.mrc", bool, True),
        ("TS_01_labels.mrc", np.float32, False),
        ("tomogram.mrc", np.uint8, False),
        ("segment.mrc", np.uint8, False),
        ("length.mrc", np.uint8, False),
        ("/data/labels/tomo.mrc", np.uint8, False),  # folders do not count
    ],
)
def test_looks_like_labels(name, dtype, expected):
    assert looks_like_labels(name, dtype) is expected


def test_read_mrc_sets_is_labels(tmp_path):
    labels = np.zeros((2, 2, 2), np.uint8)
    assert read_mrc(write_mrc(tmp_path / "cell_labels.mrc", labels)).is_labels
    assert not read_mrc(write_mrc(tmp_path / "cell.mrc", labels)).is_labels


def test_suffixes():
    assert MRC_SUFFIXES == (".mrc", ".rec", ".map", ".mrcs", ".st")


def test_gzip_compressed_file_is_read_into_memory(tmp_path):
    data = _ramp("float32", (2, 3, 4))
    path = tmp_path / "packed.mrc.gz"
    with mrcfile.new(path, compression="gzip") as mrc:
        mrc.set_data(data)
        mrc.voxel_size = (8.0, 10.0, 12.0)
    vol = read_mrc(path)
    np.testing.assert_array_equal(vol.data, data)
    assert vol.voxel_size == (12.0, 10.0, 8.0)

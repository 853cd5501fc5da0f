"""The patch store and CryoSiam patch folders (napari_cryolearn.io.patch_store / cryosiam_patches)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import zarr

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.io.cryosiam_patches import (
    export_cryosiam_patches,
    import_cryosiam_patches,
    list_cryosiam_patches,
    parse_patch_name,
    patch_name,
)
from napari_cryolearn.io.mrc import read_mrc, write_mrc
from napari_cryolearn.io.patch_store import PatchReader, open_patch_store, read_patches, write_patch_store
from napari_cryolearn.io.patch_grid import patch_grid


@pytest.fixture
def volumes(rng):
    image = rng.normal(size=(24, 30, 36)).astype(np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[2:6, 3:9, 4:10] = 1
    labels[20:23, 25:29, 30:35] = 2
    distances = rng.normal(size=(3, *image.shape)).astype(np.float32)
    return image, labels, distances


def crop(volume, origin, size):
    box = tuple(slice(int(o), int(o) + s) for o, s in zip(origin, size))
    return volume[(Ellipsis, *box)]


def test_round_trip_and_random_reads(tmp_path, volumes):
    image, labels, distances = volumes
    path = run_job(
        write_patch_store(tmp_path / "t.zarr", image, labels, distances, patch_size=(8, 12, 16), overlap=0.5, voxel_size=(7.0, 8.0, 9.0))
    )
    store = open_patch_store(path)
    np.testing.assert_array_equal(store.origins, patch_grid(image.shape, (8, 12, 16), overlap=0.5))
    assert store.voxel_size == (7.0, 8.0, 9.0)
    assert store.volume_shape == (24, 30, 36) and store.patch_size == (8, 12, 16)
    assert store.keys == ("image", "labels", "distances")
    assert len(store) == len(store.origins)
    for i in (0, 7, len(store) - 1, -1):
        item = store[i]
        np.testing.assert_array_equal(item["image"], crop(image, item["origin"], (8, 12, 16)))
        np.testing.assert_array_equal(item["labels"], crop(labels, item["origin"], (8, 12, 16)))
        np.testing.assert_array_equal(item["distances"], crop(distances, item["origin"], (8, 12, 16)))
        assert item["labels"].dtype == np.uint8 and item["distances"].shape == (3, 8, 12, 16)
    np.testing.assert_array_equal(store.reassemble("image"), image)
    np.testing.assert_array_equal(store.reassemble("labels"), labels)
    np.testing.assert_array_equal(store.reassemble("distances"), distances)
    with pytest.raises(IndexError):
        store[len(store)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.zarr"]  # no temporaries left


def test_remove_only_background(tmp_path, volumes):
    image, labels, _ = volumes
    all_origins = patch_grid(image.shape, 8, overlap=0.0)
    store = open_patch_store(
        run_job(write_patch_store(tmp_path / "t.zarr", image, labels, patch_size=8, overlap=0.0, remove_only_background=True))
    )
    expected = [o for o in all_origins.tolist() if crop(labels, o, (8, 8, 8)).any()]
    assert store.origins.tolist() == expected and 0 < len(expected) < len(all_origins)
    assert all(store[i]["labels"].any() for i in range(len(store)))
    assert store.attrs["remove_only_background"] is True


def test_closing_the_writer_early_leaves_nothing(tmp_path, volumes):
    image, labels, _ = volumes
    gen = write_patch_store(tmp_path / "t.zarr", image, labels, patch_size=8)
    next(gen)
    next(gen)
    gen.close()
    assert list(tmp_path.iterdir()) == []


def test_overwrite_false_keeps_the_old_store(tmp_path, volumes):
    image, _, _ = volumes
    run_job(write_patch_store(tmp_path / "t.zarr", image, patch_size=12))
    with pytest.raises(FileExistsError):
        run_job(write_patch_store(tmp_path / "t.zarr", image * 0, patch_size=12, overwrite=False))
    np.testing.assert_array_equal(open_patch_store(tmp_path / "t.zarr").reassemble(), image)


def test_open_refuses_other_folders(tmp_path):
    with pytest.raises(InputError, match="not found"):
        open_patch_store(tmp_path / "missing.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(InputError, match="empty.zarr"):
        open_patch_store(tmp_path / "empty.zarr")


def _mapped_rss_kib(path) -> int:
    """Resident KiB of this process's mappings of ``path`` (from /proc/self/smaps)."""
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        if "-" in line.split(" ", 1)[0]:
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def test_patch_reader_reads_memory_maps_in_blocks(tmp_path, rng):
    volume = rng.normal(size=(2, 9, 10, 11)).astype(">f4")  # big-endian, as some MRC files
    np.save(tmp_path / "a.npy", volume)
    mm = np.load(tmp_path / "a.npy", mmap_mode="r")
    for block_bytes in (1, 500, 8 << 20):  # one plane, a few planes, the whole patch per block
        with PatchReader(mm, block_bytes=block_bytes) as reader:
            for origin, size in [((0, 0, 0), (9, 10, 11)), ((3, 4, 5), (2, 6, 6)), ((8, 9, 10), (1, 1, 1))]:
                np.testing.assert_array_equal(reader.read(origin, size), crop(volume, origin, size))
        with PatchReader(mm[1], block_bytes=block_bytes) as reader:
            np.testing.assert_array_equal(reader.read((1, 2, 3), (4, 4, 4)), volume[1, 1:5, 2:6, 3:7])
    with PatchReader(volume[0]) as reader:  # plain arrays are sliced
        np.testing.assert_array_equal(reader.read((1, 2, 3), (4, 4, 4)), volume[0, 1:5, 2:6, 3:7])
    with pytest.raises(ValueError, match="shape"):
        PatchReader(volume[0, 0])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_patch_reader_leaves_no_pages_of_the_map_resident(tmp_path):
    volume = np.arange(32 * 128 * 128, dtype=np.float32).reshape(32, 128, 128)
    path = tmp_path / "big.npy"
    np.save(path, volume)
    mm = np.load(path, mmap_mode="r")
    np.array(mm[:, 10:40, 20:50])  # a plain copy through the map leaves its pages mapped
    assert _mapped_rss_kib(path) > 0
    with PatchReader(mm, block_bytes=128 * 128 * 4) as reader:
        reader.close()
        assert _mapped_rss_kib(path) == 0
        patch = reader.read((4, 10, 20), (16, 30, 30))
        assert _mapped_rss_kib(path) == 0
    np.testing.assert_array_equal(patch, volume[4:20, 10:40, 20:50])


def test_patch_names():
    assert patch_name("TS_01", (0, 64, 128)) == "TS_01_z0_y64_x128"
    assert parse_patch_name("TS_01_z0_y64_x128") == ("TS_01", (0, 64, 128))
    assert parse_patch_name("a_z1_y2_x3_z4_y5_x6") == ("a_z1_y2_x3", (4, 5, 6))
    assert parse_patch_name("TS_01") is None


def test_cryosiam_folder_export_import_round_trip(tmp_path, volumes):
    image, labels, distances = volumes
    store = open_patch_store(
        run_job(write_patch_store(tmp_path / "TS_1.zarr", image, labels, distances, patch_size=12, voxel_size=(5.0, 6.0, 7.0)))
    )
    other = run_job(write_patch_store(tmp_path / "other.zarr", image[:12, :12, :12], patch_size=12))
    folder = tmp_path / "patches"
    written = export_cryosiam_patches(store, folder)
    export_cryosiam_patches(other, folder)
    assert len(written) == 3 * len(store)
    o = store.origins[3]
    stem = f"TS_1_z{o[0]}_y{o[1]}_x{o[2]}"
    mrc = read_mrc(folder / "image" / f"{stem}.mrc")
    assert mrc.data.dtype == np.float32 and mrc.voxel_size == (5.0, 6.0, 7.0)
    np.testing.assert_array_equal(mrc.data, crop(image, o, (12, 12, 12)))
    lab = read_mrc(folder / "labels" / f"{stem}.mrc")
    assert lab.data.dtype == np.float32  # as CryoSiam writes them
    with np.load(folder / "distances" / f"{stem}.npz") as npz:
        np.testing.assert_array_equal(npz["data"], crop(distances, o, (12, 12, 12)))
    assert sorted(list_cryosiam_patches(folder)) == ["TS_1", "other"]

    stores = import_cryosiam_patches(folder, tmp_path / "imported")
    assert sorted(stores) == ["TS_1", "other"]
    back = open_patch_store(stores["TS_1"])
    assert sorted(back.origins.tolist()) == sorted(store.origins.tolist())
    assert back.voxel_size == (5.0, 6.0, 7.0)
    assert back.volume_shape == image.shape  # max origin + patch size: the cover grid reaches the edges
    assert back.keys == ("image", "labels", "distances") and back.read("labels", 0).dtype == np.uint8
    np.testing.assert_array_equal(back.reassemble("image"), image)
    np.testing.assert_array_equal(back.reassemble("labels"), labels)
    np.testing.assert_array_equal(back.reassemble("distances"), distances)
    assert open_patch_store(stores["other"]).keys == ("image",)


def test_import_cryosiam_files_with_float_labels_and_unit_voxels(tmp_path, rng):
    folder = tmp_path / "patches"
    for origin in [(0, 0, 0), (0, 0, 8)]:
        stem = patch_name("tomo", origin)
        write_mrc(folder / "image" / f"{stem}.mrc", rng.normal(size=(8, 8, 8)).astype(np.float32))
        write_mrc(folder / "labels" / f"{stem}.mrc", np.full((8, 8, 8), 300.0, np.float32))
    (folder / "image" / "notes.txt").write_text("not a patch")
    store = open_patch_store(import_cryosiam_patches(folder, tmp_path / "out", volume_shape=(10, 10, 20))["tomo"])
    assert store.volume_shape == (10, 10, 20) and store.voxel_size == (1.0, 1.0, 1.0)
    assert store.read("labels", 1).dtype == np.uint16 and store.read("labels", 1).max() == 300
    write_mrc(folder / "labels" / f"{patch_name('tomo', (0, 0, 8))}.mrc", np.full((8, 8, 8), 0.5, np.float32))
    with pytest.raises(InputError, match="whole numbers"):
        import_cryosiam_patches(folder, tmp_path / "out2")
    assert not (tmp_path / "out2" / "tomo.zarr").exists()


@pytest.mark.parametrize("compressor", ["auto", "blosc-lz4", "zstd", None, {"image": "zstd", "labels": None}])
def test_chunks_written_directly_read_back_through_zarr(tmp_path, volumes, compressor):
    import zarr

    image, labels, distances = volumes
    path = run_job(write_patch_store(tmp_path / "t.zarr", image, labels, distances, patch_size=12, compressor=compressor))
    group = zarr.open_group(path, mode="r")
    origins = group["origins"][...]
    for i in (0, len(origins) - 1):
        np.testing.assert_array_equal(group["image"][i], crop(image, origins[i], (12, 12, 12)))
        np.testing.assert_array_equal(group["labels"][i], crop(labels, origins[i], (12, 12, 12)))
        np.testing.assert_array_equal(group["distances"][i], crop(distances, origins[i], (12, 12, 12)))
    np.testing.assert_array_equal(open_patch_store(path).reassemble("labels"), labels)


def test_read_patches_in_order_with_nan_named_and_early_close(tmp_path, rng):
    volume = rng.normal(size=(20, 20, 20)).astype(np.float32)
    labels = (volume > 1).astype(np.uint8)
    origins = np.array([(0, 0, 0), (10, 10, 10), (5, 0, 10), (0, 12, 3)])
    readers = {"image": PatchReader(volume), "labels": PatchReader(labels)}
    got = list(read_patches(readers, origins, (8, 8, 8)))
    assert len(got) == len(origins)
    for origin, patch in zip(origins, got):
        np.testing.assert_array_equal(patch["image"], crop(volume, origin, (8, 8, 8)))
        np.testing.assert_array_equal(patch["labels"], crop(labels, origin, (8, 8, 8)))
    assert list(read_patches(readers, origins[:0], (8, 8, 8))) == []

    gen = read_patches(readers, origins, (8, 8, 8))
    next(gen)
    gen.close()  # waits for the read in flight; nothing left running

    bad = volume.copy()
    bad[6, 3, 12] = np.inf  # only in the patch at (5, 0, 10)
    gen = read_patches({"image": PatchReader(bad)}, origins, (8, 8, 8))
    assert len([next(gen), next(gen)]) == 2
    with pytest.raises(ValueError, match=r"NaN or infinite.*\(5, 0, 10\)"):
        next(gen)


@pytest.mark.parametrize("compressor", ["auto", "blosc-lz4", "zstd", None])
def test_direct_chunk_reads_equal_zarr_reads(tmp_path, volumes, compressor):
    image, labels, distances = volumes
    store = open_patch_store(run_job(write_patch_store(tmp_path / "s.zarr", image, labels, distances, patch_size=12,
                                                       compressor=compressor)))
    assert all(store._files[k] is not None for k in store.keys)  # the fast path is taken
    for i in (0, len(store) // 2, len(store) - 1, -1):
        item = store[i]
        for key in store.keys:
            via_zarr = np.asarray(store._arrays[key][i])
            np.testing.assert_array_equal(item[key], via_zarr)
            assert item[key].dtype == via_zarr.dtype and item[key].flags.writeable
            np.testing.assert_array_equal(store.read(key, i), via_zarr)
    with pytest.raises(IndexError):
        store.read("image", len(store))


@pytest.mark.parametrize("compressor", ["zstd", None, "blosc-lz4"])
def test_damaged_or_missing_chunks(tmp_path, volumes, compressor):
    image, _, _ = volumes
    path = run_job(write_patch_store(tmp_path / "s.zarr", image, patch_size=12, compressor=compressor))
    chunk = path / "image" / "c.1.0.0.0"
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])
    store = open_patch_store(path)
    with pytest.raises(InputError, match=r"c\.1\.0\.0\.0.*truncated or damaged"):
        store[1]
    (path / "image" / "c.2.0.0.0").unlink()  # deleted after opening: an error, never zeros
    with pytest.raises(InputError, match=r"c\.2\.0\.0\.0: missing chunk"):
        store[2]


def test_stores_of_another_layout_are_read_through_zarr(tmp_path, volumes):
    image, _, _ = volumes
    path = run_job(write_patch_store(tmp_path / "s.zarr", image, patch_size=12))
    store = open_patch_store(path)
    patches = np.asarray(store._arrays["image"][...])
    group = zarr.open_group(path, mode="r+")
    del group["image"]
    group.create_array("image", data=patches, chunks=(2, 6, 12, 12))  # two patches per chunk, split
    other = open_patch_store(path)
    assert other._files["image"] is None
    for i in range(len(other)):
        np.testing.assert_array_equal(other[i]["image"], patches[i])

"""Damaged patch stores: every missing chunk, broken metadata file or bad attribute is an
:class:`InputError` naming the file (and field), never zeros, a traceback or a blank patch trained on.

One small valid store (16³ volume, 8³ patches, image + labels + distances) is written once per
module and copied into each case's own folder before it is damaged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_cryolearn.cli import main
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.io.cryosiam_patches import export_cryosiam_patches, import_cryosiam_patches, patch_name
from napari_cryolearn.io.mrc import write_mrc
from napari_cryolearn.io.patch_store import PatchStoreWriter, open_patch_store, write_patch_store

@pytest.fixture(scope="module")
def volumes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    image = rng.normal(size=(16, 16, 16)).astype(np.float32)
    labels = (image > 0.5).astype(np.uint8)
    distances = rng.normal(size=(2, 16, 16, 16)).astype(np.float32)
    return image, labels, distances


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, volumes) -> Path:
    """A valid store of 8 patches (never modified)."""
    image, labels, distances = volumes
    path = tmp_path_factory.mktemp("pristine") / "s.zarr"
    return run_job(write_patch_store(path, image, labels, distances, patch_size=8, overlap=0))


@pytest.fixture
def store(pristine, tmp_path) -> Path:
    """A copy of the valid store, to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "s.zarr"))


def _edit_json(path: Path, edit) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def _attrs(**changes):
    """An edit of a group zarr.json setting (or, for the value ``...``, deleting) attributes."""
    def edit(meta):
        for key, value in changes.items():
            if value is ...:
                del meta["attributes"][key]
            else:
                meta["attributes"][key] = value
    return edit


# ---------------------------------------------------------------------------------------------
# 1. missing chunks are damage, not zeros


@pytest.mark.parametrize("compressor", ["auto", "zstd", None])
@pytest.mark.parametrize("array", ["image", "labels", "distances"])
def test_a_missing_chunk_is_refused_on_opening(tmp_path, volumes, array, compressor):
    image, labels, distances = volumes
    path = run_job(write_patch_store(tmp_path / "s.zarr", image, labels, distances, patch_size=8, overlap=0,
                                     compressor=compressor))
    chunk = next((path / array).glob("c.3.*"))
    chunk.unlink()
    with pytest.raises(InputError, match=r"missing chunk \(patch 3 of '" + array + r"'\).*incomplete or damaged.*"
                                         r"re-create it with `cryolearn prep patches`") as err:
        open_patch_store(path)
    assert err.value.path == str(chunk)


def test_a_chunk_deleted_after_opening_is_an_error_when_read(store, volumes):
    opened = open_patch_store(store)
    expected = opened[3]["image"].copy()
    assert expected.any()
    (store / "image" / "c.3.0.0.0").unlink()
    with pytest.raises(InputError, match=r"image/c\.3\.0\.0\.0: missing chunk \(patch 3 of 'image'\)"):
        opened[3]
    with pytest.raises(InputError, match=r"c\.3\.0\.0\.0: missing chunk"):
        opened.reassemble("image")
    np.testing.assert_array_equal(opened.reassemble("labels"), volumes[1])  # the other arrays still read


def test_a_chunk_replaced_by_a_folder_is_an_error(store):
    opened = open_patch_store(store)
    (store / "labels" / "c.2.0.0.0").unlink()
    (store / "labels" / "c.2.0.0.0").mkdir()
    with pytest.raises(InputError, match=r"labels/c\.2\.0\.0\.0: cannot read chunk"):
        opened.read("labels", 2)
    with pytest.raises(InputError, match=r"labels/c\.2\.0\.0\.0: cannot read chunk"):
        open_patch_store(store).reassemble("labels")


def _rechunk_through_zarr(path: Path, key: str, chunks: tuple[int, ...]) -> np.ndarray:
    """Rewrite array ``key`` of the store in another layout (read through zarr, not chunk files)."""
    group = zarr.open_group(path, mode="r+")
    data = np.asarray(group[key][...])
    attrs = dict(group.attrs)
    del group[key]
    group.create_array(key, data=data, chunks=chunks, config={"write_empty_chunks": True})
    group.attrs.update(attrs)
    return data


def test_missing_chunks_of_another_layout(store):
    data = _rechunk_through_zarr(store, "image", (2, 4, 8, 8))  # two patches per chunk, split in two along z
    opened = open_patch_store(store)
    assert opened._files["image"] is None  # read through zarr
    np.testing.assert_array_equal(opened.read("image", 5), data[5])
    (store / "image" / "c" / "2" / "1" / "0" / "0").unlink()  # the second half of patches 4 and 5
    with pytest.raises(InputError, match=r"image/c/2/1/0/0: missing chunk \(patch 5 of 'image'\)"):
        opened.read("image", 5)
    np.testing.assert_array_equal(opened.read("image", 3), data[3])
    with pytest.raises(InputError, match=r"image/c/2/1/0/0: missing chunk \(patch 4 of 'image'\)"):
        open_patch_store(store)


def test_a_damaged_chunk_of_another_layout(store):
    _rechunk_through_zarr(store, "labels", (2, 8, 8, 8))
    chunk = store / "labels" / "c" / "1" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:7])
    opened = open_patch_store(store)
    with pytest.raises(InputError, match=r"labels: cannot read patch 2 of 'labels'.*incomplete or damaged"):
        opened.read("labels", 2)


def test_stores_of_older_versions_open(store, volumes):
    _edit_json(store / "zarr.json", _attrs(complete=...))  # written before "complete" was recorded
    opened = open_patch_store(store)
    np.testing.assert_array_equal(opened.reassemble("image"), volumes[0])
    (store / "labels" / "c.6.0.0.0").unlink()
    with pytest.raises(InputError, match=r"labels/c\.6\.0\.0\.0: missing chunk"):  # they too wrote every chunk
        open_patch_store(store)


def test_the_one_origin_of_a_store_at_zero(tmp_path, volumes):
    """Older writers left out the all-zero origins chunk of a one-patch store; ours writes it."""
    path = run_job(write_patch_store(tmp_path / "one.zarr", volumes[0][:8, :8, :8], patch_size=8))
    chunk = path / "origins" / "c" / "0" / "0"
    assert chunk.is_file()
    chunk.unlink()
    with pytest.raises(InputError, match=r"origins/c/0/0: missing chunk \(origins\)"):
        open_patch_store(path)
    _edit_json(path / "zarr.json", _attrs(complete=...))
    assert open_patch_store(path).origins.tolist() == [[0, 0, 0]]


def test_a_missing_origins_chunk_of_an_old_store_with_more_patches(store):
    _edit_json(store / "zarr.json", _attrs(complete=...))
    (store / "origins" / "c" / "0" / "0").unlink()
    with pytest.raises(InputError, match=r"origins/c/0/0: missing chunk \(origins\)"):
        open_patch_store(store)


# ---------------------------------------------------------------------------------------------
# the writer finishes only when every patch of every array was written


def test_the_writer_records_that_it_finished(store):
    assert json.loads((store / "zarr.json").read_text())["attributes"]["complete"] is True
    _edit_json(store / "zarr.json", _attrs(complete=False))
    with pytest.raises(InputError, match=r"zarr\.json: complete: its writer did not finish"):
        open_patch_store(store)


def test_the_writer_refuses_a_patch_missing_one_array(tmp_path, volumes):
    image, labels, _ = volumes
    origins = np.array([(0, 0, 0), (8, 8, 8)])
    target = tmp_path / "s.zarr"
    with pytest.raises(RuntimeError, match=r"not written: labels: 1 of 2 patches \(first: patch 1\)$"):
        with PatchStoreWriter(target, origins, 8, voxel_size=(1, 1, 1), volume_shape=(16, 16, 16),
                              labels_dtype=np.uint8) as writer:
            writer.write(0, image=image[:8, :8, :8], labels=labels[:8, :8, :8])
            writer.write(1, image=image[8:, 8:, 8:])  # labels left out
    assert list(tmp_path.iterdir()) == []
    with PatchStoreWriter(target, origins, 8, voxel_size=(1, 1, 1), volume_shape=(16, 16, 16),
                          labels_dtype=np.uint8) as writer:
        for i, o in enumerate(origins):  # one array per call is fine
            box = tuple(slice(int(v), int(v) + 8) for v in o)
            writer.write(i, labels=labels[box])
            writer.write(i, image=image[box])
    np.testing.assert_array_equal(open_patch_store(target).read("labels", 1), labels[8:, 8:, 8:])


@pytest.mark.parametrize("index", [-1, 2])
def test_the_writer_refuses_patch_indices_outside_the_store(tmp_path, volumes, index):
    with pytest.raises(IndexError, match=f"patch {index} out of range for a store of 2 patches"):
        with PatchStoreWriter(tmp_path / "s.zarr", [(0, 0, 0), (8, 8, 8)], 8, voxel_size=(1, 1, 1),
                              volume_shape=(16, 16, 16)) as writer:
            writer.write(index, image=volumes[0][:8, :8, :8])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("origins, voxel_size, volume_shape, problem", [
    ([(0, 0, 9)], (1, 1, 1), (16, 16, 16), r"the patch at \(0, 0, 9\) of size \(8, 8, 8\) reaches outside"),
    ([(-1, 0, 0)], (1, 1, 1), (16, 16, 16), r"the patch at \(-1, 0, 0\)"),
    ([(0, 0, 0)], (1, 0, 1), (16, 16, 16), r"voxel_size must be 3 finite positive numbers"),
    ([(0, 0, 0)], (1, 1, 1), (2**31, 16, 16), r"volume_shape must be 3 integers in 1 \.\. 2147483647"),
])
def test_the_writer_refuses_a_store_the_reader_would(tmp_path, origins, voxel_size, volume_shape, problem):
    with pytest.raises(ValueError, match=problem):
        PatchStoreWriter(tmp_path / "s.zarr", origins, 8, voxel_size=voxel_size, volume_shape=volume_shape)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# 2. broken metadata: the file and the field are named


def test_a_store_without_its_group_metadata(store):
    (store / "zarr.json").unlink()
    with pytest.raises(InputError, match=r"s\.zarr/zarr\.json: missing: not a patch store") as err:
        open_patch_store(store)
    assert err.value.path == str(store / "zarr.json")


@pytest.mark.parametrize("content, problem", [
    (b"{\"attributes\": {", r"not valid JSON"),
    (b"\xff\xfe\x00garbage", r"not valid JSON"),
    (b"[1, 2, 3]", r"expected a JSON object, got list"),
    (b"\"text\"", r"expected a JSON object, got str"),
    (b"[" * 100_000 + b"]" * 100_000, r"not valid JSON"),
])
def test_group_metadata_that_is_not_a_json_object(store, content, problem):
    (store / "zarr.json").write_bytes(content)
    with pytest.raises(InputError, match=r"s\.zarr/zarr\.json: " + problem + r".*re-create it"):
        open_patch_store(store)


@pytest.mark.parametrize("edit, field, problem", [
    (lambda m: m.update(attributes=[1, 2]), "attributes", r"expected a JSON object, got list"),
    (lambda m: m.pop("attributes"), "format", r"not a napari-cryolearn patch store \(format None\)"),
    (_attrs(format="zarr"), "format", r"not a napari-cryolearn patch store \(format 'zarr'\)"),
    (_attrs(format_version=...), "format_version", r"missing from the store's attributes"),
    (_attrs(format_version="1"), "format_version", r"expected a positive integer, got '1'"),
    (_attrs(format_version=[1]), "format_version", r"expected a positive integer, got \[1\]"),
    (_attrs(format_version=2), "format_version", r"format_version 2 is newer than this reader \(1\)"),
    (_attrs(complete="yes"), "complete", r"expected true or false, got 'yes'"),
    (_attrs(voxel_size=...), "voxel_size", r"missing from the store's attributes"),
    (_attrs(voxel_size=10.0), "voxel_size", r"expected 3 positive numbers \(z, y, x, Å\), got 10\.0"),
    (_attrs(voxel_size=[10, 10]), "voxel_size", r"got \[10, 10\]"),
    (_attrs(voxel_size=["10", 10, 10]), "voxel_size", r"got \['10', 10, 10\]"),
    (_attrs(voxel_size=[0, 10, 10]), "voxel_size", r"got \[0, 10, 10\]"),
    (_attrs(voxel_size=[True, 10, 10]), "voxel_size", r"got \[True, 10, 10\]"),
    (_attrs(voxel_size=[10**400, 10, 10]), "voxel_size", r"got \[1000000"),
    (_attrs(volume_shape=...), "volume_shape", r"missing from the store's attributes"),
    (_attrs(volume_shape=[16, 16]), "volume_shape", r"expected 3 positive integers \(z, y, x\), got \[16, 16\]"),
    (_attrs(volume_shape=[16.0, 16, 16]), "volume_shape", r"got \[16\.0, 16, 16\]"),
    (_attrs(volume_shape={"z": 16}), "volume_shape", r"got \{'z': 16\}"),
    (_attrs(volume_shape=[2**40, 16, 16]), "volume_shape", r"got \[1099511627776, 16, 16\]"),
    (_attrs(patch_size=None), "patch_size", r"expected 3 positive integers \(z, y, x\), got None"),
    (_attrs(patch_size=[8, 8, -8]), "patch_size", r"got \[8, 8, -8\]"),
    (_attrs(n_patches="8"), "n_patches", r"expected a whole number ≥ 0, got '8'"),
    (lambda m: m.update(node_type="array"), None, r"not a zarr v3 group \(zarr_format 3, node_type 'array'\)"),
    (lambda m: m.update(zarr_format=2), None, r"not a zarr v3 group \(zarr_format 2, node_type 'group'\)"),
])
def test_bad_group_attributes(store, edit, field, problem):
    _edit_json(store / "zarr.json", edit)
    prefix = r"s\.zarr/zarr\.json: " + (f"{field}: " if field else "")
    with pytest.raises(InputError, match=prefix + ".*" + problem) as err:
        open_patch_store(store)
    assert err.value.field == field


@pytest.mark.parametrize("edit, target, field, problem", [
    # attributes that disagree with the arrays
    (_attrs(n_patches=7), "origins/zarr.json", "shape", r"shape \(8, 3\), expected \(7, 3\)"),
    (_attrs(patch_size=[4, 8, 8]), "image/zarr.json", "shape", r"shape \(8, 8, 8, 8\), expected \(8, 4, 8, 8\)"),
    (_attrs(volume_shape=[16, 16, 12]), "origins", "origins",
     r"patch 1 at \(z, y, x\) \(0, 0, 8\) of patch_size \(8, 8, 8\) reaches outside volume_shape \(16, 16, 12\)"),
])
def test_attributes_that_disagree_with_the_arrays(store, edit, target, field, problem):
    _edit_json(store / "zarr.json", edit)
    with pytest.raises(InputError, match=problem) as err:
        open_patch_store(store)
    assert (err.value.path, err.value.field) == (str(store / target), field)


def _set(key, value):
    def edit(meta):
        meta[key] = value
    return edit


@pytest.mark.parametrize("array, edit, field, problem", [
    ("origins", _set("shape", [8, 2]), "shape", r"shape \(8, 2\), expected \(8, 3\)"),
    ("origins", _set("shape", [8]), None, r"unusable array metadata \(ValueError: .*same number of dimensions"),
    ("origins", _set("data_type", "float64"), "data_type", r"data_type float64, expected integer values"),
    ("image", _set("shape", [7, 8, 8, 8]), "shape", r"shape \(7, 8, 8, 8\), expected \(8, 8, 8, 8\)"),
    ("image", _set("shape", [8, 8, 8]), None, r"unusable array metadata \(ValueError: .*same number of dimensions"),
    ("image", lambda m: m.update(shape=[8, 8, 8], chunk_grid={"name": "regular", "configuration": {
        "chunk_shape": [1, 8, 8]}}), "shape", r"shape \(8, 8, 8\), expected \(8, 8, 8, 8\)"),
    ("image", _set("data_type", "int16"), "data_type", r"data_type int16, expected floating-point values"),
    ("labels", _set("data_type", "float32"), "data_type", r"data_type float32, expected integer values"),
    ("distances", _set("shape", [8, 2, 8, 8, 4]), "shape", r"expected \(8, C, 8, 8, 8\)"),
    ("distances", _set("shape", [8, 0, 8, 8, 8]), "shape", r"shape \(8, 0, 8, 8, 8\), expected \(8, C, 8, 8, 8\)"),
    ("labels", _set("node_type", "group"), None, r"not a zarr v3 array \(zarr_format 3, node_type 'group'\)"),
    ("labels", _set("shape", "big"), None, r"unusable array metadata"),
    ("labels", _set("chunk_grid", {"name": "irregular"}), None, r"unusable array metadata"),
    ("labels", _set("codecs", [{"name": "no-such-codec"}]), None, r"unusable array metadata"),
])
def test_bad_array_metadata(store, array, edit, field, problem):
    _edit_json(store / array / "zarr.json", edit)
    with pytest.raises(InputError, match=problem + r".*re-create it") as err:
        open_patch_store(store)
    assert (err.value.path, err.value.field) == (str(store / array / "zarr.json"), field)


@pytest.mark.parametrize("array", ["image", "labels", "origins"])
def test_missing_or_garbled_array_metadata(store, array):
    meta = store / array / "zarr.json"
    meta.write_bytes(b"\x00\x01 not json")
    with pytest.raises(InputError, match=rf"{array}/zarr\.json: not valid JSON"):
        open_patch_store(store)
    meta.unlink()
    with pytest.raises(InputError, match=rf"{array}/zarr\.json: missing: the '{array}' array has no metadata"):
        open_patch_store(store)


def test_a_store_without_arrays(store):
    for key in ("image", "labels", "distances"):
        shutil.rmtree(store / key)
    with pytest.raises(InputError, match=r"s\.zarr: no image, labels or distances array"):
        open_patch_store(store)
    shutil.rmtree(store / "origins")
    (store / "image").mkdir()
    with pytest.raises(InputError, match=r"image/zarr\.json: missing"):
        open_patch_store(store)


def test_origins_outside_the_volume(store):
    chunk = store / "origins" / "c" / "0" / "0"
    origins = np.frombuffer(chunk.read_bytes(), dtype="<i8").reshape(-1, 3).copy()
    origins[5] = (2**62, 0, 0)  # far beyond: no overflow in the check
    chunk.write_bytes(origins.tobytes())
    with pytest.raises(InputError, match=r"origins: origins: patch 5 at \(z, y, x\) \(4611686018427387904, 0, 0\)"):
        open_patch_store(store)
    origins[5] = (0, -8, 0)
    chunk.write_bytes(origins.tobytes())
    with pytest.raises(InputError, match=r"patch 5 at \(z, y, x\) \(0, -8, 0\) .*reaches outside"):
        open_patch_store(store)


def test_reassembling_a_volume_larger_than_memory(store):
    _edit_json(store / "zarr.json", _attrs(volume_shape=[2**30, 2**30, 16]))
    opened = open_patch_store(store)
    assert len(opened) == 8 and opened[7]["image"].shape == (8, 8, 8)
    with pytest.raises(InputError, match=r"zarr\.json: volume_shape: reassembling 'image' needs \d+\.\d GiB"):
        opened.reassemble("image")


def test_junk_files_are_ignored(store, volumes):
    (store / "notes.txt").write_text("mine")
    (store / "image" / "c.99.0.0.0.bak").write_bytes(b"junk")
    (store / "labels" / "sub").mkdir()
    (store / "labels" / "sub" / "c.0.0.0.0").write_bytes(b"junk")
    np.testing.assert_array_equal(open_patch_store(store).reassemble("labels"), volumes[1])


# ---------------------------------------------------------------------------------------------
# CryoSiam patch folders (reading side)


def _cryosiam_folder(tmp_path: Path, volumes) -> Path:
    image, labels, distances = volumes
    source = run_job(write_patch_store(tmp_path / "tomo.zarr", image, labels, distances, patch_size=8, overlap=0))
    folder = tmp_path / "patches"
    export_cryosiam_patches(source, folder)
    return folder


def test_cryosiam_import_of_unusable_patches(tmp_path, volumes):
    folder = _cryosiam_folder(tmp_path, volumes)
    stem = patch_name("tomo", (8, 0, 0))
    good = (folder / "distances" / f"{stem}.npz").read_bytes()
    cases = [
        ("distances", ".npz", b"PK\x03\x04 not a zip", r"data: not a readable \.npz file"),
        ("distances", ".npz", None,
         r"distances: expected a \(C, pz, py, px\) array of real values, got shape \(8, 8, 8\)"),
        ("labels", ".mrc", np.full((8, 8), 1.0, np.float32), r"labels: expected a \(pz, py, px\) array"),
        ("labels", ".mrc", np.full((8, 8, 8), 2.0**33, np.float32), r"labels: labels must be ≤ 4294967295"),
        ("image", ".mrc", np.zeros((8, 8, 4), np.float32), r"image: patch shape \(8, 8, 4\) differs from the first"),
    ]
    for key, suffix, content, problem in cases:
        target = folder / key / f"{stem}{suffix}"
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif key == "distances":
            np.savez(target.with_suffix(""), data=np.zeros((8, 8, 8), np.float32))
        else:
            write_mrc(target, content, overwrite=True)
        with pytest.raises(InputError, match=r"_z8_y0_x0" + suffix.replace(".", r"\.") + ": " + problem):
            import_cryosiam_patches(folder, tmp_path / "out")
        assert not (tmp_path / "out" / "tomo.zarr").exists()
        if key == "distances":
            target.write_bytes(good)
        else:
            write_mrc(target, volumes[0 if key == "image" else 1][8:, :8, :8].astype(np.float32), overwrite=True)
    store = open_patch_store(import_cryosiam_patches(folder, tmp_path / "out")["tomo"])
    np.testing.assert_array_equal(store.reassemble("labels"), volumes[1])


def test_cryosiam_import_checks_the_given_geometry(tmp_path, volumes):
    folder = _cryosiam_folder(tmp_path, volumes)
    with pytest.raises(InputError, match=r"image/tomo_z0_y0_x8\.mrc: volume_shape: this patch of size \(8, 8, 8\) "
                                         r"reaches beyond volume_shape \(16, 16, 12\)"):
        import_cryosiam_patches(folder, tmp_path / "out", volume_shape=(16, 16, 12))
    with pytest.raises(InputError, match=r"patches: voxel_size: expected 3 positive numbers"):
        import_cryosiam_patches(folder, tmp_path / "out", voxel_size=(1.0, 0.0, 1.0))
    with pytest.raises(InputError, match=r"patches: volume_shape: expected 3 positive numbers \(z, y, x\) below"):
        import_cryosiam_patches(folder, tmp_path / "out", volume_shape=(2**40, 16, 16))
    (folder / "labels" / f"{patch_name('tomo', (0, 8, 0))}.mrc").unlink()
    with pytest.raises(InputError, match=r"tomo_z0_y8_x0\.mrc: labels: missing: other patches of this tomogram"):
        import_cryosiam_patches(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_cryosiam_import_of_a_folder_without_patches(tmp_path, store):
    (tmp_path / "empty" / "image").mkdir(parents=True)
    with pytest.raises(InputError, match=r"empty: no CryoSiam patches in this folder"):
        import_cryosiam_patches(tmp_path / "empty", tmp_path / "out")
    (store / "zarr.json").unlink()  # a patch store that lost its metadata looks like a CryoSiam folder
    with pytest.raises(InputError, match=r"s\.zarr/zarr\.json: missing: a patch store without its group metadata"):
        import_cryosiam_patches(store, tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# training on a damaged store: refused before it starts


@pytest.fixture(scope="module")
def trainable(tmp_path_factory) -> Path:
    """A patch store of the sample tomogram and its labels (patch 16)."""
    root = tmp_path_factory.mktemp("trainable")
    assert main(["-q", "sample", str(root / "data"), "--shape", "24", "32", "32"]) == 0
    store = root / "tomogram.zarr"
    assert main(["-q", "prep", "patches", str(root / "data" / "tomogram.mrc"), str(store),
                 "--labels", str(root / "data" / "labels.mrc"), "--patch-size", "16"]) == 0
    return store


@pytest.fixture
def train(capsys, train_argv):
    """``train(store, run) -> (exit code, stderr)`` of ``cryolearn segment train``."""

    def run(store: Path, log_dir: Path) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["-q", *train_argv(store, log_dir)])
        return code, capsys.readouterr().err

    return run


@pytest.mark.parametrize("array", ["image", "labels"])
def test_training_on_a_store_with_a_missing_chunk_is_refused(trainable, tmp_path, train, array):
    store = Path(shutil.copytree(trainable, tmp_path / "tomogram.zarr"))
    chunk = store / array / "c.1.0.0.0"
    chunk.unlink()
    code, err = train(store, tmp_path / "run")
    assert code == 2, err
    assert f"cryolearn: error: {chunk}: missing chunk (patch 1 of '{array}')" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_training_on_a_store_without_its_metadata_is_refused(trainable, tmp_path, train):
    store = Path(shutil.copytree(trainable, tmp_path / "tomogram.zarr"))
    (store / "zarr.json").unlink()
    code, err = train(store, tmp_path / "run")
    assert code == 2, err
    assert f"cryolearn: error: {store / 'zarr.json'}: missing" in err and "Traceback" not in err

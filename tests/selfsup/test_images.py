"""Listing, checking and reading micrographs; the streaming dataset."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io import write_mrc
from napari_cryolearn.selfsup.images import (
    ImageRef,
    MicrographDataset,
    check_micrographs,
    list_micrographs,
    prepare,
    read_micrograph,
)


@pytest.fixture
def folder(tmp_path, rng):
    d = tmp_path / "mics"
    d.mkdir()
    write_mrc(d / "a.mrc", rng.normal(size=(64, 64)).astype(np.float32), voxel_size=1.2)
    write_mrc(d / "b.mrcs", np.stack([np.full((64, 64), i, np.float32) + rng.normal(size=(64, 64)).astype(np.float32)
                                      for i in range(3)]), voxel_size=0.8)
    tifffile.imwrite(d / "c.tif", rng.integers(0, 1000, size=(64, 64)).astype(np.uint16))
    tifffile.imwrite(d / "d.tiff", rng.normal(size=(2, 64, 64)).astype(np.float32))
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 30, 60, 90
    Image.fromarray(rgb).save(d / "e.png")
    (d / "notes.txt").write_text("not an image")
    return d


def test_a_folder_lists_every_image_and_every_slice_of_stacks(folder):
    refs = list_micrographs(folder)
    assert [(r.path.name, r.index) for r in refs] == [
        ("a.mrc", None), ("b.mrcs", 0), ("b.mrcs", 1), ("b.mrcs", 2), ("c.tif", None), ("d.tiff", 0),
        ("d.tiff", 1), ("e.png", None)]
    assert check_micrographs(refs) == [(64, 64)] * 8


def test_reading_gives_float32_2d_images_and_header_pixel_sizes(folder):
    refs = list_micrographs(folder)
    images = [read_micrograph(r) for r in refs]
    assert all(im.dtype == np.float32 and im.shape == (64, 64) for im, _ in images)
    assert [px for _, px in images] == [pytest.approx(1.2), pytest.approx(0.8), pytest.approx(0.8),
                                        pytest.approx(0.8), None, None, None, None]
    # the stack's slices are the slices (slice i has mean ~i), the PNG is grey (mean of R, G, B)
    assert [round(float(images[i][0].mean())) for i in (1, 2, 3)] == [0, 1, 2]
    assert np.all(images[7][0] == 60.0)
    stack = tifffile.imread(folder / "d.tiff")
    assert np.array_equal(images[6][0], stack[1])


def test_recursive_and_a_list_file_relative_to_itself(folder, tmp_path):
    sub = folder / "more"
    sub.mkdir()
    write_mrc(sub / "z.mrc", np.ones((8, 8), np.float32))
    assert "z.mrc" not in [r.path.name for r in list_micrographs(folder)]
    assert "z.mrc" in [r.path.name for r in list_micrographs(folder, recursive=True)]
    listing = folder / "list.txt"
    listing.write_text("# chosen\nmore/z.mrc\n\nb.mrcs\n")
    refs = list_micrographs(listing)
    assert [(r.path, r.index) for r in refs] == [(sub / "z.mrc", None)] + [(folder / "b.mrcs", i) for i in range(3)]


def test_an_empty_folder_and_a_missing_source_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no micrographs") as err:
        list_micrographs(tmp_path / "empty")
    assert err.value.path == str(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist"):
        list_micrographs(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no micrographs"):
        check_micrographs([])


def test_corrupt_missing_and_3d_files_are_reported_by_name(folder):
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "trunc.mrc").write_bytes((folder / "a.mrc").read_bytes()[:2000])
    write_mrc(folder / "volume.mrc", np.zeros((4, 16, 16), np.float32))
    refs = list_micrographs(folder) + [ImageRef(folder / "gone.mrc")]
    with pytest.raises(InputError) as err:
        check_micrographs(refs)
    text = str(err.value)
    assert err.value.path == str(folder / "broken.png") and err.value.field == "micrographs"
    assert "4 of 12 micrographs are unusable" in text
    for name in ("broken.png", "trunc.mrc", "volume.mrc", "gone.mrc"):
        assert name in text
    assert "expected a 2D micrograph" in text and ".mrcs" in text and "truncated" in text
    with pytest.raises(InputError) as err:
        read_micrograph(ImageRef(folder / "broken.png"))
    assert err.value.path == str(folder / "broken.png")


def test_prismpyp_metadata_folder(tmp_path, rng):
    meta = tmp_path / "metadata"
    (meta / "webp").mkdir(parents=True)
    (meta / "all_micrographs_list.micrographs").write_text("mic_001\nmic_002\n")
    (meta / "pixel_size.txt").write_text("1.08\n")
    for name in ("mic_001", "mic_002"):
        Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(meta / "webp" / f"{name}.webp",
                                                                             lossless=True)
        spectrum = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(spectrum).save(meta / "webp" / f"{name}_ctffit.webp", lossless=True)
    refs = list_micrographs(meta)
    assert [r.path.name for r in refs] == ["mic_001.webp", "mic_002.webp"]
    image, px = read_micrograph(refs[0])
    assert image.shape == (32, 32) and px == pytest.approx(1.08)
    ctf_refs = list_micrographs(meta, ctffit=True)
    assert [r.path.name for r in ctf_refs] == ["mic_001_ctffit.webp", "mic_002_ctffit.webp"]
    spectrum, _ = read_micrograph(ctf_refs[1])
    assert np.allclose(spectrum, np.rot90(spectrum, 2))  # Friedel-symmetric, as prismpyp makes it
    raw = np.asarray(Image.open(meta / "webp" / "mic_002_ctffit.webp"), np.float32).mean(-1)
    assert np.allclose(spectrum[:16], raw[:16])


def test_prepare_crops_resizes_and_normalises():
    image = np.zeros((40, 60), np.float32)
    image[:, 10:50] = np.arange(40)[:, None]  # the centre 40 x 40 square: a vertical ramp
    image[:, :10] = 1e6  # the cropped-away sides must not count
    out = prepare(image, size=20)
    assert out.shape == (20, 20) and out.dtype == np.float32
    assert abs(float(out.mean())) < 1e-5 and abs(float(out.std()) - 1) < 1e-4
    assert np.all(np.diff(out[:, 10]) > 0) and np.allclose(out[5], out[5, 0])
    assert np.array_equal(prepare(np.full((8, 8), 3.0), size=8), np.zeros((8, 8), np.float32))


def test_dataset_streams_tensors_and_warns_once_about_mixed_sizes(tmp_path, rng):
    write_mrc(tmp_path / "a.mrc", rng.normal(size=(32, 32)).astype(np.float32))
    write_mrc(tmp_path / "b.mrc", rng.normal(size=(48, 40)).astype(np.float32))
    write_mrc(tmp_path / "c.mrc", rng.normal(size=(64, 64)).astype(np.float32))
    refs = list_micrographs(tmp_path)
    with pytest.warns(UserWarning, match="3 micrographs of 3 sizes \\(1 not square\\)") as record:
        ds = MicrographDataset(refs, size=32)
    assert len(record) == 1
    assert len(ds) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading items warns no more
        items = [ds[i] for i in range(3)]
    for i, (x, j) in enumerate(items):
        assert j == i and isinstance(x, torch.Tensor) and x.shape == (1, 32, 32) and x.dtype == torch.float32
        assert abs(float(x.mean())) < 1e-5 and abs(float(x.std(unbiased=False)) - 1) < 1e-4
    assert ds.item_pixel_size(2) == pytest.approx(2.0)  # 64 px of 1 A shown as 32 px


def test_dataset_in_fourier_space_and_with_two_views(tmp_path):
    yy, xx = np.mgrid[0:64, 0:64]
    write_mrc(tmp_path / "g.mrc", np.cos(2 * np.pi * 8 * xx / 64).astype(np.float32)
              + np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 64 px makes 32-px spectra without resizing
        ds = MicrographDataset(list_micrographs(tmp_path), size=32, fourier=True)
    x, _ = ds[0]
    peak = np.unravel_index(int(torch.argmax(x[0])), (32, 32))
    assert peak[0] == 16 and abs(int(peak[1]) - 16) == 4  # 8 cycles over 64 px = 4 over 32-px tiles
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one square size binned to the network's: the normal case, no warning
        two = MicrographDataset(list_micrographs(tmp_path), size=32, transform=lambda t: (t, -t))
    (v1, v2), i = two[0]
    assert i == 0 and torch.equal(v1, -v2)
    loader = torch.utils.data.DataLoader(two, batch_size=1)
    (b1, b2), idx = next(iter(loader))
    assert b1.shape == (1, 1, 32, 32) and idx.tolist() == [0]


def test_dataset_checks_every_file_before_it_starts(tmp_path):
    write_mrc(tmp_path / "a.mrc", np.zeros((16, 16), np.float32))
    (tmp_path / "b.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(InputError, match="b.tif"):
        MicrographDataset(list_micrographs(tmp_path), size=16)


def test_prepared_images_are_cached_when_they_fit(tmp_path, monkeypatch):
    import napari_cryolearn.selfsup.images as images

    for i in range(3):
        write_mrc(tmp_path / f"m{i}.mrc", np.random.default_rng(i).normal(size=(40, 40)).astype(np.float32),
                  voxel_size=(1.0, 2.0, 2.0))
    refs = list_micrographs(tmp_path)
    reads = []
    real = images.read_micrograph
    monkeypatch.setattr(images, "read_micrograph", lambda ref: reads.append(ref) or real(ref))
    cached = MicrographDataset(refs, size=16)
    first = [cached.image(i) for i in range(3)]
    again = [cached.image(i) for i in range(3)]
    assert len(reads) == 3 and all(np.array_equal(a, b) for a, b in zip(first, again))
    uncached = MicrographDataset(refs, size=16, cache_bytes=0)
    [uncached.image(0) for _ in range(2)]
    assert len(reads) == 5


def test_a_list_names_slices_of_stacks_as_ssl_intersect_writes_them(tmp_path):
    stack = np.stack([np.full((8, 8), i, np.float32) for i in range(3)])
    write_mrc(tmp_path / "s.mrcs", stack, voxel_size=(1.0, 2.0, 2.0))
    (tmp_path / "keep.txt").write_text("s.mrcs#2\n# a comment\ns.mrcs#0\n")
    refs = list_micrographs(tmp_path / "keep.txt")
    assert [(r.path.name, r.index) for r in refs] == [("s.mrcs", 2), ("s.mrcs", 0)]
    from napari_cryolearn.selfsup.images import read_micrograph

    assert float(read_micrograph(refs[0])[0].mean()) == 2.0

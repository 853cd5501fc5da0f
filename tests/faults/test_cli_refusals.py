"""Cases that used to end in a traceback, an endless run or a silent wrong result: each is now
exit 2 with a message naming the file or field, and leaves nothing behind."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cryolearn.cli import main
from napari_cryolearn.io import write_mrc, write_star

SHAPE = (16, 24, 24)


@pytest.fixture
def d(tmp_path):
    z, y, x = np.indices(SHAPE)
    labels = ((z - 8) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 < 25).astype(np.uint8)
    tomo = (np.random.default_rng(0).normal(size=SHAPE) - labels).astype(np.float32)
    inputs = tmp_path / "in"
    return {
        "tomogram": write_mrc(inputs / "tomogram.mrc", tomo, voxel_size=10.0),
        "labels": write_mrc(inputs / "labels.mrc", labels, voxel_size=10.0),
        "star": write_star(inputs / "picks.star", np.array([[8.0, 12.0, 12.0]]), pixel_size=10.0),
        "root": tmp_path,
    }


def _writers(d, out):
    """Every file-writing command, with its output under ``out``."""
    t, lab = str(d["tomogram"]), str(d["labels"])
    return {
        "scale": ["prep", "scale", t, str(out / "s.mrc")],
        "filter": ["prep", "filter", lab, str(out / "f.mrc"), "--keep", "1"],
        "threshold": ["prep", "threshold", t, str(out / "t.mrc"), "--threshold", "0"],
        "distances": ["prep", "distances", lab, str(out / "d.npy")],
        "distances-npz": ["prep", "distances", lab, str(out / "d.npz"), "--format", "cryosiam-npz"],
        "patches": ["prep", "patches", t, str(out / "p.zarr"), "--patch-size", "8"],
        "patches-cryosiam": ["prep", "patches", t, str(out / "pc"), "--patch-size", "8", "--format", "cryosiam"],
        "sample": ["sample", str(out / "sample"), "--shape", "16", "24", "24"],
        "masks": ["prep", "masks", str(d.get("star")), t, str(out / "m.mrc"), "--radius", "2"],
        "demo": ["demo", str(out / "demo"), "--quick"],
    }


WRITERS = sorted(_writers({"tomogram": "t", "labels": "l"}, __import__("pathlib").Path("o")))


@pytest.mark.parametrize("case", WRITERS)
def test_a_read_only_output_folder_is_refused(case, d, readonly_dir, capsys):
    code = main(["-q", *_writers(d, readonly_dir)[case]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert str(readonly_dir) in err
    assert list(readonly_dir.iterdir()) == []


@pytest.mark.parametrize("case", WRITERS)
def test_an_output_under_a_regular_file_is_refused(case, d, capsys):
    blocker = d["root"] / "afile"
    blocker.write_text("not a folder")
    code = main(["-q", *_writers(d, blocker / "sub")[case]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "afile" in err and ("is a file" in err or "not a folder" in err or "not found" in err), err
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("flags", [
    ["prep", "filter", "{labels}", "{out}", "--keep", "1", "--chunk-mb", "inf"],
    ["prep", "filter", "{labels}", "{out}", "--keep", "1", "--expand", "inf"],
    ["prep", "filter", "{labels}", "{out}", "--keep", "1", "--expand", "nan"],
    ["prep", "scale", "{tomogram}", "{out}", "--chunk-mb", "inf"],
    ["prep", "distances", "{labels}", "{out_npy}", "--clip", "inf"],
    ["prep", "threshold", "{tomogram}", "{out}", "--threshold", "nan"],
    ["prep", "patches", "{tomogram}", "{out_zarr}", "--overlap", "nan"],
    ["sample", "{root}/s", "--voxel-size", "inf"],
])
def test_non_finite_numbers_are_refused(flags, d, capsys):
    paths = {**{k: str(v) for k, v in d.items()}, "out": str(d["root"] / "o" / "o.mrc"),
             "out_npy": str(d["root"] / "o" / "o.npy"), "out_zarr": str(d["root"] / "o" / "o.zarr")}
    assert main(["-q", *[f.format(**paths) for f in flags]]) == 2
    err = capsys.readouterr().err
    assert "finite number" in err, err
    assert not (d["root"] / "o").exists()
    assert not (d["root"] / "s").exists()


def test_sample_of_an_impossible_size_is_refused(tmp_path, capsys):
    assert main(["-q", "sample", str(tmp_path / "s"), "--shape", "100000", "100000", "100000"]) == 2
    err = capsys.readouterr().err
    assert "GiB of memory" in err and "shape" in err
    assert not (tmp_path / "s").exists()


def test_sample_refuses_to_overwrite_and_replaces_with_overwrite(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["-q", "sample", str(out), "--shape", "16", "24", "24", "--n-micrographs", "0"]) == 0
    (out / "notes.txt").write_text("mine")
    before = (out / "tomogram.mrc").read_bytes()
    assert main(["-q", "sample", str(out), "--shape", "16", "24", "24", "--seed", "1", "--n-micrographs", "0"]) == 2
    assert "already holds sample files" in capsys.readouterr().err
    assert (out / "tomogram.mrc").read_bytes() == before
    assert main(["-q", "sample", str(out), "--shape", "16", "24", "24", "--seed", "1", "--n-micrographs", "0",
                 "--overwrite"]) == 0
    assert (out / "tomogram.mrc").read_bytes() != before
    assert (out / "notes.txt").read_text() == "mine"


def test_demo_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "mine.txt").write_text("x")
    assert main(["-q", "demo", str(tmp_path / "demo"), "--quick"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "demo").iterdir()] == ["mine.txt"]


def test_distances_of_instance_labels_are_refused(tmp_path, capsys):
    lab = np.zeros((8, 16, 16), np.int16)
    lab[2:6, 2:6, 2:6] = 30000
    path = write_mrc(tmp_path / "instances.mrc", lab)
    assert main(["-q", "prep", "distances", str(path), str(tmp_path / "d.npy")]) == 2
    err = capsys.readouterr().err
    assert "30001 distance maps" in err and "n_classes" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instances.mrc"]


def test_an_output_named_like_an_inputs_sidecar_is_refused(tmp_path, capsys):
    assert main(["-q", "sample", str(tmp_path / "s"), "--shape", "16", "24", "24", "--n-micrographs", "0"]) == 0
    sidecar = tmp_path / "s" / "labels.mrc.json"
    before = sidecar.read_bytes()
    assert main(["-q", "prep", "filter", str(tmp_path / "s" / "labels.mrc"), str(sidecar), "--keep", "1",
                 "--overwrite"]) == 2
    assert "metadata of the input" in capsys.readouterr().err
    assert sidecar.read_bytes() == before


def test_an_early_error_leaves_no_empty_output_folder(tmp_path, capsys):
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"not an mrc file at all" * 100)
    assert main(["-q", "prep", "scale", str(bad), str(tmp_path / "new" / "deeper" / "s.mrc")]) == 2
    assert not (tmp_path / "new").exists()

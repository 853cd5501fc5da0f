"""A full disk: every writer exits 2 with "not enough space on …", and leaves no file behind
(no partial output, no temporary that keeps the disk full)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_cryolearn.cli import main
from napari_cryolearn.engine.atomic import atomic_path
from napari_cryolearn.engine.errors import OutputError
from napari_cryolearn.io import write_mrc

SHAPE = (64, 128, 128)  # 4 MiB of float32; 8 MiB as float64 work arrays


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    z, y, x = np.indices(SHAPE)
    labels = ((z - 32) ** 2 + (y - 64) ** 2 + (x - 64) ** 2 < 400).astype(np.uint8)
    labels[(z - 10) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 < 36] = 2
    tomo = (rng.normal(size=SHAPE) - labels).astype(np.float32)
    return {
        "tomogram": write_mrc(tmp_path / "tomogram.mrc", tomo, voxel_size=10.0),
        "labels": write_mrc(tmp_path / "labels.mrc", labels, voxel_size=10.0),
    }


def _fill(fs, leave_mib: float):
    """Fill ``fs`` until about ``leave_mib`` MiB are free."""
    import shutil

    free = shutil.disk_usage(fs).free
    (fs / "ballast").write_bytes(b"\0" * max(0, int(free - leave_mib * 2**20)))


def _left(fs):
    return sorted(p.name for p in fs.iterdir() if p.name != "ballast")


CASES = {
    "scale": lambda d, o: ["prep", "scale", str(d["tomogram"]), str(o / "scaled.mrc")],
    "filter": lambda d, o: ["prep", "filter", str(d["labels"]), str(o / "f.mrc"), "--keep", "1"],
    "threshold": lambda d, o: ["prep", "threshold", str(d["tomogram"]), str(o / "t.mrc"), "--threshold", "0"],
    "distances": lambda d, o: ["prep", "distances", str(d["labels"]), str(o / "d.npy")],
    "patches-zarr": lambda d, o: ["prep", "patches", str(d["tomogram"]), str(o / "p.zarr"), "--labels",
                                  str(d["labels"]), "--patch-size", "32"],
    "patches-cryosiam": lambda d, o: ["prep", "patches", str(d["tomogram"]), str(o / "pc"), "--labels",
                                      str(d["labels"]), "--patch-size", "32", "--format", "cryosiam"],
    "sample": lambda d, o: ["sample", str(o / "s"), "--shape", "64", "128", "128"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_full_disk_is_a_clear_error_and_leaves_nothing(case, inputs, small_fs, capsys):
    _fill(small_fs, 1.0)  # 1 MiB free: every one of these outputs needs more
    code = main(["-q", *CASES[case](inputs, small_fs)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "not enough space on" in err and "nothing was written" in err, err
    assert _left(small_fs) in ([], ["s"], ["pc"]), _left(small_fs)
    for leftover in ("s", "pc"):  # a folder made for the output is empty (or removed)
        if (small_fs / leftover).exists():
            assert not any((small_fs / leftover).rglob("*")), list((small_fs / leftover).rglob("*"))


def test_memory_mapped_writers_say_how_much_they_need(inputs, small_fs, capsys):
    _fill(small_fs, 1.0)
    assert main(["-q", "prep", "scale", str(inputs["tomogram"]), str(small_fs / "scaled.mrc")]) == 2
    err = capsys.readouterr().err
    assert re.search(r"need 4\.0 MiB, have (1012|10\d\d)\.\d KiB", err), err


def test_plain_writes_that_hit_a_full_disk_remove_their_temporary(small_fs):
    _fill(small_fs, 0.5)
    with pytest.raises(OutputError, match="not enough space on"):
        with atomic_path(small_fs / "big.bin") as tmp:
            tmp.write_bytes(b"x" * (2 << 20))
    assert _left(small_fs) == []

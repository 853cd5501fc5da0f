"""A folder given as an output is never removed unless it is a store we wrote, and only with
``--overwrite``; an input is never deleted, whatever the output path points at."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from napari_cryolearn.cli import main
from napari_cryolearn.engine.atomic import atomic_dir
from napari_cryolearn.io import write_mrc
from napari_cryolearn.io.patch_store import is_patch_store, open_patch_store


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def data(tmp_path) -> Path:
    """A folder as a user has it: sample tomogram, labels, STAR files."""
    assert main(["-q", "sample", str(tmp_path / "data"), "--shape", "24", "32", "32"]) == 0
    return tmp_path / "data"


def _patches(tomogram: Path, output: Path, *extra: str) -> int:
    labels = tomogram.with_name("labels.mrc")
    return main(["-q", "prep", "patches", str(tomogram), str(output), "--labels", str(labels),
                 "--patch-size", "16", *extra])


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_patches_into_the_input_folder_deletes_nothing(data, capsys, overwrite):
    before = _digest(data)
    assert _patches(data / "tomogram.mrc", data, *overwrite) == 2
    err = capsys.readouterr().err
    assert "inside this folder" in err and str(data) in err
    assert _digest(data) == before


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_patches_into_a_foreign_folder_deletes_nothing(data, tmp_path, capsys, overwrite):
    other = tmp_path / "results"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert _patches(data / "tomogram.mrc", other, *overwrite) == 2
    assert "not a patch store written by napari-cryolearn" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_patches_into_a_folder_holding_a_store_deletes_nothing(data, tmp_path, capsys):
    folder = tmp_path / "stores"
    assert _patches(data / "tomogram.mrc", folder / "a.zarr") == 0
    before = _digest(folder)
    assert _patches(data / "tomogram.mrc", folder, "--overwrite") == 2
    assert "not a patch store" in capsys.readouterr().err
    assert _digest(folder) == before


def test_an_existing_store_is_replaced_only_with_overwrite(data, tmp_path, capsys):
    store = tmp_path / "t.zarr"
    assert _patches(data / "tomogram.mrc", store) == 0
    n = len(open_patch_store(store))
    before = _digest(store)
    assert _patches(data / "tomogram.mrc", store, "--patch-size", "8") == 2
    assert "set overwrite to replace it" in capsys.readouterr().err
    assert _digest(store) == before
    assert _patches(data / "tomogram.mrc", store, "--overwrite", "--patch-size", "8") == 0
    assert len(open_patch_store(store)) > n
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_store_holding_a_user_file_is_never_replaced(data, tmp_path, capsys):
    store = tmp_path / "t.zarr"
    assert _patches(data / "tomogram.mrc", store) == 0
    (store / "README.txt").write_text("my notes")
    assert not is_patch_store(store)
    assert _patches(data / "tomogram.mrc", store, "--overwrite") == 2
    assert (store / "README.txt").read_text() == "my notes"
    assert len(open_patch_store(store)) > 0


def test_cryosiam_format_keeps_the_folders_other_files(data, tmp_path):
    folder = tmp_path / "patches"
    (folder / "image").mkdir(parents=True)
    (folder / "image" / "other_z0_y0_x0.mrc").write_bytes(b"another tomogram's patch")
    assert _patches(data / "tomogram.mrc", folder, "--format", "cryosiam") == 0
    assert (folder / "image" / "other_z0_y0_x0.mrc").read_bytes() == b"another tomogram's patch"
    assert len(list((folder / "labels").iterdir())) > 0


def test_atomic_dir_replaces_only_what_it_recognises(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    for kwargs in ({}, {"overwrite": True}, {"overwrite": True, "replaceable": lambda p: False}):
        with pytest.raises(FileExistsError):
            with atomic_dir(target, **kwargs):
                pass
        assert (target / "keep.txt").read_text() == "x"
    with atomic_dir(target, overwrite=True, replaceable=lambda p: True) as tmp:
        (tmp / "new.txt").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_rechecks_before_replacing(tmp_path):
    """A folder that stopped being ours while the job ran is not replaced."""
    target = tmp_path / "out"
    target.mkdir()
    ours = {"flag": True}
    with pytest.raises(FileExistsError):
        with atomic_dir(target, overwrite=True, replaceable=lambda p: ours["flag"]) as tmp:
            (tmp / "new.txt").write_text("y")
            (target / "added.txt").write_text("user file")
            ours["flag"] = False
    assert (target / "added.txt").read_text() == "user file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_is_patch_store(tmp_path):
    assert not is_patch_store(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    assert not is_patch_store(tmp_path / "plain")
    (tmp_path / "plain" / "zarr.json").write_text('{"attributes": {"format": "something else"}}')
    assert not is_patch_store(tmp_path / "plain")
    (tmp_path / "plain" / "zarr.json").write_text("not json")
    assert not is_patch_store(tmp_path / "plain")
    from napari_cryolearn.engine.jobs import run_job
    from napari_cryolearn.io.patch_store import write_patch_store

    image = np.zeros((8, 8, 8), np.float32)
    store = run_job(write_patch_store(tmp_path / "s.zarr", image, patch_size=8))
    assert is_patch_store(store)
    write_mrc(tmp_path / "x.mrc", image)
    assert not is_patch_store(tmp_path / "x.mrc")

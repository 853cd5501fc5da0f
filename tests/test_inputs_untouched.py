"""Inputs are never changed: every stage of ``cryolearn demo --quick``, run one by one, leaves
the bytes and modification times of every file that existed before it as they were.

The sample stage writes the tomogram, labels and STAR files; each later stage (prep, train,
predict) only reads what came before it, so a snapshot of the whole demo folder taken before a
stage must still hold after it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from napari_cryolearn.cli import run_demo
from napari_cryolearn.engine.config import Config
from napari_cryolearn.io import read_mrc, write_mrc

Signature = tuple[str, int, int]  # sha256, size, mtime_ns


def snapshot(root: Path) -> dict[str, Signature]:
    """Every file under ``root`` (relative path) with its hash, size and mtime."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(root))] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_size,
                                                st.st_mtime_ns)
    return out


def paths_in(config: Config) -> list[Path]:
    """Every path a config names (nested configs and lists included)."""
    found: list[Path] = []

    def walk(value) -> None:
        if isinstance(value, Path):
            found.append(value)
        elif isinstance(value, Config):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(config)
    return found


def files_of(paths: list[Path], root: Path) -> set[str]:
    """The files (relative to ``root``) that ``paths`` name or hold (a store is a folder)."""
    out = set()
    for p in paths:
        if p.is_file():
            out.add(str(p.relative_to(root)))
        elif p.is_dir():
            out.update(str(f.relative_to(root)) for f in p.rglob("*") if f.is_file())
    return out


def test_no_stage_changes_what_it_read(tmp_path):
    root = tmp_path / "demo"
    after_sample: dict[str, Signature] = {}
    checked: dict[str, set[str]] = {}
    seen: dict[str, tuple[dict[str, Signature], set[str]]] = {}

    def before_stage(stage, config) -> None:
        before = snapshot(root) if root.exists() else {}
        read = files_of(paths_in(config), root) if root.exists() else set()
        seen[stage.name] = (before, read)

    def after_stage(stage, config, result) -> None:
        nonlocal after_sample
        before, read = seen[stage.name]
        after = snapshot(root)
        changed = sorted(k for k, sig in before.items() if after.get(k) != sig)
        assert not changed, f"{stage.name} changed or removed {changed}"
        if stage.name == "sample":
            after_sample = {k: v for k, v in after.items() if k.endswith((".mrc", ".star"))}
        else:
            assert read, f"{stage.name} names no existing input"
            assert read <= set(before)
            checked[stage.name] = read
        # nothing temporary left beside the outputs
        assert not [k for k in after if ".part" in k or k.endswith(".old")], stage.name

    run_demo(root, quiet=True, quick=True, before=before_stage, after=after_stage)

    # the test saw every stage that reads files, each with the inputs it should have
    assert {"prep.filter", "prep.masks", "prep.scale", "prep.threshold", "prep.distances", "prep.patches",
            "segment.train", "segment.predict"} <= set(checked)
    assert "sample/tomogram.mrc" in checked["prep.scale"]
    assert {"sample/particles.star", "sample/tomogram.mrc"} <= checked["prep.masks"]
    assert any(k.startswith("patches/tomogram.zarr/") for k in checked["segment.train"])
    assert "segmentation/model/last.ckpt" in checked["segment.predict"]

    # the sample's volumes and coordinates are, at the end, what the sample stage wrote
    assert {"sample/tomogram.mrc", "sample/labels.mrc", "sample/particles.star"} <= set(after_sample)
    final = snapshot(root)
    assert {k: final.get(k) for k in after_sample} == after_sample


@pytest.fixture
def volume(tmp_path) -> Path:
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    return write_mrc(tmp_path / "v.mrc", data, voxel_size=7.0)


def test_read_mrc_is_read_only(volume):
    before = (volume.read_bytes(), volume.stat().st_mtime_ns)
    vol = read_mrc(volume)
    assert isinstance(vol.data, np.memmap)
    assert not vol.data.flags.writeable
    with pytest.raises(ValueError):
        vol.data[0, 0, 0] = -1.0
    with pytest.raises(ValueError):
        vol.data[...] += 1
    del vol
    assert (volume.read_bytes(), volume.stat().st_mtime_ns) == before


def test_read_mrc_in_memory_is_a_copy(volume):
    before = volume.read_bytes()
    vol = read_mrc(volume, mmap=False)
    vol.data[...] = 0  # a copy: changing it leaves the file alone
    assert volume.read_bytes() == before
    again = read_mrc(volume)
    assert float(again.data[3, 4, 5]) == 4 * 5 * 6 - 1


"""Fuzzing patch stores: a damaged store gives :class:`InputError`, nothing else.

Two small valid stores (16³ volume, 8³ patches, image + labels + distances; one as our writer
lays it out, read from the chunk files, one with arrays in other layouts, read through zarr) are
written once per module. Each example copies one into a fresh folder and damages it with one
to three mutations: files deleted, cut short, lengthened, overwritten in part or whole; JSON
edits of any ``zarr.json`` (a key dropped, a value replaced by one of another type or size, a
number nudged, the whole document replaced); an array folder removed; junk files added. Then
the store is opened, its length taken, every patch read and every array reassembled. Each step
may succeed or raise ``InputError``; any other exception (a traceback for the user) fails the
test, and hypothesis shrinks it to a small example.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.io.patch_store import open_patch_store, write_patch_store

EXAMPLES = settings(max_examples=500, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    """``{"direct": store, "zarr": store}``: valid stores of 8 patches (never modified)."""
    rng = np.random.default_rng(11)
    image = rng.normal(size=(16, 16, 16)).astype(np.float32)
    labels = (image > 0.5).astype(np.uint8)
    distances = rng.normal(size=(2, 16, 16, 16)).astype(np.float32)
    root = tmp_path_factory.mktemp("pristine")
    direct = run_job(write_patch_store(root / "direct.zarr", image, labels, distances, patch_size=8, overlap=0,
                                       compressor={"image": None, "labels": "blosc-lz4", "distances": "zstd"}))
    other = Path(shutil.copytree(direct, root / "zarr.zarr"))
    group = zarr.open_group(other, mode="r+")
    attrs = dict(group.attrs)
    for key, chunks in (("image", (2, 4, 8, 8)), ("labels", (4, 8, 8, 8))):
        data = np.asarray(group[key][...])
        del group[key]
        group.create_array(key, data=data, chunks=chunks, config={"write_empty_chunks": True})
    group.attrs.update(attrs)
    assert open_patch_store(other)._files["image"] is None
    return {"direct": direct, "zarr": other}


# ---------------------------------------------------------------------------------------------
# mutations

_NUMBERS = st.one_of(
    st.integers(-3, 40),
    st.sampled_from([2**31 - 1, 2**31, 2**40, 2**63, 2**64, -(2**63), 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_SCALARS = st.one_of(st.none(), st.booleans(), _NUMBERS, st.text(max_size=6))
_JSON = st.recursive(
    _SCALARS,
    lambda kids: st.one_of(st.lists(kids, max_size=5), st.dictionaries(st.text(max_size=6), kids, max_size=3)),
    max_leaves=8,
)
_JUNK_NAMES = st.one_of(
    st.sampled_from(["notes.txt", "zarr.json.bak", ".DS_Store", "c.99.0.0.0", "c", "c.0.0.0.0.0.0", "image.old"]),
    st.text(alphabet="abcxyz.0123_", min_size=1, max_size=10).filter(lambda s: s not in (".", "..")),
)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _json_paths(node, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a JSON document (the root is ``()``)."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _json_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _json_paths(v, (*prefix, i))
    return out


def _edit_json(data, path: Path) -> None:
    try:
        doc = json.loads(path.read_text())
    except (ValueError, OSError):
        return  # already garbled by an earlier mutation
    paths = _json_paths(doc)
    where = data.draw(st.sampled_from(paths), label="json path")
    how = data.draw(st.sampled_from(["drop", "set", "nudge", "root"]), label="json edit")
    if how == "root" or not where:
        doc = data.draw(_JSON, label="document")
    else:
        parent = doc
        for k in where[:-1]:
            parent = parent[k]
        last = where[-1]
        if how == "drop":
            del parent[last]
        elif how == "set":
            parent[last] = data.draw(_JSON, label="value")
        else:
            value = parent[last]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                parent[last] = data.draw(st.sampled_from([value + 1, value - 1, value * 2, -value, 0, value + 8]),
                                         label="nudged")
            else:
                parent[last] = data.draw(_NUMBERS, label="number")
    path.write_text(json.dumps(doc))


def _mutate(data, root: Path) -> None:
    """One random damage to the store at ``root``."""
    kind = data.draw(st.sampled_from(["delete", "truncate", "lengthen", "garble", "replace", "json", "json",
                                      "rmtree", "junk"]), label="mutation")
    files = _files(root)
    if kind == "json":
        metas = [p for p in files if p.name == "zarr.json"]
        if metas:
            _edit_json(data, data.draw(st.sampled_from(metas), label="file"))
        return
    if kind == "rmtree":
        folders = sorted(p for p in root.iterdir() if p.is_dir())
        if folders:
            shutil.rmtree(data.draw(st.sampled_from(folders), label="folder"))
        return
    if kind == "junk":
        folders = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
        target = data.draw(st.sampled_from(folders), label="folder") / data.draw(_JUNK_NAMES, label="name")
        if not target.exists():
            target.write_bytes(data.draw(st.binary(max_size=64), label="junk"))
        return
    if not files:
        return
    path = data.draw(st.sampled_from(files), label="file")
    raw = path.read_bytes()
    if kind == "delete":
        path.unlink()
    elif kind == "truncate":
        path.write_bytes(raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)), label="length")])
    elif kind == "lengthen":
        path.write_bytes(raw + data.draw(st.binary(min_size=1, max_size=64), label="tail"))
    elif kind == "garble":
        at = data.draw(st.integers(0, max(len(raw) - 1, 0)), label="offset")
        patch = data.draw(st.binary(min_size=1, max_size=16), label="bytes")
        path.write_bytes(raw[:at] + patch + raw[at + len(patch):])
    else:
        path.write_bytes(data.draw(st.binary(max_size=256), label="content"))


def _use(path: Path) -> None:
    """Everything a user does with a store: open, len, read every patch, reassemble every array."""
    store = open_patch_store(path)
    n = len(store)
    for i in range(n):
        item = store[i]
        assert set(item) == {*store.keys, "origin"}
    for key in store.keys:
        store.reassemble(key)


# ---------------------------------------------------------------------------------------------


@EXAMPLES
@given(data=st.data())
def test_damaged_stores_give_input_error_only(pristine, data):
    base = pristine[data.draw(st.sampled_from(sorted(pristine)), label="store")]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(shutil.copytree(base, Path(tmp) / "s.zarr"))
        for _ in range(data.draw(st.integers(1, 3), label="mutations")):
            _mutate(data, path)
        try:
            _use(path)
        except InputError as err:
            assert str(err).strip(), "an InputError must say something"


def test_the_fuzzed_stores_are_valid_to_begin_with(pristine):
    for path in pristine.values():
        store = open_patch_store(path)
        assert len(store) == 8 and store.keys == ("image", "labels", "distances")
        _use(path)

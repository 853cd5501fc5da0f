"""A bad input path is reported before a stage's heavy libraries load (issue 17, item 7).

The CLI checks every required input of a stage (its :class:`~napari_cryolearn.engine.registry.Port`
s, :mod:`napari_cryolearn.engine.inputs`) before it imports the stage's job module: the segment
stages' jobs import torch, Lightning and MONAI, seconds of start-up before anything is checked.
The commands run in fresh interpreters, which report what they imported; no wall-clock limits
here (``benchmarks/cli_startup.py`` times the commands).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_cryolearn.engine import registry
from napari_cryolearn.engine.config import Config
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.inputs import check_inputs
from napari_cryolearn.engine.registry import Port, Stage

HEAVY = ("torch", "lightning", "monai")

_MAIN_AND_REPORT = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from napari_cryolearn.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(json.loads(sys.argv[1]))
        except SystemExit as exit:
            code = exit.code
    print(json.dumps({"code": code, "err": err.getvalue(),
                      "heavy": sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)}))
    """
)


def _main_in_fresh_python(argv: list[str], cwd: Path, watched: tuple[str, ...] = HEAVY) -> dict:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _MAIN_AND_REPORT, json.dumps(argv), json.dumps(watched)],
        capture_output=True, text=True, timeout=300, cwd=cwd,
    )
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["segment", "predict", "missing.ckpt", "missing.mrc", "out.mrc"], "missing.ckpt: model: checkpoint not found"),
        (["segment", "predict", "model.ckpt", "missing.mrc", "out.mrc"], "missing.mrc: input: tomogram not found"),
        (["segment", "train", "missing.zarr", "--log-dir", "run"], "missing.zarr: patch_stores: patch store not found"),
        (["segment", "train", "store.zarr", "missing.zarr", "--log-dir", "run"],
         "missing.zarr: patch_stores: patch store not found"),
        (["segment", "train", "--log-dir", "run"], "missing PATCH_STORES (positional argument)"),
    ],
    ids=["predict-model", "predict-input", "train-store", "train-second-store", "train-no-store"],
)
def test_a_missing_segment_input_is_reported_before_torch_loads(argv, message, tmp_path):
    (tmp_path / "model.ckpt").write_bytes(b"not read: the input is checked first")
    (tmp_path / "store.zarr").mkdir()
    result = _main_in_fresh_python(["-q", *argv], tmp_path)
    assert result["code"] == 2, result
    assert re.search(rf"cryolearn( segment train)?: error: {re.escape(message)}", result["err"]), result["err"]
    assert "Traceback" not in result["err"]
    assert result["heavy"] == [], f"{' '.join(argv)} imported {result['heavy']} before refusing the input"
    assert not (tmp_path / "run").exists() and not (tmp_path / "out.mrc").exists()


def test_a_missing_prep_input_names_the_field(tmp_path):
    result = _main_in_fresh_python(["-q", "prep", "scale", "missing.mrc", "out.mrc"], tmp_path)
    assert result["code"] == 2, result
    assert "cryolearn: error: missing.mrc: input: tomogram not found" in result["err"], result["err"]
    assert result["heavy"] == []


# command -> the libraries it must not load: each is loaded by the code that uses it (io.star by
# read_star/write_star, io.patch_store when a store is written or opened, engine.config when a
# YAML file is read, the sample job when it runs), not by the modules that define the configs.
DEFERRED = {
    "prep scale (a run)": (["prep", "scale", "tomogram.mrc", "scaled.mrc"],
                           ("yaml", "pandas", "scipy", "zarr", "asyncio", "torch")),
    "prep distances (a run)": (["prep", "distances", "tomogram.mrc", "maps.npy", "--clip", "5", "--normalize"],
                               ("scipy", "pandas", "zarr", "torch")),
    "prep threshold --help": (["prep", "threshold", "--help"], ("pandas", "starfile", "pyarrow")),
    "prep masks --help": (["prep", "masks", "--help"], ("pandas", "starfile", "pyarrow")),
    "prep patches --help": (["prep", "patches", "--help"], ("zarr", "numcodecs", "fsspec")),
    "sample --help": (["sample", "--help"], ("pandas", "pyarrow")),
}


@pytest.mark.parametrize("command", sorted(DEFERRED))
def test_libraries_load_when_used_not_with_the_configs(command, tmp_path):
    from napari_cryolearn.io.mrc import write_mrc

    argv, forbidden = DEFERRED[command]
    write_mrc(tmp_path / "tomogram.mrc", np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8))
    result = _main_in_fresh_python(argv, tmp_path, forbidden)
    assert result["code"] in (0, None), result
    assert result["heavy"] == [], f"cryolearn {' '.join(argv)} loaded {result['heavy']}"


class _ExampleConfig(Config):
    input: Path
    output: Path


@pytest.fixture
def unimportable_stage(monkeypatch):
    """A stage whose job module does not exist: importing it fails."""
    monkeypatch.setattr(registry, "_STAGES", dict(registry._STAGES))
    return registry.register_stage(Stage(
        name="example.unimportable", config=_ExampleConfig, job="napari_cryolearn_no_such_module:job",
        summary="a stage whose job module is never found", cli_positionals=("input", "output"),
        inputs=(Port("input", "tomogram"),), outputs=(Port("output", "tomogram"),),
    ))


def test_the_inputs_are_checked_before_the_job_module_is_imported(unimportable_stage, tmp_path, capsys):
    from napari_cryolearn.cli import main

    assert main(["example", "unimportable", str(tmp_path / "missing.mrc"), str(tmp_path / "out.mrc")]) == 2
    assert f"{tmp_path / 'missing.mrc'}: input: tomogram not found" in capsys.readouterr().err
    (tmp_path / "here.mrc").write_bytes(b"")
    with pytest.raises(ModuleNotFoundError, match="napari_cryolearn_no_such_module"):
        main(["example", "unimportable", str(tmp_path / "here.mrc"), str(tmp_path / "out.mrc")])


def _stage(*inputs: Port) -> Stage:
    return Stage(name="example.inputs", config=_ExampleConfig, job="x:y", summary="", inputs=inputs)


def test_check_inputs_follows_the_ports(tmp_path):
    (tmp_path / "a.mrc").write_bytes(b"")
    (tmp_path / "store.zarr").mkdir()
    stage = _stage(Port("image", "tomogram"), Port("stores", "patch_store"), Port("extra", "labels", optional=True))
    ok = SimpleNamespace(image=tmp_path / "a.mrc", stores=[tmp_path / "store.zarr"], extra=tmp_path / "nowhere.mrc")
    check_inputs(stage, ok)  # an optional input is the job's to check (it may not be used)
    check_inputs(stage, SimpleNamespace(image=str(tmp_path / "a.mrc"), stores=(str(tmp_path / "store.zarr"),),
                                        extra=None))
    with pytest.raises(InputError, match=r"b\.zarr: stores: patch store not found"):
        check_inputs(stage, SimpleNamespace(image=ok.image, stores=[ok.stores[0], tmp_path / "b.zarr"], extra=None))
    with pytest.raises(InputError, match=r"^image: no tomogram given$"):
        check_inputs(stage, SimpleNamespace(image=None, stores=ok.stores, extra=None))
    with pytest.raises(InputError, match=r"^stores: no patch store given$"):
        check_inputs(stage, SimpleNamespace(image=ok.image, stores=[], extra=None))
    with pytest.raises(InputError, match=r"a\.mrc/b\.mrc: image: tomogram not found"):  # a path under a file
        check_inputs(stage, SimpleNamespace(image=tmp_path / "a.mrc" / "b.mrc", stores=ok.stores, extra=None))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user")
def test_check_inputs_refuses_what_cannot_be_read(tmp_path):
    locked = tmp_path / "locked.mrc"
    locked.write_bytes(b"")
    locked.chmod(0)
    folder = tmp_path / "store.zarr"
    folder.mkdir()
    folder.chmod(0o200)
    try:
        with pytest.raises(InputError, match=r"locked\.mrc: image: cannot be read: permission denied"):
            check_inputs(_stage(Port("image", "tomogram")), SimpleNamespace(image=locked))
        with pytest.raises(InputError, match=r"store\.zarr: stores: cannot be read: permission denied"):
            check_inputs(_stage(Port("stores", "patch_store")), SimpleNamespace(stores=[folder]))
    finally:
        locked.chmod(0o600)
        folder.chmod(0o700)


def test_check_inputs_says_permission_denied(tmp_path, monkeypatch):
    """As the test above, where root reads everything: the access check itself says no."""
    import napari_cryolearn.engine.inputs as inputs

    (tmp_path / "a.mrc").write_bytes(b"")
    monkeypatch.setattr(inputs.os, "access", lambda path, mode: False)
    with pytest.raises(InputError, match=r"a\.mrc: image: cannot be read: permission denied"):
        check_inputs(_stage(Port("image", "tomogram")), SimpleNamespace(image=tmp_path / "a.mrc"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_check_inputs_opens_nothing(tmp_path):
    """A FIFO given as an input is not opened (that would block): its job refuses it."""
    fifo = tmp_path / "pipe.mrc"
    os.mkfifo(fifo)
    check_inputs(_stage(Port("image", "tomogram")), SimpleNamespace(image=fifo))

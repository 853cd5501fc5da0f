"""Temporaries of killed runs are removed by the next run of the same output; outputs honour
the umask; one output has one writer at a time."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from napari_cryolearn.cli import main
from napari_cryolearn.engine.atomic import atomic_dir, atomic_path, stale_temporaries
from napari_cryolearn.engine.errors import OutputError
from napari_cryolearn.engine.locks import lock_path, output_lock
from napari_cryolearn.io import write_mrc


@pytest.fixture
def tomogram(tmp_path):
    data = np.random.default_rng(0).normal(size=(16, 24, 24)).astype(np.float32)
    return write_mrc(tmp_path / "in" / "tomogram.mrc", data, voxel_size=10.0)


def test_a_killed_write_leaves_a_temporary_that_the_next_run_removes(tomogram, tmp_path):
    out = tmp_path / "out" / "scaled.mrc"
    code = textwrap.dedent(f"""
        import os, signal
        from napari_cryolearn.engine.atomic import atomic_path
        with atomic_path({str(out)!r}) as tmp:
            tmp.write_bytes(b"x" * 1_000_000)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert done.returncode == -9
    stale = stale_temporaries(out)
    assert len(stale) == 1 and stale[0].stat().st_size == 1_000_000
    assert stale[0].name.startswith(".scaled.mrc.") and stale[0].name.endswith(".part.mrc")
    with pytest.warns(UserWarning, match=r"removed a temporary \(976.6 KiB\) that an interrupted run left"):
        assert main(["-q", "prep", "scale", str(tomogram), str(out)]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["scaled.mrc"]


def test_temporaries_of_other_outputs_are_left_alone(tmp_path):
    (tmp_path / ".other.mrc.abcd1234.part.mrc").write_bytes(b"x")
    (tmp_path / ".scaled.mrc.notes").write_bytes(b"mine")
    (tmp_path / ".scaled.mrc.abcd1234.part.npy").write_bytes(b"suffix differs: not a temporary of ours")
    with atomic_path(tmp_path / "scaled.mrc") as tmp:
        tmp.write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.mrc.abcd1234.part.mrc", ".scaled.mrc.abcd1234.part.npy", ".scaled.mrc.notes", "scaled.mrc"]


def test_a_killed_store_write_is_cleaned_up_by_the_next(tomogram, tmp_path):
    store = tmp_path / "p.zarr"
    (tmp_path / ".p.zarr.k9x2m1ab.part" / "image").mkdir(parents=True)
    (tmp_path / ".p.zarr.0123456789ab.old").mkdir()
    with pytest.warns(UserWarning, match="interrupted run"):
        assert main(["-q", "prep", "patches", str(tomogram), str(store), "--patch-size", "8"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "p.zarr"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_honour_the_umask(umask, tomogram, tmp_path):
    old = os.umask(umask)
    try:
        assert main(["-q", "prep", "scale", str(tomogram), str(tmp_path / "s.mrc")]) == 0
        assert main(["-q", "prep", "patches", str(tomogram), str(tmp_path / "p.zarr"), "--patch-size", "8"]) == 0
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "s.mrc").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "p.zarr").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o777 & ~umask


def test_a_second_writer_of_the_same_output_is_refused(tomogram, tmp_path, capsys):
    out = tmp_path / "s.mrc"
    with output_lock(out):
        assert lock_path(out).exists()
        assert main(["-q", "prep", "scale", str(tomogram), str(out)]) == 2
        err = capsys.readouterr().err
        assert f"another run is writing this output (process {os.getpid()})" in err
        assert not out.exists()
    assert not lock_path(out).exists()
    assert main(["-q", "prep", "scale", str(tomogram), str(out)]) == 0


def test_a_lock_held_by_another_process_is_refused_and_freed_when_it_dies(tmp_path):
    out = tmp_path / "p.zarr"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from napari_cryolearn.engine.locks import output_lock
            with output_lock({str(out)!r}):
                print("held", flush=True)
                time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=f"process {holder.pid}"):
            with atomic_dir(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    with atomic_dir(out) as tmp:  # SIGKILL released the lock: nothing stale to clear by hand
        (tmp / "x").write_text("1")
    assert (out / "x").read_text() == "1"

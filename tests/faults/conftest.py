"""Fixtures of the fault suite: a small filesystem that fills up, a folder nobody can write into,
files nobody can read, broken checkpoints."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def _tmpfs(where: Path, options: str, refused: str) -> Iterator[Path]:
    """A tmpfs mounted on ``where`` with ``options`` while the block runs (the test is skipped,
    saying ``refused`` and why, where it cannot be mounted)."""
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"{refused}: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def small_fs(tmp_path) -> Iterator[Path]:
    """A 20 MiB tmpfs mounted in ``tmp_path`` (needs root and mount rights; skipped otherwise)."""
    where = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    with _tmpfs(where, "size=20m", "cannot mount a tmpfs here"):
        yield where


@pytest.fixture
def readonly_dir(tmp_path) -> Iterator[Path]:
    """A folder nobody can write into: a read-only tmpfs as root, else a folder of mode 0555."""
    where = tmp_path / "readonly"
    where.mkdir()
    if os.geteuid() == 0:
        with _tmpfs(where, "size=1m,ro", "as root a read-only folder needs a read-only mount"):
            yield where
        return
    where.chmod(0o555)
    try:
        yield where
    finally:
        where.chmod(0o755)


@pytest.fixture
def unreadable():
    """``with unreadable(path):`` ``path`` cannot be read (mode 0) while the block runs;
    ``unreadable(path, folder)`` takes the modes off ``folder``, which holds it, instead. The test
    is skipped where the file can still be opened (running as root, a filesystem without modes)."""

    @contextmanager
    def lock(path: Path, folder: Path | None = None) -> Iterator[Path]:
        locked = path if folder is None else folder
        mode = locked.stat().st_mode & 0o7777
        locked.chmod(0)
        try:
            try:
                with open(path, "rb"):
                    pass
            except PermissionError:
                pass
            else:
                pytest.skip("this process reads files whatever their mode (root)")
            yield path
        finally:
            locked.chmod(mode)

    return lock


@pytest.fixture
def broken_checkpoint():
    """``broken_checkpoint(kind, good, path)``: write a broken checkpoint of ``kind`` at ``path``
    (made from the good checkpoint ``good`` where it needs one); returns (a text the error
    message must name, the problem it must state). Kinds: ``random`` bytes, ``truncated`` (half
    of ``good``), a bare ``tensor``, a ``dict`` without state_dict, a ``foreign_state`` dict of
    another network, ``not_tensors`` (a text among the weights), ``nan`` (one weight NaN)."""
    import numpy as np
    import torch

    def write(kind: str, good: Path, path: Path) -> tuple[str, str]:
        if kind == "random":
            path.write_bytes(np.random.default_rng(1).bytes(4096))
            return path.name, "not a readable PyTorch checkpoint"
        if kind == "truncated":
            path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
            return path.name, "not a readable PyTorch checkpoint"
        if kind == "tensor":
            torch.save(torch.zeros(3, 3), path)
            return path.name, "no state_dict in checkpoint (it holds Tensor)"
        if kind == "dict":
            torch.save({"epoch": 3, "notes": "mine"}, path)
            return path.name, "no state_dict in checkpoint"
        if kind == "foreign_state":
            torch.save({"conv.weight": torch.zeros(2, 1, 3, 3)}, path)
            return path.name, "does not describe a segmentation network"
        ck = torch.load(good, weights_only=False)
        if kind == "not_tensors":
            ck["state_dict"] = {**ck["state_dict"], "net.extra": "text"}
            torch.save(ck, path)
            return "net.extra", "not a tensor"
        if kind == "nan":
            key = next(k for k, t in ck["state_dict"].items() if t.is_floating_point() and t.ndim == 5)
            ck["state_dict"][key] = ck["state_dict"][key].clone()
            ck["state_dict"][key].view(-1)[0] = float("nan")
            torch.save(ck, path)
            return key, "holds NaN or infinite values"
        raise AssertionError(kind)

    return write


@pytest.fixture
def refused(capsys):
    """``refused(argv, *names, problem=..., outputs=())``: run ``cryolearn -q argv`` and check that
    it is refused cleanly: exit code 2, no traceback, one ``cryolearn: error:`` line that names each
    of ``names`` and states ``problem`` (in any case); none of ``outputs`` was written, nor a
    temporary (``.part``) or hidden file beside one. Returns the error line."""
    from napari_cryolearn.cli import main

    def check(argv: list[str], *names: str, problem: str, outputs: tuple[Path, ...] | list[Path] = ()) -> str:
        capsys.readouterr()
        code = main(["-q", *argv])
        err = capsys.readouterr().err
        assert code == 2, f"exit code {code}, stderr:\n{err}"
        assert "Traceback" not in err
        # "cryolearn: error:" (the job refused), or "cryolearn segment train: error:" (a flag refused)
        lines = [line for line in err.splitlines() if re.match(r"cryolearn( [a-z ]+)?: error:", line)]
        assert len(lines) == 1, err
        for name in names:
            assert name in lines[0], f"{name!r} not in {lines[0]!r}"
        assert problem.lower() in lines[0].lower(), f"{problem!r} not in {lines[0]!r}"
        for out in outputs:
            assert not out.exists(), f"{out} was written"
            assert not [p.name for p in out.parent.iterdir() if ".part" in p.name or p.name.startswith(".")]
        return lines[0]

    return check

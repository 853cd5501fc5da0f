"""Fixtures of the fault suite: a small filesystem that fills up."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest


@pytest.fixture
def small_fs(tmp_path) -> Path:
    """A 20 MiB tmpfs mounted in ``tmp_path`` (needs root and mount rights; skipped otherwise)."""
    where = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def readonly_dir(tmp_path) -> Path:
    """A folder nobody can write into: a read-only tmpfs as root, else a folder of mode 0555."""
    where = tmp_path / "readonly"
    where.mkdir()
    if os.geteuid() == 0:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"as root a read-only folder needs a read-only mount: {done.stderr.strip()}")
        try:
            yield where
        finally:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
        return
    where.chmod(0o555)
    try:
        yield where
    finally:
        where.chmod(0o755)


@pytest.fixture
def skip_unless_locked():
    """``skip_unless_locked(path)``: skip the test when ``path`` can still be opened after a chmod
    (running as root, or a filesystem without modes)."""

    def check(path) -> None:
        try:
            with open(path, "rb"):
                pass
        except PermissionError:
            return
        pytest.skip("this process reads files whatever their mode (root)")

    return check

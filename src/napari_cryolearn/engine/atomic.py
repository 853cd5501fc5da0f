"""Atomic writes: write to a temporary name beside the target, rename on success.

A reader never sees a half-written file, and a job that fails or is stopped leaves nothing
behind (the temporary is removed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary file path in ``target``'s folder; rename it to ``target`` on success.

    The temporary keeps ``target``'s suffix so that libraries that pick a format by suffix
    still work. The parent folder is created when missing.

    Raises
    ------
    FileExistsError
        When ``target`` exists and ``overwrite`` is false (checked before anything is written).
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target}: exists (pass overwrite to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".part{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(
    target: str | os.PathLike,
    *,
    overwrite: bool = False,
    replaceable: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Like :func:`atomic_path` for a folder (a zarr store, a checkpoint folder).

    The yielded temporary folder exists and is empty. An existing ``target`` is replaced only
    when ``overwrite`` is true **and** ``replaceable(target)`` says the folder is one this
    project wrote (e.g. a patch store holding nothing but its own arrays); any other existing
    folder is refused with ``FileExistsError`` before anything is written, and checked again
    just before it is replaced. A folder we did not write is never removed. On success the old
    folder is moved aside under a unique name first, so a crash between the two renames leaves
    either the old or the new folder, never a mixture. A file at ``target`` is never replaced.
    """
    target = Path(target)
    _check_replaceable_dir(target, overwrite, replaceable)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        yield tmp_path
        if target.exists() or target.is_symlink():
            _check_replaceable_dir(target, overwrite, replaceable)
            old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.old")
            os.replace(target, old)
            os.replace(tmp_path, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_path, target)
    except BaseException:
        shutil.rmtree(tmp_path, ignore_errors=True)
        raise


def _check_replaceable_dir(target: Path, overwrite: bool, replaceable: Callable[[Path], bool] | None) -> None:
    if not (target.exists() or target.is_symlink()):
        return
    if target.is_symlink() or not target.is_dir():
        raise FileExistsError(f"{target}: exists and is not a folder")
    if not overwrite:
        raise FileExistsError(f"{target}: exists (pass overwrite to replace it)")
    if replaceable is None or not replaceable(target):
        raise FileExistsError(
            f"{target}: is a folder that napari-cryolearn did not write (or that holds other files);"
            " it is never replaced: choose a new name"
        )

"""Atomic writes: write to a temporary name beside the target, rename on success.

A reader never sees a half-written file, and a job that fails or is stopped leaves nothing
behind (the temporary is removed). While a target is written its lock is held
(:func:`~napari_cryolearn.engine.locks.output_lock`), so two runs never write one output at
once; holding it, the writer removes the temporaries that runs killed earlier left for the same
target (they are ours by name) and says so. Outputs get the permissions ``open()`` would give
them (``0o666`` less the umask; ``0o777`` for folders), so colleagues on shared storage can read
them. Errors of the filesystem (no space, read-only, no permission) become an
:class:`~napari_cryolearn.engine.errors.OutputError` with the temporary removed; memory-mapped
writers reserve their bytes up front with :func:`reserve_space`, since a full disk under a
memory map is a SIGBUS that nothing can catch.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shutil
import tempfile
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from napari_cryolearn.engine.errors import OutputError, OutputExistsError
from napari_cryolearn.engine.locks import output_lock

__all__ = [
    "atomic_dir",
    "atomic_path",
    "check_space",
    "remove_stale_temporaries",
    "reserve_space",
    "stale_temporaries",
]

_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, overwrite: bool = True, clean_stale: bool = True) -> Iterator[Path]:
    """Yield a temporary file path in ``target``'s folder; rename it to ``target`` on success.

    The temporary keeps ``target``'s suffix so that libraries that pick a format by suffix
    still work. The parent folder is created when missing. ``clean_stale=False`` skips the
    look for temporaries of earlier runs (a writer of thousands of files in one folder does
    that once, with :func:`remove_stale_temporaries`).

    Raises
    ------
    OutputExistsError
        (a ``FileExistsError``) When ``target`` exists and ``overwrite`` is false (checked before
        anything is written).
    OutputError
        The folder cannot be written, the disk is full, or another run writes ``target``.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise OutputExistsError("exists (pass overwrite to replace it)", path=target, field="output")
    with _made_parents(target), output_lock(target), _as_output_error(target):
        if clean_stale:
            _remove_stale(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".part{target.suffix}", dir=target.parent)
        os.fchmod(fd, 0o666 & ~_umask())
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
    folder is refused with :class:`OutputExistsError` (a ``FileExistsError``) before anything is
    written, and checked again just before it is replaced. A folder we did not write is never
    removed. On success the old
    folder is moved aside under a unique name first, so a crash between the two renames leaves
    either the old or the new folder, never a mixture. A file at ``target`` is never replaced.
    """
    target = Path(target)
    _check_replaceable_dir(target, overwrite, replaceable)
    with _made_parents(target), output_lock(target), _as_output_error(target):
        _remove_stale(target)
        tmp_path = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
        os.chmod(tmp_path, 0o777 & ~_umask())
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


def reserve_space(path: str | os.PathLike, nbytes: int, *, target: str | os.PathLike | None = None) -> None:
    """Make sure ``nbytes`` of ``path`` (a temporary about to be memory-mapped) are on disk.

    Checks the free space first, then allocates the blocks (``posix_fallocate``) so that
    writing through a memory map can never hit a full disk (a SIGBUS). ``target`` is the name
    the message uses (default ``path``).

    Raises
    ------
    OutputError
        "not enough space on <mount>: need N, have M".
    """
    path = Path(path)
    shown = Path(target) if target is not None else path
    check_space(shown, nbytes, where=path.parent)
    if nbytes <= 0 or not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, int(nbytes))
    except OSError as err:
        if err.errno in _SPACE:
            raise _no_space(shown, nbytes, shutil.disk_usage(path.parent).free) from None
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
            raise
    finally:
        os.close(fd)


#: Names of our temporaries: ``.<target>.XXXXXXXX.part[<suffix>]`` (mkstemp, mkdtemp) and
#: ``.<target>.<12 hex>.old`` (a replaced folder on its way out).
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?:[a-z0-9_]{8}\.part(?P<suffix>\..*)?|[0-9a-f]{12}\.old)$")


def _temporary_target(name: str) -> str | None:
    """The target name a temporary's name was made for, or None for other names."""
    match = _TEMPORARY.match(name)
    if match is None:
        return None
    target, suffix = match["target"], match["suffix"]
    if suffix is not None and not target.endswith(suffix):
        return None
    return target


def check_space(target: str | os.PathLike, nbytes: int, *, where: str | os.PathLike | None = None) -> None:
    """:class:`OutputError` "not enough space on <mount>: need N, have M" when the filesystem
    that will hold ``target`` (or ``where``) has less than ``nbytes`` free; a check before
    writing outputs whose size is known in advance."""
    target = Path(target)
    free = shutil.disk_usage(_existing(Path(where) if where is not None else target.parent)).free
    if nbytes > free:
        raise _no_space(target, nbytes, free)


def stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Temporaries that earlier, interrupted writes of ``target`` left beside it (ours by
    name, see ``_TEMPORARY``)."""
    target = Path(target)
    head = glob.escape(str(target.parent / f".{target.name}."))
    return sorted(Path(n) for n in glob.glob(f"{head}*") if _temporary_target(Path(n).name) == target.name)


def remove_stale_temporaries(folder: str | os.PathLike, prefix: str) -> list[Path]:
    """Remove the temporaries of earlier, interrupted writes in ``folder`` whose target names
    start with ``prefix`` (e.g. a tomogram's patch files ``TS_01_z``); warns for each and
    returns them. Only for callers that own every target of that prefix (no other writer of
    them can be running)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(e for e in folder.iterdir() if (t := _temporary_target(e.name)) is not None and t.startswith(prefix))
    _remove(stale)
    return stale


def _remove_stale(target: Path) -> None:
    # called with the target's lock held: no live writer owns any of these
    _remove(stale_temporaries(target))


def _remove(paths: list[Path]) -> None:
    for stale in paths:
        size = _size(stale)
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        warnings.warn(f"{stale}: removed a temporary ({_human(size)}) that an interrupted run left", stacklevel=4)


def _size(path: Path) -> int:
    try:
        if path.is_dir() and not path.is_symlink():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def _check_replaceable_dir(target: Path, overwrite: bool, replaceable: Callable[[Path], bool] | None) -> None:
    if not (target.exists() or target.is_symlink()):
        return
    if target.is_symlink() or not target.is_dir():
        raise OutputExistsError("exists and is not a folder", path=target, field="output")
    if not overwrite:
        raise OutputExistsError("exists (pass overwrite to replace it)", path=target, field="output")
    if replaceable is None or not replaceable(target):
        raise OutputExistsError(
            "is a folder that napari-cryolearn did not write (or that holds other files);"
            " it is never replaced: choose a new name", path=target, field="output")


@contextlib.contextmanager
def _made_parents(target: Path) -> Iterator[None]:
    """Make ``target``'s missing parent folders; if the block fails, remove those it made
    that are still empty (an early error leaves no empty output folder behind)."""
    for parent in (target.parent, *target.parent.parents):
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"cannot be made: {parent} is a file, not a folder", path=target, field="output")
    missing = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot make the folder {target.parent} ({err.strerror})",
                          path=target, field="output") from None
    try:
        yield
    except BaseException:
        for folder in missing:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break
        raise


@contextlib.contextmanager
def _as_output_error(target: Path) -> Iterator[None]:
    """Filesystem failures while writing ``target`` → :class:`OutputError` (others unchanged)."""
    try:
        yield
    except OSError as err:
        if isinstance(err, FileExistsError) or err.errno not in (*_SPACE, *_DENIED):
            raise
        if err.errno in _SPACE:
            raise _no_space(target, None, shutil.disk_usage(_existing(target.parent)).free) from None
        raise OutputError(f"cannot write here ({err.strerror})", path=target, field="output") from None


def _no_space(target: Path, need: int | None, have: int) -> OutputError:
    where = _mount_point(_existing(target.parent))
    needed = f"need {_human(need)}, " if need is not None else ""
    return OutputError(f"not enough space on {where}: {needed}have {_human(have)}; nothing was written",
                       path=target, field="output")


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _human(n: int | None) -> str:
    value = float(n or 0)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask, without changing it (Linux ≥ 4.7 reports it in /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore (only racy against other umask users)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask

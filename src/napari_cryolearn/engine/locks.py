"""One writer per output: an advisory lock beside the file or folder being written.

The lock is ``.<name>.lock`` in the output's folder, held with ``flock`` for as long as the
output is being written. The kernel drops it when the process ends, however it ends (SIGKILL
included), so a lock is never stale; the file is removed when the lock is released. A second
run on the same output gets an :class:`~napari_cryolearn.engine.errors.OutputError` naming the
output and the process that holds it, before it writes anything.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from napari_cryolearn.engine.errors import OutputError

__all__ = ["lock_path", "output_lock"]


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``.<name>.lock`` beside it."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def output_lock(target: str | os.PathLike, *, field: str = "output") -> Iterator[Path]:
    """Hold the lock of ``target`` (a file or folder about to be written) for the block.

    The parent folder must exist (an :class:`OutputError` says so when it cannot be made).

    Raises
    ------
    OutputError
        Another process holds the lock (its pid is named), or the lock file cannot be made
        (read-only folder, no permission).
    """
    target = Path(target)
    path = lock_path(target)
    fd = _acquire(path, target, field)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _acquire(path: Path, target: Path, field: str) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise OutputError(f"cannot write here ({err.strerror})", path=target, field=field) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_pid(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                who = f" (process {holder})" if holder else ""
                raise OutputError(f"another run is writing this output{who}; wait for it to finish or"
                                  " choose another name", path=target, field=field) from None
            raise OutputError(f"cannot lock {path.name} ({err.strerror})", path=target, field=field) from None
        # the previous holder may have removed the file between our open and our flock: then we
        # hold a lock on a file nobody else can see, so start again on the current one
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None

"""Checks on an output path, made before a job writes anything."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from napari_cryolearn.engine.errors import InputError

#: A metadata sidecar is the file's name plus this suffix (``labels.mrc`` → ``labels.mrc.json``).
SIDECAR_SUFFIX = ".json"

PathLike = str | os.PathLike


def check_output(
    inputs: PathLike | Sequence[PathLike | None] | None,
    output: PathLike,
    overwrite: bool,
    field: str = "output",
    *,
    others: Sequence[PathLike | None] = (),
    suffixes: Sequence[str] = (),
    what: str = "",
) -> None:
    """Refuse an output path before anything is written (:class:`InputError` naming ``field``).

    Refused: an ``output`` that is one of ``inputs`` or an input's metadata sidecar, or whose
    own sidecar would replace one of those; one that equals another output of the same job
    (``others``); a name that does not end in one of ``suffixes`` (when given; ``what`` says
    what is written, see :func:`check_suffix`); a folder; a path under a file; a folder that cannot be
    written; an existing file without ``overwrite``.
    """
    out = Path(output)
    given = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs or [])
    mine = {out.resolve(), _sidecar(out).resolve()}
    for inp in (Path(p) for p in given if p is not None):
        for protected, what in ((inp, "the input"), (_sidecar(inp), "the metadata of the input")):
            if protected.resolve() in mine:
                raise InputError(f"would overwrite {what} {protected}; choose another name", path=out, field=field)
    for other in (Path(p) for p in others if p is not None):
        if other.resolve() == out.resolve():
            raise InputError(f"is also given as another output ({other}); choose different names",
                             path=out, field=field)
    if suffixes:
        check_suffix(out, suffixes, what=what, field=field)
    if out.is_dir():
        raise InputError("is a folder; expected a file name", path=out, field=field)
    check_writable_parent(out, field)
    if out.exists() and not overwrite:
        raise InputError("exists (set overwrite to replace it)", path=out, field=field)


def check_suffix(path: PathLike, suffixes: Sequence[str], *, what: str = "", field: str = "output") -> None:
    """:class:`InputError` when ``path`` does not end in one of ``suffixes`` (any case): a job
    writes one format, and a name that says another (``out.png`` for an MRC) misleads every
    program that opens it.

    Examples
    --------
    >>> check_suffix("labels.MRC", (".mrc", ".rec"))
    >>> check_suffix("labels.png", (".mrc", ".rec"), what="an MRC volume")
    Traceback (most recent call last):
    ...
    napari_cryolearn.engine.errors.InputError: labels.png: output: ends in .png, but this writes an MRC volume: name it .mrc or .rec
    """
    path = Path(path)
    if path.suffix.lower() in {s.lower() for s in suffixes}:
        return
    ending = f"ends in {path.suffix}" if path.suffix else "has no file ending"
    writes = f", but this writes {what}" if what else ""
    names = ", ".join(suffixes[:-1]) + f" or {suffixes[-1]}" if len(suffixes) > 1 else suffixes[0]
    raise InputError(f"{ending}{writes}: name it {names}", path=path, field=field)


def check_writable_parent(output: PathLike, field: str = "output") -> None:
    """:class:`InputError` when ``output`` cannot be created: a parent is a file, or the nearest
    existing parent folder is not writable."""
    out = Path(output)
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"cannot be made: {parent} is a file, not a folder", path=out, field=field)
            if not os.access(parent, os.W_OK | os.X_OK):
                raise InputError(f"cannot write in the folder {parent} (permission denied)", path=out, field=field)
            return


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)

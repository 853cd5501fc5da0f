"""Checks on an output path, made before a job writes anything."""

from __future__ import annotations

import os
from pathlib import Path

from napari_cryolearn.engine.errors import InputError


def check_output(
    inp: str | os.PathLike, output: str | os.PathLike, overwrite: bool, field: str = "output"
) -> None:
    """``InputError`` (naming ``field``) when ``output`` is the input ``inp``, a folder, or
    exists without ``overwrite``."""
    out = Path(output)
    if out.resolve() == Path(inp).resolve():
        raise InputError(f"the {field} would overwrite the input; choose another name", path=out, field=field)
    if out.is_dir():
        raise InputError("is a folder; expected a file name", path=out, field=field)
    if out.exists() and not overwrite:
        raise InputError("exists (set overwrite to replace it)", path=out, field=field)

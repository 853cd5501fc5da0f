"""Checks on a stage's input paths, made before the stage's job module is imported.

A stage's job module may import torch, Lightning and MONAI (seconds of start-up): a path that
does not exist should be reported before that. :func:`check_inputs` reads the stage's input
:class:`~napari_cryolearn.engine.registry.Port` s, so it knows no stage: every required input
must be given, exist and be readable. What an input must hold (an MRC, a patch store, a
checkpoint) is the job's to check; nothing is opened here (a FIFO given as an input does not
block). Only the standard library is used.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.registry import Port, Stage

#: What an input of each kind is called in a message ("checkpoint not found").
NOUNS = {
    "tomogram": "tomogram",
    "labels": "labels file",
    "points": "STAR file",
    "micrographs": "micrographs file",
    "distances": "distance maps",
    "patch_store": "patch store",
    "model": "checkpoint",
    "run": "run folder",
    "config": "config file",
    "mesh": "mesh container",
    "table": "table",
    "file_list": "list of files",
}


def check_inputs(stage: Stage, config: Any) -> None:
    """Refuse a required input of ``stage`` in ``config`` that is not given, does not exist or
    cannot be read: :class:`InputError` naming the path and the field, e.g.
    ``missing.mrc: input: tomogram not found``.

    Optional inputs are left to the job (it knows when one is used: a pretrained model is
    ignored when a run is continued). A field holding a list (several patch stores) is checked
    item by item.
    """
    for port in stage.inputs:
        if port.optional:
            continue
        value = getattr(config, port.field, None)
        values = list(value) if isinstance(value, (list, tuple)) else [] if value is None else [value]
        if not values:
            raise InputError(f"no {_noun(port)} given", field=port.field)
        for path in values:
            check_input_path(path, port)


def check_input_path(path: str | os.PathLike, port: Port) -> None:
    """:class:`InputError` (naming ``path`` and ``port.field``) when ``path`` does not exist or
    this process may not read it (a folder: list and enter it)."""
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{_noun(port)} not found", path=path, field=port.field) from None
    except OSError as err:
        reason = (err.strerror or str(err)).lower()
        raise InputError(f"cannot be read: {reason}", path=path, field=port.field) from None
    if not os.access(path, os.R_OK | (os.X_OK if is_dir else 0)):
        raise InputError("cannot be read: permission denied", path=path, field=port.field)


def _noun(port: Port) -> str:
    return NOUNS.get(port.kind, "file")

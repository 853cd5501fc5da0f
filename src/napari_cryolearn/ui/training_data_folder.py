"""What the training widgets share about the data they write into a run folder.

A widget that trains on layers writes them to ``<run folder>/training_data`` with a
``SOURCE.json`` naming the widget (``written_by``); a later run may replace that folder only
when the same widget wrote it.
"""

from __future__ import annotations

import json
from pathlib import Path

from napari_cryolearn.engine.errors import InputError

#: The folder of a run that holds the data a widget wrote from layers, and its record.
TRAINING_DATA = "training_data"
SOURCE_FILE = "SOURCE.json"


def check_written_by(folder: Path, writer: str) -> None:
    """Refuse (:class:`InputError`) an existing ``folder`` whose ``SOURCE.json`` does not name
    ``writer``: the widget would replace data it did not write."""
    folder = Path(folder)
    if not folder.exists():
        return
    try:
        ours = json.loads((folder / SOURCE_FILE).read_text()).get("written_by") == writer
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise InputError(f"holds a {TRAINING_DATA} folder not written by {writer}; choose another run folder",
                         path=folder.parent, field="log_dir")


def device_name(device: str) -> str:
    """The device a training on ``device`` uses, for the widget's label: ``"auto"`` becomes
    cuda, else mps, else cpu; an explicit device is shown as chosen (the job checks it)."""
    if device != "auto":
        return device
    from napari_cryolearn.engine.lightning import resolve_accelerator

    return resolve_accelerator("auto")

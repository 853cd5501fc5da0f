"""What one widget hands to the next: the model a training just wrote, for the Segment widget.

A plain signal (psygnal, napari's own), no Qt: the training widget emits the checkpoint it
finished; a stage widget with a model input fills it in, unless the user chose another model
by hand since.
"""

from __future__ import annotations

from pathlib import Path

from psygnal import Signal


class _Handoff:
    trained_model = Signal(Path)

    def __init__(self) -> None:
        self.last_model: Path | None = None
        self.trained_model.connect(self._remember)

    def _remember(self, path: Path) -> None:
        self.last_model = Path(path)


#: The suite's hand-offs between widgets.
handoff = _Handoff()

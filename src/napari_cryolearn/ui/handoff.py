"""What one widget hands to the next: the model a training just wrote, for the widget that uses it.

Plain signals (psygnal, napari's own), no Qt: a training widget emits the checkpoint it
finished; a stage widget with a model input fills it in, unless the user chose another model
by hand since. Each family has its channel (:meth:`_Handoff.channel`), so that a picker trained
by "Train picker" goes to "Pick proteins" and never to "Segment", nor the reverse, an
encoder of "Self-supervised training" goes to "Embedding explorer", and an autoencoder of
"Train autoencoder" to "Latent maps".
"""

from __future__ import annotations

from pathlib import Path

from psygnal import Signal


class _Handoff:
    #: Segmentation models (Train segmentation → Segment).
    trained_model = Signal(Path)
    #: Picker models (Train picker → Pick proteins).
    trained_picker = Signal(Path)
    #: Self-supervised encoders (Self-supervised training → Embedding explorer).
    trained_encoder = Signal(Path)
    #: 4D-STEM autoencoders (Train autoencoder → Latent maps).
    trained_autoencoder = Signal(Path)
    #: Dense 3D SimSiam models (Pretrain (3D, no labels) → Embedding volume).
    trained_dense = Signal(Path)

    def __init__(self) -> None:
        self.last_model: Path | None = None
        self.last_picker: Path | None = None
        self.last_encoder: Path | None = None
        self.last_autoencoder: Path | None = None
        self.last_dense: Path | None = None
        self.trained_model.connect(self._remember)
        self.trained_picker.connect(self._remember_picker)
        self.trained_encoder.connect(self._remember_encoder)
        self.trained_autoencoder.connect(self._remember_autoencoder)
        self.trained_dense.connect(self._remember_dense)

    def _remember(self, path: Path) -> None:
        self.last_model = Path(path)

    def _remember_picker(self, path: Path) -> None:
        self.last_picker = Path(path)

    def _remember_encoder(self, path: Path) -> None:
        self.last_encoder = Path(path)

    def _remember_autoencoder(self, path: Path) -> None:
        self.last_autoencoder = Path(path)

    def _remember_dense(self, path: Path) -> None:
        self.last_dense = Path(path)

    def channel(self, stage_name: str):
        """``(signal, name of the attribute holding the last model handed)`` for a stage's model
        inputs: the picking stages' (``pick.*``), the encoders' (``ssl.*``), the autoencoders'
        (``ae.*``), or the segmentation
        models' for the others."""
        family = stage_name.split(".")[0]
        if family == "pick":
            return self.trained_picker, "last_picker"
        if family == "ssl":
            return self.trained_encoder, "last_encoder"
        if family == "ae":
            return self.trained_autoencoder, "last_autoencoder"
        return self.trained_model, "last_model"


#: The suite's hand-offs between widgets.
handoff = _Handoff()

"""Dock widget "Embedding volume": a label-free first look at a tomogram with a pretrained DenseSimSiam.

It runs ``ssl.embed3d`` (:func:`~napari_cryolearn.selfsup.embed3d_job.embed3d_job`) in a worker
thread on an Image layer (the layer's MRC file when it was opened from one, else the layer written
to ``<output folder>/<layer name>.mrc`` first), then adds, at the image's scale:

- ``<layer> embedding``: an RGB Image layer (Z, Y, X, 3) of the first three PCA components of the
  per-voxel embeddings;
- ``<layer> embedding clusters``: a Labels layer of their k-means clusters (1 the largest).

The model is filled from "Pretrain (3D, no labels)" when it finishes (:mod:`.handoff`).
"""

from __future__ import annotations

from pathlib import Path

import napari.layers
import numpy as np
from magicgui.widgets import FileEdit, SpinBox, create_widget

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.handoff import handoff
from napari_cryolearn.ui.job_widget import JobWidget
from napari_cryolearn.ui.latent_maps import _given

FORM_FIELDS = ("batch_size", "device", "overwrite")


class EmbeddingVolumeWidget(JobWidget):
    """Embeds an Image layer with a DenseSimSiam model (see the module docstring).

    Attributes
    ----------
    rgb:
        (Z, Y, X, 3) float32 of the last run (``None`` before the first).
    clusters:
        (Z, Y, X) uint8 clusters 1..k.
    """

    def __init__(self, napari_viewer):
        from napari_cryolearn.selfsup.pretrain3d_config import Embed3DConfig
        from napari_cryolearn.ui.forms import field_widget

        self.fields = Embed3DConfig.model_fields
        self._viewer = napari_viewer
        self.model = FileEdit(mode="r", value="", label="model", filter="*.ckpt", tooltip=self.fields["model"].description)
        self.image = create_widget(annotation=napari.layers.Image, label="tomogram (Image layer)",
                                   options={"choices": self._image_choices})
        self.output = FileEdit(mode="d", value="", label="output folder", tooltip=self.fields["output_dir"].description)
        self.n_clusters = SpinBox(value=2, min=2, max=50, label="clusters")
        self.form = {name: field_widget(name, self.fields[name]) for name in FORM_FIELDS}
        super().__init__(napari_viewer, [self.model, self.image, self.output, self.n_clusters, *self.form.values()],
                         title="Embedding volume", run_text="Embed")
        self.rgb = None
        self.clusters = None
        if handoff.last_dense is not None:
            self.model.value = str(handoff.last_dense)
        handoff.trained_dense.connect(self._take_model)

    def _take_model(self, path: Path) -> None:
        try:
            self.model.value = str(path)
        except RuntimeError:  # the widget was closed (its Qt side is gone): stop listening
            handoff.trained_dense.disconnect(self._take_model)

    def _image_choices(self, widget=None):
        return [layer for layer in self._viewer.layers
                if isinstance(layer, napari.layers.Image) and layer.ndim == 3 and not layer.rgb]

    def make_job(self):
        from napari_cryolearn.selfsup.embed3d_job import embed3d_job
        from napari_cryolearn.selfsup.pretrain3d_config import Embed3DConfig
        from napari_cryolearn.ui.forms import form_values

        model, output = _given(self.model.value), _given(self.output.value)
        if model is None:
            raise InputError("choose a pretrained model (model/last.ckpt of Pretrain (3D, no labels))", field="model")
        if output is None:
            raise InputError("choose an output folder", field="output_dir")
        layer = self.image.value
        if layer is None:
            raise InputError("choose the Image layer of a tomogram", field="tomogram")
        scale = tuple(float(s) for s in layer.scale[-3:])
        source = dict(layer.metadata).get("source_path")
        write = None
        if source and Path(source).is_file() and str(source).lower().endswith((".mrc", ".rec", ".map")):
            tomogram = Path(source)
        else:
            tomogram = output / f"{layer.name}.mrc"
            array = np.asarray(layer.data)
            if array.ndim != 3:
                raise InputError(f"expected a 3D volume, got shape {array.shape}", path=layer.name, field="tomogram")

            def write():
                from napari_cryolearn.io.mrc import write_mrc

                output.mkdir(parents=True, exist_ok=True)
                write_mrc(tomogram, np.asarray(array, np.float32), voxel_size=scale)
        values = form_values(self.form, self.fields)
        config = Embed3DConfig.from_dict({**values, "model": model, "tomogram": tomogram, "output_dir": output,
                                          "clusters": int(self.n_clusters.value)})
        self._layer = (layer.name, scale, tuple(layer.translate[-3:]))

        def job(stop):
            if write is not None:
                yield Progress(0, None, f"writing the layer to {tomogram}", stage="ssl.embed3d")
                write()
            return (yield from embed3d_job(config, stop=stop))

        return job

    def on_result(self, result) -> None:
        from napari_cryolearn.io.mrc import read_mrc

        if result is None or result.stopped:
            self.status.value = "stopped: nothing written"
            return
        name, scale, translate = self._layer
        self.rgb = np.stack([np.asarray(read_mrc(result.outputs[f"pca_{c}"]).data) for c in "rgb"], axis=-1)
        self.clusters = np.asarray(read_mrc(result.outputs["clusters"]).data)
        meta = {"source_path": str(result.outputs["clusters"])}
        for layer_name, kind, data, kwargs in (
                (f"{name} embedding", "image", self.rgb, {"rgb": True}),
                (f"{name} embedding clusters", "labels", self.clusters, {"opacity": 0.5})):
            if layer_name in self._viewer.layers:
                self._viewer.layers.remove(layer_name)
            getattr(self._viewer, f"add_{kind}")(data, name=layer_name, scale=scale, translate=translate,
                                                metadata=meta, **kwargs)
        variance = 100 * result.metrics.get("explained_variance", 0.0)
        self.status.value = (f"{int(self.clusters.max())} clusters; the 3 components shown explain {variance:.0f} % "
                             f"of the variance; files in {Path(result.outputs['clusters']).parent}")

"""Dock widget "Latent maps": a trained 4D-STEM autoencoder applied to a scan, shown over the scan.

It runs ``ae.apply`` (:func:`~napari_cryolearn.selfsup.ae_apply_job.ae_apply_job`) in a worker
thread on a scan file or on a 4D Image layer opened from one (its ``metadata["scan4d"]``, as the
4D-STEM reader sets it; a layer without a file is written to ``<output folder>/scan4d.npy``
first), then adds:

- ``latent maps``: an Image layer (latent channel, scan y, scan x) at the scan's step, one
  channel per slice;
- ``latent clusters``: a Labels layer (scan y, scan x) of k-means of the latents (spherical,
  :func:`~napari_cryolearn.selfsup.embedding.cluster_embeddings`: k given, or the k of 2–10
  with the best silhouette score), 1-based so that every position has a colour;
- on a click on either layer, ``pattern`` and ``reconstruction``: the diffraction pattern at
  that scan position and the autoencoder's reconstruction of it, in the input's units
  (:meth:`LatentMapsWidget.show_position`).

The model is filled from "Train autoencoder" when it finishes (:mod:`.handoff`). The PSNR and
SSIM of the whole scan (``metrics.json``) are shown in the status line.
"""

from __future__ import annotations

import json
from pathlib import Path

import napari.layers
import numpy as np
from magicgui.widgets import ComboBox, FileEdit, SpinBox, create_widget

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.handoff import handoff
from napari_cryolearn.ui.job_widget import JobWidget

MAPS_LAYER = "latent maps"
CLUSTERS_LAYER = "latent clusters"
PATTERN_LAYER = "pattern"
RECONSTRUCTION_LAYER = "reconstruction"
SOURCES = ("Image layer", "scan file")


class LatentMapsWidget(JobWidget):
    """Applies a 4D-STEM autoencoder and shows its latents over the scan (see the module docstring).

    Attributes
    ----------
    latent:
        (Sy, Sx, latent) of the last run (``None`` before the first).
    clusters:
        (Sy, Sx) cluster of each scan position, 1-based.
    """

    def __init__(self, napari_viewer):
        from napari_cryolearn.selfsup.ae_config import AEApplyConfig

        self.fields = AEApplyConfig.model_fields
        self._viewer = napari_viewer
        self.model = FileEdit(mode="r", value="", label="model", filter="*.ckpt",
                              tooltip=self.fields["model"].description)
        self.source = ComboBox(choices=list(SOURCES), value=SOURCES[0], label="scan from")
        self.image = create_widget(annotation=napari.layers.Image, label="scan (4D Image layer)",
                                   options={"choices": self._image_choices})
        self.data = FileEdit(mode="r", value="", label="scan file", filter="*.npy *.h5 *.hdf5 *.mrc *.pt",
                             tooltip=self.fields["data"].description)
        self.output = FileEdit(mode="d", value="", label="output folder",
                               tooltip=self.fields["output_dir"].description)
        self.n_clusters = SpinBox(value=0, min=0, max=50, label="clusters (0: best silhouette)",
                                  tooltip=self.fields["clusters"].description)
        from napari_cryolearn.ui.forms import field_widget

        self.form = {name: field_widget(name, self.fields[name]) for name in ("step", "batch_size", "device",
                                                                               "overwrite")}
        super().__init__(napari_viewer, [self.model, self.source, self.image, self.data, self.output, self.n_clusters,
                                         *self.form.values()], title="Latent maps", run_text="Apply")
        self.source.changed.connect(self._show_source)
        self._show_source()
        self.latent = None
        self.clusters = None
        self.summary = ""
        self._scan = None
        self._reconstruction = None
        self._norm_units = None
        if handoff.last_autoencoder is not None:
            self.model.value = str(handoff.last_autoencoder)
        handoff.trained_autoencoder.connect(self._take_model)

    def _take_model(self, path: Path) -> None:
        try:
            self.model.value = str(path)
        except RuntimeError:  # the widget was closed (its Qt side is gone): stop listening
            handoff.trained_autoencoder.disconnect(self._take_model)

    def _image_choices(self, widget=None):
        return [layer for layer in self._viewer.layers if isinstance(layer, napari.layers.Image) and layer.ndim == 4]

    def _show_source(self, *_):
        layer = self.source.value == SOURCES[0]
        self.image.visible = layer
        self.data.visible = not layer

    # -- the job (built in the GUI thread) ---------------------------------------------------------

    def make_job(self):
        from napari_cryolearn.selfsup.ae_apply_job import ae_apply_job
        from napari_cryolearn.selfsup.ae_config import AEApplyConfig
        from napari_cryolearn.ui.forms import form_values

        model, output = _given(self.model.value), _given(self.output.value)
        if model is None:
            raise InputError("choose a trained autoencoder (model/model_best.ckpt of ae train)", field="model")
        if output is None:
            raise InputError("choose an output folder", field="output_dir")
        write = None
        if self.source.value == SOURCES[1]:
            data = _given(self.data.value)
            if data is None:
                raise InputError("choose the 4D-STEM scan file", field="data")
        else:
            layer = self.image.value
            if layer is None:
                raise InputError("choose the 4D Image layer of the scan", field="data")
            source = dict(layer.metadata).get("scan4d")
            if source and Path(source).is_file():
                data = Path(source)
            else:
                data = output / "scan4d.npy"
                array = np.asarray(layer.data)

                def write():
                    from napari_cryolearn.engine.atomic import atomic_path

                    output.mkdir(parents=True, exist_ok=True)
                    with atomic_path(data, overwrite=True) as tmp, open(tmp, "wb") as f:
                        np.save(f, array)
        values = form_values(self.form, self.fields)
        config = AEApplyConfig.from_dict({**values, "model": model, "data": data, "output_dir": output,
                                          "clusters": int(self.n_clusters.value)})

        def job(stop):
            if write is not None:
                yield Progress(0, None, f"writing the layer to {data}", stage="ae.apply")
                write()
            result = yield from ae_apply_job(config, stop=stop)
            if result.stopped:
                return result, None
            from napari_cryolearn.io.mrc import read_mrc

            return result, np.asarray(read_mrc(result.outputs["clusters"]).data[0]).astype(np.int32)

        self._config = config
        return job

    # -- results (GUI thread) ----------------------------------------------------------------------

    def on_result(self, value) -> None:
        from napari_cryolearn.io.stem4d import read_stem4d

        result, clusters = value
        if result is None or result.stopped or clusters is None:
            self.status.value = "stopped: nothing written"
            return
        config = self._config
        self.latent = np.load(result.outputs["latent"])
        self.clusters = clusters
        self._scan = read_stem4d(config.data, dataset=config.dataset, scan_shape=config.scan_shape,
                                 check_finite=False)
        self._reconstruction = np.load(result.outputs["reconstruction"], mmap_mode="r")
        step = float(config.step or self._scan.step or 1.0)
        units = ("pixel", "nm", "nm") if (config.step or self._scan.step) else ("pixel",) * 3
        maps = np.moveaxis(self.latent, -1, 0)
        meta = {"model": str(config.model), "scan4d": str(config.data), "output_dir": str(config.output_dir)}
        self._set_layer(MAPS_LAYER, "image", maps, scale=(1.0, step, step), units=units, metadata=meta,
                        axis_labels=("latent", "scan y", "scan x"), colormap="magma")
        self._set_layer(CLUSTERS_LAYER, "labels", clusters, scale=(step, step), units=units[1:], metadata=meta,
                        opacity=0.6)
        for name in (MAPS_LAYER, CLUSTERS_LAYER):
            layer = self._viewer.layers[name]
            if self._on_click not in layer.mouse_drag_callbacks:
                layer.mouse_drag_callbacks.append(self._on_click)
        m = json.loads(Path(result.outputs["metrics"]).read_text())
        ssim = "n/a" if m.get("ssim") is None else f"{m['ssim']:.3f}"
        self.summary = f"{m['n_patterns']} patterns: PSNR {m['psnr']:.2f} dB, SSIM {ssim}; {int(clusters.max())} clusters"
        self.show_position(0, 0)
        self.status.value = f"{self.summary}; click a scan position to see its pattern"

    def _set_layer(self, name: str, kind: str, data, **kwargs):
        if name in self._viewer.layers and type(self._viewer.layers[name]).__name__.lower() == kind:
            layer = self._viewer.layers[name]
            layer.data = data
            layer.scale = kwargs["scale"]
            layer.metadata = kwargs.get("metadata", {})
            return layer
        if name in self._viewer.layers:
            self._viewer.layers.remove(name)
        return getattr(self._viewer, f"add_{kind}")(data, name=name, **kwargs)

    def _on_click(self, layer, event) -> None:
        if self.latent is None:
            return
        y, x = (int(round(c)) for c in layer.world_to_data(event.position)[-2:])
        if 0 <= y < self.latent.shape[0] and 0 <= x < self.latent.shape[1]:
            self.show_position(y, x)

    def show_position(self, y: int, x: int) -> tuple[np.ndarray, np.ndarray]:
        """Show the pattern at scan position (``y``, ``x``) and its reconstruction (input units,
        after the model's crop and binning) as the ``pattern`` and ``reconstruction`` layers; returns
        both."""
        from napari_cryolearn.io.stem4d import prepare
        from napari_cryolearn.selfsup.ae_module import read_ae_checkpoint

        if self.latent is None:
            raise InputError("apply a model first")
        sy, sx = self.latent.shape[:2]
        if not (0 <= y < sy and 0 <= x < sx):
            raise InputError(f"scan position ({y}, {x}) is outside the scan ({sy} × {sx})")
        if self._norm_units is None:
            self._norm_units = read_ae_checkpoint(self._config.model)[2]
        norm = self._norm_units
        k = y * sx + x
        pattern = prepare(self._scan.patterns(k, k + 1).astype(np.float32), crop=norm.crop, binning=norm.binning)[0]
        recon = np.asarray(self._reconstruction[y, x], np.float32)
        limits = (float(min(pattern.min(), recon.min())), float(max(pattern.max(), recon.max())) or 1.0)
        for name, image in ((PATTERN_LAYER, pattern), (RECONSTRUCTION_LAYER, recon)):
            layer = self._set_layer(name, "image", image, scale=(1.0, 1.0), metadata={"scan_position": [y, x]},
                                    colormap="gray", gamma=0.3)
            layer.metadata = {"scan_position": [y, x]}
            layer.contrast_limits = limits
        self.status.value = f"{self.summary}; scan position ({y}, {x}): cluster {int(self.clusters[y, x])}"
        return pattern, recon


def _given(value) -> Path | None:
    text = str(value or "").strip()
    return None if text in ("", ".") else Path(text)


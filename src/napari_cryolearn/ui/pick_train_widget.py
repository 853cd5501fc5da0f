"""Dock widget "Train picker": the membrane-protein picker trained on Surface layers and a Points
layer of true positions, or on a data folder in MemBrain-pick's layout.

It runs ``pick.train`` (:func:`~napari_cryolearn.picking.train_job.pick_train_job`) in a child
process, as "Train segmentation" does, and shows progress per batch, the device, and a live
plot of the training and validation losses per epoch. Stop ends training after the current
batch and keeps ``model/last.ckpt``, which "continue training" resumes. The checkpoint it
finished (the best, else the last) is handed to "Pick proteins" (:mod:`.handoff`).

Training on layers: each Surface layer must have been opened from a mesh container (its
``metadata["source_path"]``; the layer lacks the container's normal profiles), all of one
tomogram (one scale and translation), and the Points layer holds that tomogram's protein
positions. The widget writes them in MemBrain-pick's layout to ``<run folder>/training_data``:
``train/<tomogram>_<k>.h5`` (hard links of the containers, copies where a link cannot be made)
and ``train/<tomogram>.star`` (the positions in voxels of the meshes: the points' world
coordinates, ``data × scale + translate``, less the meshes' translation, over their scale),
with ``SOURCE.json`` naming the layers and files they came from. The run trains on that folder,
so its ``config.yaml`` and ``training_data.json`` point at files that stay with the run. There is
no validation set then (``model/model_best.ckpt`` is the epoch of least training loss); a data
folder with ``val/`` validates.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import napari.layers
import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, Select, create_widget

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.forms import field_widget, form_values, note
from napari_cryolearn.ui.handoff import handoff
from napari_cryolearn.ui.job_widget import JobWidget
from napari_cryolearn.ui.training_data_folder import check_written_by, device_name
from napari_cryolearn.ui.metrics_plot import MetricsPlot, plot_training_progress

#: The job, run in a child process (training in napari's process holds its event loop).
TRAIN_JOB = "napari_cryolearn.picking.train_job:pick_train_job"
#: The config fields the form shows, daily ones first (the rest keep the config's defaults).
FORM_FIELDS = ("log_dir", "max_epochs", "max_time", "device", "lr", "batch_size", "pretrained_model",
               "continue_training", "overwrite", "max_distance", "coordinates", "pixel_size", "position_classes")
#: Shown under "Expert settings".
EXPERT_FIELDS = ("cache_dir", "clip", "augment", "seed")
#: The network fields the form shows (under "Expert settings" but the first).
NETWORK_FIELDS = ("profile_window", "partition_size", "eigenpairs", "c_width", "n_blocks")
#: The folder of the run that holds the data written from layers, and its record of them.
LAYERS_DATA = "training_data"
SOURCE_FILE = "SOURCE.json"


def positions_in_voxels(points, surface) -> np.ndarray:
    """(N, 3) z, y, x voxels of ``surface``'s mesh of the Points layer ``points``: world
    coordinates (``data × scale + translate``) less the surface's translation, over its scale."""
    data = np.asarray(points.data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != 3:
        raise InputError(f"Points layer {points.name!r} is not 3D ({data.shape[-1]} coordinates per point)",
                         field="positions")
    world = data * np.asarray(points.scale, float) + np.asarray(points.translate, float)
    return (world - np.asarray(surface.translate, float)) / np.asarray(surface.scale, float)


def _tomogram_name(surfaces) -> str:
    """The stem of the tomogram the surfaces' containers were made from (``tomogram`` if none
    says); :class:`InputError` when they name different tomograms."""
    names = {Path(str(t).replace("\\", "/")).name.split(".")[0]
             for t in (dict(s.metadata).get("tomo_file") for s in surfaces) if t}
    if len(names) > 1:
        raise InputError(f"the meshes come from different tomograms ({', '.join(sorted(names))}); train on the "
                         "meshes of one tomogram with its positions, or on a data folder", field="surfaces")
    return names.pop() if names else "tomogram"


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def write_layers_data(folder: Path, meshes: list[tuple[str, Path]], positions: np.ndarray, *, voxel_size: float,
                      tomogram: str, record: dict) -> Path:
    """Write ``folder/train/<tomogram>_<k>.h5`` and ``folder/train/<tomogram>.star`` (positions
    z, y, x voxels) and ``folder/SOURCE.json``, replacing a previous ``folder`` of ours; the new
    folder is complete before it takes the old one's place. Returns ``folder``."""
    from napari_cryolearn.io import write_star

    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    train = partial / "train"
    train.mkdir(parents=True)
    for name, source in meshes:
        _link_or_copy(source, train / name)
    write_star(train / f"{tomogram}.star", positions, pixel_size=voxel_size)
    (partial / SOURCE_FILE).write_text(json.dumps({**record, "written_by": "Train picker"}, indent=1))
    old = folder.with_name(f".{folder.name}.old")
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    partial.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


class TrainPickerWidget(JobWidget):
    """Trains the DiffusionNet picker; the run folder holds checkpoints, logs, the config and,
    when trained on layers, the data written from them (see the module docstring).

    The form's fields are :class:`~napari_cryolearn.picking.config.PickTrainConfig`'s and its
    network's (defaults, tooltips and validation from them).

    Attributes
    ----------
    result:
        The :class:`~napari_cryolearn.engine.training.TrainResult` of the last run (``None``
        before the first).
    config:
        The config of the last run.
    """

    def __init__(self, napari_viewer):
        from napari_cryolearn.picking.config import PickerNetworkConfig, PickTrainConfig

        self.fields = PickTrainConfig.model_fields
        self.network_fields = PickerNetworkConfig.model_fields
        self._viewer = napari_viewer
        self.source = ComboBox(choices=["layers", "data folder"], value="layers", label="train on")
        self.surfaces = Select(choices=self._surface_choices, value=[], label="meshes (Surface layers)",
                               tooltip="membrane meshes opened from their containers (.h5), of one tomogram")
        self.positions = create_widget(annotation=napari.layers.Points, label="protein positions",
                                       options={"choices": self._points_choices,
                                                "tooltip": "the true protein positions in that tomogram"})
        self.data = FileEdit(mode="d", value="", label="data folder", tooltip=self.fields["data"].description)
        self.form = {name: field_widget(name, self.fields[name]) for name in (*FORM_FIELDS, *EXPERT_FIELDS)}
        self.network_form = {name: field_widget(name, self.network_fields[name]) for name in NETWORK_FIELDS}
        self.form["log_dir"].mode = "d"
        self.form["log_dir"].value = str(Path.home() / "cryolearn-runs" / "picker")
        self.form["cache_dir"].mode = "d"
        self.loss_plot = MetricsPlot(title="loss")
        self.error_plot = MetricsPlot(title="validation error (Å)")
        self.device_label = Label(value="device: chosen when training starts")
        plot_box = Container(labels=False)
        plot_box.native.layout().addWidget(self.loss_plot)
        plot_box.native.layout().addWidget(self.error_plot)
        daily = [self.form[n] for n in FORM_FIELDS]
        expert = [*self.network_form.values(), *(self.form[n] for n in EXPERT_FIELDS)]
        super().__init__(
            napari_viewer,
            [self.source, self.surfaces, self.positions, self.data, *daily,
             note("Expert settings (most runs leave these)"), *expert, self.device_label, plot_box],
            title="Train picker", run_text="Train",
        )
        self.source.changed.connect(self._show_source)
        self._show_source()
        self.result = None
        self.config = None

    def _surface_choices(self, widget=None):
        return [layer for layer in self._viewer.layers if isinstance(layer, napari.layers.Surface)]

    def _points_choices(self, widget=None):
        return [layer for layer in self._viewer.layers if isinstance(layer, napari.layers.Points) and layer.ndim == 3]

    def _show_source(self, *_):
        layers = self.source.value == "layers"
        self.surfaces.visible = self.positions.visible = layers
        self.data.visible = not layers
        self.form["coordinates"].visible = not layers  # positions from a layer are in voxels

    # -- building the job (GUI thread) -------------------------------------------------------------

    def _values(self) -> dict:
        values = form_values(self.form, self.fields)
        values["network"] = form_values(self.network_form, self.network_fields)
        values["progress_every_n_batches"] = 1  # the plot shows every batch's loss
        return values

    def make_job(self):
        from napari_cryolearn.engine.child import run_in_child
        from napari_cryolearn.picking.config import PickTrainConfig

        values = self._values()
        if self.source.value == "data folder":
            text = str(self.data.value).strip()
            if text in ("", "."):
                raise InputError("choose a data folder (train/ and val/ of mesh containers and STAR files)",
                                 field="data")
            config = PickTrainConfig.from_dict({**values, "data": Path(text)})
            write = None
        else:
            config, write = self._layers_job(values)
        self.config = config
        self.loss_plot.clear()
        self.error_plot.clear()
        self.device_label.value = f"device: {device_name(config.device)}"

        def job(stop):
            if write is not None:
                yield Progress(0, None, f"writing the meshes and positions to {config.data}", stage="pick.train")
                write()
            return (yield from run_in_child(TRAIN_JOB, config, stop=stop))

        return job

    def _layers_job(self, values: dict):
        """The config of a run on the chosen layers, and the function writing its data folder;
        every check is made here, before anything is written."""
        from napari_cryolearn.engine.training import RunFolder, check_log_dir
        from napari_cryolearn.picking.config import PickTrainConfig
        from napari_cryolearn.picking.train_job import DATA_FILE, mesh_stem, tomogram_stem
        from napari_cryolearn.ui.stage_widget import _mesh_source

        surfaces = list(self.surfaces.value)
        points = self.positions.value
        if not surfaces:
            raise InputError("choose the Surface layers of the membranes to train on", field="surfaces")
        if points is None:
            raise InputError("choose the Points layer of the true protein positions", field="positions")
        sources = [_mesh_source(s, "surfaces") for s in surfaces]
        first = surfaces[0]
        for s in surfaces[1:]:
            if not (np.allclose(s.scale, first.scale) and np.allclose(s.translate, first.translate)):
                raise InputError(f"Surface layers {first.name!r} and {s.name!r} differ in scale or translation: "
                                 "choose the meshes of one tomogram", field="surfaces")
        tomogram = _tomogram_name(surfaces)
        voxel_size = dict(first.metadata).get("voxel_size") or float(first.scale[-1])
        positions = positions_in_voxels(points, first)
        names, meshes = set(), []
        for k, (layer, source) in enumerate(zip(surfaces, sources), start=1):
            name = source.name
            if tomogram not in tomogram_stem(source, dict(layer.metadata).get("tomo_file")) or name in names:
                name = f"{tomogram}_{k}.h5"
            while name in names:
                name = f"{mesh_stem(Path(name))}_{k}.h5"
            names.add(name)
            meshes.append((name, source))
        if "log_dir" not in values:
            raise InputError("choose a run folder", field="log_dir")
        folder = Path(values["log_dir"]) / LAYERS_DATA
        config = PickTrainConfig.from_dict({**values, "data": folder, "coordinates": "pixel"})
        for source in sources:
            check_log_dir(config.log_dir, [source.parent], what="folder of mesh containers")
        RunFolder(config, inputs=[folder], files=(DATA_FILE,)).check()
        check_written_by(folder, "Train picker")
        record = {"meshes": {name: str(source) for name, source in meshes},
                  "surface_layers": [s.name for s in surfaces], "points_layer": points.name,
                  "positions": int(len(positions)), "voxel_size": float(voxel_size)}

        def write():
            Path(config.log_dir).mkdir(parents=True, exist_ok=True)
            write_layers_data(folder, meshes, positions, voxel_size=float(voxel_size), tomogram=tomogram,
                              record=record)

        return config, write

    # -- progress and results (GUI thread) ---------------------------------------------------------

    def on_progress(self, event: Progress) -> None:
        metrics = event.metrics or {}
        plot_training_progress(metrics, self.loss_plot, self.error_plot, "val_mae_A")

    def on_result(self, result) -> None:
        self.result = result
        if result is None:
            return
        best = result.best_checkpoint or result.last_checkpoint
        word = "stopped" if result.stopped else "done"
        if best is None:
            self.status.value = f"{word} before the first epoch: no checkpoint was written"
            return
        handoff.trained_picker.emit(Path(best))
        self.status.value = f"{word} after {result.epochs} epochs; model: {best} (handed to Pick proteins)"

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
from magicgui.widgets import FileEdit, Select, create_widget

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.ui.forms import field_widget, form_values
from napari_cryolearn.ui.training_data_folder import SOURCE_FILE, TRAINING_DATA, check_written_by
from napari_cryolearn.ui.training_widget import TrainingWidget

#: The job, run in a child process (training in napari's process holds its event loop).
TRAIN_JOB = "napari_cryolearn.picking.train_job:pick_train_job"
#: The config fields the form shows, daily ones first (the rest keep the config's defaults).
FORM_FIELDS = ("log_dir", "max_epochs", "max_time", "device", "lr", "batch_size", "pretrained_model",
               "continue_training", "overwrite", "max_distance", "coordinates", "pixel_size", "position_classes")
#: Shown under "Expert settings".
EXPERT_FIELDS = ("cache_dir", "clip", "augment", "seed")
#: The network fields the form shows (under "Expert settings" but the first).
NETWORK_FIELDS = ("profile_window", "partition_size", "eigenpairs", "c_width", "n_blocks")


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


class TrainPickerWidget(TrainingWidget):
    """Trains the DiffusionNet picker; the run folder holds checkpoints, logs, the config and,
    when trained on layers, the data written from them (see the module docstring).

    The form's fields are :class:`~napari_cryolearn.picking.config.PickTrainConfig`'s and its
    network's (defaults, tooltips and validation from them); the rest is
    :class:`~.training_widget.TrainingWidget`'s.
    """

    def __init__(self, napari_viewer):
        from napari_cryolearn.picking.config import PickerNetworkConfig, PickTrainConfig

        fields = PickTrainConfig.model_fields
        self.network_fields = PickerNetworkConfig.model_fields
        self._viewer = napari_viewer
        self.surfaces = Select(choices=self._surface_choices, value=[], label="meshes (Surface layers)",
                               tooltip="membrane meshes opened from their containers (.h5), of one tomogram")
        self.positions = create_widget(annotation=napari.layers.Points, label="protein positions",
                                       options={"choices": self._points_choices,
                                                "tooltip": "the true protein positions in that tomogram"})
        self.data = FileEdit(mode="d", value="", label="data folder", tooltip=fields["data"].description)
        self.network_form = {name: field_widget(name, self.network_fields[name]) for name in NETWORK_FIELDS}
        super().__init__(
            napari_viewer, config_class=PickTrainConfig, job=TRAIN_JOB, stage="pick.train", title="Train picker",
            sources={"layers": [self.surfaces, self.positions], "data folder": [self.data]},
            form_fields=FORM_FIELDS, expert_fields=EXPERT_FIELDS, expert_widgets=list(self.network_form.values()),
            run_folder="picker", metric=("val_mae_A", "validation error (Å)", None),
            handoff_signal="trained_picker", handoff_to="Pick proteins",
        )
        self.form["cache_dir"].mode = "d"

    def _surface_choices(self, widget=None):
        return [layer for layer in self._viewer.layers if isinstance(layer, napari.layers.Surface)]

    def _points_choices(self, widget=None):
        return [layer for layer in self._viewer.layers if isinstance(layer, napari.layers.Points) and layer.ndim == 3]

    def source_changed(self, source: str) -> None:
        if hasattr(self, "form"):
            self.form["coordinates"].visible = source == "data folder"  # positions from a layer are in voxels

    # -- building the job (GUI thread) -------------------------------------------------------------

    def values(self) -> dict:
        return {**super().values(), "network": form_values(self.network_form, self.network_fields)}

    def build(self, values: dict):
        from napari_cryolearn.picking.config import PickTrainConfig

        if self.source.value == "data folder":
            text = str(self.data.value).strip()
            if text in ("", "."):
                raise InputError("choose a data folder (train/ and val/ of mesh containers and STAR files)",
                                 field="data")
            return PickTrainConfig.from_dict({**values, "data": Path(text)}), None
        return self._layers_job(values)

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
        folder = Path(values["log_dir"]) / TRAINING_DATA
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

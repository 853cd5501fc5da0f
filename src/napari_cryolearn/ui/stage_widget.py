"""A stage's dock widget, built from its registration: its config's form, layer pickers for its
inputs, and its outputs opened as layers at the input's scale.

The widget runs the stage's registered job with the stage's config, exactly as
``cryolearn <stage>`` does: the form's values become the config (whose validation gives the
message a user sees, before anything runs), a layer chosen for an input is handed to the job
as a file (the file it was opened from, when its data is that file unchanged; else a
temporary MRC or STAR written from the layer, at the layer's scale), and each output the job
reports is opened as a layer with the scale and translation of the stage's first input layer.
An output left without a file name is written to a temporary folder, loaded into memory and
removed: the result is in the viewer, not on disk, until the user saves it. Stop sets the job's
stop flag; the job finishes its current step, removes what it had begun and returns.

A stage registers ``widget="napari_cryolearn.ui.stage_widget:<name>"`` (its name with ``_``
for ``.``); this module makes that factory on demand (:func:`__getattr__`).

Examples
--------
>>> from napari_cryolearn.ui.stage_widget import stage_for_factory
>>> stage_for_factory("prep_filter").name
'prep.filter'
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import napari.layers
import numpy as np
from magicgui.widgets import CheckBox, Container, FileEdit, Select, Widget, create_widget

from napari_cryolearn.engine.config import is_expert, plain_text
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobResult
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.registry import Port, Stage
from napari_cryolearn.stages import all_stages, get
from napari_cryolearn.ui.forms import field_widget, form_values, note
from napari_cryolearn.ui.handoff import handoff
from napari_cryolearn.ui.job_widget import JobWidget

#: Layer types offered for an input of each kind (other kinds are chosen as files).
_LAYER_TYPES = {"tomogram": napari.layers.Image, "labels": napari.layers.Labels, "points": napari.layers.Points,
               "micrographs": napari.layers.Image, "mesh": napari.layers.Surface}
#: Layer type an output of each kind opens as (other kinds: as the reader decides).
_OUTPUT_LAYER_TYPES = {"tomogram": "image", "labels": "labels", "distances": "image", "micrographs": "image",
                      "points": "points", "mesh": "surface"}
_FOLDER_KINDS = ("patch_store", "run")
#: Dimensions a layer offered for an input of each kind must have (a 2D image is no tomogram).
_LAYER_NDIM = {"tomogram": 3, "labels": 3, "points": 3}


class LayersAndFiles(Container):
    """The picker of a list input (``meshes: list[Path]``): layers of the port's type, chosen in
    a list, and files, chosen in a file dialog. ``value`` is the layers then the files (paths);
    setting it to a mix of layers and paths selects each where it belongs."""

    def __init__(self, *, name: str, label: str, choices, suffix: str, tooltip: str | None):
        self.layers = Select(choices=choices, value=[], name=f"{name}_layers", label="layers", tooltip=tooltip)
        self.files = FileEdit(mode="rm", value="", name=f"{name}_files", label="files",
                              filter=f"*{suffix}" if suffix else None, tooltip=tooltip)
        super().__init__(widgets=[self.layers, self.files], name=name, label=label)

    @property
    def value(self) -> list:
        files = [Path(p) for p in (self.files.value or ()) if str(p) not in ("", ".")]
        return [*self.layers.value, *files]

    @value.setter
    def value(self, items) -> None:
        items = list(items or [])
        self.layers.value = [i for i in items if isinstance(i, napari.layers.Layer)]
        self.files.value = [str(i) for i in items if not isinstance(i, napari.layers.Layer)]


class StageWidget(JobWidget):
    """The dock widget of a registered stage (see the module docstring).

    Attributes
    ----------
    stage:
        The :class:`~napari_cryolearn.engine.registry.Stage`.
    form:
        ``{field: widget}`` for every config field, in the config's order; an optional output
        is a check box (``also write``) named after its field. The widget shows the expert
        fields (:func:`~napari_cryolearn.engine.config.is_expert`) after the others, under a
        heading (``expert_heading``).
    config:
        The config of the last run (``None`` before the first).
    """

    def __init__(self, napari_viewer, stage: Stage | str):
        self.stage = get(stage) if isinstance(stage, str) else stage
        self.config_class = self.stage.config_class()
        self.fields = self.config_class.model_fields
        self._inputs = {p.field: p for p in self.stage.inputs}
        self._outputs = {p.field: p for p in self.stage.outputs}
        self._viewer = napari_viewer
        self.form: dict[str, Widget] = {name: self._widget(name, field) for name, field in self.fields.items()}
        self.config = None
        self.result: JobResult | None = None
        daily = [w for name, w in self.form.items() if not is_expert(self.fields[name])]
        expert = [w for name, w in self.form.items() if is_expert(self.fields[name])]
        if expert:  # the settings most runs leave alone: at the end, under a heading
            self.expert_heading = note("Expert settings (most runs leave these)", name="expert_heading")
            expert.insert(0, self.expert_heading)
        super().__init__(napari_viewer, [*daily, *expert], title=self.stage.title or self.stage.name,
                         run_text="Run")
        self._scratch: Path | None = None
        self._model_fields = [p.field for p in self.stage.inputs if p.kind == "model"]
        self._handed: Path | None = None
        if self._model_fields:
            self._handoff_signal, last = handoff.channel(self.stage.name)
            if getattr(handoff, last) is not None:
                self._take_model(getattr(handoff, last))
            self._handoff_signal.connect(self._take_model)

    def _take_model(self, path: Path) -> None:
        """A training finished: its model fills the model inputs the user left empty or as handed."""
        try:
            for name in self._model_fields:
                current = str(self.form[name].value or "")
                if current in ("", ".") or (self._handed is not None and Path(current) == self._handed):
                    self.form[name].value = str(path)
        except RuntimeError:  # the widget was closed (its Qt side is gone): stop listening
            self._handoff_signal.disconnect(self._take_model)
            return
        self._handed = Path(path)

    def _finished(self) -> None:
        super()._finished()
        # the job removes its scratch folder when it ends; one stopped before it began never ran
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _layer_choices(self, port: Port):
        """The viewer's layers a picker for ``port`` offers: its layer type, and 3D for a
        tomogram, labels or points (the job would refuse a 2D one)."""
        kind, ndim = _LAYER_TYPES[port.kind], _LAYER_NDIM.get(port.kind)

        def choices(widget=None):
            return [layer for layer in self._viewer.layers
                    if isinstance(layer, kind) and (ndim is None or layer.ndim == ndim)]

        return choices

    def _widget(self, name: str, field) -> Widget:
        tooltip = plain_text(field.description) or None
        port = self._inputs.get(name)
        if port is not None and port.kind in _LAYER_TYPES and _is_list(field):
            return LayersAndFiles(name=name, label=f"{name.replace('_', ' ')} ({port.kind})",
                                  choices=self._layer_choices(port), suffix=port.file_suffix, tooltip=tooltip)
        if port is not None and port.kind in _LAYER_TYPES:
            kind = _LAYER_TYPES[port.kind]
            return create_widget(annotation=kind | None if port.optional else kind, name=name,
                                 label=f"{name.replace('_', ' ')} ({port.kind})",
                                 options={"tooltip": tooltip, "choices": self._layer_choices(port)})
        port = self._outputs.get(name)
        if port is not None and port.optional:
            return CheckBox(value=False, name=name, text=f"also write {name.replace('_', ' ')}", tooltip=tooltip)
        if port is not None:
            mode = "d" if port.kind in _FOLDER_KINDS else "w"
            return FileEdit(mode=mode, value="", name=name, tooltip=tooltip,
                            filter=f"*{port.file_suffix}" if port.file_suffix else None,
                            label=f"save {name.replace('_', ' ')} as (empty: not saved)")
        widget = field_widget(name, field)
        port = self._inputs.get(name)
        if port is not None and port.kind in _FOLDER_KINDS and isinstance(widget, FileEdit):
            widget.mode = "d"
        return widget

    # -- building the job (GUI thread) -------------------------------------------------------------

    def make_job(self):
        plain = {n: w for n, w in self.form.items() if n not in self._outputs
                 and not (n in self._inputs and self._inputs[n].kind in _LAYER_TYPES)}
        values = form_values(plain, self.fields)
        scratch = Path(tempfile.mkdtemp(prefix="cryolearn-"))
        self._scratch = scratch
        try:
            to_write, reference = self._input_files(values, scratch)
            saved = self._output_files(values, scratch)
            config = self.config_class.from_dict(values)
        except Exception:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        self.config = config
        job_function = self.stage.job_function()
        outputs = self._outputs

        def job(stop):
            try:
                for (data, attrs, layer_type), path in to_write:
                    yield Progress(0, None, f"handing layer {attrs['name']!r} to the job", stage=self.stage.name)
                    _WRITERS[layer_type](str(path), data, attrs)
                result = yield from job_function(config, stop=stop)
                if result.stopped:
                    return result, [], []
                layers = _output_layers(result, outputs, reference=reference, scratch=scratch, stage=self.stage)
                return result, layers, sorted(str(p) for p in saved)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)

        return job

    def _input_files(self, values: dict, scratch: Path) -> tuple[list, Any]:
        """Put each chosen input layer into ``values`` as a file; (layers to write, reference layer).

        A list input takes layers and files together; a mesh (Surface layer) is handed as the
        container it was opened from (``metadata["source_path"]``), as its layer lacks the
        container's profiles."""
        to_write, reference = [], None
        for port in self.stage.inputs:
            if port.kind not in _LAYER_TYPES:
                continue
            chosen = self.form[port.field].value
            many = isinstance(self.form[port.field], LayersAndFiles)
            items = list(chosen) if many else ([] if chosen is None else [chosen])
            if not items:
                if port.optional:
                    continue
                raise InputError(f"choose a {port.kind} layer{' or file' if many else ''}", field=port.field)
            paths = []
            for item in items:
                if not isinstance(item, napari.layers.Layer):
                    paths.append(Path(item))
                    continue
                layer = item
                if reference is None and port.kind != "points":
                    reference = layer
                path = _mesh_source(layer, port.field) if port.kind == "mesh" else _source_file(layer)
                if path is None:
                    path = scratch / f"{port.field}_{_safe(layer.name)}{port.file_suffix}"
                    to_write.append((layer.as_layer_data_tuple(), path))
                paths.append(path)
            values[port.field] = paths if many else paths[0]
        if reference is None:  # points only: their scale is the reference
            reference = next((self.form[p.field].value for p in self.stage.inputs if p.kind in _LAYER_TYPES
                              and not isinstance(self.form[p.field], LayersAndFiles)
                              and self.form[p.field].value is not None), None)
        return to_write, reference

    def _output_files(self, values: dict, scratch: Path) -> set[Path]:
        """Put each output's file into ``values``; returns the files the user named (kept)."""
        saved: set[Path] = set()
        main = None
        for port in self.stage.outputs:
            widget = self.form[port.field]
            if isinstance(widget, CheckBox):
                if not widget.value:
                    continue
                base = main if main is not None and main.parent != scratch else None
                path = (base.with_name(f"{base.stem}_{port.field}{port.file_suffix}") if base is not None
                        else scratch / f"{port.field}{port.file_suffix}")
                if base is not None:
                    saved.add(path)
            else:
                text = str(widget.value).strip()
                path = Path(text) if text not in ("", ".") else scratch / f"{port.field}{port.file_suffix}"
                if text not in ("", "."):
                    saved.add(path)
            values[port.field] = path
            main = path if main is None else main
        return saved

    # -- results (GUI thread) -----------------------------------------------------------------------

    def on_result(self, payload) -> None:
        from napari_cryolearn.ui.layers import add_layer_data

        result, layers, kept = payload
        self.result = result
        if result.stopped:
            self.status.value = "stopped: nothing was kept"
            return
        add_layer_data(self.viewer, layers)
        self.status.value = f"done; saved {', '.join(kept)}" if kept else "done (in the viewer only: not saved)"


_WRITERS: dict[str, Callable] = {}


def _writers() -> None:
    from napari_cryolearn.ui.io_hooks import write_image, write_labels, write_points

    _WRITERS.update(image=write_image, labels=write_labels, points=write_points)


_writers()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "layer"


def _is_under(path: Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _is_list(field) -> bool:
    """Whether a config field holds a list (of paths)."""
    import typing

    annotation = field.annotation
    return typing.get_origin(annotation) in (list, tuple) or any(
        typing.get_origin(a) in (list, tuple) for a in typing.get_args(annotation))


def _mesh_source(layer, field: str) -> Path:
    """The mesh container a Surface layer was opened from; :class:`InputError` when it has none
    (a mesh kept in the viewer only) or the file is gone."""
    source = dict(layer.metadata).get("source_path")
    if not source:
        raise InputError(f"Surface layer {layer.name!r} was not opened from a mesh container (.h5): open the "
                         "container, or run Membrane meshes with a folder to save its meshes in", field=field)
    if not Path(source).is_file():
        raise InputError(f"the container of Surface layer {layer.name!r} is gone", path=source, field=field)
    return Path(source)


def _source_file(layer) -> Path | None:
    """The MRC file a layer's data is, unchanged: a read-only memory map of the file it was opened
    from (so the job may read the file instead of a copy); ``None`` otherwise."""
    data = layer.data
    source = dict(layer.metadata).get("source_path")
    filename = getattr(data, "filename", None)
    if not source or filename is None or getattr(data, "flags", None) is None or data.flags.writeable:
        return None
    try:
        same = Path(filename).resolve() == Path(source).resolve() and Path(source).is_file()
    except OSError:
        return None
    return Path(source) if same else None


def _output_layers(result: JobResult, outputs: dict[str, Port], *, reference, scratch: Path, stage: Stage) -> list[tuple[Any, dict, str]]:
    """Layer data of every output the job reported, at the reference layer's scale.

    Outputs in ``scratch`` are loaded into memory (the folder is removed after the job); saved
    ones stay memory-mapped from their file. Files the viewer cannot open (CSV, folders that are
    not patch stores) are left out. An output the stage reports without a port of its name (a
    job writing a folder of files, e.g. ``mesh_1``, ``mesh_2``, ... of ``pick.meshes``) opens as
    the reader opens its file: a mesh container (``.h5``) as a Surface.
    """
    from napari_cryolearn.ui.io_hooks import get_reader, read_layers

    layers = []
    short = stage.name.split(".")[-1]
    for role, path in result.outputs.items():
        path = Path(path)
        temporary = _is_under(path, scratch)
        if path.suffix.lower() == ".npy" and path.is_file():
            found = [_npy_layer_data(path)]
        elif get_reader(str(path)) is not None and path.exists():
            found = read_layers(str(path))
        else:
            continue
        port = outputs.get(role)
        for data, kwargs, layer_type in found:
            if temporary and isinstance(data, np.ndarray):
                data = np.array(data)
            if port is not None and port.kind in _OUTPUT_LAYER_TYPES:
                layer_type = _OUTPUT_LAYER_TYPES[port.kind]
            kwargs = dict(kwargs)
            meta = dict(kwargs.get("metadata") or {})
            if temporary:
                meta.pop("source_path", None)
                words = [reference.name if reference is not None else None, short,
                         None if role == "output" else role.replace("_", " ")]
                base = " ".join(w for w in words if w)
                name = str(kwargs.get("name", ""))
                kwargs["name"] = base if len(found) == 1 else name.replace(path.stem, base, 1)
            if reference is not None:
                if layer_type == "surface":  # (vertices, faces[, values]): vertices in voxels
                    ndim = data[0].shape[1]
                elif layer_type == "points":
                    ndim = data.shape[1]
                else:
                    ndim = data.ndim - (1 if "channel_axis" in kwargs else 0)
                kwargs["scale"] = tuple(reference.scale)[-ndim:]
                kwargs["translate"] = tuple(reference.translate)[-ndim:]
                kwargs["units"] = tuple(str(u) for u in reference.units)[-ndim:]
                meta["derived_from"] = reference.name
            if "channel_axis" in kwargs and isinstance(kwargs.get("name"), str):
                kwargs["name"] = [f"{kwargs['name']} {c}" for c in range(data.shape[kwargs["channel_axis"]])]
            kwargs["metadata"] = meta
            if layer_type == "labels" and not np.issubdtype(np.asarray(data[:0]).dtype, np.integer):
                data = np.asarray(data).astype(np.int32)
            layers.append((data, kwargs, layer_type))
    return layers


def _npy_layer_data(path: Path) -> tuple[Any, dict, str]:
    """A ``.npy`` of maps ((C,) Z, Y, X): one Image layer per channel."""
    data = np.load(path, mmap_mode="r")
    kwargs: dict[str, Any] = {"name": path.stem, "metadata": {"source_path": str(path)}}
    if data.ndim == 4:
        # one map shown (the others, hidden, are one click away): additive maps read as one pink image
        kwargs.update(channel_axis=0, colormap="twilight_shifted", visible=[c == 0 for c in range(data.shape[0])])
    return data, kwargs, "image"


def stage_for_factory(name: str) -> Stage:
    """The stage whose registered widget is ``stage_widget:<name>``."""
    target = f"{__name__}:{name}"
    for stage in all_stages():
        if stage.widget == target:
            return stage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r} (no stage registers {target!r})")


def __getattr__(name: str) -> type[StageWidget]:
    """``stage_widget.prep_filter`` → the widget class of the stage registered with that name
    (napari instantiates it with the viewer)."""
    if name.startswith("__"):
        raise AttributeError(name)
    stage = stage_for_factory(name)

    def __init__(self, napari_viewer):
        StageWidget.__init__(self, napari_viewer, stage)

    cls = type(name, (StageWidget,), {"__init__": __init__, "__module__": __name__,
                                      "__doc__": f"The dock widget of stage {stage.name!r}: {stage.summary}."})
    globals()[name] = cls
    return cls

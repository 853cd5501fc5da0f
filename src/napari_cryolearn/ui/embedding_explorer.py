"""Dock widget "Embedding explorer": the micrographs' embeddings as a 2D map whose selection shows
the micrographs and their power spectra, and exports them as a list.

The map comes from a trained encoder and a folder of micrographs (``ssl.embed``,
:func:`~napari_cryolearn.selfsup.embed_job.ssl_embed_job`, run in a worker thread: a table of
embeddings, a 2D map and k-means clusters, saved where the user says or kept only in memory) or
from a table ``ssl embed`` wrote before (``.csv`` or ``.parquet``). A model handed by
"Self-supervised training" fills the model (and, when empty, the micrographs: the run's data).

The map is the Points layer "embedding map": one point per micrograph at its (y, x) map place,
scaled to span ``DISPLAY_SIZE`` pixels (the table's own ``x``, ``y`` are in the features), its
features the table's ``file``, ``index`` and ``cluster``, its face colour its cluster's
(:data:`CLUSTER_COLORS`, a categorical palette). Selecting points (napari's select tool, or
``layer.selected_data``) shows, beside the map, the selected micrographs as the Image layer
"selected micrographs" (a stack, one slice per selected point, in the order of the rows; each
micrograph centre-cropped to a square, resized to ``DISPLAY_SIZE`` and normalised:
:func:`display_micrograph`) and their power spectra as "selected spectra"
(:func:`display_spectrum`); at most ``MAX_SHOWN`` are shown. They are read in a worker thread.

"Export" writes the selection, or every micrograph of a chosen cluster, as a text file of
paths, one per line, ``path#index`` for a slice of a stack (the convention of
``ssl intersect``), atomically.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.selfsup.tables import micrograph_lines, stack_files
from napari_cryolearn.ui.forms import field_widget, form_values, note
from napari_cryolearn.ui.handoff import handoff
from napari_cryolearn.ui.job_widget import JobWidget

MAP_LAYER = "embedding map"
IMAGES_LAYER = "selected micrographs"
SPECTRA_LAYER = "selected spectra"
#: Side, in pixels, of each micrograph and spectrum shown, and of the map.
DISPLAY_SIZE = 256
#: The most micrographs a selection shows (an export takes them all).
MAX_SHOWN = 64
#: One colour per cluster (RGBA), cycled past the tenth (the "tab10" palette).
CLUSTER_COLORS = np.array([
    [0.122, 0.467, 0.706, 1.0], [1.000, 0.498, 0.055, 1.0], [0.173, 0.627, 0.173, 1.0],
    [0.839, 0.153, 0.157, 1.0], [0.580, 0.404, 0.741, 1.0], [0.549, 0.337, 0.294, 1.0],
    [0.890, 0.467, 0.761, 1.0], [0.498, 0.498, 0.498, 1.0], [0.737, 0.741, 0.133, 1.0],
    [0.090, 0.745, 0.812, 1.0],
])
SOURCES = ("model and micrographs", "table")
#: The EmbedConfig fields the form shows (model, data and output have their own widgets).
FORM_FIELDS = ("map", "clusters", "device", "batch_size", "overwrite")
EXPERT_FIELDS = ("pixel_size", "seed")


def cluster_colors(clusters) -> np.ndarray:
    """(N, 4) RGBA of each cluster label, from :data:`CLUSTER_COLORS`.

    >>> cluster_colors([0, 1, 10]).tolist() == [CLUSTER_COLORS[0].tolist(), CLUSTER_COLORS[1].tolist(),
    ...                                         CLUSTER_COLORS[0].tolist()]
    True
    """
    labels = np.asarray(clusters, dtype=np.int64)
    return CLUSTER_COLORS[np.mod(labels, len(CLUSTER_COLORS))]


def map_coordinates(table, size: float = DISPLAY_SIZE) -> np.ndarray:
    """(N, 2) y, x of each row's map place, shifted to start at 0 and scaled (one factor for both
    axes) so that the longer side spans ``size``.

    >>> import pandas as pd
    >>> map_coordinates(pd.DataFrame({"x": [0.0, 2.0], "y": [1.0, 2.0]}), size=10).tolist()
    [[0.0, 0.0], [5.0, 10.0]]
    """
    yx = np.stack([np.asarray(table["y"], float), np.asarray(table["x"], float)], axis=1)
    if len(yx) == 0:
        return yx
    yx = yx - yx.min(axis=0)
    span = float(yx.max())
    return yx * (size / span) if span > 0 else yx


def display_micrograph(image, size: int = DISPLAY_SIZE) -> np.ndarray:
    """A micrograph as shown: centre-cropped to a square, resized to ``size`` and normalised
    (:func:`~napari_cryolearn.selfsup.images.prepare`)."""
    from napari_cryolearn.selfsup.images import prepare

    return prepare(image, size=size)


def display_spectrum(image, size: int = DISPLAY_SIZE) -> np.ndarray:
    """A micrograph's power spectrum as shown: :func:`~napari_cryolearn.selfsup.spectra.power_spectrum`
    over tiles of ``size`` (the whole image when it is smaller), resized to ``size``."""
    from napari_cryolearn.selfsup.images import prepare
    from napari_cryolearn.selfsup.spectra import power_spectrum

    return prepare(power_spectrum(image, size=min(size, *np.shape(image))), size=size)


class EmbeddingExplorer(JobWidget):
    """The embedding map and its selection (see the module docstring).

    Attributes
    ----------
    table:
        The embedding table shown (a pandas DataFrame, rows in the map layer's order), or None.
    map_layer:
        The Points layer "embedding map", or None.
    shown_rows:
        The rows whose micrographs the "selected micrographs" layer shows, in its slice order.
    result:
        The job's result of the last run.
    """

    def __init__(self, napari_viewer):
        from napari_cryolearn.selfsup.config import EmbedConfig

        self.fields = EmbedConfig.model_fields
        self._viewer = napari_viewer
        self.table = None
        self.source = ComboBox(choices=list(SOURCES), value=SOURCES[0], label="map from")
        self.model = FileEdit(mode="r", value="", label="model", filter="*.ckpt *.pth.tar",
                              tooltip=self.fields["model"].description)
        self.data = FileEdit(mode="d", value="", label="micrograph folder", tooltip=self.fields["data"].description)
        self.output = FileEdit(mode="w", value="", label="save table as (empty: not saved)",
                               filter="*.csv *.parquet", tooltip=self.fields["output"].description)
        self.table_file = FileEdit(mode="r", value="", label="table", filter="*.csv *.parquet",
                                   tooltip="an embedding table of ssl embed (.csv or .parquet)")
        self.form = {name: field_widget(name, self.fields[name]) for name in (*FORM_FIELDS, *EXPERT_FIELDS)}
        self.expert_note = note("Expert settings (most runs leave these)")
        self.selection_label = Label(value="select points on the map to see their micrographs")
        self.export_what = ComboBox(choices=self._export_choices, label="export")
        self.export_file = FileEdit(mode="w", value="", label="list file", filter="*.txt",
                                    tooltip="text file of micrograph paths, one per line (path#index for a slice "
                                            "of a stack)")
        self.export_overwrite = CheckBox(value=False, text="replace an existing file")
        self.export_button = PushButton(text="Export list")
        self.export_button.changed.connect(self._export_clicked)
        exports = Container(widgets=[self.export_what, self.export_file, self.export_overwrite, self.export_button])
        super().__init__(
            napari_viewer,
            [self.source, self.model, self.data, self.output, self.table_file,
             *(self.form[n] for n in FORM_FIELDS), self.expert_note,
             *(self.form[n] for n in EXPERT_FIELDS), self.selection_label, exports],
            title="Embedding explorer", run_text="Show map",
        )
        self.source.changed.connect(self._show_source)
        self._show_source()
        self.map_layer = None
        self.shown_rows: list[int] = []
        self.result = None
        self._files: list[Path] = []
        self._indices: list[int | None] = []
        self._generation = 0
        self._loader = None
        self._handed: Path | None = None
        if handoff.last_encoder is not None:
            self._take_model(handoff.last_encoder)
        handoff.trained_encoder.connect(self._take_model)
        # a selection still being read when the dock closes is dropped (the viewer may be gone)
        self.native.destroyed.connect(lambda *_: setattr(self, "_generation", self._generation + 1))

    def _show_source(self, *_):
        embed = self.source.value == SOURCES[0]
        for w in (self.model, self.data, self.output, self.expert_note, *self.form.values()):
            w.visible = embed
        self.table_file.visible = not embed

    def _take_model(self, path: Path) -> None:
        """A training finished: its model fills the model field if empty or as handed before, and
        its micrographs the data field if empty."""
        try:
            current = str(self.model.value or "")
            if current in ("", ".") or (self._handed is not None and Path(current) == self._handed):
                self.model.value = str(path)
                data = _run_data(Path(path))
                if data is not None and str(self.data.value or "") in ("", "."):
                    self.data.value = str(data)
        except RuntimeError:  # the widget was closed (its Qt side is gone): stop listening
            handoff.trained_encoder.disconnect(self._take_model)
            return
        self._handed = Path(path)

    # -- the map (job in a worker thread, layers in the GUI thread) --------------------------------

    def make_job(self):
        from napari_cryolearn.selfsup.tables import read_embedding_table

        if self.source.value == SOURCES[1]:
            path = _given(self.table_file.value)
            if path is None:
                raise InputError("choose an embedding table (.csv or .parquet)", field="table")

            def read(stop):
                yield Progress(0, 1, f"reading {path}", stage="ssl.embed")
                return {"table": read_embedding_table(path), "path": path}

            return read
        return self._embed_job(read_embedding_table)

    def _embed_job(self, read_embedding_table):
        from napari_cryolearn.selfsup.config import EmbedConfig
        from napari_cryolearn.selfsup.embed_job import ssl_embed_job

        values = form_values(self.form, self.fields)
        model, data, output = _given(self.model.value), _given(self.data.value), _given(self.output.value)
        if model is None:
            raise InputError("choose a model (model/model_best.ckpt of a training run)", field="model")
        if data is None:
            raise InputError("choose the folder of micrographs to embed", field="data")
        scratch = None
        if output is None:
            scratch = Path(tempfile.mkdtemp(prefix="ssl-embeddings-"))
            output = scratch / "embeddings.csv"
        try:
            config = EmbedConfig.from_dict({**values, "model": model, "data": data, "output": output})
        except Exception:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            raise

        def job(stop):
            try:
                result = yield from ssl_embed_job(config, stop)
                if result.stopped:
                    return None
                return {"table": read_embedding_table(config.output), "path": None if scratch else config.output,
                        "metrics": dict(result.metrics)}
            finally:
                if scratch is not None:  # the table lives in the viewer, as the user asked
                    shutil.rmtree(scratch, ignore_errors=True)

        return job

    def on_result(self, result) -> None:
        self.result = result
        if result is None:
            self.status.value = "stopped: no map"
            return
        self.show_table(result["table"], result.get("path"))
        metrics = result.get("metrics") or {}
        where = f" (table: {result['path']})" if result.get("path") else ""
        if metrics:
            self.status.value = (f"{metrics['micrographs']} micrographs, {metrics['clusters']} clusters, silhouette "
                                 f"{metrics['silhouette']:.2f}{where}")
        else:
            self.status.value = f"{len(self.table)} micrographs, {self.table['cluster'].nunique()} clusters{where}"

    def show_table(self, table, path: str | Path | None = None):
        """Show an embedding table as the map layer (replacing a previous map and its selection
        layers); returns the Points layer."""
        import pandas as pd

        table = table.reset_index(drop=True)
        self.table = table
        folder = Path(path).parent if path is not None else None
        stacks = stack_files(table)
        self._files = [_resolve(Path(str(f)), folder) for f in table["file"]]
        self._indices = [int(i) if (f in stacks or _is_stack_suffix(f)) else None
                         for f, i in zip(table["file"], table["index"])]
        for name in (MAP_LAYER, IMAGES_LAYER, SPECTRA_LAYER):
            if name in self._viewer.layers:
                self._viewer.layers.remove(name)
        self.shown_rows = []
        features = pd.DataFrame({"file": table["file"].astype(str), "index": table["index"].astype(int),
                                 "cluster": table["cluster"].astype(int), "x": table["x"], "y": table["y"]})
        layer = self._viewer.add_points(map_coordinates(table), features=features, name=MAP_LAYER,
                                        face_color=cluster_colors(table["cluster"]), border_width=0,
                                        size=DISPLAY_SIZE / 32, metadata={"table": str(path) if path else None})
        layer.mode = "select"
        layer.selected_data.events.items_changed.connect(self._selection_changed)
        self.map_layer = layer
        self.export_what.reset_choices()
        self.selection_label.value = "select points on the map to see their micrographs"
        return layer

    # -- the selection -----------------------------------------------------------------------------

    @property
    def selected_rows(self) -> list[int]:
        """The rows selected on the map, in order."""
        return sorted(int(i) for i in self.map_layer.selected_data) if self.map_layer is not None else []

    def _selection_changed(self, *_):
        from napari.qt.threading import create_worker

        rows = self.selected_rows
        self._generation += 1
        if not rows:
            self.selection_label.value = "nothing selected"
            return
        shown = rows[:MAX_SHOWN]
        refs = [(self._files[r], self._indices[r]) for r in shown]
        generation = self._generation
        self.selection_label.value = f"reading {len(shown)} micrographs…"
        worker = create_worker(_read_selection, refs, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda stacks: self._show_selection(generation, shown, len(rows), stacks))
        worker.errored.connect(lambda err: self._selection_failed(generation, err))
        self._loader = worker
        worker.start()

    def _selection_failed(self, generation: int, err: Exception) -> None:
        if generation == self._generation:
            self.selection_label.value = f"error: {err}"

    def _show_selection(self, generation: int, rows: list[int], n_selected: int, stacks) -> None:
        if generation != self._generation:  # a newer selection is on its way, or the dock closed
            return
        if self.map_layer is None or not any(layer.unique_id == self.map_layer.unique_id
                                             for layer in self._viewer.layers):  # the map was removed
            return
        images, spectra = stacks
        beside = DISPLAY_SIZE * 1.1
        for name, data, column in ((IMAGES_LAYER, images, 1), (SPECTRA_LAYER, spectra, 2)):
            meta = {"rows": list(rows), "files": micrograph_lines(self.table, rows)}
            if name in self._viewer.layers:
                layer = self._viewer.layers[name]
                layer.data = data
                layer.metadata = meta
            else:
                self._viewer.add_image(data, name=name, contrast_limits=(-3.0, 3.0), metadata=meta,
                                       translate=(0.0, 0.0, beside * column))
        self.shown_rows = list(rows)
        more = f" (the first {len(rows)} of {n_selected} shown)" if n_selected > len(rows) else ""
        clusters = sorted(set(self.table["cluster"].iloc[rows].astype(int).tolist()))
        self.selection_label.value = f"{n_selected} selected{more}, clusters {', '.join(map(str, clusters))}"

    # -- export ------------------------------------------------------------------------------------

    def _export_choices(self, widget=None):
        table = getattr(self, "table", None)
        clusters = [] if table is None else sorted(set(table["cluster"].astype(int).tolist()))
        return ["selection", *(f"cluster {c}" for c in clusters)]

    def export_rows(self) -> list[int]:
        """The rows "Export" writes: the selection, or the chosen cluster's."""
        if self.table is None:
            raise InputError("show a map first", field="export")
        what = str(self.export_what.value or "selection")
        if what == "selection":
            rows = self.selected_rows
            if not rows:
                raise InputError("nothing selected: select points on the map, or choose a cluster", field="export")
            return rows
        cluster = int(what.split()[-1])
        return np.flatnonzero(self.table["cluster"].to_numpy().astype(int) == cluster).tolist()

    def export(self, path: str | Path | None = None) -> Path:
        """Write the rows of :meth:`export_rows` as a list of micrographs to ``path`` (default: the
        list-file field), atomically; returns the path."""
        from napari_cryolearn.engine.atomic import atomic_path

        target = Path(path) if path is not None else _given(self.export_file.value)
        if target is None:
            raise InputError("choose the list file to write", field="list file")
        rows = self.export_rows()
        lines = micrograph_lines(self.table, rows)
        with atomic_path(target, overwrite=bool(self.export_overwrite.value)) as tmp:
            Path(tmp).write_text("".join(f"{line}\n" for line in lines))
        self.status.value = f"{len(lines)} micrographs written to {target}"
        return target

    def _export_clicked(self, *_):
        from napari.utils.notifications import show_error

        try:
            self.export()
        except InputError as err:  # OutputError and OutputExistsError too
            self.status.value = f"error: {err}"
            show_error(f"{self.title}: {err}")


def _read_selection(refs) -> tuple[np.ndarray, np.ndarray]:
    """(micrographs, spectra), each (N, DISPLAY_SIZE, DISPLAY_SIZE) float32, of ``(path, index)``
    refs (worker thread)."""
    from napari_cryolearn.selfsup.images import ImageRef, read_micrograph

    images, spectra = [], []
    for path, index in refs:
        image, _ = read_micrograph(ImageRef(path, index))
        images.append(display_micrograph(image))
        spectra.append(display_spectrum(image))
    return np.stack(images), np.stack(spectra)


def _given(value) -> Path | None:
    text = str(value or "").strip()
    return None if text in ("", ".") else Path(text)


def _is_stack_suffix(file) -> bool:
    from napari_cryolearn.selfsup.images import STACK_SUFFIXES

    return Path(str(file)).suffix.lower() in STACK_SUFFIXES


def _resolve(path: Path, folder: Path | None) -> Path:
    """A table's file: as written, or relative to the table's folder when only that exists."""
    if path.is_absolute() or path.exists() or folder is None:
        return path
    return folder / path if (folder / path).exists() else path


def _run_data(model: Path) -> Path | None:
    """The ``data`` of the run a checkpoint belongs to (its ``config.yaml``, one or two folders up)."""
    import yaml

    for folder in (model.parent, model.parent.parent):
        config = folder / "config.yaml"
        if config.is_file():
            try:
                data = (yaml.safe_load(config.read_text()) or {}).get("data")
            except (OSError, yaml.YAMLError, AttributeError):
                return None
            return Path(data) if data else None
    return None

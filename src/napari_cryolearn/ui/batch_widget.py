"""The *Batch* dock widget: a file-level stage over a folder, with a per-file table.

A thin form over :func:`~napari_cryolearn.batch.job.batch_job` (the job ``cryolearn batch``
runs): the stage, the input folder and its glob, one folder per other per-file input of the
stage (matched by file stem; empty: not paired), the output folder, the stage's own settings
(its form, rebuilt when the stage changes; the fields a batch sets per file are left out) or a
YAML, workers and *force*. The table lists every file as it goes (queued, running, done,
skipped, failed with its message, stopped); Stop lets the running file finish its step and
starts no other. With *open results*, the MRC outputs of the files done are opened as layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, LineEdit, SpinBox, Table
from pydantic_core import PydanticUndefined

from napari_cryolearn.batch.plan import (
    DEFAULT_PATTERNS,
    SHARED_KINDS,
    batch_stage_names,
    list_inputs,
    main_input,
    per_file_ports,
)
from napari_cryolearn.engine.config import is_expert
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.stages import get
from napari_cryolearn.ui.forms import field_widget, widget_value
from napari_cryolearn.ui.job_widget import JobWidget

COLUMNS = ("file", "status", "seconds", "error")


class BatchWidget(JobWidget):
    """Run a file-level stage on every file of a folder (see the module docstring)."""

    def __init__(self, napari_viewer):
        names = batch_stage_names()
        self.stage = ComboBox(choices=names, value="prep.scale" if "prep.scale" in names else names[0],
                              label="stage", tooltip="the file-level stage to run on every file")
        self.input = FileEdit(mode="d", label="input folder", tooltip="folder of the files to process")
        self.pattern = LineEdit(value="", label="files", tooltip="glob(s) of the input files, e.g. *.mrc "
                                "(empty: the usual suffixes of the stage's input)")
        self.pairs = Container(labels=True)
        self.output = FileEdit(mode="d", label="output folder", tooltip="folder for the outputs, named after "
                               "each input, and the run log batch_log.csv")
        self.settings = Container(labels=True)
        self.stage_config = FileEdit(mode="r", filter="*.yaml *.yml", label="stage YAML",
                                     tooltip="settings of the stage from a YAML file (the form's changes apply over it)")
        self.workers = SpinBox(value=1, min=1, max=64, label="workers", tooltip="files processed at once, each "
                               "in its own process")
        self.force = CheckBox(value=False, text="redo files that are up to date")
        self.open_results = CheckBox(value=True, text="open results as layers")
        self.table = Table(value=[], columns=list(COLUMNS))
        self.table.min_height = 160
        super().__init__(napari_viewer, [self.stage, self.input, self.pattern, self.pairs, self.output,
                                         self.settings, self.stage_config, self.workers, self.force,
                                         self.open_results, self.table], title="Batch", run_text="Run batch")
        self._fields: dict[str, Any] = {}
        self._rows: dict[str, int] = {}
        self.result = None
        self.stage.changed.connect(self._stage_changed)
        self._stage_changed()

    # --- the form of the chosen stage ---------------------------------------------------------
    def _stage_changed(self, *_: Any) -> None:
        stage = get(self.stage.value)
        main = main_input(stage)
        self.input.tooltip = f"folder of the {main.kind} files ({main.field}) to process"
        self.pairs.clear()
        for port in stage.inputs:
            if port.kind in SHARED_KINDS or port.field == main.field:
                continue
            self.pairs.append(FileEdit(mode="d", name=port.field, label=f"{port.field} folder",
                                       tooltip=f"folder of the {port.kind} files matched to each input by file "
                                       "stem" + (" (optional)" if port.optional else "")))
        per_file = per_file_ports(stage)
        self.settings.clear()
        self._fields = {}
        cls = stage.config_class()
        for name, field in cls.model_fields.items():
            if name in per_file or name == "overwrite" or is_expert(field):
                continue
            try:
                widget = field_widget(name, field)
            except TypeError:  # a nested section: from the YAML
                continue
            self.settings.append(widget)
            self._fields[name] = field

    def stage_settings(self) -> dict[str, Any]:
        """The stage's settings the form changes from their defaults."""
        values = {}
        for widget in self.settings:
            field = self._fields[widget.name]
            value = widget_value(widget, field)
            if value is PydanticUndefined:
                continue
            default = field.get_default(call_default_factory=True)
            if value == default or (isinstance(default, tuple) and list(default) == value):
                continue
            values[widget.name] = value
        return values

    def _folder(self, widget: FileEdit) -> Path | None:
        text = str(widget.value).strip()
        return None if text in ("", ".") else Path(text)

    def make_job(self):
        from napari_cryolearn.batch.job import BatchConfig, batch_job

        source, output = self._folder(self.input), self._folder(self.output)
        if source is None:
            raise InputError("choose the input folder", field="input")
        if output is None:
            raise InputError("choose the output folder", field="output")
        pairs = {w.name: p for w in self.pairs if (p := self._folder(w)) is not None}
        yaml = self._folder(self.stage_config)
        config = BatchConfig(stage=self.stage.value, input=source, output=output,
                             pattern=self.pattern.value.replace(",", " ").split() or None, pairs=pairs,
                             stage_config=yaml, settings=self.stage_settings(), workers=int(self.workers.value),
                             force=bool(self.force.value))
        stage = get(config.stage)
        patterns = config.pattern or DEFAULT_PATTERNS.get(main_input(stage).kind, ("*",))
        files = [p.name for p in list_inputs(source, patterns)]
        if not files:
            raise InputError(f"no files matching {' '.join(patterns)}", path=source, field="input")
        self._fill([[name, "queued", "", ""] for name in files])
        self.result = None
        return lambda stop: batch_job(config, stop)

    # --- the table ----------------------------------------------------------------------------
    def _fill(self, rows: list[list[Any]]) -> None:
        self.table.value = {"data": rows, "index": list(range(len(rows))), "columns": list(COLUMNS)}
        self._rows = {row[0]: i for i, row in enumerate(rows)}

    def row(self, name: str) -> dict[str, Any]:
        """The table's row for file ``name`` (for tests and scripts)."""
        data = self.table.data.to_list()[self._rows[name]]
        return {k: "" if v is None else v for k, v in zip(COLUMNS, data)}

    def on_progress(self, event) -> None:
        m = event.metrics
        name = m.get("file")
        if not name or name not in self._rows:
            return
        i = self._rows[name]
        seconds = m.get("seconds")
        values = [name, m.get("status", ""), "" if seconds is None else f"{seconds:.1f}", m.get("error", "")]
        for j, value in enumerate(values):
            self.table.data[i, j] = value

    def on_result(self, result) -> None:
        self.result = result
        if result is None:
            return
        m = result.metrics
        self.status.value = (f"{m['done']} done, {m['skipped']} up to date, {m['failed']} failed"
                             + (", stopped" if result.stopped else "") + f"; log: {result['log']}")
        if not self.open_results.value:
            return
        for row in result.rows:
            if row.status != "done":
                continue
            for path in filter(None, row.outputs.split(";")):
                if Path(path).suffix == ".mrc" and Path(path).is_file():
                    self.viewer.open(path, plugin="napari-cryolearn")

"""The base of the training dock widgets ("Self-supervised training", "Train picker", "Train
autoencoder"): a choice of data source, the stage config's form (daily fields, then expert ones),
the device, live plots of the losses and of the stage's own epoch metric, and a training job run
in a child process (training in napari's process would hold its event loop).

A subclass names its config class, job and plot, adds the widgets of its data sources, and
turns the form's values into the job's config (:meth:`TrainingWidget.build`), with the function
that writes data from layers into the run folder when it trains on layers; every check is made
there, in the GUI thread, before anything is written. Stop ends training after the current
batch and keeps ``model/last.ckpt``, which "continue training" resumes. The checkpoint a run
finished (the best, else the last) is handed on (:mod:`.handoff`) to the widget that uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Container, Label, Widget

from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.forms import field_widget, form_values, note
from napari_cryolearn.ui.job_widget import JobWidget
from napari_cryolearn.ui.metrics_plot import MetricsPlot, plot_epoch_metrics, plot_training_progress
from napari_cryolearn.ui.training_data_folder import device_name

#: Where a widget's run folder is proposed: ``~/cryolearn-runs/<name>``.
RUNS_HOME = Path.home() / "cryolearn-runs"


class TrainingWidget(JobWidget):
    """A training widget (see the module docstring).

    Parameters
    ----------
    viewer:
        The napari viewer.
    config_class:
        The stage's config (a :class:`~napari_cryolearn.engine.training.TrainerConfig`); the
        form's widgets, defaults, tooltips and validation come from its fields.
    job:
        ``"module:function"`` of the training job, run in a child process with the config.
    stage:
        The stage's name, for progress messages.
    title:
        The widget's title (notifications, progress).
    sources:
        ``{label: widgets}``: the data sources the user chooses between ("train on") and the
        widgets each shows; one source shows no choice.
    form_fields, expert_fields:
        Config fields shown (daily ones, then under "Expert settings"); ``expert_widgets`` go
        first under that heading (a network's form).
    run_folder:
        The name under ``~/cryolearn-runs`` proposed as the run folder.
    metric:
        ``(name or names, plot title, y range or None)`` of the stage's epoch metrics plotted
        beside the loss; ``extra_plots`` more such plots below it.
    handoff_signal, handoff_to:
        The :data:`~napari_cryolearn.ui.handoff.handoff` signal the finished checkpoint is emitted
        on, and the widget that receives it (for the status line).

    Attributes
    ----------
    result:
        The :class:`~napari_cryolearn.engine.training.TrainResult` of the last run (``None``
        before the first).
    config:
        The config of the last run.
    """

    def __init__(self, viewer, *, config_class, job: str, stage: str, title: str,
                 sources: dict[str, Sequence[Widget]], form_fields: Sequence[str], expert_fields: Sequence[str] = (),
                 expert_widgets: Sequence[Widget] = (), run_folder: str,
                 metric: tuple[str | Sequence[str], str, tuple[float, float] | None],
                 extra_plots: Sequence[tuple[str | Sequence[str], str, tuple[float, float] | None]] = (),
                 handoff_signal: str | None = None, handoff_to: str | None = None) -> None:
        self.fields = config_class.model_fields
        self.config_class = config_class
        self.job_path, self.stage = job, stage
        self._viewer = viewer
        self._sources = {label: list(widgets) for label, widgets in sources.items()}
        labels = list(self._sources)
        self.source = ComboBox(choices=labels, value=labels[0], label="train on", visible=len(labels) > 1)
        self.form = {name: field_widget(name, self.fields[name]) for name in (*form_fields, *expert_fields)}
        self.form["log_dir"].mode = "d"
        self.form["log_dir"].value = str(RUNS_HOME / run_folder)
        self.metric, metric_title, y_range = metric
        self.loss_plot = MetricsPlot(title="loss")
        self.metric_plot = MetricsPlot(y_range=y_range, title=metric_title)
        self.extra_plots = [(MetricsPlot(y_range=r, title=t), names) for names, t, r in extra_plots]
        self.device_label = Label(value="device: chosen when training starts")
        self._handoff = (handoff_signal, handoff_to)
        plot_box = Container(labels=False)
        for plot in (self.loss_plot, self.metric_plot, *(p for p, _ in self.extra_plots)):
            plot_box.native.layout().addWidget(plot)
        source_widgets = [w for widgets in self._sources.values() for w in widgets]
        expert = [*expert_widgets, *(self.form[n] for n in expert_fields)]
        heading = [note("Expert settings (most runs leave these)")] if expert else []
        super().__init__(viewer, [self.source, *source_widgets, *(self.form[n] for n in form_fields), *heading,
                                  *expert, self.device_label, plot_box], title=title, run_text="Train")
        self.source.changed.connect(self._show_source)
        self._show_source()
        self.result = None
        self.config = None

    def _show_source(self, *_) -> None:
        for label, widgets in self._sources.items():
            for w in widgets:
                w.visible = label == self.source.value
        self.source_changed(self.source.value)

    def source_changed(self, source: str) -> None:
        """Called when the data source changes (after its widgets are shown); subclasses may hide
        fields that do not apply to it."""

    # -- building the job (GUI thread) -------------------------------------------------------------

    def values(self) -> dict[str, Any]:
        """The form's values as config fields; the plot shows every batch's loss."""
        return {**form_values(self.form, self.fields), "progress_every_n_batches": 1}

    def build(self, values: dict[str, Any]) -> tuple[Any, Callable[[], Any] | None]:
        """``(config, write)`` of a run from the form's ``values`` and the chosen source:
        ``write`` (or ``None``) writes the data taken from layers into the run folder, called
        in the worker before training. Raise :class:`~napari_cryolearn.engine.errors.InputError`
        on bad input."""
        raise NotImplementedError

    def make_job(self):
        from napari_cryolearn.engine.child import run_in_child

        config, write = self.build(self.values())
        self.config = config
        for plot in (self.loss_plot, self.metric_plot, *(p for p, _ in self.extra_plots)):
            plot.clear()
        self.device_label.value = f"device: {device_name(config.device)}"
        stage, job_path = self.stage, self.job_path

        def job(stop):
            if write is not None:
                yield Progress(0, None, f"writing the training data to {config.data}", stage=stage)
                write()
            return (yield from run_in_child(job_path, config, stop=stop))

        return job

    # -- progress and results (GUI thread) ---------------------------------------------------------

    def on_progress(self, event: Progress) -> None:
        metrics = event.metrics or {}
        if "device" in metrics:
            self.device_label.value = f"device: {metrics['device']}"
        plot_training_progress(metrics, self.loss_plot, self.metric_plot, self.metric)
        for plot, names in self.extra_plots:
            plot_epoch_metrics(metrics, plot, names)

    def on_result(self, result) -> None:
        self.result = result
        if result is None:
            return
        best = result.best_checkpoint or result.last_checkpoint
        word = "stopped" if result.stopped else "done"
        if best is None:
            self.status.value = f"{word} before the first epoch: no checkpoint was written"
            return
        signal, receiver = self._handoff
        if signal is not None:
            from napari_cryolearn.ui.handoff import handoff

            getattr(handoff, signal).emit(Path(best))
        passed = f" (handed to {receiver})" if receiver else ""
        self.status.value = f"{word} after {result.epochs} epochs; model: {best}{passed}"

"""Dock widget "Annotate & train": the annotate → train → correct loop on an Image layer.

A thin Qt layer over :mod:`napari_cryolearn.annotate`: "New project" makes a project folder for
the chosen Image layer (its MRC file, or the layer's data written into the folder) and creates
the annotation Labels layer, or adopts the chosen Labels layer as the first annotations;
"Open project" reopens one with its layers, classes and model. The classes are an editable,
comma-separated list (annotation value k is the k-th class, 0 is "not annotated"), one of them
the background. Train saves the annotations and runs the headless round,
:func:`~napari_cryolearn.annotate.round_job.round_job`, in a child process supervised by a
worker thread (training in napari's process, and even torch's first import in a worker thread,
hold its event loop: ``benchmarks/bench_annotate_gui.py``; so did a full garbage collection of
napari's large heap, hence ``gc.freeze()`` of the objects alive at Train), the loss plotted live;
Stop keeps the weights. After training, and on Predict, the sliding window runs on the slab in view first
(shown within seconds), then on the whole tomogram, into the prediction Labels layer
(background 0, another class its annotation value) and, when asked, one probability Image layer
per class; the round's folder gets the prediction and its metrics.
"Accept prediction in view" copies the prediction of the slices in view (of one class, or all)
into the voxels not yet annotated, for the brush to correct.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Optional

import napari.layers
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, PushButton, SpinBox, create_widget

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.ui.job_widget import JobWidget
from napari_cryolearn.ui.layers import units_of, volume_of
from napari_cryolearn.ui.metrics_plot import MetricsPlot, plot_training_progress
from napari_cryolearn.ui.worker import start_job

#: The jobs, run in a child process: training, and even torch's first import in a worker thread,
#: hold napari's event loop (``benchmarks/bench_annotate_gui.py``).
ROUND_JOB = "napari_cryolearn.annotate.round_job:round_job"
PREDICT_JOB = "napari_cryolearn.annotate.round_job:predict_round_job"
START_CHOICES = ("previous round", "scratch", "checkpoint")


def label_colormap(colors: dict[int, str]):
    """A Labels colormap: 0 transparent, value k the colour of class k."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", **colors})


class AnnotateWidget(JobWidget):
    """The "Annotate & train" dock widget (see the module docstring).

    Attributes
    ----------
    project:
        The open :class:`~napari_cryolearn.annotate.project.Project` (``None`` before one).
    annotation_layer, prediction_layer:
        The Labels layers of the annotations and of the last prediction.
    predicting:
        The running prediction (a :class:`~napari_cryolearn.ui.worker.RunningJob`) or ``None``.
    """

    def __init__(self, napari_viewer):
        from napari_cryolearn.annotate.round_job import AnnotateRoundConfig

        fields = AnnotateRoundConfig.model_fields
        self.image = create_widget(annotation=napari.layers.Image, label="tomogram")
        self.adopt = create_widget(annotation=Optional[napari.layers.Labels], label="adopt labels (optional)",
                                   options={"tooltip": "a Labels layer to start the annotations from (0: not annotated)"})
        self.project_dir = FileEdit(mode="d", label="project folder", value=str(Path.home() / "cryolearn-annotate"))
        self.new_button = PushButton(text="New project")
        self.open_button = PushButton(text="Open project")
        self.classes = LineEdit(value="background, membrane", label="classes (value 1, 2, …)",
                                tooltip="comma-separated class names; annotation value k is the k-th, 0 is not annotated")
        self.background = ComboBox(choices=["background", "membrane"], value="background", label="background class")
        self.apply_classes = PushButton(text="Apply classes")
        self.start = ComboBox(choices=list(START_CHOICES), value="previous round", label="start from",
                              tooltip="previous round: warm start (the first round: the checkpoint below if any, else scratch)")
        self.checkpoint = FileEdit(mode="r", filter="*.ckpt *.pth *.pt", label="pretrained checkpoint",
                                   tooltip=fields["pretrained_model"].description, value="")
        self.epochs = SpinBox(value=fields["epochs"].default, min=1, max=10000, label="epochs",
                              tooltip=fields["epochs"].description)
        self.device = ComboBox(choices=["auto", "cpu", "cuda", "mps"], value="auto", label="device")
        self.probabilities = CheckBox(value=False, text="probability layers")
        self.predict_button = PushButton(text="Predict (view, then all)")
        self.accept_class = ComboBox(choices=["all classes"], value="all classes", label="accept")
        self.accept_depth = SpinBox(value=0, min=0, max=1000, label="± slices", tooltip="slices either side of the one in view")
        self.accept_button = PushButton(text="Accept prediction in view")
        self.loss_plot = MetricsPlot(title="loss")
        self.round_label = Label(value="no project")
        plots = Container(labels=False)
        plots.native.layout().addWidget(self.loss_plot)
        project_buttons = Container(widgets=[self.new_button, self.open_button], layout="horizontal", labels=False)
        super().__init__(napari_viewer, [
            self.image, self.adopt, self.project_dir, project_buttons, self.classes, self.background,
            self.apply_classes, self.start, self.checkpoint, self.epochs, self.device, self.probabilities,
            self.predict_button, self.accept_class, self.accept_depth, self.accept_button, self.round_label, plots,
        ], title="Annotate & train", run_text="Train")
        self.project = None
        self.annotation_layer = None
        self.prediction_layer = None
        self.predicting = None
        self.result = None
        self._bound = None  # the image layer the running job works on
        self.new_button.changed.connect(self.new_project)
        self.open_button.changed.connect(lambda *_: self.open_project())
        self.apply_classes.changed.connect(self.set_classes)
        self.classes.changed.connect(self._class_choices)
        self.predict_button.changed.connect(lambda *_: self.predict())
        self.accept_button.changed.connect(self.accept_in_view)
        napari_viewer.layers.events.removed.connect(self._layer_removed)

    # -- messages ------------------------------------------------------------------------------------

    def _refuse(self, err: Exception) -> None:
        from napari.utils.notifications import show_error

        self.status.value = f"error: {err}"
        show_error(f"{self.title}: {err}")

    def _names(self) -> list[str]:
        from napari_cryolearn.annotate.project import split_names

        return split_names(self.classes.value)

    def _class_choices(self, *_) -> None:
        names = self._names() or ["background"]
        keep = self.background.value if self.background.value in names else names[0]
        self.background.choices = names
        self.background.value = keep
        self.accept_class.choices = ["all classes", *names]

    # -- project ---------------------------------------------------------------------------------------

    def new_project(self, *_) -> None:
        """Make a project for the chosen Image layer (refusals go to the status line)."""
        try:
            self._new_project()
        except (InputError, ValueError, OSError) as err:
            self._refuse(err)

    def _new_project(self) -> None:
        from napari_cryolearn.annotate.project import create_project
        from napari_cryolearn.io.mrc import write_mrc

        layer = self.image.value
        data = volume_of(layer, "tomogram layer")
        path = Path(str(self.project_dir.value))
        names = self._names()
        start = None
        if self.adopt.value is not None:
            start = volume_of(self.adopt.value, "labels layer")
            if start.shape != data.shape:
                raise InputError(f"labels of shape {start.shape}, but the tomogram is {data.shape}",
                                 path=self.adopt.value.name, field="annotations")
        source = getattr(getattr(layer, "source", None), "path", None)
        if source is None or Path(str(source)).suffix.lower() not in (".mrc", ".rec", ".map"):
            source = path / "tomogram.mrc"
            path.mkdir(parents=True, exist_ok=True)
            write_mrc(source, np.asarray(data, np.float32), voxel_size=tuple(float(s) for s in layer.scale[-3:]))
        self.project = create_project(path, source, names, background=self.background.value,
                                      annotations=None if start is None else np.asarray(start, np.uint8))
        self._show_project(image=layer, adopt=self.adopt.value)
        self.status.value = f"project {path}: paint each class (value k = class k), then Train"

    def open_project(self, path=None) -> None:
        """Open a project folder into the viewer: tomogram, annotations, last prediction, classes, model."""
        from napari_cryolearn.annotate.project import open_project

        try:
            path = Path(str(path or self.project_dir.value))
            project = open_project(path)
            volume = project.read_tomogram()
            project.read_annotations()
        except (InputError, ValueError, OSError) as err:
            self._refuse(err)
            return
        self.project_dir.value = str(path)
        self.project = project
        scale = tuple(volume.voxel_size)
        image = self.viewer.add_image(volume.data, name=path.name, scale=scale, units=units_of(scale),
                                      metadata={"voxel_size": scale, "project": str(path)})
        self._show_project(image=image)
        if project.latest_prediction() is not None:
            from napari_cryolearn.io.mrc import read_mrc

            self._show_prediction(np.asarray(read_mrc(project.latest_prediction(), mmap=False).data))
        self.status.value = f"opened {path}"

    def _show_project(self, image, adopt=None) -> None:
        """The project's classes in the form and its annotations as the annotation layer (``adopt``,
        a Labels layer of the tomogram's shape, or a new one)."""
        project = self.project
        self.classes.value = ", ".join(project.class_names)
        self._class_choices()
        self.background.value = project.meta.background
        self.reset_choices()
        self.image.value = image
        annotations = project.read_annotations()
        name = f"{image.name} annotations"
        layer = adopt
        if layer is None or layer.data.shape != annotations.shape:
            layer = self.viewer.add_labels(annotations, name=name, scale=image.scale, opacity=0.7)
        else:
            layer.data = annotations
        self.annotation_layer = layer
        self._style(layer)
        self._prediction_layer(image)
        self._round_text()

    def _style(self, layer) -> None:
        layer.colormap = label_colormap(self.project.colors)
        layer.metadata = {**dict(layer.metadata), "label_names": self.project.label_names(),
                          "project": str(self.project.path)}

    def _round_text(self) -> None:
        rounds = self.project.rounds() if self.project is not None else []
        self.round_label.value = (f"{len(rounds)} round(s); model: {rounds[-1].name}" if rounds
                                  else "no round yet: the first starts from scratch or the checkpoint")

    def set_classes(self, *_) -> None:
        """Write the edited class list (and background) into the project and the layers."""
        if self.project is None:
            self._refuse(InputError("make or open a project first"))
            return
        try:
            self.project.save_classes(self._names(), self.background.value)
            if self.annotation_layer is not None:
                self.project.check_annotations(np.asarray(self.annotation_layer.data), self.annotation_layer.name)
        except (InputError, ValueError) as err:
            self._refuse(err)
            return
        for layer in (self.annotation_layer, self.prediction_layer):
            if layer is not None:
                self._style(layer)
        self.status.value = f"classes: {', '.join(self.project.class_names)} (background {self.project.meta.background})"

    # -- train (a round) -------------------------------------------------------------------------------

    def round_config(self):
        from napari_cryolearn.annotate.round_job import AnnotateRoundConfig

        checkpoint = str(self.checkpoint.value or "").strip()
        checkpoint = Path(checkpoint) if checkpoint not in ("", ".") else None
        if self.start.value == "checkpoint" and checkpoint is None:
            raise InputError("choose the pretrained checkpoint to start from", field="pretrained_model")
        return AnnotateRoundConfig(
            project=self.project.path, epochs=int(self.epochs.value), device=self.device.value,
            pretrained_model=None if self.start.value == "scratch" else checkpoint,
            from_scratch=self.start.value != "previous round", probabilities=bool(self.probabilities.value),
            progress_every_n_batches=1)

    def _checked_layers(self) -> tuple[np.ndarray, np.ndarray]:
        """The image and annotations to work on, checked; InputError says what is wrong."""
        if self.project is None:
            raise InputError("make or open a project first (New project / Open project)")
        image = volume_of(self.image.value, "tomogram layer")
        if self.annotation_layer is None or self.annotation_layer not in self.viewer.layers:
            raise InputError("the annotation layer is gone: open the project again")
        annotations = np.asarray(self.annotation_layer.data)
        if tuple(image.shape) != tuple(self.project.meta.shape):
            raise InputError(f"the tomogram layer has shape {image.shape}, the project {tuple(self.project.meta.shape)}",
                             path=self.image.value.name)
        if annotations.shape != image.shape:
            raise InputError(f"the annotation layer has shape {annotations.shape}, the tomogram {image.shape}",
                             path=self.annotation_layer.name)
        return image, annotations

    def make_job(self):
        from napari_cryolearn.annotate.round_job import check_round_annotations
        from napari_cryolearn.engine.child import run_in_child

        _, annotations = self._checked_layers()
        check_round_annotations(self.project, annotations, self.annotation_layer.name)
        self.project.save_classes(self._names(), self.background.value)
        self.project.save_annotations(annotations)
        config, z = self.round_config(), self._z_in_view()
        self.loss_plot.clear()
        self._bound = self.image.value
        # napari's heap is large: one full garbage collection during a round held the GUI ~200 ms
        # (bench_annotate_gui.py); what lives now is moved out of the collector's sight (cheap)
        gc.freeze()
        return lambda stop: run_in_child(ROUND_JOB, config, stop=stop, slab_at=z)

    def on_progress(self, event: Progress) -> None:
        metrics = event.metrics or {}
        if "prediction" in metrics:
            self._show_prediction(*metrics["prediction"])
        else:
            plot_training_progress(metrics, self.loss_plot)

    def on_result(self, result) -> None:
        self.result = result
        self._bound = None
        if result is None:
            return
        self._round_text()
        word = "stopped" if result.stopped else "done"
        self.status.value = (f"{word} after {result.metrics.get('epochs', 0)} epochs; model: {result.get('model')}"
                             + ("" if result.get("prediction") else " (Predict to see it)"))

    def stop(self) -> None:
        """Stop the round (training keeps its weights) and a running prediction."""
        super().stop()
        if self.predicting is not None and self.predicting.is_running:
            self.predicting.stop()
            self.status.value = "stopping…"

    def _layer_removed(self, event) -> None:
        gone = event.value
        if gone is self._bound or gone is self.annotation_layer:
            for job in (self.running, self.predicting):
                if job is not None and job.is_running:
                    job.stop()
                    self.status.value = f"layer {gone.name!r} was removed: stopping (the weights are kept)"
        if gone is self.annotation_layer:
            self.annotation_layer = None
        if gone is self.prediction_layer:
            self.prediction_layer = None

    # -- predict -----------------------------------------------------------------------------------------

    def _z_in_view(self) -> int:
        layer = self.image.value
        if layer is None:
            return 0
        z = layer.world_to_data(self.viewer.dims.point)[-3]
        return int(np.clip(round(float(z)), 0, layer.data.shape[-3] - 1))

    def predict(self):
        """Predict with the project's last model (slab in view, then all); the running job or ``None``."""
        try:
            self._checked_layers()
            model = self.project.latest_model()
            if model is None:
                raise InputError("no trained round yet: press Train first")
            config = self.round_config()
        except (InputError, ValueError) as err:
            self._refuse(err)
            return None
        if self.predicting is not None and self.predicting.is_running:
            return self.predicting
        from napari_cryolearn.engine.child import run_in_child

        z, round_dir = self._z_in_view(), model.parent.parent
        self._bound = self.image.value
        self.predict_button.enabled = False
        self.stop_button.enabled = True

        def finished():
            self.predict_button.enabled = True
            self.stop_button.enabled = self.running is not None and self.running.is_running
            self._bound = None

        self.predicting = start_job(lambda stop: run_in_child(PREDICT_JOB, config, round_dir, stop=stop, slab_at=z),
                                    title="Annotate & train: predict", on_progress=self._progress,
                                    on_result=lambda r: setattr(self.status, "value", f"prediction saved in {r}")
                                    if r is not None else None,
                                    on_error=self._error, on_finished=finished)
        return self.predicting

    def _prediction_layer(self, image):
        """The prediction Labels layer (made empty with the project, so that a prediction arriving
        during a round only fills it)."""
        layer = self.prediction_layer
        if layer is None or layer not in self.viewer.layers or layer.data.shape != tuple(self.project.meta.shape):
            layer = self.viewer.add_labels(np.zeros(self.project.meta.shape, np.uint8), name=f"{image.name} prediction",
                                           scale=image.scale, opacity=0.5)
            self.prediction_layer = layer
            self._style(layer)
        return layer

    def _show_prediction(self, values: np.ndarray, probabilities=None, z0: int = 0) -> None:
        """Put predicted values (a slab from ``z0``, or all) into the prediction layer."""
        image = self.image.value
        if image is None or image not in self.viewer.layers:
            return
        layer = self._prediction_layer(image)
        layer.data[z0:z0 + values.shape[0]] = values
        layer.refresh()
        if probabilities is not None:
            for name, channel in zip(self.project.channel_names(), probabilities):
                title = f"{image.name} p({name})"
                if title in self.viewer.layers:
                    self.viewer.layers[title].data = channel
                else:
                    self.viewer.add_image(channel, name=title, scale=image.scale, colormap="magma",
                                          contrast_limits=(0, 1), visible=False, blending="additive")

    # -- correct --------------------------------------------------------------------------------------

    def accept_in_view(self, *_) -> int:
        """Copy the prediction of the slices in view (± the spin box) into the unannotated voxels
        (of the chosen class, or all); the number of voxels changed."""
        from napari_cryolearn.annotate.project import accept_prediction

        if self.prediction_layer is None or self.annotation_layer is None or self.project is None:
            self._refuse(InputError("no prediction to accept yet: Train or Predict first"))
            return 0
        z, d = self._z_in_view(), int(self.accept_depth.value)
        region = (slice(max(z - d, 0), z + d + 1),)
        value = None
        if self.accept_class.value != "all classes":
            value = self.project.class_names.index(self.accept_class.value) + 1
        changed = accept_prediction(self.annotation_layer.data, self.prediction_layer.data,
                                    self.project.background_value, region=region, value=value)
        self.annotation_layer.refresh()
        self.status.value = f"accepted {changed} voxels of slices {region[0].start}-{region[0].stop - 1}: correct them with the brush"
        return changed

"""The "Annotate & train" widget in a real viewer: a round from painted strokes, the GUI's tick gap
while it trains, the project reopened in a new viewer and continued headless, and refusals."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_cryolearn.annotate.project import open_project
from napari_cryolearn.annotate.sparse import simulated_annotations

PLUGIN = "napari-cryolearn"


@pytest.fixture
def viewer(sample_viewer):
    return sample_viewer((32, 64, 64))


def _widget(viewer, tmp_path, epochs=2):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Annotate & train")
    widget.reset_choices()
    widget.image.value = viewer.layers["synthetic tomogram"]
    widget.project_dir.value = str(tmp_path / "project")
    widget.classes.value = "background, membrane"
    widget.epochs.value = epochs
    widget.device.value = "cpu"
    return widget


def _paint(viewer, widget, fraction=0.01):
    truth = np.where(viewer.layers["synthetic labels"].data == 1, 2, 1).astype(np.uint8)
    widget.annotation_layer.data = simulated_annotations(truth, fraction=fraction)
    return truth


def _ticks():
    """A 10 ms QTimer in the GUI thread; ``gaps()`` gives the gaps between its ticks (ms)."""
    from qtpy.QtCore import QTimer

    stamps: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: stamps.append(time.perf_counter()))
    timer.start()
    return timer, lambda: np.diff(stamps) * 1000.0


def test_a_round_in_the_viewer_reopens_and_continues_headless(viewer, qtbot, tmp_path, make_napari_viewer):
    widget = _widget(viewer, tmp_path)
    widget.new_project()
    assert widget.project is not None, widget.status.value
    layer = widget.annotation_layer
    assert layer.name == "synthetic tomogram annotations" and layer.data.shape == (32, 64, 64) and not layer.data.any()
    assert layer.metadata["label_names"] == {1: "background", 2: "membrane"}
    _paint(viewer, widget)
    timer, gaps = _ticks()
    running = widget.run()
    assert running is not None, widget.status.value
    t0 = time.perf_counter()
    try:
        qtbot.waitUntil(lambda: running.done, timeout=300000)
    finally:
        print("round in the widget", time.perf_counter() - t0, [e.message for e in running.progress_events[-3:]])
    timer.stop()
    assert running.error is None, running.error
    largest = gaps().max()
    print(f"largest GUI tick gap during the round: {largest:.0f} ms")
    assert largest < 1000  # loose (a shared CI machine); benchmarks/bench_annotate_gui.py: < 200 ms
    assert widget.result.metrics["epochs"] == 2 and not widget.result.stopped
    assert [x for x, _ in widget.loss_plot.series["train_loss"]] == [1, 2]
    prediction = viewer.layers["synthetic tomogram prediction"]
    assert set(np.unique(prediction.data)) <= {0, 2} and tuple(prediction.scale) == (10.0, 10.0, 10.0)
    round_dir = tmp_path / "project" / "rounds" / "round_001"
    assert (round_dir / "prediction.mrc").is_file() and (round_dir / "model" / "last.ckpt").is_file()
    # accept the prediction of the slice in view into what is not annotated
    before = widget.annotation_layer.data.copy()
    viewer.dims.set_point(0, 150.0)  # z = 15 (10 Å voxels)
    changed = widget.accept_in_view()
    after = widget.annotation_layer.data
    assert changed > 0 and np.array_equal(after[:15], before[:15]) and np.array_equal(after[16:], before[16:])
    assert np.array_equal(after[before > 0], before[before > 0])

    # a new viewer: the same layers, classes and model
    other = make_napari_viewer()
    _, again = other.window.add_plugin_dock_widget(PLUGIN, "Annotate & train")
    again.open_project(tmp_path / "project")
    assert again.project is not None, again.status.value
    assert [type(x).__name__ for x in other.layers] == ["Image", "Labels", "Labels"]
    assert again.classes.value == "background, membrane" and again.background.value == "background"
    assert np.array_equal(again.annotation_layer.data, open_project(tmp_path / "project").read_annotations())
    assert np.array_equal(again.prediction_layer.data, prediction.data)
    assert again.project.latest_model() == round_dir / "model" / "last.ckpt"
    assert tuple(other.layers[0].scale) == (10.0, 10.0, 10.0)
    again.prediction_layer.data[:] = 0
    predicting = again.predict()  # the reopened model predicts again: the slab in view, then all
    assert predicting is not None, again.status.value
    qtbot.waitUntil(lambda: predicting.done, timeout=120000)
    assert predicting.error is None, predicting.error
    assert np.array_equal(again.prediction_layer.data, prediction.data)
    assert sum("prediction" in e.metrics for e in predicting.progress_events) == 2

    # the headless round continues the project the GUI made
    from napari_cryolearn.annotate.round_job import round_job
    from napari_cryolearn.engine.jobs import run_job

    from tests.annotate.conftest import tiny_round

    result = run_job(round_job(tiny_round(tmp_path / "project", epochs=1)))
    assert result["round"].name == "round_002"
    assert open_project(tmp_path / "project").latest_model() == result["model"]


def test_bad_input_is_said_in_the_widget_and_starts_nothing(viewer, tmp_path):
    widget = _widget(viewer, tmp_path)
    assert widget.run() is None and "make or open a project first" in widget.status.value
    widget.classes.value = "membrane"
    widget.new_project()
    assert widget.project is None and "at least two classes" in widget.status.value
    widget.classes.value = "background, membrane"
    viewer.add_labels(np.zeros((8, 8, 8), np.uint8), name="small")
    widget.reset_choices()
    widget.adopt.value = viewer.layers["small"]
    widget.new_project()
    assert widget.project is None and "labels of shape (8, 8, 8)" in widget.status.value
    widget.adopt.value = None
    widget.new_project()
    assert widget.run() is None and "nothing is annotated" in widget.status.value
    widget.annotation_layer.data[3, 10:20, 10:20] = 2
    assert widget.run() is None and "only 'membrane' is annotated" in widget.status.value
    assert widget.predict() is None and "no trained round yet" in widget.status.value
    widget.annotation_layer.data = np.zeros((32, 64, 60), np.uint8)
    assert widget.run() is None and "annotation layer has shape (32, 64, 60)" in widget.status.value
    assert not (tmp_path / "project" / "rounds").exists()


def test_removing_the_image_layer_stops_training_cleanly(viewer, qtbot, tmp_path):
    widget = _widget(viewer, tmp_path, epochs=1000)
    widget.new_project()
    _paint(viewer, widget)
    running = widget.run()
    assert running is not None, widget.status.value
    qtbot.waitUntil(lambda: any("epoch" in e.metrics for e in running.progress_events), timeout=120000)
    viewer.layers.remove("synthetic tomogram")
    assert "was removed: stopping" in widget.status.value
    qtbot.waitUntil(lambda: running.done, timeout=120000)
    assert running.error is None, running.error
    assert widget.result.stopped and widget.result["model"].is_file()
    assert "prediction" not in widget.result.outputs and not widget.prediction_layer.data.any()

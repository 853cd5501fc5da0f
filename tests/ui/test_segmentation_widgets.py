"""Train segmentation and Segment widgets in a real viewer, on the synthetic sample data."""

import numpy as np
import pytest

from napari_cryolearn.segmentation.predict_job import load_model

PLUGIN = "napari-cryolearn"


@pytest.fixture
def viewer(sample_viewer):
    return sample_viewer((32, 64, 64))


def _train_widget(viewer, tmp_path, epochs):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train segmentation")
    widget.reset_choices()
    widget.image.value = viewer.layers["synthetic tomogram"]
    widget.label_layer.value = viewer.layers["synthetic labels"]
    widget.form["patch_size"].value = "32"
    widget.form["max_epochs"].value = str(epochs)
    widget.form["log_dir"].value = str(tmp_path / "run")
    widget.form["device"].value = "cpu"
    return widget


def test_train_then_segment(viewer, qtbot, tmp_path):
    train = _train_widget(viewer, tmp_path, epochs=2)
    running = train.run()
    assert running is not None, train.status.value
    qtbot.waitUntil(lambda: running.done, timeout=180000)
    assert running.error is None, running.error
    result = train.result
    assert result.epochs == 2 and not result.stopped
    assert result.last_checkpoint.exists()
    assert [x for x, _ in train.loss_plot.series["train_loss"]] == [1, 2]
    assert [x for x, _ in train.dice_plot.series["val_dice"]] == [1, 2]
    batches = [x for x, _ in train.loss_plot.series["batch loss"]]  # per batch, inside its epoch
    assert batches == sorted(batches) and 0 < batches[0] <= 1 < batches[-1] <= 2
    assert train.device_label.value == "device: cpu, cpu preset"  # the fields left at their defaults
    assert train.progress_bar.value == 1000

    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    segment.reset_choices()
    # the model just trained is preselected (handed from Train to Segment)
    assert segment.form["model"].value == (result.best_checkpoint or result.last_checkpoint)
    segment.form["input"].value = viewer.layers["synthetic tomogram"]
    segment.form["device"].value = "cpu"
    running = segment.run()
    qtbot.waitUntil(lambda: running.done, timeout=60000)
    assert running.error is None, running.error
    labels = viewer.layers["synthetic tomogram predict"]
    assert labels.data.shape == (32, 64, 64) and tuple(labels.scale) == (10.0, 10.0, 10.0)
    assert labels.data.max() < 4


def test_stop_keeps_a_resumable_checkpoint(viewer, qtbot, tmp_path):
    train = _train_widget(viewer, tmp_path, epochs=1000)
    running = train.run()
    qtbot.waitUntil(lambda: len(running.progress_events) >= 2, timeout=60000)
    train.stop()
    qtbot.waitUntil(lambda: running.done, timeout=120000)
    assert running.error is None, running.error
    assert train.result.stopped
    assert "stopped" in train.status.value
    model = load_model(train.result.last_checkpoint)
    assert model.network.out_channels == 4


def test_train_widget_fields_are_the_configs(viewer, tmp_path):
    from napari_cryolearn.segmentation.config import SegmentationTrainConfig

    train = _train_widget(viewer, tmp_path, epochs=1)
    fields = SegmentationTrainConfig.model_fields
    assert train.form["batch_size"].value == fields["batch_size"].default
    assert train.form["lr"].tooltip == fields["lr"].description
    train.form["lr"].value = "-1"
    assert train.run() is None
    assert "lr: Input should be greater than 0" in train.status.value


def test_class_names_of_the_labels_layer_reach_the_model(viewer, qtbot, tmp_path):
    train = _train_widget(viewer, tmp_path, epochs=1)
    running = train.run()
    qtbot.waitUntil(lambda: running.done, timeout=180000)
    assert running.error is None, running.error
    names = viewer.layers["synthetic labels"].metadata["label_names"]
    model = load_model(train.result.last_checkpoint)
    assert list(model.network.class_names) == [names[c] for c in range(4)]


def test_training_on_an_empty_labels_layer_is_refused(viewer, qtbot, tmp_path):
    """An untouched Labels layer (0 everywhere) is not an annotation: refused, nothing written."""
    empty = viewer.add_labels(np.zeros(viewer.layers["synthetic labels"].data.shape, np.uint8), name="empty")
    train = _train_widget(viewer, tmp_path, epochs=1)
    train.label_layer.value = empty
    assert "255 not annotated" in train.convention.value
    running = train.run()
    qtbot.waitUntil(lambda: running.done, timeout=180000)
    assert "0 (background) everywhere" in str(running.error)
    assert not (tmp_path / "run").exists()


def test_unannotated_voxels_are_not_a_class(viewer, qtbot, tmp_path):
    labels = np.array(viewer.layers["synthetic labels"].data)
    labels[:, :, :32] = 255  # the left half not annotated
    partial = viewer.add_labels(labels, name="partial", metadata={})
    train = _train_widget(viewer, tmp_path, epochs=1)
    train.label_layer.value = partial
    running = train.run()
    qtbot.waitUntil(lambda: running.done, timeout=180000)
    assert running.error is None, running.error
    assert load_model(train.result.last_checkpoint).network.out_channels == int(labels[labels != 255].max()) + 1


def test_open_tensorboard_serves_the_run_folders_logs(viewer, tmp_path, monkeypatch):
    import subprocess

    started, opened = [], []

    class FakeProcess:
        def __init__(self, command, **kwargs):
            started.append(command)

        def poll(self):
            return None

        def terminate(self):
            pass

    monkeypatch.setattr(subprocess, "Popen", FakeProcess)
    monkeypatch.setattr("webbrowser.open", opened.append)
    train = _train_widget(viewer, tmp_path, epochs=1)
    url = train.open_tensorboard()
    assert train.open_tensorboard() == url  # one server per widget
    (command,) = started
    assert command[1:3] == ["-m", "tensorboard.main"]
    assert command[command.index("--logdir") + 1] == str(tmp_path / "run" / "lightning_logs")
    assert url == f"http://localhost:{command[command.index('--port') + 1]}/" and opened == [url, url]


def test_the_training_form_fits_a_narrow_dock(make_napari_viewer):
    """Its explanation wraps instead of widening the dock (it was 474 px wide at the least)."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Train segmentation")
    assert widget.convention.native.wordWrap()
    assert widget.native.minimumSizeHint().width() <= 400
    assert list(widget.form)[:2] == ["max_time", "max_epochs"] and "class_weights" in widget.network_form

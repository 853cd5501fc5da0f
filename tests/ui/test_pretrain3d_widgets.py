"""Pretrain (3D, no labels) → Embedding volume in a real viewer, on the small synthetic sample: the
pretraining widget trains on an Image layer (written into the run folder) with the live loss and
collapse plots, Stop leaves a checkpoint that "continue training" resumes, and Embedding volume is
handed the model and adds the RGB and Labels layers at the image's scale (one test: each training
starts a child process)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_cryolearn.ui.handoff import handoff

PLUGIN = "napari-cryolearn"


@pytest.fixture(autouse=True)
def _no_model_handed_between_tests():
    handoff.last_dense = None
    yield
    handoff.last_dense = None


def _dock(viewer, title):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, title)
    widget.reset_choices()
    return widget


def _run(widget, qtbot, timeout=300000):
    running = widget.run()
    assert running is not None, widget.status.value
    qtbot.waitUntil(lambda: running.done, timeout=timeout)
    assert running.error is None, running.error
    return running


def _tiny(widget, run_dir, epochs="2"):
    for name, value in (("log_dir", str(run_dir)), ("max_epochs", epochs), ("samples_per_epoch", 4),
                        ("batch_size", 2), ("patch_size", "24"), ("view_size", "16"), ("device", "cpu"),
                        ("dim", 8), ("pred_dim", 4), ("dense_pred_dim", 4)):
        widget.form[name].value = value
    for name, value in (("num_filters", "4 4 8 8"), ("fpn_channels", 4), ("dense_dim", 4)):
        widget.backbone_form[name].value = value


def test_pretrain_on_a_layer_stop_continue_then_embedding_volume(sample_viewer, qtbot, tmp_path):
    viewer = sample_viewer((24, 32, 32))
    image = next(layer for layer in viewer.layers if layer._type_string == "image")
    train = _dock(viewer, "Pretrain (3D, no labels)")
    train.source.value = "Image layer"
    train.image.value = image
    _tiny(train, tmp_path / "run", epochs="30")
    # Stop after the first epoch's checkpoint: it stays, and "continue training" resumes from it
    running = train.run()
    assert running is not None, train.status.value
    last = tmp_path / "run" / "model" / "last.ckpt"
    qtbot.waitUntil(lambda: last.is_file() or running.done, timeout=300000)
    train.stop()
    qtbot.waitUntil(lambda: running.done, timeout=300000)
    assert running.error is None, running.error
    assert train.result.stopped and 1 <= train.result.epochs < 30 and last.is_file()
    written = tmp_path / "run" / "training_data"
    assert json.loads((written / "SOURCE.json").read_text())["image_layer"] == image.name
    stopped_at = train.result.epochs
    train.form["continue_training"].value = True
    _run(train, qtbot)
    result = train.result
    assert result.epochs == 30 and not result.stopped
    epochs = [x for x, _ in train.metric_plot.series["collapse_level"]]
    assert epochs == list(range(stopped_at + 1, 31))  # the collapse level of each epoch, live
    assert train.loss_plot.series  # the loss, per batch
    best = result.best_checkpoint
    assert handoff.last_dense == best and "handed to Embedding volume" in train.status.value

    embed = _dock(viewer, "Embedding volume")
    assert embed.model.value == best
    embed.image.value = image
    embed.output.value = str(tmp_path / "emb")
    embed.n_clusters.value = 3
    embed.form["device"].value = "cpu"
    _run(embed, qtbot)
    rgb = viewer.layers[f"{image.name} embedding"]
    labels = viewer.layers[f"{image.name} embedding clusters"]
    assert rgb.rgb and rgb.data.shape == (24, 32, 32, 3)
    assert labels.data.shape == (24, 32, 32) and set(np.unique(labels.data)) <= {1, 2, 3}
    np.testing.assert_allclose(rgb.scale, image.scale)
    np.testing.assert_allclose(labels.scale, image.scale)
    assert "clusters" in embed.status.value

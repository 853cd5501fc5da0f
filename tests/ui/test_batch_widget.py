"""The Batch widget in a real viewer: prep.scale over a folder with a truncated tomogram, the
per-file table, the files written, the results opened as layers, and a second run that skips."""

from __future__ import annotations

import csv

import numpy as np

from napari_cryolearn.io import read_mrc, write_mrc

PLUGIN = "napari-cryolearn"


def _folder(tmp_path):
    rng = np.random.default_rng(1)
    tomos = tmp_path / "tomos"
    tomos.mkdir()
    for i in range(3):
        write_mrc(tomos / f"TS_{i}.mrc", rng.normal(size=(12, 16, 16)).astype(np.float32), voxel_size=8.0)
    data = (tomos / "TS_1.mrc").read_bytes()
    (tomos / "TS_1.mrc").write_bytes(data[:300])
    return tomos


def _run(widget, qtbot):
    running = widget.run()
    assert running is not None, widget.status.value
    qtbot.waitUntil(lambda: running.done, timeout=120000)
    assert running.error is None, running.error


def test_batch_widget_runs_a_folder_and_fills_its_table(make_napari_viewer, qtbot, tmp_path):
    tomos = _folder(tmp_path)
    out = tmp_path / "out"
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Batch")
    widget.stage.value = "prep.patches"  # the form follows the stage: a labels folder to pair
    assert [w.name for w in widget.pairs] == ["labels", "distances"]
    widget.stage.value = "prep.scale"
    assert list(widget.pairs) == [] and "upper_percentile" in [w.name for w in widget.settings]
    widget.input.value = str(tomos)
    widget.output.value = str(out)
    next(w for w in widget.settings if w.name == "upper_percentile").value = "99.5"
    assert widget.stage_settings() == {"upper_percentile": 99.5}
    _run(widget, qtbot)

    assert widget.row("TS_0.mrc")["status"] == "done" and widget.row("TS_2.mrc")["status"] == "done"
    failed = widget.row("TS_1.mrc")
    assert failed["status"] == "failed" and "TS_1.mrc" in failed["error"]
    assert "2 done, 0 up to date, 1 failed" in widget.status.value
    with open(out / "batch_log.csv", newline="") as f:
        assert {r["file"]: r["status"] for r in csv.DictReader(f)} == {"TS_0.mrc": "done", "TS_1.mrc": "failed",
                                                                      "TS_2.mrc": "done"}
    scaled = read_mrc(out / "TS_2.mrc")
    assert scaled.voxel_size[0] == 8.0 and 0.0 <= scaled.data.min() and scaled.data.max() <= 1.0
    opened = {layer.name: layer for layer in viewer.layers}
    assert set(opened) == {"TS_0", "TS_2"} and tuple(opened["TS_2"].scale) == (8.0, 8.0, 8.0)

    _run(widget, qtbot)  # again: what is done is skipped
    assert widget.row("TS_0.mrc")["status"] == "skipped" and widget.row("TS_1.mrc")["status"] == "failed"
    assert "0 done, 2 up to date, 1 failed" in widget.status.value


def test_batch_widget_refuses_a_missing_folder(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Batch")
    widget.output.value = str(tmp_path / "out")
    assert widget.run() is None and "input folder" in widget.status.value
    widget.input.value = str(tmp_path)
    assert widget.run() is None and "no files matching" in widget.status.value
    assert not (tmp_path / "out").exists()

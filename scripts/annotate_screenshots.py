"""The screenshot sequence of docs/stages/annotate.md: one annotate → train → correct round in a
real viewer, on the synthetic sample (48×128×128), written to ``docs/images/annotate_*.png``.

    xvfb-run -a .venv/bin/python scripts/annotate_screenshots.py [--out FOLDER] [--epochs N]

1. ``annotate_1_strokes.png``: the window: sparse strokes (background blue, membrane orange) on
   the tomogram and the docked widget;
2. ``annotate_2_prediction.png``: the canvas: the prediction after one round;
3. ``annotate_3_accepted.png``: the canvas: the prediction of the slice in view accepted into the
   annotations, ready for the brush.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--size", type=int, nargs=2, default=(1500, 850))
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_cryolearn.annotate.sparse import simulated_annotations
    from napari_cryolearn.ui.layers import add_layer_data
    from napari_cryolearn.ui.sample_data import tomogram_layers

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*args.size)
    app = QApplication.instance()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        add_layer_data(viewer, tomogram_layers(shape=(48, 128, 128), seed=0))
    truth = np.where(viewer.layers["synthetic labels"].data == 1, 2, 1).astype(np.uint8)
    for name in ("synthetic labels", "membrane proteins", "particles"):
        viewer.layers.remove(name)
    _, widget = viewer.window.add_plugin_dock_widget("napari-cryolearn", "Annotate & train")
    widget.reset_choices()
    widget.image.value = viewer.layers["synthetic tomogram"]
    widget.project_dir.value = tempfile.mkdtemp(prefix="cryolearn-annotate-shots-")
    widget.epochs.value = args.epochs
    widget.device.value = "cpu"
    widget.new_project()
    widget.annotation_layer.data = simulated_annotations(truth, n_slices=4, fraction=0.01)
    viewer.dims.set_point(0, 10.0 * int(np.linspace(0, 47, 6).round()[1]))  # a slice with strokes
    args.out.mkdir(parents=True, exist_ok=True)

    def shot(name, canvas_only=True):
        for _ in range(10):
            app.processEvents()
        viewer.screenshot(str(args.out / name), canvas_only=canvas_only)
        print("wrote", args.out / name)

    widget.prediction_layer.visible = False
    shot("annotate_1_strokes.png", canvas_only=False)
    running = widget.run()
    while not running.done:
        app.processEvents()
    if running.error is not None:
        raise running.error
    widget.prediction_layer.visible = True
    widget.annotation_layer.visible = False
    shot("annotate_2_prediction.png")
    widget.prediction_layer.visible = False
    widget.annotation_layer.visible = True
    widget.accept_in_view()
    shot("annotate_3_accepted.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

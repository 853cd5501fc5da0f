"""The example stage of docs/adding-a-stage.md, run as written: its code blocks are executed,
and the stage then works from the command line and as a napari widget."""

from __future__ import annotations

import re
import types
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from napari_cryolearn.engine import registry
from napari_cryolearn.io.mrc import read_mrc, write_mrc

PAGE = Path(__file__).resolve().parents[1] / "docs" / "adding-a-stage.md"


@pytest.fixture
def example_stage(monkeypatch):
    """The page's Python blocks executed as one module; the stage is registered for this test only."""
    monkeypatch.setattr(registry, "_STAGES", dict(registry._STAGES))
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) == 3, "the page should hold the config, the job and the registration"
    module = types.ModuleType("adding_a_stage_example")
    exec(compile("\n".join(blocks), str(PAGE), "exec", dont_inherit=True), module.__dict__)  # noqa: S102 (our own docs)
    return registry.get_stage("example.smooth")


@pytest.fixture
def tomogram(tmp_path) -> Path:
    volume = np.random.default_rng(0).normal(size=(12, 16, 20)).astype(np.float32)
    return write_mrc(tmp_path / "tomogram.mrc", volume, voxel_size=(7.0, 7.0, 7.0))


def test_the_example_stage_runs_from_the_command_line(example_stage, tomogram, tmp_path, capsys):
    from napari_cryolearn.cli import main

    out = tmp_path / "smoothed.mrc"
    assert main(["example", "smooth", str(tomogram), str(out), "--sigma", "2"]) == 0
    got = read_mrc(out)
    expected = ndimage.gaussian_filter(read_mrc(tomogram).data.astype(np.float32), 2.0)
    np.testing.assert_allclose(got.data, expected, rtol=1e-6)
    assert tuple(got.voxel_size) == (7.0, 7.0, 7.0)
    before = out.read_bytes()
    assert main(["example", "smooth", str(tomogram), str(out), "--sigma", "3"]) == 2
    assert out.read_bytes() == before
    assert main(["example", "smooth", str(tomogram), str(out), "--sigma", "0"]) == 2
    assert "sigma: Input should be greater than 0" in capsys.readouterr().err


def test_the_example_stage_has_a_widget(example_stage, tomogram, make_napari_viewer, qtbot):
    from napari_cryolearn.ui.io_hooks import read_layers
    from napari_cryolearn.ui.layers import add_layer_data
    from napari_cryolearn.ui.stage_widget import StageWidget

    viewer = make_napari_viewer()
    (layer,) = add_layer_data(viewer, read_layers(str(tomogram)))
    widget = StageWidget(viewer, "example.smooth")
    widget.reset_choices()
    widget.form["input"].value = layer
    widget.form["sigma"].value = "1.5"
    running = widget.run()
    qtbot.waitUntil(lambda: running.done, timeout=60000)
    assert running.error is None, running.error
    out = viewer.layers["tomogram smooth"]
    np.testing.assert_allclose(out.data, ndimage.gaussian_filter(np.asarray(layer.data, np.float32), 1.5), rtol=1e-6)
    assert tuple(out.scale) == (7.0, 7.0, 7.0)
    assert widget.result.metrics == {"sigma": 1.5}

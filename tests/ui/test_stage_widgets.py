"""Every form-built stage widget in a real viewer: it runs the stage's job through its config.

For each stage whose widget is the generated form, three things (the acceptance of the
redesign): a value the config refuses gives the config's own message and starts nothing; Stop
pressed on a running job stops it (a stopped result, no layer, nothing left on disk); a run
adds the output layers at the scale and translation of the input layer, with values checked
against the stage's operation.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydantic_core import PydanticUndefined
from scipy import ndimage

from napari_cryolearn.engine.config import is_expert, plain_text
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io.patch_store import open_patch_store
from napari_cryolearn.stages import all_stages, get
from napari_cryolearn.ui.layers import add_layer_data
from napari_cryolearn.ui.sample_data import tomogram_layers
from napari_cryolearn.ui.forms import widget_value
from napari_cryolearn.ui.stage_widget import StageWidget

PLUGIN = "napari-cryolearn"
FORM_STAGES = [s.name for s in all_stages() if s.widget and ".ui.stage_widget:" in s.widget]

#: Per stage: layers for its inputs, form values for a quick run, a value the config refuses
#: (field, text, words of the config's message), values that make the job long enough to stop.
RECIPES = {
    "sample": dict(layers={}, values={"shape": "32 40 40", "n_micrographs": 2, "micrograph_size": 32},
                   invalid=("voxel_size", "-1", "voxel_size: Input should be greater than 0"),
                   slow={"shape": "96 96 96", "n_micrographs": 8}),
    "prep.filter": dict(layers={"input": "synthetic labels"}, values={"keep": "1 2"},
                        invalid=("keep", "membrane", "keep.0: Input should be a valid integer"),
                        slow={"chunk_mb": "0.01"}),
    "prep.masks": dict(layers={"coordinates": "particles", "reference": "synthetic tomogram"},
                       values={"radius": "3", "class_column": "", "value": 5},
                       invalid=("radius", "0", "radius: Input should be greater than 0"), slow={}),
    "prep.scale": dict(layers={"input": "synthetic tomogram"}, values={"invert": True},
                       invalid=("lower_percentile", "101", "lower_percentile: Input should be less than or equal to 100"),
                       slow={"chunk_mb": "0.01"}),
    "prep.threshold": dict(layers={"input": "synthetic tomogram"}, values={"threshold": "-1", "above": False,
                                                                           "min_size": 10},
                           invalid=("threshold", "dense", "threshold: Input should be a valid number"),
                           slow={"chunk_mb": "0.01"}),
    "prep.distances": dict(layers={"input": "synthetic labels"}, values={"n_classes": "4"},
                           invalid=("clip", "-5", "clip"), slow={}),
    "prep.patches": dict(layers={"image": "synthetic tomogram", "labels": "synthetic labels"},
                         values={"patch_size": "16", "overlap": "0.5"},
                         invalid=("patch_size", "16 16", "patch_size"), slow={"patch_size": "8", "overlap": "0.75"}),
    "pick.meshes": dict(layers={"segmentation": "synthetic labels", "tomogram": "synthetic tomogram"},
                        values={"min_voxels": 100},
                        invalid=("vertex_area", "0", "vertex_area: Input should be greater than 0"), slow={}),
    # "model" is filled in with the tiny_model fixture (pick.predict: tiny_picker, with its meshes)
    "pick.predict": dict(layers={}, values={"device": "cpu", "score_threshold": "10"},
                         invalid=("bandwidth", "0", "bandwidth: Input should be greater than 0"), slow={}),
    "segment.predict": dict(layers={"input": "synthetic tomogram"}, values={"device": "cpu"},
                            invalid=("overlap", "1", "overlap: Input should be less than 1"),
                            slow={"window": "16", "overlap": "0.75"}),
}


@pytest.fixture
def viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # small volumes hold fewer objects
        layers = tomogram_layers(shape=(32, 40, 40), voxel_size=10.0, seed=3)
    for _, kwargs, _ in layers:
        kwargs["translate"] = (20.0, 0.0, -10.0)
    add_layer_data(viewer, layers)
    return viewer


def _widget(viewer, stage_name: str, request=None, **values) -> StageWidget:
    stage = get(stage_name)
    if stage_name == "segment.predict" and "model" not in values:
        values["model"] = str(request.getfixturevalue("tiny_model"))
    if stage_name == "pick.predict" and "model" not in values:
        model, meshes, cache = request.getfixturevalue("tiny_picker")
        values = {"model": str(model), "meshes": meshes, "cache_dir": str(cache), **values}
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, stage.title)
    widget.reset_choices()
    recipe = RECIPES[stage_name]
    for field, layer in recipe["layers"].items():
        widget.form[field].value = viewer.layers[layer]
    for field, value in {**recipe["values"], **values}.items():
        widget.form[field].value = value
    return widget


def _run(widget, qtbot):
    running = widget.run()
    assert running is not None, widget.status.value
    qtbot.waitUntil(lambda: running.done, timeout=120000)
    assert running.error is None, running.error
    return running


def _scratch_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("cryolearn-*"))


def test_every_stage_with_a_form_has_a_recipe():
    assert sorted(FORM_STAGES) == sorted(RECIPES)


def test_every_manifest_widget_is_its_stages_widget(make_napari_viewer):
    """Each stage's menu entry opens its widget; a form shows every config field at the
    config's default (one default, the config's)."""
    viewer = make_napari_viewer()
    for stage in all_stages():
        if not stage.widget:
            continue
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, stage.title)
        if stage.name not in FORM_STAGES:
            assert type(widget).__name__ == stage.widget.split(":")[1]
            continue
        assert isinstance(widget, StageWidget) and widget.stage == stage
        fields = stage.config_class().model_fields
        assert list(widget.form) == list(fields)
        ports = {p.field for p in (*stage.inputs, *stage.outputs)}
        for name, field in fields.items():
            if name in ports or field.default in (None, PydanticUndefined):
                continue
            given = widget_value(widget.form[name], field)
            default = list(field.default) if isinstance(field.default, tuple) else field.default
            if given is PydanticUndefined:  # left empty: the config's default applies
                assert default == [] and widget.form[name].value == "", (stage.name, name)
                continue
            assert given == default, (stage.name, name)
            assert widget.form[name].tooltip == plain_text(field.description)
        # the expert fields come last, under their heading
        shown = [w.name for w in widget]
        experts = [name for name, field in fields.items() if is_expert(field)]
        if experts:
            heading = shown.index("expert_heading")
            assert all(shown.index(name) > heading for name in experts), (stage.name, shown)
            assert all(shown.index(name) < heading for name in fields if name not in experts), (stage.name, shown)


@pytest.mark.parametrize("stage_name", FORM_STAGES)
def test_invalid_value_gives_the_configs_message(viewer, stage_name, request):
    field, text, message = RECIPES[stage_name]["invalid"]
    widget = _widget(viewer, stage_name, request, **{field: text})
    before = _scratch_folders()
    assert widget.run() is None
    assert widget.status.value.startswith("error: invalid ")
    assert message in widget.status.value
    assert _scratch_folders() == before
    # the same words the command line prints: the config class is the one source
    values = {p.field: Path("x.mrc") for p in (*get(stage_name).inputs, *get(stage_name).outputs)
              if not p.optional}
    with pytest.raises(InputError, match=message.split(":")[0]):
        from napari_cryolearn.ui.forms import form_values

        plain = {field: widget.form[field]}
        get(stage_name).config_class().from_dict({**values, **form_values(plain, widget.fields)})


@pytest.mark.parametrize("stage_name", FORM_STAGES)
def test_stop_stops_a_running_job(viewer, qtbot, stage_name, request):
    widget = _widget(viewer, stage_name, request, **RECIPES[stage_name]["slow"])
    before_layers = len(viewer.layers)
    before = _scratch_folders()
    running = widget.run()
    assert running is not None, widget.status.value
    widget.stop()
    qtbot.waitUntil(lambda: running.done, timeout=120000)
    assert running.error is None, running.error
    assert widget.result.stopped
    assert len(viewer.layers) == before_layers
    assert widget.status.value == "stopped: nothing was kept"
    assert _scratch_folders() == before


def _check_scale(layer, reference):
    assert tuple(layer.scale)[-3:] == tuple(reference.scale)
    assert tuple(layer.translate)[-3:] == tuple(reference.translate)
    assert [str(u) for u in layer.units][-3:] == [str(u) for u in reference.units] == ["angstrom"] * 3


def test_filter_form(viewer, qtbot):
    labels = viewer.layers["synthetic labels"]
    _run(_widget(viewer, "prep.filter", binary="yes"), qtbot)
    out = viewer.layers["synthetic labels filter"]
    np.testing.assert_array_equal(out.data, np.isin(labels.data, [1, 2]))
    _check_scale(out, labels)
    _run(_widget(viewer, "prep.filter", keep="3 2", renumber=True, binary="no"), qtbot)
    renumbered = viewer.layers["synthetic labels filter [1]"]
    np.testing.assert_array_equal(renumbered.data, np.select([labels.data == 3, labels.data == 2], [1, 2], 0))


def test_scale_form(viewer, qtbot):
    image = viewer.layers["synthetic tomogram"]
    _run(_widget(viewer, "prep.scale", lower_percentile="1", upper_percentile="99"), qtbot)
    out = viewer.layers["synthetic tomogram scale"]
    x = -np.asarray(image.data, dtype=np.float64)
    lo, hi = np.percentile(x, [1.0, 99.0])
    np.testing.assert_allclose(out.data, np.clip((x - lo) / (hi - lo), 0, 1), atol=1e-5)
    assert out.data.dtype == np.float32
    _check_scale(out, image)


def test_masks_and_threshold_forms(viewer, qtbot):
    image, particles = viewer.layers["synthetic tomogram"], viewer.layers["particles"]
    _run(_widget(viewer, "prep.masks"), qtbot)
    spheres = viewer.layers["synthetic tomogram masks"]
    assert spheres.data.shape == image.data.shape and set(np.unique(spheres.data)) == {0, 5}
    centre = np.round(particles.data[0]).astype(int)
    assert spheres.data[tuple(centre)] == 5
    _check_scale(spheres, image)
    _run(_widget(viewer, "prep.threshold"), qtbot)
    mask = viewer.layers["synthetic tomogram threshold"]
    sizes = np.bincount(ndimage.label(mask.data > 0)[0].ravel())[1:]
    assert mask.data.any() and sizes.min() >= 10
    assert (image.data[mask.data > 0] < -1).all()
    _check_scale(mask, image)


def test_distances_form(viewer, qtbot):
    labels = viewer.layers["synthetic labels"]
    _run(_widget(viewer, "prep.distances"), qtbot)
    for c in range(4):
        m = viewer.layers[f"synthetic labels distances {c}"]
        assert m.data.shape == labels.data.shape
        assert np.all((m.data > 0) == (labels.data == c))
        assert m.visible == (c == 0)  # one map shown, not four added into one
        _check_scale(m, labels)


def test_pickers_offer_only_3d_layers_for_volume_inputs(viewer):
    viewer.add_image(np.zeros((16, 16), np.float32), name="a 2D image")
    viewer.add_labels(np.zeros((16, 16), np.uint8), name="2D labels")
    widget = _widget(viewer, "prep.filter")
    widget.reset_choices()
    assert [layer.name for layer in widget.form["input"].choices] == ["synthetic labels"]
    widget = _widget(viewer, "prep.scale")
    widget.reset_choices()
    assert "a 2D image" not in [layer.name for layer in widget.form["input"].choices]
    assert "synthetic tomogram" in [layer.name for layer in widget.form["input"].choices]


def test_patches_form_saves_a_store(viewer, qtbot, tmp_path):
    image, labels = viewer.layers["synthetic tomogram"], viewer.layers["synthetic labels"]
    store_path = tmp_path / "tomo.zarr"
    widget = _widget(viewer, "prep.patches", output=str(store_path))
    _run(widget, qtbot)
    store = open_patch_store(store_path)
    assert len(store) == len(viewer.layers["tomo patches"].data)
    np.testing.assert_array_equal(store.reassemble("labels"), labels.data)
    assert store.voxel_size == pytest.approx((10.0, 10.0, 10.0))
    _check_scale(viewer.layers["tomo image"], image)
    assert str(store_path) in widget.status.value


def test_sample_form(viewer, qtbot):
    widget = _widget(viewer, "sample")
    _run(widget, qtbot)
    tomogram, labels = viewer.layers["sample tomogram"], viewer.layers["sample labels"]
    assert tomogram.data.shape == (32, 40, 40) and tuple(tomogram.scale) == (10.0, 10.0, 10.0)
    assert labels.data.max() >= 1 and labels.data.shape == (32, 40, 40)
    assert len(viewer.layers["sample particles"].data) > 0
    assert widget.status.value == "done (in the viewer only: not saved)"


def test_segment_form(viewer, qtbot, request):
    image = viewer.layers["synthetic tomogram"]
    widget = _widget(viewer, "segment.predict", request, probabilities=True)
    _run(widget, qtbot)
    labels = viewer.layers["synthetic tomogram predict"]
    assert labels.data.shape == image.data.shape and labels.data.max() < 4
    assert list(labels.metadata["label_names"].values()) == ["background", "membrane", "protein", "particle"]
    _check_scale(labels, image)
    probs = np.stack([viewer.layers[f"synthetic tomogram predict probabilities {c}"].data for c in range(4)])
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-4)
    np.testing.assert_array_equal(labels.data, probs.argmax(axis=0))


def test_segment_without_model_is_refused(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    widget.reset_choices()
    assert widget.run() is None
    assert widget.status.value == "error: invalid SegmentationPredictConfig: model: Field required"

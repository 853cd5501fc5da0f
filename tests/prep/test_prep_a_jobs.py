"""Jobs of the filter-labels, masks and scale stages: files in, files out, progress, stop, errors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.io import read_mrc, write_mrc, write_star
from napari_cryolearn.prep.filter_job import FilterLabelsConfig, filter_labels_job, mapping_path, read_label_mapping
from napari_cryolearn.prep.filtering import filter_labels
from napari_cryolearn.prep.masks import spheres_mask, threshold_mask
from napari_cryolearn.prep.masks_job import (
    MaskFromThresholdConfig,
    MasksFromCoordinatesConfig,
    mask_from_threshold_job,
    masks_from_coordinates_job,
)
from napari_cryolearn.prep.scale_job import ScaleConfig, scale_job

VOXEL = (12.0, 11.0, 10.0)
ORIGIN = (5.0, 6.0, 7.0)


@pytest.fixture
def tomo(tmp_path, rng):
    x = ndi.gaussian_filter(rng.standard_normal((32, 40, 48)), 1).astype(np.float32)
    path = write_mrc(tmp_path / "tomo.mrc", x, voxel_size=VOXEL, origin=ORIGIN)
    return path, x


@pytest.fixture
def labels(tmp_path, rng):
    lab = rng.integers(0, 5, (32, 40, 48)).astype(np.uint8)
    lab[rng.random(lab.shape) < 0.9] = 0  # sparse, so that growth shows
    path = write_mrc(tmp_path / "labels.mrc", lab, voxel_size=VOXEL, origin=ORIGIN)
    return path, lab


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


def stop_after_first(job_fn, config):
    """Run a job, setting its stop flag when the first progress event arrives."""
    stop = StopFlag()
    events = []

    def on_progress(p):
        events.append(p)
        stop.set()

    return run_job(job_fn(config, stop=stop), on_progress), events


# ------------------------------------------------------------------------------------------
# scale


@pytest.mark.parametrize("method", ["auto", "exact", "histogram"])
def test_scale_job_round_trip(tomo, tmp_path, method):
    path, x = tomo
    before = path.read_bytes()
    events = []
    cfg = ScaleConfig(input=path, output=tmp_path / "out" / "scaled.mrc", invert=True, method=method, chunk_mb=0.02)
    result = run_job(scale_job(cfg), events.append)
    assert result.outputs == {"output": cfg.output} and not result.stopped
    vol = read_mrc(result["output"], mmap=False)
    assert vol.data.dtype == np.float32
    assert vol.voxel_size == pytest.approx(VOXEL) and vol.origin == pytest.approx(ORIGIN)
    assert vol.data.min() == 0 and vol.data.max() == 1
    y = -x.astype(np.float64)
    lo, hi = np.percentile(y, [0.1, 99.9])
    np.testing.assert_allclose(vol.data, np.clip((y - lo) / (hi - lo), 0, 1), atol=2e-6)
    assert path.read_bytes() == before
    assert events and all(e.stage == "scale" for e in events)
    assert [e.step for e in events] == sorted(e.step for e in events)
    assert events[-1].step == events[-1].total
    assert events[-1].metrics["p_lo"] == pytest.approx(lo)
    if method != "exact":
        assert len(events) > 3 * 3  # several slabs per pass (one slice of 7.5 KB per 20 KB)


def test_scale_job_integer_input(tmp_path, rng):
    x = rng.integers(-200, 200, (8, 16, 16)).astype(np.int16)
    path = write_mrc(tmp_path / "int.mrc", x, voxel_size=3.0)
    out = run_job(scale_job(ScaleConfig(input=path, output=tmp_path / "s.mrc", lower_percentile=None, upper_percentile=None)))["output"]
    vol = read_mrc(out)
    assert vol.data.dtype == np.float32 and vol.voxel_size == (3.0, 3.0, 3.0)
    np.testing.assert_allclose(vol.data, (x - x.min()) / (x.max() - x.min()), atol=1e-6)


def test_stopped_scale_job_leaves_nothing(tomo, tmp_path):
    path, _ = tomo
    cfg = ScaleConfig(input=path, output=tmp_path / "scaled.mrc", method="histogram", chunk_mb=0.02)
    result, events = stop_after_first(scale_job, cfg)
    assert result.stopped and not result.outputs and len(events) == 1
    assert files_in(tmp_path) == ["tomo.mrc"]


def test_closed_scale_job_leaves_nothing(tomo, tmp_path):
    path, _ = tomo
    job = scale_job(ScaleConfig(input=path, output=tmp_path / "scaled.mrc", method="histogram", chunk_mb=0.02))
    for i, event in enumerate(job):
        if event.message.startswith("writing"):  # the output file is being written now
            break
    job.close()
    assert files_in(tmp_path) == ["tomo.mrc"]


def test_scale_job_nan_names_the_file(tmp_path):
    x = np.zeros((4, 8, 8), np.float32)
    x[2, 3, 4] = np.nan
    path = write_mrc(tmp_path / "nan.mrc", x)
    with pytest.raises(InputError, match=r"nan\.mrc.*NaN"):
        run_job(scale_job(ScaleConfig(input=path, output=tmp_path / "s.mrc", method="histogram")))
    assert files_in(tmp_path) == ["nan.mrc"]


def test_scale_job_constant_volume(tmp_path):
    path = write_mrc(tmp_path / "flat.mrc", np.full((4, 8, 8), 2.0, np.float32))
    with pytest.raises(InputError, match=r"flat\.mrc.*constant"):
        run_job(scale_job(ScaleConfig(input=path, output=tmp_path / "s.mrc")))
    assert files_in(tmp_path) == ["flat.mrc"]


def test_scale_job_bad_inputs_write_nothing(tomo, tmp_path):
    path, _ = tomo
    with pytest.raises(InputError, match="missing.mrc"):
        run_job(scale_job(ScaleConfig(input=tmp_path / "missing.mrc", output=tmp_path / "s.mrc")))
    with pytest.raises(InputError, match="overwrite the input"):
        run_job(scale_job(ScaleConfig(input=path, output=path)))
    (tmp_path / "exists.mrc").write_bytes(b"keep me")
    with pytest.raises(InputError, match="exists"):
        run_job(scale_job(ScaleConfig(input=path, output=tmp_path / "exists.mrc", overwrite=False)))
    assert (tmp_path / "exists.mrc").read_bytes() == b"keep me"
    (tmp_path / "text.mrc").write_text("not an MRC file " * 100)
    with pytest.raises(InputError, match="text.mrc"):
        run_job(scale_job(ScaleConfig(input=tmp_path / "text.mrc", output=tmp_path / "s.mrc")))
    assert files_in(tmp_path) == ["exists.mrc", "text.mrc", "tomo.mrc"]


def test_scale_config_checks_percentiles(tmp_path):
    with pytest.raises(InputError, match="lower_percentile"):
        ScaleConfig.from_dict({"input": "a.mrc", "output": "b.mrc", "lower_percentile": 99, "upper_percentile": 1})
    with pytest.raises(InputError, match="upper_percentile"):
        ScaleConfig.from_dict({"input": "a.mrc", "output": "b.mrc", "upper_percentile": 101})


def test_scale_from_cryosiam(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("TS_01.mrc", "TS_02.mrc", "notes.txt"):
        (raw / name).write_bytes(b"")
    cfg = {"input_path": str(raw), "output_path": str(tmp_path / "scaled"), "invert": True,
           "lower_end_percentage": 0.1, "upper_end_percentage": 99.9, "file_extension": ".mrc",
           "train_files": ["TS_02"]}
    configs = ScaleConfig.from_cryosiam(cfg)
    assert [(c.input.name, c.output) for c in configs] == [("TS_02.mrc", tmp_path / "scaled" / "TS_02.mrc")]
    assert configs[0].invert and configs[0].lower_percentile == 0.1 and configs[0].upper_percentile == 99.9
    assert ScaleConfig.from_cryosiam({**cfg, "lower_end_percentage": 0}) == []
    # a training YAML: no scaling keys; raw tomograms given, scaled ones go to data_folder
    train = {"data_folder": str(tmp_path / "data"), "file_extension": ".mrc"}
    configs = ScaleConfig.from_cryosiam(train, input=raw, invert=True)
    assert [(c.input.name, c.output.parent.name, c.lower_percentile, c.upper_percentile, c.invert)
            for c in configs] == [("TS_01.mrc", "data", 0.1, 99.9, True), ("TS_02.mrc", "data", 0.1, 99.9, True)]


# ------------------------------------------------------------------------------------------
# filter labels


@pytest.mark.parametrize("expand", [0, 1, 2])
def test_filter_job_equals_the_operation(labels, tmp_path, expand):
    path, lab = labels
    cfg = FilterLabelsConfig(input=path, output=tmp_path / "f.mrc", keep=[4, 1], binary=True, expand=expand,
                             chunk_mb=0.02)
    result = run_job(filter_labels_job(cfg))
    assert result.metrics["found"] == {4: int(np.sum(lab == 4)), 1: int(np.sum(lab == 1))}
    vol = read_mrc(result["output"])
    expected, _ = filter_labels(lab, [4, 1], binary=True, expand=expand)
    np.testing.assert_array_equal(vol.data, expected)
    assert vol.voxel_size == pytest.approx(VOXEL) and vol.data.dtype == np.uint8


def test_filter_job_multiclass_expand_across_slabs(labels, tmp_path):
    path, lab = labels
    cfg = FilterLabelsConfig(input=path, output=tmp_path / "f.mrc", keep=[4, 1, 3], expand=1.5, chunk_mb=0.02)
    vol = read_mrc(run_job(filter_labels_job(cfg))["output"])
    np.testing.assert_array_equal(vol.data, filter_labels(lab, [4, 1, 3], expand=1.5)[0])


def test_filter_job_renumber_writes_the_mapping(labels, tmp_path):
    path, lab = labels
    cfg = FilterLabelsConfig(input=path, output=tmp_path / "sub.mrc", keep=[3, 1], renumber=True)
    out = run_job(filter_labels_job(cfg))["output"]
    assert mapping_path(out) == tmp_path / "sub.mrc.json"
    assert read_label_mapping(mapping_path(out)) == {3: 1, 1: 2}
    assert json.loads(mapping_path(out).read_text())["label_mapping"] == {"3": 1, "1": 2}
    data = read_mrc(out).data
    np.testing.assert_array_equal(data[lab == 3], 1)
    np.testing.assert_array_equal(data[lab == 1], 2)


def test_filter_job_single_value_from_yaml(labels, tmp_path):
    path, lab = labels
    yaml_file = tmp_path / "f.yaml"
    yaml_file.write_text(f"input: {path}\noutput: {tmp_path / 'm.mrc'}\nkeep: 2\n")
    cfg = FilterLabelsConfig.from_yaml(yaml_file)
    assert cfg.keep == [2]
    np.testing.assert_array_equal(read_mrc(run_job(filter_labels_job(cfg))["output"]).data, lab == 2)


def test_filter_job_warns_naming_file_and_value(labels, tmp_path):
    path, _ = labels
    with pytest.warns(UserWarning, match=r"\[9\].*labels\.mrc"):
        run_job(filter_labels_job(FilterLabelsConfig(input=path, output=tmp_path / "f.mrc", keep=[1, 9])))


def test_filter_job_fractional_labels_leave_nothing(tmp_path):
    lab = np.zeros((6, 8, 8), np.float32)
    lab[5, 1, 1] = 0.5
    path = write_mrc(tmp_path / "frac.mrc", lab)
    with pytest.raises(InputError, match=r"frac\.mrc.*integers"):
        run_job(filter_labels_job(FilterLabelsConfig(input=path, output=tmp_path / "f.mrc", keep=[1], chunk_mb=0.001)))
    assert files_in(tmp_path) == ["frac.mrc"]


def test_stopped_filter_job_leaves_nothing(labels, tmp_path):
    path, _ = labels
    result, _ = stop_after_first(
        filter_labels_job, FilterLabelsConfig(input=path, output=tmp_path / "f.mrc", keep=[1], chunk_mb=0.01)
    )
    assert result.stopped and not result.outputs
    assert files_in(tmp_path) == ["labels.mrc"]


def test_filter_from_cryosiam_reproduces_cryosiam(tmp_path):
    src = tmp_path / "gt"
    src.mkdir()
    for name in ("a.mrc", "b.mrc", "c.rec"):
        (src / name).write_bytes(b"")
    cfg = {"labels_folder_for_filtering": str(src), "labels_folder": str(tmp_path / "labels"),
           "selected_labels": [2, 5], "file_extension": ".mrc"}
    configs = FilterLabelsConfig.from_cryosiam(cfg)
    assert [c.input.name for c in configs] == ["a.mrc", "b.mrc"]
    assert all(c.binary and c.expand == 1 and c.keep == [2, 5] for c in configs)
    assert configs[1].output == tmp_path / "labels" / "b.mrc"
    with pytest.raises(InputError, match="selected_labels"):
        FilterLabelsConfig.from_cryosiam({**cfg, "selected_labels": None})


# ------------------------------------------------------------------------------------------
# masks


def test_masks_from_coordinates_uses_the_class_column(tomo, tmp_path):
    path, x = tomo
    coords = np.array([[10.0, 12.0, 14.0], [20.0, 30.0, 40.0], [5, 5, 5]])
    star = write_star(tmp_path / "picks.star", coords, features={"rlnClassNumber": [3, 1, 2]})
    cfg = MasksFromCoordinatesConfig(coordinates=star, reference=path, output=tmp_path / "m.mrc", radius=3)
    vol = read_mrc(run_job(masks_from_coordinates_job(cfg))["output"])
    assert vol.data.shape == x.shape and vol.data.dtype == np.uint8
    assert vol.voxel_size == pytest.approx(VOXEL) and vol.origin == pytest.approx(ORIGIN)
    np.testing.assert_array_equal(vol.data, spheres_mask(x.shape, coords, 3, classes=[3, 1, 2]))


def test_masks_without_class_column_and_angstrom_radius(tomo, tmp_path):
    path, x = tomo
    coords = np.array([[10.0, 12.0, 14.0]])
    star = write_star(tmp_path / "picks.star", coords)
    cfg = MasksFromCoordinatesConfig(coordinates=star, reference=path, output=tmp_path / "m.mrc", radius=40,
                                     radius_unit="angstrom", value=7)
    data = read_mrc(run_job(masks_from_coordinates_job(cfg))["output"]).data
    expected = spheres_mask(x.shape, coords, 40, classes=7, voxel_size=VOXEL, radius_unit="angstrom")
    np.testing.assert_array_equal(data, expected)
    assert data[10, 12, 14 + 4] == 7 and data[10, 12, 14 + 5] == 0  # 40 Å / 10 Å = 4 voxels in x
    assert data[10 + 3, 12, 14] == 7 and data[10 + 4, 12, 14] == 0  # 40 Å / 12 Å = 3.3 voxels in z


def test_masks_explicit_missing_column_is_an_error(tomo, tmp_path):
    path, _ = tomo
    star = write_star(tmp_path / "picks.star", np.array([[10.0, 12.0, 14.0]]), features={"rlnClassNumber": [1]})
    cfg = MasksFromCoordinatesConfig(coordinates=star, reference=path, output=tmp_path / "m.mrc", radius=2,
                                     class_column="rlnLabel")
    with pytest.raises(InputError, match=r"picks\.star.*rlnLabel"):
        run_job(masks_from_coordinates_job(cfg))
    assert not (tmp_path / "m.mrc").exists()


def test_masks_uint16_for_large_classes(tomo, tmp_path):
    path, _ = tomo
    star = write_star(tmp_path / "p.star", np.array([[10.0, 12.0, 14.0]]), features={"rlnClassNumber": [300]})
    cfg = MasksFromCoordinatesConfig(coordinates=star, reference=path, output=tmp_path / "m.mrc", radius=1)
    data = read_mrc(run_job(masks_from_coordinates_job(cfg))["output"]).data
    assert data.dtype == np.uint16 and data[10, 12, 14] == 300


def test_masks_out_of_bounds_write_nothing(tomo, tmp_path):
    path, _ = tomo
    star = write_star(tmp_path / "p.star", np.array([[10.0, 12.0, 14.0], [40.0, 1.0, 1.0]]))
    cfg = MasksFromCoordinatesConfig(coordinates=star, reference=path, output=tmp_path / "m.mrc", radius=1)
    with pytest.raises(InputError, match=r"p\.star.*1 of 2 points.*#1"):
        run_job(masks_from_coordinates_job(cfg))
    assert files_in(tmp_path) == ["p.star", "tomo.mrc"]


def test_threshold_job_equals_the_operation_across_slabs(tmp_path, rng):
    d = ndi.gaussian_filter(rng.standard_normal((30, 24, 24)), 1.2).astype(np.float32)
    d[3:27, 10, 10] = 5  # a thin rod through many slabs: small in each slab, large in all
    t = float(np.percentile(d, 85))
    path = write_mrc(tmp_path / "map.mrc", d, voxel_size=VOXEL)
    for min_size, above in ((0, True), (15, True), (15, False)):
        cfg = MaskFromThresholdConfig(input=path, output=tmp_path / "t.mrc", threshold=t, above=above,
                                      min_size=min_size, chunk_mb=0.01, overwrite=True)
        vol = read_mrc(run_job(mask_from_threshold_job(cfg))["output"])
        np.testing.assert_array_equal(vol.data, threshold_mask(d, t, min_size=min_size, above=above))
        assert vol.voxel_size == pytest.approx(VOXEL)
    assert vol.data[15, 10, 10] == 0  # the rod is above the threshold, so not in the "below" mask


def test_threshold_job_keeps_a_piece_spread_over_slabs(tmp_path):
    d = np.zeros((40, 8, 8), np.float32)
    d[2:38, 4, 4] = 1  # 36 voxels, 2-3 per slab
    d[20, 1, 1] = 1
    path = write_mrc(tmp_path / "rod.mrc", d)
    cfg = MaskFromThresholdConfig(input=path, output=tmp_path / "t.mrc", threshold=0.5, min_size=30, chunk_mb=0.0005)
    data = read_mrc(run_job(mask_from_threshold_job(cfg))["output"]).data
    assert data.sum() == 36 and data[20, 1, 1] == 0


def test_stopped_threshold_job_leaves_nothing(tomo, tmp_path):
    path, _ = tomo
    cfg = MaskFromThresholdConfig(input=path, output=tmp_path / "t.mrc", threshold=0.0, min_size=3, chunk_mb=0.01)
    result, _ = stop_after_first(mask_from_threshold_job, cfg)
    assert result.stopped and not result.outputs and files_in(tmp_path) == ["tomo.mrc"]


def test_masks_from_cryosiam(tmp_path):
    data = tmp_path / "tomos"
    data.mkdir()
    for name in ("TS_01.mrc", "TS_02.mrc"):
        (data / name).write_bytes(b"")
    cfg = {"data_folder": str(data), "labels_folder": str(tmp_path / "labels"), "file_extension": ".mrc"}
    configs = MasksFromCoordinatesConfig.from_cryosiam(cfg, coordinates=tmp_path / "all.star", radius=50,
                                                       radius_unit="angstrom")
    assert [(c.reference.name, c.tomo_name, c.output.name) for c in configs] == [
        ("TS_01.mrc", "TS_01", "TS_01.mrc"), ("TS_02.mrc", "TS_02", "TS_02.mrc")]
    thr = MaskFromThresholdConfig.from_cryosiam(cfg, threshold=0.5, min_size=10)
    assert [(c.input.name, c.threshold, c.min_size) for c in thr] == [("TS_01.mrc", 0.5, 10), ("TS_02.mrc", 0.5, 10)]


def test_no_warning_when_all_labels_exist(labels, tmp_path):
    path, _ = labels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_job(filter_labels_job(FilterLabelsConfig(input=path, output=tmp_path / "f.mrc", keep=[1, 2])))


def test_filter_job_that_keeps_nothing_writes_nothing(labels, tmp_path):
    path, _ = labels
    with pytest.raises(InputError, match=r"labels\.mrc: keep: none of the kept values \(9, 11\) occurs"):
        run_job(filter_labels_job(FilterLabelsConfig(input=path, output=tmp_path / "f.mrc", keep=[9, 11], chunk_mb=0.02)))
    assert files_in(tmp_path) == ["labels.mrc"]


def test_masks_are_labels_with_class_names(tmp_path):
    from napari_cryolearn.io.sidecar import label_names_from, read_sidecar
    from napari_cryolearn.ui.io_hooks import read_layers

    ref = write_mrc(tmp_path / "tomo.mrc", np.zeros((16, 16, 16), np.float32))
    star = write_star(tmp_path / "p.star", np.array([[4.0, 4, 4], [10, 10, 10]]),
                      features=pd.DataFrame({"rlnClassNumber": [2, 5]}))
    out = run_job(masks_from_coordinates_job(MasksFromCoordinatesConfig(
        coordinates=star, reference=ref, output=tmp_path / "spheres.mrc", radius=2)))["output"]
    assert label_names_from(read_sidecar(out)) == {0: "background", 2: "class_2", 5: "class_5"}
    assert [layer_type for _, _, layer_type in read_layers(str(out))] == ["labels"]
    scaled = write_mrc(tmp_path / "density.mrc", np.linspace(0, 1, 16**3, dtype=np.float32).reshape((16,) * 3))
    mask = run_job(mask_from_threshold_job(MaskFromThresholdConfig(input=scaled, output=tmp_path / "dense.mrc",
                                                                   threshold=0.5, label_value=3)))["output"]
    assert label_names_from(read_sidecar(mask)) == {0: "background", 3: "mask"}


def test_filter_job_carries_class_names_into_its_sidecar(tmp_path):
    from napari_cryolearn.io import write_mrc
    from napari_cryolearn.io.sidecar import label_names_from, read_sidecar, write_sidecar

    lab = np.zeros((4, 6, 6), np.uint8)
    lab[1, 1:3, 1:3], lab[2, 3:5, 3:5], lab[3, 0, 0] = 1, 2, 3
    src = write_mrc(tmp_path / "labels.mrc", lab)
    write_sidecar(src, {"label_names": {"0": "background", "1": "membrane", "2": "protein", "3": "particle"}})
    binary = run_job(filter_labels_job(FilterLabelsConfig(input=src, output=tmp_path / "m.mrc", keep=[1, 2], binary=True)))["output"]
    assert label_names_from(read_sidecar(binary)) == {0: "background", 1: "membrane+protein"}
    renumbered = run_job(filter_labels_job(
        FilterLabelsConfig(input=src, output=tmp_path / "r.mrc", keep=[3, 1], renumber=True)))["output"]
    assert label_names_from(read_sidecar(renumbered)) == {0: "background", 1: "particle", 2: "membrane"}

"""cryolearn pick train and pick predict: the jobs on small synthetic meshes in a temporary folder."""

import shutil

import h5py
import numpy as np
import pytest
import torch

from napari_cryolearn.cli import main
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.io import read_star, write_star
from napari_cryolearn.io.mesh_container import read_mesh_container, write_mesh_container
from napari_cryolearn.picking import operators as operators_module
from napari_cryolearn.picking.config import PickPredictConfig, PickTrainConfig
from napari_cryolearn.picking.predict_job import pick_predict_job
from napari_cryolearn.picking.sample_data import write_picking_dataset
from napari_cryolearn.picking.train_job import pick_train_job

SMALL = dict(partition_size=400, eigenpairs=32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("picking")
    write_picking_dataset(root, {"train": [0], "val": [1]}, shape=(48, 64, 64), n_particles=0, min_voxels=1000)
    return root


def _train_config(root, tmp_path, **kw):
    defaults = dict(data=root / "DATA", log_dir=tmp_path / "run", max_epochs=2, cache_dir=tmp_path / "cache",
                    device="cpu", network=SMALL)
    return PickTrainConfig(**{**defaults, **kw})


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    result = run_job(pick_train_job(_train_config(dataset, tmp)))
    return tmp, result


def test_training_writes_checkpoints_config_and_a_record_of_its_data(trained):
    tmp, result = trained
    run = tmp / "run"
    assert result.epochs == 2 and not result.stopped
    assert result.best_checkpoint == run / "model" / "model_best.ckpt" and result.last_checkpoint.is_file()
    assert len(list((run / "model").glob("top-epoch=*.ckpt"))) == 2  # at most keep_best, one per validation
    assert (run / "config.yaml").is_file()
    assert np.isfinite(result.metrics["val_loss"]) and result.metrics["val_mae_A"] > 0
    record = (run / "training_data.json").read_text()
    assert "t0_1.h5" in record and "t1.star" in record
    ckpt = torch.load(result.best_checkpoint, map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["config"]["network"]["partition_size"] == 400


def test_prediction_writes_scored_meshes_and_star_picks_in_voxels(dataset, trained, tmp_path):
    _, result = trained
    meshes = sorted((dataset / "DATA" / "val").glob("*.h5"))
    cfg = PickPredictConfig(model=result.best_checkpoint, meshes=meshes, output_dir=tmp_path / "out",
                            cache_dir=tmp_path / "cache", score_threshold=10.0, device="cpu")
    out = run_job(pick_predict_job(cfg))
    for mesh, n_picks in zip(meshes, out.metrics["picks"]):
        stem = mesh.name[:-3]
        scored = read_mesh_container(tmp_path / "out" / f"{stem}.h5")
        source = read_mesh_container(mesh)
        np.testing.assert_array_equal(scored.points, source.points)
        assert scored.scores.shape == (len(source.points),) and np.isfinite(scored.scores).all()
        star = read_star(tmp_path / "out" / f"{stem}_picks.star")
        assert len(star.coords) == n_picks == len(scored.cluster_centers)
        assert {"rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnMicrographName"} <= set(star.features.columns)
        assert (star.features["rlnMicrographName"] == "t1.mrc").all()
        assert star.pixel_size == 10.0
        # cluster_centers are the picks in Å, x, y, z (MemBrain-pick's prediction files)
        np.testing.assert_allclose(scored.cluster_centers, star.coords[:, ::-1] * 10.0, atol=1e-6)
        # picks lie on the membrane: within a voxel of the mesh
        if n_picks:
            from scipy.spatial import cKDTree

            d, _ = cKDTree(source.verts_zyx()).query(star.coords)
            assert d.max() < 2.0
    assert sum(out.metrics["picks"]) > 0


def test_angstrom_output_is_membrain_picks_convention(dataset, trained, tmp_path):
    _, result = trained
    mesh = sorted((dataset / "DATA" / "val").glob("*.h5"))[0]
    common = dict(model=result.best_checkpoint, meshes=[mesh], cache_dir=tmp_path / "cache", score_threshold=10.0,
                  device="cpu")
    run_job(pick_predict_job(PickPredictConfig(output_dir=tmp_path / "px", **common)))
    run_job(pick_predict_job(PickPredictConfig(output_dir=tmp_path / "a", angstrom=True, **common)))
    name = mesh.name[:-3] + "_picks.star"
    px, a = read_star(tmp_path / "px" / name), read_star(tmp_path / "a" / name)
    np.testing.assert_allclose(a.coords, px.coords * 10.0, rtol=1e-6)
    assert a.pixel_size is None


def test_a_second_run_computes_no_operators(dataset, tmp_path, monkeypatch):
    run_job(pick_train_job(_train_config(dataset, tmp_path, max_epochs=1)))
    calls = []
    real = operators_module.compute_operators
    monkeypatch.setattr(operators_module, "compute_operators", lambda *a, **k: calls.append(1) or real(*a, **k))
    run_job(pick_train_job(_train_config(dataset, tmp_path, max_epochs=1, overwrite=True)))
    assert calls == []


def test_stop_keeps_a_checkpoint_that_resumes(dataset, tmp_path):
    stop = StopFlag()
    job = pick_train_job(_train_config(dataset, tmp_path, max_epochs=3), stop=stop)
    for event in job_events(job):
        if "epoch 1" in event.message:
            stop.set()
    last = tmp_path / "run" / "model" / "last.ckpt"
    assert last.is_file()
    resumed = run_job(pick_train_job(_train_config(dataset, tmp_path, max_epochs=3, continue_training=True)))
    assert resumed.epochs == 3


def job_events(job):
    while True:
        try:
            yield next(job)
        except StopIteration:
            return


def test_membrain_pick_containers_train_and_predict(dataset, tmp_path):
    """Their layout: points in voxels, no voxel_size nor our keys; the pixel size is given."""
    data = tmp_path / "DATA" / "train"
    data.mkdir(parents=True)
    for src in sorted((dataset / "DATA" / "train").glob("*.h5")):
        c = read_mesh_container(src)
        with h5py.File(data / src.name, "w") as f:
            for key in ("points", "faces", "normals", "normal_values"):
                f.create_dataset(key, data=getattr(c, key))
            f.create_dataset("tomo_file", data=c.tomo_file, dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("pixel_size", data=1.0)
        # MemBrain-pick's rule: <name>.star beside <name>.h5, positions in voxels
        stars = read_star(dataset / "DATA" / "train" / "t0.star")
        write_star(data / f"{src.name[:-3]}.star", stars.coords)
    cfg = _train_config(tmp_path, tmp_path, max_epochs=1)
    with pytest.raises(InputError, match="pixel-size"):
        run_job(pick_train_job(cfg))
    result = run_job(pick_train_job(cfg.model_copy(update={"pixel_size": 10.0})))
    mesh = sorted(data.glob("*.h5"))[0]
    pred = PickPredictConfig(model=result.last_checkpoint, meshes=[mesh], output_dir=tmp_path / "out",
                             cache_dir=tmp_path / "cache", pixel_size=10.0, device="cpu")
    run_job(pick_predict_job(pred))
    assert (tmp_path / "out" / f"{mesh.name[:-3]}_picks.star").is_file()


def test_far_positions_are_reported_not_dropped_silently(dataset, tmp_path):
    data = tmp_path / "DATA"
    shutil.copytree(dataset / "DATA" / "train", data / "train")
    stars = read_star(data / "train" / "t0.star")
    write_star(data / "train" / "t0.star", np.r_[stars.coords, [[1.0, 1.0, 1.0]]], pixel_size=10.0)
    messages = []
    run_job(pick_train_job(_train_config(tmp_path, tmp_path, max_epochs=1)), lambda e: messages.append(e.message))
    assert any("1 of" in m and "farther than 100 Å" in m for m in messages)


def test_bad_inputs_are_refused_before_anything_is_written(dataset, trained, tmp_path):
    _, result = trained
    # no positions beside a mesh
    data = tmp_path / "nostar" / "DATA" / "train"
    data.mkdir(parents=True)
    shutil.copy(sorted((dataset / "DATA" / "train").glob("*.h5"))[0], data / "m.h5")
    with pytest.raises(InputError, match="no protein positions") as err:
        run_job(pick_train_job(_train_config(tmp_path / "nostar", tmp_path)))
    assert "m.h5" in str(err.value)
    assert not (tmp_path / "run").exists()
    # a STAR file without coordinates
    (data / "m.star").write_text("data_\nloop_\n_rlnAngleRot #1\n10\n")
    with pytest.raises(InputError, match="m.star"):
        run_job(pick_train_job(_train_config(tmp_path / "nostar", tmp_path)))
    # a model for another profile length
    c = read_mesh_container(data / "m.h5")
    c.normal_values = c.normal_values[:, :12]
    write_mesh_container(tmp_path / "short.h5", c)
    cfg = PickPredictConfig(model=result.best_checkpoint, meshes=[tmp_path / "short.h5"], output_dir=tmp_path / "o",
                            cache_dir=tmp_path / "cache", device="cpu")
    with pytest.raises(InputError, match="12 samples; the picker reads 16"):
        run_job(pick_predict_job(cfg))
    assert not (tmp_path / "o").exists()
    # profiles sampled with another step than the picker learnt
    c = read_mesh_container(data / "m.h5")
    c.profile_step = 4.0
    write_mesh_container(tmp_path / "step4.h5", c)
    with pytest.raises(InputError, match="sampled 4 Å apart; the picker learnt profiles 2.5 Å apart"):
        run_job(pick_predict_job(cfg.model_copy(update={"meshes": [tmp_path / "step4.h5"]})))
    # not a picker checkpoint
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "other.ckpt")
    with pytest.raises(InputError, match="not a picker checkpoint"):
        run_job(pick_predict_job(cfg.model_copy(update={"model": tmp_path / "other.ckpt"})))
    # an output that would replace the input mesh
    inplace = cfg.model_copy(update={"meshes": [data / "m.h5"], "output_dir": data})
    with pytest.raises(InputError, match="would overwrite the input"):
        run_job(pick_predict_job(inplace))


def test_cli_train_and_predict(dataset, trained, tmp_path, capsys):
    _, result = trained
    mesh = sorted((dataset / "DATA" / "val").glob("*.h5"))[0]
    code = main(["pick", "predict", str(result.best_checkpoint), str(mesh), "--output-dir", str(tmp_path / "o"),
                 "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"])
    assert code == 0 and (tmp_path / "o" / f"{mesh.name[:-3]}_picks.star").is_file()
    code = main(["pick", "predict", str(result.best_checkpoint), str(mesh), "--output-dir", str(tmp_path / "o"),
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 2 and "exists" in capsys.readouterr().err
    code = main(["pick", "train", str(tmp_path / "missing"), "--log-dir", str(tmp_path / "run")])
    assert code == 2


def test_folders_of_meshes_and_of_picks(dataset, trained, tmp_path):
    from napari_cryolearn.picking.eval_job import PickEvalConfig, pick_eval_job

    _, result = trained
    val = dataset / "DATA" / "val"
    cfg = PickPredictConfig(model=result.best_checkpoint, meshes=[val], output_dir=tmp_path / "out",
                            cache_dir=tmp_path / "cache", score_threshold=10.0, device="cpu")
    out = run_job(pick_predict_job(cfg))
    assert len(out.metrics["picks"]) == len(list(val.glob("*.h5")))
    scores = run_job(pick_eval_job(PickEvalConfig(picks=[tmp_path / "out"], truth=[val], threshold=60)))
    assert list(scores.metrics["per_file"]) == ["t1.star"]  # the membranes' picks scored together
    truth = read_star(val / "t1.star")
    assert scores.metrics["per_file"]["t1.star"]["truth"] == len(truth.coords)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no mesh container"):
        run_job(pick_predict_job(cfg.model_copy(update={"meshes": [empty]})))

import numpy as np
import pytest
import torch

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.io import read_mrc, write_mrc
from napari_cryolearn.segmentation.config import (
    BackboneConfig,
    NetworkConfig,
    SegmentationPredictConfig,
    SegmentationTrainConfig,
)
from napari_cryolearn.models.sliding_window import sliding_window_predict
from napari_cryolearn.segmentation.network import build_network
from napari_cryolearn.segmentation.predict_job import load_model, predict_job

NET = NetworkConfig(out_channels=3, filters=(4, 4), distance_prediction=True, class_names=["bg", "mem", "prot"],
                    backbone=BackboneConfig(num_filters=(4, 4, 8, 8), fpn_channels=4, dense_dim=4))


@pytest.fixture
def model_ckpt(tmp_path):
    torch.manual_seed(0)
    net = build_network(NET)
    with torch.no_grad():  # make the classes differ so that labels are not all one class
        net.heads.semantic_head[6].weight.mul_(20.0)
    cfg = SegmentationTrainConfig(patch_stores=["x.zarr"], log_dir=tmp_path, network=NET,
                                  intensity={"mean": 0.5, "std": 2.0})
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": {"config": cfg.to_dict(), "patch_shape": (16, 16, 16)}}, path)
    return path, net.eval()


@pytest.fixture
def tomogram(tmp_path):
    vol = np.random.default_rng(0).standard_normal((20, 30, 36)).astype(np.float32)
    path = tmp_path / "tomo.mrc"
    write_mrc(path, vol, voxel_size=(12.5, 12.5, 12.5), origin=(10.0, 20.0, 30.0))
    return path, vol


def test_predict_writes_labels_probabilities_distances_with_voxel_size(tmp_path, model_ckpt, tomogram):
    ckpt, net = model_ckpt
    tomo, vol = tomogram
    cfg = SegmentationPredictConfig(model=ckpt, input=tomo, output=tmp_path / "labels.mrc",
                                    probabilities=tmp_path / "probs.npy", distances=tmp_path / "dist.mrc",
                                    device="cpu")
    events = []
    out = run_job(predict_job(cfg), events.append)
    labels = read_mrc(out["output"])
    assert labels.data.dtype == np.uint8 and labels.data.shape == vol.shape
    assert labels.voxel_size == (12.5, 12.5, 12.5) and labels.origin == (10.0, 20.0, 30.0)
    probs = np.load(out["probabilities"])
    assert probs.shape == (3, *vol.shape)
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    assert [out[f"distances_{n}"] for n in ("bg", "mem", "prot")] == [
        tmp_path / "dist_bg.mrc", tmp_path / "dist_mem.mrc", tmp_path / "dist_prot.mrc"]
    assert "distances" not in out.outputs and out.get("probabilities") == tmp_path / "probs.npy" and not out.stopped
    # same as the operation on the array with the training intensity mapping (x - 0.5) / 2
    ref = sliding_window_predict(net, (vol - 0.5) / 2.0, (16, 16, 16), num_classes=3, probabilities_out=True,
                                 distances_out=True)
    assert np.array_equal(np.asarray(labels.data), ref.labels)
    assert len(np.unique(ref.labels)) > 1
    np.testing.assert_allclose(probs, ref.probabilities, atol=1e-5)
    d_mem = read_mrc(out["distances_mem"])
    np.testing.assert_allclose(np.asarray(d_mem.data), ref.distances[1], atol=1e-5)
    assert d_mem.voxel_size == (12.5, 12.5, 12.5)
    assert events[-1].message.startswith("wrote") and any(e.total == 2 * 3 * 4 for e in events)


def test_stop_leaves_nothing(tmp_path, model_ckpt, tomogram):
    stop = StopFlag()
    stop.set()
    cfg = SegmentationPredictConfig(model=model_ckpt[0], input=tomogram[0], output=tmp_path / "out" / "labels.mrc",
                                    probabilities=tmp_path / "out" / "p.mrc", device="cpu", batch_size=1)
    result = run_job(predict_job(cfg, stop))
    assert result.stopped and dict(result.outputs) == {}
    assert not list((tmp_path / "out").glob("*"))


def test_bad_input(tmp_path, model_ckpt, tomogram):
    ckpt, _ = model_ckpt
    tomo, _ = tomogram
    out = tmp_path / "labels.mrc"
    with pytest.raises(InputError, match="window"):
        run_job(predict_job(SegmentationPredictConfig(model=ckpt, input=tomo, output=out, window=(12, 16, 16))))
    with pytest.raises(InputError, match="missing.mrc"):
        run_job(predict_job(SegmentationPredictConfig(model=ckpt, input=tmp_path / "missing.mrc", output=out)))
    with pytest.raises(InputError, match="probabilities"):
        run_job(predict_job(SegmentationPredictConfig(model=ckpt, input=tomo, output=out,
                                                      probabilities=tmp_path / "p.h5")))
    no_dist = tmp_path / "nodist.ckpt"
    net_cfg = NET.model_copy(update={"distance_prediction": False})
    net = build_network(net_cfg)
    cfg = SegmentationTrainConfig(patch_stores=["x"], log_dir=tmp_path, network=net_cfg)
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": {"config": cfg.to_dict()}}, no_dist)
    with pytest.raises(InputError, match="no distance head"):
        run_job(predict_job(SegmentationPredictConfig(model=no_dist, input=tomo, output=out,
                                                      distances=tmp_path / "d.npy")))
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            run_job(predict_job(SegmentationPredictConfig(model=ckpt, input=tomo, output=out, device="cuda")))
    assert not out.exists()


def test_load_model_reads_cryosiam_semantic_checkpoints(tmp_path):
    net = build_network(NET)
    state = {f"_model_backbone.{k[9:]}": v for k, v in net.state_dict().items() if k.startswith("backbone.")}
    state.update({f"_model.{k[6:]}": v for k, v in net.state_dict().items() if k.startswith("heads.")})
    hp = {"config": {"parameters": {"network": {"out_channels": 3, "filters": [4, 4], "kernel_size": 3, "padding": 1,
                                                "distance_prediction": True, "dense_dim": 4},
                                    "data": {"patch_size": [24, 24, 24], "min": -3, "max": 3, "mean": 0.5,
                                             "std": 0.25}}},
          "backbone_config": {"parameters": {"network": {"block_type": "basic", "in_channels": 1,
                                                         "num_layers": [1, 1, 1, 1], "num_filters": [4, 4, 8, 8],
                                                         "fpn_channels": 4, "dense_dim": 4, "no_max_pool": True}}}}
    path = tmp_path / "cryosiam.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": hp}, path)
    model = load_model(path)
    assert model.patch_shape == (24, 24, 24) and model.network.out_channels == 3
    assert model.intensity.apply(np.array([3.0])) == pytest.approx((1.0 - 0.5) / 0.25)
    assert not model.net.training

"""architecture: unet (MONAI's U-Net for fresh training): trains from patch stores, its checkpoints
rebuild the right network for prediction, and a checkpoint that does not fit is an error."""

import numpy as np
import pytest
import torch

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.io import read_mrc, write_mrc
from napari_cryolearn.models.heads import SegmentationNet
from napari_cryolearn.models.unet import UNetSegmentationNet
from napari_cryolearn.segmentation.config import NetworkConfig, SegmentationPredictConfig, SegmentationTrainConfig
from napari_cryolearn.segmentation.network import build_network
from napari_cryolearn.segmentation.predict_job import load_model, predict_job
from napari_cryolearn.segmentation.train_job import train_job

UNET = {"architecture": "unet", "unet_channels": (4, 8, 16)}


@pytest.fixture
def train(run_collecting):
    return lambda cfg, stop=None, on=None: run_collecting(train_job(cfg, stop), on)


def test_a_new_run_trains_the_unet_and_a_checkpoint_keeps_its_network(tmp_path, blob_store, make_config, train):
    assert NetworkConfig().architecture == "auto"
    assert isinstance(build_network(NetworkConfig(architecture="cryosiam")), SegmentationNet)
    cfg = SegmentationTrainConfig(patch_stores=[blob_store], log_dir=tmp_path / "a", max_epochs=1, device="cpu",
                                  validation_ratio=0.0, network={"out_channels": 3, "unet_channels": (4, 8)})
    first, _ = train(cfg)
    assert SegmentationTrainConfig.from_yaml(tmp_path / "a" / "config.yaml").network.architecture == "unet"
    assert isinstance(load_model(first.last_checkpoint).net, UNetSegmentationNet)
    # auto when fine-tuning: the checkpoint's network, here the CryoSiam-compatible one (auto, given
    # the CryoSiam network's fields: that network)
    cryo, _ = train(make_config([blob_store], tmp_path / "c", max_epochs=1, validation_ratio=0.0,
                                network={"architecture": "auto"}))
    assert isinstance(load_model(cryo.last_checkpoint).net, SegmentationNet)
    tuned, _ = train(cfg.model_copy(update={"log_dir": tmp_path / "t", "pretrained_model": cryo.last_checkpoint}))
    assert isinstance(load_model(tuned.last_checkpoint).net, SegmentationNet)


@pytest.mark.parametrize("distances", [False, True])
def test_unet_has_the_output_contract_of_our_network(distances):
    net = build_network(NetworkConfig(out_channels=3, distance_prediction=distances, **UNET))
    assert isinstance(net, UNetSegmentationNet) and net.size_divisor == 4
    assert net.has_distance_head is distances
    logits, dist = net(torch.zeros(2, 1, 16, 24, 8))
    assert logits.shape == (2, 3, 16, 24, 8)
    assert (dist is None) if not distances else dist.shape == (2, 3, 16, 24, 8)
    assert all(k.startswith("backbone.") for k in net.state_dict())


def test_unet_trains_from_a_patch_store_and_predicts(tmp_path, blob_store_dist, make_blobs, make_config, train):
    cfg = make_config([blob_store_dist], tmp_path / "run", max_epochs=1,
                      network={**UNET, "distance_prediction": True})
    result, events = train(cfg)
    assert result.epochs == 1 and result.best_checkpoint.is_file()
    assert "train_distance_loss" in events[-1].metrics and "val_dice" in events[-1].metrics
    model = load_model(result.best_checkpoint)
    assert isinstance(model.net, UNetSegmentationNet) and model.network.architecture == "unet"
    assert model.network.unet_channels == (4, 8, 16) and model.patch_shape == (16, 16, 16)

    image, _ = make_blobs(shape=(20, 28, 36), seed=1)
    write_mrc(tmp_path / "tomo.mrc", image, voxel_size=(10, 10, 10))
    pcfg = SegmentationPredictConfig(model=result.best_checkpoint, input=tmp_path / "tomo.mrc",
                                     output=tmp_path / "labels.mrc", probabilities=tmp_path / "p.npy",
                                     distances=tmp_path / "d.npy", device="cpu")
    out = run_job(predict_job(pcfg))
    labels = read_mrc(out["output"])
    assert labels.data.shape == image.shape and labels.voxel_size == (10, 10, 10)
    probs = np.load(out["probabilities"])
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    dist = np.load(out["distances"])
    assert dist.shape == (3, *image.shape) and np.abs(dist).max() <= 5


def test_architecture_travels_with_a_pretrained_unet_and_cryosiam_weights_do_not_fit(
        tmp_path, blob_store, make_config, train):
    first, _ = train(make_config([blob_store], tmp_path / "a", max_epochs=1, validation_ratio=0.0, network=UNET))
    # the default config (cryosiam) starting from the U-Net's weights trains the U-Net
    second, _ = train(make_config([blob_store], tmp_path / "b", max_epochs=1, validation_ratio=0.0,
                                  pretrained_model=first.last_checkpoint))
    assert isinstance(load_model(second.last_checkpoint).net, UNetSegmentationNet)
    # a U-Net checkpoint whose config claims the CryoSiam network: the weights do not fit it
    ck = torch.load(first.last_checkpoint, weights_only=False)
    ck["hyper_parameters"]["config"]["network"]["architecture"] = "cryosiam"
    torch.save(ck, tmp_path / "claims_cryosiam.ckpt")
    with pytest.raises(InputError, match="does not fit"):
        load_model(tmp_path / "claims_cryosiam.ckpt")
    # a U-Net asked to start from weights of the CryoSiam network: refused before training
    cryo, _ = train(make_config([blob_store], tmp_path / "c", max_epochs=1, validation_ratio=0.0))
    ck = torch.load(cryo.last_checkpoint, weights_only=False)
    ck["hyper_parameters"]["config"]["network"]["architecture"] = "unet"
    torch.save(ck, tmp_path / "claims_unet.ckpt")
    with pytest.raises(InputError, match="does not fit"):
        train(make_config([blob_store], tmp_path / "d", max_epochs=1, pretrained_model=tmp_path / "claims_unet.ckpt"))
    with pytest.raises(InputError, match="unfreeze_backbone"):
        train(make_config([blob_store], tmp_path / "e", max_epochs=1, pretrained_model=first.last_checkpoint,
                          network={**UNET, "unfreeze_backbone": False}))

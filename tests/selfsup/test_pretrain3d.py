"""Dense 3D SimSiam pretraining (ssl.pretrain3d) and embedding volumes (ssl.embed3d): the views'
correspondence, CryoSiam's checkpoint layout, the hand-over to segmentation, bad input, stop and
resume, the command line and the CryoSiam fork's YAML. Tiny volumes and networks (CPU)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import run_job
from napari_cryolearn.engine.stop import StopFlag
from napari_cryolearn.io.mrc import read_mrc, write_mrc
from napari_cryolearn.selfsup.dense_views import (
    ViewGeometry,
    correspondence,
    rotation_matrix,
    sample_view,
    to_grid,
    view_pair,
)
from napari_cryolearn.selfsup.embed3d_job import embed3d_job
from napari_cryolearn.selfsup.pretrain3d_config import Embed3DConfig, Pretrain3DConfig
from napari_cryolearn.selfsup.pretrain3d_job import pretrain3d_job

TINY = {"backbone": {"num_filters": (4, 4, 8, 8), "fpn_channels": 4, "dense_dim": 4}, "dim": 8, "pred_dim": 4,
        "dense_pred_dim": 4, "patch_size": (24, 24, 24), "view_size": (16, 16, 16), "samples_per_epoch": 4,
        "batch_size": 2, "device": "cpu"}


def _cfg(tmp_path, data, **kw) -> Pretrain3DConfig:
    return Pretrain3DConfig.from_dict({**TINY, "data": data, "log_dir": tmp_path / "run", "max_epochs": 1, **kw})


@pytest.fixture(scope="module")
def tomogram(tmp_path_factory):
    from napari_cryolearn.sample.synthetic import make_synthetic_tomogram

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t = make_synthetic_tomogram((24, 32, 32), seed=3)
    path = tmp_path_factory.mktemp("tomo") / "tomo.mrc"
    return write_mrc(path, t.volume, voxel_size=(8.0, 8.0, 8.0))


@pytest.fixture(scope="module")
def pretrained(tomogram, tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    result = run_job(pretrain3d_job(
        _cfg(root, [tomogram], max_epochs=2)))
    return result


# -- the views' correspondence ------------------------------------------------------------------------


def _marked(shape, at):
    patch = torch.zeros((1, *shape))
    patch[(0, *at)] = 1.0
    return patch


@pytest.mark.parametrize("matrix", [
    np.diag([1.0, 1.0, -1.0]),                                # flip x
    rotation_matrix(0, np.pi / 2),                            # 90° in the y-x plane
    rotation_matrix(0, -np.pi / 2) @ np.diag([-1.0, 1.0, 1.0]),  # turn and flip z
])
def test_a_marked_voxel_lands_where_the_correspondence_says(matrix):
    shape, view = (20, 20, 20), (8, 8, 8)
    patch = _marked(shape, (9, 11, 8))
    g1 = ViewGeometry.identity((9.5, 9.5, 9.5))
    g2 = ViewGeometry(matrix, np.array([10.5, 10.5, 8.5]))
    v1, v2 = sample_view(patch, g1, view)[0], sample_view(patch, g2, view)[0]
    at1 = np.unravel_index(int(v1.argmax()), view)
    at2 = np.unravel_index(int(v2.argmax()), view)
    assert float(v1.max()) == pytest.approx(1.0) and float(v2.max()) == pytest.approx(1.0)
    coords, inside = correspondence(g1, g2, view)
    assert inside[at1]
    np.testing.assert_allclose(coords[at1], at2, atol=1e-9)
    back, inside21 = correspondence(g2, g1, view)
    assert inside21[at2]
    np.testing.assert_allclose(back[at2], at1, atol=1e-9)


def test_a_zoomed_view_finds_the_marked_voxel_too():
    shape, view = (24, 24, 24), (8, 8, 8)
    zz, yy, xx = np.meshgrid(*[np.arange(24.0)] * 3, indexing="ij")
    blob = np.exp(-((zz - 12) ** 2 + (yy - 13) ** 2 + (xx - 11) ** 2) / (2 * 1.5 ** 2))
    patch = torch.from_numpy(blob.astype(np.float32))[None]
    g1 = ViewGeometry.identity((11.5, 12.5, 11.5))
    g2 = ViewGeometry(rotation_matrix(0, np.pi / 2) / 2.0, np.array([12.2, 12.8, 11.0]))  # ×2 magnified, turned
    coords, inside = correspondence(g1, g2, view)
    v2 = sample_view(patch, g2, view)[0].numpy()
    at1 = np.unravel_index(int(sample_view(patch, g1, view)[0].argmax()), view)
    centre2 = np.array(np.unravel_index(int(v2.argmax()), view), float)
    assert inside[at1] and np.abs(coords[at1] - centre2).max() <= 1.0


def test_view_two_sampled_at_the_correspondence_reproduces_view_one():
    from scipy import ndimage

    from napari_cryolearn.selfsup.dense_simsiam import warp

    rng = np.random.default_rng(0)
    field = ndimage.gaussian_filter(rng.normal(size=(32, 32, 32)), 3).astype(np.float32)
    patch = torch.from_numpy(field / field.std())[None]
    for _ in range(5):
        g1, g2 = view_pair(rng, (32, 32, 32), (16, 16, 16), view_overlap=0.5)
        v1, v2 = sample_view(patch, g1, (16, 16, 16)), sample_view(patch, g2, (16, 16, 16))
        coords, inside = correspondence(g1, g2, (16, 16, 16))
        assert inside.mean() > 0.05
        back = warp(v2[None], to_grid(coords, (16, 16, 16))[None])[0, 0].numpy()
        err = np.abs(back - v1[0].numpy())[inside]
        assert err.mean() < 0.05 * np.abs(v1.numpy()).mean() + 0.02


def test_shifted_views_do_not_share_a_code_of_the_distance_to_their_centre():
    """The shortcut described in docs/stages/pretrain3d.md: a per-voxel code of the distance to
    the view's centre is invariant to turns and flips about it. With views 2x smaller than the patch
    and shifted by at least a quarter of a view it differs at corresponding voxels by over twice as
    much as with the old 40³ patches of 32³ views (centres at most 8 voxels apart)."""
    def mismatch(patch, min_shift):
        rng = np.random.default_rng(0)
        view = (32, 32, 32)
        centre = (np.asarray(view) - 1) / 2
        grid = np.stack(np.meshgrid(*[np.arange(32.0)] * 3, indexing="ij"), -1)
        gaps = []
        for _ in range(20):
            g1, g2 = view_pair(rng, (patch,) * 3, view, view_overlap=0.5, min_shift=min_shift)
            coords, inside = correspondence(g1, g2, view)
            r1 = np.linalg.norm(grid - centre, axis=-1)
            r2 = np.linalg.norm(coords - centre, axis=-1)
            gaps.append(np.abs(r1 - r2)[inside].mean())
        return float(np.mean(gaps))

    shifted, old = mismatch(64, 0.25), mismatch(40, 0.0)
    assert shifted > 5.0 and shifted > 2 * old  # measured: 6.7 and 3.0 voxels


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_the_level_correspondence_is_the_full_one_at_the_coarse_voxels(factor):
    """Voxel j of a map at 1/f shows full-resolution voxel f·j: its place in view 2's coarse map
    is the full-resolution correspondence of f·j divided by f, and a marked coarse voxel lands there."""
    from napari_cryolearn.selfsup.dense_simsiam import level_grid, warp

    shape = (32, 32, 32)
    g1 = ViewGeometry.identity((19.5, 19.5, 19.5))
    g2 = ViewGeometry(rotation_matrix(0, np.pi / 2) @ np.diag([1.0, -1.0, 1.0]), np.array([19.5, 19.5, 27.5]))
    coords, inside = correspondence(g1, g2, shape)
    grid, level_inside = level_grid(to_grid(coords, shape)[None], factor)
    direct = coords[::factor, ::factor, ::factor] / factor
    n = 32 // factor
    torch.testing.assert_close(grid[0], to_grid(direct, (n, n, n)), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(level_inside[0].numpy(), np.all((direct > -1e-6) & (direct < n - 1 + 1e-6), -1))
    assert level_inside.any() and not level_inside.all()
    # view 2's coarse map holding its own coordinates (trilinear sampling is exact on them) is read
    # back at view 1's coarse voxels as the places the correspondence gives
    own = torch.stack(torch.meshgrid(*[torch.arange(float(n))] * 3, indexing="ij"))[None]
    back = warp(own, grid)[0].movedim(0, -1).numpy()
    np.testing.assert_allclose(back[level_inside[0].numpy()], direct[level_inside[0].numpy()], atol=1e-4)


def test_level_losses_and_coarse_dropout_train_and_load_in_cryosiams_layout(tmp_path, tomogram):
    from napari_cryolearn.models.checkpoints import load_weights, read_checkpoint
    from napari_cryolearn.segmentation.config import NetworkConfig
    from napari_cryolearn.segmentation.network import build_network

    result = run_job(pretrain3d_job(_cfg(tmp_path, [tomogram], include_levels_loss=3, dropout_prob=1.0,
                                         include_global_loss=True)))
    assert {"train_dense", "train_global", "train_level_2", "train_level_4", "train_level_8"} <= set(result.metrics)
    total = result.metrics["train_loss"]
    parts = sum(result.metrics[k] for k in ("train_dense", "train_global", "train_level_2", "train_level_4",
                                            "train_level_8"))
    assert total == pytest.approx(parts, abs=1e-4)
    ckpt = torch.load(result.outputs["last"], map_location="cpu", weights_only=False)
    network = ckpt["hyper_parameters"]["config"]["parameters"]["network"]
    assert network["include_levels_loss"] == 3
    assert ckpt["hyper_parameters"]["config"]["parameters"]["transforms"]["drop_out_prob"] == 1.0
    theirs = _CryoSiamShaped(network)
    theirs.load_state_dict({k[len("_model."):]: v for k, v in ckpt["state_dict"].items()}, strict=True)
    net = build_network(NetworkConfig(out_channels=2, architecture="cryosiam",
                                      backbone={"num_filters": (4, 4, 8, 8), "fpn_channels": 4, "dense_dim": 4}))
    report = load_weights(net, result.outputs["last"], ckpt=read_checkpoint(result.outputs["last"]))
    assert {k.split(".")[1] for k in report.loaded} == {"encoder", "decoder", "projector"} and not report.skipped


def test_coarse_dropout_fills_small_holes_with_zero():
    from napari_cryolearn.selfsup.dense_views import coarse_dropout

    t = coarse_dropout((16, 16, 16), 1.0, 0.5)
    t.set_random_state(seed=3)
    view = t({"image": torch.full((1, 16, 16, 16), 0.5)})["image"]
    holes = float((torch.as_tensor(view) == 0).float().mean())
    # 6 to 32 holes of 1-4 voxels a side among 4096 voxels
    assert 6 / 4096 <= holes <= 32 * 64 / 4096
    assert coarse_dropout((16, 16, 16), 0.0, 0.5) is None


# -- checkpoints: CryoSiam's layout and the hand-over ---------------------------------------------------


def test_checkpoint_is_in_cryosiams_layout_and_loads_strictly(pretrained):
    from napari_cryolearn.selfsup.pretrain3d_module import build_dense_simsiam

    ckpt = torch.load(pretrained.outputs["last"], map_location="cpu", weights_only=False)
    state = ckpt["state_dict"]
    assert all(k.startswith("_model.") for k in state)
    for part in ("encoder", "decoder", "projector", "predictor", "global_projector", "global_predictor"):
        assert any(k.startswith(f"_model.{part}.") for k in state), part
    network = ckpt["hyper_parameters"]["config"]["parameters"]["network"]
    assert type(network) is dict and network["dense_dim"] == 4 and network["num_filters"] == [4, 4, 8, 8]
    # CryoSiam's loader: remove "_model." and load strictly into a DenseSimSiam built from the network dict
    net = build_dense_simsiam(network)
    net.load_state_dict({k[len("_model."):]: v for k, v in state.items()}, strict=True)
    torch.testing.assert_close(net.global_projector[6].weight, state["_model.encoder.fc.weight"])


class _CryoSiamShaped(torch.nn.Module):
    """CryoSiam's DenseSimSiam constructor, retyped from its source (``networks/nets/dense_simsiam.py``):
    MONAI's ResNet with ``num_classes=dim`` (its default first convolution), an FPN decoder, the
    global projector around ``encoder.fc``, the predictors and the dense projector."""

    def __init__(self, n):
        from monai.networks.nets import ResNet
        from torch import nn

        from napari_cryolearn.models.backbones import FPNDecoder

        super().__init__()
        self.encoder = ResNet(n["block_type"], list(n["num_layers"]), list(n["num_filters"]), n_input_channels=1,
                              no_max_pool=n["no_max_pool"], num_classes=n["dim"], spatial_dims=3,
                              act=("relu", {"inplace": False}))
        fpn, dim, dense = n["fpn_channels"], n["dim"], n["dense_dim"]
        self.decoder = FPNDecoder(list(n["num_filters"]), fpn)
        prev = self.encoder.fc.weight.shape[1]
        self.global_projector = nn.Sequential(nn.Linear(prev, prev, bias=False), nn.BatchNorm1d(prev), nn.ReLU(),
                                              nn.Linear(prev, prev, bias=False), nn.BatchNorm1d(prev), nn.ReLU(),
                                              self.encoder.fc, nn.BatchNorm1d(dim, affine=False))
        self.global_predictor = nn.Sequential(nn.Linear(dim, n["pred_dim"], bias=False),
                                              nn.BatchNorm1d(n["pred_dim"]), nn.ReLU(), nn.Linear(n["pred_dim"], dim))
        c, b = nn.Conv3d, nn.BatchNorm3d
        self.projector = nn.Sequential(c(fpn, fpn, 1, bias=False), b(fpn), nn.ReLU(), c(fpn, fpn, 1, bias=False), b(fpn),
                                       nn.ReLU(), c(fpn, dense, 1), b(dense, affine=False))
        self.predictor = nn.Sequential(c(dense, n["dense_pred_dim"], 1, bias=False), b(n["dense_pred_dim"]), nn.ReLU(),
                                       c(n["dense_pred_dim"], dense, 1))
        if n["include_levels_loss"]:  # CryoSiam builds the heads of all three levels
            for f in (2, 4, 8):
                setattr(self, f"level_projector_{f}", nn.Sequential(
                    c(fpn, fpn, 1, bias=False), b(fpn), nn.ReLU(), c(fpn, fpn, 1, bias=False), b(fpn), nn.ReLU(),
                    c(fpn, dense, 1), b(dense, affine=False)))
                setattr(self, f"level_predictor_{f}", nn.Sequential(
                    c(dense, n["dense_pred_dim"], 1, bias=False), b(n["dense_pred_dim"]), nn.ReLU(),
                    c(n["dense_pred_dim"], dense, 1)))


def test_checkpoint_loads_strictly_into_cryosiams_constructor(pretrained):
    ckpt = torch.load(pretrained.outputs["last"], map_location="cpu", weights_only=False)
    network = ckpt["hyper_parameters"]["config"]["parameters"]["network"]
    theirs = _CryoSiamShaped(network)
    theirs.load_state_dict({k[len("_model."):]: v for k, v in ckpt["state_dict"].items()}, strict=True)
    assert theirs.encoder.conv1.weight.shape[2:] == (7, 7, 7)


def test_segmentation_loads_the_encoder_and_decoder(pretrained, tmp_path):
    from napari_cryolearn.models.checkpoints import backbone_config_from_checkpoint, load_weights, read_checkpoint
    from napari_cryolearn.segmentation.config import NetworkConfig
    from napari_cryolearn.segmentation.network import build_network

    path = pretrained.outputs["last"]
    ckpt = read_checkpoint(path)
    backbone = backbone_config_from_checkpoint(ckpt, path)
    assert backbone.num_filters == (4, 4, 8, 8) and backbone.dense_dim == 4
    net = build_network(NetworkConfig(out_channels=2, architecture="cryosiam", backbone=backbone))
    report = load_weights(net, path, ckpt=ckpt)
    assert report.layout == "cryosiam_pretrain" and not report.skipped
    assert {k.split(".")[1] for k in report.loaded} == {"encoder", "decoder", "projector"}
    own = net.state_dict()
    for key in report.loaded:
        torch.testing.assert_close(own[key], ckpt["state_dict"]["_model." + key[len("backbone."):]])

    # and the training job says so
    from napari_cryolearn.segmentation.config import SegmentationTrainConfig
    from napari_cryolearn.segmentation.train_job import train_arrays_job

    rng = np.random.default_rng(0)
    image = rng.normal(size=(16, 16, 16)).astype(np.float32)
    labels = (image > 0.5).astype(np.uint8)
    cfg = SegmentationTrainConfig(log_dir=tmp_path / "seg", pretrained_model=path, max_epochs=1, batch_size=2,
                                  network=NetworkConfig(out_channels=2), preset="none", validation_ratio=0, device="cpu")
    events = []
    run_job(train_arrays_job([image, image], [labels, labels], cfg, patch_size=(16, 16, 16), overlap=0.0),
            events.append)
    [note] = [e for e in events if "loaded" in e.message and "pretrained model" in e.message]
    assert note.metrics["pretrained_loaded"] == len(report.loaded) and note.metrics["pretrained_skipped"] == 0


# -- bad input: refused before anything is written --------------------------------------------------------


def _refused(cfg, *words):
    with pytest.raises(InputError) as err:
        run_job(pretrain3d_job(cfg))
    for w in words:
        assert w in str(err.value)
    assert not cfg.log_dir.exists()
    return err.value


def test_bad_inputs_are_refused_naming_the_file(tmp_path, tomogram, pretrained):
    flat = write_mrc(tmp_path / "image2d.mrc", np.zeros((32, 32), np.float32))
    nan = np.zeros((24, 32, 32), np.float32)
    nan[20, 3, 4] = np.nan
    nan_path = write_mrc(tmp_path / "nan.mrc", nan)
    _refused(_cfg(tmp_path, []), "no tomogram")
    _refused(_cfg(tmp_path, [flat]), "image2d.mrc", "3D")
    _refused(_cfg(tmp_path, [nan_path]), "nan.mrc", "NaN", "slice 20")
    _refused(_cfg(tmp_path, [tomogram], patch_size=(48, 48, 48), view_size=(32, 32, 32)), "tomo.mrc", "larger")
    _refused(_cfg(tmp_path, [tmp_path / "missing.mrc"]), "missing.mrc", "not found")
    # a model of another network: a segmentation checkpoint as the start of a pretraining, and to embed with
    seg = tmp_path / "seg.ckpt"
    torch.save({"state_dict": {"net.backbone.encoder.conv1.weight": torch.zeros(1)}}, seg)
    _refused(_cfg(tmp_path, [tomogram], pretrained_model=seg), "seg.ckpt", "segmentation model")
    out = tmp_path / "emb"
    with pytest.raises(InputError, match="seg.ckpt.*not a DenseSimSiam"):
        run_job(embed3d_job(
            Embed3DConfig(model=seg, tomogram=tomogram, output_dir=out, device="cpu")))
    assert not out.exists()
    # pretrained from a DenseSimSiam of another size
    with pytest.raises(InputError, match="does not fit"):
        run_job(pretrain3d_job(
            _cfg(tmp_path, [tomogram], pretrained_model=pretrained.outputs["last"], dim=16)))


def test_config_refuses_views_larger_than_the_patch(tmp_path):
    with pytest.raises(InputError, match="larger than patch_size"):
        _cfg(tmp_path, ["t.mrc"], view_size=(32, 32, 32))


# -- stop and resume --------------------------------------------------------------------------------------


def test_stop_leaves_a_resumable_checkpoint(tmp_path, tomogram):
    cfg = _cfg(tmp_path, [tomogram], max_epochs=2, samples_per_epoch=8, progress_every_n_batches=1)
    stop = StopFlag()

    def on_event(e):
        if e.total and e.step >= 2:
            stop.set()

    stopped = run_job(pretrain3d_job(cfg, stop=stop), on_event)
    assert stopped.stopped and (tmp_path / "run" / "model" / "last.ckpt").is_file()
    with pytest.raises(InputError, match="already holds a training run"):
        run_job(pretrain3d_job(cfg))
    resumed = run_job(pretrain3d_job(cfg.model_copy(update={"continue_training": True})))
    assert not resumed.stopped and resumed.epochs == 2
    assert 0.0 <= resumed.metrics["collapse_level"] <= 1.0


# -- embedding volumes ------------------------------------------------------------------------------------


def test_embed3d_writes_rgb_and_clusters_at_the_tomograms_voxel_size(pretrained, tomogram, tmp_path):
    cfg = Embed3DConfig(model=pretrained.outputs["last"], tomogram=tomogram, output_dir=tmp_path / "emb", clusters=3,
                        window=(16, 16, 16), device="cpu")
    result = run_job(embed3d_job(cfg))
    for c in "rgb":
        vol = read_mrc(result.outputs[f"pca_{c}"])
        assert vol.data.shape == (24, 32, 32) and tuple(vol.voxel_size) == (8.0, 8.0, 8.0)
        assert 0.0 <= float(vol.data.min()) and float(vol.data.max()) <= 1.0
    labels = read_mrc(result.outputs["clusters"]).data
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {1, 2, 3}
    counts = np.bincount(labels.ravel())[1:]
    assert counts[0] == counts.max()  # 1 the largest
    with pytest.raises(InputError, match="exists"):
        run_job(embed3d_job(cfg))


# -- the command line and the CryoSiam fork's YAML ---------------------------------------------------------


def test_command_line_pretrains_and_embeds(tmp_path, tomogram):
    from napari_cryolearn.cli import main

    run = tmp_path / "run"
    args = ["ssl", "pretrain3d", str(tomogram), "--log-dir", str(run), "--max-epochs", "1", "--samples-per-epoch", "2",
            "--batch-size", "2", "--patch-size", "16", "16", "16", "--view-size", "16", "16", "16",
            "--backbone-num-filters", "4", "4", "4", "4", "--backbone-fpn-channels", "4", "--backbone-dense-dim", "4",
            "--dim", "8", "--pred-dim", "4", "--dense-pred-dim", "4", "--device", "cpu"]
    assert main(args) == 0
    assert main(["ssl", "embed3d", str(run / "model" / "last.ckpt"), str(tomogram), "--output-dir", str(tmp_path / "e"),
                 "--device", "cpu"]) == 0
    assert (tmp_path / "e" / "tomo_clusters.mrc").is_file()


def test_cryosiam_fork_yaml(tmp_path):
    import yaml

    (tmp_path / "data").mkdir()
    for name in ("a.mrc", "b.mrc", "c.mrc"):
        (tmp_path / "data" / name).write_bytes(b"")
    fork = {"data_folder": str(tmp_path / "data"), "val_files": ["c.mrc"], "log_dir": str(tmp_path / "run"),
            "parameters": {"gpu_devices": 2, "data": {"patch_size": [96, 96, 96], "view_size": [48, 48, 48],
                                                      "view_overlap": 0.4, "min": 0, "max": 1},
                           "transforms": {"noise_sigma_range": [0.1, 0.2], "drop_out_prob": 0.5, "drop_out": 0.3},
                           "network": {"block_type": "basic", "num_filters": [16, 32, 64, 128], "fpn_channels": 32,
                                       "dim": 256, "pred_dim": 64, "dense_dim": 64, "dense_pred_dim": 16,
                                       "include_levels_loss": True, "weight_dense_loss": 0.7}},
            "hyper_parameters": {"batch_size": 10, "lr": 0.5, "max_epochs": 200, "lr_warmup_epochs": 5}}
    path = tmp_path / "fork.yaml"
    path.write_text(yaml.safe_dump(fork))
    import argparse

    from napari_cryolearn.cli_flags import configs_from_args

    [cfg] = configs_from_args(argparse.Namespace(config=path), Pretrain3DConfig, ("data",))
    assert [p.name for p in cfg.data] == ["a.mrc", "b.mrc"] and [p.name for p in cfg.val_data] == ["c.mrc"]
    assert cfg.view_size == (48, 48, 48) and cfg.view_overlap == 0.4 and cfg.gpu_devices == 2
    assert cfg.backbone.num_filters == (16, 32, 64, 128) and cfg.backbone.dense_dim == 64 and cfg.dense_pred_dim == 16
    # the fork's SGD rate: lr * batch / 256
    assert cfg.optimizer == "sgd" and cfg.lr == pytest.approx(0.5 * 10 / 256) and cfg.batch_size == 10
    assert cfg.weight_dense_loss == 0.7 and cfg.include_global_loss  # the fork's default, not ours
    assert cfg.include_levels_loss == 3 and cfg.dropout_prob == 0.5 and cfg.dropout == 0.3
    assert cfg.transforms.noise_sigma_range == (0.1, 0.2) and cfg.intensity.max == 1
    assert cfg.cryosiam_dict()["parameters"]["network"]["dense_dim"] == 64

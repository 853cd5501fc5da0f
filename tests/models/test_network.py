import pytest
import torch

from napari_cryolearn.segmentation.config import BackboneConfig, NetworkConfig
from napari_cryolearn.models.backbones import DenseBackbone
from napari_cryolearn.segmentation.network import build_network


def test_output_shapes_and_full_resolution():
    net = build_network(NetworkConfig(out_channels=4, distance_prediction=True,
                                      backbone=BackboneConfig(num_filters=(4, 8, 8, 8), fpn_channels=8, dense_dim=8)))
    logits, dist = net(torch.randn(2, 1, 16, 24, 40))
    assert logits.shape == (2, 4, 16, 24, 40)
    assert dist.shape == (2, 4, 16, 24, 40)
    assert net.size_divisor == 8


def test_no_distance_head_by_default():
    net = build_network(NetworkConfig(out_channels=2))
    logits, dist = net(torch.randn(1, 1, 16, 16, 16))
    assert dist is None and net.heads.distance_head is None


def test_state_dict_keys_follow_cryosiam_layout():
    net = build_network(NetworkConfig(out_channels=3, distance_prediction=True))
    keys = set(net.state_dict())
    for k in ("backbone.encoder.conv1.weight", "backbone.encoder.bn1.running_mean",
              "backbone.encoder.layer4.0.conv1.weight", "backbone.decoder.layer1.weight",
              "backbone.decoder.layer4.bias", "backbone.projector.0.weight", "backbone.projector.6.bias",
              "backbone.projector.7.running_var", "heads.semantic_head.0.weight", "heads.semantic_head.1.weight",
              "heads.semantic_head.3.weight", "heads.semantic_head.4.running_mean", "heads.semantic_head.6.bias",
              "heads.distance_head.6.weight"):
        assert k in keys, k
    # first convolution: 7^3, stride 1 (full resolution kept)
    conv1 = net.backbone.encoder.conv1
    assert conv1.kernel_size == (7, 7, 7) and conv1.stride == (1, 1, 1)
    # projector's last BN is not affine (CryoSiam)
    assert "backbone.projector.7.weight" not in keys


def test_bottleneck_decoder_reads_expanded_channels():
    bb = DenseBackbone(block_type="bottleneck", num_filters=(4, 8, 8, 8), fpn_channels=8, dense_dim=6)
    assert bb.decoder.layer4.in_channels == 16 and bb.decoder.layer1.in_channels == 32
    assert bb(torch.randn(2, 1, 8, 8, 8)).shape == (2, 6, 8, 8, 8)


@pytest.mark.parametrize(("backbone", "decoder", "trainable"), [
    (True, True, {"encoder", "decoder", "projector", "heads"}),
    (False, True, {"decoder", "projector", "heads"}),
    (False, False, {"heads"}),
])
def test_fine_tuning_switches(backbone, decoder, trainable):
    net = build_network(NetworkConfig(out_channels=2))
    net.set_trainable(backbone=backbone, decoder=decoder)
    parts = {"encoder": net.backbone.encoder, "decoder": net.backbone.decoder,
             "projector": net.backbone.projector, "heads": net.heads}
    for name, mod in parts.items():
        flags = {p.requires_grad for p in mod.parameters()}
        assert flags == {name in trainable}, name


def test_2d_backbone_and_heads_have_the_3d_names_with_2d_kernels():
    from napari_cryolearn.models.heads import SegmentationNet, SemanticHeads

    kw = dict(num_filters=(4, 8, 8, 8), fpn_channels=8, dense_dim=8)
    nets = {d: SegmentationNet(DenseBackbone(**kw, spatial_dims=d),
                               SemanticHeads(8, 3, (8, 8), distance_prediction=True, spatial_dims=d))
            for d in (2, 3)}
    s2, s3 = nets[2].state_dict(), nets[3].state_dict()
    assert list(s2) == list(s3)
    assert s3["backbone.encoder.conv1.weight"].shape == (4, 1, 7, 7, 7)
    assert s2["backbone.encoder.conv1.weight"].shape == (4, 1, 7, 7)
    logits, dist = nets[2].eval()(torch.zeros(2, 1, 16, 24))
    assert logits.shape == (2, 3, 16, 24) and dist.shape == (2, 3, 16, 24)
    with pytest.raises(ValueError, match="spatial_dims"):
        DenseBackbone(**kw, spatial_dims=1)

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from napari_cryolearn.segmentation.config import BackboneConfig, NetworkConfig
from napari_cryolearn.models.sliding_window import sliding_window_predict
from napari_cryolearn.segmentation.network import build_network


class SmallFCN(nn.Module):
    """Fully convolutional, receptive-field radius 2, BN in eval mode."""

    def __init__(self, classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv3d(1, 6, 3, padding=1), nn.BatchNorm3d(6), nn.ReLU(),
                                  nn.Conv3d(6, classes, 3, padding=1))
        with torch.no_grad():
            self.body[1].running_mean.uniform_(-0.2, 0.2)
            self.body[1].running_var.uniform_(0.5, 2)
        self.eval()

    def forward(self, x):
        return self.body(x), None


def _volume(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_equals_whole_volume_prediction_for_a_fully_convolutional_net():
    net = SmallFCN()
    vol = _volume((21, 37, 30))  # not a multiple of the window along any axis
    with torch.no_grad():
        whole = torch.softmax(net(torch.from_numpy(vol)[None, None])[0], 1)[0].numpy()
    pred = sliding_window_predict(net, vol, (8, 16, 12), num_classes=3, overlap=0.5, margin=2, batch_size=3,
                                  probabilities_out=True)
    np.testing.assert_allclose(pred.probabilities, whole, atol=1e-5)
    assert np.array_equal(pred.labels, whole.argmax(0))
    assert pred.labels.dtype == np.uint8


def test_without_margin_interior_window_borders_differ_but_centres_agree():
    net = SmallFCN()
    vol = _volume((21, 37, 30))
    with torch.no_grad():
        whole = torch.softmax(net(torch.from_numpy(vol)[None, None])[0], 1)[0].numpy()
    pred = sliding_window_predict(net, vol, (8, 16, 12), num_classes=3, overlap=0.5, probabilities_out=True)
    err = np.abs(pred.probabilities - whole)
    assert err.max() > 1e-4  # window borders see zero padding...
    assert np.mean(pred.labels == whole.argmax(0)) > 0.9  # ...but blending keeps most labels (random net on noise)


def test_matches_monai_sliding_window_inference_with_gaussian_blending():
    cfg = NetworkConfig(out_channels=3, filters=(8, 8),
                        backbone=BackboneConfig(num_filters=(4, 8, 8, 8), fpn_channels=8, dense_dim=8))
    torch.manual_seed(0)
    net = build_network(cfg).eval()
    vol = _volume((20, 40, 44), seed=1)
    pred = sliding_window_predict(net, vol, (16, 24, 24), num_classes=3, overlap=0.5, batch_size=2,
                                  probabilities_out=True)
    with torch.no_grad():
        ref = sliding_window_inference(torch.from_numpy(vol)[None, None], (16, 24, 24), 2,
                                       lambda x: torch.softmax(net(x)[0], 1), overlap=0.5, mode="gaussian")
    np.testing.assert_allclose(pred.probabilities, ref[0].numpy(), atol=2e-3)


def test_outputs_smaller_than_window_tta_threshold_and_given_buffers():
    net = SmallFCN(classes=2)
    vol = _volume((5, 30, 9))
    labels_out = np.full(vol.shape, 7, np.uint8)
    probs = np.zeros((2, *vol.shape), np.float32)
    pred = sliding_window_predict(net, vol, (8, 16, 16), num_classes=2, overlap=0.25, tta_flips=True,
                                  probabilities_out=probs, labels_out=labels_out)
    assert pred.labels is labels_out and pred.probabilities is probs
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    assert set(np.unique(labels_out)) <= {0, 1}
    strict = sliding_window_predict(net, vol, (8, 16, 16), num_classes=2, threshold=0.99)
    assert np.all(strict.labels[probs.max(0) < 0.98] == 0)


def test_distances_progress_and_stop():
    cfg = NetworkConfig(out_channels=2, filters=(4, 4), distance_prediction=True,
                        backbone=BackboneConfig(num_filters=(4, 4, 4, 4), fpn_channels=4, dense_dim=4))
    net = build_network(cfg).eval()
    vol = _volume((16, 24, 40))
    seen = []
    pred = sliding_window_predict(net, vol, (8, 16, 16), num_classes=2, distances_out=True,
                                  on_progress=lambda d, t: seen.append((d, t)), batch_size=4)
    assert pred.distances.shape == (2, 16, 24, 40) and np.abs(pred.distances).max() <= 5.0
    assert seen[-1][0] == seen[-1][1] == 3 * 2 * 4
    assert sliding_window_predict(net, vol, (8, 16, 16), num_classes=2, stop=lambda: True) is None
    with pytest.raises(ValueError, match="margin"):
        sliding_window_predict(net, vol, (8, 16, 16), num_classes=2, margin=3)


class SmallFCN2D(nn.Module):
    """The 2D twin of :class:`SmallFCN` (receptive-field radius 2), returning logits and raw distances."""

    def __init__(self, classes=3):
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 2 * classes, 3, padding=1))
        self.classes = classes
        self.eval()

    def forward(self, x):
        out = self.body(x)
        return out[:, :self.classes], out[:, self.classes:]


def test_2d_images_equal_whole_image_prediction_with_distances_and_flips():
    net = SmallFCN2D()
    img = _volume((37, 30), seed=3)  # not a multiple of the window along either axis
    with torch.no_grad():
        logits, raw = net(torch.from_numpy(img)[None, None])
    whole = torch.softmax(logits, 1)[0].numpy()
    pred = sliding_window_predict(net, img, (16, 12), num_classes=3, overlap=0.5, margin=2, batch_size=3,
                                  probabilities_out=True, distances_out=True)
    assert pred.labels.shape == (37, 30) and pred.probabilities.shape == (3, 37, 30)
    np.testing.assert_allclose(pred.probabilities, whole, atol=1e-5)
    np.testing.assert_allclose(pred.distances, 5 * np.tanh(raw[0].numpy()), atol=1e-5)
    assert np.array_equal(pred.labels, whole.argmax(0))
    events = []
    flipped = sliding_window_predict(net, img, (16, 16), num_classes=3, tta_flips=True,
                                     on_progress=lambda d, t: events.append((d, t)))
    assert events[-1] == (12, 12) and flipped.labels.shape == (37, 30)  # starts 0, 8, 16, 21 × 0, 8, 14
    with pytest.raises(ValueError, match="window"):
        sliding_window_predict(net, img, (16, 16, 16), num_classes=3)

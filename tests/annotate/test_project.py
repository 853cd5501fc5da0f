"""The project folder: format, values and channels, accepting a prediction, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cryolearn.annotate.project import IGNORE, accept_prediction, create_project, open_project
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io.mrc import write_mrc


@pytest.fixture
def tomogram(tmp_path):
    return write_mrc(tmp_path / "t.mrc", np.random.default_rng(0).normal(size=(8, 16, 16)).astype("float32"),
                     voxel_size=7.0)


def test_a_project_reopens_with_its_classes_and_annotations(tmp_path, tomogram):
    ann = np.zeros((8, 16, 16), np.uint8)
    ann[2, 3:5, 3:5] = 3
    create_project(tmp_path / "p", tomogram, ["ice,membrane", "particle"], background="ice", annotations=ann)
    project = open_project(tmp_path / "p")
    assert project.class_names == ["ice", "membrane", "particle"]
    assert project.meta.voxel_size == (7.0, 7.0, 7.0) and project.meta.shape == (8, 16, 16)
    assert np.array_equal(project.read_annotations(), ann)
    assert project.tomogram_path.resolve() == tomogram.resolve()
    assert project.latest_model() is None and project.next_round().name == "round_001"


def test_background_goes_to_channel_zero_and_unannotated_is_ignored(tmp_path, tomogram):
    project = create_project(tmp_path / "p", tomogram, ["membrane", "ice", "particle"], background="ice")
    assert project.channel_names() == ["ice", "membrane", "particle"]
    ann = np.array([0, 1, 2, 3], np.uint8)
    assert project.training_labels(ann).tolist() == [IGNORE, 1, 0, 2]
    # the prediction layer: background 0, another class its annotation value
    assert project.prediction_values(np.array([0, 1, 2])).tolist() == [0, 1, 3]


def test_accepting_a_prediction_fills_only_unannotated_voxels_of_the_region():
    ann = np.zeros((3, 4), np.uint8)
    ann[1, 0] = 2
    pred = np.array([[0, 2, 2, 0]] * 3, np.uint8)
    changed = accept_prediction(ann, pred, background_value=1, region=(slice(1, 2),))
    assert changed == 3 and ann[1].tolist() == [2, 2, 2, 1] and not ann[0].any() and not ann[2].any()
    ann2 = np.zeros((3, 4), np.uint8)
    accept_prediction(ann2, pred, background_value=1, value=2)
    assert set(np.unique(ann2)) == {0, 2}


@pytest.mark.parametrize("classes, background, message", [
    (["membrane"], None, "at least two classes"),
    (["a", "a"], None, "must differ"),
    (["a", "b"], "c", "not one of the classes"),
])
def test_bad_classes_are_refused_before_anything_is_written(tmp_path, tomogram, classes, background, message):
    with pytest.raises(InputError, match=message):
        create_project(tmp_path / "p", tomogram, classes, background=background)
    assert not (tmp_path / "p").exists()


def test_annotations_of_another_shape_are_refused(tmp_path, tomogram):
    with pytest.raises(InputError, match="annotations of shape"):
        create_project(tmp_path / "p", tomogram, ["a", "b"], annotations=np.zeros((8, 16, 15), np.uint8))
    assert not (tmp_path / "p").exists()


def test_the_loss_ignores_unannotated_voxels():
    """Changing the network's output (or the image) where nothing is annotated changes neither the
    loss nor its gradient anywhere."""
    from napari_cryolearn.segmentation.losses import SegmentationLoss

    torch.manual_seed(0)
    loss = SegmentationLoss(num_classes=3, ignore_index=IGNORE, use_dice=True, dice_type="dice", class_weights=[1, 2, 3])
    labels = torch.full((1, 8, 8, 8), IGNORE, dtype=torch.long)
    labels[0, 2, :4] = 1
    labels[0, 5, 4:] = 0
    labels[0, 6, 2:5] = 2
    logits = torch.randn(1, 3, 8, 8, 8, requires_grad=True)
    changed = logits.detach().clone()
    changed[:, :, labels[0] == IGNORE] = torch.randn_like(changed[:, :, labels[0] == IGNORE]) * 10
    changed.requires_grad_(True)
    a, b = loss(logits, labels), loss(changed, labels)
    a, b = (a.total if hasattr(a, "total") else a), (b.total if hasattr(b, "total") else b)
    assert torch.allclose(a, b)
    a.backward()
    b.backward()
    ignored = labels[0] == IGNORE
    assert torch.allclose(logits.grad, changed.grad)
    assert logits.grad[:, :, ignored].abs().max() == 0

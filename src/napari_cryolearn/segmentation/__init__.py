"""3D semantic segmentation: network, losses, augmentation, training and prediction.

Read it bottom-up: :mod:`.network` (CryoSiam-compatible dense backbone + heads),
:mod:`.losses`, :mod:`.augment`, :mod:`.inference` (sliding windows) are operations on
arrays and tensors; :mod:`.module` is the Lightning module; :mod:`.train_job` and
:mod:`.predict_job` are the file-level jobs; :mod:`.checkpoints` reads our and CryoSiam's
checkpoints. Nothing here imports Qt or napari.
"""

from napari_cryolearn.segmentation.config import (
    BackboneConfig,
    IntensityConfig,
    NetworkConfig,
    SegmentationPredictConfig,
    SegmentationTrainConfig,
    TransformsConfig,
)
from napari_cryolearn.segmentation.inference import Prediction, iter_sliding_window, sliding_window_predict
from napari_cryolearn.segmentation.losses import SegmentationLoss, dice_counts, dice_from_counts
from napari_cryolearn.segmentation.network import (
    DenseBackbone,
    SegmentationNet,
    SemanticHeads,
    build_network,
)

__all__ = [
    "BackboneConfig",
    "DenseBackbone",
    "IntensityConfig",
    "NetworkConfig",
    "Prediction",
    "SegmentationLoss",
    "SegmentationNet",
    "SegmentationPredictConfig",
    "SegmentationTrainConfig",
    "SemanticHeads",
    "TransformsConfig",
    "build_network",
    "dice_counts",
    "dice_from_counts",
    "iter_sliding_window",
    "sliding_window_predict",
]

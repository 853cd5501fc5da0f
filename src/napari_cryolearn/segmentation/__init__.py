"""3D semantic segmentation: configs, losses, the Lightning module, training and prediction.

The shared model parts (backbone, heads, checkpoint loading, augmentation, sliding-window
inference) are in :mod:`napari_cryolearn.models`; training runs on the engine's harness
(:mod:`napari_cryolearn.engine.training`). Here: :mod:`.config`, :mod:`.network` (the network
a :class:`NetworkConfig` describes), :mod:`.losses`, :mod:`.data` (patch sources and loaders),
:mod:`.module` (the Lightning module), and the jobs :mod:`.train_job`, :mod:`.predict_job`,
:mod:`.predict_array`. Nothing here imports Qt or napari. The names below are imported from
:mod:`.config` when first used (see :mod:`napari_cryolearn._lazy`): importing the package imports
none of its modules.
"""

from napari_cryolearn._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "IntensityConfig": "config",
        "NetworkConfig": "config",
        "SegmentationPredictConfig": "config",
        "SegmentationTrainConfig": "config",
    },
)
del attach

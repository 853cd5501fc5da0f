"""Model parts every learning stage shares, in 2D and 3D.

- :mod:`.config`: the architecture and augmentation configs (pydantic only, no torch);
- :mod:`.backbones`: the dense encoder-decoder backbone (CryoSiam's ``DenseSimSiam`` layout);
- :mod:`.heads`: the semantic and distance heads, and the backbone + heads network;
- :mod:`.checkpoints`: reading weights from our, CryoSiam's and SimSiam-ImageNet checkpoints;
- :mod:`.augment`: MONAI dictionary augmentations of image / labels / distances samples;
- :mod:`.sliding_window`: blended sliding-window inference over a whole image or volume.

Importing this package imports nothing; import the module you need (or use it as an attribute,
``napari_cryolearn.models.heads``, which imports it then: see :mod:`napari_cryolearn._lazy`).
"""

from napari_cryolearn._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {})
del attach

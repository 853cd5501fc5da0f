"""napari-cryolearn: cryo-ET / cryo-EM deep learning in napari, in Python and on the command line.

Nothing imported here pulls in Qt or napari: the operations, jobs and the ``cryolearn``
command run headless. Importing the package imports none of its subpackages; each one is
imported when first used (``napari_cryolearn.io`` after ``import napari_cryolearn``).
"""

from napari_cryolearn._lazy import attach

__version__ = "0.1.0"

__getattr__, __dir__, _ = attach(__name__, {})
__all__ = ["__version__"]
del attach, _

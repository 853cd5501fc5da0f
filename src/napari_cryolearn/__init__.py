"""napari-cryolearn: cryo-ET / cryo-EM deep learning in napari, in Python and on the command line.

Nothing imported here pulls in Qt or napari: the operations, jobs and the ``cryolearn``
command run headless.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

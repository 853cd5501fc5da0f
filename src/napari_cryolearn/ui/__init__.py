"""Everything that imports Qt or napari: reader/writer hooks, sample data, widgets.

Importing the package imports none of its modules (see :mod:`napari_cryolearn._lazy`).
"""

from napari_cryolearn._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {})
del attach

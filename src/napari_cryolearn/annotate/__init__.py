"""The annotate → train → correct loop (#23): a project folder and one round of it.

- :mod:`.project`: the folder format (tomogram path, classes and colours, annotations, rounds),
  the mapping between annotation values and network channels, accepting a prediction;
- :mod:`.round_job`: the jobs ``annotate.init`` and ``annotate.round`` (train warm-started on
  the sparse annotations, predict the whole tomogram, metrics).

The dock widget "Annotate & train" (:mod:`napari_cryolearn.ui.annotate_widget`) runs the same
functions. Nothing here imports Qt or napari; importing the package imports none of its modules.
"""

"""The annotate → train → correct loop (#23): a project folder and one round of it.

- :mod:`.project`: the folder format (tomogram path, classes and colours, annotations, rounds),
  the mapping between annotation values and network channels, accepting a prediction;
- :mod:`.round_job`: the jobs ``annotate.init`` and ``annotate.round`` (train warm-started on
  the sparse annotations, predict the whole tomogram, metrics).

The dock widget "Annotate & train" (:mod:`napari_cryolearn.ui.annotate_widget`) runs the same
functions. Nothing here imports Qt or napari; importing the package imports none of its modules.
"""

from napari_cryolearn._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "AnnotateInitConfig": "round_job",
        "AnnotateRoundConfig": "round_job",
        "Project": "project",
        "create_project": "project",
        "open_project": "project",
    },
)
del attach

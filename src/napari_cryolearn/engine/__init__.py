"""Pieces every stage shares: configs, progress events, stop flags, atomic writes, the
job runner and the stage registry. Nothing here imports Qt or napari.

The names below are imported from their modules when first used (see
:mod:`napari_cryolearn._lazy`): importing the package imports none of them.
"""

from napari_cryolearn._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "Config": "config",
        "InputError": "errors",
        "JobStopped": "jobs",
        "Progress": "progress",
        "StopFlag": "stop",
        "atomic_dir": "atomic",
        "atomic_path": "atomic",
        "run_job": "jobs",
    },
)
del attach

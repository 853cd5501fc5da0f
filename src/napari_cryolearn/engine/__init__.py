"""Pieces every stage shares: configs, progress events, stop flags, atomic writes, the
job runner and the stage registry. Nothing here imports Qt or napari."""

from napari_cryolearn.engine.atomic import atomic_dir, atomic_path
from napari_cryolearn.engine.config import Config
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.jobs import JobStopped, run_job
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.engine.stop import StopFlag

__all__ = [
    "Config",
    "InputError",
    "JobStopped",
    "Progress",
    "StopFlag",
    "atomic_dir",
    "atomic_path",
    "run_job",
]

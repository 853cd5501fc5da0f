"""Running a file-level stage over a folder: one job per input file, from the stage registry.

:mod:`.plan` maps a folder of inputs (and paired folders) to one config per file, :mod:`.log`
keeps the run log that makes a batch resumable, :mod:`.runner` runs the files (here, in
worker processes, or on a Dask cluster) and :mod:`.job` is the batch as a job, which
``cryolearn batch`` and the *Batch* widget drive.
"""

from napari_cryolearn._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "BatchConfig": "job",
        "BatchResult": "job",
        "batch_job": "job",
        "plan_batch": "plan",
        "FileTask": "plan",
        "shard": "plan",
        "LogRow": "log",
        "read_logs": "log",
        "run_one": "runner",
        "Outcome": "runner",
    },
)
del attach

"""The registry of stages: one place that the CLI, the widgets, the demo and the batch runner read.

A stage is registered once, with its config class and its job function given as import paths
(``"package.module:name"``), so that listing the stages (``cryolearn --help``) imports neither
torch nor any stage's code; a stage's modules load when it runs. A stage also names its input
and output fields and their kinds (:class:`Port`), which is what a widget needs to offer layer
pickers and to open the results, and what a batch runner needs to map folders of inputs to
outputs. File-level stages (those that map input files to output files) are what a batch
runner iterates over folders.

The engine knows no stage: the suite's own stages register themselves in
:mod:`napari_cryolearn.stages`, which the CLI and the widgets import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def resolve(target: str | Any) -> Any:
    """``"pkg.module:attr"`` → the attribute (non-strings are returned as they are)."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


#: Kinds of data a stage reads or writes; a widget offers a layer of the matching type for an
#: input of the first four, and opens an output of the first five, or a mesh, as a layer.
KINDS = ("tomogram", "labels", "points", "micrographs", "distances", "patch_store", "model", "run", "config",
         "mesh", "table", "file_list", "scan4d")


#: The file name ending of each kind, for a port that does not give its own ("" is a folder).
SUFFIXES = {"tomogram": ".mrc", "labels": ".mrc", "points": ".star", "micrographs": ".mrc", "distances": ".npy",
            "patch_store": ".zarr", "model": ".ckpt", "run": "", "config": ".yaml",
            "mesh": ".h5", "table": ".csv", "file_list": ".txt", "scan4d": ".npy"}


@dataclass(frozen=True)
class Port:
    """One input or output of a stage: the config field that holds its path, and its kind.

    ``optional``: the field may be left unset. ``suffix``: how a file of this port's name ends
    (default: the kind's, :data:`SUFFIXES`); a widget names its temporary files with it.
    """

    field: str
    kind: str
    optional: bool = False
    suffix: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; known: {', '.join(KINDS)}")

    @property
    def file_suffix(self) -> str:
        """``suffix``, or the kind's (``".mrc"`` for a tomogram, ``""`` for a run folder)."""
        return SUFFIXES[self.kind] if self.suffix is None else self.suffix


@dataclass(frozen=True)
class Stage:
    """One stage of the suite.

    Attributes
    ----------
    name:
        Dotted name, also the CLI's words for it: ``"prep.scale"`` is ``cryolearn prep scale``.
    config:
        Its :class:`~napari_cryolearn.engine.config.Config` class, or its import path.
    job:
        ``job(config, stop=None) -> Generator[Progress, None, result]``, or its import path.
    summary:
        One line for ``--help`` and the batch widget.
    per_file:
        True when the job maps input files to output files (batch-able).
    order:
        Position in the pipeline; ``cryolearn demo`` runs stages in this order.
    demo:
        ``demo(outputs, workdir, quick) -> Config | None`` (or its import path): the stage's
        config for the demo, built from the paths earlier stages produced (``outputs``: name ->
        Path; ``quick``: a smaller, faster run); it
        adds what the stage will write to ``outputs``; ``None`` skips the stage.
    cli_positionals:
        Config fields taken as positional arguments on the command line, in order.
    inputs, outputs:
        The config fields that name the files the job reads and writes (:class:`Port`). The
        CLI checks that each required input exists and is readable before it imports the job
        (:func:`napari_cryolearn.engine.inputs.check_inputs`).
    widget:
        Import path of the stage's napari dock widget (``"pkg.module:name"``), or ``None`` for
        a stage without one: ``"napari_cryolearn.ui.stage_widget:<name with _ for .>"`` is the
        form built from the config (:mod:`napari_cryolearn.ui.stage_widget`), any other path a
        custom widget. Its ``napari.yaml`` entry is checked against this by a test.
    title:
        The widget's name in napari's *Plugins* menu.
    """

    name: str
    config: Any
    job: Any
    summary: str
    per_file: bool = False
    order: int = 100
    demo: Any = None
    cli_positionals: tuple[str, ...] = ()
    inputs: tuple[Port, ...] = ()
    outputs: tuple[Port, ...] = ()
    widget: str | None = None
    title: str | None = None

    def config_class(self) -> type:
        """The config class (imports its module)."""
        return resolve(self.config)

    def job_function(self) -> Callable:
        """The job function (imports its module)."""
        return resolve(self.job)

    def demo_function(self) -> Callable | None:
        """The demo config builder, if any."""
        return None if self.demo is None else resolve(self.demo)


_STAGES: dict[str, Stage] = {}


def register_stage(stage: Stage) -> Stage:
    """Add ``stage``; registering the same name twice with a different stage is an error."""
    if stage.name in _STAGES and _STAGES[stage.name] != stage:
        raise ValueError(f"stage {stage.name!r} is already registered")
    _STAGES[stage.name] = stage
    return stage


def get_stage(name: str) -> Stage:
    """The stage called ``name``; ``KeyError`` lists the known names."""
    try:
        return _STAGES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; known: {', '.join(sorted(_STAGES))}") from None


def stages() -> list[Stage]:
    """All registered stages, in pipeline order."""
    return sorted(_STAGES.values(), key=lambda s: (s.order, s.name))

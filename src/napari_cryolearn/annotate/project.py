"""The annotation project folder: a tomogram, named classes, sparse annotations and rounds.

Layout (every file written atomically)::

    PROJECT/
      project.yaml          the tomogram's path (relative to the folder when inside it), its
                            shape and voxel size, the classes (names, colours) and which one
                            is background
      annotations.mrc       uint8, the tomogram's shape and voxel size: 0 = not annotated,
                            class k of the list (1-based) painted as value k
      rounds/round_001/     one annotate → train → predict round: the training run folder
                            (config.yaml, model/last.ckpt, logs), round.yaml (the round's
                            settings), prediction.mrc, probabilities.npy (optional) and
                            metrics.json

Values and channels. The annotation value of class ``k`` (1-based in the list) is ``k``; 0 is
"not annotated" and is ignored by the loss. The network puts the background class at channel
0 (its Dice and foreground sampling leave channel 0 out) and the other classes after it in list
order, so its checkpoint serves ``cryolearn segment predict`` with ``class_names`` in that
order. The prediction (``prediction.mrc`` and the prediction layer) holds each class's
annotation value, except background, which is 0 (transparent over the tomogram); accepting a
prediction into the annotations writes background as its own value again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from napari_cryolearn.engine.atomic import atomic_path
from napari_cryolearn.engine.config import Config
from napari_cryolearn.engine.errors import InputError

PROJECT_FILE = "project.yaml"
ANNOTATIONS_FILE = "annotations.mrc"
ROUNDS_DIR = "rounds"
ROUND_FILE = "round.yaml"
PREDICTION_FILE = "prediction.mrc"
PROBABILITIES_FILE = "probabilities.npy"
METRICS_FILE = "metrics.json"
#: The label value of unannotated voxels in the training labels (annotation value 0).
IGNORE = 255
#: Colours given to classes in list order when none is chosen.
DEFAULT_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#808080",
                  "#bcbd22", "#17becf")


def split_names(values: Sequence[str] | str) -> list[str]:
    """Class names from a list whose items may be comma-separated (``--classes a,b c``).

    >>> split_names(["background,membrane", "particle"])
    ['background', 'membrane', 'particle']
    """
    items = [values] if isinstance(values, str) else list(values)
    return [n.strip() for item in items for n in str(item).split(",") if n.strip()]


class ProjectClass(Config):
    """One class of a project."""

    name: str = Field(description="class name")
    color: str = Field(description="display colour (a name or #rrggbb)")


class ProjectFile(Config):
    """The content of ``project.yaml``."""

    version: int = Field(1, description="format version")
    tomogram: Path = Field(description="tomogram MRC (relative: to the project folder)")
    shape: tuple[int, int, int] = Field(description="tomogram shape (z, y, x)")
    voxel_size: tuple[float, float, float] = Field(description="Angstrom per voxel (z, y, x)")
    classes: list[ProjectClass] = Field(description="the classes, annotation value 1, 2, ... in this order")
    background: str = Field(description="the name of the background class")

    @model_validator(mode="after")
    def _check(self) -> ProjectFile:
        names = [c.name for c in self.classes]
        check_classes(names, self.background)
        return self


def check_classes(names: Sequence[str], background: str | None) -> None:
    """:class:`InputError` (field ``classes``) unless there are 2 to 254 distinct names and
    ``background`` (when given) is one of them."""
    if len(names) < 2:
        raise InputError(f"needs at least two classes (background and one to segment), got {list(names)}",
                         field="classes")
    if len(names) > 254:
        raise InputError(f"at most 254 classes, got {len(names)}", field="classes")
    if len(set(names)) != len(names):
        raise InputError(f"class names must differ, got {list(names)}", field="classes")
    if background is not None and background not in names:
        raise InputError(f"background class {background!r} is not one of the classes {list(names)}",
                         field="background")


@dataclass
class Project:
    """An open project folder (see the module docstring)."""

    path: Path
    meta: ProjectFile

    # -- classes, values and channels -------------------------------------------------------------

    @property
    def class_names(self) -> list[str]:
        """Class names in list order (annotation values 1, 2, ...)."""
        return [c.name for c in self.meta.classes]

    @property
    def colors(self) -> dict[int, str]:
        """Annotation value → colour."""
        return {i + 1: c.color for i, c in enumerate(self.meta.classes)}

    @property
    def background_value(self) -> int:
        """The annotation value of the background class."""
        return self.class_names.index(self.meta.background) + 1

    def channel_values(self) -> list[int]:
        """Annotation value of each network channel: background first, then list order."""
        bg = self.background_value
        return [bg, *(v for v in range(1, len(self.class_names) + 1) if v != bg)]

    def channel_names(self) -> list[str]:
        """Class name of each network channel (the checkpoint's ``class_names``)."""
        return [self.class_names[v - 1] for v in self.channel_values()]

    def training_labels(self, annotations: np.ndarray) -> np.ndarray:
        """Annotations (0 = not annotated, value k = class k) → training labels: the class's
        channel, :data:`IGNORE` where not annotated (uint8)."""
        lut = np.full(256, IGNORE, np.uint8)
        for channel, value in enumerate(self.channel_values()):
            lut[value] = channel
        return lut[np.asarray(annotations, np.uint8)]

    def prediction_values(self, channels: np.ndarray) -> np.ndarray:
        """Predicted channels → the prediction layer's values: background 0, another class its
        annotation value (uint8)."""
        lut = np.zeros(256, np.uint8)
        for channel, value in enumerate(self.channel_values()):
            lut[channel] = 0 if channel == 0 else value
        return lut[np.asarray(channels, np.uint8)]

    def label_names(self) -> dict[int, str]:
        """Annotation value → class name (a Labels layer's ``metadata["label_names"]``)."""
        return {i + 1: n for i, n in enumerate(self.class_names)}

    # -- files ------------------------------------------------------------------------------------

    @property
    def tomogram_path(self) -> Path:
        p = Path(self.meta.tomogram)
        return p if p.is_absolute() else self.path / p

    @property
    def annotations_path(self) -> Path:
        return self.path / ANNOTATIONS_FILE

    def read_tomogram(self):
        """The tomogram (memory-mapped :class:`~napari_cryolearn.io.mrc.Volume`); InputError when it
        is missing or no longer has the project's shape."""
        from napari_cryolearn.io.mrc import read_mrc_3d

        path = self.tomogram_path
        if not path.is_file():
            raise InputError("the project's tomogram is missing (moved? edit project.yaml)", path=path,
                             field="tomogram")
        vol = read_mrc_3d(path, field="tomogram", what="tomogram")
        if tuple(vol.data.shape) != tuple(self.meta.shape):
            raise InputError(f"tomogram shape {vol.data.shape} differs from the project's {tuple(self.meta.shape)}",
                             path=path, field="tomogram")
        return vol

    def read_annotations(self) -> np.ndarray:
        """The annotations (uint8, in memory; zeros when the file is missing)."""
        from napari_cryolearn.io.mrc import read_mrc

        if not self.annotations_path.is_file():
            return np.zeros(self.meta.shape, np.uint8)
        data = np.asarray(read_mrc(self.annotations_path, mmap=False).data)
        self.check_annotations(data, self.annotations_path)
        return data.astype(np.uint8)

    def check_annotations(self, annotations: np.ndarray, name: str | os.PathLike | None = None) -> None:
        """InputError unless ``annotations`` has the tomogram's shape and values 0..number of classes."""
        a = np.asarray(annotations)
        if tuple(a.shape) != tuple(self.meta.shape):
            raise InputError(f"annotations of shape {a.shape}, but the tomogram is {tuple(self.meta.shape)}",
                             path=name, field="annotations")
        top = int(a.max()) if a.size else 0
        if a.size and (top > len(self.class_names) or int(a.min()) < 0):
            raise InputError(f"annotation value {top}, but the project has {len(self.class_names)} classes "
                             f"(values 0 = not annotated, 1..{len(self.class_names)})", path=name,
                             field="annotations")

    def save_annotations(self, annotations: np.ndarray) -> Path:
        """Write the annotations (atomically) at the tomogram's voxel size."""
        from napari_cryolearn.io.mrc import write_mrc

        self.check_annotations(annotations)
        return write_mrc(self.annotations_path, np.asarray(annotations, np.uint8), voxel_size=self.meta.voxel_size)

    def save_classes(self, names: Sequence[str], background: str, colors: Sequence[str] | None = None) -> None:
        """Rename, add (at the end) or recolour classes; ``project.yaml`` is rewritten."""
        check_classes(list(names), background)
        old = {c.name: c.color for c in self.meta.classes}
        colors = list(colors) if colors else [old.get(n, DEFAULT_COLORS[i % len(DEFAULT_COLORS)])
                                              for i, n in enumerate(names)]
        self.meta = self.meta.model_copy(update={
            "classes": [ProjectClass(name=n, color=c) for n, c in zip(names, colors)], "background": background})
        self.meta.to_yaml(self.path / PROJECT_FILE)

    # -- rounds -----------------------------------------------------------------------------------

    @property
    def rounds_dir(self) -> Path:
        return self.path / ROUNDS_DIR

    def rounds(self) -> list[Path]:
        """Round folders with a model, oldest first."""
        if not self.rounds_dir.is_dir():
            return []
        return sorted(p for p in self.rounds_dir.glob("round_*") if p.is_dir() and model_of(p) is not None)

    def latest_model(self) -> Path | None:
        """The checkpoint of the last round with one (``None`` before the first round)."""
        found = self.rounds()
        return model_of(found[-1]) if found else None

    def next_round(self) -> Path:
        """The folder of the next round (``rounds/round_<n+1>``; not created). A folder left by a
        round stopped before its first checkpoint is reused."""
        numbers = [int(p.name.split("_")[-1]) for p in self.rounds()] if self.rounds_dir.is_dir() else []
        return self.rounds_dir / f"round_{(max(numbers) if numbers else 0) + 1:03d}"

    def latest_prediction(self) -> Path | None:
        for r in reversed(self.rounds()):
            if (r / PREDICTION_FILE).is_file():
                return r / PREDICTION_FILE
        return None


def model_of(round_dir: Path) -> Path | None:
    """A round's checkpoint (``model/last.ckpt``), or ``None``."""
    p = Path(round_dir) / "model" / "last.ckpt"
    return p if p.is_file() else None


def read_metrics(round_dir: Path) -> dict:
    p = Path(round_dir) / METRICS_FILE
    return json.loads(p.read_text()) if p.is_file() else {}


def write_metrics(round_dir: Path, metrics: dict) -> Path:
    """Merge ``metrics`` into the round's ``metrics.json`` (atomically)."""
    target = Path(round_dir) / METRICS_FILE
    data = {**read_metrics(round_dir), **metrics}
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=float))
    return target


def open_project(path: str | os.PathLike) -> Project:
    """Open a project folder; InputError naming ``project.yaml`` when it is not one."""
    path = Path(path)
    meta = path / PROJECT_FILE
    if not meta.is_file():
        raise InputError(f"not an annotation project (no {PROJECT_FILE}; make one with cryolearn annotate init)",
                         path=path, field="project")
    return Project(path, ProjectFile.from_yaml(meta))


def create_project(
    path: str | os.PathLike,
    tomogram: str | os.PathLike,
    classes: Sequence[str],
    *,
    background: str | None = None,
    colors: Sequence[str] | None = None,
    annotations: np.ndarray | None = None,
    overwrite: bool = False,
) -> Project:
    """Make a project folder for ``tomogram`` (an MRC file) and write empty (or the given)
    annotations. A folder that already holds a project is refused unless ``overwrite`` (its
    rounds are kept; delete ``rounds/`` to start over)."""
    from napari_cryolearn.io.mrc import read_mrc_3d

    path = Path(path)
    names = split_names(classes)
    check_classes(names, background)
    if colors is not None and len(colors) != len(names):
        raise InputError(f"{len(colors)} colours for {len(names)} classes", field="colors")
    if (path / PROJECT_FILE).exists() and not overwrite:
        raise InputError("already holds an annotation project (pass overwrite to replace its classes and "
                         "annotations)", path=path, field="project")
    if path.exists() and not path.is_dir():
        raise InputError("is a file; expected a folder for the project", path=path, field="project")
    vol = read_mrc_3d(tomogram, field="tomogram", what="tomogram")
    tomo = Path(tomogram).resolve()
    try:
        stored = tomo.relative_to(path.resolve())
    except ValueError:
        stored = tomo
    colors = list(colors) if colors else [DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(len(names))]
    meta = ProjectFile(tomogram=stored, shape=tuple(vol.data.shape), voxel_size=tuple(vol.voxel_size),
                       classes=[ProjectClass(name=n, color=c) for n, c in zip(names, colors)],
                       background=background or names[0])
    project = Project(path, meta)
    data = np.zeros(meta.shape, np.uint8) if annotations is None else np.asarray(annotations)
    project.check_annotations(data)  # before anything is written
    path.mkdir(parents=True, exist_ok=True)
    project.save_annotations(data)
    meta.to_yaml(path / PROJECT_FILE)
    return project


def accept_prediction(annotations: np.ndarray, prediction: np.ndarray, background_value: int, *,
                      region: tuple[slice, ...] | None = None, value: int | None = None,
                      replace: bool = False) -> int:
    """Copy ``prediction`` (prediction values: background 0) into ``annotations`` in place, within
    ``region`` (default: everywhere), only for class ``value`` when given (an annotation value;
    ``background_value`` for background), and only where nothing is annotated unless
    ``replace``. Returns the number of voxels changed.

    >>> ann = np.array([0, 0, 2, 0]); pred = np.array([0, 2, 0, 2])
    >>> accept_prediction(ann, pred, background_value=1), ann.tolist()
    (3, [1, 2, 2, 2])
    """
    region = region if region is not None else (slice(None),) * annotations.ndim
    a = annotations[region]
    p = np.where(np.asarray(prediction[region]) == 0, background_value, prediction[region]).astype(a.dtype)
    take = np.ones(a.shape, bool) if replace else a == 0
    if value is not None:
        take &= p == value
    take &= a != p
    a[take] = p[take]
    return int(take.sum())

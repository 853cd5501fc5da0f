"""Membrane mesh containers: MemBrain-pick's ``.h5`` layout, read and written.

One file holds one membrane mesh. Their files and ours are interchangeable: MemBrain-pick reads
ours (it ignores the keys it does not know) and :func:`read_mesh_container` reads theirs.

Keys (HDF5 datasets at the root of the file)
--------------------------------------------
=================  ==============  ==========================================================
key                shape / type    meaning
=================  ==============  ==========================================================
``points``         (N, 3) float64  vertices, **voxels**, **x, y, z** order (MemBrain-pick's)
``faces``          (F, 3) int64    vertex indices of each triangle
``normals``        (N, 3) float64  unit vertex normals, x, y, z
``normal_values``  (N, S) float32  the tomogram sampled along each normal (S = 20)
``tomo_file``      utf-8 string    the tomogram the mesh was made from (absolute path)
``pixel_size``     float           1.0: ``points`` are in voxels (see below)
=================  ==============  ==========================================================

Our extra keys, all optional (MemBrain-pick ignores them):

=====================  ==========  ===========================================================
``voxel_size``         float       Å per voxel of the tomogram (from its MRC header)
``profile_step``       float       Å between two samples of ``normal_values``
``label``              int         the membrane component (label id) the mesh was made from
``scores``             (N,) float  per-vertex predicted distance (a prediction)
``cluster_centers``    (K, 3)      picks, **Å**, x, y, z (as MemBrain-pick's prediction output)
=====================  ==========  ===========================================================

Units
-----
:class:`MeshContainer` always holds ``points`` in voxels (``pixel_size`` 1.0). MemBrain-pick's
*prediction* files store ``points`` in Å with ``pixel_size`` = the pixel size used (e.g. 10);
:func:`read_mesh_container` divides their points by that ``pixel_size`` to give voxels, sets
``pixel_size`` to 1.0 and, when the file has no ``voxel_size``, takes that pixel size as the
``voxel_size``. ``cluster_centers`` stay in Å. Prediction files may lack ``normals`` and
``normal_values`` (theirs do); those fields are then ``None``.

Axis order
----------
The arrays of the :mod:`napari_cryolearn.picking` operations are (z, y, x) like every other
array of this project; the file is (x, y, z). :meth:`MeshContainer.from_zyx` and
:meth:`MeshContainer.verts_zyx` / :meth:`MeshContainer.normals_zyx` /
:meth:`MeshContainer.faces_zyx` are the one place where the order changes. Reversing the axes
mirrors the mesh, so the face winding is reversed too: in either frame, the right-hand rule
on a face gives the same physical side as the normals.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_cryolearn.engine.atomic import atomic_path
from napari_cryolearn.engine.errors import InputError

__all__ = ["MeshContainer", "read_mesh_container", "write_mesh_container", "write_mesh_obj"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass
class MeshContainer:
    """One membrane mesh with its normal profiles, in MemBrain-pick's layout (x, y, z voxels).

    Attributes
    ----------
    points : (N, 3) float64
        Vertices in voxels, x, y, z.
    faces : (F, 3) int64
        Triangles (indices into ``points``).
    normals : (N, 3) float64 or None
        Unit vertex normals, x, y, z (None only for a prediction file without them).
    normal_values : (N, S) float32 or None
        The tomogram sampled along each normal.
    tomo_file : str
        The tomogram's path ("" when unknown).
    pixel_size : float
        1.0 (points in voxels); kept for MemBrain-pick.
    voxel_size, profile_step : float or None
        Å per voxel of the tomogram; Å between profile samples.
    label : int or None
        The membrane component (label id).
    scores : (N,) float32 or None
        Per-vertex predicted distance.
    cluster_centers : (K, 3) float64 or None
        Picks in Å, x, y, z.

    Examples
    --------
    >>> import numpy as np
    >>> verts = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 3.0], [0.0, 2.0, 2.0]])  # z, y, x
    >>> c = MeshContainer.from_zyx(verts, np.array([[0, 1, 2]]), np.tile([1.0, 0, 0], (3, 1)),
    ...                            np.zeros((3, 20), np.float32), voxel_size=10.0)
    >>> c.points[0].tolist()  # x, y, z
    [2.0, 1.0, 0.0]
    >>> bool(np.allclose(c.verts_zyx(), verts)), c.faces_zyx().tolist()
    (True, [[0, 1, 2]])
    """

    points: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None
    normal_values: np.ndarray | None
    tomo_file: str = ""
    pixel_size: float = 1.0
    voxel_size: float | None = None
    profile_step: float | None = None
    label: int | None = None
    scores: np.ndarray | None = None
    cluster_centers: np.ndarray | None = None

    @classmethod
    def from_zyx(
        cls,
        verts: np.ndarray,
        faces: np.ndarray,
        normals: np.ndarray | None,
        normal_values: np.ndarray | None,
        *,
        tomo_file: str | os.PathLike = "",
        voxel_size: float | None = None,
        profile_step: float | None = None,
        label: int | None = None,
        scores: np.ndarray | None = None,
        cluster_centers: np.ndarray | None = None,
    ) -> MeshContainer:
        """A container from the (z, y, x) voxel arrays of :mod:`napari_cryolearn.picking.meshes`.

        Vertices and normals are reversed to x, y, z and the face winding with them;
        ``cluster_centers`` are taken as they are (Å, x, y, z).
        """
        verts = np.asarray(verts, dtype=np.float64)
        return cls(
            points=np.ascontiguousarray(verts[:, ::-1]),
            faces=np.ascontiguousarray(np.asarray(faces, dtype=np.int64)[:, ::-1]),
            normals=None if normals is None else np.ascontiguousarray(np.asarray(normals, np.float64)[:, ::-1]),
            normal_values=None if normal_values is None else np.asarray(normal_values, np.float32),
            tomo_file=os.fspath(tomo_file),
            pixel_size=1.0,
            voxel_size=None if voxel_size is None else float(voxel_size),
            profile_step=None if profile_step is None else float(profile_step),
            label=None if label is None else int(label),
            scores=None if scores is None else np.asarray(scores, np.float32),
            cluster_centers=None if cluster_centers is None else np.asarray(cluster_centers, np.float64),
        )

    def verts_zyx(self) -> np.ndarray:
        """Vertices in voxels, (z, y, x)."""
        return np.ascontiguousarray(self.points[:, ::-1])

    def normals_zyx(self) -> np.ndarray | None:
        """Unit normals, (z, y, x), or None."""
        return None if self.normals is None else np.ascontiguousarray(self.normals[:, ::-1])

    def faces_zyx(self) -> np.ndarray:
        """Faces with the winding of the (z, y, x) frame (reversed from the file's)."""
        return np.ascontiguousarray(self.faces[:, ::-1])


# ------------------------------------------------------------------------------------ checks


def _check(c: MeshContainer, path) -> MeshContainer:
    """Shapes, dtypes and ranges of a container; InputError naming ``path`` and the key."""

    def arr(value, key, dtype, ncols=None, rows=None):
        try:
            a = np.asarray(value)
        except Exception:  # noqa: BLE001 - any unreadable value is bad input
            raise InputError(f"expected an array, got {type(value).__name__}", path, key) from None
        if a.ndim != (1 if ncols is None else 2) or (ncols not in (None, -1) and a.shape[1] != ncols):
            want = f"(N, {ncols})" if ncols not in (None, -1) else ("(N, S)" if ncols == -1 else "(N,)")
            raise InputError(f"expected shape {want}, got {a.shape}", path, key)
        if rows is not None and a.shape[0] != rows:
            raise InputError(f"expected {rows} rows (one per point), got {a.shape[0]}", path, key)
        if dtype is not None:
            if a.dtype.kind not in "iuf" or (dtype == np.int64 and a.dtype.kind == "f"):
                raise InputError(f"expected numbers of dtype {np.dtype(dtype)}, got {a.dtype}", path, key)
            a = a.astype(dtype, copy=False)
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise InputError("holds NaN or infinite values", path, key)
        return a

    points = arr(c.points, "points", np.float64, 3)
    n = points.shape[0]
    faces = arr(c.faces, "faces", np.int64, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= n):
        raise InputError(
            f"face indices range over {faces.min()}..{faces.max()}, outside 0..{n - 1} (the {n} points)",
            path, "faces")
    normals = None if c.normals is None else arr(c.normals, "normals", np.float64, 3, n)
    values = None if c.normal_values is None else arr(c.normal_values, "normal_values", np.float32, -1, n)
    scores = None if c.scores is None else arr(c.scores, "scores", np.float32, None, n)
    centers = None
    if c.cluster_centers is not None:
        centers = np.asarray(c.cluster_centers, dtype=np.float64)
        if centers.size == 0:
            centers = centers.reshape(0, 3)
        centers = arr(centers, "cluster_centers", np.float64, 3)
    for key in ("pixel_size", "voxel_size", "profile_step"):
        v = getattr(c, key)
        if v is not None and not (math.isfinite(float(v)) and float(v) > 0):
            raise InputError(f"expected a number > 0, got {v!r}", path, key)
    return MeshContainer(points, faces, normals, values, str(c.tomo_file), float(c.pixel_size),
                         None if c.voxel_size is None else float(c.voxel_size),
                         None if c.profile_step is None else float(c.profile_step),
                         None if c.label is None else int(c.label), scores, centers)


# ------------------------------------------------------------------------------------ writing


def write_mesh_container(path: str | os.PathLike, container: MeshContainer, *, overwrite: bool = False) -> Path:
    """Write ``container`` to ``path`` (``.h5``) in MemBrain-pick's layout plus our keys.

    Written to a temporary file beside ``path`` and renamed when complete, so a reader never
    sees half a file. ``points`` must be in voxels (``pixel_size`` 1.0).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is false (nothing written).
    InputError
        A field of the wrong shape, faces out of range, or ``pixel_size`` other than 1.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> c = MeshContainer(np.eye(3), np.array([[0, 1, 2]]), np.eye(3), np.zeros((3, 20), np.float32),
    ...                   tomo_file="/data/t.mrc", voxel_size=10.0)
    >>> p = write_mesh_container(Path(tempfile.mkdtemp()) / "m.h5", c)
    >>> read_mesh_container(p).tomo_file
    '/data/t.mrc'
    """
    import h5py

    path = Path(path)
    c = _check(container, path)
    if c.pixel_size != 1.0:
        raise InputError(f"points must be in voxels (pixel_size 1.0), got {c.pixel_size}", path, "pixel_size")
    with atomic_path(path, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("points", data=c.points)
            f.create_dataset("faces", data=c.faces)
            if c.normals is not None:
                f.create_dataset("normals", data=c.normals)
            if c.normal_values is not None:
                f.create_dataset("normal_values", data=c.normal_values)
            f.create_dataset("tomo_file", data=c.tomo_file, dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("pixel_size", data=1.0)
            for key in ("voxel_size", "profile_step"):
                if getattr(c, key) is not None:
                    f.create_dataset(key, data=float(getattr(c, key)))
            if c.label is not None:
                f.create_dataset("label", data=np.int64(c.label))
            if c.scores is not None:
                f.create_dataset("scores", data=c.scores)
            if c.cluster_centers is not None:
                f.create_dataset("cluster_centers", data=c.cluster_centers)
    return path


def write_mesh_obj(path: str | os.PathLike, container: MeshContainer, *, overwrite: bool = False) -> Path:
    """Write the mesh as a Wavefront ``.obj`` (vertices in voxels, x y z; faces 1-based), as
    MemBrain-pick writes beside its containers for other viewers (Blender, ParaView, ChimeraX).

    >>> import tempfile, numpy as np
    >>> c = MeshContainer(np.eye(3), np.array([[0, 1, 2]]), None, None)
    >>> p = write_mesh_obj(Path(tempfile.mkdtemp()) / "m.obj", c)
    >>> p.read_text().splitlines()[-1]
    'f 1 2 3'
    """
    path = Path(path)
    c = _check(container, path)
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in np.asarray(c.points, np.float64)]
    lines += [f"f {a + 1} {b + 1} {d + 1}" for a, b, d in np.asarray(c.faces, np.int64)]
    with atomic_path(path, overwrite=overwrite) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------------ reading


def _string(value) -> str:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _scalar(value, path, key) -> float:
    a = np.asarray(value)
    if a.size != 1 or a.dtype.kind not in "iuf":
        raise InputError(f"expected one number, got shape {a.shape} of {a.dtype}", path, key)
    return float(a.reshape(-1)[0])


def read_mesh_container(path: str | os.PathLike, *, group: str | None = None) -> MeshContainer:
    """Read a mesh container, ours or MemBrain-pick's (training inputs and predictions).

    Newer MemBrain-pick versions can keep several meshes in one file, one HDF5 group each,
    with the same keys inside; ``group`` names the one to read (default: the file's root).

    Points come back in voxels (x, y, z): a MemBrain-pick *prediction* file, whose points are
    in Å with ``pixel_size`` the pixel size used, has its points divided by that pixel size
    (``cluster_centers`` stay in Å) and, when it has no ``voxel_size``, gets that pixel size
    as ``voxel_size``. Keys other than those of the module docstring are ignored.

    Raises
    ------
    InputError
        Naming the file (and the key): missing or unreadable file, not HDF5, a missing key
        (``points``, ``faces``, ``pixel_size``; ``normals`` and ``normal_values`` unless the
        file is a prediction, i.e. has ``scores``), wrong shapes, faces out of range.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError("no such file" if not path.exists() else "is not a file", path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as err:
        raise InputError(f"cannot be read ({err.strerror})", path) from None
    if head != _HDF5_SIGNATURE and not h5py.is_hdf5(path):
        raise InputError("is not an HDF5 file (expected a mesh container .h5)", path)
    try:
        with h5py.File(path, "r") as root:
            if group is None:
                f = root
            elif group in root and isinstance(root[group], h5py.Group):
                f = root[group]
            else:
                found = sorted(k for k in root.keys() if isinstance(root[k], h5py.Group))
                raise InputError(f"no group {group!r}; the file holds groups {found}", path, "group")
            keys = set(f.keys())
            prediction = "scores" in keys
            needed = ["points", "faces", "pixel_size"] + ([] if prediction else ["normals", "normal_values"])
            missing = [k for k in needed if k not in keys]
            if missing:
                groups = sorted(k for k in keys if isinstance(f[k], h5py.Group))
                hint = f" (it holds groups {groups}: pass group= to read one)" if groups else ""
                raise InputError(f"missing key(s) {missing}; found {sorted(keys)}{hint}", path, missing[0])
            data = {}
            for key in keys:
                obj = f[key]
                if isinstance(obj, h5py.Dataset):
                    data[key] = obj[()]
    except InputError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise InputError(f"cannot be read as HDF5 ({err})", path) from None

    pixel_size = _scalar(data["pixel_size"], path, "pixel_size")
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(f"expected a number > 0, got {pixel_size}", path, "pixel_size")
    voxel_size = _scalar(data["voxel_size"], path, "voxel_size") if "voxel_size" in data else None
    points = data["points"]
    if pixel_size != 1.0:  # MemBrain-pick's prediction: points in Å
        points = np.asarray(points, dtype=np.float64) / pixel_size
        if voxel_size is None:
            voxel_size = pixel_size
    label = None
    if "label" in data:
        label = int(_scalar(data["label"], path, "label"))
    container = MeshContainer(
        points=points,
        faces=data["faces"],
        normals=data.get("normals"),
        normal_values=data.get("normal_values"),
        tomo_file=_string(data["tomo_file"]) if "tomo_file" in data else "",
        pixel_size=1.0,
        voxel_size=voxel_size,
        profile_step=_scalar(data["profile_step"], path, "profile_step") if "profile_step" in data else None,
        label=label,
        scores=data.get("scores"),
        cluster_centers=data.get("cluster_centers"),
    )
    return _check(container, path)

"""STAR files: particle and coordinate tables of RELION 3.1, 4 and 5, as points in pixels.

Points come out as (N, 3) arrays in (z, y, x) order, in pixels of the tomogram (0 is the centre
of the first voxel, as in napari), and every other column of the table as ``features``.

Reading
-------
- The table is the data block named ``particles`` when it has coordinates, else the first block
  that has them.
- ``rlnCoordinateX/Y/Z`` are pixels and are taken as they are. A table without
  ``rlnCoordinateZ`` (2D picks) gives z = 0, with a :class:`MissingZWarning` naming the file,
  and ``has_z`` False; ``require_z=True`` (for 3D consumers) refuses such a table instead.
- A table with no rows gives no points (an empty Points layer saved and reopened, a tomogram
  without picks); ``require_rows=True`` refuses it instead.
- Every data block must have distinct column names; a file that is not a STAR file, cannot be
  read, or cannot be parsed is refused with :class:`InputError` naming it.
- RELION 5's ``rlnCenteredCoordinateX/Y/ZAngst`` are Angstrom from the tomogram's centre:
  ``pixels = angstrom / pixel_size + size / 2`` per axis, which needs the pixel size and the
  tomogram's shape (``volume_shape``). When a table has both kinds, ``rlnCoordinate*`` is used.
- Shifts ``rlnOriginX/Y/ZAngst`` (Angstrom) or ``rlnOriginX/Y/Z`` (pixels, RELION 3.0) are
  applied by default, as RELION does: true position = coordinate - origin / pixel_size. Their
  columns are then left out of ``features`` (they are part of the coordinates now), so a
  read-write-read cycle does not apply them twice. ``apply_origin=False`` keeps them as features.
- Coordinate columns of either kind are never in ``features``.
- Pixel size: the ``pixel_size`` argument when given, else the first of
  ``rlnTomoTiltSeriesPixelSize``, ``rlnMicrographPixelSize``, ``rlnPixelSize``,
  ``rlnImagePixelSize`` found in the particle table, else in the ``optics`` table (by
  ``rlnOpticsGroup`` when both tables have it). The file's pixel size is that of the tilt series
  or micrographs; for a binned tomogram pass the tomogram's voxel size as ``pixel_size``.

Writing
-------
:func:`write_star` writes a ``particles`` block with ``rlnCoordinateX/Y/Z`` (pixels) and the
feature columns, and, when a pixel size is given, an ``optics`` block with one row
(``rlnOpticsGroup`` 1, ``rlnOpticsGroupName``, ``rlnImagePixelSize``). Floats are written with
full precision, so a round trip gives the same values.
"""

from __future__ import annotations

import linecache
import math
import os
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_cryolearn.engine.atomic import atomic_path
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io.mrc import check_readable

if TYPE_CHECKING:  # pandas and starfile load when a STAR file is read or written
    import pandas as pd

_PIXEL_COLS = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
_ANGST_COLS = ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst")
_ORIGIN_ANGST_COLS = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")
_ORIGIN_PIXEL_COLS = ("rlnOriginX", "rlnOriginY", "rlnOriginZ")
_PIXEL_SIZE_COLS = ("rlnTomoTiltSeriesPixelSize", "rlnMicrographPixelSize", "rlnPixelSize", "rlnImagePixelSize")
_NAME_COLS = ("rlnTomoName", "rlnMicrographName")


class MissingZWarning(UserWarning):
    """A STAR table has ``rlnCoordinateX/Y`` but no ``rlnCoordinateZ``: its points get z = 0."""


@dataclass
class StarPoints:
    """Points from a STAR table.

    Attributes
    ----------
    coords
        (N, 3) float64, (z, y, x), pixels of the tomogram (z = 0 for 2D tables).
    features
        The table's other columns, one row per point, index 0..N-1.
    pixel_size
        Angstrom per pixel, when known (argument or file); None when unknown or when the rows
        disagree.
    path
        The file read, if any.
    table
        Name of the data block the points came from.
    tomo_names
        ``rlnTomoName`` (else ``rlnMicrographName``) per point, as strings, when the table has it.
    has_z
        False when the table has no z coordinate (2D ``rlnCoordinateX/Y`` only) and z was set
        to 0; 3D consumers should refuse such points (or read with ``require_z=True``).
    """

    coords: np.ndarray
    features: pd.DataFrame
    pixel_size: float | None
    path: Path | None = None
    table: str = "particles"
    tomo_names: np.ndarray | None = None
    has_z: bool = True


# ---------------------------------------------------------------------------------------------
# pure helpers


def points_in_bounds(coords, shape) -> np.ndarray:
    """Which points lie inside a volume of ``shape``.

    ``coords`` is (N, D) in pixels, same axis order as ``shape`` (D = len(shape)). A point is
    inside when it rounds to an existing voxel: ``-0.5 <= c < size - 0.5`` on every axis
    (voxel centres at integers). Returns a bool array of length N.
    """
    pts = np.asarray(coords, dtype=np.float64)
    dims = np.asarray(tuple(shape), dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != dims.size:
        raise ValueError(f"coords must be (N, {dims.size}) for shape {tuple(shape)}, got {pts.shape}")
    return np.all((pts >= -0.5) & (pts < dims - 0.5), axis=1)


def check_in_bounds(coords, shape, path: str | os.PathLike | None = None) -> None:
    """Raise :class:`InputError` when any point lies outside a volume of ``shape``.

    See :func:`points_in_bounds` for what inside means. The message says how many points are
    outside and lists the first few (index and coordinates).
    """
    inside = points_in_bounds(coords, shape)
    if inside.all():
        return
    pts = np.asarray(coords, dtype=np.float64)
    bad = np.flatnonzero(~inside)
    first = ", ".join(f"#{i} {tuple(round(float(c), 2) for c in pts[i])}" for i in bad[:5])
    more = ", …" if bad.size > 5 else ""
    raise InputError(
        f"{bad.size} of {len(pts)} points lie outside the volume of shape {tuple(shape)} "
        f"(axis order {'z, y, x' if len(tuple(shape)) == 3 else 'y, x'}): {first}{more}",
        path,
        "coordinates",
    )


def _positive(value, name: str, path) -> float:
    try:
        val = float(value)
    except (TypeError, ValueError):
        raise InputError(f"expected a number, got {value!r}", path, name) from None
    if not (math.isfinite(val) and val > 0):
        raise InputError(f"expected a finite number > 0, got {value!r}", path, name)
    return val


def _numeric(df: pd.DataFrame, cols, path, block: str) -> np.ndarray:
    """``df[cols]`` as (N, len(cols)) float64; InputError for text or missing values."""
    import pandas as pd

    out = np.empty((len(df), len(cols)), dtype=np.float64)
    for j, col in enumerate(cols):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            rows = np.flatnonzero(bad.to_numpy())
            examples = ", ".join(f"row {r}: {df[col].iloc[r]!r}" for r in rows[:3])
            raise InputError(f"non-numeric values in data_{block} ({examples})", path, col)
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        if not np.isfinite(arr).all():
            rows = np.flatnonzero(~np.isfinite(arr))
            raise InputError(
                f"{rows.size} missing or non-finite values in data_{block} (rows {rows[:5].tolist()})", path, col
            )
        out[:, j] = arr
    return out


def _has_coords(df) -> bool:
    import pandas as pd

    return isinstance(df, pd.DataFrame) and (
        set(_PIXEL_COLS[:2]) <= set(df.columns) or set(_ANGST_COLS) <= set(df.columns)
    )


def _pick_table(blocks: Mapping, path) -> str:
    import pandas as pd

    if _has_coords(blocks.get("particles")):
        return "particles"
    for name, block in blocks.items():
        if _has_coords(block):
            return name
    found = "; ".join(
        f"data_{name}: {list(block.columns) if isinstance(block, pd.DataFrame) else list(block)}"
        for name, block in blocks.items()
    )
    raise InputError(
        "no data block with coordinate columns (rlnCoordinateX/Y[/Z] in pixels, or "
        f"rlnCenteredCoordinateX/Y/ZAngst); found {found}",
        path,
    )


def _read_blocks(path: Path) -> dict:
    """All data blocks of a STAR file, via starfile; :class:`InputError` for anything it cannot parse.

    starfile reads lines through :mod:`linecache` and clears that cache only after a successful
    parse, so after a failure it would keep serving the old lines of a file that was since
    corrected. The cache is cleared before and after every read, whatever happens.
    """
    import pandas as pd
    import starfile

    linecache.clearcache()
    try:
        blocks = starfile.read(path, always_dict=True, parse_as_string=list(_NAME_COLS))
    except Exception as err:  # starfile raises whatever pandas or its parser raise
        raise InputError(f"not a readable STAR file ({type(err).__name__}: {err})", path) from None
    finally:
        linecache.clearcache()
    if not blocks:
        raise InputError(_why_no_blocks(path), path)
    for name, block in blocks.items():
        if isinstance(block, pd.DataFrame):
            twice = [str(c) for c, n in Counter(block.columns).items() if n > 1]
            if twice:
                raise InputError(
                    f"data_{name} has the column {'s' if len(twice) > 1 else ''}"
                    f"{', '.join(twice)} more than once", path, twice[0],
                )
    return blocks


def _why_no_blocks(path: Path) -> str:
    """Why starfile found no data block: the file is not UTF-8 text (starfile then sees only
    empty lines), or it has no ``data_`` line."""
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        return f"not a text STAR file: byte {err.start} is not UTF-8 text"
    except OSError as err:
        return f"cannot be read: {str(err.strerror or err).lower()}"
    return "no data blocks found (not a STAR file?)"


def _group_keys(df: pd.DataFrame, path, block: str) -> list[str]:
    """``rlnOpticsGroup`` per row as text, ``1`` and ``1.0`` alike; InputError for missing values
    (a row cut short leaves its last columns empty)."""
    col = df["rlnOpticsGroup"]
    if col.isna().any():
        rows = np.flatnonzero(col.isna().to_numpy())
        raise InputError(f"missing values in data_{block} (rows {rows[:5].tolist()})", path, "rlnOpticsGroup")

    def key(value) -> str:
        if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
            return str(int(value))
        return str(value)

    return [key(v) for v in col]


def _row_pixel_sizes(df: pd.DataFrame, blocks: Mapping, path) -> np.ndarray | None:
    """Pixel size per row from the table or the optics table; None when the file has none."""
    import pandas as pd

    for col in _PIXEL_SIZE_COLS:
        if col in df.columns:
            return _numeric(df, [col], path, "particles")[:, 0]
    optics = blocks.get("optics")
    if not isinstance(optics, pd.DataFrame) or len(optics) == 0:
        return None
    col = next((c for c in _PIXEL_SIZE_COLS if c in optics.columns), None)
    if col is None:
        return None
    sizes = _numeric(optics, [col], path, "optics")[:, 0]
    if "rlnOpticsGroup" in df.columns and "rlnOpticsGroup" in optics.columns:
        by_group = dict(zip(_group_keys(optics, path, "optics"), sizes))
        groups = _group_keys(df, path, "particles")
        missing = sorted(set(groups) - set(by_group), key=str)  # keys may mix numbers and text
        if missing:
            raise InputError(f"optics groups {missing[:5]} are not in data_optics", path, "rlnOpticsGroup")
        return np.array([by_group[g] for g in groups], dtype=np.float64)
    if np.unique(sizes).size == 1:
        return np.full(len(df), sizes[0])
    return None


def _no_z(path: Path, table: str, n_rows: int, refuse: bool) -> None:
    """A table without rlnCoordinateZ: :class:`InputError` when ``refuse``, else a
    :class:`MissingZWarning` (none for a table without rows, whose z does not matter)."""
    if refuse:
        raise InputError(
            f"data_{table} has rlnCoordinateX/Y but no z coordinate (2D picks?); 3D coordinates are needed",
            path,
            "rlnCoordinateZ",
        )
    if n_rows:
        warnings.warn(
            f"{path}: data_{table} has no rlnCoordinateZ column; z is taken as 0 for all {n_rows} points",
            MissingZWarning,
            stacklevel=3,
        )


def _name_matches(names: pd.Series, wanted: str) -> np.ndarray:
    """Exact match, or match of the file stem (``tomograms/TS_01.mrc:mrc`` matches ``TS_01``)."""
    stems = names.map(lambda n: Path(str(n).split(":")[0]).stem)
    return ((names == wanted) | (stems == wanted)).to_numpy()


# ---------------------------------------------------------------------------------------------
# public API


def read_star(
    path: str | os.PathLike,
    pixel_size: float | None = None,
    tomo_name: str | None = None,
    volume_shape: tuple[int, int, int] | None = None,
    apply_origin: bool = True,
    *,
    require_z: bool = False,
    require_rows: bool = False,
) -> StarPoints:
    """Read points from a RELION STAR file (see the module docstring for the conventions).

    Parameters
    ----------
    path
        The STAR file.
    pixel_size
        Angstrom per pixel of the tomogram the points belong to; overrides the file's.
    tomo_name
        Keep only the rows of this tomogram (``rlnTomoName``, else ``rlnMicrographName``; a
        micrograph path also matches by its stem).
    volume_shape
        (Z, Y, X) of the tomogram in pixels; needed only for RELION 5 centred Angstrom
        coordinates.
    apply_origin
        Subtract the ``rlnOrigin*`` shifts (RELION's refined positions). Default True.
    require_z
        Refuse a table without a z coordinate (for 3D consumers). Default False: such a table
        gives z = 0 with a :class:`MissingZWarning`.
    require_rows
        Refuse a table with no rows (after ``tomo_name`` selection there is always at least
        one). Default False: no rows give no points.

    Returns
    -------
    StarPoints
        coords (N, 3) float64 (z, y, x) pixels, features, pixel_size, table, tomo_names, has_z.

    Raises
    ------
    InputError
        Missing or unparsable file; no block with coordinates (the columns found are listed);
        non-numeric or missing coordinates; ``tomo_name`` not in the file (names listed);
        centred coordinates without pixel size or volume shape; a column twice in a block;
        with ``require_z``, no z coordinate; with ``require_rows``, no rows.
    """
    import pandas as pd

    path = check_readable(path)
    if pixel_size is not None:
        pixel_size = _positive(pixel_size, "pixel_size", path)
    blocks = _read_blocks(path)

    table = _pick_table(blocks, path)
    df = blocks[table]
    if not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index(drop=True)
    if require_rows and len(df) == 0:
        raise InputError(f"data_{table} has no rows: the file holds no coordinates", path)

    name_col = next((c for c in _NAME_COLS if c in df.columns), None)
    if tomo_name is not None:
        if name_col is None:
            raise InputError(
                f"tomo_name {tomo_name!r} given, but data_{table} has no rlnTomoName or rlnMicrographName column",
                path,
                "tomo_name",
            )
        keep = _name_matches(df[name_col].astype(str), str(tomo_name))
        if not keep.any():
            names = sorted((str(n) for n in df[name_col].unique()), key=str)
            listed = ", ".join(names[:20]) + (", …" if len(names) > 20 else "")
            raise InputError(f"tomogram {tomo_name!r} not found; the file has: {listed}", path, name_col)
        df = df[keep].reset_index(drop=True)

    if pixel_size is not None:
        row_ps = np.full(len(df), pixel_size)
    else:
        row_ps = _row_pixel_sizes(df, blocks, path)
    known_ps = None
    if row_ps is not None and len(row_ps) and np.unique(row_ps).size == 1 and row_ps[0] > 0:
        known_ps = float(row_ps[0])

    def need_pixel_size(why: str) -> np.ndarray:
        if row_ps is None:
            raise InputError(f"{why} needs the pixel size: the file has none, pass pixel_size", path, "pixel_size")
        if not (row_ps > 0).all():
            raise InputError(f"{why} needs a pixel size > 0", path, "pixel_size")
        return row_ps

    used_cols: list[str] = []
    has_z = True
    if set(_PIXEL_COLS[:2]) <= set(df.columns):
        cols = [c for c in _PIXEL_COLS if c in df.columns]
        has_z = len(cols) == 3
        if not has_z:
            _no_z(path, table, n_rows=len(df), refuse=require_z)
        xyz = _numeric(df, cols, path, table)
        if xyz.shape[1] == 2:
            xyz = np.column_stack([xyz, np.zeros(len(df))])
        used_cols += cols
    else:
        if volume_shape is None:
            raise InputError(
                "RELION 5 centred coordinates (rlnCenteredCoordinate*Angst) need the tomogram's shape: "
                "pass volume_shape=(Z, Y, X) in pixels",
                path,
                "volume_shape",
            )
        dims = tuple(volume_shape)
        if len(dims) != 3 or not all(_positive(d, "volume_shape", path) for d in dims):
            raise InputError(f"expected (Z, Y, X), got {volume_shape!r}", path, "volume_shape")
        ps = need_pixel_size("converting rlnCenteredCoordinate*Angst to pixels")
        centre_xyz = np.array(dims[::-1], dtype=np.float64) / 2.0
        xyz = _numeric(df, _ANGST_COLS, path, table) / ps[:, None] + centre_xyz
        used_cols += list(_ANGST_COLS)

    dropped = list(used_cols) + [c for c in (*_PIXEL_COLS, *_ANGST_COLS) if c in df.columns and c not in used_cols]
    if apply_origin:
        for cols, in_angstrom in ((_ORIGIN_ANGST_COLS, True), (_ORIGIN_PIXEL_COLS, False)):
            axes = [i for i, c in enumerate(cols) if c in df.columns]
            if not axes:
                continue
            present = [cols[i] for i in axes]
            shift = _numeric(df, present, path, table)
            if in_angstrom and np.any(shift != 0):
                shift = shift / need_pixel_size("applying rlnOrigin*Angst shifts")[:, None]
            xyz[:, axes] -= shift
            dropped += present
            break

    features = df.drop(columns=dropped).reset_index(drop=True)
    tomo_names = df[name_col].astype(str).to_numpy() if name_col else None
    return StarPoints(
        coords=np.ascontiguousarray(xyz[:, ::-1], dtype=np.float64),
        features=features,
        pixel_size=known_ps,
        path=path,
        table=table,
        tomo_names=tomo_names,
        has_z=has_z,
    )


def write_star(
    path: str | os.PathLike,
    coords_zyx,
    features: pd.DataFrame | Mapping | None = None,
    pixel_size: float | None = None,
    tomo_name: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Write points as a RELION-style STAR file, atomically; returns the path written.

    Parameters
    ----------
    coords_zyx
        (N, 3) pixels in (z, y, x) order, or (N, 2) (y, x) for 2D (no rlnCoordinateZ written).
    features
        Other columns, one row per point (a DataFrame or a mapping of columns); not one called
        ``name`` (starfile's reader overwrites it with the block name). Columns named
        like coordinates (``rlnCoordinate*``, ``rlnCenteredCoordinate*Angst``) are replaced by
        ``coords_zyx``.
    pixel_size
        Angstrom per pixel; written in a one-row ``optics`` block as ``rlnImagePixelSize``.
    tomo_name
        Written as an ``rlnTomoName`` column (replacing one in ``features``).
    overwrite
        False: refuse (``InputError``) when ``path`` exists.

    Raises
    ------
    InputError
        Coordinates not (N, 2) / (N, 3) finite numbers, features of another length, bad pixel
        size, or ``path`` exists and ``overwrite`` is False. Nothing is written then.
    """
    import pandas as pd
    import starfile

    path = Path(path)
    try:
        pts = np.asarray(coords_zyx, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("coordinates must be numbers", path, "coords_zyx") from None
    if pts.ndim == 2 and pts.shape[0] == 0 and pts.shape[1] not in (2, 3):
        pts = pts.reshape(0, 3)
    if pts.ndim == 1 and pts.size == 0:
        pts = pts.reshape(0, 3)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise InputError(
            f"expected (N, 3) z, y, x or (N, 2) y, x coordinates, got shape {pts.shape}", path, "coords_zyx"
        )
    if not np.isfinite(pts).all():
        rows = np.flatnonzero(~np.isfinite(pts).all(axis=1))
        raise InputError(
            f"{rows.size} points have NaN or infinite coordinates (rows {rows[:5].tolist()})", path, "coords_zyx"
        )
    if pixel_size is not None:
        pixel_size = _positive(pixel_size, "pixel_size", path)

    if features is None:
        feats = pd.DataFrame(index=range(len(pts)))
    else:
        try:
            feats = pd.DataFrame(features).reset_index(drop=True)
        except (TypeError, ValueError) as err:
            raise InputError(f"cannot make a table of the features: {err}", path, "features") from None
        if len(feats) != len(pts):
            raise InputError(f"{len(feats)} feature rows for {len(pts)} points", path, "features")
    if "name" in feats.columns:
        # starfile's reader sets DataFrame.name to the block name, which overwrites such a column.
        raise InputError("a column called 'name' does not survive reading back; rename it", path, "features")
    if path.exists() and not overwrite:
        raise InputError("exists (pass overwrite=True to replace it)", path)

    xyz = pts[:, ::-1]
    table = pd.DataFrame({col: xyz[:, i] for i, col in enumerate(_PIXEL_COLS[: xyz.shape[1]])})
    if tomo_name is not None:
        table.insert(0, "rlnTomoName", str(tomo_name))
    clash = set(_PIXEL_COLS) | set(_ANGST_COLS) | set(table.columns)
    rest = feats[[c for c in feats.columns if c not in clash]]
    rest.columns = [str(c) for c in rest.columns]
    table = pd.concat([table, rest], axis=1)

    blocks: dict[str, pd.DataFrame] = {}
    if pixel_size is not None:
        blocks["optics"] = pd.DataFrame(
            {"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], "rlnImagePixelSize": [pixel_size]}
        )
    blocks["particles"] = table
    with atomic_path(path, overwrite=overwrite) as tmp:
        starfile.write(blocks, tmp, float_format=None)
    return path

"""Embedding tables: one row per micrograph, written as CSV or Parquet and read back.

Columns: ``file`` (the micrograph's path), ``index`` (its slice in a stack, 0 otherwise),
``emb_0 … emb_{D-1}`` (the embedding), ``x``, ``y`` (its place on the 2D map) and ``cluster``
(its k-means cluster). Parquet by the ``.parquet`` extension, CSV otherwise. Written
atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_cryolearn.engine.atomic import atomic_path
from napari_cryolearn.engine.errors import InputError

__all__ = ["TABLE_SUFFIXES", "embedding_columns", "intersect", "micrograph_lines", "read_embedding_table", "stack_files",
           "write_embedding_table"]

TABLE_SUFFIXES = (".csv", ".parquet")
_REQUIRED = ("file", "index", "x", "y", "cluster")


def embedding_columns(table) -> list[str]:
    """The ``emb_<i>`` columns of a table, in order of ``i``."""
    cols = [c for c in table.columns if isinstance(c, str) and c.startswith("emb_") and c[4:].isdigit()]
    return sorted(cols, key=lambda c: int(c[4:]))


def write_embedding_table(path: str | os.PathLike, files: Sequence[str], indices: Sequence[int],
                          embeddings: np.ndarray, xy: np.ndarray, clusters: np.ndarray, *,
                          overwrite: bool = False) -> Path:
    """Write a table (see the module docstring); returns ``path``.

    >>> import tempfile, numpy as np
    >>> p = Path(tempfile.mkdtemp()) / "e.csv"
    >>> _ = write_embedding_table(p, ["a.mrc", "b.mrc"], [0, 0], np.eye(2), np.zeros((2, 2)), np.array([0, 1]))
    >>> read_embedding_table(p).columns.tolist()
    ['file', 'index', 'emb_0', 'emb_1', 'x', 'y', 'cluster']
    """
    import pandas as pd

    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"expected a .csv or .parquet table, got {path.name}", path=path, field="output")
    emb = np.asarray(embeddings, np.float32)
    n = len(files)
    if emb.shape[0] != n or len(indices) != n or np.asarray(xy).shape != (n, 2) or len(clusters) != n:
        raise InputError(f"{n} files but embeddings {emb.shape}, map {np.asarray(xy).shape}, {len(clusters)} "
                         "clusters", path=path, field="output")
    table = pd.DataFrame({"file": [str(f) for f in files], "index": np.asarray(indices, np.int64)})
    table = pd.concat([table, pd.DataFrame(emb, columns=[f"emb_{i}" for i in range(emb.shape[1])])], axis=1)
    table["x"], table["y"] = np.asarray(xy, np.float64)[:, 0], np.asarray(xy, np.float64)[:, 1]
    table["cluster"] = np.asarray(clusters, np.int64)
    with atomic_path(path, overwrite=overwrite) as tmp:
        if path.suffix.lower() == ".parquet":
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, index=False)
    return path


def read_embedding_table(path: str | os.PathLike):
    """A table written by :func:`write_embedding_table` (a pandas DataFrame); :class:`InputError`
    naming the file when it is missing, unreadable or lacks a column."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError("not found", path=path)
    try:
        table = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except Exception as err:  # noqa: BLE001  (any parser error is a bad file)
        raise InputError(f"not a readable embedding table ({type(err).__name__}: {err})", path=path) from None
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing or not embedding_columns(table):
        raise InputError(f"not an embedding table of ssl embed: no {', '.join(missing or ['emb_*'])} column",
                         path=path)
    return table


def intersect(real, fft, good_real: Sequence[int], good_fft: Sequence[int]):
    """Rows (``file``, ``index``) whose cluster is among ``good_real`` in the ``real`` table and
    among ``good_fft`` in the ``fft`` table (prismpyp's intersection), in the real table's order.

    >>> import pandas as pd
    >>> r = pd.DataFrame({"file": ["a", "b", "c"], "index": [0, 0, 0], "cluster": [1, 1, 2]})
    >>> f = pd.DataFrame({"file": ["c", "b", "a"], "index": [0, 0, 0], "cluster": [0, 3, 0]})
    >>> intersect(r, f, [1], [0])["file"].tolist()
    ['a']
    """
    keep_r = real[real["cluster"].isin(list(good_real))][["file", "index"]]
    keep_f = fft[fft["cluster"].isin(list(good_fft))][["file", "index"]]
    return keep_r.merge(keep_f, on=["file", "index"], how="inner")


def stack_files(table) -> set[str]:
    """The files of a table that are stacks: named by more than one row, or with a slice index
    above 0 (as ``ssl intersect`` decides)."""
    counts = table["file"].value_counts()
    return set(counts[counts > 1].index) | set(table.loc[table["index"] > 0, "file"])


def micrograph_lines(table, rows) -> list[str]:
    """The lines of a list of micrographs for ``rows`` (positions in ``table``): ``path``, or
    ``path#index`` for a slice of a stack (``ssl intersect``'s convention; which files are stacks
    is decided on the whole table).

    >>> import pandas as pd
    >>> t = pd.DataFrame({"file": ["a.mrc", "s.mrcs", "s.mrcs"], "index": [0, 0, 1]})
    >>> micrograph_lines(t, [0, 2])
    ['a.mrc', 's.mrcs#1']
    """
    stacks = stack_files(table)
    part = table.iloc[list(rows)]
    return [f"{f}#{int(i)}" if f in stacks else str(f) for f, i in zip(part["file"], part["index"])]

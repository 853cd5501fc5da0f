"""4D-STEM arrays: reading scans and stacks of diffraction patterns, and their normalisation.

:func:`read_stem4d` opens a scan lazily (memory-mapped or as an HDF5 dataset) as a
:class:`Stem4D`: a 4D array (Sy, Sx, Ky, Kx) or a stack of patterns (N, Ky, Kx), checked for
its number of axes, its size and (chunk by chunk, never the whole scan as float at once) for
NaN and infinite values. Formats by suffix:

- ``.npy``: ``np.load(mmap_mode="r")``;
- ``.pt``: the reference autoencoder's ``train_tensor.pt``, a float tensor (N, 1, Qy, Qx) in
  row-major scan order (memory-mapped by ``torch.load(mmap=True)`` where the file allows);
  ``scan_shape`` (Sy, Sx) makes it 4D, else it is a stack of N patterns;
- ``.h5`` / ``.hdf5``: h5py; ``dataset`` names the dataset, default the only (else the largest)
  3D or 4D dataset; the ``step`` (nm) is read from a dataset attribute ``step``/``scan_step``
  (nm) when present;
- ``.mrc`` / ``.mrcs``: the project's MRC reader, memory-mapped; a 3D MRC is a stack of patterns
  (its x voxel size in Å, divided by 10, is the step).

:class:`Normalisation` is the reference's: optional detector crop and binning first, then
``log(x + eps)``, the global minimum → 0, divided by the maximum → [0, 1]; negative values
(dark-subtracted counts) are clipped to 0 before the log. :func:`fit_normalisation` measures it
chunk-wise over a memory map; :func:`normalise` and :func:`denormalise` are exact inverses
(back to the input's units after crop and binning).

Binning is the **mean** over ``factor × factor`` detector blocks (remainders cropped), so a
binned pattern keeps the input's units (counts per original pixel).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_cryolearn.engine.errors import InputError

__all__ = [
    "STEM4D_SUFFIXES",
    "Normalisation",
    "Stem4D",
    "bin_detector",
    "crop_detector",
    "denormalise",
    "fit_normalisation",
    "iter_chunks",
    "normalise",
    "prepare",
    "read_stem4d",
]

STEM4D_SUFFIXES = (".npy", ".pt", ".h5", ".hdf5", ".mrc", ".mrcs")

#: Bytes read per chunk when scanning a file (NaN check, normalisation).
CHUNK_BYTES = 32 * 1024**2


@dataclass
class Stem4D:
    """A 4D-STEM scan or a stack of patterns, opened lazily.

    Attributes
    ----------
    data
        (Sy, Sx, Ky, Kx) or (N, Ky, Kx): a read-only memory map, an h5py dataset or a tensor's
        numpy view; index it to read.
    path
        The file.
    step
        nm per scan step when the file says, else ``None``.
    """

    data: Any
    path: Path
    step: float | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def is_4d(self) -> bool:
        return len(self.shape) == 4

    @property
    def scan_shape(self) -> tuple[int, ...]:
        """(Sy, Sx) of a scan, (N,) of a stack."""
        return self.shape[:-2]

    @property
    def detector_shape(self) -> tuple[int, int]:
        return self.shape[-2], self.shape[-1]

    @property
    def n_patterns(self) -> int:
        return int(math.prod(self.scan_shape))

    def patterns(self, start: int, stop: int) -> np.ndarray:
        """Patterns ``start:stop`` in row-major scan order, (n, Ky, Kx), in the file's dtype."""
        if not self.is_4d:
            return np.asarray(self.data[start:stop])
        sy, sx = self.scan_shape
        if isinstance(self.data, np.ndarray):
            return np.asarray(self.data.reshape(sy * sx, *self.detector_shape)[start:stop])
        # an h5py dataset: read the whole scan rows that hold the patterns, then cut
        r0, r1 = start // sx, (stop - 1) // sx + 1
        block = np.asarray(self.data[r0:r1]).reshape(-1, *self.detector_shape)
        return block[start - r0 * sx: stop - r0 * sx]

    def take(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Patterns at flat ``indices`` (any order), (n, Ky, Kx)."""
        idx = np.asarray(indices, dtype=np.int64)
        if isinstance(self.data, np.ndarray):
            flat = self.data.reshape(-1, *self.detector_shape) if self.is_4d else self.data
            return np.asarray(flat[idx])
        order = np.argsort(idx)
        out = np.empty((len(idx), *self.detector_shape), dtype=self.data.dtype)
        if self.is_4d:
            sx = self.scan_shape[1]
            for k in order:
                out[k] = self.data[int(idx[k]) // sx, int(idx[k]) % sx]
        else:
            for k in order:
                out[k] = self.data[int(idx[k])]
        return out


def iter_chunks(stem: Stem4D, *, chunk: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, patterns)`` over the whole scan, ``chunk`` patterns at a time (default: about
    :data:`CHUNK_BYTES` of float32)."""
    n = stem.n_patterns
    if chunk is None:
        ky, kx = stem.detector_shape
        chunk = max(1, CHUNK_BYTES // (4 * ky * kx))
    if stem.is_4d and not isinstance(stem.data, np.ndarray):  # whole rows for h5py
        sx = stem.scan_shape[1]
        chunk = max(sx, chunk // sx * sx)
    for start in range(0, n, chunk):
        yield start, stem.patterns(start, min(n, start + chunk))


def _find_dataset(h5, path: Path, dataset: str | None):
    import h5py

    if dataset is not None:
        if dataset not in h5 or not isinstance(h5[dataset], h5py.Dataset):
            found = _datasets(h5)
            raise InputError(f"no dataset {dataset!r} (datasets: {', '.join(n for n, _ in found) or 'none'})",
                             path=path, field="dataset")
        return h5[dataset]
    candidates = [(n, d) for n, d in _datasets(h5) if d.ndim in (3, 4)]
    if not candidates:
        found = _datasets(h5)
        raise InputError("holds no 3D or 4D dataset (datasets: "
                         f"{', '.join(f'{n} {d.shape}' for n, d in found) or 'none'})", path=path, field="dataset")
    return max(candidates, key=lambda nd: math.prod(nd[1].shape))[1]


def _datasets(h5) -> list:
    import h5py

    out = []
    h5.visititems(lambda name, obj: out.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
    return out


def _open(path: Path, dataset: str | None, scan_shape) -> tuple[Any, float | None]:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False), None
        except (ValueError, OSError, EOFError) as err:
            raise InputError(f"not a readable .npy array ({err})", path=path) from None
    if suffix == ".pt":
        import torch

        try:
            try:
                t = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # an old (non-zip) file cannot be mapped
                t = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 (random bytes, a pickle of other things)
            raise InputError(f"not a readable PyTorch tensor file ({str(err)[:160]})", path=path) from None
        if not isinstance(t, torch.Tensor):
            raise InputError(f"holds a {type(t).__name__}, expected a tensor (N, 1, Qy, Qx)", path=path)
        arr = t.detach().numpy()
        if arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]
        elif arr.ndim != 3:
            raise InputError(f"expected a tensor (N, 1, Qy, Qx) or (N, Qy, Qx), got shape {tuple(arr.shape)}",
                             path=path)
        if scan_shape is not None:
            sy, sx = (int(s) for s in scan_shape)
            if sy * sx != arr.shape[0]:
                raise InputError(f"scan_shape {sy} × {sx} = {sy * sx} positions, but the file holds "
                                 f"{arr.shape[0]} patterns", path=path, field="scan_shape")
            arr = arr.reshape(sy, sx, *arr.shape[1:])
        return arr, None
    if suffix in (".h5", ".hdf5"):
        import h5py

        try:
            h5 = h5py.File(path, "r")
        except OSError as err:
            raise InputError(f"not a readable HDF5 file ({err})", path=path) from None
        ds = _find_dataset(h5, path, dataset)
        step = None
        for key in ("step", "scan_step"):
            if key in ds.attrs:
                try:
                    step = float(np.ravel(ds.attrs[key])[0])
                except (TypeError, ValueError):
                    pass
        return ds, step
    if suffix in (".mrc", ".mrcs"):
        from napari_cryolearn.io.mrc import read_mrc

        vol = read_mrc(path, mmap=True)
        step = float(vol.voxel_size[2]) / 10.0 if vol.voxel_size[2] not in (0.0, 1.0) else None
        return vol.data, step
    raise InputError(f"unknown file type {path.suffix or '(none)'}; expected one of {', '.join(STEM4D_SUFFIXES)}",
                     path=path)


def read_stem4d(
    path: str | os.PathLike,
    *,
    dataset: str | None = None,
    scan_shape: Sequence[int] | None = None,
    require_4d: bool = False,
    check_finite: bool = True,
    field: str = "data",
) -> Stem4D:
    """Open a 4D-STEM scan or stack of patterns lazily (formats: see the module docstring).

    ``scan_shape`` (Sy, Sx) turns a stack into a scan (``.pt`` files, or any stack of Sy·Sx
    patterns). ``require_4d``: a stack is an error (the caller needs the scan's geometry).
    ``check_finite`` reads the data chunk by chunk and refuses NaN or infinite values.

    Raises
    ------
    InputError
        Naming the file and ``field``: missing or empty file, unknown suffix or dataset, an
        unreadable file, a shape that is not (N, Ky, Kx) or (Sy, Sx, Ky, Kx) (or a stack where
        ``require_4d``), no patterns, a non-numeric dtype, NaN or infinite values.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=path, field=field)
    if not path.is_file():
        raise InputError("is not a file", path=path, field=field)
    if path.stat().st_size == 0:
        raise InputError("is empty (0 bytes)", path=path, field=field)
    data, step = _open(path, dataset, scan_shape)
    shape = tuple(int(s) for s in data.shape)
    if len(shape) == 3 and scan_shape is not None and path.suffix.lower() != ".pt":
        sy, sx = (int(s) for s in scan_shape)
        if sy * sx != shape[0]:
            raise InputError(f"scan_shape {sy} × {sx} = {sy * sx} positions, but the stack holds {shape[0]} "
                             "patterns", path=path, field="scan_shape")
        if isinstance(data, np.ndarray):
            data = data.reshape(sy, sx, *shape[1:])
            shape = data.shape
    if len(shape) not in (3, 4):
        raise InputError(f"expected a 4D scan (Sy, Sx, Ky, Kx) or a stack of patterns (N, Ky, Kx), got shape "
                         f"{shape}", path=path, field=field)
    if require_4d and len(shape) != 4:
        raise InputError(f"expected a 4D scan (Sy, Sx, Ky, Kx), got a stack of patterns {shape}"
                         + (" (give scan_shape for a .pt or stack file)" if len(shape) == 3 else ""),
                         path=path, field=field)
    if min(shape) == 0:
        raise InputError(f"holds no patterns (shape {shape})", path=path, field=field)
    if np.dtype(data.dtype).kind not in "biuf":
        raise InputError(f"expected real numbers, got dtype {data.dtype}", path=path, field=field)
    stem = Stem4D(data=data, path=path, step=step)
    if check_finite and np.dtype(data.dtype).kind == "f":
        for start, block in iter_chunks(stem):
            bad = ~np.isfinite(block)
            if bad.any():
                k = int(np.argmax(bad.reshape(len(block), -1).any(1))) + start
                where = (f"scan position {divmod(k, stem.scan_shape[1])}" if stem.is_4d else f"pattern {k}")
                raise InputError(f"holds NaN or infinite values (first at {where}, {int(bad.sum())} in its chunk)",
                                 path=path, field=field)
    return stem


# ---------------------------------------------------------------------------------------------
# detector operations and the normalisation


def crop_detector(patterns: np.ndarray, box: Sequence[int] | None) -> np.ndarray:
    """Patterns (..., Ky, Kx) cut to ``box`` = (y0, y1, x0, x1) detector pixels (a view);
    ``None`` returns them unchanged.

    >>> crop_detector(np.zeros((2, 8, 8)), (1, 5, 2, 8)).shape
    (2, 4, 6)
    """
    if box is None:
        return patterns
    y0, y1, x0, x1 = (int(b) for b in box)
    ky, kx = patterns.shape[-2:]
    if not (0 <= y0 < y1 <= ky and 0 <= x0 < x1 <= kx):
        raise InputError(f"crop box {tuple(box)} does not fit a detector of {ky} × {kx} (y0, y1, x0, x1 with "
                         "0 ≤ y0 < y1 ≤ Ky, 0 ≤ x0 < x1 ≤ Kx)", field="crop")
    return patterns[..., y0:y1, x0:x1]


def bin_detector(patterns: np.ndarray, factor: int) -> np.ndarray:
    """The **mean** over ``factor × factor`` detector blocks of patterns (..., Ky, Kx), as float32;
    remainders (the last ``Ky % factor`` rows, ``Kx % factor`` columns) are cropped. Factor 1
    returns float32 patterns unchanged.

    >>> bin_detector(np.arange(25.0).reshape(5, 5), 2)
    array([[ 3.,  5.],
           [13., 15.]], dtype=float32)
    """
    factor = int(factor)
    x = np.asarray(patterns, dtype=np.float32)
    if factor == 1:
        return x
    if factor < 1:
        raise InputError(f"binning must be ≥ 1, got {factor}", field="binning")
    ky, kx = x.shape[-2:]
    by, bx = ky // factor, kx // factor
    if by < 1 or bx < 1:
        raise InputError(f"binning {factor} is larger than the detector ({ky} × {kx})", field="binning")
    x = x[..., : by * factor, : bx * factor]
    x = x.reshape(*x.shape[:-2], by, factor, bx, factor)
    return x.mean(axis=(-3, -1), dtype=np.float64).astype(np.float32)


def prepare(patterns: np.ndarray, *, crop: Sequence[int] | None = None, binning: int = 1) -> np.ndarray:
    """Crop, then bin, the detector of patterns (..., Ky, Kx): float32 in the input's units."""
    return bin_detector(crop_detector(patterns, crop), binning)


@dataclass(frozen=True)
class Normalisation:
    """The reference's normalisation of patterns to [0, 1] (see the module docstring).

    ``y = (log(max(x, 0) + eps) - log_min) / (log_max - log_min)`` for patterns ``x`` after
    ``crop`` and ``binning``.
    """

    eps: float = 1e-6
    log_min: float = 0.0
    log_max: float = 1.0
    binning: int = 1
    crop: tuple[int, int, int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain types, for YAML and checkpoints."""
        d = asdict(self)
        d["crop"] = None if self.crop is None else [int(c) for c in self.crop]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalisation:
        """The inverse of :meth:`to_dict`."""
        crop = data.get("crop")
        return cls(eps=float(data["eps"]), log_min=float(data["log_min"]), log_max=float(data["log_max"]),
                   binning=int(data.get("binning", 1)), crop=None if crop is None else tuple(int(c) for c in crop))

    def output_shape(self, detector_shape: Sequence[int]) -> tuple[int, int]:
        """The detector shape after crop and binning."""
        ky, kx = (int(s) for s in detector_shape)
        if self.crop is not None:
            ky, kx = self.crop[1] - self.crop[0], self.crop[3] - self.crop[2]
        return ky // self.binning, kx // self.binning


def fit_normalisation(stem_or_array, *, binning: int = 1, crop: Sequence[int] | None = None,
                      eps: float = 1e-6, chunk: int | None = None) -> Normalisation:
    """The :class:`Normalisation` of a whole scan: its global log min and max after crop and
    binning, measured ``chunk`` patterns at a time (never the whole scan as float).

    ``stem_or_array``: a :class:`Stem4D` or an array (N, Ky, Kx) / (Sy, Sx, Ky, Kx) (e.g. a
    memory map).

    >>> n = fit_normalisation(np.array([[[0.0, 1.0], [9.0, 99.0]]]))
    >>> round(n.log_min, 3), round(n.log_max, 3)
    (-13.816, 4.595)
    """
    stem = stem_or_array if isinstance(stem_or_array, Stem4D) else Stem4D(np.asarray(stem_or_array), Path("<array>"))
    lo, hi = math.inf, -math.inf
    for _, block in iter_chunks(stem, chunk=chunk):
        x = prepare(block, crop=crop, binning=binning)
        lo = min(lo, float(x.min()))
        hi = max(hi, float(x.max()))
    log_min, log_max = math.log(max(lo, 0.0) + eps), math.log(max(hi, 0.0) + eps)
    if not log_max > log_min:
        raise InputError(f"every pattern value is the same ({lo}); nothing to normalise", path=stem.path,
                         field="data")
    return Normalisation(eps=float(eps), log_min=log_min, log_max=log_max, binning=int(binning),
                         crop=None if crop is None else tuple(int(c) for c in crop))


def normalise(patterns, norm: Normalisation):
    """Patterns (already cropped and binned, input units) → the normalised scale, float32 (numpy)
    or the input's float dtype (torch)."""
    scale = norm.log_max - norm.log_min
    if _is_torch(patterns):
        import torch

        return (torch.log(patterns.clamp_min(0) + norm.eps) - norm.log_min) / scale
    x = np.maximum(np.asarray(patterns, dtype=np.float32), 0)
    return ((np.log(x + np.float32(norm.eps)) - np.float32(norm.log_min)) / np.float32(scale)).astype(np.float32)


def denormalise(patterns, norm: Normalisation):
    """The exact inverse of :func:`normalise`: ``exp(y·(max − min) + min) − eps`` (input units after
    crop and binning)."""
    scale = norm.log_max - norm.log_min
    if _is_torch(patterns):
        import torch

        return torch.exp(patterns * scale + norm.log_min) - norm.eps
    y = np.asarray(patterns, dtype=np.float64)
    return (np.exp(y * scale + norm.log_min) - norm.eps).astype(np.float32)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")

"""MRC files: memory-mapped reading with the header's voxel size and origin, atomic writing.

Axis order is always (z, y, x), for arrays, voxel sizes and origins; voxel sizes and origins are
in Angstrom. The MRC header stores them as (x, y, z); the conversion happens here and nowhere
else.

Data types
----------
MRC has modes for int8 (0), int16 (1), float32 (2), complex64 (4), uint16 (6) and float16 (12).
Writing keeps those dtypes. Others are converted when that loses nothing, else refused:

========================  ==========================================================
written dtype             stored as
========================  ==========================================================
uint8                     mode 0 with the IMOD stamp and "bytes are unsigned" flag
                          (the convention IMOD and ChimeraX read as uint8; strict
                          MRC2014 readers such as ``mrcfile`` show values >= 128 as
                          negative int8). :func:`read_mrc` gives uint8 back.
bool                      uint8 as above (0 and 1)
int32, int64, uint32, …   uint16 when all values lie in 0..65535, else int16 when
                          they lie in -32768..32767, else :class:`InputError`
float64                   float32 (rounded to single precision)
complex128                complex64
========================  ==========================================================

When reading, mode 0 is int8 unless the file carries the IMOD stamp without its "signed
bytes" flag, in which case it is uint8 (old IMOD tomograms are unsigned bytes).

2D images are written and read as (Y, X) arrays; their voxel size is still a (z, y, x) triple.
(A single-section file made elsewhere reads as (Y, X) when its space group is 0, an image, and as
(1, Y, X) when it is 1, a volume.)
Files named ``.mrcs`` or ``.st`` are written as image stacks (N, Y, X) (MRC space group 0);
everything else with three axes as a volume (space group 1).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import math
import os
import re
import stat
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import mrcfile.utils
import numpy as np
from mrcfile.dtypes import HEADER_DTYPE

from napari_cryolearn import __version__
from napari_cryolearn.engine.atomic import atomic_path, reserve_space
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io.pages import release_pages

MRC_SUFFIXES = (".mrc", ".rec", ".map", ".mrcs", ".st")

#: Suffixes written as image stacks (space group 0) rather than volumes.
_STACK_SUFFIXES = (".mrcs", ".st")

_HEADER_BYTES = 1024
#: "IMOD" as a little-endian int32, at byte 152 of the header; flags follow at byte 156.
_IMOD_STAMP = 1146047817
_IMOD_SIGNED_BYTES = 1
_IMOD_ORIGIN_INVERTED = 4
#: Offsets of imodStamp / imodFlags inside mrcfile's ``extra2`` field (which starts at byte 112).
_EXTRA2_IMOD = 40

#: dtypes MRC stores as they are (uint8 through the IMOD convention).
_NATIVE = tuple(np.dtype(t) for t in ("float32", "float16", "int8", "uint8", "int16", "uint16", "complex64"))

_LABEL_HINTS = frozenset(
    {"label", "labels", "seg", "segs", "segmentation", "segmentations", "mask", "masks", "gt",
     "annotation", "annotations"}
)

#: Bytes per slab when data is copied or scanned in chunks.
_SLAB_BYTES = 16 * 1024**2


@dataclass
class Volume:
    """An MRC volume with its physical scale.

    Attributes
    ----------
    data
        (Z, Y, X) array, (N, Y, X) for an image stack, (Y, X) for a single image. A read-only
        ``np.memmap`` when read with ``mmap=True``.
    voxel_size
        Angstrom per voxel, (z, y, x). An axis the header gives as 0 (unset) reads as 1.0.
    origin
        Angstrom, (z, y, x), from the header's origin field.
    path
        The file it came from, if any.
    is_labels
        True when the dtype is integer and the file name says labels (see :func:`looks_like_labels`).
    """

    data: np.ndarray
    voxel_size: tuple[float, float, float]
    origin: tuple[float, float, float]
    path: Path | None = None
    is_labels: bool = False


# ---------------------------------------------------------------------------------------------
# small pure helpers


def looks_like_labels(path_or_name: str | os.PathLike, data_dtype) -> bool:
    """Whether a file holds labels rather than an image, judged from its name and dtype.

    True when ``data_dtype`` is an integer (or bool) dtype AND a word of the file name (not
    of its folders) is one of: label(s), seg(s), segmentation(s), mask(s), gt, annotation(s),
    case-insensitive. Words are split at non-letters and at camelCase humps, so
    ``TS_01_labels.mrc``, ``membrane-seg.mrc``, ``tomoMask.mrc`` and ``gt01.mrc`` count;
    ``segment.mrc``, ``length.mrc`` and ``gtx.mrc`` do not.
    """
    dtype = np.dtype(data_dtype)
    if dtype.kind not in "iub":
        return False
    name = Path(os.fspath(path_or_name)).name
    for suffix in (".gz", ".bz2"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+", stem)
    return any(w.lower() in _LABEL_HINTS for w in words)


def _triplet(value, name: str, path: Path | None, *, positive: bool) -> tuple[float, float, float]:
    """A (z, y, x) triple of finite floats from a scalar or a 3-sequence."""
    try:
        if np.ndim(value) == 0:
            vals = (float(value),) * 3
        else:
            vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"expected a number or (z, y, x) numbers, got {value!r}", path, name) from None
    if len(vals) != 3:
        raise InputError(f"expected 3 values (z, y, x), got {len(vals)}: {value!r}", path, name)
    if not all(math.isfinite(v) for v in vals) or (positive and not all(v > 0 for v in vals)):
        need = "finite and > 0" if positive else "finite"
        raise InputError(f"values must be {need}, got {vals}", path, name)
    return vals


def _storage_dtype(dtype: np.dtype, path: Path | None, data: np.ndarray | None = None) -> np.dtype:
    """The dtype an array of ``dtype`` is stored as (see the module docstring).

    Integer dtypes without an MRC mode need ``data`` to check that the values fit; without it
    (streamed writes) they are refused.
    """
    dtype = np.dtype(dtype)
    if dtype.newbyteorder("=") in _NATIVE:
        return dtype.newbyteorder("=")
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if dtype.kind == "f":
        return np.dtype(np.float32)
    if dtype.kind == "c":
        return np.dtype(np.complex64)
    if dtype.kind in "iu":
        if data is None:
            raise InputError(
                f"dtype {dtype} has no MRC mode; create the file as int8, uint8, int16 or uint16 "
                "(or write the whole array with write_mrc, which converts when the values fit)",
                path,
                "dtype",
            )
        if data.size == 0:
            return np.dtype(np.uint16)
        lo, hi = int(data.min()), int(data.max())
        if lo >= 0 and hi <= np.iinfo(np.uint16).max:
            return np.dtype(np.uint16)
        if lo >= np.iinfo(np.int16).min and hi <= np.iinfo(np.int16).max:
            return np.dtype(np.int16)
        raise InputError(
            f"{dtype} values range over {lo}..{hi}; MRC stores integers only as int8, uint8, int16 "
            "or uint16, so these cannot be written without loss (relabel to fewer than 65536 ids, "
            "or convert to float32 yourself)",
            path,
            "data",
        )
    raise InputError(f"dtype {dtype} cannot be stored in an MRC file", path, "dtype")


def _slabs(n: int, bytes_per_item: int) -> Iterator[slice]:
    """Slices over the first axis, each about ``_SLAB_BYTES`` long."""
    step = max(1, _SLAB_BYTES // max(1, bytes_per_item))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def _stats(arr: np.ndarray) -> tuple[float, float, float, float] | None:
    """(min, max, mean, rms deviation) over the finite values of ``arr``, slab by slab.

    None when there is no finite value or the data are complex.
    """
    if arr.dtype.kind == "c" or arr.size == 0:
        return None
    view = arr if arr.ndim >= 2 else arr[None]
    lo, hi = math.inf, -math.inf
    count, total, total_sq = 0, 0.0, 0.0
    row_bytes = view[0].nbytes
    for sl in _slabs(view.shape[0], row_bytes):
        chunk = np.asarray(view[sl], dtype=np.float64)
        release_pages(view[sl])
        if arr.dtype.kind == "f":
            chunk = chunk[np.isfinite(chunk)]
        if chunk.size == 0:
            continue
        lo = min(lo, float(chunk.min()))
        hi = max(hi, float(chunk.max()))
        count += chunk.size
        total += float(chunk.sum())
        total_sq += float(np.square(chunk).sum())
    if count == 0:
        return None
    mean = total / count
    var = max(total_sq / count - mean * mean, 0.0)
    return lo, hi, mean, math.sqrt(var)


# ---------------------------------------------------------------------------------------------
# header reading


@dataclass
class _Header:
    shape: tuple[int, ...]
    dtype: np.dtype
    data_offset: int
    voxel_size: tuple[float, float, float]
    origin: tuple[float, float, float]
    compressed: bool
    #: bytes of the file as stored (compressed size for .gz / .bz2)
    file_size: int


#: Bytes read at a time from a compressed file.
_READ_CHUNK = 1024**2


def _why(err: Exception) -> str:
    """An OSError in words ("permission denied"), without the path the message names already."""
    return str(getattr(err, "strerror", None) or err or type(err).__name__).lower()


#: Kinds of files that are not regular files, as :func:`check_readable` names them.
_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def check_readable(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path` when it is an existing regular file this process may
    read; else :class:`InputError` saying why.

    "file not found"; "is a folder, not a file"; "not a regular file (a FIFO ...)" for FIFOs,
    sockets and devices (reading one could block or never end, so it is not opened);
    "cannot be read: permission denied" (or the system's reason) when opening it fails.
    Nothing is read.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise InputError("file not found", path) from None
    except OSError as err:
        raise InputError(f"cannot be read: {_why(err)}", path) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError("is a folder, not a file", path)
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _SPECIAL_FILES if test(st.st_mode)), "a special file")
        raise InputError(f"not a regular file ({kind}); it cannot be read as a file", path)
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise InputError(f"cannot be read: {_why(err)}", path) from None
    return path


def _open_stream(path: Path, magic: bytes):
    """A binary stream of the file's content: decompressed for gzip (``\\x1f\\x8b``) and bzip2
    (``BZh``) files, the file itself otherwise."""
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    if magic[:3] == b"BZh":
        return bz2.open(path, "rb")
    return open(path, "rb")


def _read_upto(stream, n: int) -> bytearray:
    """At most ``n`` bytes from ``stream``, fewer only at its end; memory grows with what the
    stream really holds, never with ``n`` alone (a damaged header may ask for petabytes)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(min(_READ_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


#: What reading a damaged gzip or bzip2 stream may raise.
_STREAM_ERRORS = (OSError, EOFError, zlib.error, ValueError)


def _byte_order(header) -> str:
    """'<' or '>': the byte order of a header read or made by mrcfile."""
    order = header.dtype["nx"].byteorder
    if order in "=|":
        order = "<" if np.little_endian else ">"
    return order


def _imod_flags(header) -> int | None:
    """imodFlags when the header carries the IMOD stamp, else None."""
    extra = bytes(header.extra2)
    order = _byte_order(header)
    stamp = int(np.frombuffer(extra[_EXTRA2_IMOD : _EXTRA2_IMOD + 4], dtype=f"{order}i4")[0])
    if stamp != _IMOD_STAMP:
        return None
    return int(np.frombuffer(extra[_EXTRA2_IMOD + 4 : _EXTRA2_IMOD + 8], dtype=f"{order}i4")[0])


def _parse_header(raw: bytes, path: Path):
    """The 1024 header bytes as mrcfile's header record, in the file's byte order.

    The checks of ``mrcfile.open(..., permissive=False)``: the ``MAP`` stamp and a known machine
    stamp. Parsed here rather than by mrcfile, which allocates the extended header (up to 2 GiB,
    from the header's word) before it knows the file holds it.
    """
    damaged = "not an MRC file, or its header is damaged"
    if len(raw) < _HEADER_BYTES:
        raise InputError(f"not an MRC file: {len(raw)} bytes, shorter than the {_HEADER_BYTES}-byte header", path)
    header = np.frombuffer(raw[:_HEADER_BYTES], dtype=HEADER_DTYPE).reshape(()).copy().view(np.recarray)
    if bytes(header.map)[:3] != b"MAP":
        raise InputError(f"{damaged} (no 'MAP' stamp at byte 208)", path)
    try:
        order = mrcfile.utils.byte_order_from_machine_stamp(header.machst)
    except ValueError as err:
        raise InputError(f"{damaged} ({err})", path) from None
    header.dtype = header.dtype.newbyteorder(order)
    return header


def _read_header(path: str | os.PathLike) -> _Header:
    """Read and check an MRC header; :class:`InputError` for anything we cannot use.

    Checks, before any data is touched: the file is readable (:func:`check_readable`), its
    header is an MRC header, the dimensions are > 0, the mode is known, and, for uncompressed
    files, that the extended header fits in the file (the data size is checked by the readers).
    """
    path = check_readable(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(3)
            file_size = os.fstat(fh.fileno()).st_size
    except OSError as err:
        raise InputError(f"cannot be read: {_why(err)}", path) from None
    compressed = magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh"
    try:
        with _open_stream(path, magic) as stream:
            raw = _read_upto(stream, _HEADER_BYTES)
    except _STREAM_ERRORS as err:
        if not compressed:
            raise InputError(f"cannot be read: {_why(err)}", path) from None
        raise InputError(f"damaged compressed file ({type(err).__name__}: {err})", path) from None
    header = _parse_header(raw, path)

    nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
    if min(nx, ny, nz) <= 0:
        raise InputError(f"not a usable MRC file: header dimensions nx={nx}, ny={ny}, nz={nz}", path, "header")
    try:
        dtype = mrcfile.utils.data_dtype_from_header(header)
    except ValueError:
        raise InputError(
            f"unsupported MRC mode {int(header.mode)} (supported: 0, 1, 2, 4, 6, 12)", path, "mode"
        ) from None
    flags = _imod_flags(header)
    if int(header.mode) == 0 and flags is not None and not flags & _IMOD_SIGNED_BYTES:
        dtype = np.dtype(np.uint8)
    if mrcfile.utils.spacegroup_is_volume_stack(header.ispg):
        raise InputError(f"volume stacks (space group {int(header.ispg)}) are not supported", path, "ispg")
    shape = tuple(int(s) for s in mrcfile.utils.data_shape_from_header(header))
    nsymbt = int(header.nsymbt)
    if nsymbt < 0:
        raise InputError(f"not a usable MRC file: extended header size nsymbt={nsymbt} < 0", path, "header")
    data_offset = _HEADER_BYTES + nsymbt
    if not compressed and data_offset > file_size:
        raise InputError(
            f"truncated: header says {nsymbt} bytes of extended header, file has {file_size - _HEADER_BYTES}",
            path,
        )

    mx, my, mz = int(header.mx), int(header.my), int(header.mz)
    cella = (float(header.cella.z), float(header.cella.y), float(header.cella.x))
    voxel = []
    for length, grid in zip(cella, (mz, my, mx)):
        v = length / grid if grid > 0 else 0.0
        voxel.append(v if math.isfinite(v) and v > 0 else 1.0)
    origin = [float(header.origin.z), float(header.origin.y), float(header.origin.x)]
    origin = [o if math.isfinite(o) else 0.0 for o in origin]
    if flags is not None and flags & _IMOD_ORIGIN_INVERTED:
        origin = [-o for o in origin]
    return _Header(
        shape=shape,
        dtype=dtype,
        data_offset=data_offset,
        voxel_size=tuple(voxel),
        origin=tuple(origin),
        compressed=compressed,
        file_size=file_size,
    )


def _truncated(head: _Header, n_bytes: int, available: int, path: Path) -> InputError:
    dims = "x".join(str(s) for s in head.shape)
    return InputError(
        f"truncated: header says {dims} {head.dtype.newbyteorder('=')} = {n_bytes} bytes "
        f"of data, file has {max(available, 0)}",
        path,
    )


def _read_compressed(path: Path, head: _Header) -> np.ndarray:
    """The data of a gzip or bzip2 MRC file, in memory, native byte order.

    Reads no more than the header asks for and no more than the stream holds, so a damaged
    header cannot make it allocate more than the file decompresses to.
    """
    n_bytes = math.prod(head.shape) * head.dtype.itemsize
    try:
        with open(path, "rb") as fh:
            magic = fh.read(3)
        with _open_stream(path, magic) as stream:
            raw = _read_upto(stream, head.data_offset + n_bytes)
    except _STREAM_ERRORS as err:
        raise InputError(f"damaged compressed file ({type(err).__name__}: {err})", path) from None
    available = len(raw) - head.data_offset
    if available < n_bytes:
        raise _truncated(head, n_bytes, available, path)
    data = np.frombuffer(raw, dtype=head.dtype, count=math.prod(head.shape), offset=head.data_offset)
    return data.reshape(head.shape).astype(head.dtype.newbyteorder("="), copy=False)


# ---------------------------------------------------------------------------------------------
# public API


def read_voxel_size(path: str | os.PathLike) -> tuple[float, float, float]:
    """Voxel size of an MRC file in Angstrom, (z, y, x), from its header only (no data read).

    An axis whose size is 0 in the header reads as 1.0.
    """
    return _read_header(path).voxel_size


def read_mrc(path: str | os.PathLike, mmap: bool = True) -> Volume:
    """Read an MRC file.

    Parameters
    ----------
    path
        The file (any name; ``.mrc``, ``.rec``, ``.map``, ``.mrcs``, ``.st`` are usual). gzip and
        bzip2 compressed files are read into memory whatever ``mmap`` says.
    mmap
        True: ``data`` is a read-only ``np.memmap`` over the file; nothing is loaded until used,
        and the array stays valid (it holds its own mapping) after this function returns. It
        keeps the file's byte order. False: the data are read into memory, native byte order.

    Returns
    -------
    Volume
        data (Z, Y, X) / (N, Y, X) / (Y, X) in the file's dtype (uint8 for IMOD unsigned bytes),
        voxel_size and origin in Angstrom, (z, y, x).

    Raises
    ------
    InputError
        Missing file; a folder, FIFO or device (not opened); a file that cannot be read
        (permission denied); not an MRC file; unsupported mode or volume stack; a damaged gzip or
        bzip2 stream; or a file shorter than its header says (checked against the file's length
        before anything is allocated, so a damaged header cannot ask for petabytes).
    """
    path = Path(path)
    head = _read_header(path)
    if head.compressed:
        data = _read_compressed(path, head)
    else:
        n_bytes = math.prod(head.shape) * head.dtype.itemsize
        available = head.file_size - head.data_offset
        if available < n_bytes:
            raise _truncated(head, n_bytes, available, path)
        try:
            if mmap:
                data = np.memmap(path, dtype=head.dtype, mode="r", offset=head.data_offset, shape=head.shape)
            else:
                data = np.fromfile(path, dtype=head.dtype, count=math.prod(head.shape), offset=head.data_offset)
                data = data.reshape(head.shape).astype(head.dtype.newbyteorder("="), copy=False)
        except OSError as err:
            raise InputError(f"cannot be read: {_why(err)}", path) from None
        except ValueError as err:  # the file shrank after its size was checked
            raise InputError(f"cannot map the data ({err})", path) from None
    return Volume(
        data=data,
        voxel_size=head.voxel_size,
        origin=head.origin,
        path=path,
        is_labels=looks_like_labels(path, data.dtype),
    )


def read_mrc_3d(
    path: str | os.PathLike, *, field: str = "input", what: str = "volume", dtype_error: str = "expected real values"
) -> Volume:
    """:func:`read_mrc` (memory-mapped) of a volume that must be 3D and real-valued.

    Raises :class:`InputError` naming ``path`` and ``field``: "expected a 3D ``what``" for any
    other number of axes, "``dtype_error``, got dtype ..." for complex data (MRC mode 3/4).
    """
    vol = read_mrc(path, mmap=True)
    if vol.data.ndim != 3:
        raise InputError(f"expected a 3D {what}, got shape {vol.data.shape}", path=path, field=field)
    if vol.data.dtype.kind not in "biuf":
        raise InputError(f"{dtype_error}, got dtype {vol.data.dtype}", path=path, field=field)
    return vol


@contextlib.contextmanager
def create_mrc(
    path: str | os.PathLike,
    shape: Sequence[int],
    dtype,
    voxel_size=(1.0, 1.0, 1.0),
    origin=(0.0, 0.0, 0.0),
    overwrite: bool = True,
    clean_stale: bool = True,
) -> Iterator[np.memmap]:
    """Create an MRC file and yield its data block as a writable ``np.memmap``, for writing
    volumes larger than memory piece by piece.

    The file is written under a temporary name beside ``path``. When the ``with`` block ends
    without error, the header statistics are computed (slab by slab), the file is flushed and
    renamed to ``path``; on error the temporary is removed and an existing ``path`` is left as it
    was. Unwritten parts of the array read as 0.

    Parameters
    ----------
    shape
        (Z, Y, X), (N, Y, X) for ``.mrcs`` / ``.st`` stacks, or (Y, X).
    dtype
        float32, float16, int8, uint8, int16, uint16 or complex64; bool is created as uint8,
        float64 as float32 and complex128 as complex64 (the yielded array has the stored dtype,
        and assignments into it convert). Other integer dtypes are refused: their values are not
        known in advance (use :func:`write_mrc`).
    voxel_size
        Angstrom per voxel, (z, y, x), or one number for all axes.
    origin
        Angstrom, (z, y, x).
    overwrite
        False: refuse (``InputError``) when ``path`` exists.
    clean_stale
        Remove temporaries that interrupted writes of ``path`` left (see
        :func:`~napari_cryolearn.engine.atomic.atomic_path`).

    Raises
    ------
    InputError
        Bad shape, dtype, voxel size or origin, or ``path`` exists and ``overwrite`` is False;
        raised before anything is written.
    """
    path = Path(path)
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape must be integers, got {shape!r}", path, "shape") from None
    if len(dims) not in (2, 3) or min(dims) <= 0:
        raise InputError(f"expected a 2D or 3D shape with every size > 0, got {dims}", path, "shape")
    store = _storage_dtype(np.dtype(dtype), path)
    vz, vy, vx = _triplet(voxel_size, "voxel_size", path, positive=True)
    oz, oy, ox = _triplet(origin, "origin", path, positive=False)
    if path.exists() and not overwrite:
        raise InputError("exists (pass overwrite=True to replace it)", path)
    mode = 0 if store == np.uint8 else mrcfile.utils.mode_from_dtype(store)

    with atomic_path(path, overwrite=overwrite, clean_stale=clean_stale) as tmp:
        mrc = mrcfile.new_mmap(tmp, shape=dims, mrc_mode=mode, overwrite=True)
        try:
            reserve_space(tmp, tmp.stat().st_size, target=path)  # a full disk under a map is a SIGBUS
            out = mrc.data.view(np.uint8) if store == np.uint8 else mrc.data
            yield out
            if len(dims) == 3 and path.suffix.lower() in _STACK_SUFFIXES:
                mrc.set_image_stack()
            header = mrc.header
            if store == np.uint8:
                extra = bytearray(bytes(header.extra2))
                stamp = np.array([_IMOD_STAMP, 0], dtype=f"{_byte_order(header)}i4").tobytes()
                extra[_EXTRA2_IMOD : _EXTRA2_IMOD + 8] = stamp
                header.extra2 = bytes(extra)
            mrc.voxel_size = (vx, vy, vz)
            header.origin.x, header.origin.y, header.origin.z = ox, oy, oz
            # mrcfile's label carries a timestamp; a fixed one keeps equal data byte-identical
            header.label[0] = f"napari-cryolearn {__version__}".encode()
            header.nlabl = 1
            stats = _stats(out)
            if stats is None:
                mrc.reset_header_stats()
            else:
                header.dmin, header.dmax, header.dmean, header.rms = stats
            mrc.flush()
        finally:
            mrc.close()


def write_mrc(
    path: str | os.PathLike,
    data,
    voxel_size=(1.0, 1.0, 1.0),
    origin=(0.0, 0.0, 0.0),
    overwrite: bool = True,
    clean_stale: bool = True,
) -> Path:
    """Write a 2D or 3D array to an MRC file, atomically; returns the path written.

    Parameters
    ----------
    data
        (Z, Y, X) volume, (N, Y, X) stack (name it ``.mrcs``) or (Y, X) image. dtypes without an
        MRC mode are converted when lossless (see the module docstring); NaN and inf are allowed
        in float data (left out of the header statistics).
    voxel_size
        Angstrom per voxel, (z, y, x), or one number for all axes.
    origin
        Angstrom, (z, y, x).

    Raises
    ------
    InputError
        Data not 2D/3D, empty, of a dtype that cannot be stored without loss; bad voxel size or
        origin; ``path`` exists and ``overwrite`` is False. Nothing is written then.
    """
    path = Path(path)
    arr = np.asanyarray(data)
    if arr.ndim not in (2, 3):
        raise InputError(f"expected a 2D or 3D array, got {arr.ndim}D with shape {arr.shape}", path, "data")
    if arr.size == 0:
        raise InputError(f"empty array (shape {arr.shape})", path, "data")
    store = _storage_dtype(arr.dtype, path, data=arr)
    with create_mrc(path, arr.shape, store, voxel_size=voxel_size, origin=origin, overwrite=overwrite,
                    clean_stale=clean_stale) as out:
        for sl in _slabs(arr.shape[0], arr[0].nbytes):
            out[sl] = arr[sl]
    return path

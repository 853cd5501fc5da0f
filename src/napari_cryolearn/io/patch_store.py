"""The patch store: all training patches of one tomogram in one chunked zarr group.

Layout of ``<name>.zarr/`` (zarr v3, one chunk per patch, so reading patch ``i`` of an array is
one chunk read)::

    image      (N, pz, py, px)     float32
    labels     (N, pz, py, px)     uint8 | uint16 | uint32   (optional)
    distances  (N, C, pz, py, px)  float32                   (optional)
    origins    (N, 3)              int64, (z, y, x) voxel index of each patch's first voxel
    attrs      format, format_version, voxel_size (z, y, x) Å, volume_shape, patch_size,
               n_patches, complete, overlap, grid, remove_only_background, sources,
               label_names, name

A store is written into a temporary folder and renamed when complete
(:func:`napari_cryolearn.engine.atomic.atomic_dir`): a reader never sees half a store. Every
chunk of every array is written (none is left to zarr's fill value), and ``complete: true`` is
set only once every patch of every array was; stores of older versions lack ``complete`` but
hold every chunk too. So on reading, a missing chunk is damage, never zeros: opening a store
checks its metadata and lists its chunk files (:class:`InputError` naming the file and field),
and a chunk that disappears after opening is an :class:`InputError` when it is read.

zarr and numcodecs are imported when a store is written or opened, not with this module
(``cryolearn prep patches --help`` and a wrong input path do not wait for them).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from napari_cryolearn.engine.atomic import atomic_dir
from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.io.pages import release_pages
from napari_cryolearn.io.patch_grid import as_patch_size, cryosiam_grid, patch_grid
from napari_cryolearn.io.patch_grid import reassemble as _reassemble

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "PatchReader",
    "PatchStore",
    "PatchStoreWriter",
    "foreground_patches",
    "is_patch_store",
    "open_patch_store",
    "read_patches",
    "write_patch_store",
]

FORMAT = "napari-cryolearn patch store"
FORMAT_VERSION = 1
_KEYS = ("image", "labels", "distances")

#: What a store folder holds: its group metadata and one folder per array.
_STORE_ENTRIES = {"zarr.json", "origins", *_KEYS}

#: Largest volume or patch size along one axis that a store may declare (2**31 voxels: far beyond
#: any tomogram, and small enough that origin arithmetic never overflows int64).
_MAX_EXTENT = 2**31

_DEFAULT_COMPRESSORS = {"image": None, "labels": "blosc-lz4", "distances": "blosc-lz4"}


def _codecs(compressor: str | None):
    """(zarr codecs for the metadata, numcodecs codec that makes the same chunk bytes)."""
    import numcodecs
    from zarr.codecs import BloscCodec, ZstdCodec

    if compressor is None or compressor == "none":
        return None, None
    if compressor == "blosc-lz4":
        return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")], numcodecs.Blosc(
            cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE
        )
    if compressor == "zstd":
        return [ZstdCodec(level=1)], numcodecs.Zstd(level=1)
    raise ValueError(f"compressor must be 'blosc-lz4', 'zstd' or None, got {compressor!r}")


def is_patch_store(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder that holds a patch store we wrote and nothing else.

    This is the test a writer applies before it replaces a folder: the group metadata must
    name our format, and the folder may hold only the store's own entries (a store into which
    a user copied other files is not replaced, since replacing it would delete them).
    """
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        meta = json.loads((path / "zarr.json").read_text())
        entries = {e.name for e in path.iterdir()}
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or not isinstance(meta.get("attributes"), dict):
        return False
    return meta["attributes"].get("format") == FORMAT and entries <= _STORE_ENTRIES


def _check_geometry(origins: np.ndarray, patch_size: tuple[int, ...], voxel_size: tuple[float, ...],
                    volume_shape: tuple[int, ...]) -> None:
    """``ValueError`` unless the store's geometry is one :class:`PatchStore` opens: 3 finite
    positive voxel sizes, volume and patch sizes in ``1 .. 2**31 - 1``, every patch inside the
    volume."""
    if len(voxel_size) != 3 or not all(math.isfinite(v) and v > 0 for v in voxel_size):
        raise ValueError(f"voxel_size must be 3 finite positive numbers (z, y, x), got {voxel_size}")
    for name, sizes in (("volume_shape", volume_shape), ("patch_size", patch_size)):
        if len(sizes) != 3 or not all(0 < s < _MAX_EXTENT for s in sizes):
            raise ValueError(f"{name} must be 3 integers in 1 .. {_MAX_EXTENT - 1} (z, y, x), got {sizes}")
    outside = np.flatnonzero(((origins < 0) | (origins > np.subtract(volume_shape, patch_size))).any(axis=1))
    if outside.size:
        o = tuple(int(v) for v in origins[outside[0]])
        raise ValueError(f"the patch at {o} of size {patch_size} reaches outside the volume {volume_shape}")


class PatchStoreWriter:
    """Write a patch store patch by patch (bounded memory), atomically.

    Use as a context manager; the store appears at ``path`` only when the block ends without an
    exception and every patch was written::

        with PatchStoreWriter(path, origins, (64, 64, 64), voxel_size=(10, 10, 10),
                              volume_shape=(200, 512, 512), labels_dtype=np.uint8) as w:
            for i, o in enumerate(origins):
                w.write(i, image=..., labels=...)

    Parameters
    ----------
    path:
        Target folder (conventionally ``<name>.zarr``).
    origins:
        (N, 3) patch origins (z, y, x), voxels.
    patch_size:
        (pz, py, px) or one int.
    voxel_size:
        (z, y, x) Å.
    volume_shape:
        (Z, Y, X) of the source volume.
    image:
        Whether the store has an ``image`` array (float32).
    labels_dtype:
        dtype of ``labels``, or ``None`` for no labels.
    distance_channels:
        C of ``distances``, or ``None`` for no distances.
    attrs:
        Extra attributes (overlap, grid, sources, label_names, name, ...).
    compressor:
        ``"auto"`` (default: ``image`` uncompressed, ``labels`` and ``distances`` Blosc-LZ4 with
        byte shuffle), or one of ``"blosc-lz4"``, ``"zstd"``, ``None`` for every array, or a
        dict by array name. (Measured: noisy tomogram patches shrink by only ~6 % under
        Blosc-LZ4 and zstd, at 2-4x the write time; labels shrink 10-100x.)
    overwrite:
        Replace an existing store (else ``FileExistsError`` before anything is written). Only a
        folder that :func:`is_patch_store` recognises is ever replaced; any other existing
        folder is refused (``FileExistsError``), whatever ``overwrite`` says.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        origins: np.ndarray,
        patch_size: int | Sequence[int],
        *,
        voxel_size: Sequence[float],
        volume_shape: Sequence[int],
        image: bool = True,
        labels_dtype: np.dtype | type | None = None,
        distance_channels: int | None = None,
        attrs: dict[str, Any] | None = None,
        compressor: str | None | dict[str, str | None] = "auto",
        overwrite: bool = False,
    ):
        self.path = Path(path)
        self.origins = np.asarray(origins, dtype=np.int64).reshape(-1, 3)
        self.patch_size = as_patch_size(patch_size, ndim=3)
        self.voxel_size = tuple(float(v) for v in voxel_size)
        self.volume_shape = tuple(int(s) for s in volume_shape)
        _check_geometry(self.origins, self.patch_size, self.voxel_size, self.volume_shape)
        self._spec: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        if image:
            self._spec["image"] = (self.patch_size, np.dtype(np.float32))
        if labels_dtype is not None:
            self._spec["labels"] = (self.patch_size, np.dtype(labels_dtype))
        if distance_channels is not None:
            self._spec["distances"] = ((int(distance_channels), *self.patch_size), np.dtype(np.float32))
        if not self._spec:
            raise ValueError("a patch store needs at least one of image, labels, distances")
        self.attrs = dict(attrs or {})
        if compressor == "auto":
            compressor = _DEFAULT_COMPRESSORS
        if not isinstance(compressor, dict):
            compressor = {k: compressor for k in _KEYS}
        self._codecs = {k: _codecs(compressor.get(k)) for k in self._spec}
        self._tmp: Path | None = None
        self.overwrite = overwrite
        self._stack: ExitStack | None = None
        self._arrays: dict[str, Any] = {}
        self._group: Any = None
        #: which patches of each array were written
        self._written = {k: np.zeros(len(self.origins), dtype=bool) for k in self._spec}

    def __enter__(self) -> PatchStoreWriter:
        import zarr
        from zarr.codecs import BytesCodec

        stack = ExitStack()
        tmp = stack.enter_context(atomic_dir(self.path, overwrite=self.overwrite, replaceable=is_patch_store))
        try:
            group = zarr.open_group(tmp, mode="w", zarr_format=3)
            n = len(self.origins)
            for key, (shape, dtype) in self._spec.items():
                self._arrays[key] = group.create_array(
                    key,
                    shape=(n, *shape),
                    chunks=(1, *shape),
                    dtype=dtype,
                    serializer=BytesCodec(endian="little"),
                    compressors=self._codecs[key][0],
                    chunk_key_encoding={"name": "default", "separator": "."},  # flat: no folder per chunk
                    fill_value=0,
                )
            # write_empty_chunks: zarr leaves out an all-zero chunk (one patch at (0, 0, 0)), and a
            # reader takes any missing chunk for damage
            group.create_array("origins", data=self.origins, chunks=(max(n, 1), 3), compressors=None,
                               config={"write_empty_chunks": True})
            group.attrs.update(
                {
                    **self.attrs,
                    "format": FORMAT,
                    "format_version": FORMAT_VERSION,
                    "voxel_size": list(self.voxel_size),
                    "volume_shape": list(self.volume_shape),
                    "patch_size": list(self.patch_size),
                    "n_patches": n,
                    "complete": False,  # set by __exit__ once every patch of every array is written
                }
            )
        except BaseException:
            stack.close()
            raise
        self._group = group
        self._stack = stack
        self._tmp = Path(tmp)
        return self

    def write(
        self,
        i: int,
        image: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        distances: np.ndarray | None = None,
    ) -> None:
        """Store patch ``i`` of each given array (each must have the patch's shape).

        Arrays left out (``None``) are not written for this patch: every array of the store must
        get every patch, over one or several calls, or the block fails at its end.
        ``IndexError`` for ``i`` outside ``0 .. N-1``.
        """
        if self._stack is None:
            raise RuntimeError("PatchStoreWriter.write outside its with-block")
        n = len(self.origins)
        if isinstance(i, (bool, np.bool_)) or not 0 <= int(i) < n:
            raise IndexError(f"patch {i} out of range for a store of {n} patches")
        i = int(i)
        for key, value in (("image", image), ("labels", labels), ("distances", distances)):
            if value is None:
                continue
            if key not in self._arrays:
                raise ValueError(f"this store has no {key!r} array")
            shape, dtype = self._spec[key]
            value = np.asarray(value)
            if value.shape != shape:
                raise ValueError(f"{key} patch {i}: shape {value.shape}, expected {shape}")
            self._write_chunk(key, i, np.ascontiguousarray(value, dtype=dtype.newbyteorder("<")))
            self._written[key][i] = True

    def _write_chunk(self, key: str, i: int, value: np.ndarray) -> None:
        # One chunk per patch: encode it as the array's metadata says (little-endian bytes, then
        # the compressor) and write the chunk file directly. Same bytes as zarr writes, without
        # its per-call overhead (zarr's own write was 3-4x slower than numpy.save per patch).
        assert self._tmp is not None
        array = self._arrays[key]
        chunk_key = array.metadata.encode_chunk_key((i,) + (0,) * value.ndim)
        target = self._tmp / key / chunk_key
        target.parent.mkdir(parents=True, exist_ok=True)
        codec = self._codecs[key][1]
        with open(target, "wb") as fh:
            fh.write(memoryview(value).cast("B") if codec is None else codec.encode(value))

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack = self._stack, None
        assert stack is not None
        if exc_type is None:
            try:
                self._finish()
            except BaseException as err:
                stack.__exit__(type(err), err, err.__traceback__)  # discards the temporary store
                raise
        return bool(stack.__exit__(exc_type, exc, tb))

    def _finish(self) -> None:
        """Mark the store complete; ``RuntimeError`` naming each array that misses patches."""
        gaps = [
            f"{key}: {int((~done).sum())} of {len(done)} patches (first: patch {int(np.argmin(done))})"
            for key, done in self._written.items()
            if not done.all()
        ]
        if gaps:
            raise RuntimeError(f"{self.path}: not written: {'; '.join(gaps)}")
        self._group.attrs.update({"complete": True})


class PatchReader:
    """Reads boxes (patches) of a (Z, Y, X) or (C, Z, Y, X) volume as fresh arrays.

    For a memory-mapped volume (``np.memmap``, as returned by ``read_mrc(mmap=True)`` or
    ``np.load(mmap_mode="r")``) the box is copied through the map a few planes at a time, and
    the pages of each block are unmapped right after (:func:`release_pages`): mapped pages count
    in the process's RSS, and current kernels map whole large page-cache folios on each fault
    (reading one 128³ patch of a 1024² tomogram through its map in one go added 250 MiB of
    RSS). With blocks of at most ``block_bytes`` of file span, memory stays at the size of the
    patch plus one block. (This is 1.6x faster than ``pread`` of each plane's rows, which has
    to read the bytes between the rows too.) Other arrays are sliced and copied.
    """

    def __init__(self, array: np.ndarray, block_bytes: int = 8 << 20):
        self.array = array
        self.shape = tuple(int(s) for s in array.shape)
        self.block_bytes = int(block_bytes)
        if array.ndim not in (3, 4):
            raise ValueError(f"expected a (Z, Y, X) or (C, Z, Y, X) volume, got shape {self.shape}")
        self._mapped = isinstance(array, np.memmap)

    def close(self) -> None:
        """Unmap the pages this reader touched (the volume's map itself stays open)."""
        if self._mapped:
            release_pages(self.array)

    def __enter__(self) -> PatchReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, origin: Sequence[int], sizes: Sequence[int]) -> np.ndarray:
        """The box ``[..., z:z+pz, y:y+py, x:x+px]`` as a new array (channels kept whole)."""
        z0, y0, x0 = (int(v) for v in origin)
        pz, py, px = (int(v) for v in sizes)
        lead = (slice(None),) * (len(self.shape) - 3)
        if not self._mapped:
            return np.array(self.array[lead + (slice(z0, z0 + pz), slice(y0, y0 + py), slice(x0, x0 + px))])
        out = np.empty((*self.shape[:-3], pz, py, px), dtype=self.array.dtype)
        flat_in = self.array if self.array.ndim == 4 else self.array[None]
        flat_out = out.reshape(-1, pz, py, px)
        _, zs, ys, xs = (abs(s) for s in flat_in.strides)
        plane_span = (py - 1) * ys + (px - 1) * xs + self.array.itemsize
        step = max(1, 1 + (self.block_bytes - plane_span) // max(zs, 1))
        for c in range(flat_out.shape[0]):
            for k in range(0, pz, step):
                block = flat_in[c, z0 + k : z0 + min(k + step, pz), y0 : y0 + py, x0 : x0 + px]
                flat_out[c, k : k + step] = block
                release_pages(block)
        release_pages(self.array)  # a fault maps whole folios: pages beyond the blocks' spans too
        return out


def _read_checked(readers: dict[str, PatchReader], origin: np.ndarray, sizes: Sequence[int]) -> dict[str, np.ndarray]:
    patch = {k: r.read(origin, sizes) for k, r in readers.items()}
    image = patch.get("image")
    # min and max propagate NaN and show inf, and are faster than isfinite
    if image is not None and image.dtype.kind == "f" and not (np.isfinite(image.min()) and np.isfinite(image.max())):
        raise ValueError(f"NaN or infinite values in the image patch at (z, y, x) {tuple(int(o) for o in origin)}")
    return patch


def read_patches(
    readers: dict[str, PatchReader], origins: np.ndarray, sizes: Sequence[int]
) -> Generator[dict[str, np.ndarray], None, None]:
    """The patches at ``origins``, in order, each as ``{name: array}`` read by ``readers[name]``.

    The next patch is read in a background thread while the caller handles the current one
    (the reads and the caller's writes release the GIL, so the two overlap on two cores);
    memory holds at most two patches. ``ValueError`` for NaN or infinite values in an
    ``"image"`` patch, naming its origin. Closing the generator waits for the read in flight.
    """
    if len(origins) == 0:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="patch-reader") as pool:
        pending = pool.submit(_read_checked, readers, origins[0], sizes)
        try:
            for i in range(len(origins)):
                patch = pending.result()
                if i + 1 < len(origins):
                    pending = pool.submit(_read_checked, readers, origins[i + 1], sizes)
                yield patch
        finally:
            pending.cancel()


def foreground_patches(labels: PatchReader, origins: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """(N,) bool: whether the labels patch at each origin holds any non-zero voxel."""
    return np.array([bool(labels.read(o, sizes).any()) for o in origins], dtype=bool)


def write_patch_store(
    path: str | os.PathLike,
    image: np.ndarray,
    labels: np.ndarray | None = None,
    distances: np.ndarray | None = None,
    *,
    patch_size: int | Sequence[int] = 128,
    overlap: float | int = 0.5,
    remove_only_background: bool = False,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    grid: str = "cover",
    origins: np.ndarray | None = None,
    labels_dtype: np.dtype | type | None = None,
    attrs: dict[str, Any] | None = None,
    compressor: str | None | dict[str, str | None] = "auto",
    overwrite: bool = False,
) -> Generator[tuple[int, int], None, Path]:
    """Cut ``image`` (and ``labels``, ``distances``) into patches and store them; a generator.

    Patches are read one at a time by :class:`PatchReader` (in blocks whose pages are unmapped after use),
    so ``image`` and friends may be memory-mapped volumes of any size: memory stays bounded by
    a few patches.

    Parameters
    ----------
    path:
        Target store folder (``<name>.zarr``).
    image:
        (Z, Y, X) tomogram (stored as float32).
    labels:
        (Z, Y, X) integer labels, or ``None``.
    distances:
        (C, Z, Y, X) distance maps, or ``None``.
    patch_size, overlap:
        As in :func:`napari_cryolearn.io.patch_grid.patch_grid`.
    remove_only_background:
        Leave out patches whose labels are all 0 (needs ``labels``).
    voxel_size:
        (z, y, x) Å, kept in the attributes.
    grid:
        ``"cover"`` (:func:`patch_grid`, every voxel patched) or ``"cryosiam"``
        (:func:`cryosiam_grid`).
    origins:
        Explicit (N, 3) origins instead of a grid.
    labels_dtype:
        Stored labels dtype (default: from ``labels.dtype``'s size: uint8, uint16 or uint32).
    attrs:
        Extra attributes (sources, label_names, name).
    compressor:
        As in :class:`PatchStoreWriter`.

    Yields
    ------
    A :class:`~napari_cryolearn.engine.progress.Progress` after each patch.

    Returns
    -------
    The store's path (the generator's return value, e.g. from
    :func:`~napari_cryolearn.engine.jobs.run_job`). Closing the generator early removes
    the partial store; so does a ``ValueError`` for NaN or infinite image values, found patch
    by patch.
    """
    sizes = as_patch_size(patch_size, ndim=3)
    shape = tuple(int(s) for s in image.shape)
    if labels is not None and tuple(labels.shape) != shape:
        raise ValueError(f"labels shape {tuple(labels.shape)} differs from image shape {shape}")
    if distances is not None and tuple(distances.shape[1:]) != shape:
        raise ValueError(f"distances shape {tuple(distances.shape)} does not match image shape {shape}")
    if origins is None:
        if grid == "cover":
            origins = patch_grid(shape, sizes, overlap=overlap)
        elif grid == "cryosiam":
            origins = cryosiam_grid(shape, sizes, overlap=overlap)
        else:
            raise ValueError(f"grid must be 'cover' or 'cryosiam', got {grid!r}")
    origins = np.asarray(origins, dtype=np.int64).reshape(-1, 3)
    readers = {
        k: PatchReader(a) for k, a in (("image", image), ("labels", labels), ("distances", distances)) if a is not None
    }
    if remove_only_background:
        if labels is None:
            raise ValueError("remove_only_background needs labels")
        origins = origins[foreground_patches(readers["labels"], origins, sizes)]
    if labels is not None and labels_dtype is None:
        size = np.dtype(labels.dtype).itemsize
        labels_dtype = np.uint8 if size == 1 else np.uint16 if size == 2 else np.uint32
    meta = {
        "overlap": overlap,
        "grid": grid,
        "remove_only_background": bool(remove_only_background),
        **(attrs or {}),
    }
    writer = PatchStoreWriter(
        path,
        origins,
        sizes,
        voxel_size=voxel_size,
        volume_shape=shape,
        labels_dtype=labels_dtype if labels is not None else None,
        distance_channels=None if distances is None else int(distances.shape[0]),
        attrs=meta,
        compressor=compressor,
        overwrite=overwrite,
    )
    try:
        with writer:
            for i, patch in enumerate(read_patches(readers, origins, sizes)):
                writer.write(i, **patch)
                yield Progress(i + 1, len(origins), f"patch {i + 1}/{len(origins)}")
    finally:
        for r in readers.values():
            r.close()
    return Path(path)


#: What to do about a damaged store, said in every message about one.
_REMAKE = "re-create it with `cryolearn prep patches`"

#: The dtype kinds each array may have, and their name in messages.
_KINDS = {
    "image": ("f", "floating-point"),
    "labels": ("iu", "integer"),
    "distances": ("f", "floating-point"),
    "origins": ("iu", "integer"),
}

def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (a damaged metadata value may be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _damaged(message: str, path: Path, field: str | None = None) -> InputError:
    """:class:`InputError` for a damaged store: ``message``, then what to do about it."""
    return InputError(f"{message}; the store is incomplete or damaged; {_REMAKE}", path=path, field=field)


def _read_json_object(path: Path, missing: str) -> dict[str, Any]:
    """The JSON object in ``path`` (a ``zarr.json``).

    :class:`InputError` naming ``path``: ``missing`` when there is no such file, else when it
    cannot be read, is not JSON, or holds something other than an object.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(missing, path=path) from None
    except OSError as err:
        raise _damaged(f"cannot be read ({err.strerror or err})", path) from None
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise _damaged(f"not valid JSON ({_short(str(err))})", path) from None
    if not isinstance(meta, dict):
        raise _damaged(f"expected a JSON object, got {type(meta).__name__}", path)
    return meta


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _attr(attrs: dict[str, Any], name: str, where: Path) -> Any:
    """``attrs[name]``; :class:`InputError` naming ``where`` and ``name`` when it is absent."""
    if name not in attrs:
        raise _damaged("missing from the store's attributes", where, name)
    return attrs[name]


def _extents(attrs: dict[str, Any], name: str, where: Path) -> tuple[int, int, int]:
    """Attribute ``name`` as (z, y, x) integers in ``1 .. 2**31 - 1``; else :class:`InputError`."""
    value = _attr(attrs, name, where)
    if not (isinstance(value, list) and len(value) == 3 and all(_is_int(v) and 0 < v < _MAX_EXTENT for v in value)):
        raise _damaged(f"expected 3 positive integers (z, y, x), got {_short(value)}", where, name)
    return tuple(value)  # type: ignore[return-value]


def _positive_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value)) and value > 0
    except OverflowError:  # an int beyond float's range
        return False


def _voxel_size(attrs: dict[str, Any], where: Path) -> tuple[float, float, float]:
    """Attribute ``voxel_size`` as 3 finite positive numbers (z, y, x, Å); else :class:`InputError`."""
    value = _attr(attrs, "voxel_size", where)
    if not (isinstance(value, list) and len(value) == 3 and all(_positive_number(v) for v in value)):
        raise _damaged(f"expected 3 positive numbers (z, y, x, Å), got {_short(value)}", where, "voxel_size")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def _check_format(attrs: dict[str, Any], where: Path) -> None:
    """``format``, ``format_version`` and ``complete`` say this is a finished store we can read."""
    if attrs.get("format") != FORMAT:
        raise InputError(f"not a napari-cryolearn patch store (format {_short(attrs.get('format'))})",
                         path=where, field="format")
    version = _attr(attrs, "format_version", where)
    if not _is_int(version) or version < 1:
        raise _damaged(f"expected a positive integer, got {_short(version)}", where, "format_version")
    if version > FORMAT_VERSION:
        raise InputError(f"format_version {version} is newer than this reader ({FORMAT_VERSION}); "
                         "update napari-cryolearn", path=where, field="format_version")
    complete = attrs.get("complete", True)  # stores of older versions do not say; their writer finished
    if complete is False:
        raise _damaged("its writer did not finish (complete: false)", where, "complete")
    if complete is not True:
        raise _damaged(f"expected true or false, got {_short(complete)}", where, "complete")


def _open_array(folder: Path) -> Any:
    """The zarr v3 array in ``folder``; :class:`InputError` naming its ``zarr.json`` when there is
    none or its metadata cannot be used."""
    import zarr

    meta_path = folder / "zarr.json"
    meta = _read_json_object(
        meta_path, f"missing: the {folder.name!r} array has no metadata; the store is incomplete or damaged; {_REMAKE}"
    )
    if meta.get("node_type") != "array" or meta.get("zarr_format") != 3:
        raise _damaged(f"not a zarr v3 array (zarr_format {_short(meta.get('zarr_format'))}, "
                       f"node_type {_short(meta.get('node_type'))})", meta_path)
    try:
        return zarr.open_array(store=str(folder), mode="r", zarr_format=3)
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001  zarr raises many types for metadata it cannot use
        raise _damaged(f"unusable array metadata ({type(err).__name__}: {_short(str(err))})", meta_path) from None


def _check_array(key: str, array: Any, folder: Path, shape: tuple[int | None, ...]) -> None:
    """``array`` (the store's ``key``) has a dtype of the right kind, ``shape`` (``None``: any
    size ≥ 1) and a regular chunk grid; else :class:`InputError` naming its ``zarr.json``."""
    meta_path = folder / "zarr.json"
    kinds, words = _KINDS[key]
    try:
        dtype = np.dtype(array.dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in kinds:
        raise _damaged(f"data_type {array.dtype}, expected {words} values", meta_path, "data_type")
    got = tuple(int(s) for s in array.shape)
    if len(got) != len(shape) or any(e is not None and g != e for g, e in zip(got, shape)) or 0 in got[1:]:
        want = ", ".join("C" if e is None else str(e) for e in shape)  # (only distances leave one open)
        raise _damaged(f"shape {got}, expected ({want}) from the store's n_patches, patch_size and origins",
                       meta_path, "shape")
    chunks = getattr(array.metadata.chunk_grid, "chunk_shape", None)
    if chunks is None or len(chunks) != len(got) or min(chunks, default=1) < 1:
        raise _damaged(f"unsupported chunk grid {_short(array.metadata.chunk_grid)}", meta_path, "chunk_grid")


def _chunk_keys(array: Any, row: int | None = None) -> Iterator[tuple[int, str]]:
    """``(first patch, chunk key)`` of each chunk of ``array``, in order, lazily; with ``row``, of
    the chunks that hold patch ``row`` only."""
    meta = array.metadata
    chunks = meta.chunk_grid.chunk_shape
    counts = [range(-(-int(s) // int(c))) for s, c in zip(array.shape, chunks)]
    if row is not None:
        counts[0] = range(row // chunks[0], row // chunks[0] + 1)
    for coords in itertools.product(*counts):
        yield coords[0] * chunks[0], meta.encode_chunk_key(coords)


def _key_template(array: Any) -> tuple[str, str, int, int] | None:
    """``(head, tail, n, step)`` when the chunk keys of ``array`` are ``f"{head}{c}{tail}"`` for
    ``c`` in ``range(n)``, chunk ``c`` starting at patch ``c * step`` (one chunk across every axis
    but the first, as in our layout); ``None`` for other grids. (zarr's encoder costs ~5 µs a key.)"""
    meta = array.metadata
    chunks = meta.chunk_grid.chunk_shape
    if any(-(-int(s) // int(c)) != 1 for s, c in zip(array.shape[1:], chunks[1:])):
        return None
    rest = (0,) * (len(chunks) - 1)
    head, probe, tail = meta.encode_chunk_key((7_654_321, *rest)).partition("7654321")
    if not probe or meta.encode_chunk_key((3, *rest)) != f"{head}3{tail}":
        return None
    return head, tail, -(-int(array.shape[0]) // int(chunks[0])), int(chunks[0])


def _files_under(folder: Path, nested: bool) -> set[str]:
    """Paths (``/``-separated, relative to ``folder``) of what lies in ``folder``: with ``nested``,
    the files under it at any depth; else its entries (one ``listdir``: a folder named like a
    chunk counts, and is an error when read). A folder that cannot be listed counts as empty."""
    if not nested:
        try:
            return set(os.listdir(folder))
        except OSError:
            return set()
    found: set[str] = set()
    todo = [("", str(folder))]
    while todo:
        prefix, where = todo.pop()
        try:
            with os.scandir(where) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        todo.append((f"{prefix}{entry.name}/", entry.path))
                    elif entry.is_file():
                        found.add(prefix + entry.name)
        except OSError:
            continue
    return found


def _first_missing_chunk(folder: Path, array: Any) -> tuple[int, str] | None:
    """``(first patch, key)`` of the first chunk of ``array`` with no file in ``folder``, or ``None``.

    One listing of the folder. Keys are made lazily while one is missing, so this takes at most
    as many steps as there are files, whatever shape the metadata claims.
    """
    template = _key_template(array)
    if template is None:
        keys = _chunk_keys(array)
        first = next(keys, None)
        if first is None:
            return None
        present = _files_under(folder, nested="/" in first[1])
        return next(((p, k) for p, k in itertools.chain([first], keys) if k not in present), None)
    head, tail, n, step = template
    present = _files_under(folder, nested="/" in head + tail)
    if n <= len(present) and present.issuperset([f"{head}{c}{tail}" for c in range(n)]):
        return None
    return next(((c * step, f"{head}{c}{tail}") for c in range(n) if f"{head}{c}{tail}" not in present), None)


def _physical_memory() -> int | None:
    """Bytes of RAM of this machine, or ``None`` where the system does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


class _ChunkFiles:
    """Reads whole patches of one store array straight from its chunk files.

    For arrays laid out as :class:`PatchStoreWriter` writes them (one chunk per patch, plain
    little-endian bytes, no compressor, Blosc or zstd); ``None`` from :meth:`for_array` for any
    other layout, which is then read through zarr. Skipping zarr's per-call machinery makes a
    random 128³ patch read about 3x faster. A chunk file that is missing, unreadable, short,
    long or does not decode is an :class:`InputError` naming it (never zarr's fill value).
    """

    def __init__(self, folder: Path, array: Any, decoder: Any):
        self.folder = folder
        self.array = array
        self.decoder = decoder
        self.shape = tuple(int(v) for v in array.shape[1:])
        self.dtype = np.dtype(array.dtype).newbyteorder("<")

    @classmethod
    def for_array(cls, folder: Path, array: Any) -> _ChunkFiles | None:
        import numcodecs
        from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec

        meta = getattr(array, "metadata", None)
        if getattr(meta, "zarr_format", None) != 3:
            return None
        chunks = tuple(getattr(meta.chunk_grid, "chunk_shape", ()))
        if chunks != (1, *array.shape[1:]) or not meta.codecs:
            return None
        serializer, *compressors = meta.codecs
        endian = getattr(getattr(serializer, "endian", None), "value", None)
        if not isinstance(serializer, BytesCodec) or (endian not in (None, "little")) or len(compressors) > 1:
            return None
        if not compressors:
            decoder = None
        elif isinstance(compressors[0], BloscCodec):
            decoder = numcodecs.Blosc()
        elif isinstance(compressors[0], ZstdCodec):
            decoder = numcodecs.Zstd()
        else:
            return None
        return cls(folder, array, decoder)

    def read(self, i: int) -> np.ndarray:
        """Patch ``i`` as a new, writable array."""
        key = self.array.metadata.encode_chunk_key((i,) + (0,) * len(self.shape))
        path = self.folder / key
        out = np.empty(self.shape, dtype=self.dtype)
        try:
            with open(path, "rb") as fh:
                if self.decoder is None:
                    n = fh.readinto(memoryview(out).cast("B"))
                    complete = n == out.nbytes and not fh.read(1)
                else:
                    try:
                        self.decoder.decode(fh.read(), out=out)
                        complete = True
                    except MemoryError:
                        raise
                    except Exception:  # noqa: BLE001  numcodecs raises several types for damaged bytes
                        complete = False
        except FileNotFoundError:
            raise _damaged(f"missing chunk (patch {i} of {self.folder.name!r})", path) from None
        except OSError as err:
            raise _damaged(f"cannot read chunk ({err.strerror or err})", path) from None
        if not complete:
            raise InputError(f"chunk {key} does not hold a {self.shape} {self.dtype} patch (truncated or damaged); "
                             f"{_REMAKE}", path=path)
        return out.astype(self.dtype.newbyteorder("="), copy=False)


class PatchStore:
    """A patch store opened for reading (see the module docstring for the layout).

    ``store[i]`` is ``{"image": (pz, py, px) float32, "labels": ..., "distances": (C, ...),
    "origin": (3,) int64}`` with the keys the store has; each array is one chunk read.

    Opening checks, before any patch is read, that the store is whole: the group's
    ``zarr.json`` and its attributes (format, format_version, complete, voxel_size,
    volume_shape, patch_size, n_patches), each array's metadata (dtype kind; shape
    ``(N, pz, py, px)``, ``(N, C, pz, py, px)`` for distances, ``(N, 3)`` for origins, with one
    N), every origin's patch inside ``volume_shape``, and that every chunk of every array has
    its file (one listing per array). Anything else is an :class:`InputError` naming the file
    and field. A chunk that disappears or is damaged after opening is an :class:`InputError`
    when it is read.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_dir():
            raise InputError("patch store not found (expected a <name>.zarr folder)", path=self.path)
        where = self.path / "zarr.json"
        meta = _read_json_object(
            where, "missing: not a patch store (a <name>.zarr folder written by `cryolearn prep patches` "
            "has its group metadata in zarr.json)"
        )
        attrs = meta.get("attributes", {})
        if not isinstance(attrs, dict):
            raise _damaged(f"expected a JSON object, got {type(attrs).__name__}", where, "attributes")
        _check_format(attrs, where)
        if meta.get("node_type") != "group" or meta.get("zarr_format") != 3:
            raise _damaged(f"not a zarr v3 group (zarr_format {_short(meta.get('zarr_format'))}, "
                           f"node_type {_short(meta.get('node_type'))})", where)
        self.attrs: dict[str, Any] = dict(attrs)
        self._voxel_size = _voxel_size(attrs, where)
        self._volume_shape = _extents(attrs, "volume_shape", where)
        self._patch_size = _extents(attrs, "patch_size", where)
        n_patches = attrs.get("n_patches")
        if n_patches is not None and not (_is_int(n_patches) and n_patches >= 0):
            raise _damaged(f"expected a whole number ≥ 0, got {_short(n_patches)}", where, "n_patches")
        self._records_complete = "complete" in attrs  # written by a version that records it (and always True here)

        self._arrays: dict[str, Any] = {}
        for key in _KEYS:
            if os.path.lexists(self.path / key):
                self._arrays[key] = _open_array(self.path / key)
        self.keys: tuple[str, ...] = tuple(k for k in _KEYS if k in self._arrays)
        if not self.keys:
            raise _damaged(f"no {', '.join(_KEYS[:-1])} or {_KEYS[-1]} array", self.path)
        self.origins = self._read_origins(n_patches)
        n = len(self.origins)
        for key, array in self._arrays.items():
            lead: tuple[int | None, ...] = (None,) if key == "distances" else ()
            _check_array(key, array, self.path / key, (n, *lead, *self._patch_size))
            self._check_chunks(key, array)
        self._files = {k: _ChunkFiles.for_array(self.path / k, a) for k, a in self._arrays.items()}

    def _read_origins(self, n_patches: int | None) -> np.ndarray:
        """The (N, 3) int64 origins, checked against ``n_patches`` (when the store records it), the
        chunk files and ``volume_shape``; :class:`InputError` naming the origins array."""
        folder = self.path / "origins"
        array = _open_array(folder)
        n = n_patches if n_patches is not None else int(array.shape[0]) if len(array.shape) else 0
        _check_array("origins", array, folder, (n, 3))
        missing = _first_missing_chunk(folder, array)
        if missing is not None and (self._records_complete or n != 1):
            # (older writers left out an all-zero chunk: the one patch of a store at (0, 0, 0))
            raise _damaged("missing chunk (origins)", folder / missing[1])
        try:
            origins = np.asarray(array[...])
        except MemoryError:
            raise
        except Exception as err:  # noqa: BLE001  zarr raises many types for damaged chunks
            raise _damaged(f"cannot read the origins ({type(err).__name__}: {_short(str(err))})", folder) from None
        if origins.dtype.kind == "u" and origins.size and origins.max() > np.iinfo(np.int64).max:
            raise _damaged(f"origin {int(origins.max())} is beyond any volume", folder, "origins")
        origins = origins.astype(np.int64).reshape(-1, 3)
        last = np.array(self._volume_shape, dtype=np.int64) - np.array(self._patch_size, dtype=np.int64)
        outside = np.flatnonzero(((origins < 0) | (origins > last)).any(axis=1))
        if outside.size:
            j = int(outside[0])
            raise _damaged(
                f"patch {j} at (z, y, x) {tuple(int(v) for v in origins[j])} of patch_size {self._patch_size} "
                f"reaches outside volume_shape {self._volume_shape}",
                folder, "origins",
            )
        return origins

    def _check_chunks(self, key: str, array: Any) -> None:
        """Every chunk of ``array`` has its file; else :class:`InputError` naming the first missing."""
        folder = self.path / key
        missing = _first_missing_chunk(folder, array)
        if missing is not None:
            raise _damaged(f"missing chunk (patch {missing[0]} of {key!r})", folder / missing[1])

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """(z, y, x) voxel size of the source volume, Å."""
        return self._voxel_size

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        """(Z, Y, X) of the source volume."""
        return self._volume_shape

    @property
    def patch_size(self) -> tuple[int, int, int]:
        """(pz, py, px), voxels."""
        return self._patch_size

    def __len__(self) -> int:
        return len(self.origins)

    def _index(self, i: int) -> int:
        n = len(self)
        if not -n <= int(i) < n:
            raise IndexError(f"patch {i} out of range for a store of {n} patches")
        return int(i) % n

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        i = self._index(i)
        item = {k: self._read(k, i) for k in self.keys}
        item["origin"] = self.origins[i].copy()
        return item

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def read(self, key: str, i: int) -> np.ndarray:
        """One array of patch ``i``."""
        if key not in self._arrays:
            raise KeyError(f"store {self.path} has no {key!r}; it has {self.keys}")
        return self._read(key, self._index(i))

    def _read(self, key: str, i: int) -> np.ndarray:
        files = self._files[key]
        return files.read(i) if files is not None else self._read_zarr(key, i)

    def _read_zarr(self, key: str, i: int) -> np.ndarray:
        """Patch ``i`` of ``key`` through zarr (other layouts), after checking that its chunk files
        exist (zarr would read a missing one as its fill value)."""
        array, folder = self._arrays[key], self.path / key
        for _, chunk in _chunk_keys(array, row=i):
            if not (folder / chunk).is_file():
                raise _damaged(f"missing chunk (patch {i} of {key!r})", folder / chunk)
        try:
            return np.asarray(array[i])
        except MemoryError:
            raise
        except Exception as err:  # noqa: BLE001  zarr raises many types for damaged chunks
            raise _damaged(f"cannot read patch {i} of {key!r} ({type(err).__name__}: {_short(str(err))})",
                           folder) from None

    def reassemble(self, key: str = "image", mode: str = "first", fill: float = 0) -> np.ndarray:
        """The volume ``key`` rebuilt from the patches (``(C, Z, Y, X)`` for distances).

        Exact where patches cover the volume; voxels in no patch get ``fill``. Builds the whole
        volume in memory (for stores of volumes that fit), reading one patch at a time;
        :class:`InputError` (field ``volume_shape``) when it would need more than this machine's
        memory.
        """
        if key not in self._arrays:
            raise KeyError(f"store {self.path} has no {key!r}; it has {self.keys}")
        array = self._arrays[key]
        voxels = math.prod(self.volume_shape) * math.prod(int(s) for s in array.shape[1:-3])
        need = voxels * (np.dtype(array.dtype).itemsize if mode == "first" else 12) + (
            8 * math.prod(self.volume_shape) if mode == "mean" else 0
        )
        memory = _physical_memory()
        if memory is not None and need > memory:
            raise InputError(
                f"reassembling {key!r} needs {need / 2**30:.1f} GiB for volume_shape {self.volume_shape}, more "
                f"than this machine's {memory / 2**30:.1f} GiB",
                path=self.path / "zarr.json",
                field="volume_shape",
            )
        return _reassemble(_LazyPatches(self, key), self.origins, self.volume_shape, mode=mode, fill=fill)

    def __repr__(self) -> str:
        return f"PatchStore({str(self.path)!r}, n={len(self)}, keys={self.keys}, patch_size={self.patch_size})"


class _LazyPatches:
    """One array of a store as a read-on-demand sequence of patches."""

    def __init__(self, store: PatchStore, key: str):
        self.store, self.key = store, key
        array = store._arrays[key]
        self.shape, self.dtype = tuple(array.shape), np.dtype(array.dtype)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.store._read(self.key, int(i))


def open_patch_store(path: str | os.PathLike) -> PatchStore:
    """Open a patch store for reading, checked whole (see :class:`PatchStore`); :class:`InputError`
    naming the file and field when ``path`` is not a readable, complete store."""
    return PatchStore(path)

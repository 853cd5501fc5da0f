"""Listing and reading micrographs for label-free training: folders, file lists, MRC(S), TIFF,
PNG/JPEG/WEBP, and prismpyp's metadata folder; a streaming torch ``Dataset`` over them.

A micrograph is named by an :class:`ImageRef`: a file and, for a stack (``.mrcs``, ``.st``,
multi-page TIFF), the slice. Nothing is read when refs are listed except the headers of stacks
(to count their slices); :func:`check_micrographs` opens every header before training, so a
bad file is reported by name before anything is written; :class:`MicrographDataset` reads one
image per item (memory-mapped for MRC).

Example
-------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> from napari_cryolearn.io import write_mrc
>>> folder = Path(tempfile.mkdtemp())
>>> _ = write_mrc(folder / "a.mrc", np.ones((40, 50), np.float32), voxel_size=1.5)
>>> _ = write_mrc(folder / "b.mrcs", np.zeros((3, 40, 40), np.float32), voxel_size=1.5)
>>> refs = list_micrographs(folder)
>>> [(r.path.name, r.index) for r in refs]
[('a.mrc', None), ('b.mrcs', 0), ('b.mrcs', 1), ('b.mrcs', 2)]
>>> check_micrographs(refs)
[(40, 50), (40, 40), (40, 40), (40, 40)]
>>> image, pixel_size = read_micrograph(refs[0])
>>> image.shape, image.dtype, pixel_size
((40, 50), dtype('float32'), 1.5)
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io.mrc import MRC_SUFFIXES, read_mrc

#: Suffixes of MRC stacks: one micrograph per slice.
STACK_SUFFIXES = (".mrcs", ".st")
TIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
IMAGE_SUFFIXES = MRC_SUFFIXES + TIFF_SUFFIXES + PIL_SUFFIXES
#: prismpyp's metadata folder: the list of names, and their thumbnails in ``webp/``.
PRISMPYP_LIST = "all_micrographs_list.micrographs"
PRISMPYP_PIXEL_SIZE = "pixel_size.txt"
#: Suffixes of the CTF-fit diagnostic images of nextPYP (docs: ``_ctffit``; prismpyp's code reads
#: ``_ctffind``), tried in this order.
CTFFIT_SUFFIXES = ("_ctffit.webp", "_ctffind.webp")


@dataclass(frozen=True)
class ImageRef:
    """One micrograph: a file, the slice of a stack, and what we know of it without reading it.

    Attributes
    ----------
    path : Path
    index : int or None
        Slice of a stack (MRCS, ``.st``, multi-page TIFF); None for a single image.
    pixel_size : float or None
        Angstrom per pixel when known from outside the file (prismpyp's ``pixel_size.txt``);
        overrides the header.
    ctffit : bool
        A CTF-fit diagnostic image: read through :func:`~napari_cryolearn.selfsup.spectra.friedel_image`.
    """

    path: Path
    index: int | None = None
    pixel_size: float | None = None
    ctffit: bool = False

    def __str__(self) -> str:
        return f"{self.path}[{self.index}]" if self.index is not None else str(self.path)


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _stack_length(path: Path) -> int | None:
    """Number of slices of a stack file; None when it is not a stack or cannot be opened (left to
    :func:`check_micrographs` to report)."""
    try:
        if _suffix(path) in STACK_SUFFIXES:
            data = read_mrc(path, mmap=True).data
            return data.shape[0] if data.ndim == 3 else None
        if _suffix(path) in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
            grey = len(shape) == 3 and shape[-1] not in (3, 4)
            return shape[0] if grey and len(shape) == 3 else None
    except Exception:  # noqa: BLE001 - reported by check_micrographs
        return None
    return None


def _refs_of_file(path: Path, pixel_size: float | None = None) -> list[ImageRef]:
    n = _stack_length(path)
    if n is None:
        return [ImageRef(path, None, pixel_size)]
    return [ImageRef(path, i, pixel_size) for i in range(n)]


def _prismpyp(folder: Path, ctffit: bool) -> list[ImageRef]:
    names = [ln.strip() for ln in (folder / PRISMPYP_LIST).read_text().splitlines() if ln.strip()]
    pixel_size = None
    px_file = folder / PRISMPYP_PIXEL_SIZE
    if px_file.is_file():
        try:
            pixel_size = float(px_file.read_text().split()[0])
        except (ValueError, IndexError):
            raise InputError("expected a number (Angstrom per pixel)", path=px_file, field="pixel_size") from None
    refs = []
    for name in names:
        if ctffit:
            candidates = [folder / "webp" / f"{name}{s}" for s in CTFFIT_SUFFIXES]
            path = next((c for c in candidates if c.exists()), candidates[0])
        else:
            path = folder / "webp" / f"{name}.webp"
        refs.append(ImageRef(path, None, pixel_size, ctffit))
    return refs


def list_micrographs(source: str | os.PathLike, *, recursive: bool = False, ctffit: bool = False) -> list[ImageRef]:
    """The micrographs of a folder, a file list, a single file or a prismpyp metadata folder.

    Parameters
    ----------
    source
        A folder: its files with a suffix of ``IMAGE_SUFFIXES``, sorted by path; or prismpyp's
        metadata folder (it holds ``all_micrographs_list.micrographs``): ``webp/<name>.webp``
        for each name listed, with the pixel size of ``pixel_size.txt`` (the original
        micrographs'; the thumbnails are binned). A text file (any other suffix): one path per
        line, relative to the file's folder, ``path#index`` for one slice of a stack; blank lines
        and lines starting with ``#`` are skipped. An image file: itself. Stacks give one ref per slice.
    recursive
        Also list the folder's sub-folders.
    ctffit
        For a prismpyp folder: the CTF-fit images ``webp/<name>_ctffit.webp`` (or
        ``_ctffind.webp``) instead of the thumbnails.

    Raises
    ------
    InputError
        ``source`` does not exist, or a folder holds no micrograph.
    """
    source = Path(source)
    if not source.exists():
        raise InputError("does not exist", path=source, field="source")
    if source.is_dir():
        if (source / PRISMPYP_LIST).is_file():
            return _prismpyp(source, ctffit)
        pattern = source.rglob("*") if recursive else source.glob("*")
        files = sorted(p for p in pattern if p.is_file() and _suffix(p) in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"no micrographs ({', '.join(IMAGE_SUFFIXES)}) in this folder"
                             + ("" if recursive else " (sub-folders not searched)"), path=source, field="source")
        return [ref for f in files for ref in _refs_of_file(f)]
    if _suffix(source) in IMAGE_SUFFIXES:
        return _refs_of_file(source)
    try:
        lines = source.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot be read as a list of micrographs ({err})", path=source, field="source") from None
    refs = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, index = line.rpartition("#") if re.fullmatch(r".+#\d+", line) else (line, "", "")
            p = Path(name)
            p = p if p.is_absolute() else source.parent / p
            if index:  # one slice of a stack (the lists ssl intersect and the explorer write)
                refs.append(ImageRef(p, int(index)))
            else:
                refs += _refs_of_file(p)
    return refs


def _grey(a: np.ndarray) -> np.ndarray:
    """(H, W, 3|4) colour to grey (the mean of R, G, B); other arrays unchanged."""
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        return a[..., :3].mean(axis=-1)
    return a


def _open(ref: ImageRef, data: bool):
    """(array or shape, pixel size from the file) of a ref; the array is only read if ``data``."""
    path, suffix = ref.path, _suffix(ref.path)
    if suffix in MRC_SUFFIXES:
        vol = read_mrc(path, mmap=True)
        arr = vol.data
        if ref.index is not None:
            if arr.ndim != 3 or not 0 <= ref.index < arr.shape[0]:
                raise InputError(f"no slice {ref.index} in data of shape {arr.shape}", path=path, field="index")
            arr = arr[ref.index]
        elif arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        px = float(vol.voxel_size[2])
    elif suffix in TIFF_SUFFIXES:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            if ref.index is not None:
                page = tif.pages[ref.index]
                arr = page.asarray() if data else np.empty(page.shape, np.uint8)
            else:
                shape = tif.series[0].shape
                arr = tif.asarray() if data else np.broadcast_to(np.uint8(0), shape)
        px = None
    elif suffix in PIL_SUFFIXES:
        from PIL import Image

        with Image.open(path) as img:
            if data:
                img.load()
                if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                    img = img.convert("RGB")
                arr = np.asarray(img)
            else:
                img.verify()
                bands = len(img.getbands())
                arr = np.broadcast_to(np.uint8(0), (img.size[1], img.size[0]) + ((bands,) if bands > 1 else ()))
        px = None
    else:
        raise InputError(f"not a micrograph file (expected one of {', '.join(IMAGE_SUFFIXES)})", path=path,
                         field="suffix")
    arr = _grey(arr)
    if arr.ndim != 2:
        hint = " (name it .mrcs if it is a stack of micrographs)" if suffix in MRC_SUFFIXES else ""
        raise InputError(f"expected a 2D micrograph, got shape {tuple(arr.shape)}{hint}", path=path, field="shape")
    if min(arr.shape) < 2:
        raise InputError(f"image too small: shape {tuple(arr.shape)}", path=path, field="shape")
    return arr, (ref.pixel_size if ref.pixel_size is not None else px)


def _why(err: Exception) -> str:
    return str(err) if isinstance(err, InputError) else f"cannot be read ({type(err).__name__}: {err})"


def check_micrographs(refs) -> list[tuple[int, int]]:
    """Open the header of every micrograph and report the bad ones, by name, before any work.

    Returns
    -------
    list of (height, width)
        The shape of each micrograph (of what :func:`read_micrograph` returns), in order.

    Raises
    ------
    InputError
        No micrographs; or files that are missing, unreadable, of an unknown format, or not 2D:
        ``path`` is the first bad file and the message names every bad one (up to 10).
    """
    refs = list(refs)
    if not refs:
        raise InputError("no micrographs to use", field="micrographs")
    shapes, bad = [], []
    for ref in refs:
        try:
            arr, _ = _open(ref, data=False)
            shapes.append(tuple(int(s) for s in arr.shape))
        except Exception as err:  # noqa: BLE001 - every failure is reported by file
            text = _why(err)
            bad.append((ref, text if text.startswith(str(ref.path)) else f"{ref}: {text}"))
    if bad:
        first, _ = bad[0]
        lines = "; ".join(text for _, text in bad[:10]) + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise InputError(f"{len(bad)} of {len(refs)} micrographs are unusable: {lines}", path=first.path,
                         field="micrographs")
    return shapes


def read_micrograph(ref: ImageRef) -> tuple[np.ndarray, float | None]:
    """Read one micrograph as a float32 2D array (colour averaged to grey), with its pixel size.

    The pixel size (Angstrom) is the ref's when it has one, else the MRC header's (1.0 when the
    header leaves it unset), else None (TIFF, PNG, JPEG, WEBP). A CTF-fit image (``ref.ctffit``)
    comes back Friedel-symmetric (:func:`~napari_cryolearn.selfsup.spectra.friedel_image`).

    Raises
    ------
    InputError
        The file is missing, unreadable or not 2D.
    """
    try:
        arr, px = _open(ref, data=True)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001
        raise InputError(_why(err), path=ref.path, field="micrograph") from None
    image = np.array(arr, dtype=np.float32)  # a native, writable copy (not the memory map)
    if ref.ctffit:
        from napari_cryolearn.selfsup.spectra import friedel_image

        image = friedel_image(image)
    return image, px


def prepare(image, *, size: int) -> np.ndarray:
    """Centre-crop a micrograph to a square, resize it to ``size`` x ``size`` (area-averaged when
    shrinking) and normalise it to zero mean and unit std (a constant image becomes zeros).

    >>> out = prepare(np.arange(12.0).reshape(3, 4), size=2)
    >>> out.shape, out.dtype, round(float(out.mean()), 6), round(float(out.std()), 6)
    ((2, 2), dtype('float32'), 0.0, 1.0)
    """
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 2:
        raise InputError(f"expected a 2D image, got shape {a.shape}", field="image")
    h, w = a.shape
    m = min(h, w)
    a = a[(h - m) // 2:(h - m) // 2 + m, (w - m) // 2:(w - m) // 2 + m]
    if m != size:
        from skimage.transform import resize

        a = resize(a, (size, size), order=1, anti_aliasing=m > size, preserve_range=True).astype(np.float32)
    a = a - a.mean()
    std = float(a.std())
    return a / std if std > 0 and np.isfinite(std) else np.zeros_like(a)


class MicrographDataset(Dataset):
    """A torch ``Dataset`` of micrographs, or of their power spectra, read from disk per item.

    Item ``i`` is ``(x, i)``: ``x`` is a float32 tensor (1, size, size), the micrograph
    prepared by :func:`prepare` (``fourier=False``) or its power spectrum
    (:func:`~napari_cryolearn.selfsup.spectra.power_spectrum` over tiles of ``size``, then
    prepared; a CTF-fit ref is already a spectrum and is only prepared), passed through
    ``transform`` when given: a two-view transform returns ``((x1, x2), i)``.

    Every header is opened on construction (:func:`check_micrographs`), so a bad file stops
    the run before it starts; images that will be cropped or resized (micrographs not ``size``
    x ``size``; for spectra, micrographs smaller than that) are counted and one warning says
    how many.

    Parameters
    ----------
    refs : sequence of ImageRef
    size : int
    fourier : bool
    transform : callable, optional
        Called on each (1, size, size) tensor (see :mod:`napari_cryolearn.selfsup.augment`).
    pixel_size : float, optional
        Angstrom per pixel of the micrographs, overriding headers.
    cache_bytes : int
        The prepared images are kept in memory when all of them fit in this many bytes (1 GiB by
        default), so only the first epoch reads the files and computes the spectra; a larger
        set is read from disk every epoch.
    """

    def __init__(self, refs, *, size: int, fourier: bool = False, transform: Callable | None = None,
                 pixel_size: float | None = None, cache_bytes: int = 1 << 30):
        if int(size) < 4:
            raise InputError(f"expected size >= 4, got {size}", field="size")
        self.refs = list(refs)
        self.size = int(size)
        self.fourier = bool(fourier)
        self.transform = transform
        self.pixel_size = pixel_size
        self.shapes = check_micrographs(self.refs)
        n, s = len(self.shapes), self.size
        # the prepared images (before the transform) are kept when they all fit in cache_bytes: epochs after
        # the first read and transform nothing from disk again
        self._cache: dict[int, np.ndarray] | None = {} if n * s * s * 4 <= cache_bytes else None
        if self.fourier:  # spectra are averaged over tiles of `size`: only smaller images are resized
            odd = sum(1 for shape in self.shapes if min(shape) < s)
            if odd:
                warnings.warn(f"{odd} of {n} micrographs are smaller than {s}x{s}: their spectra are computed "
                              f"at their own size and resized to {s}x{s}", stacklevel=2)
        else:  # binning square micrographs of one size to the network's is the normal case: no warning
            odd = sum(1 for shape in self.shapes if shape[0] != shape[1])
            sizes = sorted({shape for shape in self.shapes})
            if odd or len(sizes) > 1:
                warnings.warn(f"{n} micrographs of {len(sizes)} sizes ({odd} not square): each is centre-cropped to "
                              f"a square and resized to {s}x{s}", stacklevel=2)

    def __len__(self) -> int:
        return len(self.refs)

    def item_pixel_size(self, i: int) -> float | None:
        """Angstrom per pixel of item ``i`` as returned: for micrographs, that of the file times
        the resize factor; for spectra computed here, the micrograph's (a spectrum spans its
        Nyquist frequency whatever its size); None when unknown."""
        ref = self.refs[i]
        px = self.pixel_size if self.pixel_size is not None else ref.pixel_size
        if px is None:
            _, px = _open(ref, data=False)
        if px is None or self.fourier:
            return px
        return px * min(self.shapes[i]) / self.size

    def image(self, i: int) -> np.ndarray:
        """Item ``i`` before ``transform``: (size, size) float32."""
        if self._cache is not None and i in self._cache:
            return self._cache[i].copy()
        ref = self.refs[i]
        image, _ = read_micrograph(ref)
        if self.fourier and not ref.ctffit:
            from napari_cryolearn.selfsup.spectra import power_spectrum

            image = power_spectrum(image, size=min(self.size, *image.shape))
        out = prepare(image, size=self.size)
        if self._cache is not None:
            self._cache[i] = out.copy()
        return out

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.image(i))[None]
        if self.transform is not None:
            x = self.transform(x)
        return x, i

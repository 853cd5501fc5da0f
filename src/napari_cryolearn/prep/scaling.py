"""Intensity scaling of tomograms: optional inversion, percentile clipping, rescale to [0, 1].

The operation behind ``cryolearn prep scale``, equal to CryoSiam's
``invert_and_scale_intensity.py``::

    y = -x if invert else x
    lo, hi = np.percentile(y, [lower, upper])          # linear interpolation
    out = np.clip((y - lo) / (hi - lo), 0, 1)          # float32

without sorting the volume and without more memory than a few chunks.

Percentiles
-----------
``np.percentile`` (method ``linear``) interpolates between two order statistics (the k-th and
(k+1)-th smallest values, k = ⌊q/100 · (n − 1)⌋). :func:`percentiles` finds those order
statistics in one of these ways:

``exact``
    ``np.partition`` of an in-memory copy of the volume (one copy of memory).
``histogram``
    Streamed and exact, memory bounded by a few chunks whatever the volume size. Pass 1 reads
    the volume chunk by chunk for its minimum, maximum (and NaN check) and a systematic sample
    of ~2^18 voxels. The sample brackets each wanted order statistic between two data values
    with a wide margin (±8 standard deviations of the sample rank). Pass 2 counts, per
    bracket, the voxels below it and collects the few values inside it; ``np.partition`` of
    those gives the exact order statistic. When a bracket misses (an unlucky sample) or holds
    too many values (heavy ties), a radix selection on the values' bit patterns finishes the
    job exactly: a 2^16-bin histogram of the top 16 bits, then of the next 16 bits inside the
    chosen bin, and so on (two more passes for float32). The result equals ``exact`` bit for bit.
``sample``
    The percentiles of the pass-1 sample alone (one pass, approximate). The sample is every
    k-th voxel in memory order (k = n / 2^18, made coprime with the row and plane lengths), so
    for noise-like data the rank of the returned value is off by about
    ``sqrt(q (1 − q) / 2^18)`` (for q = 0.1 %: ±0.006 % of the voxels, one standard
    deviation); no bound holds for adversarial data. Use ``histogram`` when in doubt.
``auto``
    ``exact`` for volumes up to 2^20 voxels, ``histogram`` above.

Axis order is (z, y, x). Nothing here reads or writes files.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from napari_cryolearn.engine.jobs import relay, run_job
from napari_cryolearn.engine.progress import Progress
from napari_cryolearn.io.pages import release_pages

__all__ = [
    "SlabReader",
    "check_range",
    "default_threads",
    "ordered_map",
    "release_pages",
    "percentiles",
    "scale_chunk",
    "scale_intensity",
    "slab_bounds",
    "streamed_percentiles",
]

_METHODS = ("auto", "exact", "histogram", "sample")

_SAMPLE_SIZE = 2**18
_AUTO_EXACT_MAX = 2**20
#: Bytes per sub-block of the scaling loop (a few float32 ops on a block that stays in cache).
_BLOCK_BYTES = 1 << 20
#: Scaling runs in float32 when |values| / (hi - lo) is at most this (error ≤ ~4e-6);
#: above it the block is computed in float64 (a large offset over a narrow range).
_FLOAT32_SAFE_RATIO = 64.0


# ------------------------------------------------------------------------------------------
# reading a volume slab by slab


def slab_bounds(n_slices: int, slices_per_chunk: int) -> list[tuple[int, int]]:
    """``[(z0, z1), ...]`` covering ``0..n_slices`` in steps of ``slices_per_chunk``."""
    step = max(1, int(slices_per_chunk))
    return [(z, min(n_slices, z + step)) for z in range(0, n_slices, step)]


def _slices_for(shape: Sequence[int], itemsize: int, chunk_bytes: int) -> int:
    plane = max(1, math.prod(shape[1:]) * itemsize)
    return max(1, chunk_bytes // plane)


class SlabReader:
    """A volume read as slabs along z, in native byte order.

    In-memory arrays give views. Memory maps (``np.memmap``) give copies, and the pages read
    are released right after (see :func:`release_pages`), so a 1 GiB file streams through a
    few chunks of memory.

    Parameters
    ----------
    volume:
        (Z, Y, X) array or memory map.
    chunk_bytes:
        Approximate bytes per slab (whole z-slices, at least one).
    """

    def __init__(self, volume: np.ndarray, *, chunk_bytes: int = 64 << 20):
        self.volume = volume
        self.shape = tuple(volume.shape)
        self.dtype = volume.dtype.newbyteorder("=")
        self.bounds = slab_bounds(self.shape[0], _slices_for(self.shape, volume.dtype.itemsize, chunk_bytes))
        self.size = int(volume.size)

    def __len__(self) -> int:
        return len(self.bounds)

    def read(self, i: int) -> np.ndarray:
        """Slab ``i`` (a (z1 - z0, Y, X) array, native byte order)."""
        z0, z1 = self.bounds[i]
        view = self.volume[z0:z1]
        if isinstance(self.volume, np.memmap):
            out = np.array(view, dtype=self.dtype)
            release_pages(view)
            return out
        return view if view.dtype == self.dtype else view.astype(self.dtype)

    def start(self, i: int) -> int:
        """Flat index of slab ``i``'s first voxel."""
        return self.bounds[i][0] * math.prod(self.shape[1:])


def ordered_map(fn: Callable, items: Iterable, threads: int) -> Iterator:
    """``map(fn, items)`` on ``threads`` threads, in order, with few results waiting."""
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        window: list[Future] = []
        try:
            it = iter(items)
            for item in it:
                window.append(pool.submit(fn, item))
                if len(window) >= threads + 1:
                    break
            for item in it:
                yield window.pop(0).result()
                window.append(pool.submit(fn, item))
            while window:
                yield window.pop(0).result()
        finally:
            # closed early (stopped, or an error): drop what has not started, wait for the rest
            for fut in window:
                fut.cancel()


def default_threads() -> int:
    """Threads for chunked work: the CPUs this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


# ------------------------------------------------------------------------------------------
# order statistics


def _keys(a: np.ndarray) -> np.ndarray:
    """Unsigned integer keys that sort like the values of ``a`` (floats without NaN, ints)."""
    kind, size = a.dtype.kind, a.dtype.itemsize
    utype = np.dtype(f"u{size}")
    if kind == "b":
        return a.view(np.uint8)
    if kind == "u":
        return a
    sign = utype.type(1 << (8 * size - 1))
    u = a.view(utype)
    if kind == "i":
        return u ^ sign
    negative = u >> utype.type(8 * size - 1)
    flip = (negative * utype.type(np.iinfo(utype).max)) | sign
    return u ^ flip


def _value_of_key(key: int, dtype: np.dtype) -> float:
    """The value of ``dtype`` whose key (see :func:`_keys`) is ``key``."""
    kind, size = dtype.kind, dtype.itemsize
    utype = np.dtype(f"u{size}")
    if kind in "bu":
        return float(np.array(key, dtype=utype).astype(dtype))
    sign = 1 << (8 * size - 1)
    if kind == "i":
        return float(np.array(key ^ sign, dtype=utype).view(dtype))
    full = (1 << (8 * size)) - 1
    raw = key ^ sign if key & sign else key ^ full
    return float(np.array(raw, dtype=utype).view(dtype))


def _radix_select(reader: SlabReader, rank: int, threads: int) -> Generator[str, None, float]:
    """The ``rank``-th smallest value (0-based) by histograms of the bit patterns, 16 bits a pass.

    Yields ``"refine"`` after each chunk; returns the value.
    """
    bits = 8 * reader.dtype.itemsize
    if reader.dtype.kind == "b":
        bits = 8
    prefix, done_bits, remaining = 0, 0, rank
    while done_bits < bits:
        step = min(16, bits - done_bits)
        shift = bits - done_bits - step
        known, this_prefix = done_bits, prefix

        def hist(i: int, shift=shift, step=step, known=known, this_prefix=this_prefix) -> np.ndarray:
            k = _keys(reader.read(i)).ravel()
            if known:
                k = k[(k >> (bits - known)) == this_prefix]
            digits = (k >> shift) & ((1 << step) - 1)
            return np.bincount(digits.astype(np.intp), minlength=1 << step)

        counts = np.zeros(1 << step, dtype=np.int64)
        for h in ordered_map(hist, range(len(reader)), threads):
            counts += h
            yield "refine"
        cum = np.cumsum(counts)
        digit = int(np.searchsorted(cum, remaining, side="right"))
        remaining -= int(cum[digit - 1]) if digit else 0
        prefix = (prefix << step) | digit
        done_bits += step
    return _value_of_key(prefix, reader.dtype)


@dataclass
class _Scan:
    minimum: float
    maximum: float
    sample: np.ndarray  # sorted


def _scan(reader: SlabReader, threads: int, sample_size: int = _SAMPLE_SIZE) -> Generator[str, None, _Scan]:
    """Pass 1: minimum, maximum (NaN-propagating) and a sorted systematic sample.

    Yields ``"scan"`` after each chunk; returns the scan.
    """
    n = reader.size
    stride = max(1, n // sample_size)
    row, plane = reader.shape[-1], math.prod(reader.shape[1:])
    while stride > 1 and (math.gcd(stride, row) > 1 or math.gcd(stride, plane) > 1):
        stride += 1

    def work(i: int):
        c = reader.read(i)
        flat = c.ravel()
        first = (-reader.start(i)) % stride
        return c.min(), c.max(), np.array(flat[first::stride])

    mins, maxs, samples = [], [], []
    for mn, mx, s in ordered_map(work, range(len(reader)), threads):
        mins.append(mn)
        maxs.append(mx)
        samples.append(s)
        yield "scan"
    mins_a, maxs_a = np.array(mins), np.array(maxs)
    if reader.dtype.kind == "f" and not (np.all(np.isfinite(mins_a)) and np.all(np.isfinite(maxs_a))):
        raise ValueError("the volume holds NaN or infinite values")
    sample = np.sort(np.concatenate(samples))
    return _Scan(float(mins_a.min()), float(maxs_a.max()), sample)


def _bracket_select(
    reader: SlabReader, ranks: list[int], scan: _Scan, threads: int
) -> Generator[str, None, dict[int, float]]:
    """Pass 2: exact order statistics from sample brackets; radix selection where one misses.

    Yields ``"select"`` after each chunk (``"refine"`` in radix passes); returns {rank: value}.
    """
    n, sample = reader.size, scan.sample
    m = sample.size
    dtype = reader.dtype
    groups: list[tuple[list[int], object, object]] = []
    for group in _group_ranks(ranks):
        q0, q1 = group[0] / max(n - 1, 1), group[-1] / max(n - 1, 1)
        sd = math.sqrt(m * max(min(q0, 1 - q0), min(q1, 1 - q1), 1.0 / m))
        margin = int(8 * sd + 8)
        j0 = int(math.floor(q0 * (m - 1))) - margin
        j1 = int(math.ceil(q1 * (m - 1))) + margin
        lo = None if j0 <= 0 else dtype.type(sample[j0])
        hi = None if j1 >= m - 1 else dtype.type(sample[j1])
        groups.append((group, lo, hi))
    cap = max(1 << 22, n // 64)

    def work(i: int):
        c = reader.read(i).ravel()
        res = []
        for _, lo, hi in groups:
            if lo is None and hi is None:
                sel, below = c, 0
            elif lo is None:
                sel, below = c[c <= hi], 0
            elif hi is None:
                ge = c >= lo
                sel = c[ge]
                below = c.size - sel.size
            else:
                ge = c >= lo
                below = c.size - int(np.count_nonzero(ge))
                sel = c[ge & (c <= hi)]
            res.append((below, sel if sel.size <= cap else None, sel.size))
        return res

    below = [0] * len(groups)
    inside = [0] * len(groups)
    collected: list[list[np.ndarray] | None] = [[] for _ in groups]
    for res in ordered_map(work, range(len(reader)), threads):
        for g, (b, sel, count) in enumerate(res):
            below[g] += b
            inside[g] += count
            if collected[g] is not None:
                if sel is None or inside[g] > cap:
                    collected[g] = None
                else:
                    collected[g].append(sel)
        yield "select"

    out: dict[int, float] = {}
    for g, (group, _, _) in enumerate(groups):
        ok = collected[g] is not None and all(below[g] <= r < below[g] + inside[g] for r in group)
        if ok:
            values = np.concatenate(collected[g]) if collected[g] else np.zeros(0, dtype)
            local = [r - below[g] for r in group]
            part = np.partition(values, local)
            out.update({r: float(part[r - below[g]]) for r in group})
        else:
            for r in group:
                out[r] = yield from _radix_select(reader, r, threads)
    return out


def _group_ranks(ranks: list[int]) -> list[list[int]]:
    """Ranks sorted and grouped where they are close (one bracket per group)."""
    groups: list[list[int]] = []
    for r in sorted(set(ranks)):
        if groups and r - groups[-1][-1] <= 1:
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


def _virtual_index(q_percent: float, n: int) -> tuple[int, int, float]:
    """numpy's 'linear' method: ranks k, k+1 and the weight of the second."""
    q = np.float64(q_percent) / 100
    h = q * (n - 1)
    k = int(np.floor(h))
    return k, min(k + 1, n - 1), float(h - k)


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's interpolation between neighbouring order statistics."""
    d = b - a
    return b - d * (1 - t) if t >= 0.5 else a + d * t


def _check_q(lower: float | None, upper: float | None) -> tuple[float, float]:
    lo = 0.0 if lower is None else float(lower)
    hi = 100.0 if upper is None else float(upper)
    if not (0 <= lo <= 100 and 0 <= hi <= 100):
        raise ValueError(f"percentiles must lie in 0..100, got lower={lower}, upper={upper}")
    if lo >= hi:
        raise ValueError(f"the lower percentile ({lo}) must be below the upper one ({hi})")
    return lo, hi


def percentiles(
    volume: np.ndarray,
    lower: float | None = 0.1,
    upper: float | None = 99.9,
    *,
    method: str = "auto",
    invert: bool = False,
    chunk_slices: int | None = None,
    threads: int | None = None,
    reader: SlabReader | None = None,
) -> tuple[float, float]:
    """``np.percentile(y, [lower, upper])`` with ``y = -volume if invert else volume``.

    Parameters
    ----------
    volume:
        (Z, Y, X) real array, in memory or memory-mapped; never modified.
    lower, upper:
        Percentiles in 0..100 (``None``: 0 and 100, i.e. the minimum and the maximum).
    method:
        ``"exact"``, ``"histogram"`` (streamed exact), ``"sample"`` (approximate) or
        ``"auto"``; see the module docstring.
    invert:
        Percentiles of the inverted volume (``-volume``), as CryoSiam computes them after
        inverting.
    chunk_slices:
        z-slices per chunk for the streamed methods (default: about 16 MB per chunk).
    threads:
        Threads for the streamed methods (default: the usable CPUs, at most 8).
    reader:
        A :class:`SlabReader` to use instead of building one from ``volume``.

    Returns
    -------
    ``(p_lo, p_hi)`` as Python floats, in the volume's units (of ``-volume`` when inverted).

    Raises
    ------
    ValueError
        NaN or infinite values, an empty volume, percentiles outside 0..100 or not increasing,
        an unknown method.
    """
    q_lo, q_hi = _check_q(lower, upper)
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {_METHODS}")
    if volume.dtype.kind not in "biuf":
        raise ValueError(f"expected a real-valued volume, got dtype {volume.dtype}")
    n = int(volume.size)
    if n == 0:
        raise ValueError("the volume is empty")
    threads = default_threads() if threads is None else max(1, int(threads))
    if method == "auto":
        method = "exact" if n <= _AUTO_EXACT_MAX else "histogram"

    if method == "exact":
        wanted, ranks_x = _wanted_ranks(q_lo, q_hi, n, invert)
        flat = np.array(volume, copy=True).ravel()
        if flat.dtype.kind == "f" and not np.all(np.isfinite([flat.min(), flat.max()])):
            raise ValueError("the volume holds NaN or infinite values")
        part = np.partition(flat, ranks_x)
        return _combine(wanted, {r: float(part[r]) for r in ranks_x}, n, invert)
    if reader is None:
        rows = chunk_slices or _slices_for(volume.shape, volume.dtype.itemsize, 16 << 20)
        reader = SlabReader(volume, chunk_bytes=rows * math.prod(volume.shape[1:]) * volume.dtype.itemsize)
    return run_job(streamed_percentiles(reader, q_lo, q_hi, invert=invert, method=method, threads=threads))


def _wanted_ranks(q_lo: float, q_hi: float, n: int, invert: bool):
    wanted = [_virtual_index(q, n) for q in (q_lo, q_hi)]  # (k, k1, t) of y
    ranks_x = sorted({(n - 1 - r) if invert else r for k, k1, _ in wanted for r in (k, k1)})
    return wanted, ranks_x


def _combine(wanted, values: dict[int, float], n: int, invert: bool) -> tuple[float, float]:
    """Interpolate the percentiles of y (= -x when inverted) from order statistics of x."""

    def y_value(r: int) -> float:
        return -values[n - 1 - r] if invert else values[r]

    p = [_lerp(y_value(k), y_value(k1), t) for k, k1, t in wanted]
    return p[0], p[1]


def streamed_percentiles(
    reader: SlabReader,
    lower: float | None,
    upper: float | None,
    *,
    invert: bool = False,
    method: str = "histogram",
    threads: int | None = None,
) -> Generator[Progress, None, tuple[float, float]]:
    """:func:`percentiles` with the ``histogram`` or ``sample`` method, step by step.

    A generator for jobs: it yields a :class:`Progress` after every chunk it reads, its message
    the pass (``"scan"``: pass 1, ``"select"``: pass 2, ``"refine"``: a radix pass, see the
    module docstring), so that the caller can report progress and stop between chunks; it
    returns ``(p_lo, p_hi)``. ``len(reader)`` chunks make a pass; a run has 2 passes (1 for
    ``sample`` or a min/max rescale), plus 2 per missed bracket of a float32 volume (rare):
    the total grows when that happens.

    Raises
    ------
    ValueError
        NaN or infinite values (found in pass 1), bad percentiles.
    """
    q_lo, q_hi = _check_q(lower, upper)
    if method not in ("histogram", "sample"):
        raise ValueError(f"expected method 'histogram' or 'sample', got {method!r}")
    threads = default_threads() if threads is None else max(1, int(threads))
    steps = itertools.count(1)
    expected = len(reader) * (1 if method == "sample" else 2)

    def event(word: str) -> Progress:
        nonlocal expected
        step = next(steps)
        if step > expected:
            expected += len(reader)
        return Progress(step, expected, word)

    return (yield from relay(_percentile_passes(reader, q_lo, q_hi, invert, method, threads), event=event))


def _percentile_passes(reader: SlabReader, q_lo: float, q_hi: float, invert: bool, method: str,
                       threads: int) -> Generator[str, None, tuple[float, float]]:
    """The passes of :func:`streamed_percentiles`, yielding the pass's word after each chunk."""
    n = reader.size
    wanted, ranks_x = _wanted_ranks(q_lo, q_hi, n, invert)
    scan = yield from _scan(reader, threads)
    values: dict[int, float] = {}
    rest = []
    for r in ranks_x:
        if r == 0:
            values[r] = scan.minimum
        elif r == n - 1:
            values[r] = scan.maximum
        else:
            rest.append(r)
    if rest and method == "sample":
        s = scan.sample
        for r in rest:
            pos = r / (n - 1) * (s.size - 1)
            j = int(math.floor(pos))
            values[r] = _lerp(float(s[j]), float(s[min(j + 1, s.size - 1)]), pos - j)
    elif rest:
        found = yield from _bracket_select(reader, rest, scan, threads)
        values.update(found)
    return _combine(wanted, values, n, invert)


# ------------------------------------------------------------------------------------------
# scaling


def scale_chunk(src: np.ndarray, dst: np.ndarray, p_lo: float, p_hi: float, invert: bool, clip: bool) -> None:
    """``dst = clip((y - p_lo) / (p_hi - p_lo), 0, 1)`` with ``y = -src if invert else src``.

    ``dst`` is float32, same shape as ``src``; both C-contiguous or slab views. Computed in
    float32 in place, sub-block by sub-block (in float64 when the values sit far from zero
    compared with ``p_hi - p_lo``, where float32 would lose digits).
    """
    # y - p_lo = x - p_lo, or -(x + p_lo) when inverted: dividing by ±(p_hi - p_lo) computed
    # like the numerator makes the voxels at the percentiles exactly 0 and 1
    shift = -p_lo if invert else p_lo
    # values beyond the percentiles are clipped, or far enough out that the error is relative
    wide = max(abs(p_lo), abs(p_hi)) / (p_hi - p_lo) > _FLOAT32_SAFE_RATIO
    s2 = src.reshape(-1)
    d2 = dst.reshape(-1)
    step = max(1, _BLOCK_BYTES // 4)
    if wide:
        den = (p_lo - p_hi) if invert else (p_hi - p_lo)
        for a in range(0, s2.size, step):
            b = min(s2.size, a + step)
            block = s2[a:b].astype(np.float64)
            block -= shift
            block /= den
            if clip:
                np.clip(block, 0.0, 1.0, out=block)
            d2[a:b] = block
        return
    f_shift = np.float32(shift)
    lo32, hi32 = np.float32(p_lo), np.float32(p_hi)
    f_den = (lo32 - hi32) if invert else (hi32 - lo32)
    same = src.dtype == np.float32
    for a in range(0, s2.size, step):
        b = min(s2.size, a + step)
        d = d2[a:b]
        if same:
            np.subtract(s2[a:b], f_shift, out=d)
        else:
            d[...] = s2[a:b]
            np.subtract(d, f_shift, out=d)
        np.divide(d, f_den, out=d)
        if clip:
            np.clip(d, np.float32(0), np.float32(1), out=d)


def scale_intensity(
    volume: np.ndarray,
    lower: float | None = 0.1,
    upper: float | None = 99.9,
    *,
    invert: bool = False,
    clip: bool = True,
    method: str = "auto",
    out: np.ndarray | None = None,
    chunk_slices: int | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Invert (optionally), clip at percentiles and rescale to [0, 1], as CryoSiam does.

    ``out = clip((y - p_lo) / (p_hi - p_lo), 0, 1)`` with ``y = -volume if invert else volume``
    and ``p_lo, p_hi = np.percentile(y, [lower, upper])`` (linear interpolation), to float32
    precision.

    Parameters
    ----------
    volume:
        (Z, Y, X) real array (float or integer), in memory or memory-mapped; never modified.
    lower, upper:
        Percentiles (0..100) mapped to 0 and 1. ``lower`` 0 or ``None`` and ``upper`` 100 or
        ``None``: a plain min/max rescale.
    invert:
        Dense = bright: the volume is multiplied by −1 first.
    clip:
        Clip to [0, 1] (values beyond the percentiles); False leaves them beyond.
    method:
        How percentiles are found (``"auto"``, ``"exact"``, ``"histogram"``, ``"sample"``; see
        :func:`percentiles`).
    out:
        float32 array of the volume's shape to write into (e.g. a memory-mapped file).
    chunk_slices:
        z-slices per chunk (default: about 16 MB of input per chunk).
    threads:
        Threads over chunks (default: the usable CPUs, at most 8).

    Returns
    -------
    float32 array (``out`` when given), values in [0, 1] when ``clip``.

    Raises
    ------
    ValueError
        NaN/inf values, a constant volume (``p_hi == p_lo``), bad percentiles.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    >>> scale_intensity(v, None, None).ravel().tolist()[:3]
    [0.0, 0.1428571492433548, 0.2857142984867096]
    """
    volume = np.asanyarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"expected a 3D volume (z, y, x), got shape {volume.shape}")
    threads = default_threads() if threads is None else max(1, int(threads))
    rows = chunk_slices or _slices_for(volume.shape, volume.dtype.itemsize, 16 << 20)
    reader = SlabReader(volume, chunk_bytes=rows * math.prod(volume.shape[1:]) * volume.dtype.itemsize)
    p_lo, p_hi = percentiles(volume, lower, upper, method=method, invert=invert, threads=threads, reader=reader)
    check_range(p_lo, p_hi)
    if out is None:
        out = np.empty(volume.shape, dtype=np.float32)
    elif out.shape != volume.shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {volume.shape}, got {out.dtype} {out.shape}")

    def work(i: int) -> None:
        z0, z1 = reader.bounds[i]
        scale_chunk(reader.read(i), out[z0:z1], p_lo, p_hi, invert, clip)

    for _ in ordered_map(work, range(len(reader)), threads):
        pass
    return out


def check_range(p_lo: float, p_hi: float) -> None:
    """``ValueError`` when the percentiles are equal (a constant volume, nothing to scale)."""
    if not p_hi > p_lo:
        raise ValueError(
            f"the volume is constant between the percentiles (p_lo = p_hi = {p_lo}); nothing to scale"
        )

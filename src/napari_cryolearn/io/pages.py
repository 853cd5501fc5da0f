"""Releasing the resident pages of memory-mapped arrays, so streamed jobs stay small.

Pages of a long-lived memory map count in the process's RSS once touched; jobs that stream a
large volume through a map drop each slab's pages after use, which keeps their peak memory at a
few slabs whatever the volume's size.
"""

from __future__ import annotations

import os
import sys

import numpy as np

_LIBC = None


def byte_bounds(arr: np.ndarray) -> tuple[int, int]:
    """Addresses of the first and one past the last byte an array's elements occupy (any strides)."""
    lo = hi = arr.ctypes.data
    for n, stride in zip(arr.shape, arr.strides):
        if stride < 0:
            lo += (n - 1) * stride
        else:
            hi += (n - 1) * stride
    return lo, hi + arr.itemsize


def release_pages(arr: np.ndarray) -> None:
    """Drop the pages of a memory-mapped array's span from this process's resident set.

    File-backed pages stay in the page cache (and written data stay in the file); only their
    mapping into this process goes, so they stop counting towards its RSS. Linux only; a no-op
    elsewhere, for arrays that are not memory maps, and for copy-on-write maps (mode ``"c"``).
    """
    global _LIBC
    if not sys.platform.startswith("linux") or not isinstance(arr, np.memmap) or arr.size == 0:
        return
    if getattr(arr, "mode", None) == "c":  # private copy-on-write pages: dropping them loses edits
        return
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
        _LIBC.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = os.sysconf("SC_PAGE_SIZE")
    lo, hi = byte_bounds(arr)
    lo -= lo % page
    hi += (-hi) % page
    _LIBC.madvise(lo, hi - lo, 4)  # MADV_DONTNEED

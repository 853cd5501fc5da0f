"""The integer types that labels are stored in."""

from __future__ import annotations

import numpy as np

__all__ = ["smallest_unsigned_dtype"]

_UNSIGNED = (np.uint8, np.uint16, np.uint32, np.uint64)


def smallest_unsigned_dtype(max_value: int, *, largest: type = np.uint64) -> np.dtype:
    """The smallest unsigned integer type, up to ``largest``, that holds ``max_value`` (≥ 0).

    >>> smallest_unsigned_dtype(255), smallest_unsigned_dtype(256)
    (dtype('uint8'), dtype('uint16'))
    >>> smallest_unsigned_dtype(2**32, largest=np.uint32)
    Traceback (most recent call last):
    ...
    ValueError: 4294967296 does not fit in uint32
    """
    for dt in _UNSIGNED:
        if max_value <= np.iinfo(dt).max:
            return np.dtype(dt)
        if dt is largest:
            break
    raise ValueError(f"{max_value} does not fit in {np.dtype(largest).name}")

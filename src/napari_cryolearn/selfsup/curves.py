"""Training curves as small images (prismpyp's ``total_loss.webp`` and ``collapse_level.webp``).

Drawn with Pillow (no plotting library needed): a line over epochs with labelled axes ends.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from napari_cryolearn.engine.atomic import atomic_path

__all__ = ["plot_curve"]


def plot_curve(path: str | os.PathLike, values: Sequence[float], *, title: str, size: tuple[int, int] = (640, 400),
               overwrite: bool = True) -> Path:
    """Draw ``values`` (one per epoch) as a line plot into ``path`` (``.webp``, ``.png``, ...).

    Non-finite values are left out of the line. Returns ``path``.

    >>> import tempfile
    >>> from PIL import Image
    >>> p = plot_curve(Path(tempfile.mkdtemp()) / "loss.webp", [1.0, 0.5, 0.25], title="loss")
    >>> Image.open(p).size
    (640, 400)
    """
    from PIL import Image, ImageDraw

    w, h = size
    left, right, top, bottom = 70, 20, 40, 40
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    draw.text((left, 12), title, fill="black")
    points = [(i, float(v)) for i, v in enumerate(values, start=1) if math.isfinite(float(v))]
    draw.rectangle([left, top, w - right, h - bottom], outline="black")
    if points:
        lo = min(v for _, v in points)
        hi = max(v for _, v in points)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        n = max(len(values), 2)

        def xy(i: int, v: float) -> tuple[float, float]:
            x = left + (i - 1) / (n - 1) * (w - left - right)
            y = h - bottom - (v - lo) / (hi - lo) * (h - top - bottom)
            return x, y

        line = [xy(i, v) for i, v in points]
        if len(line) > 1:
            draw.line(line, fill=(31, 119, 180), width=2)
        for x, y in line:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(31, 119, 180))
        draw.text((4, top - 6), f"{hi:.4g}", fill="black")
        draw.text((4, h - bottom - 6), f"{lo:.4g}", fill="black")
        draw.text((left, h - bottom + 8), "epoch 1", fill="black")
        draw.text((w - right - 60, h - bottom + 8), f"epoch {len(values)}", fill="black")
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        img.save(tmp, format=path.suffix.lstrip(".").upper().replace("JPG", "JPEG") or "PNG")
    return path

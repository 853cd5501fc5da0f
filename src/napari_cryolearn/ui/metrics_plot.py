"""A small live line plot of training metrics (loss, Dice) per epoch, drawn with QPainter.

No plotting library needed: a few series of a few hundred points each.
"""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

_COLORS = ["#e6550d", "#3182bd", "#31a354", "#756bb1", "#de2d26", "#636363"]


class MetricsPlot(QWidget):
    """Series of (x, y) points, drawn as lines on shared axes with a legend; ``y_range`` fixes
    the vertical axis (Dice in [0, 1]), else it spans the points and [0, 1].

    ``add(name, x, y)`` appends a point (GUI thread); ``clear()`` empties the plot.
    """

    def __init__(self, parent=None, *, y_range: tuple[float, float] | None = None, title: str = ""):
        super().__init__(parent)
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.y_range = y_range
        self.title = title
        self.setMinimumHeight(160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def add(self, name: str, x: float, y: float) -> None:
        """Append the point (x, y) to the series ``name``."""
        self.series.setdefault(name, []).append((float(x), float(y)))
        self.update()

    def clear(self) -> None:
        """Remove every series."""
        self.series.clear()
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802  (Qt's name)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        left, right, top, bottom = 40, 10, 10, 20
        painter.setPen(QPen(QColor("#888888")))
        painter.drawRect(left, top, w - left - right, h - top - bottom)
        points = [p for s in self.series.values() for p in s]
        if not points:
            painter.drawText(left + 8, top + 20, f"{self.title or 'metrics'}: shown during training")
            return
        if self.title:
            painter.drawText(left + 6, top + 14, self.title)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x0, x1 = min(xs), max(xs)
        y0, y1 = self.y_range if self.y_range else (min(0.0, min(ys)), max(1.0, max(ys)))
        x1 = x1 if x1 > x0 else x0 + 1

        def to_screen(x: float, y: float) -> QPointF:
            px = left + (x - x0) / (x1 - x0) * (w - left - right)
            py = top + (1 - (y - y0) / (y1 - y0)) * (h - top - bottom)
            return QPointF(px, py)

        painter.drawText(2, top + 10, f"{y1:.2g}")
        painter.drawText(2, h - bottom, f"{y0:.2g}")
        painter.drawText(left, h - 4, f"epoch {x0:g}")
        painter.drawText(w - right - 60, h - 4, f"{x1:g}")
        for i, (name, pts) in enumerate(self.series.items()):
            pen = QPen(QColor(_COLORS[i % len(_COLORS)]))
            pen.setWidth(2)
            painter.setPen(pen)
            screen = [to_screen(x, y) for x, y in pts]
            for a, b in zip(screen, screen[1:]):
                painter.drawLine(a, b)
            for p in screen:
                painter.drawEllipse(p, 2.0, 2.0)
        # legend in the top-right corner, over a backdrop so that lines do not cross the names
        width = max(painter.fontMetrics().horizontalAdvance(n) for n in self.series) + 24
        x_legend = w - right - width - 4
        backdrop = QColor(self.palette().window().color())
        backdrop.setAlpha(210)
        painter.fillRect(x_legend, top + 2, width, 14 * len(self.series) + 6, backdrop)
        for i, name in enumerate(self.series):
            color = QColor(_COLORS[i % len(_COLORS)])
            y = top + 14 + 14 * i
            painter.fillRect(x_legend + 4, y - 6, 12, 3, color)
            painter.setPen(QPen(color))
            painter.drawText(x_legend + 20, y, name)
        painter.end()


def plot_training_progress(metrics: dict, loss_plot: MetricsPlot, other: MetricsPlot | None = None,
                           other_metric: str | Sequence[str] | None = None) -> None:
    """Add a training job's progress ``metrics`` to the plots every training widget shows: the loss
    per batch (at its place within its epoch) and ``train_loss`` / ``val_loss`` per epoch on
    ``loss_plot``, and the stage's own epoch metric ``other_metric`` (Dice, collapse level, error
    in Å; or several names) on ``other``. Events without an ``epoch`` are ignored."""
    if "epoch" not in metrics:
        return
    if "batch" in metrics:
        if "train_loss" in metrics:
            where = metrics["epoch"] - 1 + metrics["batch"] / max(1, metrics.get("batches", metrics["batch"]))
            loss_plot.add("batch loss", where, metrics["train_loss"])
        return
    for name in ("train_loss", "val_loss"):
        if name in metrics:
            loss_plot.add(name, metrics["epoch"], metrics[name])
    if other is not None and other_metric is not None:
        plot_epoch_metrics(metrics, other, other_metric)


def plot_epoch_metrics(metrics: dict, plot: MetricsPlot, names: str | Sequence[str]) -> None:
    """Add the epoch metrics ``names`` of a training job's progress ``metrics`` to ``plot``
    (events of a batch, or without an ``epoch``, are ignored)."""
    if "epoch" not in metrics or "batch" in metrics:
        return
    for name in ((names,) if isinstance(names, str) else names):
        if name in metrics:
            plot.add(name, metrics["epoch"], metrics[name])

"""Regenerate the documentation's screenshots from a real napari viewer.

For every dock widget that napari-cryolearn's manifest contributes, this opens the widget in a
viewer holding the plugin's first sample data set and writes

- ``docs/images/<widget-id>.png``: the dock widget alone;
- ``docs/images/<widget-id>-window.png``: the whole window with that widget docked;

and ``docs/images/viewer.png``, the window with the sample data and no widget. ``<widget-id>``
is the widget's command id without the ``napari-cryolearn.`` prefix. With no widgets in the
manifest only ``viewer.png`` is written.

Run it under a (virtual) display, from the repository root::

    xvfb-run -a .venv/bin/python scripts/screenshots.py

Exits with status 1 when a widget failed to open or to be captured (the others are still
written), 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

PLUGIN = "napari-cryolearn"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def _settle(app, rounds: int = 5) -> None:
    """Let Qt lay out and paint everything before a grab."""
    for _ in range(rounds):
        app.processEvents()


def _grab_dock(dock, inner):
    """The dock widget as a pixmap, cut below its content (docks stretch to the window's height)."""
    from qtpy.QtCore import QPoint, QRect

    content = getattr(inner, "native", inner)
    height = dock.height()
    if hasattr(content, "mapTo") and hasattr(content, "sizeHint"):
        bottom = content.mapTo(dock, QPoint(0, 0)).y() + content.sizeHint().height() + 12
        height = max(1, min(height, bottom))
    return dock.grab(QRect(0, 0, dock.width(), height))


def _widget_id(command: str) -> str:
    prefix = PLUGIN + "."
    return command[len(prefix) :] if command.startswith(prefix) else command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the PNG files (default: docs/images)")
    parser.add_argument("--size", type=int, nargs=2, default=(1400, 900), metavar=("WIDTH", "HEIGHT"),
                        help="window size in pixels (default: 1400 900)")
    parser.add_argument("--theme", default="dark", help="napari theme (default: dark)")
    parser.add_argument("--no-sample", action="store_true", help="do not load the plugin's sample data")
    args = parser.parse_args(argv)

    import napari
    import npe2
    from qtpy.QtWidgets import QApplication

    pm = npe2.PluginManager.instance()
    if PLUGIN not in pm:
        pm.discover()
    manifest = pm.get_manifest(PLUGIN)
    widgets = list(manifest.contributions.widgets or [])
    samples = list(manifest.contributions.sample_data or [])

    args.out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True, title="napari-cryolearn")
    viewer.theme = args.theme
    viewer.window.resize(*args.size)
    app = QApplication.instance()
    written: list[Path] = []
    failed: list[str] = []
    try:
        if samples and not args.no_sample:
            print(f"loading sample data {samples[0].key!r}")
            viewer.open_sample(PLUGIN, samples[0].key)
            viewer.dims.ndisplay = 2
            viewer.reset_view()
        _settle(app)
        path = args.out / "viewer.png"
        viewer.screenshot(str(path), canvas_only=False)
        written.append(path)

        print(f"{len(widgets)} widget(s) in the manifest")
        for contribution in widgets:
            wid = _widget_id(contribution.command)
            try:
                dock, inner = viewer.window.add_plugin_dock_widget(PLUGIN, contribution.display_name)
                _settle(app)
                path = args.out / f"{wid}.png"
                if not _grab_dock(dock, inner).save(str(path)):
                    raise OSError(f"could not write {path}")
                written.append(path)
                path = args.out / f"{wid}-window.png"
                viewer.screenshot(str(path), canvas_only=False)
                written.append(path)
                viewer.window.remove_dock_widget(dock)
                _settle(app)
            except Exception:
                failed.append(contribution.display_name)
                print(f"FAILED: widget {contribution.display_name!r} ({contribution.command})", file=sys.stderr)
                traceback.print_exc()
    finally:
        viewer.close()

    for path in written:
        print(f"wrote {path}")
    if failed:
        print(f"{len(failed)} widget(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

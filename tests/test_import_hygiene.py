"""The house rule, checked: nothing outside ``napari_cryolearn/ui/`` imports Qt or napari, and the
light stages (``io``, ``prep``) do not import torch.

Two checks: a static scan of the source (every import statement, also those inside functions),
and fresh interpreters that import the modules and look at ``sys.modules`` (catching what the
modules pull in through third-party packages).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import napari_cryolearn

PACKAGE_DIR = Path(napari_cryolearn.__file__).resolve().parent
GUI_PACKAGES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "napari")
LIGHT_PACKAGES = ("io", "prep")


def _non_ui_files() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if p.relative_to(PACKAGE_DIR).parts[0] != "ui")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["napari_cryolearn", *parts])


def _non_ui_modules() -> list[str]:
    """Every importable module outside ui/ (``__main__`` would run the CLI, so it is left out)."""
    return [_module_name(p) for p in _non_ui_files() if p.stem != "__main__"]


def _imported_names(tree: ast.AST, module: str) -> list[tuple[int, str, bool]]:
    """(line, absolute module name, at module level) for every import in ``tree``."""
    found = []
    top_level = set()
    for node in ast.iter_child_nodes(tree):
        top_level.add(node)
        # imports guarded by `if TYPE_CHECKING:` or try/except at module level still run on import
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            top_level.update(ast.walk(node))
    package = module.rpartition(".")[0]  # a package's own name is given as "<package>.__init__"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, node in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name, node in top_level))
            found += [(node.lineno, f"{name}.{alias.name}", node in top_level) for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value, False))
    return found


def test_there_is_something_to_scan():
    files = _non_ui_files()
    assert PACKAGE_DIR / "__init__.py" in files
    assert not [f for f in files if "ui" in f.relative_to(PACKAGE_DIR).parts[:-1]]


def test_no_gui_imports_outside_ui_in_the_source():
    offences = set()
    for path in _non_ui_files():
        module = _module_name(path) + (".__init__" if path.name == "__init__.py" else "")
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, name, module_level in _imported_names(tree, module):
            top = name.split(".")[0]
            if top in GUI_PACKAGES:
                offences.add(f"{path.relative_to(PACKAGE_DIR)}:{line}: imports {top}")
            elif module_level and (name == "napari_cryolearn.ui" or name.startswith("napari_cryolearn.ui.")):
                offences.add(f"{path.relative_to(PACKAGE_DIR)}:{line}: imports napari_cryolearn.ui at module level")
    assert not offences, "Qt/napari imports outside ui/:\n" + "\n".join(sorted(offences))


def test_scanner_sees_the_imports_it_must_see():
    source = textwrap.dedent(
        """
        import os
        import napari.layers
        from qtpy import QtWidgets
        from . import ui
        from .ui.widgets import W
        from napari_cryolearn import ui as ui2
        from .engine import errors
        if True:
            from superqt import QCollapsible
        def f():
            import magicgui
            importlib.import_module("PyQt6.QtCore")
        """
    )
    names = _imported_names(ast.parse(source), "napari_cryolearn.cli")
    by_name = {name: module_level for _, name, module_level in names}
    assert by_name["napari.layers"] is True
    assert by_name["qtpy"] is True
    assert by_name["napari_cryolearn.ui"] is True
    assert by_name["napari_cryolearn.ui.widgets"] is True
    assert by_name["napari_cryolearn.engine"] is True
    assert by_name["superqt"] is True
    assert by_name["magicgui"] is False
    assert by_name["PyQt6.QtCore"] is False
    assert "os" in by_name


_IMPORT_AND_REPORT = textwrap.dedent(
    """
    import contextlib, io, json, sys, traceback
    watched = json.loads(sys.argv[1])
    modules = json.loads(sys.argv[2])
    run_help = sys.argv[3] == "1"
    before = sorted(m for m in sys.modules if m.split(".")[0] in watched)
    errors = {}
    for name in modules:
        try:
            __import__(name)
        except BaseException:
            errors[name] = traceback.format_exc(limit=3)
    if run_help:
        from napari_cryolearn import cli
        sys.argv = ["cryolearn", "--help"]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                cli.main()
            except SystemExit:
                pass
            except BaseException:
                errors["cryolearn --help"] = traceback.format_exc(limit=3)
    after = sorted(m for m in sys.modules if m.split(".")[0] in watched)
    print(json.dumps({"before": before, "after": after, "errors": errors}))
    """
)


def _import_in_fresh_python(modules: list[str], watched: tuple[str, ...], run_help: bool = False) -> dict:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _IMPORT_AND_REPORT, json.dumps(list(watched)), json.dumps(modules),
         "1" if run_help else "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _culprits(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    """Which modules, each imported alone, pull in a watched package (only run on failure)."""
    lines = []
    for name in modules:
        pulled = _import_in_fresh_python([name], watched)["after"]
        if pulled:
            lines.append(f"{name} -> {sorted({m.split('.')[0] for m in pulled})}")
    return lines


def test_importing_every_non_ui_module_and_cli_help_loads_no_qt_or_napari():
    modules = _non_ui_modules()
    assert "napari_cryolearn" in modules
    result = _import_in_fresh_python(modules, GUI_PACKAGES, run_help="napari_cryolearn.cli" in modules)
    assert not result["before"], f"the interpreter had {result['before']} before any import"
    assert not result["errors"], "modules that fail to import:\n" + "\n".join(
        f"--- {name}\n{tb}" for name, tb in result["errors"].items()
    )
    if result["after"]:
        pytest.fail("Qt/napari loaded by non-ui modules:\n" + "\n".join(_culprits(modules, GUI_PACKAGES)))


def test_light_stages_do_not_import_torch():
    modules = [m for m in _non_ui_modules() if m.split(".")[1:2] and m.split(".")[1] in LIGHT_PACKAGES]
    if not modules:
        pytest.skip("no io/ or prep/ modules yet")
    result = _import_in_fresh_python(modules, ("torch",))
    assert not result["errors"], "modules that fail to import:\n" + "\n".join(
        f"--- {name}\n{tb}" for name, tb in result["errors"].items()
    )
    if result["after"]:
        pytest.fail("torch loaded by light modules:\n" + "\n".join(_culprits(modules, ("torch",))))

"""The house rule, checked: nothing outside ``napari_cryolearn/ui/`` imports Qt or napari, and the
light stages (``io``, ``prep``) do not import torch.

Two checks: a static scan of the source (every import statement, also those inside functions),
and fresh interpreters that import the modules and look at ``sys.modules`` (catching what the
modules pull in through third-party packages).

Then the lazy packages (``napari_cryolearn._lazy``): importing a package imports none of its
modules, listing the stages and printing help load nothing heavy (fresh interpreters again, the
forbidden packages per command in ``LIGHT_COMMANDS``), and every exported name still resolves.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
import textwrap
import types
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


# --- lazy packages: listing stages and printing help load nothing heavy --------------------------

# Nothing on this list is needed to list the stages or to print any help: the deep-learning
# stack (torch, Lightning, MONAI), the GUI (napari, Qt), the array stores (zarr, dask) and scipy
# load only when a stage runs (or its widget opens).
HEAVY_PACKAGES = ("torch", "lightning", "monai", "napari", "zarr", "dask", "qtpy", "PyQt6", "scipy")
# The array and file libraries: not needed either until a stage's config module is imported
# (``cryolearn STAGE --help`` imports that one stage's config module, never the others).
DATA_PACKAGES = ("numpy", "pandas", "mrcfile", "starfile", "skimage", "edt")

# command -> (Python run in a fresh interpreter, what its output shows, the packages it must not
# load, why)
LIGHT_COMMANDS = {
    "all_stages()": (
        "import napari_cryolearn.stages; print([s.name for s in napari_cryolearn.stages.all_stages()])",
        "'prep.scale'",
        HEAVY_PACKAGES + DATA_PACKAGES + ("pydantic", "yaml"),
        "the registry holds import paths as strings: listing stages imports no config or job",
    ),
    "cryolearn --help": (
        "from napari_cryolearn.cli import main; main(['--help'])",
        "usage: cryolearn",
        HEAVY_PACKAGES + DATA_PACKAGES,
        "the parser is built from the registry; only the flags of a stage the command line names "
        "need its config (pydantic and yaml come with cli_flags' YAML config reading)",
    ),
    "cryolearn stages": (
        "from napari_cryolearn.cli import main; main(['stages'])",
        "prep.scale",
        HEAVY_PACKAGES + DATA_PACKAGES,
        "as --help: names and summaries come from the registry",
    ),
    "cryolearn prep scale --help": (
        "from napari_cryolearn.cli import main; main(['prep', 'scale', '--help'])",
        "--lower-percentile",
        HEAVY_PACKAGES + ("pandas", "starfile", "skimage", "edt"),
        "the flags need ScaleConfig, which lives in prep/scale_job.py next to the job: that module "
        "imports numpy and io.mrc (mrcfile) at module level, so those two may load; nothing of "
        "STAR, filtering or distances may (they came in through eager package __init__s before)",
    ),
}

_RUN_AND_REPORT = textwrap.dedent(
    """
    import contextlib, io, json, sys, traceback
    code = sys.argv[1]
    out = io.StringIO()
    error = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            exec(code, {})
        except SystemExit as exit:
            if exit.code not in (0, None):
                error = f"SystemExit({exit.code!r})"
        except BaseException:
            error = traceback.format_exc(limit=5)
    print(json.dumps({
        "top": sorted({m.split(".")[0] for m in sys.modules}),
        "ours": sorted(m for m in sys.modules if m.split(".")[0] == "napari_cryolearn"),
        "output": out.getvalue(),
        "error": error,
    }))
    """
)


def _run_in_fresh_python(code: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _RUN_AND_REPORT, code], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["error"] is None, f"{code} failed:\n{result['error']}\n{result['output']}"
    return result


@pytest.mark.parametrize("command", sorted(LIGHT_COMMANDS))
def test_listing_stages_and_help_load_nothing_heavy(command):
    code, shown, forbidden, why = LIGHT_COMMANDS[command]
    result = _run_in_fresh_python(code)
    assert shown in result["output"], result["output"]
    loaded = sorted(set(forbidden) & set(result["top"]))
    assert not loaded, (
        f"{command} loaded {loaded} ({why}).\nThe napari_cryolearn modules it imported, to find the "
        f"chain (`python -X importtime -c {code!r}` shows it whole):\n  " + "\n  ".join(result["ours"])
    )


def _packages() -> list[str]:
    """Every package of napari_cryolearn (a folder with an ``__init__.py``)."""
    return sorted(_module_name(p) for p in PACKAGE_DIR.rglob("__init__.py"))


def test_every_package_is_lazy_with_the_shared_mechanism():
    """Each package's ``__init__`` uses ``_lazy.attach``, and importing it alone (in a fresh
    interpreter) imports none of its submodules."""
    packages = _packages()
    assert {"napari_cryolearn", "napari_cryolearn.io", "napari_cryolearn.prep", "napari_cryolearn.engine",
            "napari_cryolearn.sample", "napari_cryolearn.models", "napari_cryolearn.segmentation"} <= set(packages)
    for name in packages:
        result = _run_in_fresh_python(f"import {name}")
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        extra = sorted(set(result["ours"]) - parents - {"napari_cryolearn._lazy"})
        assert not extra, f"import {name} imported {extra}"
    for name in packages:
        package = importlib.import_module(name)
        assert package.__getattr__.__module__ == "napari_cryolearn._lazy", f"{name} is not lazy"
        assert package.__dir__.__module__ == "napari_cryolearn._lazy", f"{name} is not lazy"


@pytest.mark.parametrize("name", _packages())
def test_every_exported_name_resolves(name):
    """The lazy tables cannot rot: each name in ``__all__`` imports, from its package, as an object
    defined under that name (not a module), and shows in ``dir()``; ``from package import *`` works."""
    package = importlib.import_module(name)
    assert isinstance(package.__all__, list)
    assert len(set(package.__all__)) == len(package.__all__), f"{name}.__all__ repeats names"
    for attr in package.__all__:
        value = getattr(package, attr)
        assert not isinstance(value, types.ModuleType), f"{name}.{attr} is a module"
        assert attr in dir(package)
        if hasattr(value, "__qualname__"):
            assert value.__qualname__.rsplit(".", 1)[-1] == attr, f"{name}.{attr} is {value!r}"
    namespace: dict = {}
    exec(f"from {name} import *", namespace)
    assert set(package.__all__) <= set(namespace)


@pytest.mark.parametrize("name", _packages())
def test_an_unknown_name_raises_attribute_error_naming_the_module(name):
    package = importlib.import_module(name)
    with pytest.raises(AttributeError, match=re.escape(f"module {name!r} has no attribute 'no_such_name'")):
        package.no_such_name  # noqa: B018
    assert not hasattr(package, "no_such_name")
    with pytest.raises(ImportError, match="no_such_name"):
        exec(f"from {name} import no_such_name", {})


def test_exports_are_the_objects_of_their_modules():
    """What the packages exported before they were lazy is still the very same object."""
    from napari_cryolearn.engine import StopFlag, run_job
    from napari_cryolearn.engine.jobs import run_job as run_job_itself
    from napari_cryolearn.engine.stop import StopFlag as StopFlag_itself
    from napari_cryolearn.io import MRC_SUFFIXES, read_mrc, read_star
    from napari_cryolearn.io.mrc import MRC_SUFFIXES as suffixes_itself
    from napari_cryolearn.io.mrc import read_mrc as read_mrc_itself
    from napari_cryolearn.io.star import read_star as read_star_itself
    from napari_cryolearn.prep import scale_intensity
    from napari_cryolearn.prep.scaling import scale_intensity as scale_intensity_itself

    assert (StopFlag, run_job, read_mrc, read_star, MRC_SUFFIXES, scale_intensity) == (
        StopFlag_itself, run_job_itself, read_mrc_itself, read_star_itself, suffixes_itself, scale_intensity_itself
    )
    import napari_cryolearn

    assert napari_cryolearn.__all__ == ["__version__"]
    assert napari_cryolearn.io is importlib.import_module("napari_cryolearn.io")  # a submodule, as an attribute
    assert importlib.import_module("napari_cryolearn.io").star is importlib.import_module("napari_cryolearn.io.star")

"""The plugin as napari sees it: a valid manifest, found through the ``napari.manifest`` entry
point both from a built wheel (``pip install .``) and from the editable install.

These tests build a wheel with pip and run npe2 in subprocesses; together they take seconds.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import stat
import subprocess
import sys
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ROOT_MANIFEST = REPO / "napari.yaml"
DIST_NAME = "napari-cryolearn"
BIN = Path(sys.executable).parent


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)


def _explain(proc: subprocess.CompletedProcess) -> str:
    return f"{' '.join(map(str, proc.args))} -> {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from the repository, as ``pip install .`` would build it."""
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-input", "-w", str(out), str(REPO)]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.insert(4, "--no-build-isolation")  # offline and fast when the backend is at hand
    proc = _run(cmd)
    assert proc.returncode == 0, _explain(proc)
    wheels = list(out.glob("napari_cryolearn-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {out}, found {wheels}"
    return wheels[0]


# (a) the manifest is valid ---------------------------------------------------------------------


def test_root_manifest_file_is_valid():
    proc = _run([str(BIN / "npe2"), "validate", str(ROOT_MANIFEST)])
    assert proc.returncode == 0, _explain(proc)
    assert "valid" in proc.stdout


def test_installed_plugin_manifest_is_valid():
    proc = _run([str(BIN / "npe2"), "validate", DIST_NAME])
    assert proc.returncode == 0, _explain(proc)
    assert "valid" in proc.stdout


def test_manifest_python_names_resolve():
    """Every ``python_name`` in the manifest points at a callable that exists (imports ui/)."""
    proc = _run([str(BIN / "npe2"), "validate", "--imports", DIST_NAME])
    assert proc.returncode == 0, _explain(proc)


def test_manifest_command_ids_are_namespaced_and_referenced_commands_exist():
    manifest = yaml.safe_load(ROOT_MANIFEST.read_text())
    assert manifest["name"] == DIST_NAME
    contributions = manifest.get("contributions") or {}
    ids = [c["id"] for c in contributions.get("commands") or []]
    assert len(ids) == len(set(ids)), f"duplicate command ids: {ids}"
    assert all(i.startswith(DIST_NAME + ".") for i in ids), ids
    referenced = [
        entry["command"]
        for kind in ("readers", "writers", "sample_data", "widgets")
        for entry in contributions.get(kind) or []
    ]
    assert set(referenced) <= set(ids), f"undeclared commands: {set(referenced) - set(ids)}"


# (b) the wheel ---------------------------------------------------------------------------------


def test_wheel_holds_the_manifest_as_a_real_file(wheel):
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo("napari_cryolearn/napari.yaml")
        mode = info.external_attr >> 16
        assert not stat.S_ISLNK(mode), "napari.yaml is stored as a symlink in the wheel"
        assert zf.read(info) == ROOT_MANIFEST.read_bytes()


def test_wheel_declares_manifest_and_console_entry_points(wheel):
    with zipfile.ZipFile(wheel) as zf:
        (ep_name,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(zf.read(ep_name).decode())
    assert parser["napari.manifest"][DIST_NAME] == "napari_cryolearn:napari.yaml"
    assert parser["console_scripts"]["cryolearn"] == "napari_cryolearn.cli:main"


def test_wheel_holds_only_the_package(wheel):
    with zipfile.ZipFile(wheel) as zf:
        tops = {n.split("/", 1)[0] for n in zf.namelist()}
        names = zf.namelist()
    dist_info = tops - {"napari_cryolearn"}
    assert len(dist_info) == 1 and next(iter(dist_info)).endswith(".dist-info"), tops
    assert "napari_cryolearn/__init__.py" in names
    assert "napari_cryolearn/cli.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


# (c) a non-editable install --------------------------------------------------------------------

_DISCOVER = textwrap.dedent(
    """
    import json, sys
    target = sys.argv[1]
    sys.path.insert(0, target)
    import importlib.util
    from importlib import metadata
    from npe2 import PluginManager, PluginManifest

    read = []
    _from_file = PluginManifest.from_file.__func__

    def spy(cls, path):
        manifest = _from_file(cls, path)
        if manifest.name == "napari-cryolearn":
            read.append(str(path))
        return manifest

    PluginManifest.from_file = classmethod(spy)

    eps = [ep for ep in metadata.entry_points(group="napari.manifest") if ep.name == "napari-cryolearn"]
    dist = metadata.distribution("napari-cryolearn")
    by_dist = PluginManifest.from_distribution("napari-cryolearn")
    pm = PluginManager()
    pm.discover(include_npe1=False)
    discovered = pm.get_manifest("napari-cryolearn")
    spec = importlib.util.find_spec("napari_cryolearn")
    print(json.dumps({
        "entry_points": [ep.value for ep in eps],
        "dist_location": str(dist.locate_file("")),
        "name": by_dist.name,
        "discovered_name": discovered.name,
        "package_dirs": list(spec.submodule_search_locations),
        "read": read,
        "n_commands": len(by_dist.contributions.commands or []),
    }))
    """
)


def test_installed_wheel_is_found_by_npe2_from_the_install_location(wheel, tmp_path):
    target = tmp_path / "site"
    proc = _run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--target", str(target), str(wheel)]
    )
    assert proc.returncode == 0, _explain(proc)
    installed = target / "napari_cryolearn" / "napari.yaml"
    assert installed.is_file() and not installed.is_symlink()

    proc = _run([sys.executable, "-I", "-c", _DISCOVER, str(target)], cwd=tmp_path)
    assert proc.returncode == 0, _explain(proc)
    found = json.loads(proc.stdout.strip().splitlines()[-1])

    assert found["entry_points"][0] == "napari_cryolearn:napari.yaml"
    assert Path(found["dist_location"]).resolve() == target.resolve()
    assert found["name"] == found["discovered_name"] == DIST_NAME
    assert [Path(p).resolve() for p in found["package_dirs"]] == [(target / "napari_cryolearn").resolve()]
    assert found["read"], "npe2 read no manifest file"
    for path in found["read"]:
        assert Path(path).resolve() == installed.resolve(), f"manifest read from {path}, not from the install"
    expected = yaml.safe_load(ROOT_MANIFEST.read_text())
    assert found["n_commands"] == len((expected.get("contributions") or {}).get("commands") or [])


# (d) the editable install ----------------------------------------------------------------------


def _is_editable() -> bool:
    direct_url = metadata.distribution(DIST_NAME).read_text("direct_url.json")
    return bool(direct_url) and json.loads(direct_url).get("dir_info", {}).get("editable", False)


def test_editable_install_manifest_is_the_repository_manifest():
    from npe2 import PluginManifest

    if not _is_editable():
        pytest.skip("napari-cryolearn is not installed in editable mode here")
    found = PluginManifest.from_distribution(DIST_NAME)
    from_root = PluginManifest.from_file(ROOT_MANIFEST)
    assert found.name == DIST_NAME
    assert found.package_metadata is not None
    assert found.package_metadata.version == metadata.version(DIST_NAME)
    assert found.model_dump(exclude={"package_metadata"}) == from_root.model_dump(exclude={"package_metadata"})
    spec = importlib.util.find_spec("napari_cryolearn")
    locations = [Path(p).resolve() for p in spec.submodule_search_locations]
    assert (REPO / "src" / "napari_cryolearn").resolve() in locations


def test_manifest_widgets_are_the_registry_widgets():
    """napari.yaml lists exactly the widgets the stages declare (and the tool widgets, Batch),
    under their titles; a stage added to the registry without its manifest entry (or the
    reverse) fails here."""
    import napari_cryolearn.stages as suite

    manifest = yaml.safe_load(ROOT_MANIFEST.read_text())["contributions"]
    commands = {c["id"]: c for c in manifest["commands"]}
    listed = {}
    for entry in manifest["widgets"]:
        command = commands[entry["command"]]
        listed[command["python_name"]] = (entry["display_name"], command["title"])
    declared = {s.widget: (s.title, s.title) for s in suite.all_stages() if s.widget}
    declared.update({path: (title, title) for path, title in suite.TOOL_WIDGETS.items()})
    assert listed == declared

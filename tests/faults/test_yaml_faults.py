"""YAML configs that are not text, not YAML configs, or shaped to break a parser.

Every case is an :class:`InputError` naming the file, and through the CLI exit code 2 with one
``cryolearn: error:`` line and no traceback.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_cryolearn.cli import main
from napari_cryolearn.engine.config import read_yaml
from napari_cryolearn.engine.errors import InputError


def _cli_error(argv: list[str], capsys) -> str:
    """Run ``cryolearn argv``; assert exit code 2 without a traceback; return the error line."""
    capsys.readouterr()
    code = main(["-q", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("cryolearn: error:")]
    assert len(lines) == 1, err
    return lines[0]




# ---------------------------------------------------------------------------------------------
# not text


@pytest.mark.parametrize(
    "content, detail",
    [
        (np.random.default_rng(3).bytes(3000), r"byte \d+ \(0x[0-9a-f]{2}\) is not UTF-8 text"),
        (b"input: tomo.mrc\noutput: caf\xe9.mrc\n", r"byte 27 \(0xe9\) is not UTF-8 text"),
        (b"input: tomo.mrc\x00\x00\x00\x01", r"character U\+0000 on line 1 is not allowed in YAML"),
        (b"MAP \x01\x02\x03 header\n", r"character U\+0001 on line 1"),
    ],
    ids=["random-bytes", "latin-1", "nul-bytes", "control-characters"],
)
def test_binary_config_is_not_a_text_yaml_file(tmp_path, content, detail):
    path = tmp_path / "tomogram.mrc"
    path.write_bytes(content)
    with pytest.raises(InputError, match=rf"tomogram\.mrc: not a text YAML file: {detail}"):
        read_yaml(path)


def test_binary_config_through_the_cli(tmp_path, capsys):
    cfg = tmp_path / "config.yaml"
    cfg.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    line = _cli_error(["prep", "scale", "--config", str(cfg)], capsys)
    assert "config.yaml" in line and "not a text YAML file" in line


def test_utf8_with_bom_and_non_ascii_text_reads(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("\ufeffinput: tomogramme_été.mrc\nnote: 10 Å\n".encode())
    assert read_yaml(path) == {"input": "tomogramme_été.mrc", "note": "10 Å"}


def test_data_file_given_as_config_is_not_read_whole(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "wb") as fh:
        fh.truncate(16 * 2**20 + 1)  # sparse: nothing is written to disk
    with pytest.raises(InputError, match=r"big\.yaml: not a text YAML file: larger than 16 MiB"):
        read_yaml(path)


# ---------------------------------------------------------------------------------------------
# keys that are not text


@pytest.mark.parametrize(
    "text, detail",
    [
        ("input: a.mrc\n1: 2\n", r"key 1 \(int\) in the top level is not text \(quote it\)"),
        ("input: a.mrc\nparameters:\n  data:\n    2.5: x\n", r"key 2\.5 \(float\) in parameters\.data is not text"),
        ("yes: 1\n", r"key True \(bool\) in the top level is not text \(YAML reads yes/no/on/off/true/false"),
        ("? ~\n: 1\n", r"key None \(NoneType\) in the top level"),
        ("items:\n  - {2020-01-01: x}\n", r"key datetime\.date\(2020, 1, 1\) \(date\) in items\.0 is not text"),
    ],
    ids=["int", "nested-float", "bool", "null", "date-in-list"],
)
def test_non_text_keys_are_refused_with_where(tmp_path, text, detail):
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=rf"keys\.yaml: {detail}"):
        read_yaml(path)


def test_non_text_key_through_the_cli(tmp_path, capsys):
    cfg = tmp_path / "keys.yaml"
    cfg.write_text("input: a.mrc\noutput: b.mrc\n3: 4\n")
    line = _cli_error(["prep", "scale", "--config", str(cfg)], capsys)
    assert "keys.yaml" in line and "key 3 (int)" in line


# ---------------------------------------------------------------------------------------------
# nesting and aliases


@pytest.mark.parametrize("depth", [100, 5000, 100_000])
def test_deep_nesting_is_refused(tmp_path, depth):
    """The top-level mapping and ``depth`` lists: 101 levels and more are refused."""
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(InputError, match=r"deep\.yaml: not a usable config: nested more than 100 levels deep"):
        read_yaml(path)


def test_deep_block_mappings_are_refused(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("".join("  " * i + f"k{i}:\n" for i in range(2000)))
    with pytest.raises(InputError, match=r"deep\.yaml: not a usable config: nested more than 100 levels"):
        read_yaml(path)


def test_nesting_within_the_limit_reads(tmp_path):
    """The top-level mapping and 99 lists: 100 levels, the most that is read."""
    path = tmp_path / "ok.yaml"
    path.write_text("a: " + "[" * 99 + "1" + "]" * 99 + "\n")
    data = read_yaml(path)
    for _ in range(100):
        (data,) = data.values() if isinstance(data, dict) else data
    assert data == 1


def test_node_inside_itself_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("parameters: &p\n  data: *p\n")
    with pytest.raises(InputError, match=r"loop\.yaml: parameters\.data contains itself"):
        read_yaml(path)


def test_alias_bomb_is_refused_without_expanding_it(tmp_path):
    """Nine levels of ten aliases each: 10^9 values when expanded; refused after a few thousand
    steps, since every shared node is checked once."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"bomb\.yaml: not a usable config: a\d holds more than 1000000 values"):
        read_yaml(path)


def test_shared_aliases_of_a_normal_config_read(tmp_path):
    path = tmp_path / "shared.yaml"
    path.write_text("base: &b {lr: 0.1, epochs: 3}\ntrain: *b\nval: *b\n")
    assert read_yaml(path) == {"base": {"lr": 0.1, "epochs": 3}, "train": {"lr": 0.1, "epochs": 3},
                               "val": {"lr": 0.1, "epochs": 3}}


# ---------------------------------------------------------------------------------------------
# not a readable file


def test_folder_given_as_config(tmp_path):
    folder = tmp_path / "conf.yaml"
    folder.mkdir()
    with pytest.raises(InputError, match=r"conf\.yaml: not a file \(a YAML config file is expected\)"):
        read_yaml(folder)


def test_config_that_cannot_be_opened(tmp_path, monkeypatch):
    """What a user without read permission sees (simulated: tests may run as root)."""
    import napari_cryolearn.engine.config as config_module

    def refuse(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    path = tmp_path / "locked.yaml"
    path.write_text("input: a.mrc\n")
    monkeypatch.setattr(config_module, "open", refuse, raising=False)
    with pytest.raises(InputError, match=r"locked\.yaml: cannot be read: permission denied"):
        read_yaml(path)


def test_config_without_read_permission(tmp_path, unreadable):
    path = tmp_path / "locked.yaml"
    path.write_text("input: a.mrc\n")
    with unreadable(path), pytest.raises(InputError, match=r"locked\.yaml: cannot be read: permission denied"):
        read_yaml(path)


def test_empty_and_valid_files_still_read(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_yaml(empty) == {}
    ok = tmp_path / "ok.yaml"
    ok.write_text("input: a.mrc\nparameters:\n  data: {patch_size: 64, std: 1.5}\nfiles: [a, b]\n")
    assert read_yaml(ok) == {"input": "a.mrc", "parameters": {"data": {"patch_size": 64, "std": 1.5}},
                             "files": ["a", "b"]}

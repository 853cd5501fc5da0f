"""Fuzzing the readers: damaged MRC and STAR files give :class:`InputError`, nothing else.

Valid small files are mutated (header bytes flipped or overwritten, header fields set to extreme
values, files cut short or lengthened, whole files of random bytes; STAR lines dropped,
duplicated, swapped or garbled, tokens replaced, random text) and read with ``read_mrc``,
``read_mrc_3d``, ``read_voxel_size`` and ``read_star``. A reader may succeed or raise
``InputError``; any other exception (a traceback for the user) fails the test, and hypothesis
shrinks it to a small example. Warnings (numpy, :class:`MissingZWarning`) are allowed.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import os
import re
import struct
import tracemalloc
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.io.mrc import read_mrc, read_mrc_3d, read_voxel_size, write_mrc
from napari_cryolearn.io.star import read_star, write_star

EXAMPLES = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)



# ---------------------------------------------------------------------------------------------
# valid starting points


def _mrc_bytes(tmp, name: str, data, **kwargs) -> bytes:
    return write_mrc(tmp / name, data, **kwargs).read_bytes()


def _with_extended_header(tmp) -> bytes:
    path = tmp / "ext.mrc"
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5))
        mrc.set_extended_header(np.zeros(64, dtype="V1"))
        mrc.voxel_size = 2.5
    return path.read_bytes()


@pytest.fixture(scope="module")
def mrc_seeds(tmp_path_factory) -> list[bytes]:
    """Valid MRC files: 3D float32, 2D int8, IMOD uint8 labels, extended header, gzip, bzip2."""
    tmp = tmp_path_factory.mktemp("mrc_seeds")
    rng = np.random.default_rng(7)
    vol = _mrc_bytes(tmp, "vol.mrc", rng.random((4, 5, 6), dtype=np.float32), voxel_size=(3.0, 2.0, 1.0))
    return [
        vol,
        _mrc_bytes(tmp, "img.mrc", rng.integers(-100, 100, (7, 3), dtype=np.int8)),
        _mrc_bytes(tmp, "labels.mrc", rng.integers(0, 255, (3, 3, 3), dtype=np.uint8), origin=(1.0, 2.0, 3.0)),
        _mrc_bytes(tmp, "stack.mrcs", rng.random((2, 3, 4), dtype=np.float32)),
        _with_extended_header(tmp),
        gzip.compress(vol, mtime=0),
        bz2.compress(vol),
    ]


#: The valid STAR files whose reading tests/io/test_io_star.py checks.
STAR_DATA = Path(__file__).parents[1] / "data" / "star"


@pytest.fixture(scope="module")
def star_seeds(tmp_path_factory) -> list[str]:
    """Valid STAR texts: those of tests/data/star (RELION 3.1 with optics and origins, RELION 5
    centred Angstrom with an optics table or a pixel size per particle, 2D micrograph picks),
    and one written by :func:`write_star`."""
    tmp = tmp_path_factory.mktemp("star_seeds")
    ours = write_star(tmp / "ours.star", np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
                      features={"rlnClassNumber": [1, 2]}, pixel_size=4.0, tomo_name="TS_01")
    files = sorted(STAR_DATA.glob("*.star"))
    assert [f.name for f in files] == ["micrographs_2d.star", "relion31.star", "relion5.star",
                                       "relion5_pixel_size_per_particle.star"]
    return [*(f.read_text() for f in files), ours.read_text()]


# ---------------------------------------------------------------------------------------------
# mutations

#: Offsets of the header's int32 words that steer reading: nx ny nz mode, mx my mz, ispg
#: nsymbt, the IMOD stamp and flags; and of the MAP stamp and machine stamp.
_WORDS = (0, 4, 8, 12, 28, 32, 36, 88, 92, 152, 156)
_EXTREMES = (0, 1, -1, 2, 3, 4, 6, 12, 101, 401, 2**31 - 1, -(2**31), 10**5, 10**9, 1146047817)

_mrc_edit = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1100), st.integers(1, 255)),
    st.tuples(st.just("set"), st.integers(0, 1100), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("word"), st.sampled_from(_WORDS), st.one_of(st.sampled_from(_EXTREMES),
                                                                    st.integers(-(2**31), 2**31 - 1))),
    st.tuples(st.just("float"), st.sampled_from((40, 44, 48, 196, 200, 204)),
              st.sampled_from((0.0, -1.0, float("nan"), float("inf"), 1e38, 1e-38))),
    st.tuples(st.just("stamp"), st.sampled_from((208, 212)), st.binary(min_size=4, max_size=4)),
    st.tuples(st.just("cut"), st.floats(0, 1)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=300)),
)


def _apply_mrc(raw: bytes, edit) -> bytes:
    buf = bytearray(raw)
    kind = edit[0]
    if kind == "flip":
        if edit[1] < len(buf):
            buf[edit[1]] ^= edit[2]
    elif kind == "set":
        buf[edit[1] : edit[1] + len(edit[2])] = edit[2]
    elif kind == "word":
        if len(buf) >= edit[1] + 4:
            buf[edit[1] : edit[1] + 4] = struct.pack("<i", edit[2])
    elif kind == "float":
        if len(buf) >= edit[1] + 4:
            buf[edit[1] : edit[1] + 4] = struct.pack("<f", edit[2])
    elif kind == "stamp":
        buf[edit[1] : edit[1] + 4] = edit[2]
    elif kind == "cut":
        del buf[int(edit[1] * len(buf)) :]
    elif kind == "append":
        buf += edit[1]
    return bytes(buf)


def _decompressed(raw: bytes) -> bytes:
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    if raw[:3] == b"BZh":
        return bz2.decompress(raw)
    return raw


@st.composite
def damaged_mrc(draw, seeds: list[bytes]) -> bytes:
    """A valid MRC file with 1 to 6 edits, sometimes recompressed; or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=3000))
    raw = draw(st.sampled_from(seeds))
    inside = draw(st.booleans()) and raw[:2] in (b"\x1f\x8b", b"BZ")
    if inside:  # damage the MRC inside the compressed stream, then compress again
        raw = _decompressed(raw)
    for edit in draw(st.lists(_mrc_edit, min_size=1, max_size=6)):
        raw = _apply_mrc(raw, edit)
    if inside:
        raw = gzip.compress(raw, mtime=0) if draw(st.booleans()) else bz2.compress(raw)
    return raw


_star_token = st.one_of(
    st.sampled_from(["data_", "data_particles", "data_optics", "loop_", "_rlnCoordinateX", "_rlnCoordinateY",
                     "_rlnCoordinateZ", "_rlnCenteredCoordinateXAngst", "_rlnOriginXAngst", "_rlnTomoName",
                     "_rlnImagePixelSize", "_rlnOpticsGroup", "_rlnClassNumber", "_", "#", "'", '"', "nan",
                     "inf", "-inf", "<NA>", "1e400", "-0", "0x10", "TS_01", "", " ", "\t", "1", "2.5", "#3"]),
    st.text(max_size=12),
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)

_star_edit = st.one_of(
    st.tuples(st.just("drop"), st.integers(0, 60)),
    st.tuples(st.just("dup"), st.integers(0, 60)),
    st.tuples(st.just("swap"), st.integers(0, 60), st.integers(0, 60)),
    st.tuples(st.just("insert"), st.integers(0, 60), st.lists(_star_token, max_size=6).map(" ".join)),
    st.tuples(st.just("token"), st.integers(0, 60), st.integers(0, 12), _star_token),
    st.tuples(st.just("garble"), st.integers(0, 3000), st.text(max_size=6)),
    st.tuples(st.sampled_from(["dupcol", "dropcol", "setcol"]), st.integers(0, 60), st.integers(0, 60), _star_token),
)


def _column_edit(lines: list[str], edit) -> list[str]:
    """Duplicate, drop or overwrite one column of one loop, in its header and in every row, so
    that the table stays well formed and the damage reaches the reader's checks."""
    kind, which_loop, which_col, token = edit
    loops = [i for i, line in enumerate(lines) if line.strip().startswith("loop_")]
    if not loops:
        return lines
    start = loops[which_loop % len(loops)] + 1
    end = start
    while end < len(lines) and lines[end].strip().startswith("_"):
        end += 1
    if end == start:
        return lines
    col = which_col % (end - start)
    header = list(lines[start:end])
    if kind == "dupcol":
        header.insert(col, header[col])
    elif kind == "dropcol":
        del header[col]
    out = [*lines[:start], *header]
    rows = end
    while rows < len(lines) and not lines[rows].strip().startswith("data_"):
        tokens = lines[rows].split()
        if tokens and not tokens[0].startswith("#") and col < len(tokens):
            if kind == "dupcol":
                tokens.insert(col, tokens[col])
            elif kind == "dropcol":
                del tokens[col]
            else:
                tokens[col] = token or "x"
            out.append(" ".join(tokens))
        else:
            out.append(lines[rows])
        rows += 1
    return [*out, *lines[rows:]]


def _apply_star(lines: list[str], edit) -> list[str]:
    kind = edit[0]
    if kind.endswith("col"):
        return _column_edit(lines, edit)
    n = len(lines)
    if kind == "insert":
        return [*lines[: edit[1]], edit[2], *lines[edit[1] :]]
    if n == 0:
        return lines
    i = edit[1] % n
    if kind == "drop":
        return lines[:i] + lines[i + 1 :]
    if kind == "dup":
        return [*lines[: i + 1], lines[i], *lines[i + 1 :]]
    if kind == "swap":
        j = edit[2] % n
        out = list(lines)
        out[i], out[j] = out[j], out[i]
        return out
    if kind == "token":
        tokens = lines[i].split()
        if tokens:
            tokens[edit[2] % len(tokens)] = edit[3]
        return [*lines[:i], " ".join(tokens), *lines[i + 1 :]]
    text = "\n".join(lines)
    at = edit[1] % (len(text) + 1)
    return (text[:at] + edit[2] + text[at + len(edit[2]) :]).split("\n")


@st.composite
def damaged_star(draw, seeds: list[str]) -> str:
    """A valid STAR text with 1 to 6 line or token edits; or random text."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=400))
    lines = draw(st.sampled_from(seeds)).split("\n")
    for edit in draw(st.lists(_star_edit, min_size=1, max_size=6)):
        lines = _apply_star(lines, edit)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the readers under fuzz


def _only_input_errors(call) -> None:
    """Run ``call``; a result or an InputError is fine, any other exception propagates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = call()
        except InputError as err:
            assert str(err), "an InputError without a message"
            return
    data = getattr(result, "data", None)
    if isinstance(data, np.ndarray):  # what was read can be used: every byte is in the file
        np.asarray(data).tobytes()


def test_mrc_readers_raise_only_input_errors(mrc_seeds, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mrc_fuzz")

    @EXAMPLES
    @given(raw=damaged_mrc(mrc_seeds), mmap=st.booleans())
    def check(raw, mmap):
        path = folder / "fuzzed.mrc"
        path.write_bytes(raw)
        _only_input_errors(lambda: read_mrc(path, mmap=mmap))
        _only_input_errors(lambda: read_mrc_3d(path))
        _only_input_errors(lambda: read_voxel_size(path))

    check()


def test_star_reader_raises_only_input_errors(star_seeds, tmp_path_factory):
    folder = tmp_path_factory.mktemp("star_fuzz")

    @EXAMPLES
    @given(
        text=damaged_star(star_seeds),
        binary=st.one_of(st.none(), st.binary(max_size=300)),
        pixel_size=st.sampled_from([None, 2.0]),
        tomo_name=st.sampled_from([None, "TS_01", "b"]),
        volume_shape=st.sampled_from([None, (10, 20, 30)]),
        apply_origin=st.booleans(),
        strict=st.booleans(),
    )
    def check(text, binary, pixel_size, tomo_name, volume_shape, apply_origin, strict):
        path = folder / "fuzzed.star"
        if binary is None:
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        else:
            path.write_bytes(text.encode("utf-8", "surrogatepass") + binary)
        _only_input_errors(lambda: read_star(
            path, pixel_size=pixel_size, tomo_name=tomo_name, volume_shape=volume_shape,
            apply_origin=apply_origin, require_z=strict, require_rows=strict,
        ))

    check()


# ---------------------------------------------------------------------------------------------
# cases the fuzzing found, kept as plain tests


def _header_word(raw: bytes, offset: int, value: int) -> bytes:
    return raw[:offset] + struct.pack("<i", value) + raw[offset + 4 :]


def _refused_within(limit_bytes: int, call) -> InputError:
    """Run ``call``, which must raise InputError, allocating at most ``limit_bytes`` on the way."""
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as err:
            call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit_bytes, f"{peak} bytes allocated to refuse a damaged header"
    return err.value


@pytest.mark.parametrize("compress", [None, "gzip", "bz2"])
def test_absurd_dimensions_are_refused_by_size_not_allocated(mrc_seeds, tmp_path, compress):
    """nx*ny*nz of 10^15 float32 values: refused against the file's length, no MemoryError."""
    raw = mrc_seeds[0]
    for offset in (0, 4, 8):
        raw = _header_word(raw, offset, 100_000)
    if compress == "gzip":
        raw = gzip.compress(raw)
    elif compress == "bz2":
        raw = bz2.compress(raw)
    path = tmp_path / "huge.mrc"
    path.write_bytes(raw)
    err = _refused_within(4 * 2**20, lambda: read_mrc(path, mmap=False))
    assert re.search(r"huge\.mrc: truncated: header says 100000x100000x100000 float32 = "
                     r"4000000000000000 bytes of data, file has 480$", str(err)), err
    assert "truncated" in str(_refused_within(4 * 2**20, lambda: read_mrc(path, mmap=True)))


def test_huge_extended_header_is_refused_by_size(mrc_seeds, tmp_path):
    """nsymbt of 2 GiB in a small file: refused from the file size (mrcfile allocates it first)."""
    path = tmp_path / "ext.mrc"
    path.write_bytes(_header_word(mrc_seeds[0], 92, 2**31 - 1))
    err = _refused_within(4 * 2**20, lambda: read_voxel_size(path))
    assert re.search(r"ext\.mrc: truncated: header says 2147483647 bytes of extended header, file has 480$",
                     str(err)), err


def test_volume_stack_without_grid_size_is_refused(mrc_seeds, tmp_path):
    """Space group 401 (volume stack) with mz = 0 divided by zero in mrcfile's shape."""
    raw = _header_word(_header_word(mrc_seeds[0], 88, 401), 36, 0)
    path = tmp_path / "stack.mrc"
    path.write_bytes(raw)
    with pytest.raises(InputError, match=r"stack\.mrc: ispg: volume stacks \(space group 401\) are not supported"):
        read_mrc(path)


def test_negative_extended_header_size_is_refused(mrc_seeds, tmp_path):
    path = tmp_path / "neg.mrc"
    path.write_bytes(_header_word(mrc_seeds[0], 92, -5))
    with pytest.raises(InputError, match=r"neg\.mrc: header: .*nsymbt=-5"):
        read_mrc(path)


@pytest.mark.parametrize("kind", ["gzip", "bz2"])
def test_damaged_compressed_stream(mrc_seeds, tmp_path, kind):
    """A compressed file whose stream breaks off or is corrupt names the file."""
    raw = mrc_seeds[5] if kind == "gzip" else mrc_seeds[6]
    cut = tmp_path / "cut.mrc"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=r"cut\.mrc: damaged compressed file \(EOFError: "):
        read_mrc(cut)
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(raw[:12] + bytes(b ^ 0x5A for b in raw[12:40]) + raw[40:])
    with pytest.raises(InputError, match=r"bad\.mrc: "):
        read_mrc(bad)


def test_compressed_file_still_reads(mrc_seeds, tmp_path):
    """The compressed path reads the same values as the plain file, native byte order."""
    plain = tmp_path / "plain.mrc"
    plain.write_bytes(mrc_seeds[0])
    packed = tmp_path / "packed.mrc.gz"
    packed.write_bytes(gzip.compress(mrc_seeds[0]))
    a, b = read_mrc(plain, mmap=False), read_mrc(packed)
    np.testing.assert_array_equal(a.data, b.data)
    assert b.data.dtype == np.dtype("float32") and b.voxel_size == a.voxel_size == (3.0, 2.0, 1.0)
    assert b.data.flags.writeable


def test_seeds_are_valid(mrc_seeds, star_seeds, tmp_path):
    """The fuzzers start from files that read, so their mutations probe real parsing."""
    for i, raw in enumerate(mrc_seeds):
        path = tmp_path / f"{i}.mrc"
        path.write_bytes(raw)
        assert read_mrc(path).data.size > 0
    for i, text in enumerate(star_seeds):
        path = tmp_path / f"{i}.star"
        path.write_text(text)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert len(read_star(path, volume_shape=(10, 20, 30)).coords) >= 2


# ---------------------------------------------------------------------------------------------
# MRC files that cannot be read: said so, not reported as a damaged header


def test_folder_given_as_mrc(tmp_path):
    folder = tmp_path / "tomo.mrc"
    folder.mkdir()
    with pytest.raises(InputError, match=r"tomo\.mrc: is a folder, not a file"):
        read_mrc(folder)


def test_fifo_given_as_mrc_is_not_opened(tmp_path):
    """Opening a FIFO for reading would wait for a writer forever."""
    fifo = tmp_path / "pipe.mrc"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"pipe\.mrc: not a regular file \(a FIFO\)"):
        read_mrc_3d(fifo)


def test_mrc_that_cannot_be_opened(mrc_seeds, tmp_path, monkeypatch):
    """What a user without read permission sees (simulated: tests may run as root)."""
    import napari_cryolearn.io.mrc as mrc_module

    def refuse(file, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(file))

    path = tmp_path / "locked.mrc"
    path.write_bytes(mrc_seeds[0])
    monkeypatch.setattr(mrc_module, "open", refuse, raising=False)
    for read in (read_mrc, read_voxel_size):
        with pytest.raises(InputError, match=r"locked\.mrc: cannot be read: permission denied$"):
            read(path)


def test_mrc_without_read_permission(mrc_seeds, tmp_path, unreadable):
    path = tmp_path / "locked.mrc"
    path.write_bytes(mrc_seeds[0])
    with unreadable(path), pytest.raises(InputError, match=r"locked\.mrc: cannot be read: permission denied$"):
        read_mrc(path)


def test_mrc_in_a_folder_without_permission(mrc_seeds, tmp_path, unreadable):
    folder = tmp_path / "private"
    folder.mkdir()
    path = folder / "tomo.mrc"
    path.write_bytes(mrc_seeds[0])
    with unreadable(path, folder), pytest.raises(InputError, match=r"tomo\.mrc: cannot be read: permission denied$"):
        read_mrc(path)

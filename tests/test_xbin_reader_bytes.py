"""The C++ reader's in-memory constructor (`_core.XbinFile.from_bytes`) and the findings of its
libFuzzer target (fuzz/xbin_reader_fuzzer.cc, tools/fuzz_loader.sh; issue 13 row 16).

Finding: section names are file bytes, and the C++ reader quoted them raw in its messages and
handed them raw to Python. A name that is not UTF-8 made `xnorinfer.load` raise
UnicodeDecodeError (pybind11 could not decode the message, or the name in `sections`) and the
CLI exit 1 with a message that did not name the file; a newline or an escape sequence in a name
broke the one-line error. Messages now write bytes outside printable ASCII as \\xNN, and
`sections` decodes names as xnorinfer/xbin.py does (UTF-8, "replace").
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import xnorinfer
from xnorinfer import _core, cli, xbin
from xnorinfer.xbin import XbinError

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "fuzz" / "corpus" / "xbin").glob("*.xbin"))
MODEL = ROOT / "fuzz" / "corpus" / "xbin" / "valid-dense.xbin"  # flatten, linear, softmax; input 1x3x2x2
SAMPLE = sorted((Path(xnorinfer.__file__).parent / "assets" / "samples").glob("*.png"))[0]


def _edit_entry(i: int, name: bytes, kind: int | None = None) -> bytes:
    """MODEL with table entry i renamed (and its kind changed), the checksums recomputed."""
    data = bytearray(MODEL.read_bytes())
    e = xbin.HEADER_BYTES + i * xbin.ENTRY_BYTES
    data[e + 32 : e + 64] = name.ljust(xbin.NAME_BYTES, b"\0")
    if kind is not None:
        struct.pack_into("<I", data, e, kind)
    count = struct.unpack_from("<I", data, 12)[0]
    struct.pack_into("<I", data, 24, zlib.crc32(bytes(data[64 : 64 + 64 * count])))
    struct.pack_into("<I", data, 28, zlib.crc32(bytes(data[:28])))
    return bytes(data)


def _outcome(make):
    try:
        f = make()
    except _core.XbinFormatError as err:
        return str(err)
    return f.version, f.file_size, f.sections, f.json()


@pytest.mark.parametrize("path", SEEDS, ids=[p.stem for p in SEEDS])
def test_from_bytes_matches_the_path_reader(path: Path):
    assert len(SEEDS) >= 10
    by_path = _outcome(lambda: _core.XbinFile(str(path)))
    by_bytes = _outcome(lambda: _core.XbinFile.from_bytes(path.read_bytes(), str(path)))
    assert by_bytes == by_path
    assert path.stem.startswith("valid") == (not isinstance(by_path, str)), by_path


def test_from_bytes_names_its_input_and_survives_short_input():
    for data in (b"", b"XNORBIN\0", MODEL.read_bytes()[:-1]):
        with pytest.raises(_core.XbinFormatError, match=r"^<bytes>: "):
            _core.XbinFile.from_bytes(data)
    f = _core.XbinFile.from_bytes(MODEL.read_bytes(), name="m")
    assert f.path == "m" and f.file_size == MODEL.stat().st_size


@pytest.mark.parametrize(
    "name, shown",
    [
        (b"\xc3param1", r"\xc3param1"),  # not UTF-8: was UnicodeDecodeError, CLI exit 1
        (b"\x03", r"\x03"),  # the fuzzer's first input: a control byte
        (b"par\nam1", r"par\x0aam1"),  # would split the one-line error
        (b"\x1b[31mred", r"\x1b[31mred"),  # a terminal escape sequence
        (b"a\\x41", r"a\x5cx41"),  # a backslash is escaped too: the quoting is unambiguous
    ],
    ids=["not-utf8", "control", "newline", "escape", "backslash"],
)
def test_section_name_bytes_are_escaped_in_messages(name: bytes, shown: str, tmp_path, capsys):
    path = tmp_path / "named.xbin"
    path.write_bytes(_edit_entry(1, name, kind=7))  # unknown kind: the message quotes the name
    want = f"{path}: section 1 ('{shown}'): unknown kind 7"
    with pytest.raises(XbinError) as err:
        xnorinfer.load(path)
    assert str(err.value) == want
    with pytest.raises(_core.XbinFormatError) as err:
        _core.XbinFile.from_bytes(path.read_bytes(), str(path))
    assert str(err.value) == want
    capsys.readouterr()
    assert cli.main(["run", str(path), str(SAMPLE)]) == 3
    out, errtext = capsys.readouterr()
    assert out == "" and errtext == f"xnorinfer: error: {want}\n"


def test_non_utf8_section_names_read_as_the_python_reader_reads_them(tmp_path, capsys):
    # The JSON section's name is free: the file loads and runs in both readers.
    path = tmp_path / "json-name.xbin"
    path.write_bytes(_edit_entry(0, b"\xff\xfegraph"))
    assert _core.XbinFile(str(path)).sections[0]["name"] == "\ufffd\ufffdgraph"
    assert xbin.parse_container(path.read_bytes(), str(path))[0][1] == "\ufffd\ufffdgraph"
    xbin.read(path)
    out = xnorinfer.load(path).run(np.ones((1, 3, 2, 2), np.float32))
    assert np.isclose(np.asarray(out).sum(), 1.0)
    # A data section must be named param<i>: refused with a message, CLI exit 3.
    path = tmp_path / "param-name.xbin"
    path.write_bytes(_edit_entry(1, b"\xc3param1"))
    # (the name's bytes quoted as every loader message quotes file bytes: \xNN)
    with pytest.raises(XbinError, match=r"section 1 is named '\\xc3param1', expected 'param1'"):
        xnorinfer.load(path)
    capsys.readouterr()
    assert cli.main(["run", str(path), str(SAMPLE)]) == 3
    assert len(capsys.readouterr().err.splitlines()) == 1


def _empty_sections_file(seed: int) -> bytes:
    """21 sections; 6 data sections made empty and moved onto other sections' offsets (resealed)."""
    rnd = np.random.default_rng(seed)
    payloads = [(xbin.KIND_JSON, "graph", b"{}")]
    payloads += [(xbin.KIND_DATA, f"param{i}", bytes([i]) * 8) for i in range(1, 21)]
    data = bytearray(xbin.assemble(payloads))
    offsets = [struct.unpack_from("<Q", data, 64 + 64 * i + 8)[0] for i in range(21)]
    for i in rnd.choice(np.arange(1, 21), size=6, replace=False):
        e = 64 + 64 * int(i)
        off = offsets[int(rnd.integers(0, 21))]
        struct.pack_into("<QQI", data, e + 8, off, 0, zlib.crc32(b""))
        data[offsets[int(i)] : offsets[int(i)] + 8] = bytes(8)  # its old bytes become padding
    struct.pack_into("<I", data, 24, zlib.crc32(bytes(data[64 : 64 + 64 * 21])))
    struct.pack_into("<I", data, 28, zlib.crc32(bytes(data[:28])))
    return bytes(data)


def test_empty_sections_overlap_nothing_in_both_readers():
    # Before: sorted in with the others, an empty section at another's offset was accepted or
    # refused depending on how the sort ordered equal offsets: std::sort (introsort above 16
    # elements) and Python's stable sort disagreed on 17 of 300 such files.
    for seed in range(100):
        data = _empty_sections_file(seed)
        sections = xbin.parse_container(data, "f")
        assert [(s["offset"], s["size"]) for s in _core.XbinFile.from_bytes(data, "f").sections] == [
            (s[2], s[3]) for s in sections
        ]
    # Still refused: an empty section outside the data area.
    data = bytearray(_empty_sections_file(0))
    struct.pack_into("<Q", data, 64 + 64 + 8, (len(data) // 64 + 1) * 64)  # aligned, past the end
    struct.pack_into("<I", data, 24, zlib.crc32(bytes(data[64 : 64 + 64 * 21])))
    struct.pack_into("<I", data, 28, zlib.crc32(bytes(data[:28])))
    for read in (lambda: xbin.parse_container(bytes(data), "f"), lambda: _core.XbinFile.from_bytes(bytes(data), "f")):
        with pytest.raises(ValueError, match="outside the file's data area"):
            read()

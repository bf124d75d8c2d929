"""Compiled AppleScript: run-only detection against real labelled scripts, and hostile input.

The real scripts are read from ../shared/samples/applescript (never copied into the repository);
every mutation of them is made in memory at test time.
"""

from __future__ import annotations

import os
import plistlib
import random
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dyldwatch.formats.applescript import (
    MAX_DEPTH,
    MAX_OBJECTS,
    ScriptInfo,
    is_compiled_script,
    parse_script,
    script_paths_in_bundle,
)
from dyldwatch.tables.applescript_info import AppleScriptInfoTable
from dyldwatch.tables.base import Op, QueryContext

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "applescript"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"no samples at {SAMPLES}")
STRONG_EDITABLE = SAMPLES / "editable" / "quicksilver__Finder.original.scpt"
STRONG_RUN_ONLY = SAMPLES / "run-only" / "quicksilver__Finder.scpt"
STRONG = {STRONG_EDITABLE.name, STRONG_RUN_ONLY.name}  # as MANIFEST.md labels them
HEAD = b"FasdUAS 1.101.10"
BUDGET = 0.1  # seconds per input, hostile or not


def tiny_script(statements: bool, tag: bool = False) -> bytes:
    """A minimal well-formed object graph: a value block holding a symbol and, if asked, a statement."""
    root = struct.pack(">BhHB", 14, 0, 2, 15) + struct.pack(">hh", -1, 1)
    sym = struct.pack(">BhH", 1, -1, 0)
    if statements:
        child = struct.pack(">BhH", 13, 1, 1) + b"k" + b"\0" * 6 + struct.pack(">h", -2) + struct.pack(">BhH", 3, -2, 7)
    else:
        child = struct.pack(">BhH", 9, 1, 1)
    body = HEAD + root + sym + child
    if tag:
        pad = b"\0" * (len(body) % 2)
        body += pad + b"ascr" + struct.pack(">HH", 1, 12 + len(pad)) + b"\xfa\xde\xde\xad"
    return body


def timed(data: bytes) -> tuple[ScriptInfo, float]:
    t = time.perf_counter()
    info = parse_script(data)
    return info, time.perf_counter() - t


def samples(folder: str) -> list[Path]:
    return sorted((SAMPLES / folder).glob("*.scpt"))


# -- the labelled real scripts ------------------------------------------------------------------
@pytest.mark.samples
@needs_samples
def test_strong_labels_agree() -> None:
    editable = parse_script(STRONG_EDITABLE.read_bytes())
    run_only = parse_script(STRONG_RUN_ONLY.read_bytes())
    assert editable.error is None and run_only.error is None
    assert editable.run_only is False and editable.statements > 100
    assert run_only.run_only is True and run_only.statements == 0 and run_only.objects > 100
    assert run_only.evidence == f"0 statement maps in {run_only.objects} objects"


@pytest.mark.samples
@needs_samples
def test_every_sample_walks_exactly_to_its_storage_tag() -> None:
    """The walk consumes the object table to the byte: no note about a missing tag or leftovers."""
    for path in samples("editable") + samples("run-only"):
        info = parse_script(path.read_bytes())
        assert info.error is None and info.format == "applescript", (path.name, info.error)
        assert info.version == "1.101.10" and info.evidence is not None
        assert "(" not in info.evidence, (path.name, info.evidence)


@pytest.mark.samples
@needs_samples
def test_medium_labels_mostly_agree() -> None:
    """Medium labels are evidence, not truth: assert a rate, print each disagreement."""
    for folder, expected, floor in (("editable", False, 1.0), ("run-only", True, 0.9)):
        medium = [p for p in samples(folder) if p.name not in STRONG]
        infos = {p.name: parse_script(p.read_bytes()) for p in medium}
        for name, info in infos.items():
            if info.run_only is not expected:
                print(f"disagrees ({folder}, medium): {name}: run_only={info.run_only}; {info.evidence}")
        agree = sum(1 for i in infos.values() if i.run_only is expected)
        assert agree / len(infos) >= floor, (folder, agree, len(infos))


# -- the rule on synthetic graphs ---------------------------------------------------------------
def test_statement_objects_decide_on_a_synthetic_graph() -> None:
    with_st, without = parse_script(tiny_script(True)), parse_script(tiny_script(False))
    assert with_st.error is None and with_st.run_only is False and with_st.statements == 1
    assert without.error is None and without.run_only is True and without.objects == 3


def test_storage_tag_bounds_the_walk() -> None:
    for statements in (True, False):
        info = parse_script(tiny_script(statements, tag=True))
        assert info.error is None and info.run_only is (not statements)
        assert "(" not in (info.evidence or "")
    assert "no ascr storage tag" in (parse_script(tiny_script(False)).evidence or "")


def test_a_statement_type_byte_in_data_is_not_a_statement() -> None:
    """0x0d bytes inside a raw data object, and after the graph, are data, not statement objects."""
    fake = struct.pack(">BhH", 13, 1, 1) + b"k" + b"\0" * 6
    root = struct.pack(">BhH", 16, 0, 1) + struct.pack(">h", -1) + struct.pack(">BhH", 17, -1, len(fake)) + fake
    info = parse_script(HEAD + root + fake * 4)
    assert info.error is None and info.run_only is True and info.statements == 0 and info.objects == 2
    assert "bytes after the object table" in (info.evidence or "")


def test_shebang_and_magic_checks() -> None:
    assert is_compiled_script(b"#!/usr/bin/osascript\nFasdUAS 1.101.10")
    assert is_compiled_script(b"JsOsaDAS1.001.00bplist")
    assert not is_compiled_script(b"#!/bin/sh\necho hi") and not is_compiled_script(b"\x7fELF")
    assert not is_compiled_script(b"#!/usr/bin/osascript") and not is_compiled_script(b"")
    info = parse_script(b"#!/usr/bin/osascript\n" + tiny_script(False))
    assert info.has_shebang and info.run_only is True and info.format == "applescript"


# -- hostile input ------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [
    b"", b"F", b"FasdUAS ", HEAD, b"FasdUAS 1.10", b"#!/usr/bin/osascript", b"#!no newline" * 500,
    b"#!/usr/bin/osascript\n", b"FasdUAS 9.999.99", b"FasdUAS 0.900.90",
    HEAD + b"\x02\x00\x00\x00\x02" + b"\xff" * 10,
    HEAD + struct.pack(">BhH", 99, 0, 0),  # unknown type
    HEAD + struct.pack(">BhH", 9, 7, 1),  # root has the wrong id: nothing is object 0
    HEAD + struct.pack(">BhH", 12, 0, 0) + b"\xff\xff",  # text longer than the file
    HEAD + struct.pack(">BhHI", 19, 0, 0, 0xFFFFFFFF),  # 4 GiB data block
    HEAD + struct.pack(">BhHBI", 18, 0, 0, 1, 0xFFFFFFFF),
    HEAD + struct.pack(">BhH", 16, 0, 0xFFFF) + b"\xff\xff" * 10,  # 65535 references, 10 present
    HEAD + struct.pack(">BhHB", 15, 0, 0xFFFF, 0),  # data block of 65535 bytes, none present
    HEAD + struct.pack(">BhHB", 10, 0, 8, 99),  # code identifier of an unknown tag
    HEAD + struct.pack(">BhHBH", 11, 0, 0, 48, 0x4000),  # user identifier of 16 KiB
    HEAD + struct.pack(">BhH", 6, 0, 7),  # record of an unknown shape
    HEAD + struct.pack(">BhH", 7, 0, 4000),  # long integer of absurd size
], ids=repr)
def test_malformed_gets_an_error_not_an_exception(data: bytes) -> None:
    info, took = timed(data)
    assert info.error and info.run_only is None and took < BUDGET


def test_random_bytes_after_the_magic_are_an_error() -> None:
    rng = random.Random(11)
    for _ in range(500):
        info, took = timed(HEAD + rng.randbytes(rng.randrange(0, 4096)))
        assert info.error is not None and info.run_only is None and took < BUDGET


def test_deep_nesting_is_bounded() -> None:
    body = b"".join(struct.pack(">BhHB", 14, -i if i else 0, 1, 1) + struct.pack(">h", -(i + 1)) for i in range(5000))
    info, took = timed(HEAD + body)
    assert f"deeper than {MAX_DEPTH}" in (info.error or "") and took < BUDGET


def test_long_chains_are_a_loop_not_recursion() -> None:
    """A list of 20,000 pairs is flat, however long: it must not trip the depth cap."""
    links = [struct.pack(">BhH", 2, 0, 2)]
    for _ in range(20_000):
        links += [struct.pack(">hh", -5, -6), struct.pack(">BhH", 9, -5, 1), struct.pack(">BhH", 2, -6, 2)]
    links += [struct.pack(">hh", -5, -6), struct.pack(">BhH", 9, -5, 1), struct.pack(">BhH", 2, -6, 0)]
    info, took = timed(HEAD + b"".join(links))
    assert info.error is None and info.run_only is True and info.objects == 40_002 and took < BUDGET


def test_a_mebibyte_of_tiny_objects_stops_at_the_cap_in_time() -> None:
    n = 0xFFFF
    block = struct.pack(">BhH", 16, -1, n) + struct.pack(">h", -2) * n + struct.pack(">BhH", 3, -2, 1) * n
    data = HEAD + struct.pack(">BhH", 16, 0, 8) + struct.pack(">h", -1) * 8 + block * 8
    assert len(data) > 1 << 20
    info, took = timed(data)
    assert info.error is None and info.objects == MAX_OBJECTS and "object cap" in (info.evidence or "")
    assert took < BUDGET


def _mutants(data: bytes, rng: random.Random) -> Callable[[], bytes]:
    """A maker of copies of `data` with one to eight random bytes replaced."""

    def one() -> bytes:
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.getrandbits(8)
        return bytes(b)
    return one


@pytest.mark.samples
@needs_samples
def test_truncation_at_every_offset_of_a_real_script() -> None:
    """Never an exception, never slow; a cut through the object table is an error, not a verdict."""
    data = STRONG_RUN_ONLY.read_bytes()
    tag_at = len(data) - int.from_bytes(data[-6:-4], "big")
    for n in range(len(data) + 1):
        info, took = timed(data[:n])
        assert took < BUDGET, n
        if 16 <= n < tag_at:
            assert info.error is not None and info.run_only is None, (n, info)
        elif n >= tag_at:
            assert info.error is None and info.run_only is True, (n, info)


@pytest.mark.samples
@needs_samples
def test_truncating_an_editable_script_never_makes_it_run_only() -> None:
    data = STRONG_EDITABLE.read_bytes()
    step = 1 if os.environ.get("DYLDWATCH_SLOW") else 7  # every offset takes ~25 s
    for n in range(0, len(data) + 1, step):
        info, took = timed(data[:n])
        assert info.run_only is not True and took < BUDGET, n


@pytest.mark.samples
@needs_samples
def test_random_byte_flips_of_real_scripts() -> None:
    rng = random.Random(3)
    slowest = 0.0
    for path in (STRONG_EDITABLE, STRONG_RUN_ONLY):
        mutate = _mutants(path.read_bytes(), rng)
        for _ in range(1500):
            info, took = timed(mutate())
            assert isinstance(info, ScriptInfo)
            assert info.run_only is None or info.evidence, info
            slowest = max(slowest, took)
    assert slowest < BUDGET


# -- JXA ----------------------------------------------------------------------------------------
def jxa(payload: dict) -> bytes:
    """A compiled JXA file laid out as a real one: header, binary plist, `jscr` storage tag."""
    body = b"JsOsaDAS1.001.00" + plistlib.dumps(payload, fmt=plistlib.FMT_BINARY)
    pad = b"\0" * (len(body) % 2)
    return body + pad + b"jscr" + struct.pack(">HH", 1, 12 + len(pad)) + b"\xfa\xde\xde\xad"


def test_jxa_with_source_is_editable() -> None:
    for src in ("ObjC.import('Foundation');\n$.NSLog('hi')", "const s = '\u00e9t\u00e9 \u2603';" * 40):
        info = parse_script(jxa({"script": src}))
        assert info.format == "jxa" and info.version == "1.001.00" and info.error is None
        assert info.run_only is False and f"{len(src)} characters" in (info.evidence or "")
    assert parse_script(b"#!/usr/bin/osascript -l JavaScript\n" + jxa({"script": "1"})).has_shebang
    untagged = b"JsOsaDAS1.001.00" + plistlib.dumps({"script": "1;"}, fmt=plistlib.FMT_BINARY)
    assert parse_script(untagged).run_only is False


def test_jxa_without_readable_source_is_run_only() -> None:
    assert parse_script(jxa({})).run_only is True
    assert parse_script(jxa({"script": "  \n"})).run_only is True
    assert parse_script(jxa({"other": "x", "script": b"\x00\x01"})).run_only is True


def test_malformed_jxa_is_an_error() -> None:
    for bad in (b"JsOsaDAS", b"JsOsaDAS1.001.00", b"JsOsaDAS1.001.00bplist00" + b"\xff" * 40,
                b"JsOsaDAS1.001.00not a plist at all, not at all, not at all, not at all"):
        info = parse_script(bad)
        assert info.format == "jxa" and info.error and info.run_only is None
    data = jxa({"script": "var x = 1;" * 30})
    for n in range(len(data)):
        info, took = timed(data[:n])
        assert took < BUDGET and (n < 16 or info.error or info.run_only is not None)
    rng = random.Random(5)
    mutate = _mutants(data, rng)
    for _ in range(2000):
        info, took = timed(mutate())
        assert took < BUDGET


# -- the table and bundles ----------------------------------------------------------------------
def rows(**cons: list[tuple[int, str]]) -> list[dict]:
    return list(AppleScriptInfoTable().generate(QueryContext.build(cons)))


def test_table_finds_scripts_bundles_and_applets(tmp_path: Path) -> None:
    (tmp_path / "plain.scpt").write_bytes(tiny_script(False))
    (tmp_path / "notes.txt").write_text("hello")
    bundle = tmp_path / "tool.scptd" / "Contents" / "Resources" / "Scripts"
    bundle.mkdir(parents=True)
    (bundle / "main.scpt").write_bytes(tiny_script(True))
    applet = tmp_path / "Runner.app" / "Contents" / "Resources" / "Scripts"
    applet.mkdir(parents=True)
    (applet / "main.scpt").write_bytes(b"#!/usr/bin/osascript\n" + tiny_script(False))
    got = {r["path"]: r for r in rows(directory=[(Op.EQUALS, str(tmp_path))])}
    assert set(got) == {str(tmp_path / "plain.scpt"), str(bundle / "main.scpt"), str(applet / "main.scpt")}
    assert got[str(tmp_path / "plain.scpt")]["run_only"] == 1 and got[str(tmp_path / "plain.scpt")]["bundle"] is None
    assert got[str(bundle / "main.scpt")]["run_only"] == 0
    assert got[str(bundle / "main.scpt")]["bundle"] == str(tmp_path / "tool.scptd")
    assert got[str(applet / "main.scpt")]["bundle"] == str(tmp_path / "Runner.app")
    assert all(r["mtime"] and r["size"] for r in got.values())


def test_table_error_rows_for_named_files(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("no")
    fifo = tmp_path / "f.scpt"
    import os

    os.mkfifo(fifo)
    got = {r["path"]: r["error"] for r in rows(path=[(Op.EQUALS, str(tmp_path / "x.txt")), (Op.EQUALS, str(fifo)),
                                                     (Op.EQUALS, str(tmp_path / "gone.scpt"))])}
    assert "not a compiled" in got[str(tmp_path / "x.txt")]
    assert "FIFO" in got[str(fifo)] and got[str(tmp_path / "gone.scpt")] == "no such file"
    assert rows() == []


def test_bundle_paths_lists_main_first(tmp_path: Path) -> None:
    d = tmp_path / "a.scptd" / "Contents" / "Resources" / "Scripts"
    d.mkdir(parents=True)
    for n in ("zeta.scpt", "main.scpt", "alpha.scpt", "readme.txt"):
        (d / n).write_bytes(b"x")
    assert [Path(p).name for p in script_paths_in_bundle(str(tmp_path / "a.scptd"))] == ["main.scpt", "alpha.scpt", "zeta.scpt"]


def test_bundle_paths_are_bounded(tmp_path: Path) -> None:
    d = tmp_path / "b.app" / "Contents" / "Resources" / "Scripts"
    d.mkdir(parents=True)
    for i in range(50):
        (d / f"s{i:02}.scpt").write_bytes(b"x")
    (d / "main.scpt").write_bytes(b"x")
    (d / "sub.scpt").mkdir()  # a directory named like a script is not one
    got = script_paths_in_bundle(str(tmp_path / "b.app"), limit=5)
    assert [Path(p).name for p in got] == ["main.scpt", "s00.scpt", "s01.scpt", "s02.scpt", "s03.scpt"]
    assert script_paths_in_bundle(str(tmp_path / "missing.scptd")) == []
    assert len(script_paths_in_bundle(str(tmp_path / "b.app"), scan=10)) <= 10

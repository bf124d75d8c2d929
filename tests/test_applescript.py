"""Compiled AppleScript: run-only detection against real labelled scripts, and hostile input."""

from __future__ import annotations

import random
import struct
import time
from pathlib import Path

import pytest

from dyldwatch.applescript import is_compiled_script, parse_script, script_paths_in_bundle
from dyldwatch.tables.applescript_info import AppleScriptInfoTable
from dyldwatch.tables.base import Op, QueryContext

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "applescript"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"no samples at {SAMPLES}")
STRONG_EDITABLE = SAMPLES / "editable" / "quicksilver__Finder.original.scpt"
STRONG_RUN_ONLY = SAMPLES / "run-only" / "quicksilver__Finder.scpt"


def tiny_script(statements: bool) -> bytes:
    """A minimal well-formed object graph: a value block holding a symbol and, if asked, a statement."""
    head = b"FasdUAS 1.101.10"
    root = struct.pack(">BhHB", 14, 0, 2, 15) + struct.pack(">hh", -1, 1)
    sym = struct.pack(">BhH", 1, -1, 0)
    if statements:
        child = struct.pack(">BhH", 13, 1, 1) + b"k" + b"\0" * 6 + struct.pack(">h", -2) + struct.pack(">BhH", 3, -2, 7)
    else:
        child = struct.pack(">BhH", 9, 1, 1)
    return head + root + sym + child


@pytest.mark.samples
@needs_samples
def test_strong_labels_agree() -> None:
    editable = parse_script(STRONG_EDITABLE.read_bytes())
    run_only = parse_script(STRONG_RUN_ONLY.read_bytes())
    assert editable.error is None and run_only.error is None
    assert editable.run_only is False and editable.statements > 100
    assert run_only.run_only is True and run_only.statements == 0 and run_only.objects > 100


@pytest.mark.samples
@needs_samples
def test_every_sample_parses_whole_and_medium_labels_mostly_agree() -> None:
    editable = [parse_script(p.read_bytes()) for p in (SAMPLES / "editable").glob("*.scpt")]
    run_only = [parse_script(p.read_bytes()) for p in (SAMPLES / "run-only").glob("*.scpt")]
    assert all(i.error is None and i.format == "applescript" for i in editable + run_only)
    assert all(i.run_only is False for i in editable)
    agree = sum(1 for i in run_only if i.run_only is True)
    assert agree / len(run_only) >= 0.9, agree


def test_statement_objects_decide_on_a_synthetic_graph() -> None:
    with_st, without = parse_script(tiny_script(True)), parse_script(tiny_script(False))
    assert with_st.error is None and with_st.run_only is False and with_st.statements == 1
    assert without.error is None and without.run_only is True and without.objects == 3


def test_a_0x0d_byte_in_data_is_not_a_statement() -> None:
    data = tiny_script(False) + b"\x0d\x00\x01\x00\x01" * 4  # trailing bytes past the graph
    assert parse_script(data).run_only is True


def test_shebang_and_magic_checks() -> None:
    assert is_compiled_script(b"#!/usr/bin/osascript\nFasdUAS 1.101.10")
    assert is_compiled_script(b"JsOsaDAS1.001.00bplist")
    assert not is_compiled_script(b"#!/bin/sh\necho hi") and not is_compiled_script(b"\x7fELF")
    info = parse_script(b"#!/usr/bin/osascript\n" + tiny_script(False))
    assert info.has_shebang and info.run_only is True
    assert parse_script(b"JsOsaDAS1.001.00").format == "jxa"


@pytest.mark.parametrize("data", [b"", b"FasdUAS ", b"FasdUAS 1.101.10", b"#!no newline" * 500, b"FasdUAS 9.999.99",
                                  b"FasdUAS 1.101.10" + b"\x02\x00\x00\x00\x02" + b"\xff" * 10])
def test_malformed_gets_an_error_not_an_exception(data: bytes) -> None:
    info = parse_script(data)
    assert info.error and info.run_only is None


@pytest.mark.samples
@needs_samples
def test_truncations_and_flips_of_a_real_script_never_raise_and_stay_fast() -> None:
    data = STRONG_EDITABLE.read_bytes()
    for n in range(0, len(data), 53):
        parse_script(data[:n])
    rng = random.Random(3)
    slowest = 0.0
    for _ in range(500):
        b = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b))] = rng.getrandbits(8)
        t = time.perf_counter()
        parse_script(bytes(b))
        slowest = max(slowest, time.perf_counter() - t)
    assert slowest < 0.1


def test_deep_nesting_is_bounded() -> None:
    head = b"FasdUAS 1.101.10"
    body = b"".join(struct.pack(">BhHB", 14, -i if i else 0, 1, 1) + struct.pack(">h", -(i + 1)) for i in range(5000))
    t = time.perf_counter()
    info = parse_script(head + body)
    assert "deeper" in (info.error or "") and time.perf_counter() - t < 0.1


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

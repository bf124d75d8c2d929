"""The two Mach-O tables end to end: fixtures, the real corpus, hostile files, and the cache."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dyldwatch.formats.macho import writer as mw
from dyldwatch.tables import _macho, macho_load_commands
from dyldwatch.tables._macho import PARSE_CACHE, signing_summary
from dyldwatch.tables.base import Op, QueryContext
from dyldwatch.tables.macho_info import MachoInfoTable
from dyldwatch.tables.macho_load_commands import MachoLoadCommandsTable

EQ, LIKE = Op.EQUALS, Op.LIKE


def rows(table: object, **cons: list[tuple[int, str]]) -> list[dict]:
    return list(table.generate(QueryContext.build(cons)))  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    macho_load_commands.SCANNER.clear()
    _macho.INFO_SCANNER.clear()
    PARSE_CACHE.clear()


def test_info_row_for_a_signed_fat_binary(tmp_path: Path) -> None:
    sigwriter = pytest.importorskip("dyldwatch.formats.macho.sigwriter")
    w = mw.sample_executable()
    w.set_code_signature(sigwriter.build_superblob(
        "com.example.tool", team_id="ABCDE12345", flags=0x10000,
        entitlements={"com.apple.security.cs.allow-jit": True}))
    x86 = mw.sample_executable(cputype=mw.C.CPU_TYPE_X86_64)
    p = tmp_path / "tool"
    p.write_bytes(mw.fat([w.build(), x86.build()]))
    got = {r["arch"]: r for r in rows(MachoInfoTable(), path=[(EQ, str(p))])}
    arm = got["arm64"]
    assert arm["error"] is None, arm["error"]
    assert arm["filetype"] == "execute" and arm["fat"] == 1 and "PIE" in arm["flags"].split("|")
    assert arm["team_id"] == "ABCDE12345" and arm["signing_id"] == "com.example.tool"
    assert arm["hardened_runtime"] == 1 and arm["signature_type"] == "adhoc"
    assert arm["entitlements"] == '{"com.apple.security.cs.allow-jit":true}'
    assert arm["uuid"] == "00010203-0405-0607-0809-0A0B0C0D0E0F" and arm["min_os"] == "11.0.0"
    assert arm["has_symtab"] == 1 and arm["nsyms"] == 3 and arm["strings_count"] == 2
    assert got["x86_64"]["signature_type"] in ("adhoc", "invalid")  # the sample's stub SuperBlob
    kind, _ = signing_summary(str(p))
    assert kind == got["x86_64"]["signature_type"]  # a fat file is as trusted as its weakest slice


def test_unsigned_stripped_file(tmp_path: Path) -> None:
    w = mw.MachOWriter(filetype=mw.C.MH_EXECUTE)
    w.set_text(b"\x00" * 64, [])
    w.add_dylib("/usr/lib/libSystem.B.dylib")
    p = tmp_path / "stripped"
    p.write_bytes(w.build())
    (r,) = rows(MachoInfoTable(), path=[(EQ, str(p))])
    assert r["signature_type"] == "none" and r["signed"] == 0 and r["has_symtab"] == 0
    assert r["strings_count"] == 0 and r["text_entropy"] is not None and r["text_entropy"] < 1.0


def test_dylib_resolution_follows_rpath_order_and_sees_new_files(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    (tmp_path / "second" / "libx.dylib").write_bytes(b"")
    w = mw.MachOWriter()
    w.add_dylib("@rpath/libx.dylib")
    w.add_rpath("@loader_path/first")
    w.add_rpath("@loader_path/second")
    p = tmp_path / "app"
    p.write_bytes(w.build())
    table = MachoLoadCommandsTable()
    dyl = [r for r in rows(table, path=[(EQ, str(p))]) if r["cmd"] == "LC_LOAD_DYLIB"][0]
    assert dyl["resolved_path"] == str(tmp_path / "second" / "libx.dylib") and dyl["resolved_exists"] == 1
    rp = [r["rpath_index"] for r in rows(table, path=[(EQ, str(p))]) if r["cmd"] == "LC_RPATH"]
    assert rp == [0, 1]
    # a dylib planted in the first rpath afterwards wins at once, even though the app is cached
    (tmp_path / "first" / "libx.dylib").write_bytes(b"")
    dyl = [r for r in rows(table, path=[(EQ, str(p))]) if r["cmd"] == "LC_LOAD_DYLIB"][0]
    assert dyl["resolved_path"] == str(tmp_path / "first" / "libx.dylib")


def test_malformed_file_keeps_good_commands_and_says_why(tmp_path: Path) -> None:
    w = mw.MachOWriter()
    w.add_dylib("/usr/lib/libSystem.B.dylib")
    data = bytearray(w.build())
    ncmds = int.from_bytes(data[16:20], "little")
    data[20:24] = (int.from_bytes(data[20:24], "little") + 4096).to_bytes(4, "little")  # lying sizeofcmds
    p = tmp_path / "liar"
    p.write_bytes(bytes(data))
    got = rows(MachoLoadCommandsTable(), path=[(EQ, str(p))])
    assert got and any(r.get("error") for r in got)
    assert ncmds > 0


@pytest.mark.parametrize("kind", ["fifo", "socket", "device", "loop", "missing", "empty", "directory"])
def test_hostile_file_kinds_give_error_rows_without_hanging(tmp_path: Path, kind: str) -> None:
    p = tmp_path / "thing"
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(p))
    elif kind == "device":
        p = Path("/dev/zero")
    elif kind == "loop":
        os.symlink(tmp_path / "thing2", p)
        os.symlink(p, tmp_path / "thing2")
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "directory":
        p.mkdir()
    for table in (MachoLoadCommandsTable(), MachoInfoTable()):
        t = time.monotonic()
        got = rows(table, path=[(EQ, str(p))])
        assert time.monotonic() - t < 1
        assert len(got) == 1 and got[0]["error"], (kind, got)


def test_sparse_multi_gigabyte_file_is_refused_quickly(tmp_path: Path) -> None:
    p = tmp_path / "huge.dylib"
    head = mw.sample_executable().build()
    with open(p, "wb") as fh:
        fh.write(head)
        fh.truncate(3 << 30)
    t = time.monotonic()
    (r,) = rows(MachoInfoTable(), path=[(EQ, str(p))])
    assert "limit" in r["error"] and time.monotonic() - t < 1


def test_sparse_file_under_the_cap_with_a_huge_text_segment_finishes(tmp_path: Path) -> None:
    p = tmp_path / "big"
    head = bytearray(mw.sample_executable().build())
    with open(p, "wb") as fh:
        fh.write(head)
        fh.truncate(1 << 30)
    t = time.monotonic()
    got = rows(MachoInfoTable(), path=[(EQ, str(p))])
    assert got and time.monotonic() - t < 5


def test_file_vanishing_mid_scan(tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / f"m{i:02}").write_bytes(mw.sample_executable().build())
    it = MachoLoadCommandsTable().generate(QueryContext.build({"directory": [(EQ, str(tmp_path))]}))
    first = next(it)
    for i in range(1, 30):
        os.unlink(tmp_path / f"m{i:02}")
    rest = list(it)
    assert first["path"].endswith("m00")
    assert all(r["path"].endswith("m00") or r["error"] for r in rest)


def test_repeated_query_is_served_from_cache_and_invalidated_by_change(tmp_path: Path) -> None:
    p = tmp_path / "app"
    p.write_bytes(mw.sample_executable().build())
    table = MachoInfoTable()
    (before,) = rows(table, path=[(EQ, str(p))])
    hits = _macho.INFO_SCANNER.cache.hits
    rows(table, path=[(EQ, str(p))])
    assert _macho.INFO_SCANNER.cache.hits == hits + 1
    w = mw.sample_executable()
    w.add_rpath("/tmp/planted")
    p.write_bytes(w.build())
    os.utime(p, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    (r,) = rows(table, path=[(EQ, str(p))])
    assert r["ncmds"] == before["ncmds"] + 1  # the new LC_RPATH is seen, not a cached row
    names = {x["name"] for x in rows(MachoLoadCommandsTable(), path=[(EQ, str(p))])}
    assert "/tmp/planted" in names


def test_no_path_constraint_returns_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    assert rows(MachoInfoTable()) == []
    assert "no path or directory constraint" in caplog.text


@pytest.mark.corpus
def test_every_corpus_file_yields_rows_without_error(corpus_dir: Path) -> None:
    files = sorted(str(p) for p in (corpus_dir / "files").iterdir())
    info = rows(MachoInfoTable(), path=[(EQ, f) for f in files])
    lcs = rows(MachoLoadCommandsTable(), path=[(EQ, f) for f in files])
    assert {r["path"] for r in info} == set(files) == {r["path"] for r in lcs}
    assert [r for r in info if r["error"]] == []
    assert [r for r in lcs if r["error"]] == []
    kinds = {r["signature_type"] for r in info}
    assert {"adhoc", "certificate"} <= kinds, kinds
    assert any(r.get("hardened_runtime") and r.get("authority") and r.get("team_id") for r in info)
    assert any(r.get("entitlements") for r in info)


def test_lief_is_never_loaded_by_the_tables(tmp_path: Path) -> None:
    """No native parser sees attacker bytes in the extension: LIEF stays out of the process."""
    p = tmp_path / "app"
    p.write_bytes(mw.sample_executable().build())
    code = (
        "import sys\n"
        "from dyldwatch.tables import all_tables\n"
        "from dyldwatch.tables.base import QueryContext\n"
        f"ctx = QueryContext.build({{'path': [(2, {str(p)!r})]}})\n"
        "for t in all_tables():\n"
        "    list(t().generate(ctx))\n"
        "assert 'lief' not in sys.modules, 'lief was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_concurrent_queries_share_the_cache_safely(tmp_path: Path) -> None:
    for i in range(20):
        (tmp_path / f"a{i}").write_bytes(mw.sample_executable().build())
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                assert len(rows(MachoInfoTable(), directory=[(EQ, str(tmp_path))])) == 20
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

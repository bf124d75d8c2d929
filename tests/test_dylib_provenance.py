"""dylib_provenance over the real file system of this machine, plus recorded macOS inputs."""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dyldwatch.formats.provenance import PROVENANCE_XATTRS
from dyldwatch.host import quarantine_events, xattrs
from dyldwatch.host.statx import birth_time, statx_available
from dyldwatch.host.xattrs import XattrValues, get_value, read_xattrs
from dyldwatch.tables import load_table
from dyldwatch.tables.base import Op, QueryContext
from dyldwatch.tables.dylib_provenance import DylibProvenanceTable, foreign_root, image_paths

ORIGIN = "https://dl.example.com/libevil.so"
REFERRER = "https://example.com/downloads"


def rows(table: DylibProvenanceTable, **cons: list[tuple[int, str]]) -> list[dict]:
    return list(table.generate(QueryContext.build(cons)))


def one(table: DylibProvenanceTable, path: str | Path) -> dict:
    got = rows(table, path=[(Op.EQUALS, str(path))])
    assert len(got) == 1
    return got[0]


def supports_user_xattrs(directory: Path) -> bool:
    probe = directory / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        import xattr

        xattr.setxattr(str(probe), "user.dyldwatch.probe", b"1")
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


@pytest.fixture()
def table() -> DylibProvenanceTable:
    return DylibProvenanceTable(signing=lambda p: (None, None))


@pytest.fixture()
def xdir(tmp_path: Path) -> Path:
    if not supports_user_xattrs(tmp_path):
        pytest.skip(f"{tmp_path} does not support user.* extended attributes")
    return tmp_path


def libc_path() -> str:
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and ("/libc.so" in parts[5] or "/libc-" in parts[5]):
                return parts[5].strip()
    pytest.skip("libc not mapped from a file (static or musl build)")


# ------------------------------------------------------------------------------------------ registry


def test_registered_and_declared() -> None:
    cls = load_table("dylib_provenance")
    assert cls is DylibProvenanceTable
    names = cls.column_names()
    for col in ("path", "directory", "pid", "exists", "system_path", "user_writable", "writable_by", "uid", "mode",
                "size", "btime", "mtime", "ctime", "quarantined", "quarantine_flags", "quarantine_agent",
                "quarantine_time", "quarantine_event_id", "quarantine_user_approved", "quarantine_origin_url",
                "where_froms", "origin_url", "referrer_url", "provenance_id", "signature_type", "team_id", "error"):
        assert col in names
    assert cls.column("pid").required and cls.column("path").required and cls.column("path").index
    assert "CREATE TABLE" in cls.ddl()
    cls()  # runtimes instantiate tables without arguments


def test_no_constraint_no_rows(table: DylibProvenanceTable, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    assert rows(table) == []
    assert "no path, directory or pid constraint" in caplog.text


# ------------------------------------------------------------------------------------------ linux xattrs


def test_xdg_urls_with_and_without_trailing_nul(table: DylibProvenanceTable, xdir: Path) -> None:
    import xattr

    chromium = xdir / "chromium.so"
    wget = xdir / "wget.so"
    for p in (chromium, wget):
        p.write_bytes(b"\x7fELF" + b"\x00" * 60)
    xattr.setxattr(str(chromium), "user.xdg.origin.url", ORIGIN.encode())
    xattr.setxattr(str(chromium), "user.xdg.referrer.url", REFERRER.encode())
    xattr.setxattr(str(wget), "user.xdg.origin.url", ORIGIN.encode() + b"\x00")
    by_path = {r["path"]: r for r in rows(table, directory=[(Op.EQUALS, str(xdir))])}
    for p in (chromium, wget):
        r = by_path[str(p)]
        assert r["origin_url"] == ORIGIN
        assert r["exists"] == 1 and r["quarantined"] == 0 and r["error"] is None
    assert by_path[str(chromium)]["referrer_url"] == REFERRER
    assert by_path[str(wget)]["referrer_url"] is None


def test_xattr_reader_caps_size_and_treats_missing_as_absent(xdir: Path) -> None:
    import xattr

    f = xdir / "big.so"
    f.write_bytes(b"x")
    xattr.setxattr(str(f), "user.xdg.origin.url", b"u" * 100)
    with pytest.raises(ValueError, match="larger than 16 bytes"):
        get_value(str(f), "user.xdg.origin.url", max_size=16)
    got = read_xattrs(str(f), ["user.xdg.origin.url", "user.nothing", "com.apple.quarantine"], max_size=16)
    assert got.values == {} and "larger than 16 bytes" in got.problems[0]
    assert get_value(str(f), "user.nothing") is None
    assert get_value(str(xdir / "missing"), "user.xdg.origin.url") is None
    assert get_value(str(f), "com.apple.quarantine") is None  # not a valid Linux namespace: ENOTSUP
    assert xattrs.list_names(str(xdir / "missing")) == frozenset()


def test_xattr_change_invalidates_the_cache(table: DylibProvenanceTable, xdir: Path) -> None:
    import xattr

    f = xdir / "lib.so"
    f.write_bytes(b"x")
    assert one(table, f)["origin_url"] is None
    assert one(table, f)["origin_url"] is None and table.cache.hits >= 1
    xattr.setxattr(str(f), "user.xdg.origin.url", ORIGIN.encode())  # changes ctime
    assert one(table, f)["origin_url"] == ORIGIN


# ------------------------------------------------------------------------------------------ times


def test_birth_time_is_real(table: DylibProvenanceTable, tmp_path: Path) -> None:
    if sys.platform.startswith("linux") and not statx_available():
        pytest.skip("glibc has no statx wrapper")
    before = int(time.time())
    f = tmp_path / "fresh.so"
    f.write_bytes(b"x")
    time.sleep(0.01)
    os.utime(f)  # mtime strictly after birth
    if birth_time(str(f)) is None:
        pytest.skip(f"the filesystem of {tmp_path} records no birth time")
    r = one(table, f)
    assert before - 1 <= r["btime"] <= r["mtime"] <= int(time.time()) + 1
    assert r["ctime"] >= r["btime"]


def test_old_mtime_newer_birth_is_visible(table: DylibProvenanceTable, tmp_path: Path) -> None:
    """A timestomped file: mtime set into the past, but the birth time tells the truth."""
    f = tmp_path / "stomped.so"
    f.write_bytes(b"x")
    os.utime(f, (1_500_000_000, 1_500_000_000))
    if birth_time(str(f)) is None:
        pytest.skip("no birth time here")
    r = one(table, f)
    assert r["mtime"] == 1_500_000_000 and r["btime"] > r["mtime"]


# ------------------------------------------------------------------------------------------ writability


def test_library_in_world_writable_dir(table: DylibProvenanceTable, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    lib = shared / "libplugin.so"
    lib.write_bytes(b"x")
    lib.chmod(0o755)
    r = one(table, lib)
    assert r["user_writable"] == 1 and r["system_path"] == 0
    assert r["writable_by"] == f"{shared} (world-writable)"
    assert r["mode"] == "0755" and r["size"] == 1 and r["uid"] == os.getuid()


def test_symlink_into_writable_dir_is_judged_by_its_target(table: DylibProvenanceTable, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    shared = tmp_path / "shared"
    locked.mkdir()
    shared.mkdir()
    shared.chmod(0o1777)
    target = shared / "real.so"
    target.write_bytes(b"x")
    target.chmod(0o644)
    link = locked / "libalias.so"
    link.symlink_to(target)
    locked.chmod(0o755)
    r = one(table, link)
    assert r["exists"] == 1 and r["path"] == str(link) and r["directory"] == str(locked)
    if os.getuid() == 0 and all(os.stat(p).st_uid == 0 and not os.stat(p).st_mode & 0o022
                                for p in (tmp_path, tmp_path.parent, tmp_path.parent.parent)):
        # a root-owned file in a root-owned sticky directory: only root may rename or rewrite it
        assert r["user_writable"] == 0 and r["writable_by"] is None
        target.chmod(0o666)
        table2 = DylibProvenanceTable()
        r = one(table2, link)
        assert r["user_writable"] == 1 and r["writable_by"] == f"{target} (world-writable)"


def test_missing_library_in_writable_dir_is_a_hijack_spot(table: DylibProvenanceTable, tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    r = one(table, tmp_path / "libmissing.so")
    assert r["exists"] == 0 and r["error"] == "no such file"
    assert r["user_writable"] == 1 and str(tmp_path) in r["writable_by"]


def test_real_libc_is_a_system_library(table: DylibProvenanceTable) -> None:
    libc = libc_path()
    chain = [libc] + [str(p) for p in Path(os.path.realpath(libc)).parents]
    if any(os.stat(p).st_uid != 0 for p in chain):
        pytest.skip("libc is not root-owned on this machine")
    r = one(table, libc)
    assert r["exists"] == 1 and r["system_path"] == 1 and r["user_writable"] == 0 and r["writable_by"] is None
    assert r["error"] is None and r["quarantined"] == 0 and r["origin_url"] is None


def test_darwin_rules_through_the_injected_platform(tmp_path: Path) -> None:
    darwin = DylibProvenanceTable(platform="darwin", signing=lambda p: (None, None))
    assert one(darwin, "/usr/lib/libSystem.B.dylib")["system_path"] == 1  # absent: shared cache
    missing = one(darwin, "/usr/bin/nothing-here")
    assert missing["system_path"] == 0 and missing["exists"] == 0
    assert one(darwin, libc_path())["system_path"] == 1  # under /usr, not /usr/local
    f = tmp_path / "x.dylib"
    f.write_bytes(b"x")
    assert one(darwin, f)["system_path"] == 0


# ------------------------------------------------------------------------------------------ odd files


def test_fifo_is_stat_only(table: DylibProvenanceTable, tmp_path: Path) -> None:
    fifo = tmp_path / "libfifo.so"
    os.mkfifo(fifo)
    started = time.monotonic()
    r = one(table, fifo)
    assert time.monotonic() - started < 5  # a blocking open would hang here
    assert r["exists"] == 1 and r["error"] == "a FIFO, not read"
    assert r["mode"] and r["uid"] == os.getuid() and r["origin_url"] is None


def test_device_is_stat_only(table: DylibProvenanceTable) -> None:
    r = one(table, "/dev/null")
    assert r["exists"] == 1 and r["error"] == "a character device, not read"


def test_symlink_loop_and_dangling_link(table: DylibProvenanceTable, tmp_path: Path) -> None:
    loop = tmp_path / "loop.so"
    loop.symlink_to(loop)
    dangling = tmp_path / "dangling.so"
    dangling.symlink_to(tmp_path / "nowhere.so")
    r = one(table, loop)
    assert r["exists"] == 0 and "symlink loop" in r["error"]
    r = one(table, dangling)
    assert r["exists"] == 0 and r["error"] == "no such file (dangling symbolic link)"


def test_directory_named_explicitly(table: DylibProvenanceTable, tmp_path: Path) -> None:
    r = one(table, tmp_path)
    assert r["exists"] == 1 and r["error"] == "a directory, not read"


def test_vanished_library_of_a_live_process(table: DylibProvenanceTable, tmp_path: Path) -> None:
    """A process loads a library, which is then deleted: the row names it and says it vanished."""
    source = next((p for p in ("/usr/lib/x86_64-linux-gnu/libutil.so.1", "/lib/x86_64-linux-gnu/libutil.so.1",
                               "/usr/lib64/libutil.so.1", "/usr/lib/aarch64-linux-gnu/libutil.so.1")
                   if os.path.exists(p)), None)
    if source is None or not sys.platform.startswith("linux"):
        pytest.skip("needs Linux and a small shared library to load")
    lib = tmp_path / "libvanish.so.1"
    shutil.copy(source, lib)
    code = ("import ctypes, os, sys, time; ctypes.CDLL(sys.argv[1]); os.unlink(sys.argv[1]); "
            "print('ready', flush=True); time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", code, str(lib)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        assert str(lib) in image_paths(child.pid)
        got = {r["path"]: r for r in rows(table, pid=[(Op.EQUALS, str(child.pid))])}
        r = got[str(lib)]
        assert r["pid"] == child.pid and r["exists"] == 0
        assert r["error"].startswith("no such file") and "deleted" in r["error"]
        interpreter = got.get(os.path.realpath(sys.executable))
        assert interpreter is None or interpreter["exists"] == 1
    finally:
        child.kill()
        child.wait()


def test_pid_rows_cover_this_process(table: DylibProvenanceTable) -> None:
    got = rows(table, pid=[(Op.EQUALS, str(os.getpid()))])
    assert got and all(r["pid"] == os.getpid() for r in got)
    assert any("libc" in r["path"] for r in got)
    assert rows(table, pid=[(Op.EQUALS, "999999999")]) == []


def test_signing_only_when_asked(tmp_path: Path) -> None:
    calls: list[str] = []

    def fake(path: str) -> tuple[str | None, str | None]:
        calls.append(path)
        return "certificate", "ABCDE12345"

    t = DylibProvenanceTable(signing=fake)
    f = tmp_path / "lib.dylib"
    f.write_bytes(b"x")
    r = one(t, f)
    assert (r["signature_type"], r["team_id"]) == ("certificate", "ABCDE12345")
    ctx = QueryContext.build({"path": [(Op.EQUALS, str(f))]}, cols_used=["path", "origin_url"])
    calls.clear()
    t.cache.clear()
    assert list(t.generate(ctx))[0]["signature_type"] is None and calls == []


def test_real_signing_summary_on_elf(tmp_path: Path) -> None:
    """The default signing hook reaches macho_info (or degrades) and says nothing about an ELF."""
    r = one(DylibProvenanceTable(), libc_path())
    assert (r["signature_type"], r["team_id"]) == (None, None)


# ------------------------------------------------------------------------------------------ recorded macOS inputs

EVENT = "5C0B3F9A-1D2E-4F60-9A7B-8C9D0E1F2A3B"
DATA_URL = "https://github.com/example/tool/releases/download/v1.2/libtool.dylib"
PAGE_URL = "https://github.com/example/tool/releases"

QUARANTINE_SCHEMA = """
CREATE TABLE LSQuarantineEvent (
  LSQuarantineEventIdentifier TEXT PRIMARY KEY NOT NULL,
  LSQuarantineTimeStamp REAL,
  LSQuarantineAgentBundleIdentifier TEXT,
  LSQuarantineAgentName TEXT,
  LSQuarantineDataURLString TEXT,
  LSQuarantineSenderName TEXT,
  LSQuarantineSenderAddress TEXT,
  LSQuarantineTypeNumber INTEGER,
  LSQuarantineOriginTitle TEXT,
  LSQuarantineOriginURLString TEXT,
  LSQuarantineOriginAlias BLOB
)
"""


def make_quarantine_db(home: Path) -> Path:
    db = home / quarantine_events.DB_RELATIVE
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute(QUARANTINE_SCHEMA)
    conn.execute(
        "INSERT INTO LSQuarantineEvent VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (EVENT, 726_000_000.5, "com.apple.Safari", "Safari", DATA_URL, None, None, 0, "Releases", PAGE_URL, None),
    )
    conn.commit()
    conn.close()
    return db


def fake_xattrs(values: dict[str, bytes]):
    def read(path: str, names: Iterable[str]) -> XattrValues:
        return XattrValues({n: v for n, v in values.items() if n in set(names)})

    return read


def test_recorded_macos_download(tmp_path: Path) -> None:
    db = make_quarantine_db(tmp_path / "home")
    before = {p.name for p in db.parent.iterdir()}
    mtime = db.stat().st_mtime_ns
    values = {
        "com.apple.quarantine": f"0083;65a1b2c3;Safari;{EVENT}".encode(),
        "com.apple.metadata:kMDItemWhereFroms": plistlib.dumps([DATA_URL, PAGE_URL], fmt=plistlib.FMT_BINARY),
        "com.apple.provenance": bytes.fromhex("010200504a22fa773c5f21"),
    }
    t = DylibProvenanceTable(platform="darwin", read_xattrs=fake_xattrs(values), quarantine_db_for=lambda uid: str(db),
                             signing=lambda p: ("certificate", "ABCDE12345"))
    lib = tmp_path / "libtool.dylib"
    lib.write_bytes(b"x")
    r = one(t, lib)
    assert r["quarantined"] == 1 and r["quarantine_flags"] == 0x83 and r["quarantine_user_approved"] == 0
    assert (r["quarantine_agent"], r["quarantine_time"], r["quarantine_event_id"]) == ("Safari", 0x65A1B2C3, EVENT)
    assert r["quarantine_data_url"] == DATA_URL and r["quarantine_origin_url"] == PAGE_URL
    assert r["where_froms"] == f'["{DATA_URL}","{PAGE_URL}"]'
    assert r["provenance_id"] == "0x215f3c77fa224a50"
    assert r["error"] is None
    # read-only and immutable: nothing created next to the database, nothing written
    assert {p.name for p in db.parent.iterdir()} == before and db.stat().st_mtime_ns == mtime


def test_recorded_curl_download_and_approved_flags(tmp_path: Path) -> None:
    lib = tmp_path / "libcurl-got.dylib"
    lib.write_bytes(b"x")
    curl = DylibProvenanceTable(platform="darwin", read_xattrs=fake_xattrs({"com.apple.quarantine": b"0001;65a1b2c3;;"}),
                                quarantine_db_for=lambda uid: None, signing=lambda p: (None, None))
    r = one(curl, lib)
    assert r["quarantined"] == 1 and r["quarantine_agent"] is None and r["quarantine_event_id"] is None
    assert r["quarantine_data_url"] is None and r["error"] is None
    approved = DylibProvenanceTable(platform="darwin", signing=lambda p: (None, None),
                                    read_xattrs=fake_xattrs({"com.apple.quarantine": f"00c3;65a1b2c3;Chrome;{EVENT}".encode()}),
                                    quarantine_db_for=lambda uid: str(tmp_path / "no-such.db"))
    r = one(approved, lib)
    assert r["quarantine_user_approved"] == 1 and r["quarantine_origin_url"] is None and r["error"] is None


def test_hostile_where_froms_does_not_hide_the_row(tmp_path: Path) -> None:
    lib = tmp_path / "libodd.dylib"
    lib.write_bytes(b"x")
    values = {
        "com.apple.metadata:kMDItemWhereFroms": b"bplist00\xff\xff\xff\xff",
        "com.apple.quarantine": b"0083;65a1b2c3;Safari;" + EVENT.encode(),
        "com.apple.provenance": b"\x01\x02",
    }
    t = DylibProvenanceTable(platform="darwin", read_xattrs=fake_xattrs(values), quarantine_db_for=lambda uid: None,
                             signing=lambda p: (None, None))
    r = one(t, lib)
    assert r["where_froms"] is None and "kMDItemWhereFroms" in r["error"]
    assert "provenance value is 2 bytes" in r["error"] and r["provenance_id"] == "raw:0102"
    assert r["quarantined"] == 1 and r["quarantine_agent"] == "Safari" and r["exists"] == 1 and r["size"] == 1


def test_quarantine_db_garbage_and_fifo_are_ignored(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    assert quarantine_events.lookup_event(str(garbage), EVENT) is None
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    assert quarantine_events.lookup_event(str(fifo), EVENT) is None
    db = make_quarantine_db(tmp_path / "home")
    event = quarantine_events.lookup_event(str(db), EVENT.lower())
    assert event is not None and event.data_url == DATA_URL and event.agent_name == "Safari"
    assert quarantine_events.lookup_event(str(db), "00000000-0000-0000-0000-000000000000") is None
    assert quarantine_events.database_for_uid(0) == os.path.join(os.path.expanduser("~root"), quarantine_events.DB_RELATIVE)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(PROVENANCE_XATTRS), st.binary(max_size=300), max_size=5))
def test_any_attribute_values_give_a_row(tmp_path: Path, values: dict[str, bytes]) -> None:
    lib = tmp_path / "libfuzz.dylib"
    lib.write_bytes(b"x")
    t = DylibProvenanceTable(platform="darwin", read_xattrs=fake_xattrs(values), quarantine_db_for=lambda uid: None,
                             signing=lambda p: (None, None))
    r = one(t, lib)
    assert r["exists"] == 1 and r["size"] == 1
    assert r["quarantined"] == (1 if "com.apple.quarantine" in values else 0)
    if r["where_froms"] is not None:
        assert isinstance(json.loads(r["where_froms"]), list)


def test_foreign_root_is_false_for_ourselves() -> None:
    assert foreign_root(os.getpid()) is False
    assert foreign_root(999_999_999) is False

"""The real extension process, autoloaded by a fake osqueryd that speaks real Thrift.

Each test starts `dyldwatch extension` (or the `.ext` launcher) the way osqueryd does, checks what
it registered, and queries it with context JSON shaped exactly like osqueryd's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dyldwatch.formats.macho import writer as mw
from dyldwatch.formats.macho.sigwriter import build_superblob
from dyldwatch.tables import TABLES, load_table

from .harness import ROOT, FakeOsqueryd, constraint, context, extension_command, running_extension

EQ, LIKE = 2, 65


@pytest.fixture(scope="module")
def fixture_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Mach-O files written by our own writer: two in a folder, one deeper, and a decoy."""
    root = tmp_path_factory.mktemp("machos")
    (root / "lib" / "deep").mkdir(parents=True)
    app = mw.sample_executable()
    app.set_code_signature(build_superblob("com.example.app", team_id="TEAM123456", flags=0x10000))
    (root / "app").write_bytes(app.build())
    dylib = mw.MachOWriter(filetype=mw.C.MH_DYLIB)
    dylib.add_dylib("@rpath/libbar.dylib", mw.C.LC_ID_DYLIB)
    dylib.add_dylib("/usr/lib/libSystem.B.dylib")
    (root / "lib" / "libbar.dylib").write_bytes(dylib.build())
    universal = mw.fat([mw.sample_executable().build(), mw.sample_executable(cputype=mw.C.CPU_TYPE_X86_64).build()])
    (root / "lib" / "deep" / "universal").write_bytes(universal)
    (root / "lib" / "notes.txt").write_text("not a Mach-O")
    return root


@pytest.fixture()
def ext(tmp_path: Path):
    with running_extension(tmp_path) as running:
        yield running


def test_registers_every_table_with_declared_columns_and_option_bits(ext) -> None:
    manager, _, _ = ext
    reg = manager.handler.registrations[0]
    assert reg.info.name == "dyldwatch" and reg.info.min_sdk_version
    assert set(reg.registry["table"]) == set(TABLES)
    for name, routes in reg.registry["table"].items():
        table = load_table(name)
        assert routes == [
            {"id": "column", "name": c.name, "type": str(c.type), "op": str(int(c.options))} for c in table.columns
        ]
    ops = {r["name"]: r["op"] for r in reg.registry["table"]["macho_info"]}
    assert ops["path"] == "11" and ops["directory"] == "10" and ops["arch"] == "8"  # REQUIRED|INDEX|OPTIMIZED …


def test_ping_and_columns(ext) -> None:
    _, _, conn = ext
    assert conn.ping().code == 0
    resp = conn.columns("macho_load_commands")
    assert resp.status.code == 0
    assert [r["name"] for r in resp.response] == load_table("macho_load_commands").column_names()


def test_generate_single_path(ext, fixture_tree: Path) -> None:
    _, _, conn = ext
    app = str(fixture_tree / "app")
    resp = conn.generate("macho_load_commands", context(constraint("path", (EQ, app))))
    assert resp.status.code == 0
    rows = resp.response
    kinds = [r["cmd"] for r in rows]
    assert "LC_LOAD_DYLIB" in kinds and "LC_LOAD_WEAK_DYLIB" in kinds and "LC_RPATH" in kinds
    weak = next(r for r in rows if r["cmd"] == "LC_LOAD_WEAK_DYLIB")
    assert weak["name"] == "@rpath/libfoo.dylib" and weak["weak"] == "1"
    assert weak["resolved_path"] == os.path.normpath(str(fixture_tree / "../Frameworks/libfoo.dylib"))
    assert weak["resolved_exists"] == "0" and weak["current_version"] == "2.3.4"
    declared = set(load_table("macho_load_commands").column_names())
    assert all(set(r) <= declared for r in rows)
    assert all("error" not in r for r in rows)  # no error: the key is absent, so osquery reads NULL


def test_generate_in_list_and_error_rows(ext, fixture_tree: Path) -> None:
    _, _, conn = ext
    paths = [str(fixture_tree / "app"), str(fixture_tree / "lib" / "notes.txt"), str(fixture_tree / "missing")]
    resp = conn.generate("macho_info", context(constraint("path", *[(EQ, p) for p in paths])))
    assert resp.status.code == 0
    by_path = {r["path"]: r for r in resp.response}
    app = by_path[paths[0]]
    assert app["arch"] == "arm64" and "error" not in app and app["team_id"] == "TEAM123456"
    assert app["hardened_runtime"] == "1" and app["signature_type"] == "adhoc"
    assert "not a Mach-O" in by_path[paths[1]]["error"]
    assert by_path[paths[2]]["error"] == "no such file"


def test_like_one_level_and_recursive(ext, fixture_tree: Path) -> None:
    _, _, conn = ext
    one = conn.generate("macho_info", context(constraint("path", (LIKE, f"{fixture_tree}/lib/%"))))
    assert {r["path"] for r in one.response} == {f"{fixture_tree}/lib/libbar.dylib"}  # the .txt is skipped
    deep = conn.generate("macho_info", context(constraint("path", (LIKE, f"{fixture_tree}/lib/%%"))))
    rows = deep.response
    assert {r["path"] for r in rows} == {f"{fixture_tree}/lib/libbar.dylib", f"{fixture_tree}/lib/deep/universal"}
    assert sorted(r["arch"] for r in rows if r["path"].endswith("universal")) == ["arm64", "x86_64"]
    assert all(r["fat"] == "1" for r in rows if r["path"].endswith("universal"))


def test_directory_constraint(ext, fixture_tree: Path) -> None:
    _, _, conn = ext
    resp = conn.generate("macho_load_commands", context(constraint("directory", (EQ, str(fixture_tree / "lib")))))
    names = {r["name"] for r in resp.response if r["cmd"] == "LC_ID_DYLIB"}
    assert names == {"@rpath/libbar.dylib"}


def test_required_column_without_constraint_answers_empty_not_error(ext) -> None:
    _, proc, conn = ext
    resp = conn.generate("macho_info", context())
    assert resp.status.code == 0 and resp.response == []
    assert conn.ping().code == 0 and proc.poll() is None


def test_malformed_context_fails_the_query_not_the_extension(ext) -> None:
    _, proc, conn = ext
    assert conn.generate("macho_info", "[[[").status.code == 1
    assert conn.client.call("table", "macho_info", {"action": "nonsense"}).status.code == 1
    assert conn.ping().code == 0 and proc.poll() is None


def test_exits_on_its_own_when_osqueryd_dies(tmp_path: Path) -> None:
    with running_extension(tmp_path, interval=0.3) as (manager, proc, conn):
        conn.close()
        manager.stop()
        started = time.monotonic()
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
    assert not any(p.name.startswith("osquery.em.") for p in tmp_path.iterdir())  # socket cleaned up


def test_launcher_starts_the_extension_like_osqueryd_does(tmp_path: Path) -> None:
    env = dict(os.environ, DYLDWATCH_PYTHON=sys.executable)
    manager = FakeOsqueryd(tmp_path)
    proc = subprocess.Popen(extension_command(manager.path, launcher=True), env=env, stderr=subprocess.PIPE)
    try:
        reg = manager.wait_registered()
        assert reg.info.name == "dyldwatch"
    finally:
        manager.stop()
        assert proc.wait(timeout=15) == 0


def test_refused_registration_and_missing_socket_exit_non_zero(tmp_path: Path) -> None:
    manager = FakeOsqueryd(tmp_path)
    manager.handler.refuse = "extension dyldwatch is not allowed"
    try:
        out = subprocess.run(extension_command(manager.path, timeout=2), capture_output=True, timeout=30)
        assert out.returncode == 1 and b"not allowed" in out.stderr
    finally:
        manager.stop()
    out = subprocess.run(extension_command(str(tmp_path / "nope.em"), timeout=0.5), capture_output=True, timeout=30)
    assert out.returncode == 1 and b"cannot connect" in out.stderr


def test_launcher_is_executable_and_posix_sh() -> None:
    launcher = ROOT / "extension" / "dyldwatch.ext"
    assert os.access(launcher, os.X_OK)
    assert launcher.read_text().startswith("#!/bin/sh\n")


def test_extension_survives_a_directory_of_hostile_files(tmp_path: Path) -> None:
    """Mutated Mach-O files through the real process: every query answers, the process lives."""
    import random
    import sys as _sys

    _sys.path.insert(0, str(ROOT / "bench"))
    import fuzz_macho

    seeds = fuzz_macho.writer_seeds()
    marks = [fuzz_macho.landmarks(s) for s in seeds]
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    for i in range(300):
        rng = random.Random(i)
        k = rng.randrange(len(seeds))
        (hostile / f"f{i:03}").write_bytes(fuzz_macho.mutate(seeds[k], marks[k], rng))
    os.mkfifo(hostile / "fifo.dylib")
    with running_extension(tmp_path) as (_, proc, conn):
        for table in ("macho_load_commands", "macho_info"):
            resp = conn.generate(table, context(constraint("directory", (EQ, str(hostile)))))
            assert resp.status.code == 0, resp.status.message
            assert any(r["error"] for r in resp.response)
            assert any(r["path"].endswith("fifo.dylib") and "FIFO" in r["error"] for r in resp.response)
        assert conn.ping().code == 0 and proc.poll() is None


def test_process_and_provenance_tables_over_thrift(ext, tmp_path: Path) -> None:
    """The host tables answer through the same protocol, with pid pushed down as osqueryd sends it."""
    _, proc, conn = ext
    me, child = os.getpid(), proc.pid
    resp = conn.generate("process_images", context(constraint("pid", (EQ, str(me)), (EQ, str(child)),
                                                               affinity="INTEGER")))
    assert resp.status.code == 0
    pids = {r["pid"] for r in resp.response}
    assert pids == {str(me), str(child)}
    assert any(r["path"] == os.path.realpath(sys.executable) for r in resp.response if r["pid"] == str(me))
    resp = conn.generate("rwx_regions", context(constraint("pid", (EQ, str(me)), affinity="INTEGER")))
    assert resp.status.code == 0 and all(r["pid"] == str(me) for r in resp.response)
    lib = tmp_path / "libplanted.so"
    lib.write_bytes(b"\x7fELF")
    os.setxattr(lib, "user.xdg.origin.url", b"https://example.invalid/libplanted.so")
    resp = conn.generate("dylib_provenance", context(constraint("path", (EQ, str(lib)))))
    (row,) = resp.response
    assert row["origin_url"] == "https://example.invalid/libplanted.so" and row["exists"] == "1"
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "s.scpt"
    script.write_bytes(b"FasdUAS 1.101.10" + bytes.fromhex("0e000000020f ffff0001 01ffff0000 0900010001".replace(" ", "")))
    resp = conn.generate("applescript_info", context(constraint("directory", (EQ, str(tmp_path / "scripts")))))
    (row,) = resp.response
    assert row["format"] == "applescript" and row["run_only"] == "1"


def test_row_transport_sends_every_byte_in_order_through_partial_sends() -> None:
    """Answers go out with sendmsg straight from the row bytes; a small socket buffer forces partial
    sends that end inside a row, whose rest must follow exactly."""
    import socket
    import threading

    from thrift.transport import TSocket, TTransport

    from dyldwatch.extension.wire import RowTransport

    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    rows = [bytes([n % 251]) * (n % 997 + 1) for n in range(5000)]  # ~2.5 MB in 5,000 pieces
    expected = b"head" + b"".join(rows) + b"tail"
    got = bytearray()

    def drain() -> None:
        while len(got) < len(expected):
            chunk = b.recv(3000)
            if not chunk:
                break
            got.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    sock = TSocket.TSocket()
    sock.setHandle(a)
    out = RowTransport(TTransport.TBufferedTransport(sock), a)
    out.write(b"head")
    out.write_many(rows)
    out.write(b"tail")
    out.flush()
    reader.join(30)
    a.close()
    b.close()
    assert bytes(got) == expected

"""The real extension process against the fake osqueryd: socket privacy, lifecycle, hostile bytes, budget.

Each test starts `dyldwatch extension` the way osqueryd autoloads it and talks real Thrift to it.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dyldwatch.deploy.layout import flags, layout_for
from dyldwatch.formats.macho import writer as mw

from .harness import ROOT, FakeOsqueryd, constraint, context, extension_command, running_extension

EQ, LIKE = 2, 65
NOBODY = 65534


def connect_as(uid: int, path: str) -> int:
    """Exit code of a forked child that drops to `uid` and connects to `path`: 0 connected, 13 EACCES."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        code = 0
        try:
            os.setgid(uid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.close()
        except PermissionError:
            code = 13
        except BaseException:
            code = 99
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture()
def shared_dir() -> Iterator[Path]:
    """A world-writable sticky directory any uid can traverse, like /tmp (pytest's tmp is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="dw-sock-", dir="/tmp"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        for p in path.iterdir():
            p.unlink()
        path.rmdir()


def test_socket_is_owner_only_under_umask_000_and_refuses_other_users(shared_dir: Path) -> None:
    with running_extension(shared_dir, umask=0o000) as (manager, proc, conn):
        path = f"{manager.path}.{manager.handler.registrations[0].uuid}"
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and st.st_uid == os.geteuid()
        assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)  # was 0777 under umask 000
        assert not list(shared_dir.glob(".dw*")), "the private staging directory is removed"
        assert conn.ping().code == 0
        if os.geteuid() == 0:
            assert connect_as(NOBODY, path) == 13
            os.chmod(path, 0o777)  # control: the same connection succeeds once the mode allows it
            assert connect_as(NOBODY, path) == 0
            os.chmod(path, 0o600)
        assert proc.poll() is None
    err = proc.stderr.read().decode()
    assert "writable by everyone" in err and str(shared_dir) in err


def test_exits_when_osqueryd_no_longer_lists_it(tmp_path: Path) -> None:
    """Like the C++ SDK's watcher: dropped from extensions() -> exit, socket removed, osqueryd can restart it."""
    with running_extension(tmp_path, interval=0.3) as (manager, proc, conn):
        uuid = manager.handler.registrations[0].uuid
        path = Path(f"{manager.path}.{uuid}")
        assert path.exists()
        conn.close()
        started = time.monotonic()
        manager.handler.forget(uuid)
        assert proc.wait(timeout=10) == 1
        assert time.monotonic() - started < 5 * 0.3 + 1.0
        assert not path.exists()
        assert os.path.exists(manager.path), "osqueryd itself is still up"


def test_undecodable_file_names_and_constraints_never_fail_a_call(tmp_path: Path) -> None:
    raw_dir = os.fsencode(tmp_path / "x")
    os.mkdir(raw_dir)
    raw_file = raw_dir + b"/\xff.dylib"
    with open(raw_file, "wb") as f:
        f.write(mw.sample_executable().build())
    escaped = f"{tmp_path}/x/\\xff.dylib"
    with running_extension(tmp_path) as (_, proc, conn):
        # Found by a walk.
        resp = conn.generate("macho_info", context(constraint("directory", (EQ, f"{tmp_path}/x"))))
        assert resp.status.code == 0, resp.status.message
        (row,) = resp.response
        assert row["path"] == escaped and row["arch"] == "arm64"
        assert "not valid UTF-8 in path" in row["error"]
        # Named by a constraint whose bytes are not UTF-8 (osqueryd's strings are bytes).
        ctx = b'{"constraints":[{"name":"path","list":[{"op":2,"expr":"' + raw_file + b'"}],"affinity":"TEXT"}]}'
        resp = conn.generate("macho_load_commands", ctx)
        assert resp.status.code == 0, resp.status.message
        assert resp.response and all(r["path"] == escaped for r in resp.response)
        resp = conn.generate("process_images", b'{"constraints":[{"name":"pid","list":[{"op":2,"expr":"\xff"}]}]}')
        assert resp.status.code == 0 and resp.response == []
        resp = conn.client.call("table", b"macho_\xff", {"action": "columns"})
        assert resp.status.code == 1 and "no table" in resp.status.message
        assert conn.ping().code == 0 and proc.poll() is None


def test_generate_budget_cuts_a_big_walk_with_an_error_row(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for d in range(30):
        (tree / f"d{d:02}").mkdir(parents=True)
        for f in range(100):
            (tree / f"d{d:02}" / f"lib{f:03}.dylib").write_bytes(b"\x7fELF not a mach-o")
    pattern = f"{tree}/%%"
    with running_extension(tmp_path, env={"DYLDWATCH_GENERATE_BUDGET": "0.1"}) as (_, proc, conn):
        # The first query loads the parsers (lazily, after registration); warm them so the cut is the walk's.
        conn.generate("dylib_provenance", context(constraint("path", (LIKE, f"{tree}/d00/%"))))
        started = time.monotonic()
        resp = conn.generate("dylib_provenance", context(constraint("path", (LIKE, pattern))))
        took = time.monotonic() - started
        assert resp.status.code == 0, resp.status.message
        rows = resp.response
        assert 0 < len(rows) - 1 < 3000 and took < 3
        last = rows[-1]
        assert last["path"] == pattern  # a LIKE pattern matches itself, so osquery's re-check keeps the row
        assert "walk cut after" in last["error"] and "directory = " in last["error"]
        assert f"cut after {len(rows) - 1} rows" in last["error"]
        assert all("walk cut" not in r.get("error", "") for r in rows[:-1])
        assert conn.ping().code == 0 and proc.poll() is None


def test_registers_well_within_the_extensions_timeout_the_flags_set(tmp_path: Path) -> None:
    """osqueryd waits --extensions_timeout for a required extension; a first start without bytecode
    (a fresh install) must register in a fifth of it, the margin deploy_layout's figure promises."""
    timeout = float(dict(flags(layout_for("linux")))["extensions_timeout"])
    manager = FakeOsqueryd(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONPYCACHEPREFIX": str(tmp_path / "pyc")}
    started = time.monotonic()
    proc = subprocess.Popen(extension_command(manager.path), env=env, stderr=subprocess.DEVNULL)
    try:
        manager.wait_registered(timeout=timeout)
        took = time.monotonic() - started
    finally:
        manager.stop()
        proc.wait(timeout=15)
    assert took / timeout < 0.2, f"registration took {took:.2f}s of the {timeout:g}s osqueryd waits"


def test_the_autoloaded_path_imports_only_what_registration_needs(tmp_path: Path) -> None:
    """Everything the extension imports before registering (here: up to the failed connect)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "dyldwatch", "extension",
                          "--socket", str(tmp_path / "none.em"), "--timeout", "0"],
                         capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 1 and "cannot connect" in out.stderr
    loaded = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "dyldwatch.tables._macho" in loaded  # the table modules loaded (import_module'd ones are not listed)
    heavy = {"numpy", "click", "rich", "apsw", "yaml", "asn1crypto", "dyldwatch.formats.macho.analysis",
             "dyldwatch.formats.macho.loadcommands", "dyldwatch.formats.macho.codesign", "dyldwatch.cli"}  # resolve.py is pure and light
    assert not heavy & loaded, sorted(heavy & loaded)

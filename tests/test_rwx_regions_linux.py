"""rwx_regions against real processes on Linux: a child that maps suspicious memory, and ordinary ones."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dyldwatch.host.linux_proc import LinuxProcessReader, ProcFS
from dyldwatch.tables.base import Op, QueryContext
from dyldwatch.tables.rwx_regions import RwxRegionsTable

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

#: The child maps, then reports addresses: anonymous RWX, anonymous R-X, shared anonymous RWX
#: (/dev/zero (deleted)), an executable memfd, and an executable file that it then unlinks.
CHILD = r"""
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
R, W, X = 1, 2, 4
SHARED, PRIVATE, ANON = 0x01, 0x02, 0x20
PAGE = os.sysconf("SC_PAGE_SIZE")

def mm(size, prot, flags, fd=-1):
    addr = libc.mmap(None, size, prot, flags, fd, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        raise OSError(ctypes.get_errno(), "mmap")
    return addr

out = {}
out["rwx"] = mm(2 * PAGE, R | W | X, PRIVATE | ANON)
out["rx_anon"] = mm(PAGE, R | X, PRIVATE | ANON)
out["shared_rwx"] = mm(PAGE, R | W | X, SHARED | ANON)
mfd = os.memfd_create("dyldwatch test")
os.write(mfd, b"\xc3" * PAGE)
out["memfd"] = mm(PAGE, R | X, PRIVATE, mfd)
path = sys.argv[1]
with open(path, "wb") as f:
    f.write(b"\xc3" * PAGE)
fd = os.open(path, os.O_RDONLY)
out["deleted_inode"] = os.fstat(fd).st_ino
out["deleted"] = mm(PAGE, R | X, PRIVATE, fd)
os.unlink(path)
print(json.dumps(out), flush=True)
sys.stdin.read()
"""


@contextmanager
def suspicious_child(tmp_path: Path) -> Iterator[tuple[int, dict[str, Any], str]]:
    """A running child holding the suspicious mappings; yields (pid, addresses, deleted file path)."""
    target = str(tmp_path / "payload with space.bin")
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, target], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "child failed before mapping"
        yield proc.pid, json.loads(line), target
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def sleeper() -> Iterator[int]:
    """An ordinary process, once the dynamic loader has mapped its libraries."""
    proc = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(f"/proc/{proc.pid}/maps") as f:
                if "libc" in f.read():
                    break
            time.sleep(0.005)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def rows_for(*pids: int, table: RwxRegionsTable | None = None) -> list[dict[str, Any]]:
    ctx = QueryContext.build({"pid": [(Op.EQUALS, p) for p in pids]})
    return list((table or RwxRegionsTable()).generate(ctx))


def test_child_with_injected_memory_reports_exactly_those_regions(tmp_path: Path) -> None:
    with suspicious_child(tmp_path) as (pid, addr, target):
        rows = rows_for(pid)
    got = {int(r["start"], 16): r for r in rows}
    expected = {
        addr["rwx"]: ("anon", 1, "writable+executable", "rwxp"),
        addr["rx_anon"]: ("anon", 1, "executable anonymous memory", "r-xp"),
        addr["shared_rwx"]: ("shm", 1, "writable+executable", "rwxs"),
        addr["memfd"]: ("memfd", 0, "executable memfd", "r-xp"),
        addr["deleted"]: ("deleted", 0, "executable mapping of a deleted file", "r-xp"),
    }
    assert {s: (r["region_type"], r["anonymous"], r["reason"], r["permissions"]) for s, r in got.items()} == expected
    page = os.sysconf("SC_PAGE_SIZE")
    rwx = got[addr["rwx"]]
    assert rwx["size"] == 2 * page and int(rwx["end"], 16) - int(rwx["start"], 16) == 2 * page
    assert rwx["path"] == "" and rwx["inode"] == 0 and rwx["start"].startswith("0x")
    assert got[addr["shared_rwx"]]["label"] == "/dev/zero (deleted)"
    assert got[addr["memfd"]]["path"] == "/memfd:dyldwatch test"
    assert got[addr["memfd"]]["inode"] > 0
    deleted = got[addr["deleted"]]
    assert deleted["path"] == target and deleted["inode"] == addr["deleted_inode"]
    assert all(r["pid"] == pid and r["max_permissions"] == "" and r["user_tag"] is None for r in rows)


def test_ordinary_processes_have_no_findings() -> None:
    with sleeper() as pid:
        assert rows_for(pid) == []
    # The test's own interpreter has no JIT: nothing either.
    assert rows_for(os.getpid()) == []


def test_unconstrained_scan_includes_the_child_and_never_raises(tmp_path: Path) -> None:
    with suspicious_child(tmp_path) as (pid, addr, _):
        rows = list(RwxRegionsTable().generate(QueryContext.build()))
    mine = {int(r["start"], 16) for r in rows if r["pid"] == pid}
    assert {addr["rwx"], addr["memfd"], addr["deleted"]} <= mine
    assert all(r["reason"] for r in rows)


def test_pid_in_reads_only_those_processes(tmp_path: Path) -> None:
    opened: list[int] = []

    class CountingProcFS(ProcFS):
        def open_maps(self, pid: int) -> int:
            opened.append(pid)
            return super().open_maps(pid)

    table = RwxRegionsTable(LinuxProcessReader(CountingProcFS()))
    with suspicious_child(tmp_path) as (pid, _, _), sleeper() as quiet:
        ctx = QueryContext.from_json({"constraints": [{"name": "pid", "list": [{"op": 3, "expr": [pid, quiet]}]}]})
        rows = list(table.generate(ctx))
    assert sorted(opened) == sorted([pid, quiet])
    assert {r["pid"] for r in rows} == {pid}


def test_missing_and_nonsense_pids_yield_nothing() -> None:
    with sleeper() as pid:
        pass  # reaped: the pid no longer exists
    assert rows_for(pid) == []
    assert rows_for(0) == [] and rows_for(-5) == [] and rows_for(2**40) == []
    ctx = QueryContext.build({"pid": [(Op.EQUALS, "not-a-pid")]})
    assert list(RwxRegionsTable().generate(ctx)) == []


class FlakyProcFS(ProcFS):
    """Each listed pid fails in its own way; one healthy pid still yields its rows."""

    def __init__(self, healthy: int) -> None:
        super().__init__()
        self.healthy = healthy

    def pids(self) -> list[int]:
        return [101, 102, 103, 104, self.healthy]

    def open_maps(self, pid: int) -> int:
        if pid == 101:
            raise PermissionError(errno.EACCES, "Permission denied")
        if pid == 102:
            raise ProcessLookupError(errno.ESRCH, "No such process")
        if pid == 103:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory")
        if pid == 104:  # opens, then the read fails (EISDIR standing in for an exiting process)
            return os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)  # read() -> EISDIR
        return super().open_maps(pid)


def test_unreadable_and_vanishing_processes_are_skipped(tmp_path: Path) -> None:
    with suspicious_child(tmp_path) as (pid, addr, _):
        rows = list(RwxRegionsTable(LinuxProcessReader(FlakyProcFS(pid))).generate(QueryContext.build()))
    assert {r["pid"] for r in rows} == {pid}
    assert addr["rwx"] in {int(r["start"], 16) for r in rows}


def test_real_proc_dir_with_vanished_pid(tmp_path: Path) -> None:
    """A fake /proc where pids are listed but their maps are gone or unreadable."""
    (tmp_path / "200").mkdir()  # no maps file: ENOENT
    (tmp_path / "201").mkdir()
    (tmp_path / "201" / "maps").write_text("7f0000000000-7f0000001000 rwxp 00000000 00:00 0 \nnot a line\n")
    (tmp_path / "self").mkdir()
    table = RwxRegionsTable(LinuxProcessReader(ProcFS(str(tmp_path))))
    rows = list(table.generate(QueryContext.build()))
    assert [(r["pid"], r["start"], r["reason"]) for r in rows] == [(201, "0x7f0000000000", "writable+executable")]
    assert LinuxProcessReader(ProcFS(str(tmp_path / "nope"))).pids() == []

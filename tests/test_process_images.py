"""process_images against real processes on Linux."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from dyldwatch.host.linux_proc import LinuxProcessReader, ProcFS
from dyldwatch.tables.base import Op, QueryContext
from dyldwatch.tables.process_images import ProcessImagesTable
from test_rwx_regions_linux import sleeper, suspicious_child

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def images(*pids: int, table: ProcessImagesTable | None = None) -> list[dict[str, Any]]:
    ctx = QueryContext.build({"pid": [(Op.EQUALS, p) for p in pids]})
    return list((table or ProcessImagesTable()).generate(ctx))


def test_own_process_lists_interpreter_and_libc() -> None:
    rows = images(os.getpid())
    by_inode = {(r["device"], r["inode"]): r for r in rows}
    exe = os.stat(os.path.realpath(sys.executable))
    assert (exe.st_dev, exe.st_ino) in by_inode, "the interpreter binary is an image"
    assert by_inode[(exe.st_dev, exe.st_ino)]["deleted"] == 0
    libc = [r for r in rows if os.path.basename(r["path"]).startswith("libc.so") or r["path"].endswith("/libc.so.6")]
    assert len(libc) == 1
    st = os.stat(libc[0]["path"])
    assert (libc[0]["device"], libc[0]["inode"]) == (st.st_dev, st.st_ino)
    # One row per file; every path is a real file; bases are page aligned hex.
    assert len(rows) == len({(r["device"], r["inode"], r["path"]) for r in rows})
    assert all(r["pid"] == os.getpid() and int(r["base_address"], 16) % 4096 == 0 for r in rows)
    assert not any(r["path"].startswith("[") for r in rows)


def test_base_address_is_the_elf_header_mapping() -> None:
    """The base points at the ELF magic: read it through our own memory."""
    for r in images(os.getpid()):
        if r["path"].endswith(".so.6") or "libc.so" in r["path"]:
            magic = ctypes.string_at(int(r["base_address"], 16), 4)
            assert magic == b"\x7fELF"
            return
    pytest.fail("libc not found")


def test_deleted_and_memfd_images_are_flagged(tmp_path: Path) -> None:
    with suspicious_child(tmp_path) as (pid, addr, target):
        rows = {r["path"]: r for r in images(pid)}
    assert rows[target]["deleted"] == 1
    assert rows[target]["inode"] == addr["deleted_inode"]
    assert rows[target]["base_address"] == hex(addr["deleted"])
    assert rows["/memfd:dyldwatch test"]["deleted"] == 1
    assert rows[os.path.realpath(sys.executable)]["deleted"] == 0


def test_pid_in_reads_exactly_those_processes() -> None:
    opened: list[int] = []

    class CountingProcFS(ProcFS):
        def open_maps(self, pid: int) -> int:
            opened.append(pid)
            return super().open_maps(pid)

    table = ProcessImagesTable(LinuxProcessReader(CountingProcFS()))
    with sleeper() as a, sleeper() as b:
        ctx = QueryContext.from_json({"constraints": [{"name": "pid", "list": [{"op": 3, "expr": [a, b]}]}]})
        rows = list(table.generate(ctx))
    assert sorted(opened) == sorted([a, b])
    assert {r["pid"] for r in rows} == {a, b}
    for pid in (a, b):
        paths = {os.path.basename(r["path"]) for r in rows if r["pid"] == pid}
        assert "sleep" in paths or any(p.startswith("coreutils") for p in paths)
        assert any(p.startswith("libc.so") for p in paths)


def test_unconstrained_lists_many_processes_and_missing_pid_yields_nothing() -> None:
    rows = list(ProcessImagesTable().generate(QueryContext.build()))
    assert os.getpid() in {r["pid"] for r in rows}
    with sleeper() as gone:
        pass
    assert images(gone) == []

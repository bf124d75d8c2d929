"""libproc answers the kernel gives around pagers and unavailable vnodes, replayed through the fake.

Region records use the shape of tests/recordings/darwin_regions.json. `gone` marks a vnode region
whose vnode cannot be taken: flavor 22 answers EINVAL for it, flavor 8 returns it without a path
(xnu bsd/kern/proc_info.c proc_pidregionpathinfo2 / proc_pidregionpathinfo).
"""

from __future__ import annotations

import ctypes
import errno
from pathlib import Path
from typing import Any

import pytest

from dyldwatch.host.darwin_proc import (
    PROC_PIDREGIONPATHINFO,
    PROC_PIDREGIONPATHINFO2,
    DarwinProcessReader,
    PidListError,
    encrypted_ranges,
    list_pids,
    walk_regions,
)
from dyldwatch.tables.base import Op, QueryContext
from dyldwatch.tables.process_images import ProcessImagesTable
from dyldwatch.tables.rwx_regions import RwxRegionsTable

from .test_darwin_proc import FakeLibProc

APP = "/Applications/Game.app/Contents/MacOS/Game"
LIB = "/Applications/Game.app/Contents/Frameworks/libengine.dylib"


def _vnode(addr: int, size: int, prot: str, path: str, offset: int, ino: int) -> dict[str, Any]:
    return {"address": hex(addr), "size": hex(size), "prot": prot, "max_prot": "r-x", "share": "SM_COW",
            "offset": hex(offset), "path": path, "dev": 16777233, "ino": ino, "nlink": 1}


def _anon(addr: int, size: int, prot: str, tag: int = 0) -> dict[str, Any]:
    return {"address": hex(addr), "size": hex(size), "prot": prot, "max_prot": "rwx", "share": "SM_PRIVATE",
            "tag": tag}


class GoneVnodeLibProc(FakeLibProc):
    """The fake, plus `gone` vnode regions (EINVAL from flavor 22, pathless from flavor 8)."""

    def _answer(self, pid: int, flavor: int, cursor: int) -> dict[str, Any] | None | int:
        proc = self.processes.get(str(pid))
        if proc is None:
            return errno.ESRCH
        for rec in proc["regions"]:
            start, size = int(rec["address"], 16), int(rec["size"], 16)
            if not (start <= cursor < start + size or start >= cursor):
                continue
            if flavor == PROC_PIDREGIONPATHINFO2:
                if rec.get("gone"):
                    return errno.EINVAL
                if "path" not in rec:
                    continue
            return rec
        return None


PROCESS = {
    "700": {"regions": [
        _vnode(0x100000000, 0x4000, "r-x", APP, 0, 11),                 # header page
        _anon(0x100004000, 0xC000, "r-x"),                              # encrypted text: apple_protect pager
        _vnode(0x100010000, 0x4000, "r--", APP, 0x10000, 11),            # __DATA_CONST
        _anon(0x100014000, 0x4000, "rw-"),                              # dyld-pager __DATA
        _vnode(0x100018000, 0x4000, "r--", APP, 0x18000, 11),            # __LINKEDIT
        _anon(0x10001C000, 0x4000, "r-x"),                              # right after the image: injected
        {**_anon(0x101000000, 0x4000, "r--"), "gone": True},            # a vnode that cannot be taken
        _vnode(0x102000000, 0x8000, "r-x", LIB, 0, 22),
        _anon(0x7FF000000000, 0x100000, "rw-", tag=30),                 # stack
    ]},
}


def _reader(lib: FakeLibProc, ranges: dict[str, list[tuple[int, int]]]) -> DarwinProcessReader:
    return DarwinProcessReader(lib, encrypted=lambda path: ranges.get(path, []))


def test_flavor22_einval_mid_map_is_not_the_end() -> None:
    lib = GoneVnodeLibProc(PROCESS)
    skipped: list = []
    paths = [r.path for r in walk_regions(lib, 700, PROC_PIDREGIONPATHINFO2, skipped)]
    assert paths == [APP, APP, APP, LIB]  # libengine, after the unavailable vnode, is still seen
    assert [hex(r.address) for r in skipped] == ["0x101000000"]
    assert PROC_PIDREGIONPATHINFO in {c[1] for c in lib.calls}


def test_process_images_keeps_images_after_an_unavailable_vnode() -> None:
    ctx = QueryContext.build({"pid": [(Op.EQUALS, 700)]})
    rows = list(ProcessImagesTable(_reader(GoneVnodeLibProc(PROCESS), {})).generate(ctx))
    assert [r["path"] for r in rows] == [APP, LIB]


def test_encrypted_text_is_the_image_not_injected_code() -> None:
    ranges = {APP: [(0x4000, 0x4000 + 0xB000)]}  # cryptoff 0x4000, cryptsize 0xb000 (page-rounded: 0xc000)
    ctx = QueryContext.build({"pid": [(Op.EQUALS, 700)]})
    rows = list(RwxRegionsTable(_reader(GoneVnodeLibProc(PROCESS), ranges)).generate(ctx))
    assert [(r["start"], r["region_type"], r["reason"]) for r in rows] == [
        ("0x10001c000", "anon", "executable anonymous memory")]
    regions = {hex(r.start): r for r in _reader(GoneVnodeLibProc(PROCESS), ranges).regions(700)}
    assert (regions["0x100004000"].region_type, regions["0x100004000"].path) == ("protected", APP)
    assert (regions["0x100014000"].region_type, regions["0x100014000"].path) == ("pager", APP)


def test_pathless_text_without_encryption_info_stays_a_finding() -> None:
    ctx = QueryContext.build({"pid": [(Op.EQUALS, 700)]})
    rows = list(RwxRegionsTable(_reader(GoneVnodeLibProc(PROCESS), {})).generate(ctx))
    assert {r["start"] for r in rows} == {"0x100004000", "0x10001c000"}


def test_encrypted_ranges_reads_lc_encryption_info(tmp_path: Path) -> None:
    from dyldwatch.formats.macho.writer import sample_executable

    w = sample_executable()
    w.add_encryption_info(cryptoff=0x4000, cryptsize=0x1000, cryptid=1)
    path = tmp_path / "enc"
    path.write_bytes(w.build())
    assert encrypted_ranges(str(path)) == [(0x4000, 0x5000)]
    assert encrypted_ranges(str(tmp_path / "missing")) == []


class FailingPids(FakeLibProc):
    def proc_listallpids(self, buffer: int | None, buffersize: int) -> int:
        self._errno = errno.EPERM
        return -1


def test_proc_listallpids_failure_is_not_an_empty_list() -> None:
    with pytest.raises(PidListError) as err:
        list_pids(FailingPids({}))
    assert err.value.errno == errno.EPERM
    assert ctypes.sizeof(ctypes.c_int) == 4

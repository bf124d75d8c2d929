"""The macOS libproc reader, exercised on any platform through a fake libproc replaying recordings.

The fake packs each recorded region into a real 1272-byte proc_regionwithpathinfo and copies it to
the caller's buffer address, so the ctypes layout and decoding run exactly as against the kernel.
"""

from __future__ import annotations

import ctypes
import errno
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dyldwatch.host import darwin_proc as dp
from dyldwatch.host.darwin_proc import (
    PROC_PIDREGIONPATHINFO,
    PROC_PIDREGIONPATHINFO2,
    DarwinProcessReader,
    ProcRegionInfo,
    ProcRegionWithPathInfo,
    RegionWalkError,
    VinfoStat,
    VnodeInfo,
    VnodeInfoPath,
    list_pids,
    to_region,
    user_tag_name,
    walk_regions,
)
from dyldwatch.host.regions import finding_reason
from dyldwatch.tables.base import Op, QueryContext
from dyldwatch.tables.process_images import ProcessImagesTable
from dyldwatch.tables.rwx_regions import RwxRegionsTable

RECORDINGS = json.loads((Path(__file__).parent / "recordings" / "darwin_regions.json").read_text())["processes"]
SHARE = {name: value for value, name in dp.SHARE_MODES.items()}
ERRNO = {"EPERM": errno.EPERM, "ESRCH": errno.ESRCH, "EINVAL": errno.EINVAL}


def prot(text: str) -> int:
    return (1 if "r" in text else 0) | (2 if "w" in text else 0) | (4 if "x" in text else 0)


def pack(rec: dict[str, Any]) -> ProcRegionWithPathInfo:
    """A recorded region as the kernel would fill the struct."""
    info = ProcRegionWithPathInfo()
    pri = info.prp_prinfo
    pri.pri_address = int(rec["address"], 16)
    pri.pri_size = int(rec["size"], 16)
    pri.pri_protection = prot(rec["prot"])
    pri.pri_max_protection = prot(rec["max_prot"])
    pri.pri_flags = (1 if "submap" in rec.get("flags", []) else 0) | (2 if "shared" in rec.get("flags", []) else 0)
    pri.pri_offset = int(rec.get("offset", "0x0"), 16)
    pri.pri_user_tag = rec.get("tag", 0)
    pri.pri_share_mode = SHARE[rec["share"]]
    pri.pri_ref_count = 1
    if "path" in rec:
        vst = info.prp_vip.vip_vi.vi_stat
        vst.vst_dev, vst.vst_ino, vst.vst_nlink = rec["dev"], rec["ino"], rec["nlink"]
        vst.vst_mode = 0o100755
        info.prp_vip.vip_vi.vi_type = 1  # VREG
        info.prp_vip.vip_path = rec["path"].encode()
    return info


def is_vnode(rec: dict[str, Any]) -> bool:
    return "path" in rec and "submap" not in rec.get("flags", [])


@dataclass
class FakeLibProc:
    """Replays recordings with the kernel's lookup semantics; records every call."""

    processes: dict[str, Any]
    pids_listed: list[int] = field(default_factory=list)
    calls: list[tuple[int, int, int]] = field(default_factory=list)
    _errno: int = 0
    _script_pos: dict[int, int] = field(default_factory=dict)
    grow_pids_after_count: int = 0

    def errno(self) -> int:
        return self._errno

    def _fail(self, err: int) -> int:
        self._errno = err
        return 0

    def _answer(self, pid: int, flavor: int, cursor: int) -> dict[str, Any] | None | int:
        proc = self.processes.get(str(pid))
        if proc is None:
            return errno.ESRCH
        calls_for_pid = sum(1 for c in self.calls if c[0] == pid)
        if "error" in proc and calls_for_pid > proc.get("error_after", 0):
            return -1 if proc["error"] == "SHORT" else ERRNO[proc["error"]]
        if "script" in proc:
            pos = self._script_pos.get(pid, 0)
            self._script_pos[pid] = pos + 1
            return proc["script"][pos] if pos < len(proc["script"]) else None
        for rec in proc["regions"]:
            if flavor == PROC_PIDREGIONPATHINFO2 and not is_vnode(rec):
                continue
            start, size = int(rec["address"], 16), int(rec["size"], 16)
            if start <= cursor < start + size or start >= cursor:
                return rec
        return None

    def proc_pidinfo(self, pid: int, flavor: int, arg: int, buffer: int, buffersize: int) -> int:
        self.calls.append((pid, flavor, arg))
        self._errno = 0
        assert flavor in (PROC_PIDREGIONPATHINFO, PROC_PIDREGIONPATHINFO2)
        assert buffersize == 1272
        answer = self._answer(pid, flavor, arg)
        if answer is None:
            return self._fail(errno.EINVAL)  # past the last region
        if answer == -1:
            ctypes.memmove(buffer, ctypes.addressof(pack(RECORDINGS["501"]["regions"][1])), 96)
            return 96  # a short answer
        if isinstance(answer, int):
            return self._fail(answer)
        info = pack(answer)
        ctypes.memmove(buffer, ctypes.addressof(info), ctypes.sizeof(info))
        return ctypes.sizeof(info)

    def proc_listallpids(self, buffer: int | None, buffersize: int) -> int:
        pids = self.pids_listed or [int(p) for p in self.processes]
        if buffer is None:
            return self.grow_pids_after_count or len(pids)
        capacity = buffersize // ctypes.sizeof(ctypes.c_int)
        n = min(capacity, len(pids))
        arr = (ctypes.c_int * n)(*pids[:n])
        ctypes.memmove(buffer, ctypes.addressof(arr), ctypes.sizeof(arr))
        return n


def fake() -> FakeLibProc:
    return FakeLibProc(RECORDINGS)


def expected_findings(pid: str) -> set[tuple[str, str, str]]:
    recs = RECORDINGS[pid].get("regions") or RECORDINGS[pid].get("script") or []
    return {(r["address"], r["expect"]["region_type"], r["expect"]["reason"]) for r in recs if "expect" in r}


# --- layout -------------------------------------------------------------------------------------


def test_struct_sizes_match_proc_info_h() -> None:
    assert ctypes.sizeof(ProcRegionInfo) == 96
    assert ctypes.sizeof(VinfoStat) == 136
    assert ctypes.sizeof(VnodeInfo) == 152
    assert ctypes.sizeof(VnodeInfoPath) == 1176
    assert ctypes.sizeof(ProcRegionWithPathInfo) == 1272 == dp.REGION_INFO_SIZE


def test_field_offsets_match_proc_info_h() -> None:
    assert ProcRegionInfo.pri_offset.offset == 16
    assert ProcRegionInfo.pri_user_tag.offset == 32
    assert ProcRegionInfo.pri_share_mode.offset == 60
    assert ProcRegionInfo.pri_address.offset == 80
    assert ProcRegionInfo.pri_size.offset == 88
    assert VinfoStat.vst_ino.offset == 8 and VinfoStat.vst_size.offset == 88 and VinfoStat.vst_qspare.offset == 120
    assert VnodeInfo.vi_fsid.offset == 144
    assert VnodeInfoPath.vip_path.offset == 152
    assert ProcRegionWithPathInfo.prp_vip.offset == 96


def test_decode_reads_raw_bytes_at_the_documented_offsets() -> None:
    raw = bytearray(1272)
    raw[0:4] = (5).to_bytes(4, "little")  # r-x
    raw[4:8] = (7).to_bytes(4, "little")  # rwx
    raw[32:36] = (64).to_bytes(4, "little")  # user tag
    raw[60:64] = (2).to_bytes(4, "little")  # SM_PRIVATE
    raw[80:88] = (0x280000000).to_bytes(8, "little")
    raw[88:96] = (0x4000).to_bytes(8, "little")
    raw[96:100] = (0x1000013).to_bytes(4, "little")  # vst_dev
    raw[102:104] = (1).to_bytes(2, "little")  # vst_nlink
    raw[104:112] = (77).to_bytes(8, "little")  # vst_ino
    raw[96 + 152 : 96 + 152 + 6] = b"/x/lib"
    info = ProcRegionWithPathInfo.from_buffer_copy(bytes(raw))
    r = dp.DarwinRegion.decode(info)
    assert (r.protection, r.max_protection, r.user_tag, r.share_mode) == (5, 7, 64, 2)
    assert (r.address, r.size, r.device, r.inode, r.nlink, r.path) == (0x280000000, 0x4000, 0x1000013, 77, 1, "/x/lib")


# --- walking ------------------------------------------------------------------------------------


def test_walk_follows_address_plus_size_to_end_of_map() -> None:
    lib = fake()
    regions = list(walk_regions(lib, 501))
    assert [r.address for r in regions] == [int(r["address"], 16) for r in RECORDINGS["501"]["regions"]]
    cursors = [c[2] for c in lib.calls]
    assert cursors[0] == 0
    assert cursors[1:] == [r.address + r.size for r in regions]  # the last call got EINVAL: end of map
    assert regions[1].path == "/Applications/Browser.app/Contents/MacOS/Browser"


def test_eperm_and_esrch_raise_walk_errors_after_one_call() -> None:
    for pid, err in (("600", errno.EPERM), ("601", errno.ESRCH), ("999", errno.ESRCH)):
        lib = fake()
        with pytest.raises(RegionWalkError) as info:
            list(walk_regions(lib, int(pid)))
        assert info.value.errno == err and len(lib.calls) == 1


def test_short_answer_is_an_error_not_garbage() -> None:
    with pytest.raises(RegionWalkError) as info:
        list(walk_regions(fake(), 605))
    assert info.value.errno == errno.EIO


def test_zero_size_region_is_skipped_and_walk_continues() -> None:
    lib = fake()
    regions = list(walk_regions(lib, 603))
    assert [hex(r.address) for r in regions] == ["0x100000000", "0x100020000"]
    assert len(lib.calls) == 4  # two regions, the zero-size one, then end of map


def test_answer_that_does_not_advance_stops_the_walk() -> None:
    lib = fake()
    regions = list(walk_regions(lib, 604))
    assert [hex(r.address) for r in regions] == ["0x100000000"]
    assert len(lib.calls) == 2


def test_walk_is_bounded_even_if_the_kernel_never_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dp, "MAX_REGIONS", 5)
    endless = {"700": {"regions": [{"address": hex(0x1000 * i), "size": "0x1000", "prot": "r--", "max_prot": "r--",
                                    "share": "SM_PRIVATE"} for i in range(50)]}}  # fmt: skip
    lib = FakeLibProc(endless)
    assert len(list(walk_regions(lib, 700))) == 5 and len(lib.calls) == 5


def test_pathinfo2_walk_sees_only_vnode_regions() -> None:
    regions = list(walk_regions(fake(), 501, PROC_PIDREGIONPATHINFO2))
    assert regions and all(r.path for r in regions)
    assert not any(r.flags & 1 for r in regions)


def test_list_pids_grows_its_buffer_when_the_count_was_stale() -> None:
    lib = FakeLibProc(RECORDINGS, pids_listed=list(range(1, 301)), grow_pids_after_count=10)
    assert list_pids(lib) == list(range(1, 301))


# --- classification -----------------------------------------------------------------------------


def test_user_tag_names() -> None:
    assert user_tag_name(64) == "VM_MEMORY_JAVASCRIPT_JIT_EXECUTABLE_ALLOCATOR"
    assert user_tag_name(1) == "VM_MEMORY_MALLOC"
    assert user_tag_name(30) == "VM_MEMORY_STACK"
    assert user_tag_name(234) == "VM_MEMORY_ROSETTA_EXECUTABLE_HEAP"
    assert user_tag_name(237) == user_tag_name(238) == ""  # vm_statistics.h defines no name for these
    assert user_tag_name(239) == "VM_MEMORY_ROSETTA_10"
    assert user_tag_name(241) == "VM_MEMORY_APPLICATION_SPECIFIC_2"
    assert user_tag_name(0) == "" and user_tag_name(200) == ""


def test_submap_is_never_anonymous_executable_memory() -> None:
    submap = next(r for r in walk_regions(fake(), 501) if r.flags & 1)
    region = to_region(submap)
    assert region.region_type == "submap" and not region.anonymous
    assert region.executable and finding_reason(region) is None


# --- tables over the fake -----------------------------------------------------------------------


def rwx_rows(lib: FakeLibProc, *pids: int) -> list[dict[str, Any]]:
    ctx = QueryContext.build({"pid": [(Op.EQUALS, p) for p in pids]} if pids else None)
    return list(RwxRegionsTable(DarwinProcessReader(lib)).generate(ctx))


@pytest.mark.parametrize("pid", ["501", "502", "602", "603", "604"])
def test_rwx_regions_reports_exactly_the_expected_regions(pid: str) -> None:
    rows = rwx_rows(fake(), int(pid))
    assert {(r["start"], r["region_type"], r["reason"]) for r in rows} == expected_findings(pid)
    assert len(rows) == len(expected_findings(pid))


def test_rwx_regions_darwin_columns() -> None:
    rows = {r["start"]: r for r in rwx_rows(fake(), 501, 502)}
    jit = rows["0x280000000"]
    assert jit["user_tag"] == 64 and jit["user_tag_name"] == "VM_MEMORY_JAVASCRIPT_JIT_EXECUTABLE_ALLOCATOR"
    assert (jit["permissions"], jit["max_permissions"], jit["share_mode"]) == ("rwxp", "rwx", "SM_PRIVATE")
    assert jit["anonymous"] == 1 and jit["path"] == "" and jit["size"] == 0x1000000 and jit["end"] == "0x281000000"
    deleted = rows["0x101000000"]
    assert deleted["path"] == "/private/tmp/payload.dylib" and deleted["inode"] == 3003 and deleted["anonymous"] == 0
    shm = rows["0x7ffc00000000"]
    assert shm["permissions"] == "rwxs" and shm["share_mode"] == "SM_TRUESHARED"
    rosetta = rows["0x7ffa00000000"]
    assert rosetta["user_tag_name"] == "VM_MEMORY_ROSETTA_EXECUTABLE_HEAP" and rosetta["max_permissions"] == "rwx"


def test_rwx_regions_all_processes_skips_denied_and_vanished() -> None:
    lib = fake()
    rows = rwx_rows(lib)
    expected = set().union(*({(int(p), *f) for f in expected_findings(p)} for p in RECORDINGS))
    assert {(r["pid"], r["start"], r["region_type"], r["reason"]) for r in rows} == expected
    assert {c[0] for c in lib.calls} == {int(p) for p in RECORDINGS}


def test_pid_constraint_reads_only_that_process() -> None:
    lib = fake()
    rwx_rows(lib, 502)
    assert {c[0] for c in lib.calls} == {502}


def test_out_of_range_pids_are_not_passed_to_libproc() -> None:
    lib = fake()
    assert rwx_rows(lib, 0, -1, 2**40) == []
    assert lib.calls == []


def test_process_images_from_pathinfo2() -> None:
    lib = fake()
    ctx = QueryContext.build({"pid": [(Op.EQUALS, 501)]})
    rows = list(ProcessImagesTable(DarwinProcessReader(lib)).generate(ctx))
    walk = [c for c in lib.calls if c[1] == PROC_PIDREGIONPATHINFO2]
    assert walk[0][2] == 0  # flavor 8 is asked only after flavor 22's EINVAL, to confirm the end of the map
    first_8 = next(i for i, c in enumerate(lib.calls) if c[1] == PROC_PIDREGIONPATHINFO)
    assert all(c[1] == PROC_PIDREGIONPATHINFO2 for c in lib.calls[:first_8])
    assert [(r["path"], r["base_address"], r["inode"], r["device"], r["deleted"]) for r in rows] == [
        ("/Applications/Browser.app/Contents/MacOS/Browser", "0x100000000", 1001, 16777233, 0),
        ("/usr/lib/dyld", "0x100010000", 2002, 16777232, 0),
        ("/private/tmp/payload.dylib", "0x101000000", 3003, 16777233, 1),
    ]  # the font is mapped but never executable; the shared-cache submap is not a vnode region


def test_process_images_denied_process_yields_nothing() -> None:
    ctx = QueryContext.build({"pid": [(Op.EQUALS, 600), (Op.EQUALS, 502)]})
    rows = list(ProcessImagesTable(DarwinProcessReader(fake())).generate(ctx))
    assert {r["pid"] for r in rows} == {502}
    assert {r["path"] for r in rows} == {"/usr/local/bin/legacy-tool", "/usr/libexec/rosetta/runtime"}

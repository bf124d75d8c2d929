"""macOS process regions through libproc's proc_pidinfo, behind an injectable libproc object.

PROC_PIDREGIONPATHINFO needs root (or the same uid) but no task port, so it also reads hardened
and SIP-protected processes that task_for_pid-based tools (osquery's process_memory_map) cannot.
Each call returns the region containing `addr` or the next one after it; the walk continues at
`pri_address + pri_size` until the kernel answers EINVAL (end of the map). PROC_PIDREGIONPATHINFO2
also answers EINVAL when the next vnode region's vnode cannot be taken (xnu bsd/kern/proc_info.c
proc_pidregionpathinfo2), so there an EINVAL is confirmed with PROC_PIDREGIONPATHINFO before the
walk ends.

Only regions whose bottom VM object is paged by the vnode pager carry a path (xnu
osfmk/vm/bsd_vm.c fill_vnodeinfoforaddr). Encrypted text (apple_protect pager) and dyld-pager
mappings come back pathless; `attribute_pager_regions` gives them back to their image instead of
calling them anonymous memory.

The ctypes layouts below follow the public xnu header bsd/sys/proc_info.h; natural alignment
gives the same sizes on x86_64 and arm64 (tests assert 96/136/152/1176/1272 bytes).
"""

from __future__ import annotations

import ctypes
import errno
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from .regions import MAX_PID, Region

log = logging.getLogger(__name__)

PROC_PIDREGIONPATHINFO = 8
#: Like PROC_PIDREGIONPATHINFO but only regions backed by a vnode (xnu's private proc_info header).
PROC_PIDREGIONPATHINFO2 = 22
PROC_REGION_SUBMAP = 1
PROC_REGION_SHARED = 2
MAXPATHLEN = 1024
VM_PROT_READ, VM_PROT_WRITE, VM_PROT_EXECUTE = 1, 2, 4
#: Bound on regions per process, a guard against a kernel answer that never ends.
MAX_REGIONS = 1 << 20

SHARE_MODES = {
    1: "SM_COW",
    2: "SM_PRIVATE",
    3: "SM_EMPTY",
    4: "SM_SHARED",
    5: "SM_TRUESHARED",
    6: "SM_PRIVATE_ALIASED",
    7: "SM_SHARED_ALIASED",
    8: "SM_LARGE_PAGE",
}
_SHARED_MODES = frozenset({4, 5, 7})

# VM_MEMORY_* user tags (mach/vm_statistics.h): what allocated an anonymous region.
VM_TAG_NAMES: dict[int, str] = {
    1: "MALLOC", 2: "MALLOC_SMALL", 3: "MALLOC_LARGE", 4: "MALLOC_HUGE", 5: "SBRK", 6: "REALLOC",
    7: "MALLOC_TINY", 8: "MALLOC_LARGE_REUSABLE", 9: "MALLOC_LARGE_REUSED", 10: "ANALYSIS_TOOL",
    11: "MALLOC_NANO", 12: "MALLOC_MEDIUM", 13: "MALLOC_PROB_GUARD", 20: "MACH_MSG", 21: "IOKIT",
    30: "STACK", 31: "GUARD", 32: "SHARED_PMAP", 33: "DYLIB", 34: "OBJC_DISPATCHERS", 35: "UNSHARED_PMAP",
    40: "APPKIT", 41: "FOUNDATION", 42: "COREGRAPHICS", 43: "CORESERVICES", 44: "JAVA", 45: "COREDATA",
    46: "COREDATA_OBJECTIDS", 50: "ATS", 51: "LAYERKIT", 52: "CGIMAGE", 53: "TCMALLOC",
    54: "COREGRAPHICS_DATA", 55: "COREGRAPHICS_SHARED", 56: "COREGRAPHICS_FRAMEBUFFERS",
    57: "COREGRAPHICS_BACKINGSTORES", 58: "COREGRAPHICS_XALLOC", 60: "DYLD", 61: "DYLD_MALLOC", 62: "SQLITE",
    63: "JAVASCRIPT_CORE", 64: "JAVASCRIPT_JIT_EXECUTABLE_ALLOCATOR", 65: "JAVASCRIPT_JIT_REGISTER_FILE",
    66: "GLSL", 67: "OPENCL", 68: "COREIMAGE", 69: "WEBCORE_PURGEABLE_BUFFERS", 70: "IMAGEIO",
    71: "COREPROFILE", 72: "ASSETSD", 73: "OS_ALLOC_ONCE", 74: "LIBDISPATCH", 75: "ACCELERATE", 76: "COREUI",
    77: "COREUIFILE", 78: "GENEALOGY", 79: "RAWCAMERA", 80: "CORPSEINFO", 81: "ASL", 82: "SWIFT_RUNTIME",
    83: "SWIFT_METADATA", 84: "DHMM", 86: "SCENEKIT", 87: "SKYWALK", 88: "IOSURFACE", 89: "LIBNETWORK",
    90: "AUDIO", 91: "VIDEOBITSTREAM", 92: "CM_XPC", 93: "CM_RPC", 94: "CM_MEMORYPOOL", 95: "CM_READCACHE",
    96: "CM_CRABS", 97: "QUICKLOOK_THUMBNAILS", 98: "ACCOUNTS", 99: "SANITIZER", 100: "IOACCELERATOR",
    101: "CM_REGWARP", 102: "EAR_DECODER", 103: "COREUI_CACHED_IMAGE_DATA", 104: "COLORSYNC", 105: "BTINFO",
    106: "CM_HLS", 230: "ROSETTA", 231: "ROSETTA_THREAD_CONTEXT", 232: "ROSETTA_INDIRECT_BRANCH_MAP",
    233: "ROSETTA_RETURN_STACK", 234: "ROSETTA_EXECUTABLE_HEAP", 235: "ROSETTA_USER_LDT", 236: "ROSETTA_ARENA",
    239: "ROSETTA_10",
}  # fmt: skip  -- exactly the VM_MEMORY_* values of xnu osfmk/mach/vm_statistics.h
VM_TAG_JIT = 64
VM_TAGS_ROSETTA = range(230, 240)
VM_TAGS_HEAP = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 61})
VM_TAG_STACK = 30


def user_tag_name(tag: int) -> str:
    """The VM_MEMORY_* name of a user tag ("" for 0 or an unassigned tag)."""
    if tag in VM_TAG_NAMES:
        return "VM_MEMORY_" + VM_TAG_NAMES[tag]
    if 240 <= tag <= 255:  # VM_MEMORY_APPLICATION_SPECIFIC_1 .. _16
        return f"VM_MEMORY_APPLICATION_SPECIFIC_{tag - 239}"
    return ""


class ProcRegionInfo(ctypes.Structure):
    """struct proc_regioninfo (96 bytes)."""

    _fields_ = [
        ("pri_protection", ctypes.c_uint32),
        ("pri_max_protection", ctypes.c_uint32),
        ("pri_inheritance", ctypes.c_uint32),
        ("pri_flags", ctypes.c_uint32),
        ("pri_offset", ctypes.c_uint64),
        ("pri_behavior", ctypes.c_uint32),
        ("pri_user_wired_count", ctypes.c_uint32),
        ("pri_user_tag", ctypes.c_uint32),
        ("pri_pages_resident", ctypes.c_uint32),
        ("pri_pages_shared_now_private", ctypes.c_uint32),
        ("pri_pages_swapped_out", ctypes.c_uint32),
        ("pri_pages_dirtied", ctypes.c_uint32),
        ("pri_ref_count", ctypes.c_uint32),
        ("pri_shadow_depth", ctypes.c_uint32),
        ("pri_share_mode", ctypes.c_uint32),
        ("pri_private_pages_resident", ctypes.c_uint32),
        ("pri_shared_pages_resident", ctypes.c_uint32),
        ("pri_obj_id", ctypes.c_uint32),
        ("pri_depth", ctypes.c_uint32),
        ("pri_address", ctypes.c_uint64),
        ("pri_size", ctypes.c_uint64),
    ]


class VinfoStat(ctypes.Structure):
    """struct vinfo_stat (136 bytes): stat64 with fixed-size fields."""

    _fields_ = [
        ("vst_dev", ctypes.c_uint32),
        ("vst_mode", ctypes.c_uint16),
        ("vst_nlink", ctypes.c_uint16),
        ("vst_ino", ctypes.c_uint64),
        ("vst_uid", ctypes.c_uint32),
        ("vst_gid", ctypes.c_uint32),
        ("vst_atime", ctypes.c_int64),
        ("vst_atimensec", ctypes.c_int64),
        ("vst_mtime", ctypes.c_int64),
        ("vst_mtimensec", ctypes.c_int64),
        ("vst_ctime", ctypes.c_int64),
        ("vst_ctimensec", ctypes.c_int64),
        ("vst_birthtime", ctypes.c_int64),
        ("vst_birthtimensec", ctypes.c_int64),
        ("vst_size", ctypes.c_int64),
        ("vst_blocks", ctypes.c_int64),
        ("vst_blksize", ctypes.c_int32),
        ("vst_flags", ctypes.c_uint32),
        ("vst_gen", ctypes.c_uint32),
        ("vst_rdev", ctypes.c_uint32),
        ("vst_qspare", ctypes.c_int64 * 2),
    ]


class VnodeInfo(ctypes.Structure):
    """struct vnode_info (152 bytes)."""

    _fields_ = [
        ("vi_stat", VinfoStat),
        ("vi_type", ctypes.c_int),
        ("vi_pad", ctypes.c_int),
        ("vi_fsid", ctypes.c_int32 * 2),
    ]


class VnodeInfoPath(ctypes.Structure):
    """struct vnode_info_path (1176 bytes)."""

    _fields_ = [("vip_vi", VnodeInfo), ("vip_path", ctypes.c_char * MAXPATHLEN)]


class ProcRegionWithPathInfo(ctypes.Structure):
    """struct proc_regionwithpathinfo (1272 bytes): what PROC_PIDREGIONPATHINFO[2] fills in."""

    _fields_ = [("prp_prinfo", ProcRegionInfo), ("prp_vip", VnodeInfoPath)]


REGION_INFO_SIZE = ctypes.sizeof(ProcRegionWithPathInfo)


@dataclass(frozen=True, slots=True)
class DarwinRegion:
    """The fields of one proc_regionwithpathinfo that the tables use, decoded.

    `offset` is pri_offset: the offset into the region's top VM object (xnu osfmk/vm/bsd_vm.c
    fill_procregioninfo, VME_OFFSET). It equals the file offset only while no copy-on-write
    shadow sits on top; after one it is the offset into the shadow, often 0.
    `pager` is set by attribute_pager_regions for a pathless mapping given back to its image.
    """

    address: int
    size: int
    protection: int
    max_protection: int
    flags: int
    offset: int
    user_tag: int
    share_mode: int
    path: str
    device: int
    inode: int
    nlink: int
    pager: str = ""

    @classmethod
    def decode(cls, info: ProcRegionWithPathInfo) -> DarwinRegion:
        pri, vst = info.prp_prinfo, info.prp_vip.vip_vi.vi_stat
        path = info.prp_vip.vip_path.decode("utf-8", "backslashreplace")
        return cls(
            pri.pri_address, pri.pri_size, pri.pri_protection, pri.pri_max_protection, pri.pri_flags,
            pri.pri_offset, pri.pri_user_tag, pri.pri_share_mode, path, vst.vst_dev, vst.vst_ino, vst.vst_nlink,
        )  # fmt: skip


def prot_string(prot: int) -> str:
    """VM_PROT_* bits as "rwx"."""
    return (
        ("r" if prot & VM_PROT_READ else "-")
        + ("w" if prot & VM_PROT_WRITE else "-")
        + ("x" if prot & VM_PROT_EXECUTE else "-")
    )


def to_region(r: DarwinRegion) -> Region:
    """Classify a darwin region into the common Region shape."""
    vnode = bool(r.path) or bool(r.inode)
    submap = bool(r.flags & PROC_REGION_SUBMAP)
    deleted = vnode and r.nlink == 0
    if r.pager:
        region_type = r.pager
    elif submap:
        region_type = "submap"
    elif vnode:
        region_type = "deleted" if deleted else "file"
    elif r.user_tag == VM_TAG_JIT:
        region_type = "jit"
    elif r.user_tag in VM_TAGS_ROSETTA:
        region_type = "rosetta"
    elif r.user_tag in VM_TAGS_HEAP:
        region_type = "heap"
    elif r.user_tag == VM_TAG_STACK:
        region_type = "stack"
    elif r.share_mode in _SHARED_MODES:
        region_type = "shm"
    else:
        region_type = "anon"
    shared = r.share_mode in _SHARED_MODES or bool(r.flags & PROC_REGION_SHARED)
    return Region(
        start=r.address,
        end=r.address + r.size,
        permissions=prot_string(r.protection) + ("s" if shared else "p"),
        path=r.path if vnode or r.pager else "",
        region_type=region_type,
        anonymous=not vnode and not submap and not r.pager,
        inode=r.inode if vnode else 0,
        device=r.device if vnode else 0,
        offset=r.offset,
        deleted=deleted,
        max_permissions=prot_string(r.max_protection),
        share_mode=SHARE_MODES.get(r.share_mode, str(r.share_mode) if r.share_mode else ""),
        user_tag=r.user_tag,
        user_tag_name=user_tag_name(r.user_tag),
    )


class LibProc(Protocol):
    """The slice of libproc used here, C-shaped so a fake can stand in for it in tests."""

    def proc_pidinfo(self, pid: int, flavor: int, arg: int, buffer: int, buffersize: int) -> int:
        """Fill `buffer` (an address); return bytes written, or 0 and set errno."""
        ...

    def proc_listallpids(self, buffer: int | None, buffersize: int) -> int:
        """Write pids into `buffer` (an address); return how many (or how many exist, for None)."""
        ...

    def errno(self) -> int:
        """errno left by the last call."""
        ...


class SystemLibProc:
    """The real libproc (in libSystem), loaded with ctypes on macOS."""

    __slots__ = ("_lib",)

    def __init__(self, path: str = "/usr/lib/libSystem.B.dylib") -> None:
        lib = ctypes.CDLL(path, use_errno=True)
        lib.proc_pidinfo.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_int]
        lib.proc_pidinfo.restype = ctypes.c_int
        lib.proc_listallpids.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.proc_listallpids.restype = ctypes.c_int
        self._lib = lib

    def proc_pidinfo(self, pid: int, flavor: int, arg: int, buffer: int, buffersize: int) -> int:
        ctypes.set_errno(0)
        return self._lib.proc_pidinfo(pid, flavor, arg, buffer, buffersize)

    def proc_listallpids(self, buffer: int | None, buffersize: int) -> int:
        ctypes.set_errno(0)
        return self._lib.proc_listallpids(buffer, buffersize)

    def errno(self) -> int:
        return ctypes.get_errno()


class RegionWalkError(OSError):
    """proc_pidinfo failed for a reason other than reaching the end of the map."""


class PidListError(OSError):
    """proc_listallpids failed: no answer is not the same as no processes."""


def _resume_after_einval(lib: LibProc, pid: int, cursor: int) -> tuple[int, DarwinRegion | None] | None:
    """Where a flavor-22 walk that got EINVAL at `cursor` can go on, or None at the true end of the map.

    Flavor 8 returns every region, with no path when the vnode cannot be taken (xnu
    bsd/kern/proc_info.c proc_pidregionpathinfo), so the regions after `cursor` are listed with
    it; after each pathless, untagged one (the kind an unavailable vnode looks like) flavor 22 is
    asked again. An answer there means the map goes on: the region just passed is returned as
    the one skipped.
    """
    info = ProcRegionWithPathInfo()
    probe = ProcRegionWithPathInfo()
    buffer, probe_buffer = ctypes.addressof(info), ctypes.addressof(probe)
    for _ in range(MAX_REGIONS):
        if lib.proc_pidinfo(pid, PROC_PIDREGIONPATHINFO, cursor, buffer, REGION_INFO_SIZE) < REGION_INFO_SIZE:
            return None
        region = DarwinRegion.decode(info)
        nxt = region.address + region.size if region.size else region.address + 1
        if nxt <= cursor:
            return None
        if region.path:  # the vnode is available again: resume right there
            return region.address, None
        if region.size and not region.user_tag and not region.flags & PROC_REGION_SUBMAP:
            got = lib.proc_pidinfo(pid, PROC_PIDREGIONPATHINFO2, nxt, probe_buffer, REGION_INFO_SIZE)
            if got >= REGION_INFO_SIZE:
                return nxt, region
        cursor = nxt
    return None


def walk_regions(lib: LibProc, pid: int, flavor: int = PROC_PIDREGIONPATHINFO,
                 skipped: list[DarwinRegion] | None = None) -> Iterator[DarwinRegion]:
    """Every region of `pid` in address order; raise RegionWalkError (ESRCH, EPERM, ...) on failure.

    The walk stops at EINVAL (end of map), at an answer that does not move the cursor forward (a
    kernel or fake bug must not loop forever), and after MAX_REGIONS. A zero-size region is
    skipped and the cursor moves one byte past it, which the kernel's lookup rounds to the next entry.
    For flavor 22 an EINVAL that is not the end of the map (a vnode that could not be taken) skips
    that region, logs it and appends it to `skipped`, and the walk goes on.
    """
    info = ProcRegionWithPathInfo()
    buffer = ctypes.addressof(info)
    cursor = 0
    for _ in range(MAX_REGIONS):
        got = lib.proc_pidinfo(pid, flavor, cursor, buffer, REGION_INFO_SIZE)
        if got <= 0:
            err = lib.errno()
            if err in (0, errno.EINVAL):
                if flavor != PROC_PIDREGIONPATHINFO2:
                    return
                resume = _resume_after_einval(lib, pid, cursor)
                if resume is None:
                    return
                if resume[0] <= cursor:  # flavor 8 sees a path where flavor 22 did not: do not spin
                    return
                cursor, gap = resume
                if gap is not None:
                    log.info("pid %d: vnode of the region at 0x%x could not be taken; skipped", pid, gap.address)
                    if skipped is not None:
                        skipped.append(gap)
                continue
            raise RegionWalkError(err, f"proc_pidinfo(pid {pid}, flavor {flavor}, 0x{cursor:x})")
        if got < REGION_INFO_SIZE:
            raise RegionWalkError(errno.EIO, f"proc_pidinfo(pid {pid}) returned {got} of {REGION_INFO_SIZE} bytes")
        region = DarwinRegion.decode(info)
        nxt = region.address + region.size if region.size else region.address + 1
        if nxt <= cursor:  # an answer behind the cursor is bogus: neither report it nor loop on it
            log.info("pid %d: region walk did not advance at 0x%x; stopping", pid, cursor)
            return
        if region.size:
            yield region
        cursor = nxt
    log.warning("pid %d: more than %d regions; stopping", pid, MAX_REGIONS)


def list_pids(lib: LibProc) -> list[int]:
    """Every pid now (proc_listallpids, retried with a larger buffer while it may be truncated).

    Raises PidListError when libproc fails, so a failure never reads as "no processes".
    """
    first = lib.proc_listallpids(None, 0)
    if first < 0:
        raise PidListError(lib.errno(), "proc_listallpids(NULL, 0)")
    count = first + 64
    for _ in range(8):
        arr = (ctypes.c_int * count)()
        n = lib.proc_listallpids(ctypes.addressof(arr), ctypes.sizeof(arr))
        if n < 0:
            raise PidListError(lib.errno(), "proc_listallpids")
        if n < count:
            return sorted({p for p in arr[:n] if p > 0})
        count *= 2
    return sorted({p for p in arr[:count] if p > 0})


#: (absolute file start, end) of every encrypted range of a Mach-O file (cryptid != 0), all slices.
EncryptedRanges = Callable[[str], Sequence[tuple[int, int]]]
_PAGE = 0x4000


def encrypted_ranges(path: str) -> list[tuple[int, int]]:
    """The LC_ENCRYPTION_INFO(_64) ranges with a non-zero cryptid in the file at `path` (file offsets)."""
    from ..formats.macho import MachOError, read_load_commands, read_slices
    from ..formats.macho import constants as C
    from .files import FileProblem, FileSource

    out: list[tuple[int, int]] = []
    try:
        with FileSource(path, max_size=2 << 30) as src:
            for ref in read_slices(src):
                for c in read_load_commands(src, ref).commands:
                    if c.cmd in (C.LC_ENCRYPTION_INFO, C.LC_ENCRYPTION_INFO_64) and c.data and c.data["cryptid"]:
                        start = ref.offset + c.data["cryptoff"]
                        out.append((start, start + c.data["cryptsize"]))
    except (FileProblem, MachOError, OSError, ValueError):
        return []
    return out


def attribute_pager_regions(regions: Sequence[DarwinRegion], encrypted: EncryptedRanges) -> list[DarwinRegion]:
    """Give pathless pager mappings back to their image (see the module docstring).

    An executable pathless region is encrypted text only when it lies inside the span of a
    vnode-backed image (after its first mapping, before the next other mapping) at the file
    offset of that image's LC_ENCRYPTION_INFO range: then it becomes region_type "protected"
    with the image's path. A non-executable pathless region between two mappings of one image is
    a dyld-pager mapping ("pager"). Anything else is left alone, so executable anonymous memory
    next to an image is still a finding.
    """
    out = list(regions)
    images: dict[str, tuple[int, int]] = {}  # path -> (address, offset) of its lowest mapping
    for r in out:
        if r.path and r.path not in images:
            images[r.path] = (r.address, r.offset)
    cache: dict[str, Sequence[tuple[int, int]]] = {}
    for i, r in enumerate(out):
        if r.path or r.inode or r.user_tag or r.flags & PROC_REGION_SUBMAP or i == 0:
            continue
        prev = out[i - 1]
        if not prev.path or prev.address + prev.size != r.address:
            continue
        base, base_off = images[prev.path]
        if r.protection & VM_PROT_EXECUTE:
            if prev.path not in cache:
                cache[prev.path] = encrypted(prev.path)
            file_off = base_off + (r.address - base)
            end = file_off + r.size
            if any(s - s % _PAGE <= file_off and end <= -(-e // _PAGE) * _PAGE for s, e in cache[prev.path]):
                out[i] = replace(r, path=prev.path, pager="protected")
        elif i + 1 < len(out) and out[i + 1].path == prev.path and out[i + 1].address == r.address + r.size:
            out[i] = replace(r, path=prev.path, pager="pager")
    return out


class DarwinProcessReader:
    """ProcessReader over libproc; a process that vanished or is not ours yields nothing."""

    __slots__ = ("lib", "encrypted")

    def __init__(self, lib: LibProc, encrypted: EncryptedRanges = encrypted_ranges) -> None:
        self.lib = lib
        self.encrypted = encrypted

    def pids(self) -> list[int]:
        return list_pids(self.lib)

    def _raw(self, pid: int, flavor: int) -> Iterator[DarwinRegion]:
        if not 0 < pid <= MAX_PID:  # pid 0 is the kernel task; larger values would overflow c_int
            return
        try:
            yield from walk_regions(self.lib, pid, flavor)
        except RegionWalkError as exc:
            quiet = exc.errno in (errno.ESRCH, errno.EPERM, errno.EACCES)
            log.log(logging.DEBUG if quiet else logging.INFO, "skipping pid %d: %s", pid, _describe(exc))

    def _walk(self, pid: int, flavor: int) -> Iterator[Region]:
        for r in self._raw(pid, flavor):
            yield to_region(r)

    def regions(self, pid: int, suspects_only: bool = False) -> Iterator[Region]:
        for d in attribute_pager_regions(list(self._raw(pid, PROC_PIDREGIONPATHINFO)), self.encrypted):
            r = to_region(d)
            if not suspects_only or r.executable:
                yield r

    def image_regions(self, pid: int) -> Iterator[Region]:
        return self._walk(pid, PROC_PIDREGIONPATHINFO2)


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return f"{exc.strerror}: {name}"


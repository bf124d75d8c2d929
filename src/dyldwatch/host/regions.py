"""Process memory regions, the same shape on every platform: Region, Image, and the finding rules.

The Linux reader (/proc/PID/maps) and the macOS reader (libproc) both normalise into `Region`,
so what counts as a finding and how images are grouped is decided once, here, not per platform.
The per-OS readers import this module; processes.py (the reader protocol and factory) imports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

#: Region types that are never findings: kernel-provided mappings (vdso, vsyscall, vvar, uprobes)
#: and darwin submaps (the dyld shared cache, which is Apple's signed code, not loaded code).
NEVER_FINDINGS = frozenset({"special", "submap"})
#: Largest pid any kernel hands out (pid_t is a signed 32-bit int); larger values match nothing.
MAX_PID = 0x7FFFFFFF
#: Region types that are not backed by a file on disk.
ANONYMOUS_TYPES = frozenset({"anon", "heap", "stack", "jit", "shm", "rosetta", "anon_inode"})

REASON_WX = "writable+executable"
REASON_ANON = "executable anonymous memory"
REASON_MEMFD = "executable memfd"
REASON_DELETED = "executable mapping of a deleted file"


@dataclass(frozen=True, slots=True)
class Region:
    """One mapped region of a process, normalised across platforms.

    `path` is empty for anonymous memory; `label` keeps the kernel's name for it instead
    (`[heap]`, `[anon:NAME]`, `/SYSV0000002a`), so nothing the OS said is lost.
    """

    start: int
    end: int
    permissions: str  # "rwxp" style: r/w/x then p (private) or s (shared)
    path: str
    region_type: str
    anonymous: bool
    inode: int = 0
    device: int = 0
    offset: int = 0
    deleted: bool = False
    label: str = ""
    max_permissions: str = ""  # darwin only
    share_mode: str = ""  # darwin only (SM_COW, SM_PRIVATE, ...)
    user_tag: int | None = None  # darwin only
    user_tag_name: str = ""  # darwin only

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def writable(self) -> bool:
        return self.permissions[1:2] == "w"

    @property
    def executable(self) -> bool:
        return self.permissions[2:3] == "x"

    @property
    def file_backed(self) -> bool:
        """Backed by a vnode/inode with a name (files, deleted files, memfds), not anonymous memory."""
        return not self.anonymous and self.region_type not in NEVER_FINDINGS and (bool(self.inode) or bool(self.path))


def finding_reason(region: Region) -> str | None:
    """Why a region is suspicious, or None: W+X at once, or executable without a file on disk."""
    if not region.executable or region.region_type in NEVER_FINDINGS:
        return None
    if region.writable:
        return REASON_WX
    if region.region_type == "memfd":
        return REASON_MEMFD
    if region.region_type == "deleted":
        return REASON_DELETED
    if region.anonymous or region.region_type in ANONYMOUS_TYPES:
        return REASON_ANON
    return None


@dataclass(frozen=True, slots=True)
class Image:
    """One executable image mapped by a process (grouped from its file-backed regions)."""

    path: str
    base_address: int
    inode: int
    device: int
    deleted: bool


@dataclass(slots=True)
class _ImageGroup:
    base0: int | None  # lowest start among regions at file offset 0
    lowest: int
    executable: bool
    deleted: bool


def group_images(regions: Iterable[Region]) -> Iterator[Image]:
    """Group file-backed regions by (device, inode, path); keep groups with any executable region.

    The base is the lowest region at file offset 0 (where the ELF/Mach-O header is mapped), or
    the lowest region of the file when offset 0 is not mapped. Order follows the first mapping.
    """
    groups: dict[tuple[int, int, str], _ImageGroup] = {}
    for r in regions:
        if not r.file_backed:
            continue
        key = (r.device, r.inode, r.path)
        g = groups.get(key)
        if g is None:
            groups[key] = _ImageGroup(r.start if r.offset == 0 else None, r.start, r.executable, r.deleted)
            continue
        if r.offset == 0 and (g.base0 is None or r.start < g.base0):
            g.base0 = r.start
        g.lowest = min(g.lowest, r.start)
        g.executable = g.executable or r.executable
        g.deleted = g.deleted or r.deleted
    for (device, inode, path), g in groups.items():
        if g.executable:
            yield Image(path, g.lowest if g.base0 is None else g.base0, inode, device, g.deleted)

"""rwx_regions: memory a process could run code from without a file on disk to show for it.

Writable+executable memory and executable anonymous memory, memfds and deleted files are how
injected and in-memory loaded code lives. Reading is bounded: one process's map at a time, rows
streamed, and a `pid` constraint reads only those processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from ..host.linux_proc import WRITE_SEALS
from ..host.processes import ProcessReader, process_reader
from ..host.regions import Region, finding_reason
from .base import BIGINT, INTEGER, PID_KEY, TEXT, Column, QueryContext, Row, Table


def region_row(pid: int, r: Region, reason: str) -> Row:
    return {
        "pid": pid,
        "start": f"0x{r.start:x}",
        "end": f"0x{r.end:x}",
        "size": r.size,
        "permissions": r.permissions,
        "max_permissions": r.max_permissions,
        "share_mode": r.share_mode,
        "path": r.path,
        "label": r.label,
        "anonymous": 1 if r.anonymous else 0,
        "region_type": r.region_type,
        "user_tag": r.user_tag,
        "user_tag_name": r.user_tag_name,
        "inode": r.inode,
        "device": r.device,
        "offset": r.offset,
        "reason": reason,
    }


class RwxRegionsTable(Table):
    name: ClassVar[str] = "rwx_regions"
    description: ClassVar[str] = (
        "Memory regions of running processes that are writable and executable at once, or executable "
        "without a file on disk behind them (anonymous memory, memfds, deleted files). Linux reads "
        "/proc/PID/maps; macOS reads libproc region info, which needs root or the same user but no task "
        "port, so hardened and SIP-protected processes are included. The dyld shared cache submap and "
        "kernel-provided mappings ([vdso], [vsyscall], [uprobes]) are never reported. Use pid = or "
        "pid IN (...) to read only those processes."
    )
    columns: ClassVar[tuple[Column, ...]] = (
        Column("pid", INTEGER, "Process id", PID_KEY),
        Column("start", TEXT, "Start address, hex (0x...), as in process_memory_map"),
        Column("end", TEXT, "End address (exclusive), hex"),
        Column("size", BIGINT, "Size in bytes"),
        Column("permissions", TEXT, "Current protection, rwxp style (p private, s shared)"),
        Column("max_permissions", TEXT, "macOS: maximum protection the region may be raised to (rwx); empty on Linux"),
        Column("share_mode", TEXT, "macOS: SM_COW, SM_PRIVATE, SM_SHARED, ...; empty on Linux"),
        Column("path", TEXT, "Backing file (without the ' (deleted)' marker); empty for anonymous memory"),
        Column("label", TEXT, "Linux: the kernel's name for an anonymous mapping ([heap], [anon:NAME], /SYSV<key>)"),
        Column("anonymous", INTEGER, "1 when no file backs the region"),
        Column("region_type", TEXT, "anon, heap, stack, jit, shm, anon_inode, rosetta, file, memfd, deleted; macOS "
               "also protected (encrypted text of an image, apple_protect pager) and pager (dyld-pager mapping)"),
        Column("user_tag", INTEGER, "macOS: VM user tag of the region (what allocated it); NULL on Linux"),
        Column("user_tag_name", TEXT, "macOS: VM_MEMORY_* name of the user tag"),
        Column("inode", BIGINT, "Inode of the backing file (0 when anonymous)"),
        Column("device", BIGINT, "Device number of the backing file, as stat's st_dev"),
        Column("offset", BIGINT, "Linux: offset of the mapping in the backing file. macOS: pri_offset, the offset "
               "into the region's top VM object; the file offset only until a copy-on-write shadow covers the "
               "region (then often 0)"),
        Column("sealed", INTEGER, "Linux memfd: 1 when sealed against writes (F_SEAL_WRITE/FUTURE_WRITE), "
                                  "as launchers that re-execute an immutable copy of themselves make it "
                                  "(runc, sandbox runtimes); 0 unsealed; NULL otherwise or unreadable"),
        Column(
            "reason",
            TEXT,
            "Why this is a finding: writable+executable, executable anonymous memory, executable memfd, "
            "executable mapping of a deleted file",
        ),
    )
    examples: ClassVar[tuple[str, ...]] = (
        "SELECT p.name, r.* FROM rwx_regions r JOIN processes p USING (pid)",
        "SELECT * FROM rwx_regions WHERE pid = 1234",
        "SELECT pid, count(*) FROM rwx_regions WHERE region_type = 'memfd' GROUP BY pid",
    )

    def __init__(self, reader: ProcessReader | None = None) -> None:
        self._reader = reader

    def generate(self, ctx: QueryContext) -> Iterator[Row]:
        reader = self._reader or process_reader()
        wanted = ctx.equals_int("pid")
        for pid in reader.pids() if wanted is None else wanted:
            for region in reader.regions(pid, suspects_only=True):
                reason = finding_reason(region)
                if reason is not None:
                    row = region_row(pid, region, reason)
                    if region.region_type == "memfd" and hasattr(reader, "memfd_seals"):
                        seals = reader.memfd_seals(pid, region)
                        row["sealed"] = None if seals is None else int(bool(seals & WRITE_SEALS))
                    yield row

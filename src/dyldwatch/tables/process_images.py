"""process_images: the executable files each process has mapped, one row per image.

Unlike osquery's process_memory_map on macOS, this needs no task port, so it covers hardened and
SIP-protected processes; a deleted image (mapped, then unlinked) is flagged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from ..host.processes import ProcessReader, process_reader
from ..host.regions import group_images
from .base import BIGINT, INTEGER, PID_KEY, TEXT, Column, QueryContext, Row, Table


class ProcessImagesTable(Table):
    name: ClassVar[str] = "process_images"
    description: ClassVar[str] = (
        "Executable images (programs, shared libraries, dylibs, executable memfds) mapped by running "
        "processes, one row per (device, inode, path) per process, at the address of the image's first "
        "mapping. Linux reads /proc/PID/maps; macOS reads libproc's vnode-backed regions "
        "(PROC_PIDREGIONPATHINFO2), which needs no task port. On macOS, images inside the dyld shared "
        "cache are not visible this way: the cache is one mapping, not one per library. Use pid = or "
        "pid IN (...) to read only those processes."
    )
    columns: ClassVar[tuple[Column, ...]] = (
        Column("pid", INTEGER, "Process id", PID_KEY),
        Column("path", TEXT, "Path of the mapped file as the kernel reports it (without ' (deleted)')"),
        Column("base_address", TEXT, "Address of the image's mapping at file offset 0 (its header), hex"),
        Column("inode", BIGINT, "Inode of the file"),
        Column("device", BIGINT, "Device number of the file, as stat's st_dev (joins with file metadata)"),
        Column("deleted", INTEGER, "1 when the file was unlinked after it was mapped"),
    )
    examples: ClassVar[tuple[str, ...]] = (
        "SELECT * FROM process_images WHERE pid = 1234",
        "SELECT p.name, i.path FROM process_images i JOIN processes p USING (pid) WHERE i.deleted = 1",
    )

    def __init__(self, reader: ProcessReader | None = None) -> None:
        self._reader = reader

    def generate(self, ctx: QueryContext) -> Iterator[Row]:
        reader = self._reader or process_reader()
        wanted = ctx.equals_int("pid")
        for pid in reader.pids() if wanted is None else wanted:
            for image in group_images(reader.image_regions(pid)):
                yield {
                    "pid": pid,
                    "path": image.path,
                    "base_address": f"0x{image.base_address:x}",
                    "inode": image.inode,
                    "device": image.device,
                    "deleted": 1 if image.deleted else 0,
                }

"""Reading /proc on Linux: process ids and one process's maps, tolerant of processes racing us.

Processes exit, exec and change credentials between listing and reading; a maps file that cannot
be read (EACCES, ESRCH, ENOENT, EPERM, or an empty read from a zombie) means "no regions for that
process", never an error for the whole query.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator

from .procmaps import parse_regions
from .regions import MAX_PID, Region

log = logging.getLogger(__name__)

#: errnos that mean the process is gone or not ours to read; skipped quietly.
QUIET_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ESRCH, errno.ENOENT, errno.ENOTDIR, errno.EINVAL})
#: A maps file larger than this is cut (a process with ~4 million mappings; far beyond vm.max_map_count).
MAX_MAPS_BYTES = 512 << 20
_CHUNK = 1 << 20


#: fcntl(2) F_GET_SEALS (F_LINUX_SPECIFIC_BASE + 10); seals that make a memfd immutable: WRITE, FUTURE_WRITE.
F_GET_SEALS = 1034
WRITE_SEALS = 0x0008 | 0x0010

class ProcFS:
    """The /proc file system (the root is a parameter so tests and benches can count or redirect)."""

    __slots__ = ("root",)

    def __init__(self, root: str = "/proc") -> None:
        self.root = root

    def pids(self) -> list[int]:
        """Process ids present now, ascending (threads are not listed at the top of /proc)."""
        try:
            names = os.listdir(self.root)
        except OSError as exc:
            log.warning("cannot list %s: %s", self.root, exc.strerror)
            return []
        return sorted(int(n) for n in names if n.isdigit())

    def open_maps(self, pid: int) -> int:
        """Open /proc/PID/maps read-only (an fd); one place to hook for counting opens."""
        return os.open(f"{self.root}/{pid}/maps", os.O_RDONLY | os.O_CLOEXEC)

    def memfd_seals(self, pid: int, start: int, end: int) -> int | None:
        """Seals of the file mapped at [start, end) (memfd_create(2) F_GET_SEALS), or None."""
        import fcntl

        try:
            fd = os.open(f"{self.root}/{pid}/map_files/{start:x}-{end:x}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            return fcntl.fcntl(fd, F_GET_SEALS)
        except OSError:
            return None
        finally:
            os.close(fd)

    def read_maps(self, pid: int) -> str | None:
        """The maps text of one process, or None when it vanished or may not be read."""
        try:
            fd = self.open_maps(pid)
        except OSError as exc:
            _note(pid, exc)
            return None
        try:
            chunks: list[bytes] = []
            total = 0
            while total < MAX_MAPS_BYTES:
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
        except OSError as exc:
            _note(pid, exc)
            return None
        finally:
            os.close(fd)
        # backslashreplace: a non-UTF-8 path must not make a row unencodable for osquery.
        return b"".join(chunks).decode("utf-8", "backslashreplace")


def _note(pid: int, exc: OSError) -> None:
    if exc.errno in QUIET_ERRNOS:
        log.debug("skipping pid %d: %s", pid, exc.strerror)
    else:
        log.info("cannot read maps of pid %d: %s", pid, exc)


class LinuxProcessReader:
    """ProcessReader over /proc: every region comes from /proc/PID/maps, one process at a time."""

    __slots__ = ("procfs",)

    def __init__(self, procfs: ProcFS | None = None) -> None:
        self.procfs = procfs or ProcFS()

    def pids(self) -> list[int]:
        return self.procfs.pids()

    def regions(self, pid: int, suspects_only: bool = False) -> Iterator[Region]:
        if not 0 < pid <= MAX_PID:
            return
        text = self.procfs.read_maps(pid)
        if text:
            yield from parse_regions(text, suspects_only)

    def memfd_seals(self, pid: int, region: Region) -> int | None:
        """F_GET_SEALS of the memfd behind a region (/proc/PID/map_files needs root), else None."""
        return self.procfs.memfd_seals(pid, region.start, region.end)

    def image_regions(self, pid: int) -> Iterator[Region]:
        """Every mapping: the non-executable first mapping of an ELF holds its base address."""
        return self.regions(pid)

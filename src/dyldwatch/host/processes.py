"""The process reader for this host: the protocol the tables use and the factory that picks one.

Region and the finding rules live in regions.py, below both this module and the per-OS readers
(darwin_proc, linux_proc, procmaps), so no reader imports back into this module.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Protocol

from .regions import Region


class ProcessReader(Protocol):
    """What the tables need from a platform: which processes exist and what each has mapped.

    Readers never raise for a process that vanished or cannot be read; they yield nothing for it.
    """

    def pids(self) -> Iterable[int]: ...

    def regions(self, pid: int, suspects_only: bool = False) -> Iterator[Region]:
        """Regions in address order; with suspects_only the reader may drop early any region that
        cannot be a finding (a speed hint: callers still apply finding_reason)."""
        ...

    def image_regions(self, pid: int) -> Iterator[Region]: ...


def process_reader() -> ProcessReader:
    """The reader for this host: libproc on macOS, /proc everywhere else."""
    if sys.platform == "darwin":
        from .darwin_proc import DarwinProcessReader, SystemLibProc

        return DarwinProcessReader(SystemLibProc())
    from .linux_proc import LinuxProcessReader

    return LinuxProcessReader()

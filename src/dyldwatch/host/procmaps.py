"""Parsing of Linux /proc/PID/maps text and classification of each mapping (pure, no I/O).

A maps line is `start-end perms offset major:minor inode [pathname]`. The pathname is everything
after the padding that follows the inode, so paths with spaces survive (osquery's own
process_memory_map splits on whitespace and truncates them). The kernel appends " (deleted)" to
unlinked files and escapes a newline in a path as "\\012", so one mapping is always one line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .regions import Region

DELETED_SUFFIX = " (deleted)"

# A full line: all fields in C, the pathname being whatever follows the padding after the inode.
_LINE = r"^([0-9a-f]+)-([0-9a-f]+) ([r-][w-]{x}[ps]) ([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) ([0-9]+)(?: +([^\n]*))?$"
_ANY_RE = re.compile(_LINE.format(x="[x-]"), re.MULTILINE)
_EXEC_RE = re.compile(_LINE.format(x="x"), re.MULTILINE)
# The perms field of an executable mapping and what follows it. The pattern starts with a literal,
# so the regex engine jumps between candidate 'x' characters in C instead of trying every position.
_EXEC_MARK_RE = re.compile(r"x[ps] [0-9a-f]+ [0-9a-f]+:[0-9a-f]+ ")

#: Kernel-provided mappings; executable ones ([vdso], [vsyscall], [uprobes]) are not findings.
SPECIAL_NAMES = frozenset({"[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]", "[uprobes]", "[sigpage]", "[vectors]"})
_SPECIAL_ENDINGS = tuple(" " + name for name in sorted(SPECIAL_NAMES))


class MapsParseError(ValueError):
    """A line is not in /proc/PID/maps format."""


@dataclass(frozen=True, slots=True)
class MapsEntry:
    """One maps line, fields as the kernel printed them (`name` is the raw pathname field)."""

    start: int
    end: int
    perms: str
    offset: int
    major: int
    minor: int
    inode: int
    name: str

    @property
    def device(self) -> int:
        """The device number as `stat().st_dev` reports it, so rows join with file metadata."""
        return os.makedev(self.major, self.minor)


def _entry(m: re.Match[str]) -> MapsEntry:
    start, end, perms, offset, major, minor, inode, name = m.groups()
    return MapsEntry(
        int(start, 16), int(end, 16), perms, int(offset, 16), int(major, 16), int(minor, 16), int(inode), name or ""
    )


def parse_maps_line(line: str) -> MapsEntry:
    """Parse one maps line; raise MapsParseError when it is not one."""
    m = _ANY_RE.fullmatch(line.rstrip("\n"))
    if m is None:
        raise MapsParseError(f"not a /proc/PID/maps line: {line[:120]!r}")
    return _entry(m)


def parse_maps(text: str, executable_only: bool = False) -> Iterator[MapsEntry]:
    """Every well-formed line of a maps text, in order (optionally only executable ones).

    Lines that do not match are skipped: the kernel never writes them, and one odd line must not
    cost the rest of the process.
    """
    for m in (_EXEC_RE if executable_only else _ANY_RE).finditer(text):
        yield _entry(m)


def parse_suspects(text: str) -> Iterator[MapsEntry]:
    """Only lines that might be findings, in order: a cheap superset, decided before parsing.

    A line qualifies when it is executable and also writable, or has no "/" in it (anonymous),
    a "[" (heap, stack, [anon:NAME]), an anon_inode: name, or the " (deleted)" marker. Ordinary
    r-x library text, most executable lines, is dropped without building anything.
    """
    for mark in _EXEC_MARK_RE.finditer(text):
        at = mark.start()
        begin = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        line = text[begin:] if end < 0 else text[begin:end]
        space = line.find(" ")
        if at - begin != space + 3 or line.endswith(_SPECIAL_ENDINGS):  # mark inside a path; [vdso]
            continue
        if (
            line[space + 2] == "w"
            or "/" not in line
            or "[" in line
            or line.endswith(DELETED_SUFFIX)
            or "anon_inode:" in line
        ):
            m = _ANY_RE.fullmatch(line)
            if m is not None:
                yield _entry(m)


def classify(entry: MapsEntry) -> Region:
    """Turn a maps entry into a Region: type, whether anonymous, path without the deleted marker."""
    name = entry.name
    path, label, deleted, anonymous = "", "", False, False
    if not name:
        region_type, anonymous = "anon", True
    elif name.startswith("["):
        label = name
        if name in SPECIAL_NAMES:
            region_type = "special"
        elif name == "[heap]":
            region_type, anonymous = "heap", True
        elif name == "[stack]" or name.startswith("[stack:"):
            region_type, anonymous = "stack", True
        elif name.startswith("[anon_shmem:"):
            region_type, anonymous = "shm", True
        elif name.startswith("[anon:"):
            region_type, anonymous = ("jit" if "jit" in name.lower() else "anon"), True
        else:
            region_type = "special"
    elif name.startswith("anon_inode:"):
        region_type, anonymous, label = "anon_inode", True, name
    else:
        deleted = name.endswith(DELETED_SUFFIX)
        bare = name[: -len(DELETED_SUFFIX)] if deleted else name
        if deleted and bare.startswith("/memfd:"):  # a memfd is never linked, so always "(deleted)"
            region_type, path = "memfd", bare
        elif deleted and (bare == "/dev/zero" or bare.startswith("/SYSV")):
            # MAP_SHARED|MAP_ANONYMOUS memory shows as "/dev/zero (deleted)"; SysV shm as /SYSV<key>.
            region_type, anonymous, label = "shm", True, name
        elif deleted:
            region_type, path = "deleted", bare
        else:
            region_type, path = "file", bare
    return Region(
        start=entry.start,
        end=entry.end,
        permissions=entry.perms,
        path=path,
        region_type=region_type,
        anonymous=anonymous,
        inode=entry.inode,
        device=entry.device,
        offset=entry.offset,
        deleted=deleted,
        label=label,
    )


def parse_regions(text: str, suspects_only: bool = False) -> Iterator[Region]:
    """Classified regions of a maps text; with suspects_only, only those that might be findings."""
    for entry in parse_suspects(text) if suspects_only else parse_maps(text):
        yield classify(entry)

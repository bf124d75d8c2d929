"""The parsed shapes of a Mach-O file: slices, headers, load commands, and the error type."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, overload

from .constants import FILETYPE_NAMES, flag_names


class MachOError(Exception):
    """A Mach-O structure is malformed; the message says what and at which file offset.

    `partial` carries what parsed before the problem (a MachOSlice with the good commands) when
    there is something worth showing.
    """

    def __init__(self, message: str, offset: int | None = None, partial: MachOSlice | None = None) -> None:
        self.message = message
        self.offset = offset
        self.partial = partial
        super().__init__(message if offset is None else f"{message} (at file offset {offset:#x})")


@dataclass(slots=True)
class SliceRef:
    """One architecture slice of a file: where it is, and what CPU it is for.

    `offset` and `size` are in the file; a thin file has one slice covering the whole file.
    """

    arch: str
    offset: int
    size: int
    cputype: int
    cpusubtype: int
    fat: bool
    align: int = 0


@dataclass(slots=True)
class MachHeader:
    magic: int
    is64: bool
    big_endian: bool
    cputype: int
    cpusubtype: int
    filetype: int
    flags: int
    ncmds: int
    sizeofcmds: int

    @property
    def size(self) -> int:
        """Bytes of the mach_header(_64) itself; load commands follow it."""
        return 32 if self.is64 else 28

    @property
    def filetype_name(self) -> str:
        return FILETYPE_NAMES.get(self.filetype, f"{self.filetype:#x}")

    @property
    def flag_names(self) -> list[str]:
        return flag_names(self.flags)


class Section(NamedTuple):
    """A section header of a segment command; `offset` is relative to the slice start."""

    sectname: str
    segname: str
    addr: int
    size: int
    offset: int
    flags: int


class Sections(Sequence[Section]):
    """A segment's section headers, decoded on first use.

    Most readers (the load-command table) only need the count; decoding every section name of
    every segment would dominate the cost of the cheap path, so the raw headers are kept instead.
    """

    __slots__ = ("_raw", "_layout", "_count", "_items")

    def __init__(self, raw: bytes, layout: struct.Struct, count: int) -> None:
        self._raw = raw
        self._layout = layout
        self._count = count
        self._items: list[Section] | None = None

    def _decode(self) -> list[Section]:
        items = self._items
        if items is None:
            items = []
            for f in self._layout.iter_unpack(self._raw):
                # f: sectname, segname, addr, size, offset, align, reloff, nreloc, flags, reserved...
                items.append(Section(_cname(f[0]), _cname(f[1]), f[2], f[3], f[4], f[8]))
            self._items = items
        return items

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, i: int) -> Section: ...
    @overload
    def __getitem__(self, i: slice) -> list[Section]: ...
    def __getitem__(self, i: int | slice) -> Section | list[Section]:
        return self._decode()[i]

    def __iter__(self) -> Iterator[Section]:
        return iter(self._decode())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sections):
            other = other._decode()
        return isinstance(other, list | tuple) and self._decode() == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._decode())


def _cname(raw: bytes) -> str:
    """A fixed-width, NUL-padded name (segname, sectname); non-UTF-8 bytes come out as \\xNN."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


class LoadCommand:
    """One load command, with the fields the tables need decoded.

    `offset` is the command's absolute file offset. `name` holds the lc_str of dylib, rpath,
    dylinker, sub-framework and similar commands. Offsets inside `data` (dataoff, fileoff, symoff,
    cryptoff …) are relative to the slice, as in the file format.

    `data` is decoded on first access (the parse checks everything that can be wrong with a
    command up front, so a late decode never fails): a reader that wants names and versions,
    such as the load-command table, does not pay for every segment's and symbol table's fields.
    """

    __slots__ = ("index", "cmd", "cmd_name", "cmd_size", "offset", "name", "compatibility_version",
                 "current_version", "weak", "_data", "_lazy")

    def __init__(self, index: int, cmd: int, cmd_name: str, cmd_size: int, offset: int, name: str | None = None,
                 compatibility_version: str | None = None, current_version: str | None = None, weak: bool = False,
                 data: dict[str, Any] | None = None) -> None:
        self.index = index
        self.cmd = cmd
        self.cmd_name = cmd_name
        self.cmd_size = cmd_size
        self.offset = offset
        self.name = name
        self.compatibility_version = compatibility_version
        self.current_version = current_version
        self.weak = weak
        self._data = data
        #: what fills `data` when it is first read: the command area of the slice it came from,
        #: shared by the slice's commands (its `decode(command)` sets `data`)
        self._lazy: Any = None

    @property
    def data(self) -> dict[str, Any] | None:
        lazy = self._lazy
        if lazy is not None:
            self._lazy = None
            lazy.decode(self)
        return self._data

    @data.setter
    def data(self, value: dict[str, Any] | None) -> None:
        self._data = value

    def _fields(self) -> tuple[Any, ...]:
        return (self.index, self.cmd, self.cmd_name, self.cmd_size, self.offset, self.name,
                self.compatibility_version, self.current_version, self.weak, self.data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LoadCommand):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        names = ("index", "cmd", "cmd_name", "cmd_size", "offset", "name", "compatibility_version",
                 "current_version", "weak", "data")
        return "LoadCommand(" + ", ".join(f"{n}={v!r}" for n, v in zip(names, self._fields(), strict=True)) + ")"


@dataclass(slots=True)
class MachOSlice:
    ref: SliceRef
    header: MachHeader
    commands: tuple[LoadCommand, ...]

    def first(self, cmd: int) -> LoadCommand | None:
        """The first command of a kind, or None."""
        for c in self.commands:
            if c.cmd == cmd:
                return c
        return None

    def all(self, cmd: int) -> list[LoadCommand]:
        return [c for c in self.commands if c.cmd == cmd]

    def segment(self, name: str) -> LoadCommand | None:
        for c in self.commands:
            if c.data is not None and c.cmd_name in ("LC_SEGMENT", "LC_SEGMENT_64") and c.data["segname"] == name:
                return c
        return None

    @property
    def rpaths(self) -> list[str]:
        return [c.name for c in self.commands if c.cmd_name == "LC_RPATH" and c.name is not None]

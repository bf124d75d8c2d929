"""Compiled AppleScript (FasdUAS) recognition and run-only detection, from bytes.

A compiled script is a serialised object graph: after the magic and version, object headers
(type u8, reference id s16, size u16, big-endian) each followed by a body whose shape the type
decides; bodies refer to other objects by id, and an object's bytes appear where it is first
referenced. No Apple document defines "run-only"; what distinguishes the files is structural:
an editable script keeps statement objects (type 13) that map bytecode back to its source text,
and a run-only one keeps none. So we walk the whole graph and count them; a byte search for the
type would match any 0x0d in data. Every count, length and depth is bounded: attackers plant
these files.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

MAGIC = b"FasdUAS "
JXA_MAGIC = b"JsOsaDAS"
STATEMENT = 13

MAX_OBJECTS = 1 << 20
MAX_DEPTH = 150  # five Python frames a level: well inside the interpreter's 1000
MAX_REF_ERRORS = 6
#: Initial reference table: ids below this are reserved but unresolved, as in the runtime's loader.
_RESERVED = 32


class ScriptFormatError(ValueError):
    pass


@dataclass(slots=True)
class ScriptInfo:
    format: str | None = None  # applescript | jxa | None (not a compiled script)
    version: str | None = None
    run_only: bool | None = None
    objects: int = 0
    statements: int = 0
    has_shebang: bool = False
    evidence: str | None = None
    error: str | None = None
    types: dict[int, int] = field(default_factory=dict)


def _body_offset(data: bytes) -> tuple[int, bool]:
    """Where the magic starts (after an optional `#!` line) and whether a shebang was there."""
    if data[:2] == b"#!":
        nl = data.find(b"\n", 0, 4096)
        if nl < 0:
            raise ScriptFormatError("#! line is not terminated within 4096 bytes")
        return nl + 1, True
    return 0, False


def is_compiled_script(head: bytes) -> bool:
    """Cheap check on the first bytes: a FasdUAS or JsOsaDAS magic, possibly after a `#!` line."""
    try:
        start, _ = _body_offset(head)
    except ScriptFormatError:
        return False
    return head[start : start + 8] in (MAGIC, JXA_MAGIC)


class _Walker:
    """Reads the object graph depth-first, registering ids, counting object types."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos
        self.resolved: set[int] = {0}
        self.reserved = _RESERVED
        self.types: dict[int, int] = {}
        self.objects = 0
        self.depth = 0
        self.reuse: tuple[int, int, int, int] | None = None
        self.ref_errors = 0

    # -- primitive reads -------------------------------------------------------------------------
    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise ScriptFormatError(f"object runs past the end of the file at offset {self.pos:#x}")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def s16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def header(self) -> tuple[int, int, int, int]:
        at = self.pos
        kind, ref, size = struct.unpack(">BhH", self.take(5))
        return kind, ref, size, at

    # -- the graph -------------------------------------------------------------------------------
    def register(self, ref: int) -> None:
        if ref >= 0:
            self.resolved.add(ref)

    def known(self, ref: int) -> bool:
        return ref in self.resolved

    def find(self, ref: int) -> None:
        if not self.known(ref):
            self.load(ref)

    def load(self, expected: int) -> None:
        if self.depth >= MAX_DEPTH:
            raise ScriptFormatError(f"objects nest deeper than {MAX_DEPTH} at offset {self.pos:#x}")
        if self.reuse is not None:
            kind, ref, size, at = self.reuse
            self.reuse = None
        else:
            kind, ref, size, at = self.header()
        if ref != expected:
            # The runtime tolerates a few of these: it keeps the header for the next request.
            self.reuse = (kind, ref, size, at)
            self.ref_errors += 1
            if self.ref_errors >= MAX_REF_ERRORS:
                raise ScriptFormatError(f"too many reference mismatches (last at offset {at:#x})")
            return
        self.nested(kind, ref, size, at)

    def nested(self, kind: int, ref: int, size: int, at: int) -> None:
        """One object's body one level deeper, then its id registered."""
        if self.depth >= MAX_DEPTH:
            raise ScriptFormatError(f"objects nest deeper than {MAX_DEPTH} at offset {at:#x}")
        self.depth += 1
        try:
            self.body(kind, ref, size, at)
        finally:
            self.depth -= 1
        self.register(ref)

    def refs(self, count: int) -> None:
        ids = [self.s16() for _ in range(count)]
        for r in ids:
            self.find(r)

    def body(self, kind: int, ref: int, size: int, at: int) -> None:
        self.objects += 1
        if self.objects > MAX_OBJECTS:
            raise ScriptFormatError(f"more than {MAX_OBJECTS} objects")
        self.types[kind] = self.types.get(kind, 0) + 1
        if kind in (3, 9):  # small integer, boolean: the value is the size field
            return
        if kind == 1:  # symbol
            if size:
                self.take(8)
        elif kind == 2:  # list: a chain of pairs, or the empty list
            if size == 2:
                self.chain(link_kind=2, width=2)
        elif kind in (4, 14):  # value block: a type tag and `size` references
            tag = self.u8()
            if not (size == 0 and tag == 15):
                self.register(ref)
                self.refs(size)
        elif kind == 6:
            if size == 1:
                return
            if size != 3:
                raise ScriptFormatError(f"record of unknown shape {size} at offset {at:#x}")
            self.register(ref)
            self.chain(link_kind=6, width=3)
        elif kind == 7:
            if size != 4:
                raise ScriptFormatError(f"long integer of size {size} at offset {at:#x}")
            self.take(4)
        elif kind == 8:
            if size != 8:
                raise ScriptFormatError(f"float of size {size} at offset {at:#x}")
            self.take(8)
        elif kind == 10:  # code identifier
            tag = self.u8()
            want = {11: 8, 10: 4, 47: 4, 46: 24}.get(tag)
            if want is None or size != want:
                raise ScriptFormatError(f"code identifier tag {tag} size {size} at offset {at:#x}")
            self.take(size)
        elif kind == 11:  # user identifier: two short strings
            if self.u8() != 48:
                raise ScriptFormatError(f"user identifier marker missing at offset {at:#x}")
            for _ in range(2):
                n = self.u16()
                if n >= 0x100:
                    raise ScriptFormatError(f"user identifier of {n} bytes at offset {at:#x}")
                self.take(n)
        elif kind == 12:  # Unicode text and its style run
            self.take(self.u16())
            self.take(self.u16())
        elif kind == STATEMENT:  # statement: tag, type info, source span, then `size` children
            self.take(7)
            self.register(ref)
            self.refs(size)
        elif kind == 15:  # data block
            tag = self.u8()
            if tag == 8 and size < 94:
                raise ScriptFormatError(f"descriptor of {size} bytes at offset {at:#x}")
            self.take(size)
        elif kind == 16:  # pointer block
            self.register(ref)
            self.refs(size)
        elif kind == 17:
            self.take(size)
        elif kind == 18:
            self.u8()
            self.take(self.u32())
        elif kind == 19:
            self.take(self.u32())
        else:
            raise ScriptFormatError(f"unknown object type {kind} at offset {at:#x}")

    def chain(self, *, link_kind: int, width: int) -> None:
        """Lists (pairs) and records (bindings) are chains: each link names its next link."""
        while True:
            ids = [self.s16() for _ in range(width)]
            for r in ids[:-1]:
                self.find(r)
            nxt = ids[-1]
            if self.known(nxt):
                return
            kind, ref, size, at = self.header()
            if kind != link_kind:
                self.nested(kind, ref, size, at)
                return
            if size != width:
                if link_kind == 2 and size != 0:
                    raise ScriptFormatError(f"list tail of size {size} at offset {at:#x}")
                return
            self.types[kind] = self.types.get(kind, 0) + 1
            self.objects += 1
            if self.objects > MAX_OBJECTS:
                raise ScriptFormatError(f"more than {MAX_OBJECTS} objects")
            self.register(ref)


def parse_script(data: bytes) -> ScriptInfo:
    """What a compiled script is and whether it is run-only; never raises (errors go in `error`)."""
    info = ScriptInfo()
    try:
        start, info.has_shebang = _body_offset(data)
    except ScriptFormatError as exc:
        info.error = str(exc)
        return info
    magic = data[start : start + 8]
    if magic == JXA_MAGIC:
        info.format = "jxa"
        info.version = data[start + 8 : start + 16].decode("ascii", "replace")
        info.evidence = "JXA: run-only state is not decided from the compiled form"
        return info
    if magic != MAGIC:
        info.error = "not a compiled script (no FasdUAS or JsOsaDAS magic)"
        return info
    info.format = "applescript"
    pos = start + 8
    version = data[pos : pos + 4]
    pos += 4
    if version >= b"1.10":
        version = data[pos : pos + 4]
        pos += 4
    info.version = data[start + 8 : pos].decode("ascii", "replace")
    if len(version) < 4 or not (b"0.97" < version < b"1.11"):
        info.error = f"unsupported format version {version!r}"
        return info
    walker = _Walker(data, pos)
    try:
        walker.load(0)
    except (ScriptFormatError, RecursionError) as exc:
        info.error = f"malformed script: {exc}"
    info.objects = walker.objects
    info.types = dict(sorted(walker.types.items()))
    info.statements = walker.types.get(STATEMENT, 0)
    if info.error is None or walker.objects:
        info.run_only = info.statements == 0
        info.evidence = (f"{info.statements} statement-map objects in {walker.objects} objects"
                         + ("" if info.error is None else " (walk stopped early)"))
        if info.error is not None and info.statements == 0:
            info.run_only = None  # a broken walk that saw no statements proves nothing
    return info


def script_paths_in_bundle(root: str, limit: int = 256) -> list[str]:
    """Compiled scripts inside a `.scptd` bundle or an applet: main.scpt first, then the rest."""
    scripts_dir = os.path.join(root, "Contents", "Resources", "Scripts")
    out: list[str] = []
    try:
        entries = sorted(os.scandir(scripts_dir), key=lambda e: (e.name != "main.scpt", e.name))
    except OSError:
        return out
    for entry in entries:
        try:
            if entry.is_file() and entry.name.endswith(".scpt"):
                out.append(entry.path)
        except OSError:
            continue
        if len(out) >= limit:
            break
    return out

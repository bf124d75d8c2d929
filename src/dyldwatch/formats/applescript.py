"""Compiled AppleScript (FasdUAS) and JXA (JsOsaDAS) recognition and run-only detection, from bytes.

A compiled AppleScript is a serialised object graph: after the magic and version come object
headers (type u8, reference id s16, size u16, big-endian), each followed by a body whose shape the
type decides; bodies refer to other objects by id, and an object's bytes appear where it is first
referenced, so the graph can only be read by walking it depth-first from object 0.

No Apple document defines "run-only". What distinguishes the files is structural: an editable
script keeps statement objects (type 13) that map bytecode ranges back to statements (what an
editor needs to show the script again), and a run-only one keeps none. So the whole graph is
walked and they are counted; a byte search would match any 0x0d in data.

After the graph, a compiled script ends with the OSA storage-type tag (as `OSAAddStorageType`
appends it): the component type (`ascr` AppleScript, `jscr` JavaScript), u16 version 1, u16 length
of the tag (12, or 13 when one pad byte before it keeps the file length even) and the magic
0xFADEDEAD. When present, the graph must end exactly where the tag begins; anything between is
reported in the evidence.

Compiled JXA (`JsOsaDAS`) is a header and a binary property list whose `script` key holds the
JavaScript source text. The rule for JXA: readable source present means editable; a well-formed
property list with no `script` string, or an empty one, means run-only. Apple documents neither
form; the run-only side is inferred, not checked against a real run-only JXA file.

Every count, length and depth is bounded, because attackers plant these files.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

MAGIC = b"FasdUAS "
JXA_MAGIC = b"JsOsaDAS"
STATEMENT = 13
TAG_MAGIC = b"\xfa\xde\xde\xad"

#: Work bound. Real scripts hold about 60 objects per KiB (1,739 in a 31 KiB script), so this is
#: a script of about a megabyte; hostile files of tiny objects stop here (about 35 ms). A walk
#: that reaches the cap still decides, from what it saw, and says so in the evidence.
MAX_OBJECTS = 1 << 16
#: Each level costs four Python frames; real scripts nest about 25 deep (23 in the samples), and
#: 128 levels stay well inside the interpreter's default limit of 1000 frames.
MAX_DEPTH = 128
#: The runtime's loader gives up after this many id mismatches; so do we.
MAX_REF_ERRORS = 6
MAX_SHEBANG = 4096

_HDR = struct.Struct(">BhH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
#: Code identifier sub-tags and the body size each requires.
_CODE_ID_SIZES = {11: 8, 10: 4, 47: 4, 46: 24}


class ScriptFormatError(ValueError):
    """The bytes do not form a compiled script; the message names the offset."""


class _Capped(Exception):
    """The object cap was reached: our limit, not a fault in the file."""


@dataclass(slots=True)
class ScriptInfo:
    format: str | None = None  # applescript | jxa | None (not a compiled script)
    version: str | None = None
    run_only: bool | None = None  # None: undecidable (malformed, or not a script)
    objects: int = 0
    statements: int = 0
    has_shebang: bool = False
    evidence: str | None = None
    error: str | None = None
    types: dict[int, int] = field(default_factory=dict)


def _body_offset(data: bytes) -> tuple[int, bool]:
    """Where the magic starts (after an optional `#!` line) and whether a shebang was there."""
    if data[:2] == b"#!":
        nl = data.find(b"\n", 0, MAX_SHEBANG)
        if nl < 0:
            raise ScriptFormatError(f"#! line is not terminated within {MAX_SHEBANG} bytes (offset 0)")
        return nl + 1, True
    return 0, False


def is_compiled_script(head: bytes) -> bool:
    """Cheap check on the first bytes: a FasdUAS or JsOsaDAS magic, possibly after a `#!` line."""
    try:
        start, _ = _body_offset(head)
    except ScriptFormatError:
        return False
    return head[start : start + 8] in (MAGIC, JXA_MAGIC)


def _storage_tag(data: bytes, start: int, kind: bytes) -> int | None:
    """Offset where the trailing OSA storage-type tag of component `kind` begins, or None."""
    if len(data) - start < 12 or data[-4:] != TAG_MAGIC or data[-12:-8] != kind:
        return None
    length = _U16.unpack_from(data, len(data) - 6)[0]
    if length < 12 or length > len(data) - start:
        return None
    return len(data) - length


class _Walker:
    """Reads the object graph depth-first, registering ids and counting object types."""

    __slots__ = ("data", "pos", "end", "resolved", "counts", "objects", "depth", "reuse", "ref_errors")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end
        self.resolved: set[int] = {0}  # id 0 is nil and always known
        self.counts = [0] * 256
        self.objects = 0
        self.depth = 0
        self.reuse: tuple[int, int, int, int] | None = None
        self.ref_errors = 0

    def _past_end(self, what: str) -> ScriptFormatError:
        return ScriptFormatError(f"{what} runs past the end of the object table at offset {self.pos:#x}")

    def skip(self, n: int) -> None:
        if self.pos + n > self.end:
            raise self._past_end(f"{n}-byte field")
        self.pos += n

    def u8(self) -> int:
        if self.pos >= self.end:
            raise self._past_end("byte")
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        if self.pos + 2 > self.end:
            raise self._past_end("u16")
        self.pos += 2
        return _U16.unpack_from(self.data, self.pos - 2)[0]

    def ids(self, count: int) -> tuple[int, ...]:
        at = self.pos
        if at + 2 * count > self.end:
            raise self._past_end(f"list of {count} references")
        self.pos = at + 2 * count
        return struct.unpack_from(f">{count}h", self.data, at)

    def header(self) -> tuple[int, int, int, int]:
        at = self.pos
        if at + 5 > self.end:
            raise self._past_end("object header")
        self.pos = at + 5
        kind, ref, size = _HDR.unpack_from(self.data, at)
        return kind, ref, size, at

    def load(self, expected: int) -> None:
        """The object with id `expected`, read here; a mismatch keeps the header, as the runtime does."""
        if self.reuse is not None:
            kind, ref, size, at = self.reuse
            self.reuse = None
        else:
            kind, ref, size, at = self.header()
        if ref != expected:
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
        if ref >= 0:
            self.resolved.add(ref)

    def claim(self, ref: int) -> None:
        """Register an id before its children load, so a child referring back finds it."""
        if ref >= 0:
            self.resolved.add(ref)

    def refs(self, count: int) -> None:
        """Read `count` ids, then load each one not seen yet (negative ids are always inline)."""
        resolved = self.resolved
        for r in self.ids(count):
            if r not in resolved:
                self.load(r)

    def count(self, kind: int) -> None:
        self.objects += 1
        if self.objects > MAX_OBJECTS:
            raise _Capped
        self.counts[kind] += 1

    def body(self, kind: int, ref: int, size: int, at: int) -> None:
        self.count(kind)
        if kind in (3, 9):  # small integer, boolean: the value is the size field
            return
        if kind == 1:  # symbol: empty, or an 8-byte number
            if size:
                self.skip(8)
        elif kind == 2:  # list: a chain of pairs, or the empty list
            if size == 2:
                self.chain(link_kind=2, width=2)
        elif kind in (4, 14):  # value block: a type tag and `size` references
            tag = self.u8()
            if not (size == 0 and tag == 15):
                self.claim(ref)
                self.refs(size)
        elif kind == 6:  # record: empty, or a chain of (key, value, next) bindings
            if size == 1:
                return
            if size != 3:
                raise ScriptFormatError(f"record of unknown shape {size} at offset {at:#x}")
            self.claim(ref)
            self.chain(link_kind=6, width=3)
        elif kind == 7:
            if size != 4:
                raise ScriptFormatError(f"long integer of size {size} at offset {at:#x}")
            self.skip(4)
        elif kind == 8:
            if size != 8:
                raise ScriptFormatError(f"float of size {size} at offset {at:#x}")
            self.skip(8)
        elif kind == 10:  # code identifier: a sub-tag fixes the size
            tag = self.u8()
            if _CODE_ID_SIZES.get(tag) != size:
                raise ScriptFormatError(f"code identifier tag {tag} size {size} at offset {at:#x}")
            self.skip(size)
        elif kind == 11:  # user identifier: marker 48, then two short strings
            if self.u8() != 48:
                raise ScriptFormatError(f"user identifier marker missing at offset {at:#x}")
            for _ in range(2):
                n = self.u16()
                if n >= 0x100:
                    raise ScriptFormatError(f"user identifier of {n} bytes at offset {at:#x}")
                self.skip(n)
        elif kind == 12:  # Unicode text and its style run
            self.skip(self.u16())
            self.skip(self.u16())
        elif kind == STATEMENT:  # tag u8, type info u16, bytecode start/end u16 each, `size` children
            self.skip(7)
            self.claim(ref)
            self.refs(size)
        elif kind == 15:  # data block: a tag, then `size` bytes (tag 8: a descriptor with a 94-byte head)
            tag = self.u8()
            if tag == 8 and size < 94:
                raise ScriptFormatError(f"descriptor of {size} bytes at offset {at:#x}")
            self.skip(size)
        elif kind == 16:  # pointer block: `size` references
            self.claim(ref)
            self.refs(size)
        elif kind == 17:  # raw bytes (bytecode)
            self.skip(size)
        elif kind == 18:  # long data block: tag, u32 length, bytes
            self.u8()
            self.skip(self._u32())
        elif kind == 19:  # untyped long data block: u32 length, bytes
            self.skip(self._u32())
        else:
            raise ScriptFormatError(f"unknown object type {kind} at offset {at:#x}")

    def _u32(self) -> int:
        if self.pos + 4 > self.end:
            raise self._past_end("u32")
        self.pos += 4
        return _U32.unpack_from(self.data, self.pos - 4)[0]

    def chain(self, *, link_kind: int, width: int) -> None:
        """Lists (pairs) and records (bindings): each link names the next, read in a loop, not recursion."""
        resolved = self.resolved
        while True:
            ids = self.ids(width)
            for r in ids[:-1]:
                if r not in resolved:
                    self.load(r)
            if ids[-1] in resolved:
                return
            kind, ref, size, at = self.header()
            if kind != link_kind:
                self.nested(kind, ref, size, at)
                return
            if size != width:
                if link_kind == 2 and size != 0:
                    raise ScriptFormatError(f"list tail of size {size} at offset {at:#x}")
                return
            self.count(kind)
            if ref >= 0:
                resolved.add(ref)


def _parse_applescript(data: bytes, start: int, info: ScriptInfo) -> None:
    pos = start + 8
    version = data[pos : pos + 4]
    pos += 4
    if version >= b"1.10":  # newer files carry a second, finer version
        version = data[pos : pos + 4]
        pos += 4
    info.version = data[start + 8 : pos].decode("ascii", "replace")
    if len(version) < 4 or not (b"0.97" < version < b"1.11"):
        info.error = f"unsupported format version {version!r} at offset {start + 8:#x}"
        return
    tag_at = _storage_tag(data, start, b"ascr")
    end = len(data) if tag_at is None else tag_at
    walker = _Walker(data, pos, end)
    capped = False
    try:
        walker.load(0)
    except _Capped:
        capped = True
        walker.objects = MAX_OBJECTS
    except (ScriptFormatError, RecursionError) as exc:
        info.error = f"malformed script: {exc}"
    if info.error is None and walker.objects == 0:
        info.error = f"malformed script: no root object (id 0) at offset {pos:#x}"
    info.objects = walker.objects
    info.types = {k: n for k, n in enumerate(walker.counts) if n}
    info.statements = walker.counts[STATEMENT]
    notes = []
    if capped:
        notes.append(f"walk stopped at the {MAX_OBJECTS}-object cap")
    elif info.error is not None:
        notes.append("walk stopped early")
    else:
        leftover = end - walker.pos
        if tag_at is None:
            notes.append("no ascr storage tag")
        if leftover:
            notes.append(f"{leftover} bytes after the object table")
        if walker.ref_errors:
            notes.append(f"{walker.ref_errors} id mismatches tolerated")
    info.evidence = f"{info.statements} statement maps in {walker.objects} objects" + (
        f" ({'; '.join(notes)})" if notes else "")
    if info.statements:
        info.run_only = False
    elif info.error is None:
        info.run_only = True
    # else: a broken walk that saw no statement proves nothing (run_only stays None)


def _bplist_objects(blob: bytes) -> tuple[int, int, int, int, int]:
    """Trailer of a binary property list: offset size, ref size, object count, top object, table offset."""
    if len(blob) < 8 + 32 + 1 or blob[:8] != b"bplist00":
        raise ScriptFormatError("no bplist00 after the JXA header")
    osz, rsz = blob[-26], blob[-25]
    n, top, table = struct.unpack_from(">QQQ", blob, len(blob) - 24)
    if not (1 <= osz <= 8 and 1 <= rsz <= 8) or top >= n or n > len(blob):
        raise ScriptFormatError("bplist trailer is inconsistent")
    if table < 8 or table + n * osz > len(blob) - 32:
        raise ScriptFormatError("bplist offset table lies outside the data")
    return osz, rsz, n, top, table


def _jxa_source(blob: bytes) -> str | None:
    """The `script` string of a compiled JXA file's property list, or None when it holds none."""
    osz, rsz, n, top, table = _bplist_objects(blob)
    limit = len(blob) - 32

    def offset(i: int) -> int:
        if i >= n:
            raise ScriptFormatError(f"bplist object {i} of {n}")
        at = table + i * osz
        off = int.from_bytes(blob[at : at + osz], "big")
        if not 8 <= off < limit:
            raise ScriptFormatError(f"bplist object {i} at offset {off:#x} outside the data")
        return off

    def length(at: int) -> tuple[int, int]:
        """Count from a marker's low nibble, or from the int object after it; and where data starts."""
        low = blob[at] & 0x0F
        if low != 0x0F:
            return low, at + 1
        if at + 1 >= limit or blob[at + 1] >> 4 != 0x1 or (blob[at + 1] & 0x0F) > 3:
            raise ScriptFormatError(f"bplist length at offset {at:#x} is not a small integer")
        width = 1 << (blob[at + 1] & 0x0F)
        return int.from_bytes(blob[at + 2 : at + 2 + width], "big"), at + 2 + width

    def string(i: int) -> str | None:
        at = offset(i)
        kind = blob[at] >> 4
        count, data = length(at)
        if kind == 0x5:
            raw, enc = blob[data : data + count], "latin-1"
        elif kind == 0x6:
            raw, enc = blob[data : data + 2 * count], "utf-16-be"
        else:
            return None
        if data + len(raw) > limit or len(raw) < (count if kind == 0x5 else 2 * count):
            raise ScriptFormatError(f"bplist string at offset {at:#x} runs past the data")
        return raw.decode(enc, "replace")

    root = offset(top)
    if blob[root] >> 4 != 0xD:
        raise ScriptFormatError("bplist top object is not a dictionary")
    entries, refs_at = length(root)
    if refs_at + 2 * entries * rsz > limit:
        raise ScriptFormatError("bplist dictionary runs past the data")
    ref = [int.from_bytes(blob[refs_at + k * rsz : refs_at + (k + 1) * rsz], "big") for k in range(2 * entries)]
    for k in range(entries):
        if string(ref[k]) == "script":
            return string(ref[entries + k])
    return None


def _parse_jxa(data: bytes, start: int, info: ScriptInfo) -> None:
    """JXA keeps its JavaScript source in a property list; a run-only save keeps no readable source."""
    info.version = data[start + 8 : start + 16].decode("ascii", "replace")
    tag_at = _storage_tag(data, start, b"jscr")
    try:
        source = _jxa_source(data[start + 16 : tag_at])
    except ScriptFormatError as exc:
        info.error = f"malformed JXA script: {exc}"
        return
    if source is not None and source.strip():
        info.run_only = False
        info.evidence = f"{len(source)} characters of JavaScript source kept"
    else:
        info.run_only = True
        info.evidence = "no JavaScript source kept" if source is None else "empty JavaScript source"


def parse_script(data: bytes) -> ScriptInfo:
    """What a compiled script is and whether it is run-only; never raises (errors go in `error`)."""
    info = ScriptInfo()
    try:
        start, info.has_shebang = _body_offset(data)
        magic = data[start : start + 8]
        if magic == JXA_MAGIC:
            info.format = "jxa"
            _parse_jxa(data, start, info)
        elif magic == MAGIC:
            info.format = "applescript"
            _parse_applescript(data, start, info)
        else:
            info.error = f"not a compiled script (no FasdUAS or JsOsaDAS magic at offset {start:#x})"
    except ScriptFormatError as exc:
        info.error = str(exc)
    except Exception as exc:  # a parser bug must not take a table row down with it
        info.error = f"internal parser error: {type(exc).__name__}: {exc}"
        info.run_only = None
    return info


def script_paths_in_bundle(root: str, limit: int = 256, scan: int = 4096) -> list[str]:
    """Compiled scripts in a `.scptd` bundle or applet: main.scpt first, then the rest by name.

    Only Contents/Resources/Scripts itself is listed (no recursion), and at most `scan` entries of it
    are looked at, so a planted directory of a million files costs little.
    """
    scripts_dir = os.path.join(root, "Contents", "Resources", "Scripts")
    found: list[tuple[bool, str, str]] = []
    try:
        with os.scandir(scripts_dir) as it:
            for seen, entry in enumerate(it):
                if seen >= scan:
                    break
                if not entry.name.endswith(".scpt"):
                    continue
                try:
                    if entry.is_file():
                        found.append((entry.name != "main.scpt", entry.name, entry.path))
                except OSError:
                    continue
    except OSError:
        return []
    found.sort()
    return [path for _, _, path in found[:limit]]

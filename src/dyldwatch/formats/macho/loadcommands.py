"""Fat headers, Mach-O headers and load commands: the cheap, bounded part of parsing.

Only the fat header, each slice's mach header and its `sizeofcmds` bytes are read, so this runs
over whole directories on a schedule. Every count, size and offset in the file is checked before
it is used; a malformed file raises MachOError naming the problem and its file offset.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable

from ..source import ByteSource
from . import constants as C
from .model import LoadCommand, MachHeader, MachOError, MachOSlice, Sections, SliceRef, _cname

#: More slices than this is not a real universal binary (Java class files share FAT_MAGIC).
MAX_FAT_ARCHS = 64
#: Load-command areas larger than this are refused (real ones are a few KiB; the kernel caps far lower).
MAX_SIZEOFCMDS = 16 << 20
#: An lc_str or name is decoded leniently: bytes that are not UTF-8 come out as \\xNN escapes.
_TEXT_ERRORS = "backslashreplace"

_FAT_HEADER = struct.Struct(">2I")
_FAT_ARCH = struct.Struct(">5I")
_FAT_ARCH_64 = struct.Struct(">2I2Q2I")
_U32_LE = struct.Struct("<I")
_U32_BE = struct.Struct(">I")

_THIN_MAGICS = {
    # magic as read little-endian -> (is64, big_endian)
    C.MH_MAGIC: (False, False),
    C.MH_MAGIC_64: (True, False),
    C.MH_CIGAM: (False, True),
    C.MH_CIGAM_64: (True, True),
}


class _Structs:
    """Precompiled struct layouts for one byte order, so the hot loop never parses a format."""

    __slots__ = ("header", "lc", "u32", "dylib", "seg32", "seg64", "sect32", "sect64", "symtab", "dysymtab",
                 "linkedit", "dyld_info", "main", "build", "tool", "vmin", "enc", "srcver", "note", "fileset",
                 "fvmlib")

    def __init__(self, e: str) -> None:
        self.header = struct.Struct(e + "7I")  # magic cputype cpusubtype filetype ncmds sizeofcmds flags
        self.lc = struct.Struct(e + "2I")
        self.u32 = struct.Struct(e + "I")
        self.dylib = struct.Struct(e + "4I")  # name offset, timestamp, current, compatibility
        self.seg32 = struct.Struct(e + "16s4I2i2I")
        self.seg64 = struct.Struct(e + "16s4Q2i2I")
        self.sect32 = struct.Struct(e + "16s16s9I")
        self.sect64 = struct.Struct(e + "16s16s2Q8I")
        self.symtab = struct.Struct(e + "4I")
        self.dysymtab = struct.Struct(e + "18I")
        self.linkedit = struct.Struct(e + "2I")
        self.dyld_info = struct.Struct(e + "10I")
        self.main = struct.Struct(e + "2Q")
        self.build = struct.Struct(e + "4I")
        self.tool = struct.Struct(e + "2I")
        self.vmin = struct.Struct(e + "2I")
        self.enc = struct.Struct(e + "3I")
        self.srcver = struct.Struct(e + "Q")
        self.note = struct.Struct(e + "16s2Q")
        self.fileset = struct.Struct(e + "2Q2I")
        self.fvmlib = struct.Struct(e + "3I")


_LE = _Structs("<")
_BE = _Structs(">")


@functools.lru_cache(maxsize=4096)
def version_string(v: int) -> str:
    """A packed X.Y.Z version (xxxx.yy.zz nibbles, as dylib and platform versions use). Cached: a
    walk meets the same few versions (libSystem's, 1.0.0) in most of its files."""
    return f"{v >> 16}.{(v >> 8) & 0xFF}.{v & 0xFF}"


def source_version_string(v: int) -> str:
    """LC_SOURCE_VERSION's A.B.C.D.E packed into 24/10/10/10/10 bits."""
    return f"{v >> 40}.{(v >> 30) & 0x3FF}.{(v >> 20) & 0x3FF}.{(v >> 10) & 0x3FF}.{v & 0x3FF}"


def uuid_string(raw: bytes) -> str:
    h = raw.hex().upper()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


# --- slices ------------------------------------------------------------------------------


def read_slices(src: ByteSource) -> list[SliceRef]:
    """The architecture slices of a thin or fat (universal) file, validated against the file size."""
    head = src.read(0, 32)
    if len(head) < 4:
        raise MachOError(f"file too short for a Mach-O header ({len(head)} bytes)", 0)
    (magic_be,) = _U32_BE.unpack_from(head)
    if magic_be in (C.FAT_MAGIC, C.FAT_MAGIC_64):
        return _fat_slices(src, head, magic_be == C.FAT_MAGIC_64)
    (magic,) = _U32_LE.unpack_from(head)
    kind = _THIN_MAGICS.get(magic)
    if kind is None:
        raise MachOError(f"not a Mach-O file (magic {head[:4].hex()})", 0)
    is64, big = kind
    if len(head) < (32 if is64 else 28):
        raise MachOError(f"file too short for a Mach-O header ({len(head)} bytes)", 0)
    st = _BE if big else _LE
    _, cputype, cpusubtype, *_ = st.header.unpack_from(head)
    return [SliceRef(C.arch_name(cputype, cpusubtype), 0, src.size, cputype, cpusubtype, False)]


def _fat_slices(src: ByteSource, head: bytes, is64: bool) -> list[SliceRef]:
    if len(head) < 8:
        raise MachOError("file too short for a fat header", 0)
    _, nfat = _FAT_HEADER.unpack_from(head)
    java = " (a Java class file shares the 0xCAFEBABE magic?)" if not is64 and nfat >= 40 else ""
    if nfat == 0:
        raise MachOError("fat header lists no architectures", 4)
    if nfat > MAX_FAT_ARCHS:
        raise MachOError(f"not a Mach-O: fat header claims {nfat} architectures (limit {MAX_FAT_ARCHS}){java}", 4)
    layout = _FAT_ARCH_64 if is64 else _FAT_ARCH
    table_end = 8 + nfat * layout.size
    table = src.read(8, nfat * layout.size)
    if len(table) < nfat * layout.size:
        raise MachOError(f"fat header lists {nfat} architectures but the file ends inside the table{java}", 8)
    refs: list[SliceRef] = []
    for i in range(nfat):
        at = 8 + i * layout.size
        if is64:
            cputype, cpusubtype, offset, size, align, _ = layout.unpack_from(table, i * layout.size)
        else:
            cputype, cpusubtype, offset, size, align = layout.unpack_from(table, i * layout.size)
        arch = C.arch_name(cputype, cpusubtype)
        if size == 0:
            raise MachOError(f"fat slice {i} ({arch}) is empty{java}", at)
        if offset < table_end:
            raise MachOError(f"fat slice {i} ({arch}) at offset {offset:#x} overlaps the fat header{java}", at)
        if offset + size > src.size:
            raise MachOError(
                f"fat slice {i} ({arch}) at {offset:#x}+{size:#x} runs past the end of the file "
                f"({src.size:#x} bytes){java}", at)
        refs.append(SliceRef(arch, offset, size, cputype, cpusubtype, True, align))
    ordered = sorted(refs, key=lambda r: r.offset)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b.offset < a.offset + a.size:
            raise MachOError(f"fat slices {a.arch} and {b.arch} overlap at offset {b.offset:#x}", b.offset)
    return refs


# --- load commands ------------------------------------------------------------------------

_Decoder = Callable[[LoadCommand, bytes, int, int, _Structs, bool], None]


class _Bad(Exception):
    """A decoder's complaint, with the byte position (in the command buffer) it is about."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def _lcstr(buf: bytes, pos: int, size: int, stroff: int, fixed: int) -> str:
    """The NUL-terminated string an lc_str offset points at, kept inside its command."""
    if stroff < fixed or stroff >= size:
        raise _Bad(f"string offset {stroff} lies outside its data (must be in {fixed}..{size - 1})", pos)
    start = pos + stroff
    end = buf.find(b"\0", start, pos + size)
    if end < 0:
        end = pos + size
    return buf[start:end].decode("utf-8", _TEXT_ERRORS)


def _dec_dylib(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    stroff, timestamp, current, compat = st.dylib.unpack_from(buf, pos + 8)
    # dyld mach_o/UnsafeHeader.cpp loadCommandToDylibKind: marker + nameoff 28 means dylib_use_command
    if (timestamp == C.DYLIB_USE_MARKER and stroff == C.DYLIB_USE_COMMAND_SIZE and lc.cmd != C.LC_ID_DYLIB
            and size >= C.DYLIB_USE_COMMAND_SIZE):
        (flags,) = st.u32.unpack_from(buf, pos + 24)
        lc.name = _lcstr(buf, pos, size, stroff, C.DYLIB_USE_COMMAND_SIZE)
        lc.current_version = version_string(current)
        lc.compatibility_version = version_string(compat)
        lc.weak = bool(flags & C.DYLIB_USE_WEAK_LINK)
        names = [n for bit, n in C.DYLIB_USE_FLAG_NAMES.items() if flags & bit]
        names += [f"{1 << b:#x}" for b in range(32) if flags & (1 << b) and (1 << b) not in C.DYLIB_USE_FLAG_NAMES]
        lc.data = {"format": "dylib_use_command", "marker": timestamp, "flags": flags, "use_flags": names}
        return
    lc.name = _lcstr(buf, pos, size, stroff, 24)
    lc.current_version = version_string(current)
    lc.compatibility_version = version_string(compat)
    lc.weak = lc.cmd == C.LC_LOAD_WEAK_DYLIB
    lc.data = {"timestamp": timestamp}


def _dec_str(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    (stroff,) = st.u32.unpack_from(buf, pos + 8)
    lc.name = _lcstr(buf, pos, size, stroff, 12)


def _dec_fvmlib(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    stroff, minor, header_addr = st.fvmlib.unpack_from(buf, pos + 8)
    lc.name = _lcstr(buf, pos, size, stroff, 20)
    lc.data = {"minor_version": minor, "header_addr": header_addr}


def _seg_layouts(lc: LoadCommand, st: _Structs) -> tuple[struct.Struct, struct.Struct, int]:
    return (st.seg64, st.sect64, 72) if lc.cmd == C.LC_SEGMENT_64 else (st.seg32, st.sect32, 56)


#: Segment names as the raw 16-byte field holds them: a handful of names fill every binary.
_SEGNAMES: dict[bytes, str] = {}


def _check_segment(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    """The segment's name, and that its sections fit (the rest is decoded when `data` is read)."""
    if lc.cmd == C.LC_SEGMENT_64:
        (nsects,) = st.u32.unpack_from(buf, pos + 64)  # segname[16], 4 u64, 2 vm_prot_t, then nsects
        fixed, sect_size = 72, 80
    else:
        seg, sect, fixed = _seg_layouts(lc, st)
        nsects = seg.unpack_from(buf, pos + 8)[7]
        sect_size = sect.size
    if fixed + nsects * sect_size > size:
        raise _Bad(f"{lc.cmd_name} claims {nsects} sections, more than its cmdsize {size} holds", pos)
    raw = buf[pos + 8 : pos + 24]
    name = _SEGNAMES.get(raw)
    if name is None:
        name = _cname(raw)
        if len(_SEGNAMES) < 256:
            _SEGNAMES[raw] = name
    lc.name = name


def _dec_segment(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    seg, sect, fixed = _seg_layouts(lc, st)
    segname, vmaddr, vmsize, fileoff, filesize, maxprot, initprot, nsects, flags = seg.unpack_from(buf, pos + 8)
    if fixed + nsects * sect.size > size:
        raise _Bad(f"{lc.cmd_name} claims {nsects} sections, more than its cmdsize {size} holds", pos)
    start = pos + fixed
    sections = Sections(buf[start : start + nsects * sect.size], sect, nsects)
    lc.name = _cname(segname)
    lc.data = {
        "segname": lc.name, "vmaddr": vmaddr, "vmsize": vmsize, "fileoff": fileoff, "filesize": filesize,
        "maxprot": maxprot, "initprot": initprot, "flags": flags, "sections": sections,
    }


def _dec_symtab(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    symoff, nsyms, stroff, strsize = st.symtab.unpack_from(buf, pos + 8)
    lc.data = {"symoff": symoff, "nsyms": nsyms, "stroff": stroff, "strsize": strsize}


_DYSYMTAB_FIELDS = ("ilocalsym", "nlocalsym", "iextdefsym", "nextdefsym", "iundefsym", "nundefsym", "tocoff",
                    "ntoc", "modtaboff", "nmodtab", "extrefsymoff", "nextrefsyms", "indirectsymoff",
                    "nindirectsyms", "extreloff", "nextrel", "locreloff", "nlocrel")
_DYLD_INFO_FIELDS = ("rebase_off", "rebase_size", "bind_off", "bind_size", "weak_bind_off", "weak_bind_size",
                     "lazy_bind_off", "lazy_bind_size", "export_off", "export_size")


def _dec_dysymtab(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    lc.data = dict(zip(_DYSYMTAB_FIELDS, st.dysymtab.unpack_from(buf, pos + 8), strict=True))


def _dec_dyld_info(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    lc.data = dict(zip(_DYLD_INFO_FIELDS, st.dyld_info.unpack_from(buf, pos + 8), strict=True))


def _dec_linkedit(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    dataoff, datasize = st.linkedit.unpack_from(buf, pos + 8)
    lc.data = {"dataoff": dataoff, "datasize": datasize}


def _dec_main(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    entryoff, stacksize = st.main.unpack_from(buf, pos + 8)
    lc.data = {"entryoff": entryoff, "stacksize": stacksize}


def _check_build(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    ntools = st.build.unpack_from(buf, pos + 8)[3]
    if 24 + ntools * 8 > size:
        raise _Bad(f"LC_BUILD_VERSION claims {ntools} tools, more than its cmdsize {size} holds", pos)


def _dec_build(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    platform, minos, sdk, ntools = st.build.unpack_from(buf, pos + 8)
    if 24 + ntools * 8 > size:
        raise _Bad(f"LC_BUILD_VERSION claims {ntools} tools, more than its cmdsize {size} holds", pos)
    tools = []
    for k in range(ntools):
        tool, version = st.tool.unpack_from(buf, pos + 24 + 8 * k)
        tools.append({"tool": C.TOOL_NAMES.get(tool, str(tool)), "version": version_string(version)})
    lc.data = {
        "platform": C.PLATFORM_NAMES.get(platform, str(platform)), "platform_id": platform,
        "minos": version_string(minos), "sdk": version_string(sdk), "tools": tools,
    }


def _dec_version_min(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    version, sdk = st.vmin.unpack_from(buf, pos + 8)
    lc.data = {"platform": C.VERSION_MIN_PLATFORMS[lc.cmd], "min_os": version_string(version),
               "sdk": version_string(sdk)}


def _dec_uuid(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    lc.data = {"uuid": uuid_string(buf[pos + 8 : pos + 24])}


def _dec_encryption(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    cryptoff, cryptsize, cryptid = st.enc.unpack_from(buf, pos + 8)
    lc.data = {"cryptoff": cryptoff, "cryptsize": cryptsize, "cryptid": cryptid}


def _dec_source_version(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    (v,) = st.srcver.unpack_from(buf, pos + 8)
    lc.data = {"version": source_version_string(v)}


def _dec_note(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    owner, offset, nsize = st.note.unpack_from(buf, pos + 8)
    lc.name = _cname(owner)
    lc.data = {"data_owner": lc.name, "offset": offset, "size": nsize}


def _dec_fileset(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    vmaddr, fileoff, stroff, _ = st.fileset.unpack_from(buf, pos + 8)
    lc.name = _lcstr(buf, pos, size, stroff, 32)
    lc.data = {"vmaddr": vmaddr, "fileoff": fileoff}


def _dec_linker_option(lc: LoadCommand, buf: bytes, pos: int, size: int, st: _Structs, is64: bool) -> None:
    (count,) = st.u32.unpack_from(buf, pos + 8)
    parts = buf[pos + 12 : pos + size].split(b"\0")
    options = [p.decode("utf-8", _TEXT_ERRORS) for p in parts[: min(count, len(parts))]]
    lc.data = {"count": count, "options": options}


#: cmd -> (smallest valid cmdsize, decoder)
_DECODERS: dict[int, tuple[int, _Decoder]] = {
    **{c: (24, _dec_dylib) for c in C.DYLIB_CMDS},
    **{c: (12, _dec_str) for c in C.STR_CMDS},
    **{c: (16, _dec_linkedit) for c in C.LINKEDIT_DATA_CMDS},
    **{c: (16, _dec_version_min) for c in C.VERSION_MIN_PLATFORMS},
    C.LC_LOADFVMLIB: (20, _dec_fvmlib),
    C.LC_IDFVMLIB: (20, _dec_fvmlib),
    C.LC_PREBOUND_DYLIB: (20, _dec_str),
    C.LC_SEGMENT: (56, _dec_segment),
    C.LC_SEGMENT_64: (72, _dec_segment),
    C.LC_SYMTAB: (24, _dec_symtab),
    C.LC_DYSYMTAB: (80, _dec_dysymtab),
    C.LC_DYLD_INFO: (48, _dec_dyld_info),
    C.LC_DYLD_INFO_ONLY: (48, _dec_dyld_info),
    C.LC_MAIN: (24, _dec_main),
    C.LC_BUILD_VERSION: (24, _dec_build),
    C.LC_UUID: (24, _dec_uuid),
    C.LC_ENCRYPTION_INFO: (20, _dec_encryption),
    C.LC_ENCRYPTION_INFO_64: (24, _dec_encryption),
    C.LC_SOURCE_VERSION: (16, _dec_source_version),
    C.LC_NOTE: (40, _dec_note),
    C.LC_FILESET_ENTRY: (32, _dec_fileset),
    C.LC_LINKER_OPTION: (12, _dec_linker_option),
}


#: Decoders that only fill `data` from fixed fields (nothing in them can be wrong once cmdsize is
#: checked), and the checks that must run at parse time for the rest of a deferred decoder: these
#: run when `data` is first read. Decoders that set `name` or versions run at parse time.
_DEFERRED: dict[_Decoder, _Decoder | None] = {
    _dec_segment: _check_segment, _dec_build: _check_build,
    **dict.fromkeys((_dec_symtab, _dec_dysymtab, _dec_dyld_info, _dec_linkedit, _dec_main, _dec_version_min,
                     _dec_uuid, _dec_encryption, _dec_source_version, _dec_linker_option)),
}


def _spec(cmd: int, name: str) -> tuple[str, int, _Decoder | None, _Decoder | None]:
    minsize, decode = _DECODERS.get(cmd, (8, None))
    if decode in _DEFERRED:
        return name, minsize, _DEFERRED[decode], decode
    return name, minsize, decode, None


#: cmd -> (name, smallest valid cmdsize, decoder run at parse time or None, decoder deferred until
#: `data` is read or None): one lookup per command in the hot loop.
_SPECS: dict[int, tuple[str, int, _Decoder | None, _Decoder | None]] = {
    cmd: _spec(cmd, name) for cmd, name in C.LC_NAMES.items()
}


class _CommandArea:
    """A slice's load-command bytes, kept for the commands whose `data` is decoded when first read:
    one per slice, shared by its commands (a command finds its bytes from its offset and size)."""

    __slots__ = ("buf", "base", "st", "is64")

    def __init__(self, buf: bytes, base: int, st: _Structs, is64: bool) -> None:
        self.buf = buf
        self.base = base
        self.st = st
        self.is64 = is64

    def decode(self, lc: LoadCommand) -> None:
        deferred = _SPECS[lc.cmd][3]
        assert deferred is not None
        deferred(lc, self.buf, lc.offset - self.base, lc.cmd_size, self.st, self.is64)


def build_target(lc: LoadCommand) -> tuple[str | None, str | None]:
    """(sdk, platform) of an LC_BUILD_VERSION or LC_VERSION_MIN_* command, as its `data` gives them,
    read from the fixed fields alone when `data` is not decoded yet (the tool list is left)."""
    area = lc._lazy
    if not isinstance(area, _CommandArea):
        data = lc.data
        return (data["sdk"], data["platform"]) if data else (None, None)
    pos = lc.offset - area.base
    if lc.cmd == C.LC_BUILD_VERSION:
        platform, _, sdk, _ = area.st.build.unpack_from(area.buf, pos + 8)
        return version_string(sdk), C.PLATFORM_NAMES.get(platform, str(platform))
    _, sdk = area.st.vmin.unpack_from(area.buf, pos + 8)
    return version_string(sdk), C.VERSION_MIN_PLATFORMS[lc.cmd]


def _bad_cmdsize(i: int, cmd: int, cmdsize: int, pos: int, sizeofcmds: int) -> None:
    name = C.lc_name(cmd)
    if cmdsize < 8 or cmdsize & 3:
        raise _Bad(f"load command {i} ({name}) has invalid cmdsize {cmdsize} "
                   "(must be at least 8 and a multiple of 4)", pos)
    raise _Bad(f"load command {i} ({name}) cmdsize {cmdsize} runs past sizeofcmds ({sizeofcmds})", pos)


def read_header(src: ByteSource, ref: SliceRef) -> MachHeader:
    """The mach_header(_64) at the start of a slice, with its command area checked against the slice."""
    raw = src.read(ref.offset, 32)
    if len(raw) < 4:
        raise MachOError(f"slice {ref.arch} is truncated before its Mach-O header", ref.offset)
    (magic,) = _U32_LE.unpack_from(raw)
    kind = _THIN_MAGICS.get(magic)
    if kind is None:
        if raw[:4] in (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"):
            raise MachOError(f"slice {ref.arch} is itself a fat file (nested fat is not valid)", ref.offset)
        raise MachOError(f"slice {ref.arch} does not start with a Mach-O magic ({raw[:4].hex()})", ref.offset)
    is64, big = kind
    hsize = 32 if is64 else 28
    if len(raw) < hsize or ref.size < hsize:
        raise MachOError(f"slice {ref.arch} is truncated inside its Mach-O header", ref.offset)
    st = _BE if big else _LE
    _, cputype, cpusubtype, filetype, ncmds, sizeofcmds, flags = st.header.unpack_from(raw)
    if sizeofcmds > MAX_SIZEOFCMDS:
        raise MachOError(f"sizeofcmds {sizeofcmds} is implausibly large (limit {MAX_SIZEOFCMDS})", ref.offset + 20)
    if hsize + sizeofcmds > ref.size:
        raise MachOError(
            f"load commands (sizeofcmds {sizeofcmds}) run past the end of the slice ({ref.size} bytes)",
            ref.offset + 20)
    if ncmds * 8 > sizeofcmds:
        raise MachOError(f"ncmds {ncmds} cannot fit in sizeofcmds {sizeofcmds} (8 bytes each at least)",
                         ref.offset + 16)
    return MachHeader(magic, is64, big, cputype, cpusubtype, filetype, flags, ncmds, sizeofcmds)


def read_load_commands(src: ByteSource, ref: SliceRef) -> MachOSlice:
    """The header and every load command of one slice, decoded.

    A malformed command raises MachOError whose `partial` holds the commands before it.
    """
    header = read_header(src, ref)
    hsize = header.size
    sizeofcmds = header.sizeofcmds
    base = ref.offset + hsize
    buf = src.read(base, sizeofcmds)
    if len(buf) < sizeofcmds:
        raise MachOError(f"file ends inside the load commands ({len(buf)} of {sizeofcmds} bytes)", base + len(buf))
    st = _BE if header.big_endian else _LE
    unpack_lc = st.lc.unpack_from
    specs = _SPECS
    is64 = header.is64
    area = _CommandArea(buf, base, st, is64)
    commands: list[LoadCommand] = []
    append = commands.append
    pos = 0
    try:
        for i in range(header.ncmds):
            if pos + 8 > sizeofcmds:
                raise _Bad(f"load command {i} starts past the end of sizeofcmds ({sizeofcmds})", pos)
            cmd, cmdsize = unpack_lc(buf, pos)
            spec = specs.get(cmd)
            if cmdsize < 8 or cmdsize & 3 or pos + cmdsize > sizeofcmds:
                _bad_cmdsize(i, cmd, cmdsize, pos, sizeofcmds)
            if spec is None:
                append(LoadCommand(i, cmd, f"LC_{cmd:#x}", cmdsize, base + pos))
            else:
                name, minsize, decode, deferred = spec
                lc = LoadCommand(i, cmd, name, cmdsize, base + pos)
                if cmdsize < minsize:
                    raise _Bad(f"load command {i} ({name}) cmdsize {cmdsize} is smaller than its structure "
                               f"({minsize} bytes)", pos)
                if decode is not None:
                    decode(lc, buf, pos, cmdsize, st, is64)
                if deferred is not None:
                    lc._lazy = area
                append(lc)
            pos += cmdsize
    except _Bad as bad:
        partial = MachOSlice(ref, header, tuple(commands))
        raise MachOError(bad.message, base + bad.pos, partial) from None
    return MachOSlice(ref, header, tuple(commands))


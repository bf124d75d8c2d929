"""A small Mach-O writer (scenario fixtures and tests): thin 32/64-bit files in either byte order, and fat wrappers.

No third-party binaries are committed; tests build exactly the structures they need here. Normal
output is accepted by LIEF (tests/test_macho_loadcommands.py checks that), which keeps the writer
honest. Hooks for hostile inputs: raw load-command bytes, lying ncmds/sizeofcmds, lc_str offsets.

Layout (what ld64 does, minus its padding): __PAGEZERO (executables), __TEXT from file offset 0
holding the header, load commands, __text and __cstring; extra segments; __LINKEDIT holding the
chained-fixups blob, the symbol table, the string table and last, 16-byte aligned, the code
signature, so a signature blob sits at the very end of the slice as codesign puts it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import constants as C

Version = str | tuple[int, int, int] | int
Producer = Callable[["Layout | None"], bytes]


def pack_version(v: Version) -> int:
    """'X.Y.Z' (or a tuple) packed as X<<16 | Y<<8 | Z."""
    if isinstance(v, int):
        return v
    parts = [int(p) for p in v.split(".")] if isinstance(v, str) else list(v)
    parts += [0] * (3 - len(parts))
    return (parts[0] << 16) | (parts[1] << 8) | parts[2]


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _name16(s: str) -> bytes:
    raw = s.encode()
    assert len(raw) <= 16, s
    return raw.ljust(16, b"\0")


@dataclass
class Sym:
    """One nlist entry; `n_type` defaults to a defined external (N_SECT | N_EXT)."""

    name: str
    n_type: int = C.N_SECT | C.N_EXT
    n_sect: int = 1
    n_desc: int = 0
    n_value: int = 0


@dataclass
class Segment:
    name: str
    data: bytes = b""
    initprot: int = C.VM_PROT_READ
    maxprot: int = C.VM_PROT_READ


@dataclass
class Layout:
    """File offsets decided at build time, relative to the slice start."""

    text_fileoff: int = 0
    text_filesize: int = 0
    text_sect_off: int = 0
    cstring_off: int = 0
    segments: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (fileoff, filesize)
    linkedit: tuple[int, int] = (0, 0)
    chained: tuple[int, int] = (0, 0)
    symoff: int = 0
    stroff: int = 0
    strsize: int = 0
    sig: tuple[int, int] = (0, 0)
    base: int = 0


class MachOWriter:
    """Collects load commands and contents, then lays out and writes one thin Mach-O slice."""

    def __init__(
        self,
        *,
        is64: bool = True,
        big_endian: bool = False,
        cputype: int | None = None,
        cpusubtype: int | None = None,
        filetype: int = C.MH_EXECUTE,
        flags: int = 0x00200085,  # NOUNDEFS | DYLDLINK | TWOLEVEL | PIE
        page_size: int = 0x1000,
        pagezero: bool | None = None,
    ) -> None:
        self.is64 = is64
        self.big_endian = big_endian
        self.e = ">" if big_endian else "<"
        if cputype is None:
            cputype = (C.CPU_TYPE_POWERPC64 if is64 else C.CPU_TYPE_POWERPC) if big_endian else (
                C.CPU_TYPE_ARM64 if is64 else C.CPU_TYPE_X86)
        if cpusubtype is None:
            cpusubtype = C.CPU_SUBTYPE_X86_ALL if cputype in (C.CPU_TYPE_X86, C.CPU_TYPE_X86_64) else 0
        self.cputype = cputype
        self.cpusubtype = cpusubtype
        self.filetype = filetype
        self.flags = flags
        self.page = page_size
        self.pagezero = (filetype == C.MH_EXECUTE) if pagezero is None else pagezero
        self.text = b"\x1f\x20\x03\xd5" * 4  # a few nops
        self.cstrings: bytes | None = None
        self.segments: list[Segment] = []
        self.symbols: list[Sym] | None = None
        self.with_dysymtab = True
        self.chained_imports: list[str] | None = None
        self.signature: bytes | None = None
        self.with_linkedit = True
        self.commands: list[Producer] = []
        self.ncmds_override: int | None = None
        self.sizeofcmds_override: int | None = None
        self.trailer = b""

    # --- contents ---------------------------------------------------------------------------------
    def set_text(self, code: bytes, cstrings: Sequence[str | bytes] | bytes | None = None) -> MachOWriter:
        """__text bytes, and __cstring as a list of strings (NUL added) or raw section bytes."""
        self.text = code
        if cstrings is None or isinstance(cstrings, bytes):
            self.cstrings = cstrings
        else:
            self.cstrings = b"".join((s.encode() if isinstance(s, str) else s) + b"\0" for s in cstrings)
        return self

    def add_segment(self, name: str, data: bytes = b"", *, initprot: int = 1, maxprot: int = 1) -> MachOWriter:
        self.segments.append(Segment(name, data, initprot, maxprot))
        return self

    def set_symbols(self, symbols: Sequence[Sym], *, dysymtab: bool = True) -> MachOWriter:
        """An nlist table (sorted locals, defined externals, undefined, as LC_DYSYMTAB needs)."""
        self.symbols = list(symbols)
        self.with_dysymtab = dysymtab
        return self

    def set_chained_fixups(self, imports: int | Sequence[str]) -> MachOWriter:
        """An LC_DYLD_CHAINED_FIXUPS blob with these imports (no fixup chains)."""
        self.chained_imports = [f"_import{i}" for i in range(imports)] if isinstance(imports, int) else list(imports)
        return self

    def set_code_signature(self, blob: bytes) -> MachOWriter:
        """Embed a signature blob at the end of the slice with LC_CODE_SIGNATURE pointing at it."""
        self.signature = bytes(blob)
        return self

    # --- load commands ----------------------------------------------------------------------------
    def _pad(self, body: bytes) -> bytes:
        return body.ljust(_align(len(body), 8 if self.is64 else 4), b"\0")

    def _cmd(self, cmd: int, body: bytes, cmdsize: int | None = None) -> bytes:
        raw = self._pad(struct.pack(self.e + "2I", cmd, 0) + body)
        size = len(raw) if cmdsize is None else cmdsize
        return struct.pack(self.e + "2I", cmd, size) + raw[8:]

    def add_command(self, cmd: int, body: bytes = b"", *, cmdsize: int | None = None) -> MachOWriter:
        """Any command: cmd, cmdsize (computed unless given), then `body`, padded."""
        raw = self._cmd(cmd, body, cmdsize)
        self.commands.append(lambda _l: raw)
        return self

    def add_raw(self, raw: bytes) -> MachOWriter:
        """Bytes placed verbatim in the load-command area (counted in ncmds)."""
        self.commands.append(lambda _l: raw)
        return self

    def _str_cmd(self, cmd: int, fixed: bytes, s: str | bytes, name_offset: int | None) -> bytes:
        raw = s.encode() if isinstance(s, str) else s
        off = 8 + 4 + len(fixed) if name_offset is None else name_offset
        return self._cmd(cmd, struct.pack(self.e + "I", off) + fixed + raw + b"\0")

    def add_dylib(self, name: str | bytes, kind: int = C.LC_LOAD_DYLIB, *, current: Version = "1.0.0",
                  compat: Version = "1.0.0", timestamp: int = 2, name_offset: int | None = None) -> MachOWriter:
        fixed = struct.pack(self.e + "3I", timestamp, pack_version(current), pack_version(compat))
        return self.add_raw(self._str_cmd(kind, fixed, name, name_offset))

    def add_rpath(self, path: str | bytes) -> MachOWriter:
        return self.add_raw(self._str_cmd(C.LC_RPATH, b"", path, None))

    def add_dylinker(self, path: str = "/usr/lib/dyld", cmd: int = C.LC_LOAD_DYLINKER) -> MachOWriter:
        return self.add_raw(self._str_cmd(cmd, b"", path, None))

    def add_dyld_environment(self, value: str) -> MachOWriter:
        return self.add_raw(self._str_cmd(C.LC_DYLD_ENVIRONMENT, b"", value, None))

    def add_main(self, entryoff: int | None = None, stacksize: int = 0) -> MachOWriter:
        def produce(lay: Layout | None) -> bytes:
            off = entryoff if entryoff is not None else (lay.text_sect_off if lay else 0)
            return self._cmd(C.LC_MAIN, struct.pack(self.e + "2Q", off, stacksize))
        self.commands.append(produce)
        return self

    def add_build_version(self, platform: int = 1, minos: Version = "11.0.0", sdk: Version = "14.0.0",
                          tools: Sequence[tuple[int, Version]] = ((3, "1053.12.0"),)) -> MachOWriter:
        body = struct.pack(self.e + "4I", platform, pack_version(minos), pack_version(sdk), len(tools))
        body += b"".join(struct.pack(self.e + "2I", t, pack_version(v)) for t, v in tools)
        return self.add_command(C.LC_BUILD_VERSION, body)

    def add_version_min(self, cmd: int = C.LC_VERSION_MIN_MACOSX, version: Version = "10.13.0",
                        sdk: Version = "14.2.0") -> MachOWriter:
        return self.add_command(cmd, struct.pack(self.e + "2I", pack_version(version), pack_version(sdk)))

    def add_uuid(self, uuid: bytes) -> MachOWriter:
        assert len(uuid) == 16
        return self.add_command(C.LC_UUID, uuid)

    def add_source_version(self, packed: int) -> MachOWriter:
        return self.add_command(C.LC_SOURCE_VERSION, struct.pack(self.e + "Q", packed))

    def add_encryption_info(self, cryptoff: int = 0x4000, cryptsize: int = 0x1000, cryptid: int = 1,
                            *, is64: bool | None = None) -> MachOWriter:
        wide = self.is64 if is64 is None else is64
        cmd = C.LC_ENCRYPTION_INFO_64 if wide else C.LC_ENCRYPTION_INFO
        body = struct.pack(self.e + "3I", cryptoff, cryptsize, cryptid) + (b"\0" * 4 if wide else b"")
        return self.add_raw(struct.pack(self.e + "2I", cmd, 8 + len(body)) + body)

    # --- build ------------------------------------------------------------------------------------
    def _segment_cmd(self, name: str, vmaddr: int, vmsize: int, fileoff: int, filesize: int, maxprot: int,
                     initprot: int, sections: Sequence[tuple[str, int, int, int, int]] = ()) -> bytes:
        """sections: (sectname, offset, size, align, flags); addresses follow the segment's mapping."""
        e = self.e
        if self.is64:
            head = struct.pack(e + "16s4Q2i2I", _name16(name), vmaddr, vmsize, fileoff, filesize, maxprot,
                               initprot, len(sections), 0)
            secs = b"".join(
                struct.pack(e + "16s16s2Q8I", _name16(s), _name16(name), vmaddr + off - fileoff, size, off, al, 0,
                            0, fl, 0, 0, 0)
                for s, off, size, al, fl in sections)
            cmd = C.LC_SEGMENT_64
        else:
            head = struct.pack(e + "16s4I2i2I", _name16(name), vmaddr, vmsize, fileoff, filesize, maxprot,
                               initprot, len(sections), 0)
            secs = b"".join(
                struct.pack(e + "16s16s9I", _name16(s), _name16(name), vmaddr + off - fileoff, size, off, al, 0,
                            0, fl, 0, 0)
                for s, off, size, al, fl in sections)
            cmd = C.LC_SEGMENT
        return self._cmd(cmd, head + secs)

    def _vm(self, lay: Layout, fileoff: int, filesize: int) -> tuple[int, int]:
        return lay.base + fileoff, _align(max(filesize, 1), self.page)

    def _sorted_symbols(self) -> tuple[list[Sym], int, int, int]:
        syms = self.symbols or []
        locals_ = [s for s in syms if not s.n_type & C.N_EXT]
        undef = [s for s in syms if s.n_type & C.N_EXT and (s.n_type & C.N_TYPE) == C.N_UNDF]
        extdef = [s for s in syms if s.n_type & C.N_EXT and (s.n_type & C.N_TYPE) != C.N_UNDF]
        return locals_ + extdef + undef, len(locals_), len(extdef), len(undef)

    def _linkedit_blobs(self) -> tuple[bytes, bytes, bytes]:
        """(chained fixups blob, nlist table, string table)."""
        e = self.e
        chained = b""
        if self.chained_imports is not None:
            nseg = 1 + len(self.segments) + int(self.pagezero) + int(self.with_linkedit)
            starts = struct.pack(e + "I", nseg) + b"\0" * 4 * nseg
            pool = b"\0"
            entries = []
            has_dylib = any(self._is_dylib_producer(p) for p in self.commands)
            for name in self.chained_imports:
                entries.append(((1 if has_dylib else 0xFE) & 0xFF) | (len(pool) << 9))
                pool += name.encode() + b"\0"
            starts_off = 32
            imports_off = _align(starts_off + len(starts), 4)
            symbols_off = imports_off + 4 * len(entries)
            head = struct.pack(e + "7I", 0, starts_off, imports_off, symbols_off, len(entries), 1, 0)
            chained = (head.ljust(starts_off, b"\0") + starts).ljust(imports_off, b"\0")
            chained += b"".join(struct.pack(e + "I", x) for x in entries) + pool
            chained = chained.ljust(_align(len(chained), 8), b"\0")
        nlist = strtab = b""
        if self.symbols is not None:
            ordered, *_ = self._sorted_symbols()
            strtab = b" \0"
            fmt = e + ("IBBHQ" if self.is64 else "IBBHI")
            for s in ordered:
                nlist += struct.pack(fmt, len(strtab), s.n_type, s.n_sect, s.n_desc, s.n_value)
                strtab += s.name.encode() + b"\0"
            strtab = strtab.ljust(_align(len(strtab), 8), b"\0")
        return chained, nlist, strtab

    @staticmethod
    def _is_dylib_producer(p: Producer) -> bool:
        raw = p(None)
        return len(raw) >= 8 and (struct.unpack_from("<I", raw)[0] in C.DYLIB_CMDS
                                  or struct.unpack_from(">I", raw)[0] in C.DYLIB_CMDS)

    def _producers(self) -> list[Producer]:
        e = self.e
        out: list[Producer] = []
        if self.pagezero:
            zero = 0x100000000 if self.is64 else 0x1000
            out.append(lambda _l: self._segment_cmd("__PAGEZERO", 0, zero, 0, 0, 0, 0))

        def text(lay: Layout | None) -> bytes:
            lay = lay or Layout()
            vmaddr, vmsize = self._vm(lay, 0, lay.text_filesize)
            secs = [("__text", lay.text_sect_off, len(self.text), 2,
                     C.S_ATTR_PURE_INSTRUCTIONS | C.S_ATTR_SOME_INSTRUCTIONS)]
            if self.cstrings is not None:
                secs.append(("__cstring", lay.cstring_off, len(self.cstrings), 0, C.S_CSTRING_LITERALS))
            return self._segment_cmd("__TEXT", vmaddr, vmsize, 0, lay.text_filesize, 5, 5, secs)
        out.append(text)
        for seg in self.segments:
            def extra(lay: Layout | None, seg: Segment = seg) -> bytes:
                off, size = (lay.segments[seg.name] if lay else (0, 0))
                vmaddr, vmsize = self._vm(lay, off, size) if lay else (0, 0)
                return self._segment_cmd(seg.name, vmaddr, vmsize, off, size, seg.maxprot, seg.initprot)
            out.append(extra)
        if self.with_linkedit:
            def linkedit(lay: Layout | None) -> bytes:
                off, size = lay.linkedit if lay else (0, 0)
                vmaddr, vmsize = self._vm(lay, off, size) if lay else (0, 0)
                return self._segment_cmd("__LINKEDIT", vmaddr, vmsize, off, size, 1, 1)
            out.append(linkedit)
        if self.chained_imports is not None:
            out.append(lambda lay: self._cmd(C.LC_DYLD_CHAINED_FIXUPS,
                                             struct.pack(e + "2I", *(lay.chained if lay else (0, 0)))))
        if self.symbols is not None:
            nsyms = len(self.symbols)
            out.append(lambda lay: self._cmd(C.LC_SYMTAB, struct.pack(
                e + "4I", lay.symoff if lay else 0, nsyms, lay.stroff if lay else 0, lay.strsize if lay else 0)))
            if self.with_dysymtab:
                _, nl, ne, nu = self._sorted_symbols()
                out.append(lambda _l: self._cmd(C.LC_DYSYMTAB, struct.pack(
                    e + "18I", 0, nl, nl, ne, nl + ne, nu, *([0] * 12))))
        out.extend(self.commands)
        if self.signature is not None:
            out.append(lambda lay: self._cmd(C.LC_CODE_SIGNATURE, struct.pack(e + "2I", *(lay.sig if lay else (0, 0)))))
        return out

    def build(self) -> bytes:
        e = self.e
        producers = self._producers()
        hsize = 32 if self.is64 else 28
        sizeofcmds = sum(len(p(None)) for p in producers)
        lay = Layout()
        lay.base = (0x100000000 if self.is64 else 0x1000) if self.pagezero else 0
        lay.text_sect_off = _align(hsize + sizeofcmds, 16)
        cur = lay.text_sect_off + len(self.text)
        if self.cstrings is not None:
            lay.cstring_off = cur
            cur += len(self.cstrings)
        lay.text_filesize = _align(cur, self.page)
        cur = lay.text_filesize
        for seg in self.segments:
            size = _align(len(seg.data), self.page) if seg.data else 0
            lay.segments[seg.name] = (cur if seg.data else 0, size)
            cur += size
        chained, nlist, strtab = self._linkedit_blobs()
        le_start = cur
        if chained:
            lay.chained = (cur, len(chained))
            cur += len(chained)
        if self.symbols is not None:
            lay.symoff = cur
            cur += len(nlist)
            lay.stroff, lay.strsize = cur, len(strtab)
            cur += len(strtab)
        if self.signature is not None:
            cur = _align(cur, 16)
            lay.sig = (cur, len(self.signature))
            cur += len(self.signature)
        lay.linkedit = (le_start, cur - le_start)

        cmds = b"".join(p(lay) for p in producers)
        assert len(cmds) == sizeofcmds
        magic = C.MH_MAGIC_64 if self.is64 else C.MH_MAGIC
        ncmds = len(producers) if self.ncmds_override is None else self.ncmds_override
        soc = sizeofcmds if self.sizeofcmds_override is None else self.sizeofcmds_override
        header = struct.pack(e + "7I", magic, self.cputype & 0xFFFFFFFF, self.cpusubtype & 0xFFFFFFFF,
                             self.filetype, ncmds, soc, self.flags)
        if self.is64:
            header += b"\0" * 4
        out = bytearray(header + cmds)
        out += b"\0" * (lay.text_sect_off - len(out))
        out += self.text
        if self.cstrings is not None:
            out += self.cstrings
        out += b"\0" * (lay.text_filesize - len(out))
        for seg in self.segments:
            if seg.data:
                out += seg.data.ljust(lay.segments[seg.name][1], b"\0")
        out += chained + nlist + strtab
        if self.signature is not None:
            out += b"\0" * (lay.sig[0] - len(out))
            out += self.signature
        return bytes(out) + self.trailer


# --- fat ------------------------------------------------------------------------------------------


def slice_cpu(data: bytes) -> tuple[int, int]:
    """(cputype, cpusubtype) from a thin slice's header."""
    e = "<" if data[:4] in (b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe") else ">"
    return struct.unpack_from(e + "2I", data, 4)


def fat_header(entries: Sequence[tuple[int, int, int, int, int]], *, magic64: bool = False,
               nfat_arch: int | None = None) -> bytes:
    """A fat header with (cputype, cpusubtype, offset, size, align) entries; nfat_arch may lie."""
    n = len(entries) if nfat_arch is None else nfat_arch
    out = struct.pack(">2I", C.FAT_MAGIC_64 if magic64 else C.FAT_MAGIC, n)
    for cputype, sub, off, size, align in entries:
        if magic64:
            out += struct.pack(">2I2Q2I", cputype & 0xFFFFFFFF, sub & 0xFFFFFFFF, off, size, align, 0)
        else:
            out += struct.pack(">5I", cputype & 0xFFFFFFFF, sub & 0xFFFFFFFF, off, size, align)
    return out


def fat(slices: Sequence[bytes], *, magic64: bool = False, align: int = 12,
        cpus: Sequence[tuple[int, int]] | None = None) -> bytes:
    """A universal file: each slice at the next 2**align boundary, CPU pairs read from the slices."""
    esz = 32 if magic64 else 20
    cur = 8 + esz * len(slices)
    entries = []
    for i, s in enumerate(slices):
        cur = _align(cur, 1 << align)
        cputype, sub = cpus[i] if cpus is not None else slice_cpu(s)
        entries.append((cputype, sub, cur, len(s), align))
        cur += len(s)
    out = bytearray(fat_header(entries, magic64=magic64))
    for (_, _, off, _, _), s in zip(entries, slices, strict=True):
        out += b"\0" * (off - len(out))
        out += s
    return bytes(out)


def sample_executable(**kw: object) -> MachOWriter:
    """A typical arm64 executable: dyld, UUID, build version, main, libSystem, an rpath, a signature."""
    w = MachOWriter(**kw)  # type: ignore[arg-type]
    w.set_text(b"\x1f\x20\x03\xd5" * 8, ["hello world", "abc", "/usr/lib/libfoo.dylib"])
    w.add_dylinker()
    w.add_uuid(bytes(range(16)))
    w.add_build_version(1, "11.0.0", "14.2.0")
    w.add_main()
    w.add_dylib("/usr/lib/libSystem.B.dylib", current="1336.61.1", compat="1.0.0")
    w.add_dylib("@rpath/libfoo.dylib", C.LC_LOAD_WEAK_DYLIB, current="2.3.4", compat="2.0.0")
    w.add_rpath("@loader_path/../Frameworks")
    w.set_symbols([Sym("_local", C.N_SECT), Sym("_main"), Sym("_printf", C.N_UNDF | C.N_EXT, 0)])
    w.set_chained_fixups(["_printf"])
    w.set_code_signature(b"\xfa\xde\x0c\xc0" + b"\0\0\0\x0c" + b"\0\0\0\0")
    return w

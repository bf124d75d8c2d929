"""Fat slices, headers and load commands: decoding, agreement with LIEF, and hostile inputs."""

from __future__ import annotations

import random
import struct

import lief
import pytest

from dyldwatch.formats.macho import (
    MachOError,
    MachOSlice,
    analyze_slice,
    lc_name,
    read_load_commands,
    read_slices,
)
from dyldwatch.formats.macho import constants as C
from dyldwatch.formats.macho.writer import MachOWriter, Sym, fat, fat_header, pack_version, sample_executable
from dyldwatch.formats.source import BytesSource

lief.logging.disable()

FLAVOURS = [
    pytest.param(dict(is64=True, big_endian=False), id="64le"),
    pytest.param(dict(is64=False, big_endian=False), id="32le"),
    pytest.param(dict(is64=True, big_endian=True), id="64be"),
    pytest.param(dict(is64=False, big_endian=True), id="32be"),
]


def parse_one(data: bytes) -> MachOSlice:
    src = BytesSource(data)
    [ref] = read_slices(src)
    return read_load_commands(src, ref)


def names(sl: MachOSlice) -> list[str]:
    return [c.cmd_name for c in sl.commands]


# --- decoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(C.DYLIB_CMDS))
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_dylib_kind(kind: int, flavour: dict) -> None:
    w = MachOWriter(filetype=C.MH_DYLIB, **flavour)
    w.add_dylib("/opt/lib/libx.dylib", kind, current="1336.61.1", compat="65535.255.255", timestamp=7)
    sl = parse_one(w.build())
    [cmd] = [c for c in sl.commands if c.cmd == kind]
    assert cmd.cmd_name == C.LC_NAMES[kind]
    assert cmd.name == "/opt/lib/libx.dylib"
    assert cmd.current_version == "1336.61.1"
    assert cmd.compatibility_version == "65535.255.255"
    assert cmd.weak is (kind == C.LC_LOAD_WEAK_DYLIB)
    assert cmd.data == {"timestamp": 7}
    assert cmd.cmd_size % (8 if flavour["is64"] else 4) == 0


def test_version_packing_and_formatting() -> None:
    w = MachOWriter()
    w.add_dylib("/a", current=(1, 2, 3), compat=0x00010203)
    [d] = [c for c in parse_one(w.build()).commands if c.cmd == C.LC_LOAD_DYLIB]
    assert d.current_version == "1.2.3"
    assert d.compatibility_version == "1.2.3"
    assert pack_version("1336.61.1") == (1336 << 16) | (61 << 8) | 1


def test_rpaths_dylinker_environment_in_order() -> None:
    w = MachOWriter()
    w.add_rpath("@loader_path/../Frameworks").add_rpath("/usr/local/lib").add_rpath("@executable_path/lib")
    w.add_dylinker("/usr/lib/dyld")
    w.add_dylinker("/usr/lib/dyld", C.LC_ID_DYLINKER)
    w.add_dyld_environment("DYLD_INSERT_LIBRARIES=/tmp/x.dylib")
    sl = parse_one(w.build())
    assert sl.rpaths == ["@loader_path/../Frameworks", "/usr/local/lib", "@executable_path/lib"]
    named = {c.cmd_name: c.name for c in sl.commands if c.cmd_name in
             ("LC_LOAD_DYLINKER", "LC_ID_DYLINKER", "LC_DYLD_ENVIRONMENT")}
    assert named == {"LC_LOAD_DYLINKER": "/usr/lib/dyld", "LC_ID_DYLINKER": "/usr/lib/dyld",
                     "LC_DYLD_ENVIRONMENT": "DYLD_INSERT_LIBRARIES=/tmp/x.dylib"}


def test_non_utf8_names_are_escaped_not_fatal() -> None:
    w = MachOWriter()
    w.add_dylib(b"/tmp/\xff\xfeevil.dylib")
    [d] = [c for c in parse_one(w.build()).commands if c.cmd == C.LC_LOAD_DYLIB]
    assert d.name == "/tmp/\\xff\\xfeevil.dylib"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_sample_executable_fields(flavour: dict) -> None:
    data = sample_executable(**flavour).build()
    sl = parse_one(data)
    h = sl.header
    assert (h.is64, h.big_endian) == (flavour["is64"], flavour["big_endian"])
    assert h.filetype_name == "execute" and "PIE" in h.flag_names
    assert h.ncmds == len(sl.commands) == 14
    assert sl.ref.arch == {(True, False): "arm64", (False, False): "i386", (True, True): "ppc64",
                           (False, True): "ppc"}[(h.is64, h.big_endian)]
    main = sl.first(C.LC_MAIN)
    text = sl.segment("__TEXT")
    assert main is not None and text is not None
    sects = {s.sectname: s for s in text.data["sections"]}
    assert main.data == {"entryoff": sects["__text"].offset, "stacksize": 0}
    assert sects["__cstring"].segname == "__TEXT"
    assert data[sects["__cstring"].offset:].startswith(b"hello world\0")
    assert text.data["fileoff"] == 0 and text.data["initprot"] == 5
    uuid = sl.first(C.LC_UUID)
    assert uuid is not None and uuid.data == {"uuid": "00010203-0405-0607-0809-0A0B0C0D0E0F"}
    bv = sl.first(C.LC_BUILD_VERSION)
    assert bv is not None and bv.data == {"platform": "macos", "platform_id": 1, "minos": "11.0.0",
                                          "sdk": "14.2.0", "tools": [{"tool": "ld", "version": "1053.12.0"}]}
    sym = sl.first(C.LC_SYMTAB)
    assert sym is not None and sym.data["nsyms"] == 3
    dys = sl.first(C.LC_DYSYMTAB)
    assert dys is not None and (dys.data["nlocalsym"], dys.data["nextdefsym"], dys.data["nundefsym"]) == (1, 1, 1)
    cs = sl.first(C.LC_CODE_SIGNATURE)
    assert cs is not None and cs.data["dataoff"] % 16 == 0
    assert cs.data["dataoff"] + cs.data["datasize"] == len(data)
    # offsets are absolute and increase by cmdsize
    for a, b in zip(sl.commands, sl.commands[1:], strict=False):
        assert b.offset == a.offset + a.cmd_size
    assert sl.commands[0].offset == h.size


@pytest.mark.parametrize(("cmd", "platform"), [
    (C.LC_VERSION_MIN_MACOSX, "macos"), (C.LC_VERSION_MIN_IPHONEOS, "ios"),
    (C.LC_VERSION_MIN_TVOS, "tvos"), (C.LC_VERSION_MIN_WATCHOS, "watchos"),
])
def test_version_min(cmd: int, platform: str) -> None:
    w = MachOWriter().add_version_min(cmd, "10.9.2", "11.3.0")
    c = parse_one(w.build()).first(cmd)
    assert c is not None and c.data == {"platform": platform, "min_os": "10.9.2", "sdk": "11.3.0"}


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(("add", "want"), [
    (lambda w: w.add_build_version(platform=1, minos="12.0.0", sdk="13.1.0"), ("13.1.0", "macos")),
    (lambda w: w.add_build_version(platform=2, sdk="16.4.0"), ("16.4.0", "ios")),
    (lambda w: w.add_build_version(platform=99, sdk="1.2.3"), ("1.2.3", "99")),
    (lambda w: w.add_version_min(C.LC_VERSION_MIN_MACOSX, "10.9.0", "10.15.6"), ("10.15.6", "macos")),
    (lambda w: w.add_version_min(C.LC_VERSION_MIN_WATCHOS, "4.0.0", "6.2.0"), ("6.2.0", "watchos")),
], ids=["macos", "ios", "unknown-platform", "min-macosx", "min-watchos"])
def test_build_target_reads_what_the_decoded_data_says(add, want: tuple[str, str], flavour: dict) -> None:  # type: ignore[no-untyped-def]
    """The (sdk, platform) read from the fixed fields, before `data` is decoded, and after it."""
    from dyldwatch.formats.macho.loadcommands import build_target

    [cmd] = [c for c in parse_one(add(MachOWriter(**flavour)).build()).commands
             if c.cmd == C.LC_BUILD_VERSION or c.cmd in C.VERSION_MIN_PLATFORMS]
    assert build_target(cmd) == want  # not decoded yet
    assert (cmd.data["sdk"], cmd.data["platform"]) == want  # type: ignore[index]
    assert build_target(cmd) == want  # from the decoded data


@pytest.mark.parametrize("wide", [False, True])
def test_encryption_info(wide: bool) -> None:
    w = MachOWriter().add_encryption_info(0x4000, 0x2000, 1, is64=wide)
    sl = parse_one(w.build())
    c = sl.first(C.LC_ENCRYPTION_INFO_64 if wide else C.LC_ENCRYPTION_INFO)
    assert c is not None and c.data == {"cryptoff": 0x4000, "cryptsize": 0x2000, "cryptid": 1}


def test_source_version_and_generic_commands() -> None:
    w = MachOWriter()
    w.add_source_version((1 << 40) | (2 << 30) | (3 << 20) | (4 << 10) | 5)
    w.add_command(C.LC_FUNCTION_STARTS, struct.pack("<2I", 0x10, 0x20))
    w.add_command(0x7777, b"\0" * 8)
    w.add_command(C.LC_FILESET_ENTRY, struct.pack("<2Q2I", 0x1000, 0x2000, 32, 0) + b"com.example.kext\0")
    w.add_command(C.LC_LINKER_OPTION, struct.pack("<I", 2) + b"-framework\0Foundation\0")
    sl = parse_one(w.build())
    assert sl.first(C.LC_SOURCE_VERSION).data == {"version": "1.2.3.4.5"}
    assert sl.first(C.LC_FUNCTION_STARTS).data == {"dataoff": 0x10, "datasize": 0x20}
    unknown = [c for c in sl.commands if c.cmd == 0x7777]
    assert unknown[0].cmd_name == "LC_0x7777" and unknown[0].data is None
    fs = sl.first(C.LC_FILESET_ENTRY)
    assert fs.cmd_name == "LC_FILESET_ENTRY" and fs.name == "com.example.kext"
    assert fs.data == {"vmaddr": 0x1000, "fileoff": 0x2000}
    assert sl.first(C.LC_LINKER_OPTION).data["options"] == ["-framework", "Foundation"]


def test_constant_names() -> None:
    assert lc_name(0x80000035) == "LC_FILESET_ENTRY"
    assert lc_name(0x80000034) == "LC_DYLD_CHAINED_FIXUPS"
    assert lc_name(0x80000033) == "LC_DYLD_EXPORTS_TRIE"
    assert lc_name(0x80000022) == "LC_DYLD_INFO_ONLY"
    assert lc_name(0x22) == "LC_DYLD_INFO"
    assert lc_name(0x80000028) == "LC_MAIN"
    assert lc_name(0x36) == "LC_ATOM_INFO"
    assert lc_name(0x37) == "LC_FUNCTION_VARIANTS"
    assert lc_name(0x38) == "LC_FUNCTION_VARIANT_FIXUPS"
    assert lc_name(0x39) == "LC_TARGET_TRIPLE"
    assert lc_name(0x12345) == "LC_0x12345"


def test_our_names_cover_lief_command_types() -> None:
    """Every command type LIEF 1.0 knows has the same name here."""
    for member in lief.MachO.LoadCommand.TYPE:
        if member.name in ("UNKNOWN", "LIEF_UNKNOWN"):
            continue
        assert lc_name(int(member)) == "LC_" + member.name


@pytest.mark.parametrize(("cputype", "sub", "arch"), [
    (C.CPU_TYPE_X86_64, 3, "x86_64"), (C.CPU_TYPE_X86_64, 8, "x86_64h"), (C.CPU_TYPE_X86, 3, "i386"),
    (C.CPU_TYPE_ARM64, 0, "arm64"), (C.CPU_TYPE_ARM64, 2 | 0x80000000, "arm64e"),
    (C.CPU_TYPE_ARM64, 2 | 0x81000000, "arm64e"), (C.CPU_TYPE_ARM64_32, 1, "arm64_32"),
    (C.CPU_TYPE_ARM, 9, "armv7"), (C.CPU_TYPE_ARM, 11, "armv7s"), (C.CPU_TYPE_ARM, 12, "armv7k"),
    (C.CPU_TYPE_POWERPC, 0, "ppc"), (C.CPU_TYPE_POWERPC64, 0, "ppc64"), (99, 5, "99:5"),
])
def test_arch_names(cputype: int, sub: int, arch: str) -> None:
    assert C.arch_name(cputype, sub) == arch


# --- fat ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("magic64", [False, True])
def test_fat_three_slices(magic64: bool) -> None:
    a = sample_executable(cputype=C.CPU_TYPE_X86_64, cpusubtype=3).build()
    b = sample_executable(cputype=C.CPU_TYPE_ARM64, cpusubtype=2 | 0x80000000).build()
    w = MachOWriter(is64=False, big_endian=True, filetype=C.MH_BUNDLE)
    w.add_dylib("/usr/lib/libSystem.B.dylib")
    c = w.build()
    data = fat([a, b, c], magic64=magic64, align=12)
    src = BytesSource(data)
    refs = read_slices(src)
    assert [r.arch for r in refs] == ["x86_64", "arm64e", "ppc"]
    assert all(r.fat and r.offset % 4096 == 0 for r in refs)
    assert [r.size for r in refs] == [len(a), len(b), len(c)]
    assert refs[1].cpusubtype == 0x80000002
    slices = [read_load_commands(src, r) for r in refs]
    assert slices[2].header.big_endian and not slices[2].header.is64
    assert [c.name for c in slices[2].commands if c.cmd == C.LC_LOAD_DYLIB] == ["/usr/lib/libSystem.B.dylib"]
    # analysis reads relative to the slice: the signature of slice 1 is slice 1's
    an = analyze_slice(src, slices[1])
    assert an.code_signature is not None and an.code_signature.startswith(b"\xfa\xde\x0c\xc0")
    assert an.uuid == "00010203-0405-0607-0809-0A0B0C0D0E0F"
    # LIEF 1.0 reads FAT_MAGIC only, so it checks the 32-bit wrapper of the same slices
    fb = lief.MachO.parse(fat([a, b, c], magic64=False))
    assert fb is not None and fb.size == 3
    assert [int(fb.at(i).header.cpu_type) for i in range(3)] == [r.cputype for r in refs]


def test_fat_with_10000_slices_is_refused_quickly() -> None:
    data = fat_header([(7, 3, 0x1000, 0x1000, 12)] * 10, nfat_arch=10_000) + b"\0" * 64
    with pytest.raises(MachOError, match="10000 architectures"):
        read_slices(BytesSource(data))


def test_java_class_file_is_not_macho() -> None:
    java = b"\xca\xfe\xba\xbe\x00\x00\x00\x41" + b"\x00" * 400  # major 65 (Java 21)
    with pytest.raises(MachOError, match="Java class"):
        read_slices(BytesSource(java))
    java_old = b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + b"\x07\x00\x02" * 300  # major 52, within the cap
    with pytest.raises(MachOError, match="Java class"):
        read_slices(BytesSource(java_old))


def _fat_raw(entries: list[tuple[int, int]], total: int, *, magic64: bool = False) -> bytes:
    raw = fat_header([(C.CPU_TYPE_ARM64, 0, off, size, 12) for off, size in entries], magic64=magic64)
    return raw.ljust(total, b"\0")


@pytest.mark.parametrize("magic64", [False, True])
@pytest.mark.parametrize(("entries", "total", "message"), [
    ([(0x1000, 0x1000), (0x1800, 0x1000)], 0x3000, "overlap"),
    ([(0x1000, 0x1000), (0x1000, 0x1000)], 0x3000, "overlap"),
    ([(0x1000, 0x1000), (0x4000, 0x1000)], 0x3000, "past the end"),
    ([(0x1000, 0)], 0x3000, "empty"),
    ([(0x8, 0x1000)], 0x3000, "overlaps the fat header"),
    ([], 0x100, "no architectures"),
])
def test_hostile_fat_headers(entries: list, total: int, message: str, magic64: bool) -> None:
    with pytest.raises(MachOError, match=message):
        read_slices(BytesSource(_fat_raw(entries, total, magic64=magic64)))


def test_fat64_offset_beyond_4gib() -> None:
    with pytest.raises(MachOError, match="past the end"):
        read_slices(BytesSource(_fat_raw([(0x100000000, 0x10)], 0x3000, magic64=True)))


def test_fat_table_truncated() -> None:
    data = fat_header([(7, 3, 0x1000, 0x10, 12)] * 3)[:30]
    with pytest.raises(MachOError, match="ends inside the table"):
        read_slices(BytesSource(data))


def test_nested_fat_and_garbage_slice() -> None:
    inner = fat([MachOWriter().build()])
    data = fat([inner], cpus=[(C.CPU_TYPE_ARM64, 0)])
    src = BytesSource(data)
    [ref] = read_slices(src)
    with pytest.raises(MachOError, match="nested fat"):
        read_load_commands(src, ref)
    data = fat([b"\x7fELF" + b"\0" * 60], cpus=[(C.CPU_TYPE_ARM64, 0)])
    src = BytesSource(data)
    with pytest.raises(MachOError, match="Mach-O magic"):
        read_load_commands(src, read_slices(src)[0])


@pytest.mark.parametrize("data", [b"", b"\xcf\xfa", b"\x7fELF\x02\x01\x01" + b"\0" * 64, b"\xcf\xfa\xed\xfe" + b"\0" * 8])
def test_not_macho_or_too_short(data: bytes) -> None:
    with pytest.raises(MachOError):
        read_slices(BytesSource(data))


# --- hostile load commands ----------------------------------------------------------------------


def _expect_error(data: bytes, match: str) -> MachOError:
    with pytest.raises(MachOError, match=match) as info:
        parse_one(data)
    return info.value


def test_lying_ncmds_too_many() -> None:
    w = MachOWriter()
    w.add_dylib("/a")
    w.ncmds_override = 5  # four are present
    err = _expect_error(w.build(), "load command 4 starts past the end of sizeofcmds")
    assert err.partial is not None and len(err.partial.commands) == 4


def test_ncmds_that_cannot_fit() -> None:
    w = MachOWriter()
    w.ncmds_override = 0xFFFFFFFF
    _expect_error(w.build(), "cannot fit")


def test_sizeofcmds_past_end_of_file() -> None:
    w = MachOWriter()
    w.sizeofcmds_override = 0x100000
    _expect_error(w.build(), "run past the end of the slice")
    w.sizeofcmds_override = 0xFFFFFFF0
    _expect_error(w.build(), "implausibly large")


def test_sizeofcmds_shorter_than_commands() -> None:
    w = MachOWriter()
    w.add_dylib("/usr/lib/libSystem.B.dylib")
    data = w.build()
    sl = parse_one(data)
    w.sizeofcmds_override = sum(c.cmd_size for c in sl.commands) - 8
    err = _expect_error(w.build(), "runs past sizeofcmds")
    assert err.offset == sl.commands[-1].offset
    assert [c.cmd_name for c in err.partial.commands] == names(sl)[:-1]


@pytest.mark.parametrize("cmdsize", [0, 4, 13, 0xFFFFFFF8])
def test_bad_cmdsize_does_not_loop(cmdsize: int) -> None:
    w = MachOWriter()
    w.add_raw(struct.pack("<2I", C.LC_UUID, cmdsize) + b"\0" * 16)
    w.add_dylib("/never/reached")
    err = _expect_error(w.build(), f"cmdsize {cmdsize}")
    assert "LC_UUID" in str(err) and "at file offset" in str(err)


def test_cmdsize_smaller_than_structure() -> None:
    w = MachOWriter()
    w.add_raw(struct.pack("<2I", C.LC_SEGMENT_64, 16) + b"__TEXT\0\0")
    _expect_error(w.build(), "smaller than its structure")


@pytest.mark.parametrize("name_offset", [1000, 0xFFFFFFFF, 4, 0])
def test_lc_str_offset_outside_command(name_offset: int) -> None:
    w = MachOWriter()
    w.add_rpath("/good")
    w.add_dylib("/x", name_offset=name_offset)
    err = _expect_error(w.build(), "string offset")
    assert err.partial.rpaths == ["/good"]


def test_lc_str_without_nul_stays_inside_command() -> None:
    w = MachOWriter()
    w.add_raw(struct.pack("<3I", C.LC_RPATH, 16, 12) + b"ABCD")
    w.add_rpath("/next")
    sl = parse_one(w.build())
    assert sl.rpaths == ["ABCD", "/next"]


def test_segment_with_lying_nsects() -> None:
    w = MachOWriter()
    seg = struct.pack("<16s4Q2i2I", b"__DATA", 0, 0, 0, 0, 3, 3, 1000, 0)
    w.add_raw(struct.pack("<2I", C.LC_SEGMENT_64, 72) + seg)
    _expect_error(w.build(), "1000 sections")


def test_build_version_with_lying_ntools() -> None:
    w = MachOWriter()
    w.add_raw(struct.pack("<6I", C.LC_BUILD_VERSION, 24, 1, 0, 0, 0xFFFF))
    _expect_error(w.build(), "65535 tools")


def test_ncmds_fewer_than_present_reads_only_those() -> None:
    w = sample_executable()
    w.ncmds_override = 3
    sl = parse_one(w.build())
    assert names(sl) == ["LC_SEGMENT_64"] * 3


def _every_prefix_is_safe(data: bytes, *, analyze: bool) -> int:
    ok = 0
    for n in range(len(data) + 1):
        src = BytesSource(data[:n])
        try:
            for ref in read_slices(src):
                sl = read_load_commands(src, ref)
                if analyze:
                    analyze_slice(src, sl)
            ok += 1
        except MachOError:
            pass
    return ok


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_prefix_of_a_thin_file(flavour: dict) -> None:
    data = sample_executable(page_size=64, **flavour).build()
    ok = _every_prefix_is_safe(data, analyze=True)
    assert ok > 0  # prefixes that keep the load commands parse; shorter ones raise MachOError


def test_every_prefix_of_a_fat_file() -> None:
    a = sample_executable(page_size=64).build()
    b = sample_executable(page_size=64, is64=False, big_endian=True).build()
    data = fat([a, b], align=4)
    ok = _every_prefix_is_safe(data, analyze=False)
    assert ok == 1  # only the whole file: every shorter prefix cuts the last slice


def test_random_corruption_never_escapes() -> None:
    rng = random.Random(1234)
    base = sample_executable(page_size=64).build()
    hsize = 32
    cmd_end = hsize + struct.unpack_from("<I", base, 20)[0]
    for _ in range(10_000):
        buf = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(0, cmd_end) if rng.random() < 0.8 else rng.randrange(len(buf))
            buf[pos] = rng.randrange(256)
        if rng.random() < 0.3:  # also plant huge 32-bit values at command fields
            pos = rng.randrange(0, cmd_end - 4) & ~3
            buf[pos:pos + 4] = struct.pack("<I", rng.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 8]))
        src = BytesSource(bytes(buf))
        try:
            for ref in read_slices(src):
                analyze_slice(src, read_load_commands(src, ref))
        except MachOError:
            pass


# --- the writer agrees with LIEF ----------------------------------------------------------------


def lief_view(data: bytes) -> list[tuple[list[int], list[tuple[int, str]], list[str]]]:
    fb = lief.MachO.parse(data)
    assert fb is not None
    out = []
    for i in range(fb.size):
        b = fb.at(i)
        out.append((
            [int(c.command) for c in b.commands],
            [(int(c.command), c.name) for c in b.commands if isinstance(c, lief.MachO.DylibCommand)],
            [c.path for c in b.commands if isinstance(c, lief.MachO.RPathCommand)],
        ))
    return out


def our_view(data: bytes) -> list[tuple[list[int], list[tuple[int, str]], list[str]]]:
    src = BytesSource(data)
    out = []
    for ref in read_slices(src):
        sl = read_load_commands(src, ref)
        out.append(([c.cmd for c in sl.commands],
                    [(c.cmd, c.name) for c in sl.commands if c.cmd in C.DYLIB_CMDS],
                    sl.rpaths))
    return out


def _rich(flavour: dict) -> bytes:
    w = MachOWriter(filetype=C.MH_DYLIB, **flavour)
    w.set_text(b"\x90" * 64, ["first string", "x", "second"])
    for kind in sorted(C.DYLIB_CMDS):
        w.add_dylib(f"/lib/k{kind:x}.dylib", kind, current="3.2.1")
    w.add_rpath("@loader_path/a").add_rpath("/b")
    w.add_uuid(b"\x11" * 16).add_version_min().add_encryption_info(0, 0, 0)
    w.add_segment("__DATA", b"\x01" * 100, initprot=3, maxprot=3)
    w.set_symbols([Sym("_a"), Sym("_b", C.N_UNDF | C.N_EXT, 0)], dysymtab=flavour["is64"])
    if not flavour["big_endian"]:
        w.set_chained_fixups(4)
    w.set_code_signature(b"\xfa\xde\x0c\xc0" + b"\0" * 60)
    return w.build()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_lief_agrees_with_writer(flavour: dict) -> None:
    for data in (sample_executable(**flavour).build(), _rich(flavour)):
        ours = our_view(data)
        assert ours == lief_view(data)
        assert len(ours[0][1]) >= 2


def test_lief_agrees_on_fat_writer_output() -> None:
    slices = [_rich(dict(is64=True, big_endian=False)), _rich(dict(is64=False, big_endian=True))]
    data = fat(slices)
    assert our_view(data) == lief_view(data)
    # LIEF 1.0 does not read FAT_MAGIC_64; the same slices behind it must read the same
    assert our_view(fat(slices, magic64=True)) == our_view(data)

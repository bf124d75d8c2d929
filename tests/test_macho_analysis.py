"""Per-slice analysis for macho_info: identity, symbols, imports, strings, entropy, packers, signature."""

from __future__ import annotations

import math
import struct
from collections import Counter

import numpy as np
import pytest

from dyldwatch.formats.macho import MachOError, SliceAnalysis, analyze_slice, read_load_commands, read_slices
from dyldwatch.formats.macho import constants as C
from dyldwatch.formats.macho.analysis import byte_entropy, count_cstrings, shannon_entropy
from dyldwatch.formats.macho.writer import MachOWriter, Sym, fat, sample_executable
from dyldwatch.formats.source import BytesSource

FLAVOURS = [
    pytest.param(dict(is64=True, big_endian=False), id="64le"),
    pytest.param(dict(is64=False, big_endian=False), id="32le"),
    pytest.param(dict(is64=True, big_endian=True), id="64be"),
    pytest.param(dict(is64=False, big_endian=True), id="32be"),
]


def analyze(data: bytes) -> SliceAnalysis:
    src = BytesSource(data)
    [ref] = read_slices(src)
    return analyze_slice(src, read_load_commands(src, ref))


def reference_entropy(data: bytes) -> float:
    n = len(data)
    return round(-sum(c / n * math.log2(c / n) for c in Counter(data).values()) + 0.0, 4)


# --- entropy ------------------------------------------------------------------------------------


def test_entropy_known_buffers() -> None:
    assert byte_entropy(b"\0" * 4096) == 0.0
    assert byte_entropy(bytes(range(256))) == 8.0
    assert byte_entropy(bytes(range(256)) * 17 + b"") == 8.0
    assert byte_entropy(b"ab" * 100) == 1.0
    assert byte_entropy(b"abc") == reference_entropy(b"abc")  # odd length: the last byte counts
    assert byte_entropy(b"") == 0.0
    assert shannon_entropy(np.zeros(256, dtype=np.int64)) == 0.0


def test_entropy_matches_reference_on_random_data() -> None:
    rng = np.random.default_rng(7)
    data = rng.integers(0, 40, size=10_001, dtype=np.uint8).tobytes()
    assert byte_entropy(data) == reference_entropy(data)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_text_entropy_is_over_the_whole_text_segment(flavour: dict) -> None:
    w = MachOWriter(**flavour)
    w.set_text(bytes(range(256)) * 64)
    data = w.build()
    src = BytesSource(data)
    sl = read_load_commands(src, read_slices(src)[0])
    text = sl.segment("__TEXT")
    assert text is not None
    seg = data[text.data["fileoff"] : text.data["fileoff"] + text.data["filesize"]]
    got = analyze_slice(src, sl).text_entropy
    assert got == reference_entropy(seg)
    assert 7.0 < got < 8.0  # mostly uniform code, diluted by the header and padding


def test_text_entropy_spans_several_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from dyldwatch.formats.macho import analysis

    monkeypatch.setattr(analysis, "CHUNK", 1001)  # odd chunk size: pairs straddle chunk edges
    w = MachOWriter()
    rng = np.random.default_rng(3)
    w.set_text(rng.integers(0, 256, size=20_000, dtype=np.uint8).tobytes())
    data = w.build()
    src = BytesSource(data)
    sl = read_load_commands(src, read_slices(src)[0])
    text = sl.segment("__TEXT")
    assert analyze_slice(src, sl).text_entropy == reference_entropy(data[: text.data["filesize"]])


# --- identity ------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_sample_analysis(flavour: dict) -> None:
    a = analyze(sample_executable(**flavour).build())
    assert a.uuid == "00010203-0405-0607-0809-0A0B0C0D0E0F"
    assert (a.platform, a.min_os, a.sdk) == ("macos", "11.0.0", "14.2.0")
    assert a.has_symtab and a.nsyms == 3
    assert a.nsyms_external == 2
    assert a.nsyms_imports == 1
    assert a.strings_count == 2  # "hello world", "/usr/lib/libfoo.dylib"; "abc" is too short
    assert a.encrypted is False
    assert a.packer_markers == []
    assert a.code_signature == b"\xfa\xde\x0c\xc0\0\0\0\x0c\0\0\0\0"
    assert a.problems == []


def test_version_min_when_no_build_version() -> None:
    a = analyze(MachOWriter().add_version_min(C.LC_VERSION_MIN_IPHONEOS, "9.0.0", "13.1.0").build())
    assert (a.platform, a.min_os, a.sdk) == ("ios", "9.0.0", "13.1.0")


def test_build_version_wins_over_version_min() -> None:
    w = MachOWriter().add_version_min(C.LC_VERSION_MIN_MACOSX, "10.9.0", "10.15.0")
    w.add_build_version(6, "13.1.0", "14.0.0")
    a = analyze(w.build())
    assert (a.platform, a.min_os, a.sdk) == ("maccatalyst", "13.1.0", "14.0.0")


def test_nothing_present() -> None:
    w = MachOWriter(filetype=C.MH_BUNDLE)
    w.with_linkedit = False
    a = analyze(w.build())
    assert (a.uuid, a.platform, a.min_os, a.sdk, a.code_signature) == (None, None, None, None, None)
    assert (a.has_symtab, a.nsyms, a.nsyms_external, a.nsyms_imports, a.strings_count) == (False, 0, 0, 0, 0)
    assert a.encrypted is False


# --- symbols and imports -----------------------------------------------------------------------


SYMS = [
    Sym("_l1", C.N_SECT), Sym("_l2", C.N_SECT), Sym("_pext", C.N_SECT | C.N_PEXT),
    Sym("_e1"), Sym("_e2"), Sym("_e3"),
    Sym("_u1", C.N_UNDF | C.N_EXT, 0), Sym("_u2", C.N_UNDF | C.N_EXT, 0),
    Sym("stab", 0x24 | C.N_EXT, 1),  # N_FUN with the low bit set: a debug entry, not an external
]


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("dysymtab", [True, False])
def test_external_symbol_counts(flavour: dict, dysymtab: bool) -> None:
    syms = SYMS if not dysymtab else SYMS[:-1]
    a = analyze(MachOWriter(**flavour).set_symbols(syms, dysymtab=dysymtab).build())
    assert a.nsyms == len(syms)
    assert a.has_symtab
    assert a.nsyms_external == 5  # 3 defined + 2 undefined; from LC_DYSYMTAB or by walking the nlists


def test_empty_symtab() -> None:
    a = analyze(MachOWriter().set_symbols([], dysymtab=False).build())
    assert (a.has_symtab, a.nsyms, a.nsyms_external) == (False, 0, 0)


@pytest.mark.parametrize("n", [0, 1, 5, 300])
def test_chained_fixup_imports(n: int) -> None:
    w = MachOWriter().add_dylib("/usr/lib/libSystem.B.dylib").set_chained_fixups(n)
    assert analyze(w.build()).nsyms_imports == n


# --- strings ---------------------------------------------------------------------------------


def test_count_cstrings_rules() -> None:
    assert count_cstrings(b"abcd\0abc\0\0tab\there\0line\n\0") == 3
    assert count_cstrings(b"bell\x07ring\0caf\xc3\xa9s\0ok go\0") == 1  # control and non-ASCII bytes excluded
    assert count_cstrings(b"unterminated") == 0
    assert count_cstrings(b"") == 0


def test_strings_count_reads_only_cstring_section() -> None:
    w = MachOWriter()
    w.set_text(b"code string in text\0" * 5, [b"first one", b"\x01\x02\x03\x04", b"ok!", b"second"])
    assert analyze(w.build()).strings_count == 2


# --- flags and markers ---------------------------------------------------------------------------


@pytest.mark.parametrize(("cryptid", "expected"), [(0, False), (1, True)])
@pytest.mark.parametrize("wide", [False, True])
def test_encrypted(cryptid: int, expected: bool, wide: bool) -> None:
    a = analyze(MachOWriter().add_encryption_info(0x1000, 0x1000, cryptid, is64=wide).build())
    assert a.encrypted is expected


def test_packer_markers() -> None:
    w = MachOWriter()
    w.add_segment("__XHDR", b"\0" * 16)
    w.add_segment("upxTEXT", b"\x90" * 16, initprot=5, maxprot=7)
    w.set_text(b"\0" * 32 + b"UPX!" + b"\0" * 28)
    assert analyze(w.build()).packer_markers == ["__XHDR", "upxTEXT", "UPX!"]


def test_upx_magic_late_in_file_is_not_a_marker() -> None:
    w = MachOWriter()
    w.set_text(b"\0" * (64 << 10) + b"UPX!")
    assert analyze(w.build()).packer_markers == []


# --- code signature ----------------------------------------------------------------------------


def test_code_signature_is_the_blob_at_the_end() -> None:
    blob = bytes(range(256)) * 3 + b"tail"
    data = MachOWriter().set_code_signature(blob).build()
    a = analyze(data)
    assert a.code_signature == blob
    assert data.endswith(blob)
    assert (len(data) - len(blob)) % 16 == 0


def test_signature_in_second_fat_slice_is_read_relative_to_slice() -> None:
    one = MachOWriter(cputype=C.CPU_TYPE_X86_64, cpusubtype=3).set_code_signature(b"ONE!" * 4).build()
    two = MachOWriter().set_code_signature(b"TWO!" * 4).build()
    src = BytesSource(fat([one, two]))
    got = [analyze_slice(src, read_load_commands(src, r)).code_signature for r in read_slices(src)]
    assert got == [b"ONE!" * 4, b"TWO!" * 4]


# --- garbage offsets leave fields None, never raise -----------------------------------------------


def _with_raw(*raws: bytes, **kw: object) -> SliceAnalysis:
    w = MachOWriter(**kw)  # type: ignore[arg-type]
    for raw in raws:
        w.add_raw(raw)
    return analyze(w.build())


def test_garbage_symtab_offsets() -> None:
    a = _with_raw(struct.pack("<6I", C.LC_SYMTAB, 24, 0xFFFFFF00, 1000, 0, 0))
    assert a.nsyms == 1000 and a.nsyms_external is None
    assert any("symbol table" in p for p in a.problems)
    a = _with_raw(struct.pack("<6I", C.LC_SYMTAB, 24, 0, 0xFFFFFFFF, 0, 0))
    assert a.nsyms_external is None


def test_garbage_signature_offsets() -> None:
    a = _with_raw(struct.pack("<4I", C.LC_CODE_SIGNATURE, 16, 0xFFFFFFF0, 0x100))
    assert a.code_signature is None and any("code signature" in p for p in a.problems)
    a = _with_raw(struct.pack("<4I", C.LC_CODE_SIGNATURE, 16, 0, 0xFFFFFFFF))
    assert a.code_signature is None and any("limit" in p for p in a.problems)


def test_garbage_chained_fixups() -> None:
    a = _with_raw(struct.pack("<4I", C.LC_DYLD_CHAINED_FIXUPS, 16, 0xFFFFFFF0, 28))
    assert a.nsyms_imports == 0 and any("chained" in p for p in a.problems)
    a = _with_raw(struct.pack("<4I", C.LC_DYLD_CHAINED_FIXUPS, 16, 0, 4))
    assert a.nsyms_imports == 0 and any("too small" in p for p in a.problems)


def _text_segment(fileoff: int, filesize: int, sect_off: int, sect_size: int) -> bytes:
    seg = struct.pack("<16s4Q2i2I", b"__TEXT", 0, 0x4000, fileoff, filesize, 5, 5, 1, 0)
    sect = struct.pack("<16s16s2Q8I", b"__cstring", b"__TEXT", 0, sect_size, sect_off, 0, 0, 0, 2, 0, 0, 0)
    return struct.pack("<2I", C.LC_SEGMENT_64, 72 + 80) + seg + sect


def test_garbage_text_segment_and_cstring() -> None:
    a = _with_raw(_text_segment(0xFFFFFFFF00, 0x1000, 0xFFFFFF00, 0x100), pagezero=False)
    # the writer's own __TEXT comes first, so this second one is ignored
    assert a.problems == []
    w = MachOWriter(pagezero=False)
    w.add_raw(_text_segment(0xFFFFFFFF00, 0x1000, 0xFFFFFF00, 0x100))
    data = w.build()
    # make the writer's __TEXT unrecognisable so the bogus one is the first
    data = data.replace(b"__TEXT\0\0\0\0\0\0\0\0\0\0", b"__TEXZ\0\0\0\0\0\0\0\0\0\0", 1)
    a = analyze(data)
    assert a.text_entropy is None and a.strings_count is None
    assert any("__TEXT segment" in p for p in a.problems) and any("__cstring" in p for p in a.problems)


def test_every_prefix_with_analysis_never_escapes() -> None:
    data = sample_executable().build()  # 4 KiB pages: ~4.2 KiB file
    analysed = incomplete = 0
    for n in range(0, len(data) + 1, 3):
        src = BytesSource(data[:n])
        try:
            for ref in read_slices(src):
                a = analyze_slice(src, read_load_commands(src, ref))
                analysed += 1
                incomplete += bool(a.problems)
        except MachOError:
            pass
    assert analysed > 1000 and incomplete > 1000  # most prefixes keep the commands but lose the data

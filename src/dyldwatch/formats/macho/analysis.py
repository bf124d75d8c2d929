"""Per-slice facts for the macho_info table: identity, symbols, strings, entropy, packers, signature.

Each fact is read with a bounded, bounds-checked read inside the slice; a garbage offset leaves
its field None and adds a line to `problems` instead of failing the whole slice.

The facts come in PARTS, computed only when asked for: a signing query over ten thousand files
must not read every __TEXT segment for an entropy nobody reads. `build` needs nothing beyond the
load commands; the others each read their own byte range. numpy loads with the one part that
needs it (text: the __TEXT byte histogram), not with this module.
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..source import ByteSource
from . import constants as C
from .model import LoadCommand, MachOSlice, Section

if TYPE_CHECKING:
    import numpy as np

#: What analyze_slice can compute, each independently: `build` (uuid, platform, versions,
#: encryption: load commands only), `symbols` (LC_SYMTAB counts, the nlist walk when LC_DYSYMTAB
#: is absent), `imports` (chained-fixups header), `strings` (__cstring), `text` (__TEXT entropy),
#: `packers` (packer segment names and the UPX! magic in the slice's first pages), `signature`
#: (the code-signature blob).
PARTS = frozenset({"build", "symbols", "imports", "strings", "text", "packers", "signature"})

#: Read size for the __TEXT pass.
CHUNK = 1 << 20
#: The code signature is handed on only up to this size (real ones are tens to hundreds of KiB).
MAX_SIGNATURE = 4 << 20
#: __cstring is scanned only up to this many bytes.
MAX_CSTRING = 32 << 20
#: The nlist table is walked only up to this many entries (when LC_DYSYMTAB is absent).
MAX_NLIST = 4_000_000
#: How far into the slice the UPX! magic is looked for.
PACKER_SCAN = 16 << 10

_CHAINED_HEADER = {False: struct.Struct("<7I"), True: struct.Struct(">7I")}
#: Bytes that count as printable inside a C string: ASCII 0x20-0x7e plus tab, newline, CR.
_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t\n\r"


#: n_type of an external, non-debugging symbol maps to 1, any other to 0 (the nlist walk counts them).
_EXTERNAL = bytes(1 if (t & C.N_STAB) == 0 and (t & C.N_EXT) != 0 else 0 for t in range(256))
#: n_type sits after the 4-byte n_strx in both nlist and nlist_64 (whatever the byte order).
_NTYPE_OFFSET = 4


def _numpy() -> Any:
    """numpy, imported at the first __TEXT histogram. Its BLAS thread pool is of no use here (a
    bincount and a sum) and its threads spin during calls, so it is held to one thread unless the
    environment says otherwise."""
    import sys

    if "numpy" not in sys.modules:
        import os

        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
    import numpy as np

    return np


@dataclass(slots=True)
class SliceAnalysis:
    """What macho_info reports about one slice beyond its header.

    `code_signature` is the raw SuperBlob, for the codesign parser; `problems` lists why any field
    was left None.
    """

    uuid: str | None = None
    platform: str | None = None
    min_os: str | None = None
    sdk: str | None = None
    has_symtab: bool = False
    nsyms: int = 0
    nsyms_external: int | None = None
    nsyms_imports: int = 0
    strings_count: int | None = 0
    text_entropy: float | None = None
    encrypted: bool = False
    packer_markers: list[str] = field(default_factory=list)
    code_signature: bytes | None = None
    problems: list[str] = field(default_factory=list)
    #: Which PARTS were computed; fields of the others keep their defaults and mean nothing.
    parts: frozenset[str] = PARTS


def shannon_entropy(counts: np.ndarray) -> float:
    """Entropy in bits per byte of a 256-bin byte histogram, rounded to 4 decimals."""
    np = _numpy()

    total = int(counts.sum())
    if total == 0:
        return 0.0
    p = counts[counts > 0].astype(np.float64) / total
    return round(float(-(p * np.log2(p)).sum()) + 0.0, 4)


class _Histogram:
    """Byte histogram accumulated over chunks; counts byte pairs (uint16) for speed, then folds."""

    __slots__ = ("pairs", "singles")

    def __init__(self) -> None:
        np = _numpy()

        self.pairs = np.zeros(65536, dtype=np.int64)
        self.singles = np.zeros(256, dtype=np.int64)

    def add(self, chunk: bytes) -> None:
        np = _numpy()

        even = len(chunk) & ~1
        if even:
            self.pairs += np.bincount(np.frombuffer(chunk, dtype=np.uint16, count=even // 2), minlength=65536)
        if even != len(chunk):
            self.singles[chunk[-1]] += 1

    def counts(self) -> np.ndarray:
        m = self.pairs.reshape(256, 256)
        return m.sum(axis=0) + m.sum(axis=1) + self.singles


def byte_entropy(data: bytes) -> float:
    """Shannon entropy of a buffer in bits per byte."""
    h = _Histogram()
    h.add(data)
    return shannon_entropy(h.counts())


def _span(sl: MachOSlice, off: int, size: int) -> tuple[int, int] | None:
    """Absolute (offset, size) of a slice-relative range, or None when it leaves the slice."""
    if off < 0 or size < 0 or off + size > sl.ref.size:
        return None
    return sl.ref.offset + off, size


def _read_exact(src: ByteSource, off: int, size: int) -> bytes | None:
    data = src.read(off, size)
    return data if len(data) == size else None


_BUILD_COMMANDS = frozenset({"LC_UUID", "LC_BUILD_VERSION", "LC_ENCRYPTION_INFO", "LC_ENCRYPTION_INFO_64",
                             *(C.lc_name(c) for c in C.VERSION_MIN_PLATFORMS)})


def analyze_slice(src: ByteSource, sl: MachOSlice, parts: Collection[str] | None = None) -> SliceAnalysis:
    """The macho_info facts for one parsed slice (see SliceAnalysis): all PARTS, or only `parts`."""
    want = PARTS if parts is None else PARTS & frozenset(parts)
    out = SliceAnalysis(parts=want)
    symtab: LoadCommand | None = None
    dysymtab: LoadCommand | None = None
    chained: LoadCommand | None = None
    codesig: LoadCommand | None = None
    text: LoadCommand | None = None
    cstring: Section | None = None
    # Only the commands the wanted parts read are looked into (their fields decode on first read).
    relevant = set()
    if "build" in want:
        relevant |= _BUILD_COMMANDS
    if want & {"symbols"}:
        relevant |= {"LC_SYMTAB", "LC_DYSYMTAB"}
    if "imports" in want:
        relevant.add("LC_DYLD_CHAINED_FIXUPS")
    if "signature" in want:
        relevant.add("LC_CODE_SIGNATURE")
    if want & {"packers", "text", "strings"}:
        relevant |= {"LC_SEGMENT", "LC_SEGMENT_64"}
    for c in sl.commands:
        name = c.cmd_name
        if name not in relevant:
            continue
        d = c.data
        if d is None:
            continue
        if name == "LC_UUID" and out.uuid is None:
            out.uuid = d["uuid"]
        elif name == "LC_BUILD_VERSION" and out.platform is None:
            out.platform, out.min_os, out.sdk = d["platform"], d["minos"], d["sdk"]
        elif name.startswith("LC_VERSION_MIN_") and out.platform is None:
            out.platform, out.min_os, out.sdk = d["platform"], d["min_os"], d["sdk"]
        elif name == "LC_SYMTAB" and symtab is None:
            symtab = c
        elif name == "LC_DYSYMTAB" and dysymtab is None:
            dysymtab = c
        elif name == "LC_DYLD_CHAINED_FIXUPS" and chained is None:
            chained = c
        elif name == "LC_CODE_SIGNATURE" and codesig is None:
            codesig = c
        elif name in ("LC_ENCRYPTION_INFO", "LC_ENCRYPTION_INFO_64") and d["cryptid"] != 0:
            out.encrypted = True
        elif name in ("LC_SEGMENT", "LC_SEGMENT_64"):
            seg = d["segname"]
            if seg in C.PACKER_SEGMENTS and seg not in out.packer_markers:
                out.packer_markers.append(seg)
            if seg == "__TEXT" and text is None:
                text = c
                for s in d["sections"]:
                    if s.sectname == "__cstring" and cstring is None:
                        cstring = s
    # A platform from LC_BUILD_VERSION wins over an older LC_VERSION_MIN_* that came first.
    build = sl.first(C.LC_BUILD_VERSION) if "build" in want else None
    if build is not None and build.data is not None:
        out.platform, out.min_os, out.sdk = build.data["platform"], build.data["minos"], build.data["sdk"]

    if "symbols" in want:
        _symbols(src, sl, symtab, dysymtab, out)
    if "imports" in want:
        _imports(src, sl, chained, out)
    if "strings" in want:
        _strings(src, sl, cstring, out)
    if "text" in want:
        _text(src, sl, text, out)
    if "packers" in want:
        _upx(src, sl, out)
    if "signature" in want:
        _signature(src, sl, codesig, out)
    return out


def _symbols(src: ByteSource, sl: MachOSlice, symtab: LoadCommand | None, dysymtab: LoadCommand | None,
             out: SliceAnalysis) -> None:
    if symtab is None or symtab.data is None:
        out.nsyms_external = 0
        return
    nsyms = symtab.data["nsyms"]
    out.nsyms = nsyms
    out.has_symtab = nsyms > 0
    if dysymtab is not None and dysymtab.data is not None:
        out.nsyms_external = dysymtab.data["nextdefsym"] + dysymtab.data["nundefsym"]
        return
    if nsyms == 0:
        out.nsyms_external = 0
        return
    itemsize = 16 if sl.header.is64 else 12
    count = min(nsyms, MAX_NLIST)
    if count < nsyms:
        out.problems.append(f"only the first {MAX_NLIST} of {nsyms} symbols were counted")
    span = _span(sl, symtab.data["symoff"], count * itemsize)
    if span is None:
        out.problems.append(f"symbol table ({nsyms} entries at {symtab.data['symoff']:#x}) lies outside the slice")
        out.nsyms_external = None
        return
    total = 0
    step = (CHUNK // itemsize) * itemsize
    off, remaining = span
    while remaining > 0:
        n = min(step, remaining)
        raw = _read_exact(src, off, n)
        if raw is None:
            out.problems.append("file ends inside the symbol table")
            out.nsyms_external = None
            return
        # every entry's n_type byte (a strided slice), classed external or not, counted: all in C
        total += raw[_NTYPE_OFFSET::itemsize].translate(_EXTERNAL).count(1)
        off += n
        remaining -= n
    out.nsyms_external = total


def _imports(src: ByteSource, sl: MachOSlice, chained: LoadCommand | None, out: SliceAnalysis) -> None:
    if chained is None or chained.data is None:
        return
    hdr = _CHAINED_HEADER[sl.header.big_endian]
    if chained.data["datasize"] < hdr.size:
        out.problems.append(f"chained fixups data too small ({chained.data['datasize']} bytes)")
        return
    span = _span(sl, chained.data["dataoff"], hdr.size)
    raw = _read_exact(src, *span) if span is not None else None
    if raw is None:
        out.problems.append(f"chained fixups header at {chained.data['dataoff']:#x} lies outside the slice")
        return
    _version, _starts, _imports_off, _symbols_off, imports_count, _fmt, _symfmt = hdr.unpack(raw)
    out.nsyms_imports = imports_count


#: Every byte that is not printable (NUL included) maps to NUL; printable ones to 1.
_CLASSES = bytes(1 if b in _PRINTABLE else 0 for b in range(256))


def count_cstrings(data: bytes) -> int:
    """NUL-terminated strings of at least 4 bytes, all printable ASCII (incl. tab, newline, CR).

    Counted without building a list of the strings: each string's end is found with `find` and
    only its length and its bytes' classes (one translated copy of the section) are looked at."""
    n = 0
    end = data.rfind(b"\0")  # bytes after the last NUL are not a terminated string
    if end < 0:
        return 0
    classes = data.translate(_CLASSES) if end >= 4 else b""
    # In `classes`, a printable byte is 1 and anything else 0; a string counts when its bytes,
    # up to its NUL, are all 1 and there are at least 4 of them.
    pos = 0
    find = data.find
    while pos <= end:
        nul = find(b"\0", pos, end + 1)
        if nul - pos >= 4 and classes.find(0, pos, nul) < 0:
            n += 1
        pos = nul + 1
    return n


def _strings(src: ByteSource, sl: MachOSlice, cstring: Section | None, out: SliceAnalysis) -> None:
    if cstring is None or cstring.size == 0:
        return
    size = min(cstring.size, MAX_CSTRING)
    span = _span(sl, cstring.offset, size)
    raw = _read_exact(src, *span) if span is not None else None
    if raw is None:
        out.problems.append(f"__TEXT,__cstring at {cstring.offset:#x}+{cstring.size:#x} lies outside the slice")
        out.strings_count = None
        return
    out.strings_count = count_cstrings(raw)


def _text(src: ByteSource, sl: MachOSlice, text: LoadCommand | None, out: SliceAnalysis) -> None:
    """Entropy of the __TEXT file bytes, read in CHUNK-sized pieces."""
    if text is None or text.data is None or text.data["filesize"] <= 0:
        return
    fileoff, filesize = text.data["fileoff"], text.data["filesize"]
    span = _span(sl, fileoff, filesize)
    if span is None:
        out.problems.append(f"__TEXT segment {fileoff:#x}+{filesize:#x} lies outside the slice")
        return
    hist = _Histogram()
    off, remaining = span
    while remaining > 0:
        chunk = src.read(off, min(CHUNK, remaining))
        if not chunk:
            break
        hist.add(chunk)
        off += len(chunk)
        remaining -= len(chunk)
    if remaining > 0:
        out.problems.append("file ends inside the __TEXT segment")
    else:
        out.text_entropy = shannon_entropy(hist.counts())


def _upx(src: ByteSource, sl: MachOSlice, out: SliceAnalysis) -> None:
    """The UPX! magic in the slice's first PACKER_SCAN bytes (the file's head is read once anyway)."""
    if C.UPX_MAGIC in src.read(sl.ref.offset, min(PACKER_SCAN, sl.ref.size)):
        out.packer_markers.append(C.UPX_MAGIC.decode())


def _signature(src: ByteSource, sl: MachOSlice, codesig: LoadCommand | None, out: SliceAnalysis) -> None:
    if codesig is None or codesig.data is None:
        return
    dataoff, datasize = codesig.data["dataoff"], codesig.data["datasize"]
    if datasize > MAX_SIGNATURE:
        out.problems.append(f"code signature of {datasize} bytes exceeds the {MAX_SIGNATURE}-byte limit")
        return
    span = _span(sl, dataoff, datasize)
    raw = _read_exact(src, *span) if span is not None else None
    if raw is None:
        out.problems.append(f"code signature at {dataoff:#x}+{datasize:#x} lies outside the slice")
        return
    out.code_signature = raw

"""Finding real corpus files for tests that change them (with LIEF or a byte patch) under tmp_path."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest


def corpus_file(corpus_dir: Path, suffix: str, *, prefer: str = "") -> Path:
    """The corpus file whose name ends with `suffix` (the one starting with `prefer` first)."""
    hits = sorted(p for p in (corpus_dir / "files").iterdir() if p.name.endswith(suffix))
    hits.sort(key=lambda p: not p.name.startswith(prefer))
    if not hits:
        pytest.skip(f"{suffix} is not in the corpus at {corpus_dir}")
    return hits[0]


def copy_to(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def code_signature_span(path: Path) -> list[tuple[str, int, int]]:
    """(arch, absolute offset, datasize) of LC_CODE_SIGNATURE in each slice, read with LIEF (the oracle)."""
    import lief

    fat = lief.MachO.parse(str(path))
    out = []
    for i in range(fat.size):
        b = fat.at(i)
        if b.has_code_signature:
            out.append((str(b.header.cpu_type), b.fat_offset + b.code_signature.data_offset,
                        b.code_signature.data_size))
    return out


def split_superblob(blob: bytes) -> list[tuple[int, bytes]]:
    """The (slot, whole sub-blob) entries of a SuperBlob, in index order."""
    _magic, length, count = struct.unpack_from(">3I", blob, 0)
    out = []
    for i in range(count):
        slot, off = struct.unpack_from(">2I", blob, 12 + 8 * i)
        (blen,) = struct.unpack_from(">I", blob, off + 4)
        out.append((slot, blob[off : off + blen]))
    return out

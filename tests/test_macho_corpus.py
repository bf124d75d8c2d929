"""The real corpus: every slice of every file parses, and our reading agrees with LIEF's."""

from __future__ import annotations

from pathlib import Path

import lief
import pytest

from dyldwatch.formats.macho import analyze_slice, read_load_commands, read_slices
from dyldwatch.formats.macho import constants as C
from dyldwatch.formats.source import BytesSource

pytestmark = pytest.mark.corpus
lief.logging.disable()


def corpus_files(corpus_dir: Path) -> list[Path]:
    files = sorted(p for p in (corpus_dir / "files").iterdir() if p.is_file())
    assert files, f"no files in {corpus_dir / 'files'}"
    return files


def test_manifest_kinds_match(corpus_dir: Path) -> None:
    """The manifest's kind column (fat or macho64) matches what read_slices finds."""
    rows = (corpus_dir / "manifest.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    checked = 0
    for line in rows[1:]:
        row = dict(zip(header, line.split("\t"), strict=False))
        path = corpus_dir / "files" / row["file"]
        if not path.is_file():
            continue
        refs = read_slices(BytesSource(path.read_bytes()))
        assert (row["kind"] == "fat") == refs[0].fat, row["file"]
        assert (len(refs) > 1) == refs[0].fat, row["file"]
        if row["kind"] == "macho64":
            assert refs[0].size == int(row["size"]), row["file"]
        checked += 1
    assert checked > 0


def _lief_slices(path: Path) -> list[lief.MachO.Binary]:
    fb = lief.MachO.parse(str(path), config=lief.MachO.ParserConfig.quick)
    assert fb is not None, f"LIEF cannot parse {path}"
    return [fb.at(i) for i in range(fb.size)]


def test_corpus_agrees_with_lief(corpus_dir: Path) -> None:
    slices_seen = 0
    for path in corpus_files(corpus_dir):
        src = BytesSource(path.read_bytes())
        refs = read_slices(src)
        theirs = _lief_slices(path)
        assert len(refs) == len(theirs), path.name
        for ref, lb in zip(refs, theirs, strict=True):
            where = f"{path.name} [{ref.arch}]"
            sl = read_load_commands(src, ref)
            assert ref.cputype == int(lb.header.cpu_type) & 0xFFFFFFFF, where
            assert [c.cmd for c in sl.commands] == [int(c.command) for c in lb.commands], where
            assert [(c.cmd, c.name) for c in sl.commands if c.cmd in C.DYLIB_CMDS] == [
                (int(c.command), c.name) for c in lb.commands if isinstance(c, lief.MachO.DylibCommand)], where
            assert sl.rpaths == [c.path for c in lb.commands if isinstance(c, lief.MachO.RPathCommand)], where
            dylibs = [c for c in lb.commands if isinstance(c, lief.MachO.DylibCommand)]
            ours = [c for c in sl.commands if c.cmd in C.DYLIB_CMDS]
            for mine, other in zip(ours, dylibs, strict=True):
                assert mine.current_version == ".".join(map(str, other.current_version)), where
                assert mine.compatibility_version == ".".join(map(str, other.compatibility_version)), where

            a = analyze_slice(src, sl)
            assert a.problems == [], where
            if lb.has_uuid:
                assert a.uuid.replace("-", "") == bytes(lb.uuid.uuid).hex().upper(), where
            if lb.has_build_version:
                assert a.min_os == ".".join(map(str, lb.build_version.minos)), where
            if lb.has_symbol_command:
                assert a.nsyms == lb.symbol_command.numberof_symbols, where
            if lb.has_code_signature:
                cs = lb.code_signature
                assert a.code_signature is not None and len(a.code_signature) == cs.data_size, where
                assert a.code_signature[:4] == b"\xfa\xde\x0c\xc0", where
            else:
                assert a.code_signature is None, where
            assert a.text_entropy is not None and 0.0 < a.text_entropy <= 8.0, where
            slices_seen += 1
    assert slices_seen >= len(corpus_files(corpus_dir))

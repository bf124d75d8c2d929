"""The code-signature rules of the kernel and Security, on sentry-cli's real Developer ID signature.

Each test changes the real SuperBlob the way its case needs: the CodeDirectory version patched in
the file (so macho_info reads it), or slots repeated or added around the real blobs.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from dyldwatch.formats.macho.codesign import (
    CD_VERSION_LIMIT,
    LAUNCH_CONSTRAINT_MAGIC,
    CodeSignatureError,
    parse_code_signature,
    signature_summary,
)
from dyldwatch.formats.macho.der import decode_der_entitlements, encode_der_entitlements
from dyldwatch.formats.macho.sigwriter import blob, superblob
from dyldwatch.tables._macho import INFO_SCANNER as SCANNER
from dyldwatch.tables._macho import PARSE_CACHE
from dyldwatch.tables.base import QueryContext
from dyldwatch.tables.macho_info import MachoInfoTable

from .corpus_files import code_signature_span, copy_to, corpus_file, split_superblob

pytest.importorskip("lief")
pytestmark = pytest.mark.corpus


@pytest.fixture(scope="module")
def sentry(corpus_dir: Path) -> Path:
    return corpus_file(corpus_dir, "_sentry-cli")


@pytest.fixture(scope="module")
def entries(sentry: Path) -> list[tuple[int, bytes]]:
    _arch, off, size = code_signature_span(sentry)[-1]
    return split_superblob(sentry.read_bytes()[off : off + size])


def _info(path: Path) -> list[dict]:
    SCANNER.clear()
    PARSE_CACHE.clear()
    return list(MachoInfoTable().generate(QueryContext.build({"path": [(2, str(path))]})))


def _with_cd_version(src: Path, out: Path, version: int) -> Path:
    """A copy whose CodeDirectories (every slice) declare `version`."""
    data = bytearray(copy_to(src, out).read_bytes())
    for _arch, off, _size in code_signature_span(src):
        for slot, body in split_superblob(bytes(data[off : off + _size])):
            if slot == 0 or 0x1000 <= slot < 0x1005:
                at = data.find(body, off)
                struct.pack_into(">I", data, at + 8, version)
    out.write_bytes(bytes(data))
    return out


def test_real_signature_reads_as_developer_id(sentry: Path) -> None:
    rows = _info(sentry)
    assert {r["signature_type"] for r in rows} == {"certificate"} and all(r["error"] is None for r in rows)


def test_cd_version_at_the_compatibility_limit_is_accepted(sentry: Path, tmp_path: Path) -> None:
    at_limit = _info(_with_cd_version(sentry, tmp_path / "limit", CD_VERSION_LIMIT))
    past = _info(_with_cd_version(sentry, tmp_path / "past", CD_VERSION_LIMIT + 1))
    assert {r["signature_type"] for r in at_limit} == {"certificate"}
    assert {r["team_id"] for r in at_limit} == {"97JCY7859U"}
    assert {r["signature_type"] for r in past} == {"invalid"}
    assert all("unsupported version 0x2f001" in r["error"] for r in past)


def test_repeated_requirements_slot_is_tolerated_first_wins(entries: list[tuple[int, bytes]]) -> None:
    req = next(b for s, b in entries if s == 2)
    other = blob(0xFADE0C01, b"\0\0\0\0")  # an empty requirements vector
    sig = parse_code_signature(superblob([*entries, (2, other)]))
    assert sig.signature_type == "certificate" and sig.requirements_present
    assert any("repeats slot 0x2; the first one is used" in p for p in sig.problems)
    assert not any("requirements blob" in p for p in sig.problems)  # the first (bound) one was checked
    assert req


@pytest.mark.parametrize("slot", [5, 7, 8, 11])
def test_repeats_the_kernel_refuses(entries: list[tuple[int, bytes]], slot: int) -> None:
    body = dict(entries).get(slot) or blob(LAUNCH_CONSTRAINT_MAGIC, encode_der_entitlements({"ccat": 1}))
    with pytest.raises(CodeSignatureError, match=f"repeats slot {slot:#x}; the kernel refuses"):
        parse_code_signature(superblob([*entries, (slot, body), (slot, body)]))


def test_repeated_code_directory_of_equal_rank_is_refused(entries: list[tuple[int, bytes]]) -> None:
    cd = next(b for s, b in entries if s == 0)
    with pytest.raises(CodeSignatureError, match="two sha256 CodeDirectories"):
        parse_code_signature(superblob([*entries, (0x1000, cd)]))


def test_launch_constraints_are_exposed(entries: list[tuple[int, bytes]]) -> None:
    parent = {"ccat": 0, "comp": 1, "reqs": {"team-identifier": "97JCY7859U"}, "vers": 1}
    sig = parse_code_signature(superblob([*entries, (9, blob(LAUNCH_CONSTRAINT_MAGIC,
                                                                    encode_der_entitlements(parent)))]))
    assert sig.launch_constraints == {"parent": parent}
    assert '"parent":{"ccat":0' in sig.launch_constraints_json
    assert any("parent launch constraint blob is not bound" in p for p in sig.problems)


def test_launch_constraint_with_wrong_magic_is_refused(entries: list[tuple[int, bytes]]) -> None:
    with pytest.raises(CodeSignatureError, match="expected 0xfade8181"):
        parse_code_signature(superblob([*entries, (8, blob(0xFADE7172, encode_der_entitlements({})))]))


def test_der_entitlements_with_data_decode(entries: list[tuple[int, bytes]]) -> None:
    value = {"com.apple.application-identifier": "X.y", "com.example.token": b"\x00\xffraw"}
    der = encode_der_entitlements(value)
    assert b"\x04\x05\x00\xffraw" in der  # OCTET STRING
    assert decode_der_entitlements(der) == value
    without_xml = [(s, b) for s, b in entries if s not in (5, 7)] + [(7, blob(0xFADE7172, der))]
    sig = parse_code_signature(superblob(without_xml))
    assert sig.entitlements == value
    assert '"com.example.token":"AP9yYXc="' in sig.entitlements_json


def test_light_signing_read_agrees_with_the_full_parse_on_every_corpus_file(corpus_dir: Path) -> None:
    """signature_type, team_id and signed from the light read (no CMS or entitlements decoding)
    equal the full parse's, file by file and slice by slice, through the table and directly."""
    files = sorted(p for p in (corpus_dir / "files").iterdir() if p.is_file())
    assert files
    light_cols = ("path", "arch", "signed", "signature_type", "team_id")
    compared = 0
    for path in files:
        SCANNER.clear()
        PARSE_CACHE.clear()
        ctx = QueryContext.build({"path": [(2, str(path))]}, light_cols)
        light = [{k: r.get(k) for k in light_cols} for r in MachoInfoTable().generate(ctx)]
        full = [{k: r.get(k) for k in light_cols} for r in _info(path)]
        assert light == full, path.name
        for _arch, off, size in code_signature_span(path):
            blob_bytes = path.read_bytes()[off : off + size] if size < (8 << 20) else None
            if blob_bytes is None:
                continue
            try:
                sig = parse_code_signature(blob_bytes)
            except CodeSignatureError:
                with pytest.raises(CodeSignatureError):
                    signature_summary(blob_bytes)
                continue
            assert signature_summary(blob_bytes) == (sig.signature_type, sig.team_id), path.name
            compared += 1
    assert compared > 50


def test_light_signing_read_refuses_what_the_full_parse_refuses_structurally(
        entries: list[tuple[int, bytes]]) -> None:
    cd = next(b for s, b in entries if s == 0)
    garbage_cms = [(s, blob(0xFADE0B01, b"\x04\x00garbage") if s == 0x10000 else b) for s, b in entries]
    assert any(s == 0x10000 for s, _ in entries)
    for bad in (superblob([*entries, (0x1000, cd)]),  # two CodeDirectories of one hash type
                superblob([(s, b) for s, b in entries if s != 0 and not 0x1000 <= s <= 0x1004]),  # none
                superblob(garbage_cms)):  # a CMS blob that is not a ContentInfo
        with pytest.raises(CodeSignatureError):
            parse_code_signature(bad)
        with pytest.raises(CodeSignatureError):
            signature_summary(bad)

"""Code-signature parsing: signature kinds, identity, cdhash, entitlements, and hostile blobs."""

from __future__ import annotations

import contextlib
import hashlib
import random
import struct
from pathlib import Path

import pytest

from dyldwatch.macho.codesign import CodeSignatureError, parse_code_signature
from dyldwatch.macho.der import decode_der_entitlements, encode_der_entitlements

from .sigwriter import build_superblob, code_directory, developer_id_cms

ENTS = {"com.apple.security.cs.allow-jit": True, "com.apple.security.cs.disable-library-validation": False,
        "keychain-access-groups": ["TEAM123456.com.example"], "nested": {"level": 3, "name": "x"}}


def cd_bytes(blob: bytes, slot: int = 0) -> bytes:
    count = struct.unpack_from(">I", blob, 8)[0]
    for i in range(count):
        s, off = struct.unpack_from(">2I", blob, 12 + 8 * i)
        if s == slot:
            return blob[off : off + struct.unpack_from(">I", blob, off + 4)[0]]
    raise KeyError(slot)


def test_adhoc() -> None:
    sig = parse_code_signature(build_superblob("a.out", flags=0x2))
    assert sig.signature_type == "adhoc" and sig.adhoc and not sig.hardened_runtime
    assert sig.signing_id == "a.out" and sig.team_id is None and sig.authority is None


def test_linker_signed() -> None:
    sig = parse_code_signature(build_superblob("tool-5555", flags=0x20002))
    assert sig.signature_type == "linker-signed" and sig.linker_signed


def test_certificate_with_runtime_team_and_leaf_authority() -> None:
    blob = build_superblob("com.example.app", team_id="TEAM123456", flags=0x10000, entitlements=ENTS,
                           cms_blob=developer_id_cms(root_first=True), code_pages=b"\xcc" * 9000)
    sig = parse_code_signature(blob)
    assert sig.signature_type == "certificate" and sig.hardened_runtime
    assert sig.team_id == "TEAM123456" and sig.signing_id == "com.example.app"
    assert sig.authority == "Developer ID Application: Test Org (TEAM123456)"
    assert sig.authorities[1:] == ["Developer ID Certification Authority", "Test Root CA"]
    assert sig.entitlements == ENTS
    assert sig.requirements_present


def test_team_id_only_from_versions_that_carry_it() -> None:
    assert parse_code_signature(build_superblob("x", team_id="T", version=0x20100)).team_id is None
    assert parse_code_signature(build_superblob("x", team_id="T", version=0x20200)).team_id == "T"


def test_cdhash_is_the_digest_of_the_code_directory_truncated() -> None:
    blob = build_superblob("x", code_pages=b"abc" * 5000)
    assert parse_code_signature(blob).cdhash == hashlib.sha256(cd_bytes(blob)).hexdigest()[:40]
    blob = build_superblob("x", hash_type=1)
    assert parse_code_signature(blob).cdhash == hashlib.sha1(cd_bytes(blob)).hexdigest()


def test_sha256_alternate_wins_over_sha1_primary() -> None:
    blob = build_superblob("x", sha1_primary=True)
    sig = parse_code_signature(blob)
    assert sig.hash_type == "sha256"
    assert sig.cdhash == hashlib.sha256(cd_bytes(blob, 0x1000)).hexdigest()[:40]


def test_xml_and_der_entitlements_agree() -> None:
    xml_only = parse_code_signature(build_superblob("x", entitlements=ENTS, der_entitlements=False))
    der_only = parse_code_signature(build_superblob("x", entitlements=ENTS, xml_entitlements=False))
    assert xml_only.entitlements == der_only.entitlements == ENTS
    assert decode_der_entitlements(encode_der_entitlements(ENTS)) == ENTS
    assert xml_only.entitlements_json == (
        '{"com.apple.security.cs.allow-jit":true,"com.apple.security.cs.disable-library-validation":false,'
        '"keychain-access-groups":["TEAM123456.com.example"],"nested":{"level":3,"name":"x"}}')


def test_real_der_shape_of_empty_entitlements() -> None:
    # what codesign writes for an empty dictionary: [APPLICATION 16] { INTEGER 1, [CONTEXT 16] {} }
    assert decode_der_entitlements(b"p\x05\x02\x01\x01\xb0\x00") == {}


def test_entity_declarations_in_entitlements_are_refused() -> None:
    evil = (b'<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
            b"<plist><dict><key>k</key><string>&b;</string></dict></plist>")
    with pytest.raises(CodeSignatureError, match="entitlements"):
        parse_code_signature(build_superblob("x", raw_xml_entitlements=evil))
    with pytest.raises(CodeSignatureError, match="not a dictionary"):
        parse_code_signature(build_superblob("x", raw_xml_entitlements=b'<plist><array/></plist>'))


def test_every_truncation_and_random_flips_raise_only_code_signature_error() -> None:
    blob = build_superblob("com.example", team_id="T", entitlements=ENTS, cms_blob=developer_id_cms())
    for n in range(len(blob)):
        with contextlib.suppress(CodeSignatureError):
            parse_code_signature(blob[:n])
    rng = random.Random(7)
    for _ in range(3000):
        b = bytearray(blob)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.getrandbits(8)
        with contextlib.suppress(CodeSignatureError):
            parse_code_signature(bytes(b))


@pytest.mark.parametrize("edit", ["huge_count", "offset_past_end", "self_index", "short_cd", "bad_hash_type"])
def test_structural_lies(edit: str) -> None:
    blob = bytearray(build_superblob("x"))
    if edit == "huge_count":
        struct.pack_into(">I", blob, 8, 1 << 31)
    elif edit == "offset_past_end":
        struct.pack_into(">I", blob, 16, len(blob) + 100)
    elif edit == "self_index":
        struct.pack_into(">I", blob, 16, 0)
    elif edit == "short_cd":
        off = struct.unpack_from(">I", blob, 16)[0]
        struct.pack_into(">I", blob, off + 4, 12)
    elif edit == "bad_hash_type":
        off = struct.unpack_from(">I", blob, 16)[0]
        blob[off + 37] = 99
    with pytest.raises(CodeSignatureError):
        parse_code_signature(bytes(blob))


def test_code_directory_identifier_must_be_in_bounds() -> None:
    cd = bytearray(code_directory("x", team_id=None, flags=2, hash_type=2, code_pages=b"", page_size_log2=12,
                                  version=0x20400, special=[]))
    struct.pack_into(">I", cd, 20, len(cd) + 5)
    blob = struct.pack(">5I", 0xFADE0CC0, 20 + len(cd), 1, 0, 20) + bytes(cd)
    with pytest.raises(CodeSignatureError, match="identifier"):
        parse_code_signature(blob)


@pytest.mark.corpus
def test_corpus_signatures(corpus_dir: Path) -> None:
    """Every real signature parses; the corpus has ad-hoc, linker-signed and Developer ID ones."""
    import lief

    from dyldwatch.host.files import FileSource
    from dyldwatch.macho import analyze_slice, read_load_commands, read_slices

    lief.logging.disable()
    kinds: set[str] = set()
    for path in sorted((corpus_dir / "files").iterdir()):
        with FileSource(str(path)) as src:
            for ref in read_slices(src):
                blob = analyze_slice(src, read_load_commands(src, ref)).code_signature
                if blob is None:
                    continue
                sig = parse_code_signature(blob)
                assert sig.problems == [], (path.name, sig.problems)
                kinds.add(sig.signature_type)
                if sig.signature_type == "certificate":
                    assert sig.authority and sig.authority.startswith("Developer ID Application")
                    assert sig.team_id and sig.team_id in sig.authority and sig.hardened_runtime
                    assert sig.entitlements is not None
    assert {"adhoc", "linker-signed", "certificate"} <= kinds

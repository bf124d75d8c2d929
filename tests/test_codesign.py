"""Code-signature parsing: signature kinds, identity, cdhash, entitlements, and hostile blobs."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import plistlib
import random
import struct
from pathlib import Path

import pytest

from dyldwatch.formats.macho.codesign import CodeSignature, CodeSignatureError, parse_code_signature
from dyldwatch.formats.macho.der import DerError, decode_der_entitlements, encode_der_entitlements
from dyldwatch.formats.macho.sigwriter import (
    CMS,
    DER_ENTITLEMENTS,
    ENTITLEMENTS,
    blob,
    build_superblob,
    code_directory,
    developer_id_cms,
    signed_developer_id_cms,
    superblob,
)

ENTS = {
    "com.apple.security.cs.allow-jit": True,
    "com.apple.security.cs.disable-library-validation": False,
    "keychain-access-groups": ["TEAM123456.com.example", "TEAM123456.shared"],
    "nested": {"level": 3, "name": "x", "deeper": {"list": [True, 1, "s", {"k": -129}]}},
    "com.apple.developer.big": 2**40,
    "negative": -1,
    "empty-array": [],
    "empty-dict": {},
}
LEAF = "Developer ID Application: Test Org (TEAM123456)"


def slot_bytes(sig: bytes, slot: int) -> bytes:
    """The whole sub-blob in `slot`, found by walking the index independently of the parser."""
    count = struct.unpack_from(">I", sig, 8)[0]
    for i in range(count):
        s, off = struct.unpack_from(">2I", sig, 12 + 8 * i)
        if s == slot:
            return sig[off : off + struct.unpack_from(">I", sig, off + 4)[0]]
    raise KeyError(slot)


def replace_slot(sig: bytes, slot: int, new: bytes) -> bytes:
    """The SuperBlob re-laid with one sub-blob swapped (its CodeDirectory binding left stale)."""
    count = struct.unpack_from(">I", sig, 8)[0]
    slots = [struct.unpack_from(">I", sig, 12 + 8 * i)[0] for i in range(count)]
    return superblob([(s, new if s == slot else slot_bytes(sig, s)) for s in slots])


def parse(**kw: object) -> CodeSignature:
    return parse_code_signature(build_superblob(**kw))  # type: ignore[arg-type]


# --- signature kinds -------------------------------------------------------------------------

def test_adhoc() -> None:
    sig = parse(identifier="a.out", flags=0x2)
    assert sig.signature_type == "adhoc" and sig.adhoc and not sig.linker_signed and not sig.hardened_runtime
    assert sig.signing_id == "a.out" and sig.team_id is None
    assert sig.authority is None and sig.authorities == [] and sig.entitlements is None
    assert sig.requirements_present and sig.problems == []


def test_linker_signed() -> None:
    # ld64 sets adhoc and linker-signed together and writes no requirements or CMS
    cd = code_directory("tool-5555", team_id=None, flags=0x20002, hash_type=2, code_pages=b"\x90" * 5000,
                        page_size_log2=12, version=0x20400, special=[])
    sig = parse_code_signature(superblob([(0, cd)]))
    assert sig.signature_type == "linker-signed" and sig.linker_signed and sig.adhoc
    assert not sig.requirements_present and sig.problems == []
    assert sig.code_limit == 5000 and sig.page_size == 4096


def test_no_adhoc_flag_and_no_cms_is_adhoc_with_a_problem() -> None:
    cd = code_directory("x", team_id=None, flags=0, hash_type=2, code_pages=b"", page_size_log2=12,
                        version=0x20400, special=[])
    sig = parse_code_signature(superblob([(0, cd)]))
    assert sig.signature_type == "adhoc" and any("no CMS" in p for p in sig.problems)


@pytest.mark.parametrize("root_first", [True, False])
def test_certificate_authority_is_the_leaf_whatever_the_order(root_first: bool) -> None:
    sig = parse(identifier="com.example.app", team_id="TEAM123456", flags=0x10000,
                cms=developer_id_cms(root_first=root_first))
    assert sig.signature_type == "certificate" and not sig.adhoc
    assert sig.authority == LEAF
    assert sig.authorities == [LEAF, "Developer ID Certification Authority", "Test Root CA"]
    assert sig.problems == []


@pytest.mark.parametrize("root_first", [True, False])
def test_certificate_from_a_real_chain_and_signature(root_first: bool) -> None:
    """A chain as a real X.509 library writes it (extensions, PrintableStrings), really signed."""
    pytest.importorskip("cryptography")
    sign, _root = signed_developer_id_cms(root_first=root_first)
    sb = build_superblob("com.example.app", team_id="TEAM123456", flags=0x10000, entitlements=ENTS, cms=sign,
                         code_pages=b"\xcc" * 9000, version=0x20500, runtime=0xE0000)
    sig = parse_code_signature(sb)
    assert sig.signature_type == "certificate" and sig.hardened_runtime
    assert sig.authority == LEAF and sig.authorities[1:] == ["Developer ID Certification Authority", "Test Root CA"]
    assert sig.team_id == "TEAM123456" and sig.runtime_version == 0xE0000 and sig.problems == []
    _verify_fixture_cms(slot_bytes(sb, 0x10000)[8:], slot_bytes(sb, 0))


def _verify_fixture_cms(der: bytes, code_dir: bytes) -> None:
    """The fixture's CMS is a genuine signature over the CodeDirectory (so the fixture is honest)."""
    from asn1crypto import cms
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signed = cms.ContentInfo.load(der)["content"]
    si = signed["signer_infos"][0]
    attrs = {a["type"].native: a["values"][0].native for a in si["signed_attrs"]}
    assert attrs["message_digest"] == hashlib.sha256(code_dir).digest()
    leaf = next(x509.load_der_x509_certificate(c.chosen.dump()) for c in signed["certificates"]
                if c.chosen.subject.native["common_name"] == LEAF)
    signed_attrs = si["signed_attrs"].untag().dump()  # signed as a SET OF, not as [0] IMPLICIT
    leaf.public_key().verify(si["signature"].native, signed_attrs, padding.PKCS1v15(), hashes.SHA256())


def test_empty_cms_wrapper_is_adhoc_and_a_team_mismatch_is_a_problem() -> None:
    assert parse(identifier="x", flags=0x2, cms=b"").signature_type == "adhoc"
    sig = parse(identifier="x", team_id="OTHERTEAM1", flags=0, cms=developer_id_cms())
    assert sig.signature_type == "certificate" and any("OTHERTEAM1" in p for p in sig.problems)


def test_garbage_cms_is_an_error_not_a_certificate() -> None:
    with pytest.raises(CodeSignatureError, match="CMS signature at 0x[0-9a-f]+ does not parse"):
        parse(identifier="x", cms=b"\x30\x03\x02\x01\x01trailing")


# --- CodeDirectory fields --------------------------------------------------------------------

def test_hardened_runtime_flag() -> None:
    assert parse(identifier="x", flags=0x10002).hardened_runtime
    assert not parse(identifier="x", flags=0x2).hardened_runtime
    assert parse(identifier="x", flags=0x10002).cd_flags == 0x10002


@pytest.mark.parametrize(("version", "team"), [(0x20001, None), (0x20100, None), (0x20200, "T"),
                                                (0x20300, "T"), (0x20400, "T"), (0x20500, "T")])
def test_team_id_only_from_versions_that_carry_it(version: int, team: str | None) -> None:
    sig = parse(identifier="x", team_id="T", version=version)
    assert sig.team_id == team and sig.cd_version == version
    assert parse(identifier="x", version=version).team_id is None


def test_cdhash_is_the_digest_of_the_code_directory_truncated() -> None:
    sb = build_superblob("x", code_pages=b"abc" * 5000)
    assert parse_code_signature(sb).cdhash == hashlib.sha256(slot_bytes(sb, 0)).hexdigest()[:40]
    sb = build_superblob("x", hash_type=1)
    sig = parse_code_signature(sb)
    assert sig.cdhash == hashlib.sha1(slot_bytes(sb, 0)).hexdigest() and sig.hash_type == "sha1"
    sb = build_superblob("x", hash_type=4)
    assert parse_code_signature(sb).cdhash == hashlib.sha384(slot_bytes(sb, 0)).hexdigest()[:40]


def test_sha256_alternate_wins_over_sha1_primary() -> None:
    sb = build_superblob("x", sha1_primary=True, entitlements=ENTS)
    sig = parse_code_signature(sb)
    assert sig.hash_type == "sha256" and sig.hash_types == ["sha1", "sha256"] and sig.problems == []
    assert sig.cdhash == hashlib.sha256(slot_bytes(sb, 0x1000)).hexdigest()[:40]
    sb = build_superblob("x", alternate_sha1=True)
    sig = parse_code_signature(sb)
    assert sig.hash_type == "sha256" and sig.cdhash == hashlib.sha256(slot_bytes(sb, 0)).hexdigest()[:40]


def test_two_code_directories_of_one_hash_type_are_refused() -> None:
    cd = slot_bytes(build_superblob("x"), 0)
    with pytest.raises(CodeSignatureError, match="two sha256 CodeDirectories"):
        parse_code_signature(superblob([(0, cd), (0x1000, cd)]))


# --- entitlements ----------------------------------------------------------------------------

def test_xml_and_der_entitlements_agree() -> None:
    both = parse(identifier="x", entitlements=ENTS)
    xml_only = parse(identifier="x", entitlements=ENTS, der_entitlements=False)
    der_only = parse(identifier="x", entitlements=ENTS, xml_entitlements=False)
    assert both.entitlements == xml_only.entitlements == der_only.entitlements == ENTS
    assert both.problems == xml_only.problems == der_only.problems == []
    assert decode_der_entitlements(encode_der_entitlements(ENTS)) == ENTS


def test_entitlements_json_is_compact_and_sorted() -> None:
    sig = parse(identifier="x", entitlements={"b": [1, "two"], "a": {"z": True, "y": False}})
    assert sig.entitlements_json == '{"a":{"y":false,"z":true},"b":[1,"two"]}'
    assert parse(identifier="x").entitlements_json is None
    odd = CodeSignature("adhoc", entitlements={"d": b"\x00\x01", "t": datetime.datetime(2026, 1, 2, 3, 4, 5),
                                               "f": float("nan"), "r": 1.5})
    assert odd.entitlements_json == '{"d":"AAE=","f":"nan","r":1.5,"t":"2026-01-02T03:04:05"}'


# Bytes Apple's codesign writes for these entitlements (--generate-entitlement-der).
CODESIGN_DER = [
    ({}, "7005020101b000"),
    ({"key": False}, "700f020101b00a30080c036b6579010100"),
    ({"key": True}, "700f020101b00a30080c036b65790101ff"),
    ({"key": -1}, "700f020101b00a30080c036b65790201ff"),
    ({"key": 42}, "700f020101b00a30080c036b657902012a"),
    ({"key": "value"}, "7013020101b00e300c0c036b65790c0576616c7565"),
    ({"key": []}, "700e020101b00930070c036b65793000"),
    ({"key": [True, "foo"]}, "7016020101b011300f0c036b657930080101ff0c03666f6f"),
    ({"key": {}}, "700e020101b00930070c036b6579b000"),
    ({"key": {"inner": False}}, "701a020101b01530130c036b6579b00c300a0c05696e6e6572010100"),
    ({"key": False, "key2": True, "key3": 42},
     "7025020101b02030080c036b657901010030090c046b6579320101ff30090c046b65793302012a"),
]


@pytest.mark.parametrize(("value", "hexbytes"), CODESIGN_DER)
def test_der_matches_what_codesign_writes(value: dict[str, object], hexbytes: str) -> None:
    assert decode_der_entitlements(bytes.fromhex(hexbytes)) == value
    assert encode_der_entitlements(value).hex() == hexbytes


@pytest.mark.parametrize("bad", [
    "7006020101b000",              # outer length past the end
    "7005020101b00000",            # trailing byte
    "3005020101b000",              # not [APPLICATION 16]
    "7005040101b000",              # no version INTEGER
    "700f020101b00a30080c036b657901020000",  # two-byte BOOLEAN
    "7014020101b00f30080c036b657901010030030c016b",  # entry with no value
    "7018020101b013" + "30080c036b6579010100" * 2 + "ff",  # junk
    "70808005020101b000",          # indefinite length
])
def test_malformed_der_entitlements(bad: str) -> None:
    with pytest.raises(DerError):
        decode_der_entitlements(bytes.fromhex(bad))


def test_der_refuses_repeated_keys_and_deep_nesting() -> None:
    entry = bytes.fromhex("30080c036b6579010100")
    with pytest.raises(DerError, match="repeats"):
        decode_der_entitlements(bytes([0x70, 25, 2, 1, 1, 0xB0, 20]) + entry * 2)
    deep: dict[str, object] = {}
    for _ in range(40):
        deep = {"k": deep}
    with pytest.raises(DerError, match="deeper"):
        decode_der_entitlements(encode_der_entitlements(deep))


def test_der_only_garbage_is_an_error_but_beside_xml_a_problem() -> None:
    sb = build_superblob("x", entitlements={"a": True}, xml_entitlements=False)
    bad = replace_slot(sb, 7, blob(DER_ENTITLEMENTS, b"\x70\x02\x02\x01"))
    with pytest.raises(CodeSignatureError, match="DER entitlements at 0x"):
        parse_code_signature(bad)
    sb = build_superblob("x", entitlements={"a": True})
    sig = parse_code_signature(replace_slot(sb, 7, blob(DER_ENTITLEMENTS, encode_der_entitlements({"a": False}))))
    assert sig.entitlements == {"a": True}
    assert "XML and DER entitlements differ" in sig.problems
    assert any("DER entitlements blob" in p and "digest" in p for p in sig.problems)


def test_swapped_entitlements_do_not_match_the_code_directory() -> None:
    sb = build_superblob("x", entitlements={"com.apple.security.get-task-allow": False}, der_entitlements=False)
    evil = blob(ENTITLEMENTS, plistlib.dumps({"com.apple.security.get-task-allow": True}))
    sig = parse_code_signature(replace_slot(sb, 5, evil))
    assert sig.entitlements == {"com.apple.security.get-task-allow": True}
    assert any(p.startswith("entitlements blob") and "digest" in p for p in sig.problems)


def test_entity_declarations_in_entitlements_are_refused() -> None:
    evil = (b'<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
            b"<plist><dict><key>k</key><string>&b;</string></dict></plist>")
    with pytest.raises(CodeSignatureError, match="entitlements XML at 0x[0-9a-f]+ does not parse"):
        parse(identifier="x", raw_xml_entitlements=evil)
    with pytest.raises(CodeSignatureError, match="not a dictionary"):
        parse(identifier="x", raw_xml_entitlements=b"<plist><array/></plist>")
    with pytest.raises(CodeSignatureError, match="bytes, over the"):
        parse(identifier="x", raw_xml_entitlements=b" " * ((1 << 20) + 1))
    deep = b"<plist><dict><key>k</key>" + b"<array>" * 5000 + b"</array>" * 5000 + b"</dict></plist>"
    with pytest.raises(CodeSignatureError, match="deeper"):
        parse(identifier="x", raw_xml_entitlements=deep)


# --- hostile structure -----------------------------------------------------------------------

def _hostile_seed() -> bytes:
    return build_superblob("com.example", team_id="TEAM123456", flags=0x10000, entitlements=ENTS,
                           cms=developer_id_cms(), sha1_primary=True, code_pages=b"\x01" * 10000)


def _must_only_raise_code_signature_error(data: bytes) -> None:
    with contextlib.suppress(CodeSignatureError):
        sig = parse_code_signature(data)
        sig.entitlements_json  # noqa: B018 - the table calls it; it must not raise either


def test_every_truncation_raises_only_code_signature_error() -> None:
    sb = _hostile_seed()
    for n in range(len(sb)):
        with pytest.raises(CodeSignatureError):
            parse_code_signature(sb[:n])


def test_random_byte_flips_raise_only_code_signature_error() -> None:
    sb = _hostile_seed()
    rng = random.Random(20261122)
    for _ in range(3000):
        b = bytearray(sb)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.getrandbits(8)
        _must_only_raise_code_signature_error(bytes(b))
    header_end = 12 + 8 * struct.unpack_from(">I", sb, 8)[0] + 120  # aim at the index and CD header
    for _ in range(2000):
        b = bytearray(sb)
        i = rng.randrange(header_end)
        b[i] = rng.getrandbits(8)
        _must_only_raise_code_signature_error(bytes(b))


def _edit(sb: bytes, edit: str) -> bytes:
    b = bytearray(sb)
    cd_off = struct.unpack_from(">I", b, 16)[0]
    if edit == "huge_count":
        struct.pack_into(">I", b, 8, 1 << 31)
    elif edit == "count_past_length":
        struct.pack_into(">I", b, 8, 40)
    elif edit == "superblob_length_past_end":
        struct.pack_into(">I", b, 4, len(b) + 1)
    elif edit == "bad_magic":
        struct.pack_into(">I", b, 0, 0xFADE0CC1)
    elif edit == "offset_past_end":
        struct.pack_into(">I", b, 16, len(b) + 100)
    elif edit == "offset_at_end":
        struct.pack_into(">I", b, 16, len(b) - 4)
    elif edit == "self_reference":
        struct.pack_into(">I", b, 16, 0)
    elif edit == "into_index":
        struct.pack_into(">I", b, 16, 12)
    elif edit == "blob_length_past_end":
        struct.pack_into(">I", b, cd_off + 4, len(b))
    elif edit == "blob_length_tiny":
        struct.pack_into(">I", b, cd_off + 4, 4)
    elif edit == "short_cd":
        struct.pack_into(">I", b, cd_off + 4, 40)
    elif edit == "header_shorter_than_version":
        struct.pack_into(">I", b, cd_off + 8, 0x20600)
    elif edit == "bad_version":
        struct.pack_into(">I", b, cd_off + 8, 0x30000)
    elif edit == "bad_hash_type":
        b[cd_off + 37] = 99
    elif edit == "wrong_hash_size":
        b[cd_off + 36] = 20
    elif edit == "ident_past_end":
        struct.pack_into(">I", b, cd_off + 20, 0xFFFFFFF0)
    elif edit == "ident_unterminated":
        cd_len = struct.unpack_from(">I", b, cd_off + 4)[0]
        struct.pack_into(">I", b, cd_off + 20, cd_len - 1)
        b[cd_off + cd_len - 1] = 0x41
    elif edit == "team_past_end":
        struct.pack_into(">I", b, cd_off + 48, 0x7FFFFFFF)
    elif edit == "hash_offset_past_end":
        struct.pack_into(">I", b, cd_off + 16, 0xFFFFFFFF)
    elif edit == "special_slots_overflow":
        struct.pack_into(">I", b, cd_off + 24, 0xFFFFFFFF)
    elif edit == "code_slots_overflow":
        struct.pack_into(">I", b, cd_off + 28, 0x7FFFFFFF)
    elif edit == "scatter_past_end":
        struct.pack_into(">I", b, cd_off + 44, 0xFFFFFF00)
    elif edit == "repeated_slot":
        struct.pack_into(">I", b, 20, 0)  # the second index entry also claims slot 0
    elif edit == "no_code_directory":
        count = struct.unpack_from(">I", b, 8)[0]
        for i in range(count):
            if struct.unpack_from(">I", b, 12 + 8 * i)[0] in (0, 0x1000):
                struct.pack_into(">I", b, 12 + 8 * i, 0x9999 + i)
    elif edit == "entitlements_wrong_magic":
        off = next(struct.unpack_from(">I", b, 16 + 8 * i)[0] for i in range(b[11])
                   if struct.unpack_from(">I", b, 12 + 8 * i)[0] == 5)
        struct.pack_into(">I", b, off, CMS)
    return bytes(b)


EDITS = ["huge_count", "count_past_length", "superblob_length_past_end", "bad_magic", "offset_past_end",
         "offset_at_end", "self_reference", "into_index", "blob_length_past_end", "blob_length_tiny", "short_cd",
         "header_shorter_than_version", "bad_version", "bad_hash_type", "wrong_hash_size", "ident_past_end",
         "ident_unterminated", "team_past_end", "hash_offset_past_end", "special_slots_overflow",
         "code_slots_overflow", "scatter_past_end", "repeated_slot", "no_code_directory",
         "entitlements_wrong_magic"]


@pytest.mark.parametrize("edit", EDITS)
def test_structural_lies(edit: str) -> None:
    sb = build_superblob("x", team_id="TEAM123456", entitlements={"a": True}, code_pages=b"\x01" * 100)
    parse_code_signature(sb)  # the unedited blob is fine
    with pytest.raises(CodeSignatureError, match=r"0x|offset|slot|bytes|CodeDirector"):
        parse_code_signature(_edit(sb, edit))


def test_code_directory_shorter_than_its_version_header() -> None:
    cd = bytearray(code_directory("x", team_id=None, flags=2, hash_type=2, code_pages=b"", page_size_log2=12,
                                  version=0x20100, special=[]))
    parse_code_signature(superblob([(0, bytes(cd))]))
    struct.pack_into(">I", cd, 8, 0x20500)
    with pytest.raises(CodeSignatureError, match="shorter than the 96-byte header of version 0x20500"):
        parse_code_signature(superblob([(0, bytes(cd))]))


def test_index_longer_than_the_superblob() -> None:
    sb = bytearray(superblob([(0, slot_bytes(build_superblob("x"), 0))]))
    struct.pack_into(">I", sb, 8, 64)
    with pytest.raises(CodeSignatureError, match="index of 64 entries runs past"):
        parse_code_signature(bytes(sb))


def test_index_may_not_exceed_the_count_cap_even_when_it_fits() -> None:
    cd = slot_bytes(build_superblob("x"), 0)
    entries = [(0, cd)] + [(0x20000 + i, blob(0xFADE0000, b"")) for i in range(64)]
    with pytest.raises(CodeSignatureError, match="over the limit of 64"):
        parse_code_signature(superblob(entries))


def test_padding_after_the_superblob_is_ignored() -> None:
    sb = build_superblob("x")
    assert parse_code_signature(sb + b"\0" * 1000).cdhash == parse_code_signature(sb).cdhash


# --- real binaries ---------------------------------------------------------------------------

@pytest.mark.corpus
def test_corpus_signatures(corpus_dir: Path) -> None:
    """Every real signature (LIEF extracts the bytes) parses, self-consistently; all kinds occur."""
    import lief

    lief.logging.disable()
    kinds: dict[str, int] = {}
    cross_checked = 0
    for path in sorted((corpus_dir / "files").iterdir()):
        fat = lief.MachO.parse(str(path))
        if fat is None:
            continue
        for binary in fat:
            if not binary.has_code_signature:
                continue
            sb = bytes(binary.code_signature.content)
            sig = parse_code_signature(sb)
            assert sig.problems == [], (path.name, sig.problems)
            assert sig.signing_id and sig.cdhash and len(sig.cdhash) == 40
            kinds[sig.signature_type] = kinds.get(sig.signature_type, 0) + 1
            if sig.signature_type == "certificate":
                # LIEF 1.0 does not decode the CodeDirectory; the designated requirement and the
                # leaf certificate are independent witnesses of identifier and team id
                assert sig.authority and sig.authority.startswith("Developer ID Application")
                assert sig.team_id and sig.authority.endswith(f"({sig.team_id})") and sig.hardened_runtime
                requirements = slot_bytes(sb, 2)
                assert sig.signing_id.encode() in requirements and sig.team_id.encode() in requirements
                assert sig.entitlements is not None
            with contextlib.suppress(KeyError):
                xml = plistlib.loads(slot_bytes(sb, 5)[8:])
                assert decode_der_entitlements(slot_bytes(sb, 7)[8:]) == xml == sig.entitlements
                cross_checked += 1
    assert {"adhoc", "linker-signed", "certificate"} <= set(kinds), kinds
    assert cross_checked >= 1


def test_der_and_xml_round_trip_any_entitlements() -> None:
    """Whatever codesign can write as DER, the XML and DER readers decode to the same value."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    text = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=20)  # what XML plists can hold
    scalars = st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | text
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(text, inner, max_size=4), max_leaves=20)

    @settings(max_examples=150, deadline=None)
    @given(st.dictionaries(text, values, max_size=6))
    def check(ents: dict[str, object]) -> None:
        sig = parse(identifier="x", entitlements=ents)
        assert sig.entitlements == ents and sig.problems == []
        assert parse(identifier="x", entitlements=ents, xml_entitlements=False).entitlements == ents

    check()

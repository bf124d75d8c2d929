"""Builds code-signature SuperBlobs and CMS blobs for test fixtures (no third-party signatures).

Certificates are structurally real X.509 (asn1crypto builds them) but their signatures are
filler: the parser reads who signed, it does not verify, and neither does this writer pretend to.
"""

from __future__ import annotations

import hashlib
import plistlib
import struct
from typing import Any

from asn1crypto import algos, cms, core, keys, x509

from dyldwatch.macho.der import encode_der_entitlements

SUPERBLOB, CODEDIRECTORY, REQUIREMENTS, ENTITLEMENTS, DER_ENTITLEMENTS, CMS = (
    0xFADE0CC0, 0xFADE0C02, 0xFADE0C01, 0xFADE7171, 0xFADE7172, 0xFADE0B01)
_DIGEST = {1: ("sha1", 20), 2: ("sha256", 32), 4: ("sha384", 48)}


def blob(magic: int, payload: bytes) -> bytes:
    return struct.pack(">2I", magic, 8 + len(payload)) + payload


def code_directory(identifier: str, *, team_id: str | None, flags: int, hash_type: int, code_pages: bytes,
                   page_size_log2: int, version: int, special: list[bytes]) -> bytes:
    """A CodeDirectory of the given version with real page hashes of `code_pages`."""
    name, hsize = _DIGEST[hash_type]
    page = 1 << page_size_log2
    pages = [code_pages[i : i + page] for i in range(0, len(code_pages), page)] or []
    code_hashes = b"".join(hashlib.new(name, p).digest() for p in pages)
    special_hashes = b"".join(hashlib.new(name, s).digest() if s else b"\0" * hsize for s in reversed(special))
    fixed = 44
    if version >= 0x20100:
        fixed = 48
    if version >= 0x20200:
        fixed = 52
    if version >= 0x20300:
        fixed = 64
    if version >= 0x20400:
        fixed = 88
    ident = identifier.encode() + b"\0"
    team = (team_id.encode() + b"\0") if team_id and version >= 0x20200 else b""
    ident_off = fixed
    team_off = ident_off + len(ident) if team else 0
    hash_off = ident_off + len(ident) + len(team) + len(special_hashes)
    total = hash_off + len(code_hashes)
    head = struct.pack(">9I", CODEDIRECTORY, total, version, flags, hash_off, ident_off, len(special), len(pages),
                       len(code_pages))
    head += struct.pack(">4BI", hsize, hash_type, 0, page_size_log2, 0)
    if version >= 0x20100:
        head += struct.pack(">I", 0)
    if version >= 0x20200:
        head += struct.pack(">I", team_off)
    if version >= 0x20300:
        head += struct.pack(">IQ", 0, 0)
    if version >= 0x20400:
        head += struct.pack(">3Q", 0, len(code_pages), 1)
    assert len(head) == fixed
    return head + ident + team + special_hashes + code_hashes


def build_superblob(identifier: str, *, team_id: str | None = None, flags: int = 0x2, hash_type: int = 2,
                    code_pages: bytes = b"", page_size_log2: int = 12, entitlements: dict[str, Any] | None = None,
                    der_entitlements: bool = True, xml_entitlements: bool = True, cms_blob: bytes | None = None,
                    version: int = 0x20400, alternate_sha1: bool = False, sha1_primary: bool = False,
                    raw_xml_entitlements: bytes | None = None) -> bytes:
    """A structurally valid SuperBlob: CodeDirectory(ies), requirements, entitlements, CMS wrapper.

    `cms_blob` None gives the empty CMS wrapper of an ad-hoc signature; bytes give a certificate
    signature. `sha1_primary` with `alternate_sha1=False` puts a SHA-1 CD in slot 0 and a SHA-256
    one at 0x1000, as codesign does for binaries that support older systems.
    """
    requirements = blob(REQUIREMENTS, struct.pack(">I", 0))
    entries: list[tuple[int, bytes]] = []
    special: list[bytes] = [b"", requirements, b"", b"", b"", b"", b""]
    ents_xml = ents_der = None
    if raw_xml_entitlements is not None:  # hostile payloads for tests
        ents_xml = blob(ENTITLEMENTS, raw_xml_entitlements)
    elif entitlements is not None and xml_entitlements:
        ents_xml = blob(ENTITLEMENTS, plistlib.dumps(entitlements, fmt=plistlib.FMT_XML))
        special[4] = ents_xml
    if entitlements is not None and der_entitlements:
        ents_der = blob(DER_ENTITLEMENTS, encode_der_entitlements(entitlements))
        special[6] = ents_der
    kw = dict(team_id=team_id, flags=flags, code_pages=code_pages, page_size_log2=page_size_log2,
              version=version, special=special)
    if sha1_primary:
        entries.append((0, code_directory(identifier, hash_type=1, **kw)))  # type: ignore[arg-type]
        entries.append((0x1000, code_directory(identifier, hash_type=2, **kw)))  # type: ignore[arg-type]
    else:
        entries.append((0, code_directory(identifier, hash_type=hash_type, **kw)))  # type: ignore[arg-type]
        if alternate_sha1:
            entries.append((0x1000, code_directory(identifier, hash_type=1, **kw)))  # type: ignore[arg-type]
    entries.append((2, requirements))
    if ents_xml is not None:
        entries.append((5, ents_xml))
    if ents_der is not None:
        entries.append((7, ents_der))
    entries.append((0x10000, blob(CMS, cms_blob or b"")))
    index_size = 12 + 8 * len(entries)
    body = b""
    index = b""
    for slot, data in entries:
        index += struct.pack(">2I", slot, index_size + len(body))
        body += data
    return struct.pack(">3I", SUPERBLOB, index_size + len(body), len(entries)) + index + body


def _name(cn: str, org: str | None = None, team: str | None = None) -> x509.Name:
    attrs: dict[str, str] = {"common_name": cn}
    if team:
        attrs["organizational_unit_name"] = team
    if org:
        attrs["organization_name"] = org
    attrs["country_name"] = "US"
    return x509.Name.build(attrs)


def certificate(subject: x509.Name, issuer: x509.Name, serial: int) -> x509.Certificate:
    """An X.509 certificate with a filler key and signature (structure only)."""
    key = keys.PublicKeyInfo({
        "algorithm": {"algorithm": "rsa", "parameters": core.Null()},
        "public_key": keys.RSAPublicKey({"modulus": (1 << 2047) + serial * 2 + 1, "public_exponent": 65537}),
    })
    tbs = x509.TbsCertificate({
        "version": "v3", "serial_number": serial,
        "signature": {"algorithm": "sha256_rsa"}, "issuer": issuer,
        "validity": {"not_before": x509.Time(name="utc_time", value=x509.UTCTime("250101000000Z").native),
                     "not_after": x509.Time(name="utc_time", value=x509.UTCTime("300101000000Z").native)},
        "subject": subject, "subject_public_key_info": key,
    })
    return x509.Certificate({"tbs_certificate": tbs, "signature_algorithm": {"algorithm": "sha256_rsa"},
                             "signature_value": b"\x00" * 256})


def developer_id_cms(org: str = "Test Org", team: str = "TEAM123456", *, root_first: bool = True) -> bytes:
    """A detached CMS SignedData carrying a Developer ID-shaped chain: leaf, intermediate, root."""
    root_n = _name("Test Root CA", "Test Root")
    inter_n = _name("Developer ID Certification Authority", "Test Root")
    leaf_n = _name(f"Developer ID Application: {org} ({team})", org, team)
    root = certificate(root_n, root_n, 1)
    inter = certificate(inter_n, root_n, 2)
    leaf = certificate(leaf_n, inter_n, 3)
    chain = [root, inter, leaf] if root_first else [leaf, inter, root]
    signer = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value=cms.IssuerAndSerialNumber(
            {"issuer": inter_n, "serial_number": 3})),
        "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"}),
        "signature": b"\x00" * 256,
    })
    signed = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
        "encap_content_info": {"content_type": "data"},
        "certificates": [cms.CertificateChoices(name="certificate", value=c) for c in chain],
        "signer_infos": [signer],
    })
    return cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()

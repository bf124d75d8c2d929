"""Builds code-signature SuperBlobs and CMS blobs for test fixtures.

Two ways to make the CMS signature. `developer_id_cms` is deterministic and dependency-free:
structurally real X.509 built with asn1crypto, filler keys and signatures. The sample databases
are built from it and must not change from run to run. `signed_developer_id_cms` makes a real
chain (root CA, intermediate, leaf) with real RSA keys and a real detached signature over the
CodeDirectory, using `cryptography` (a test-only dependency, imported lazily): it shows the parser
copes with certificates as a real X.509 library writes them, extensions and all.
"""

from __future__ import annotations

import datetime
import hashlib
import plistlib
import struct
from collections.abc import Callable
from typing import Any

from asn1crypto import algos, cms, core, keys, x509

from .der import encode_der_entitlements

SUPERBLOB, CODEDIRECTORY, REQUIREMENTS, ENTITLEMENTS, DER_ENTITLEMENTS, CMS = (
    0xFADE0CC0, 0xFADE0C02, 0xFADE0C01, 0xFADE7171, 0xFADE7172, 0xFADE0B01)
_DIGEST = {1: ("sha1", 20), 2: ("sha256", 32), 4: ("sha384", 48)}


def blob(magic: int, payload: bytes) -> bytes:
    """A generic blob: magic, total length, payload."""
    return struct.pack(">2I", magic, 8 + len(payload)) + payload


#: The fixed header length of each CodeDirectory version (the fields it adds end there).
_CD_HEADER = ((0x20500, 96), (0x20400, 88), (0x20300, 64), (0x20200, 52), (0x20100, 48))


def code_directory(identifier: str, *, team_id: str | None, flags: int, hash_type: int, code_pages: bytes,
                   page_size_log2: int, version: int, special: list[bytes], platform: int = 0,
                   exec_seg_flags: int = 1, runtime: int = 0) -> bytes:
    """A CodeDirectory of the given version with real page hashes of `code_pages`.

    `special[k - 1]` is the blob bound to special slot k (b"" for an empty, zeroed slot).
    """
    name, hsize = _DIGEST[hash_type]
    page = 1 << page_size_log2
    pages = [code_pages[i : i + page] for i in range(0, len(code_pages), page)] or []
    code_hashes = b"".join(hashlib.new(name, p).digest() for p in pages)
    special_hashes = b"".join(hashlib.new(name, s).digest() if s else b"\0" * hsize for s in reversed(special))
    fixed = next((size for v, size in _CD_HEADER if version >= v), 44)
    ident = identifier.encode() + b"\0"
    team = (team_id.encode() + b"\0") if team_id and version >= 0x20200 else b""
    ident_off = fixed
    team_off = ident_off + len(ident) if team else 0
    hash_off = ident_off + len(ident) + len(team) + len(special_hashes)
    total = hash_off + len(code_hashes)
    head = struct.pack(">9I", CODEDIRECTORY, total, version, flags, hash_off, ident_off, len(special), len(pages),
                       len(code_pages))
    head += struct.pack(">4BI", hsize, hash_type, platform, page_size_log2, 0)
    if version >= 0x20100:
        head += struct.pack(">I", 0)  # scatterOffset
    if version >= 0x20200:
        head += struct.pack(">I", team_off)
    if version >= 0x20300:
        head += struct.pack(">IQ", 0, 0)  # spare3, codeLimit64
    if version >= 0x20400:
        head += struct.pack(">3Q", 0, len(code_pages), exec_seg_flags)  # execSegBase, execSegLimit, execSegFlags
    if version >= 0x20500:
        head += struct.pack(">2I", runtime, 0)  # runtime, preEncryptOffset
    assert len(head) == fixed
    return head + ident + team + special_hashes + code_hashes


def superblob(entries: list[tuple[int, bytes]]) -> bytes:
    """Lay out (slot, blob) entries behind a SuperBlob index, in the given order."""
    index_size = 12 + 8 * len(entries)
    body = b""
    index = b""
    for slot, data in entries:
        index += struct.pack(">2I", slot, index_size + len(body))
        body += data
    return struct.pack(">3I", SUPERBLOB, index_size + len(body), len(entries)) + index + body


def build_superblob(identifier: str, *, team_id: str | None = None, flags: int = 0x2, hash_type: int = 2,
                    code_pages: bytes = b"", page_size_log2: int = 12, entitlements: dict[str, Any] | None = None,
                    der_entitlements: bool = True, xml_entitlements: bool = True,
                    cms: bytes | Callable[[bytes], bytes] | None = None, cms_blob: bytes | None = None,
                    version: int = 0x20400, alternate_sha1: bool = False, sha1_primary: bool = False,
                    raw_xml_entitlements: bytes | None = None, platform: int = 0, runtime: int = 0) -> bytes:
    """A structurally valid SuperBlob: CodeDirectory(ies), empty requirements, entitlements, CMS wrapper.

    `cms` None gives the empty CMS wrapper of an ad-hoc signature; bytes give a certificate
    signature; a callable receives the slot-0 CodeDirectory and returns the CMS (so a real
    signature can cover it). `cms_blob` is the older name, kept for samples.py. Entitlements are
    written as XML and DER and bound by their special slots, as codesign does. With
    `alternate_sha1` a SHA-1 CodeDirectory follows at 0x1000; `sha1_primary` instead puts SHA-1 in
    slot 0 and SHA-256 at 0x1000, as codesign does for binaries that support older systems.
    """
    requirements = blob(REQUIREMENTS, struct.pack(">I", 0))
    entries: list[tuple[int, bytes]] = []
    special: list[bytes] = [b"", requirements, b"", b"", b"", b"", b""]
    ents_xml = ents_der = None
    if raw_xml_entitlements is not None:  # hostile payloads for tests, deliberately left unbound
        ents_xml = blob(ENTITLEMENTS, raw_xml_entitlements)
    elif entitlements is not None and xml_entitlements:
        ents_xml = blob(ENTITLEMENTS, plistlib.dumps(entitlements, fmt=plistlib.FMT_XML))
        special[4] = ents_xml
    if entitlements is not None and der_entitlements:
        ents_der = blob(DER_ENTITLEMENTS, encode_der_entitlements(entitlements))
        special[6] = ents_der
    kw: dict[str, Any] = dict(team_id=team_id, flags=flags, code_pages=code_pages, page_size_log2=page_size_log2,
                              version=version, special=special, platform=platform, runtime=runtime)
    if sha1_primary:
        entries.append((0, code_directory(identifier, hash_type=1, **kw)))
        entries.append((0x1000, code_directory(identifier, hash_type=2, **kw)))
    else:
        entries.append((0, code_directory(identifier, hash_type=hash_type, **kw)))
        if alternate_sha1:
            entries.append((0x1000, code_directory(identifier, hash_type=1, **kw)))
    entries.append((2, requirements))
    if ents_xml is not None:
        entries.append((5, ents_xml))
    if ents_der is not None:
        entries.append((7, ents_der))
    signature = cms(entries[0][1]) if callable(cms) else (cms if cms is not None else cms_blob)
    entries.append((0x10000, blob(CMS, signature or b"")))
    return superblob(entries)


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


def signed_developer_id_cms(org: str = "Test Org", team: str = "TEAM123456", *, root_first: bool = True,
                            signing_time: datetime.datetime | None = None) -> tuple[Callable[[bytes], bytes], bytes]:
    """A real Developer ID-shaped chain and a signer: (sign(code_directory) -> CMS DER, root cert DER).

    Root CA -> "Developer ID Certification Authority" -> leaf "Developer ID Application: org (team)",
    RSA-2048 keys and proper CA extensions from `cryptography` (imported here: test-only). The CMS
    is detached SignedData over the CodeDirectory with content-type, signing-time and
    message-digest signed attributes, like codesign's; `root_first` lists the certificates root
    first so the parser cannot lean on their order.
    """
    from cryptography import x509 as cx
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    when = signing_time or datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def name(cn: str, ou: str | None = None) -> cx.Name:
        attrs = [cx.NameAttribute(NameOID.USER_ID, ou)] if ou else []
        attrs.append(cx.NameAttribute(NameOID.COMMON_NAME, cn))
        if ou:
            attrs.append(cx.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
        attrs += [cx.NameAttribute(NameOID.ORGANIZATION_NAME, org if ou else "Test Root"),
                  cx.NameAttribute(NameOID.COUNTRY_NAME, "US")]
        return cx.Name(attrs)

    def issue(subject: cx.Name, key: Any, issuer: cx.Name, issuer_key: Any, ca: bool) -> Any:
        builder = (cx.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                   .public_key(key.public_key()).serial_number(cx.random_serial_number())
                   .not_valid_before(when - datetime.timedelta(days=1))
                   .not_valid_after(when + datetime.timedelta(days=365))
                   .add_extension(cx.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(cx.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
        if not ca:
            builder = builder.add_extension(cx.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=True)
        return builder.sign(issuer_key, hashes.SHA256())

    keys_ = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]
    root_n, inter_n = name("Test Root CA"), name("Developer ID Certification Authority")
    root = issue(root_n, keys_[0], root_n, keys_[0], True)
    inter = issue(inter_n, keys_[1], root_n, keys_[0], True)
    leaf = issue(name(f"Developer ID Application: {org} ({team})", team), keys_[2], inter_n, keys_[1], False)
    ders = [c.public_bytes(serialization.Encoding.DER) for c in (root, inter, leaf)]
    chain = [x509.Certificate.load(d) for d in (ders if root_first else ders[::-1])]
    leaf_a = x509.Certificate.load(ders[2])

    def sign(code_dir: bytes) -> bytes:
        attrs = cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute({"type": "signing_time", "values": [cms.Time(name="utc_time", value=when)]}),
            cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(code_dir).digest()]}),
        ])
        signature = keys_[2].sign(attrs.dump(), padding.PKCS1v15(), hashes.SHA256())
        signer = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value=cms.IssuerAndSerialNumber(
                {"issuer": leaf_a.issuer, "serial_number": leaf_a.serial_number})),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": attrs,
            "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
            "signature": signature,
        })
        signed = cms.SignedData({
            "version": "v1",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "data"},
            "certificates": [cms.CertificateChoices(name="certificate", value=c) for c in chain],
            "signer_infos": [signer],
        })
        return cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()

    return sign, ders[0]

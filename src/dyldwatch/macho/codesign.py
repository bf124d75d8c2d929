"""The embedded code signature (LC_CODE_SIGNATURE's SuperBlob), parsed from bytes.

What a detection needs from a signature is who vouches for the code: nobody (ad hoc or
linker-signed), or a certificate whose leaf names the authority and team; plus the
CodeDirectory's identity (identifier, team id, cdhash), its hardened-runtime flag, and the
entitlements. Everything is big-endian and every offset is checked against the blob it points
into, so a hostile signature can only ever produce CodeSignatureError.
"""

from __future__ import annotations

import hashlib
import json
import plistlib
import struct
from dataclasses import dataclass, field
from typing import Any

from .der import DerError, decode_der_entitlements

SUPERBLOB_MAGIC = 0xFADE0CC0
CODEDIRECTORY_MAGIC = 0xFADE0C02
REQUIREMENTS_MAGIC = 0xFADE0C01
ENTITLEMENTS_MAGIC = 0xFADE7171
DER_ENTITLEMENTS_MAGIC = 0xFADE7172
CMS_MAGIC = 0xFADE0B01

SLOT_CODEDIRECTORY = 0
SLOT_REQUIREMENTS = 2
SLOT_ENTITLEMENTS = 5
SLOT_DER_ENTITLEMENTS = 7
SLOT_ALTERNATE_FIRST = 0x1000
SLOT_ALTERNATE_LAST = 0x1004
SLOT_SIGNATURE = 0x10000

CS_ADHOC = 0x2
CS_RUNTIME = 0x10000
CS_LINKER_SIGNED = 0x20000

HASH_TYPES = {1: "sha1", 2: "sha256", 3: "sha256-truncated", 4: "sha384"}
#: The kernel prefers the strongest digest among a file's CodeDirectories.
_HASH_RANK = {1: 1, 3: 2, 2: 3, 4: 4}
_DIGEST = {1: "sha1", 2: "sha256", 3: "sha256", 4: "sha384"}

MAX_BLOBS = 64
MAX_ENTITLEMENTS = 1 << 20


class CodeSignatureError(ValueError):
    """The signature is malformed; the message says what and at which offset in the blob."""


@dataclass(slots=True)
class CodeSignature:
    signature_type: str  # adhoc | linker-signed | certificate
    signing_id: str | None = None
    team_id: str | None = None
    cdhash: str | None = None
    cd_flags: int = 0
    cd_version: int = 0
    hash_type: str | None = None
    entitlements: dict[str, Any] | None = None
    authority: str | None = None
    authorities: list[str] = field(default_factory=list)
    requirements_present: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def hardened_runtime(self) -> bool:
        return bool(self.cd_flags & CS_RUNTIME)

    @property
    def adhoc(self) -> bool:
        return bool(self.cd_flags & CS_ADHOC)

    @property
    def linker_signed(self) -> bool:
        return bool(self.cd_flags & CS_LINKER_SIGNED)

    @property
    def entitlements_json(self) -> str | None:
        if self.entitlements is None:
            return None
        return json.dumps(self.entitlements, separators=(",", ":"), sort_keys=True, default=str)


@dataclass(frozen=True, slots=True)
class _CodeDirectory:
    version: int
    flags: int
    hash_type: int
    identifier: str | None
    team_id: str | None
    cdhash: str


def _u32(buf: bytes, off: int, what: str) -> int:
    if off < 0 or off + 4 > len(buf):
        raise CodeSignatureError(f"{what} at offset {off:#x} runs past the {len(buf)}-byte blob")
    return struct.unpack_from(">I", buf, off)[0]


def _cstring(buf: bytes, off: int, what: str) -> str:
    if off <= 0 or off >= len(buf):
        raise CodeSignatureError(f"{what} offset {off:#x} is outside the CodeDirectory")
    end = buf.find(b"\0", off)
    if end < 0:
        raise CodeSignatureError(f"{what} at {off:#x} is not NUL-terminated")
    return buf[off:end].decode("utf-8", "backslashreplace")


def _blob(sig: bytes, off: int, slot: int) -> tuple[int, bytes]:
    """The sub-blob at `off`: its magic and its bytes (bounded by its own length field)."""
    magic = _u32(sig, off, f"blob magic of slot {slot:#x}")
    length = _u32(sig, off + 4, f"blob length of slot {slot:#x}")
    if length < 8 or off + length > len(sig):
        raise CodeSignatureError(f"blob of slot {slot:#x} at {off:#x} claims {length} bytes, past the signature end")
    return magic, sig[off : off + length]


def _code_directory(cd: bytes) -> _CodeDirectory:
    if len(cd) < 44:
        raise CodeSignatureError(f"CodeDirectory is {len(cd)} bytes, shorter than its fixed header")
    version, flags, _hash_off, ident_off = struct.unpack_from(">4I", cd, 8)
    hash_type = cd[37]
    if hash_type not in HASH_TYPES:
        raise CodeSignatureError(f"CodeDirectory hash type {hash_type} is unknown")
    identifier = _cstring(cd, ident_off, "identifier") if ident_off else None
    team_id = None
    if version >= 0x20200 and len(cd) >= 52:
        team_off = _u32(cd, 48, "teamOffset")
        if team_off:
            team_id = _cstring(cd, team_off, "team id")
    digest = hashlib.new(_DIGEST[hash_type], cd).hexdigest()[:40]
    return _CodeDirectory(version, flags, hash_type, identifier, team_id, digest)


def _entitlements_xml(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_ENTITLEMENTS:
        raise CodeSignatureError(f"entitlements are {len(payload)} bytes, over the {MAX_ENTITLEMENTS} limit")
    try:
        # XML only: plistlib refuses entity declarations, so no entity expansion is possible.
        value = plistlib.loads(payload, fmt=plistlib.FMT_XML)
    except Exception as exc:  # plistlib raises several types on bad XML
        raise CodeSignatureError(f"entitlements XML does not parse: {exc}") from None
    if not isinstance(value, dict):
        raise CodeSignatureError("entitlements XML is not a dictionary")
    return value


def _authorities(cms_der: bytes) -> list[str]:
    """Common names of the CMS certificate chain, leaf first."""
    from asn1crypto import cms

    info = cms.ContentInfo.load(cms_der)
    signed = info["content"]
    certs = [c.chosen for c in signed["certificates"] if c.name == "certificate"]
    if not certs:
        return []
    issuers = {c.issuer.dump() for c in certs if c.subject != c.issuer}
    leaves = [c for c in certs if c.subject.dump() not in issuers]
    chain = [leaves[0] if leaves else certs[0]]
    while len(chain) < len(certs):
        issuer = chain[-1].issuer
        if issuer == chain[-1].subject:
            break
        nxt = next((c for c in certs if c.subject == issuer and c not in chain), None)
        if nxt is None:
            break
        chain.append(nxt)
    return [str(c.subject.native.get("common_name") or c.subject.human_friendly) for c in chain]


def parse_code_signature(blob: bytes) -> CodeSignature:
    """Decode a SuperBlob; raises only CodeSignatureError."""
    blob = bytes(blob)
    if len(blob) < 12:
        raise CodeSignatureError(f"signature is {len(blob)} bytes, too short for a SuperBlob")
    magic, length, count = struct.unpack_from(">3I", blob, 0)
    if magic != SUPERBLOB_MAGIC:
        raise CodeSignatureError(f"SuperBlob magic is {magic:#x}, expected {SUPERBLOB_MAGIC:#x}")
    if length < 12 or length > len(blob):
        raise CodeSignatureError(f"SuperBlob claims {length} bytes but {len(blob)} are present")
    sig = blob[:length]
    if count > MAX_BLOBS or 12 + 8 * count > length:
        raise CodeSignatureError(f"SuperBlob claims {count} blobs, more than fit in {length} bytes")

    directories: list[_CodeDirectory] = []
    xml_ents: bytes | None = None
    der_ents: bytes | None = None
    cms_payload: bytes | None = None
    requirements = False
    for i in range(count):
        slot, off = struct.unpack_from(">2I", sig, 12 + 8 * i)
        if off < 12 + 8 * count:
            raise CodeSignatureError(f"slot {slot:#x} points at {off:#x}, inside the SuperBlob's own index")
        bmagic, body = _blob(sig, off, slot)
        if slot == SLOT_CODEDIRECTORY or SLOT_ALTERNATE_FIRST <= slot <= SLOT_ALTERNATE_LAST:
            if bmagic != CODEDIRECTORY_MAGIC:
                raise CodeSignatureError(f"slot {slot:#x} holds magic {bmagic:#x}, not a CodeDirectory")
            directories.append(_code_directory(body))
        elif slot == SLOT_ENTITLEMENTS and bmagic == ENTITLEMENTS_MAGIC:
            xml_ents = body[8:]
        elif slot == SLOT_DER_ENTITLEMENTS and bmagic == DER_ENTITLEMENTS_MAGIC:
            der_ents = body[8:]
        elif slot == SLOT_REQUIREMENTS and bmagic == REQUIREMENTS_MAGIC:
            requirements = True
        elif slot == SLOT_SIGNATURE and bmagic == CMS_MAGIC:
            cms_payload = body[8:]
    if not directories:
        raise CodeSignatureError("SuperBlob has no CodeDirectory")
    best = max(directories, key=lambda d: _HASH_RANK.get(d.hash_type, 0))

    out = CodeSignature(
        signature_type="adhoc", signing_id=best.identifier, team_id=best.team_id, cdhash=best.cdhash,
        cd_flags=best.flags, cd_version=best.version, hash_type=HASH_TYPES[best.hash_type],
        requirements_present=requirements,
    )
    if cms_payload:
        out.signature_type = "certificate"
        try:
            out.authorities = _authorities(cms_payload)
            out.authority = out.authorities[0] if out.authorities else None
        except Exception as exc:  # asn1crypto raises many types on hostile DER
            out.problems.append(f"CMS signature does not parse: {type(exc).__name__}")
    elif best.flags & CS_LINKER_SIGNED:
        out.signature_type = "linker-signed"
    if xml_ents is not None:
        out.entitlements = _entitlements_xml(xml_ents)
    elif der_ents is not None:
        try:
            out.entitlements = decode_der_entitlements(der_ents)
        except DerError as exc:
            raise CodeSignatureError(f"DER entitlements: {exc}") from None
    return out

"""The embedded code signature (LC_CODE_SIGNATURE's SuperBlob), parsed from bytes.

What a detection needs from a signature is who vouches for the code: nobody (ad hoc or
linker-signed), or a certificate whose leaf names the authority and team; plus the
CodeDirectory's identity (identifier, team id, cdhash), its hardened-runtime flag, and the
entitlements. Everything is big-endian and every offset is checked against the blob it points
into, so a hostile signature can only ever produce CodeSignatureError.

Two kinds of trouble, handled differently:
- malformed structure the kernel would refuse (bad magic or bounds, two CodeDirectories of one
  hash type, a repeated entitlements, DER entitlements or launch-constraint slot, entitlements or
  CMS that do not parse) raises CodeSignatureError, so the caller can report the signature as
  invalid;
- a well-formed signature that does not agree with itself (a repeat of a slot the kernel does not
  police, a special-slot digest that does not match its blob, XML and DER entitlements that differ, a team id the leaf certificate does not
  carry) is parsed and the disagreement is listed in `problems`. Page hashes and the CMS
  signature are not verified: this is a reader, not a validator.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import math
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
LAUNCH_CONSTRAINT_MAGIC = 0xFADE8181

SLOT_CODEDIRECTORY = 0
SLOT_REQUIREMENTS = 2
SLOT_ENTITLEMENTS = 5
SLOT_DER_ENTITLEMENTS = 7
#: Launch constraints (xnu osfmk/kern/cs_blobs.h CSSLOT_LAUNCH_CONSTRAINT_*, CSSLOT_LIBRARY_CONSTRAINT).
LAUNCH_CONSTRAINT_SLOTS = {8: "self", 9: "parent", 10: "responsible", 11: "library"}
SLOT_ALTERNATE_FIRST = 0x1000
SLOT_ALTERNATE_LAST = 0x1004  # the kernel accepts five alternates, 0x1000..0x1004
SLOT_SIGNATURE = 0x10000

#: The magic each known slot must hold (the kernel refuses a mismatch for entitlements).
_SLOT_MAGIC = {
    SLOT_REQUIREMENTS: REQUIREMENTS_MAGIC,
    SLOT_ENTITLEMENTS: ENTITLEMENTS_MAGIC,
    SLOT_DER_ENTITLEMENTS: DER_ENTITLEMENTS_MAGIC,
    SLOT_SIGNATURE: CMS_MAGIC,
    **{slot: LAUNCH_CONSTRAINT_MAGIC for slot in LAUNCH_CONSTRAINT_SLOTS},
}
_SLOT_NAMES = {SLOT_REQUIREMENTS: "requirements", SLOT_ENTITLEMENTS: "entitlements",
               SLOT_DER_ENTITLEMENTS: "DER entitlements",
               **{slot: f"{name} launch constraint" for slot, name in LAUNCH_CONSTRAINT_SLOTS.items()}}
#: Slots whose repetition the kernel refuses (xnu bsd/kern/ubc_subr.c cs_validate_csblob); a repeat
#: of any other slot is tolerated there, and Security's SuperBlob::find takes the first.
_UNIQUE_SLOTS = frozenset({SLOT_ENTITLEMENTS, SLOT_DER_ENTITLEMENTS, *LAUNCH_CONSTRAINT_SLOTS})

CS_ADHOC = 0x2
CS_RUNTIME = 0x10000
CS_LINKER_SIGNED = 0x20000

HASH_TYPES = {1: "sha1", 2: "sha256", 3: "sha256-truncated", 4: "sha384"}
#: (hashlib name, hashSize the CodeDirectory must declare) per hashType.
_DIGEST = {1: ("sha1", 20), 2: ("sha256", 32), 3: ("sha256", 20), 4: ("sha384", 48)}
#: The kernel's preference among CodeDirectories (xnu hash_rank): a higher rank wins, so a
#: SHA-256 alternate beats a SHA-1 primary. Two CodeDirectories of one rank are refused.
_HASH_RANK = {1: 1, 3: 2, 2: 3, 4: 4}

#: CodeDirectory versions Apple's reader accepts: earliest .. compatibilityLimit, both inclusive
#: (Security OSX/libsecurity_codesigning/lib/codedirectory.cpp checkIntegrity refuses only
#: `version > compatibilityLimit`; xnu's cs_validate_codedirectory sets no upper bound at all).
CD_VERSION_EARLIEST = 0x20001
CD_VERSION_LIMIT = 0x2F000
#: The fixed header length each CodeDirectory version adds fields up to.
_CD_HEADER = ((0x20600, 108), (0x20500, 96), (0x20400, 88), (0x20300, 64), (0x20200, 52), (0x20100, 48))
_CD_HEADER_MIN = 44

MAX_BLOBS = 64
MAX_ENTITLEMENTS = 1 << 20
MAX_ENTITLEMENT_DEPTH = 32
MAX_CERTIFICATES = 32


class CodeSignatureError(ValueError):
    """The signature is malformed; the message says what and at which offset in the blob."""


@dataclass(slots=True)
class CodeSignature:
    """What one slice's SuperBlob says. `signature_type` 'none' is the caller's (no LC_CODE_SIGNATURE)."""

    signature_type: str  # none | adhoc | linker-signed | certificate
    signing_id: str | None = None
    team_id: str | None = None
    cdhash: str | None = None
    cd_flags: int = 0
    cd_version: int = 0
    hash_type: str | None = None
    #: hash types of every CodeDirectory present, slot order (the chosen one is `hash_type`)
    hash_types: list[str] = field(default_factory=list)
    platform: int = 0
    page_size: int = 0
    code_limit: int = 0
    exec_seg_flags: int | None = None  # version >= 0x20400
    runtime_version: int | None = None  # version >= 0x20500, the SDK the hardened runtime targets
    entitlements: dict[str, Any] | None = None
    authority: str | None = None
    authorities: list[str] = field(default_factory=list)
    requirements_present: bool = False
    #: launch constraints by kind (self, parent, responsible, library), decoded like DER entitlements
    launch_constraints: dict[str, Any] = field(default_factory=dict)
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
    def launch_constraints_json(self) -> str | None:
        """The launch constraints as compact JSON with sorted keys, None when there are none."""
        if not self.launch_constraints:
            return None
        return json.dumps(_jsonable(self.launch_constraints), separators=(",", ":"), sort_keys=True)

    @property
    def entitlements_json(self) -> str | None:
        """Compact JSON with sorted keys; plist data becomes base64, dates ISO 8601 (never raises)."""
        if self.entitlements is None:
            return None
        return json.dumps(_jsonable(self.entitlements), separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class _CodeDirectory:
    slot: int
    offset: int  # within the SuperBlob, for messages
    raw: bytes
    version: int
    flags: int
    hash_type: int
    hash_offset: int
    n_special: int
    identifier: str | None
    team_id: str | None
    platform: int
    page_size_log2: int
    code_limit: int
    exec_seg_flags: int | None
    runtime: int | None

    @property
    def cdhash(self) -> str:
        """The kernel's cdhash: the digest of the whole CodeDirectory, truncated to 20 bytes."""
        return hashlib.new(_DIGEST[self.hash_type][0], self.raw).hexdigest()[:40]

    def special_slot(self, n: int) -> bytes | None:
        """The stored digest of special slot n (1-based, counted down from hashOffset), if present."""
        size = _DIGEST[self.hash_type][1]
        if n < 1 or n > self.n_special:
            return None
        at = self.hash_offset - n * size
        return self.raw[at : at + size]


def _jsonable(value: Any) -> Any:
    """Plist values JSON can carry: data -> base64, dates -> ISO 8601, non-finite reals -> text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _u32(buf: bytes, off: int, what: str) -> int:
    if off < 0 or off + 4 > len(buf):
        raise CodeSignatureError(f"{what} at offset {off:#x} runs past the {len(buf)}-byte blob")
    return int.from_bytes(buf[off : off + 4], "big")


def _cstring(buf: bytes, off: int, what: str, base: int) -> str:
    """A NUL-terminated string inside `buf` (a CodeDirectory that starts at `base` in the SuperBlob)."""
    if off <= 0 or off >= len(buf):
        raise CodeSignatureError(
            f"{what} offset {off:#x} of the CodeDirectory at {base:#x} is outside its {len(buf)} bytes")
    end = buf.find(b"\0", off)
    if end < 0:
        raise CodeSignatureError(f"{what} at {base + off:#x} is not NUL-terminated within its CodeDirectory")
    return buf[off:end].decode("utf-8", "backslashreplace")


def _code_directory(cd: bytes, slot: int, base: int) -> _CodeDirectory:
    """Decode and bounds-check one CodeDirectory (`cd` is exactly its own length)."""
    where = f"CodeDirectory in slot {slot:#x} at {base:#x}"
    if len(cd) < _CD_HEADER_MIN:
        raise CodeSignatureError(f"{where} is {len(cd)} bytes, shorter than its {_CD_HEADER_MIN}-byte header")
    (version, flags, hash_off, ident_off, n_special, n_code, code_limit,
     hash_size, hash_type, platform, page_log2) = struct.unpack_from(">7I4B", cd, 8)
    if not CD_VERSION_EARLIEST <= version <= CD_VERSION_LIMIT:
        raise CodeSignatureError(f"{where} has unsupported version {version:#x}")
    header = next((size for v, size in _CD_HEADER if version >= v), _CD_HEADER_MIN)
    if len(cd) < header:
        raise CodeSignatureError(f"{where} is {len(cd)} bytes, shorter than the {header}-byte header of "
                                 f"version {version:#x}")
    if hash_type not in _DIGEST:
        raise CodeSignatureError(f"{where} has unknown hash type {hash_type}")
    if hash_size != _DIGEST[hash_type][1]:
        raise CodeSignatureError(f"{where} declares {hash_size}-byte hashes for {HASH_TYPES[hash_type]}, "
                                 f"which has {_DIGEST[hash_type][1]}")
    if hash_off > len(cd) or hash_off - n_special * hash_size < header:
        raise CodeSignatureError(f"{where}: hashOffset {hash_off:#x} with {n_special} special slots does not "
                                 f"fit between its header and its end ({len(cd)} bytes)")
    if n_code * hash_size > len(cd) - hash_off:
        raise CodeSignatureError(f"{where}: {n_code} code slots from hashOffset {hash_off:#x} run past its "
                                 f"end ({len(cd)} bytes)")
    identifier = _cstring(cd, ident_off, "identifier", base) if ident_off else None
    team_id = None
    exec_seg_flags = runtime = None
    if version >= 0x20100:
        scatter = _u32(cd, 44, "scatterOffset")
        if scatter and scatter + 8 > len(cd):
            raise CodeSignatureError(f"{where}: scatterOffset {scatter:#x} is outside its {len(cd)} bytes")
    if version >= 0x20200:
        team_off = _u32(cd, 48, "teamOffset")
        if team_off:
            team_id = _cstring(cd, team_off, "team id", base)
    if version >= 0x20300:
        code_limit = struct.unpack_from(">Q", cd, 56)[0] or code_limit
    if version >= 0x20400:
        exec_seg_flags = struct.unpack_from(">Q", cd, 80)[0]
    if version >= 0x20500:
        runtime = _u32(cd, 88, "runtime")
    return _CodeDirectory(slot, base, cd, version, flags, hash_type, hash_off, n_special, identifier, team_id,
                          platform, page_log2, code_limit, exec_seg_flags, runtime)


def _check_depth(value: Any, what: str) -> None:
    """Refuse nesting deeper than MAX_ENTITLEMENT_DEPTH, iteratively (JSON encoding recurses)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_ENTITLEMENT_DEPTH:
            raise CodeSignatureError(f"{what} nest deeper than {MAX_ENTITLEMENT_DEPTH} levels")
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)


def _entitlements_xml(payload: bytes, at: int) -> dict[str, Any]:
    if len(payload) > MAX_ENTITLEMENTS:
        raise CodeSignatureError(f"entitlements at {at:#x} are {len(payload)} bytes, over the "
                                 f"{MAX_ENTITLEMENTS}-byte limit")
    try:
        # XML only, never binary. plistlib refuses any entity declaration, so no entity expansion
        # ("billion laughs") and no external entity can be smuggled in.
        value = plistlib.loads(payload, fmt=plistlib.FMT_XML)
    except Exception as exc:  # expat and plistlib raise several types on bad XML
        raise CodeSignatureError(f"entitlements XML at {at:#x} does not parse: {exc}") from None
    if not isinstance(value, dict):
        raise CodeSignatureError(f"entitlements XML at {at:#x} is a {type(value).__name__}, not a dictionary")
    _check_depth(value, f"entitlements XML at {at:#x}")
    return value


def _entitlements_der(payload: bytes, at: int) -> dict[str, Any]:
    try:
        return decode_der_entitlements(payload)
    except DerError as exc:
        raise CodeSignatureError(f"DER entitlements at {at:#x} (payload {exc})") from None


def _common_name(cert: Any) -> str:
    cn = cert.subject.native.get("common_name")
    if isinstance(cn, list):
        cn = cn[0] if cn else None
    return str(cn) if cn else str(cert.subject.human_friendly)


def _authorities(cms_der: bytes) -> tuple[list[str], str | None]:
    """Common names of the CMS certificate chain, leaf first, and the leaf's organizational unit.

    The leaf is the certificate that issued no other in the set (not trusting the set's order);
    when several qualify, the one the SignerInfo names wins. Nothing is verified.
    """
    from asn1crypto import cms

    info = cms.ContentInfo.load(cms_der)
    if info["content_type"].native != "signed_data":
        raise ValueError(f"content type is {info['content_type'].native}, not signed_data")
    signed = info["content"]
    certs = [c.chosen for c in (signed["certificates"] or []) if c.name == "certificate"]
    if len(certs) > MAX_CERTIFICATES:
        raise ValueError(f"{len(certs)} certificates, more than {MAX_CERTIFICATES}")
    if not certs:
        return [], None
    subjects = [c.subject.hashable for c in certs]
    issuers = [c.issuer.hashable for c in certs]
    issued_others = {issuers[i] for i in range(len(certs)) if issuers[i] != subjects[i]}
    leaves = [i for i in range(len(certs)) if subjects[i] not in issued_others] or [0]
    leaf = leaves[0]
    if len(leaves) > 1:
        for si in signed["signer_infos"]:
            sid = si["sid"]
            if sid.name == "issuer_and_serial_number":
                want = (sid.chosen["issuer"].hashable, sid.chosen["serial_number"].native)
                match = [i for i in leaves if (issuers[i], certs[i].serial_number) == want]
            else:
                match = [i for i in leaves if certs[i].key_identifier == sid.chosen.native]
            if match:
                leaf = match[0]
                break
    chain = [leaf]
    while issuers[chain[-1]] != subjects[chain[-1]]:
        nxt = next((i for i in range(len(certs)) if subjects[i] == issuers[chain[-1]] and i not in chain), None)
        if nxt is None:
            break
        chain.append(nxt)
    ou = certs[leaf].subject.native.get("organizational_unit_name")
    if isinstance(ou, list):
        ou = ou[0] if ou else None
    return [_common_name(certs[i]) for i in chain], (str(ou) if ou else None)


#: DER of the signedData content type (1.2.840.113549.1.7.2), which a CMS ContentInfo starts with.
_SIGNED_DATA_OID = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02"


def _looks_like_signed_data(der: bytes) -> bool:
    """A ContentInfo SEQUENCE (DER or BER indefinite length) whose content type is signedData:
    what every CMS the full parse accepts starts with, checked without decoding it."""
    if len(der) < 2 or der[0] != 0x30:
        return False
    first = der[1]
    at = 2 if first < 0x80 or first == 0x80 else 2 + (first & 0x7F)
    return der[at : at + len(_SIGNED_DATA_OID)] == _SIGNED_DATA_OID


def signature_summary(blob: bytes) -> tuple[str, str | None]:
    """(signature_type, team_id) of a SuperBlob, reading only what decides them: the SuperBlob
    index, the CodeDirectories (the kernel's choice among them) and whether a CMS blob is there.

    Raises CodeSignatureError for every structural fault parse_code_signature raises for. It does
    not decode the CMS certificates or the entitlements, so a signature whose CMS content is
    malformed past its first bytes, or whose entitlements do not parse, is reported here by its
    structure (certificate, adhoc) where the full parse calls it invalid.
    """
    directories, blobs, _ = _walk_superblob(blob)
    best = max(directories, key=lambda d: _HASH_RANK[d.hash_type])
    off, cms = blobs.get(SLOT_SIGNATURE, (0, b""))
    if len(cms) > 8:
        if not _looks_like_signed_data(cms[8:]):
            raise CodeSignatureError(f"CMS signature at {off:#x} does not parse: not a CMS signedData")
        return "certificate", best.team_id
    if best.flags & CS_LINKER_SIGNED:
        return "linker-signed", best.team_id
    return "adhoc", best.team_id


def _walk_superblob(blob: bytes) -> tuple[list[_CodeDirectory], dict[int, tuple[int, bytes]], list[str]]:
    """The SuperBlob's CodeDirectories, its other blobs by slot (the first of a repeated slot) and
    the repeats noted: every structural rule the kernel applies (xnu bsd/kern/ubc_subr.c), raising
    CodeSignatureError for the ones it refuses. Shared by the full parse and the light summary."""
    blob = bytes(blob)
    if len(blob) < 12:
        raise CodeSignatureError(f"signature is {len(blob)} bytes, too short for a SuperBlob header")
    magic, length, count = struct.unpack_from(">3I", blob, 0)
    if magic != SUPERBLOB_MAGIC:
        raise CodeSignatureError(f"SuperBlob magic at 0x0 is {magic:#x}, expected {SUPERBLOB_MAGIC:#x}")
    if length < 12 or length > len(blob):
        raise CodeSignatureError(f"SuperBlob length at 0x4 claims {length} bytes but {len(blob)} are present")
    sig = blob[:length]  # LC_CODE_SIGNATURE's datasize is padded; the SuperBlob says where it ends
    if count > MAX_BLOBS:
        raise CodeSignatureError(f"SuperBlob count at 0x8 claims {count} blobs, over the limit of {MAX_BLOBS}")
    index_end = 12 + 8 * count
    if index_end > length:
        raise CodeSignatureError(f"SuperBlob index of {count} entries runs past its {length} bytes")

    directories: list[_CodeDirectory] = []
    out_problems: list[str] = []
    blobs: dict[int, tuple[int, bytes]] = {}  # slot -> (offset, whole sub-blob)
    for i in range(count):
        slot, off = struct.unpack_from(">2I", sig, 12 + 8 * i)
        where = f"index entry {i} (slot {slot:#x})"
        if slot in _UNIQUE_SLOTS and slot in blobs:
            raise CodeSignatureError(f"{where} repeats slot {slot:#x}; the kernel refuses that")
        repeat = slot in blobs or any(d.slot == slot for d in directories)
        if off < index_end or off + 8 > length:
            raise CodeSignatureError(f"{where} points at {off:#x}, outside the blob area "
                                     f"{index_end:#x}..{length:#x}")
        bmagic, blen = struct.unpack_from(">2I", sig, off)
        if blen < 8 or blen > length - off:
            raise CodeSignatureError(f"{where}: blob at {off:#x} claims {blen} bytes; it must hold its 8-byte "
                                     f"header and end by the SuperBlob end at {length:#x}")
        body = sig[off : off + blen]
        if slot == SLOT_CODEDIRECTORY or SLOT_ALTERNATE_FIRST <= slot <= SLOT_ALTERNATE_LAST:
            if bmagic != CODEDIRECTORY_MAGIC:
                raise CodeSignatureError(f"{where}: blob at {off:#x} has magic {bmagic:#x}, not a CodeDirectory")
            cd = _code_directory(body, slot, off)
            if repeat and any(d.slot == slot and d.hash_type != cd.hash_type for d in directories):
                out_problems.append(f"{where} repeats slot {slot:#x}")
            clash = next((d for d in directories if d.hash_type == cd.hash_type), None)
            if clash is not None:
                raise CodeSignatureError(f"two {HASH_TYPES[cd.hash_type]} CodeDirectories (slots "
                                         f"{clash.slot:#x} and {slot:#x}); the kernel refuses that")
            directories.append(cd)
        elif slot in _SLOT_MAGIC:
            if bmagic != _SLOT_MAGIC[slot]:
                raise CodeSignatureError(f"{where}: blob at {off:#x} has magic {bmagic:#x}, expected "
                                         f"{_SLOT_MAGIC[slot]:#x}")
            if repeat:
                out_problems.append(f"{where} repeats slot {slot:#x}; the first one is used")
            else:
                blobs[slot] = (off, body)
        elif repeat:
            out_problems.append(f"{where} repeats slot {slot:#x}; the first one is used")
        else:
            blobs[slot] = (off, body)  # unknown slots are kept only to notice repeats
    if not directories:
        raise CodeSignatureError("SuperBlob has no CodeDirectory (slot 0 or 0x1000..0x1004)")
    return directories, blobs, out_problems


def parse_code_signature(blob: bytes) -> CodeSignature:
    """Decode a SuperBlob (bytes at LC_CODE_SIGNATURE's dataoff/datasize); raises only CodeSignatureError."""
    directories, blobs, out_problems = _walk_superblob(blob)
    best = max(directories, key=lambda d: _HASH_RANK[d.hash_type])

    out = CodeSignature(
        signature_type="adhoc", signing_id=best.identifier, team_id=best.team_id, cdhash=best.cdhash,
        cd_flags=best.flags, cd_version=best.version, hash_type=HASH_TYPES[best.hash_type],
        hash_types=[HASH_TYPES[d.hash_type] for d in directories], platform=best.platform,
        page_size=(1 << best.page_size_log2) if 0 < best.page_size_log2 < 32 else 0,
        code_limit=best.code_limit, exec_seg_flags=best.exec_seg_flags, runtime_version=best.runtime,
        requirements_present=SLOT_REQUIREMENTS in blobs, problems=out_problems,
    )
    _check_special_slots(best, blobs, out.problems)

    cms_off, cms_blob = blobs.get(SLOT_SIGNATURE, (0, b""))
    if len(cms_blob) > 8:
        out.signature_type = "certificate"
        try:
            out.authorities, leaf_ou = _authorities(cms_blob[8:])
        except Exception as exc:  # asn1crypto raises many types on hostile DER
            raise CodeSignatureError(f"CMS signature at {cms_off:#x} does not parse: "
                                     f"{type(exc).__name__}: {exc}") from None
        out.authority = out.authorities[0] if out.authorities else None
        if out.team_id and leaf_ou and leaf_ou != out.team_id:
            out.problems.append(f"team id {out.team_id} differs from the leaf certificate's OU {leaf_ou}")
    elif best.flags & CS_LINKER_SIGNED:
        out.signature_type = "linker-signed"
    elif not best.flags & CS_ADHOC and SLOT_SIGNATURE not in blobs:
        out.problems.append("no CMS signature and no adhoc flag; treated as ad hoc")

    xml_ents = der_ents = None
    if SLOT_ENTITLEMENTS in blobs:
        off, body = blobs[SLOT_ENTITLEMENTS]
        xml_ents = _entitlements_xml(body[8:], off)
    if SLOT_DER_ENTITLEMENTS in blobs:
        off, body = blobs[SLOT_DER_ENTITLEMENTS]
        if xml_ents is None:
            der_ents = _entitlements_der(body[8:], off)
        else:  # cross-check only: the XML stays authoritative, a disagreement is worth a look
            try:
                der_ents = _entitlements_der(body[8:], off)
            except CodeSignatureError as exc:
                out.problems.append(str(exc))
            else:
                if der_ents != xml_ents:
                    out.problems.append("XML and DER entitlements differ")
    out.entitlements = xml_ents if xml_ents is not None else der_ents
    for slot, kind in LAUNCH_CONSTRAINT_SLOTS.items():
        if slot in blobs:
            off, body = blobs[slot]
            try:  # same CoreEntitlements DER shape as DER entitlements (xnu EXTERNAL_HEADERS/CoreEntitlements)
                out.launch_constraints[kind] = decode_der_entitlements(body[8:])
            except DerError as exc:
                out.problems.append(f"{kind} launch constraint at {off:#x} does not decode: {exc}")
    return out


def _check_special_slots(cd: _CodeDirectory, blobs: dict[int, tuple[int, bytes]], problems: list[str]) -> None:
    """Each bound blob's digest must match the CodeDirectory's special slot (zeros when absent)."""
    name = _DIGEST[cd.hash_type][0]
    for slot, label in _SLOT_NAMES.items():
        stored = cd.special_slot(slot)
        present = blobs.get(slot)
        if stored is None:
            if present is not None:
                problems.append(f"{label} blob is not bound by the CodeDirectory (no special slot {slot})")
            continue
        if present is None:
            if any(stored):
                problems.append(f"CodeDirectory binds a {label} blob that is missing")
            continue
        if hashlib.new(name, present[1]).digest()[: len(stored)] != stored:
            problems.append(f"{label} blob at {present[0]:#x} does not match its CodeDirectory digest")

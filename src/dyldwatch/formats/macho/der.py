"""Apple's DER entitlements: a small, bounded DER reader (and writer) for exactly that shape.

The blob payload is `[APPLICATION 16] { INTEGER version, [CONTEXT 16] dict }`; a dict is a run
of `SEQUENCE { UTF8String key, value }`, and a value is BOOLEAN, INTEGER, UTF8String, OCTET
STRING (a plist `<data>`: xnu EXTERNAL_HEADERS/CoreEntitlements/Serialization.h kCESerializedData,
Security OSX/utilities/der_plist.c CCDER_OCTET_STRING), SEQUENCE (an array) or another
`[CONTEXT 16]` dict. That is what Apple's codesign writes (checked against
the bytes codesign produces, e.g. `70 05 02 01 01 b0 00` for an empty dictionary).

Why not asn1crypto: it would accept far more than this shape (any tag, indefinite lengths) and
build a lazily parsed object tree we would then have to walk and bound anyway. Here every length
is checked against its container, nesting is capped, duplicate keys and trailing bytes are
refused, and the only exception is DerError.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 32
MAX_SIZE = 1 << 20
_BOOLEAN, _INTEGER, _OCTETS, _UTF8, _SEQUENCE = 0x01, 0x02, 0x04, 0x0C, 0x30
_APP16 = 0x70  # [APPLICATION 16], constructed
_CTX16 = 0xB0  # [CONTEXT 16], constructed


class DerError(ValueError):
    """The DER entitlements are malformed; the message says what and at which payload offset."""


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at pos, inside [pos, end)."""
    if pos + 2 > end:
        raise DerError(f"element at offset {pos} runs past its container (ends at {end})")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DerError(f"unexpected high-tag-number form at offset {pos}")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0:
            raise DerError(f"indefinite length at offset {pos - 1} is not DER")
        if n > 4 or pos + n > end:
            raise DerError(f"length of {n} bytes at offset {pos - 1} is out of range")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise DerError(f"element at offset {pos} claims {length} bytes, past its container (ends at {end})")
    return tag, pos, pos + length


def _utf8(buf: bytes, start: int, stop: int) -> str:
    return buf[start:stop].decode("utf-8", "backslashreplace")


def _value(buf: bytes, pos: int, end: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise DerError(f"entitlements nest deeper than {MAX_DEPTH} levels at offset {pos}")
    tag, start, stop = _tlv(buf, pos, end)
    if tag == _BOOLEAN:
        if stop - start != 1:
            raise DerError(f"BOOLEAN at offset {pos} is {stop - start} bytes, not 1")
        return buf[start] != 0, stop
    if tag == _INTEGER:
        if stop == start:
            raise DerError(f"INTEGER at offset {pos} is empty")
        return int.from_bytes(buf[start:stop], "big", signed=True), stop
    if tag == _UTF8:
        return _utf8(buf, start, stop), stop
    if tag == _OCTETS:
        return buf[start:stop], stop
    if tag == _SEQUENCE:
        items = []
        p = start
        while p < stop:
            item, p = _value(buf, p, stop, depth + 1)
            items.append(item)
        return items, stop
    if tag == _CTX16:
        return _dict(buf, start, stop, depth + 1), stop
    raise DerError(f"unexpected tag {tag:#04x} at offset {pos}")


def _dict(buf: bytes, start: int, stop: int, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    p = start
    while p < stop:
        tag, s, e = _tlv(buf, p, stop)
        if tag != _SEQUENCE:
            raise DerError(f"dictionary entry at offset {p} is tag {tag:#04x}, not a SEQUENCE")
        ktag, ks, ke = _tlv(buf, s, e)
        if ktag != _UTF8:
            raise DerError(f"dictionary key at offset {s} is tag {ktag:#04x}, not a UTF8String")
        value, after = _value(buf, ke, e, depth)
        if after != e:
            raise DerError(f"dictionary entry at offset {p} has trailing bytes")
        key = _utf8(buf, ks, ke)
        if key in out:  # two readers could disagree on which one counts
            raise DerError(f"dictionary key {key!r} repeats at offset {p}")
        out[key] = value
        p = e
    return out


def decode_der_entitlements(payload: bytes) -> dict[str, Any]:
    """The entitlements dictionary from a DER entitlements blob's payload (after magic and length)."""
    buf = bytes(payload)
    if len(buf) > MAX_SIZE:
        raise DerError(f"DER entitlements are {len(buf)} bytes, over the {MAX_SIZE}-byte limit")
    tag, start, stop = _tlv(buf, 0, len(buf))
    if tag != _APP16:
        raise DerError(f"DER entitlements start with tag {tag:#04x}, not [APPLICATION 16]")
    if stop != len(buf):
        raise DerError(f"{len(buf) - stop} trailing bytes after the DER entitlements at offset {stop}")
    vtag, _vs, ve = _tlv(buf, start, stop)
    if vtag != _INTEGER:
        raise DerError(f"DER entitlements lack their version INTEGER at offset {start}")
    dtag, ds, de = _tlv(buf, ve, stop)
    if dtag != _CTX16:
        raise DerError(f"DER entitlements body at offset {ve} is tag {dtag:#04x}, not a dictionary")
    if de != stop:
        raise DerError(f"trailing bytes after the entitlements dictionary at offset {de}")
    return _dict(buf, ds, de, 1)


def _enc(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + body


def _enc_value(v: Any) -> bytes:
    if isinstance(v, bool):
        return _enc(_BOOLEAN, b"\xff" if v else b"\x00")
    if isinstance(v, int):
        width = (v.bit_length() if v >= 0 else (~v).bit_length()) // 8 + 1  # minimal two's complement
        return _enc(_INTEGER, v.to_bytes(width, "big", signed=True))
    if isinstance(v, str):
        return _enc(_UTF8, v.encode())
    if isinstance(v, bytes | bytearray):
        return _enc(_OCTETS, bytes(v))
    if isinstance(v, list | tuple):
        return _enc(_SEQUENCE, b"".join(_enc_value(x) for x in v))
    if isinstance(v, dict):
        return _enc(_CTX16, b"".join(_enc(_SEQUENCE, _enc(_UTF8, k.encode()) + _enc_value(v[k])) for k in sorted(v)))
    raise TypeError(f"cannot encode {type(v).__name__} in DER entitlements (codesign refuses it too)")


def encode_der_entitlements(value: dict[str, Any]) -> bytes:
    """The inverse, for test fixtures: keys sorted and integers minimal, as codesign writes them."""
    return _enc(_APP16, _enc(_INTEGER, b"\x01") + _enc_value(value))

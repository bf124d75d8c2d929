"""Apple's DER entitlements: a small, bounded DER reader for exactly that shape.

The blob is `[APPLICATION 16] { INTEGER version, [CONTEXT 16] dict }`; a dict is a set of
`SEQUENCE { UTF8String key, value }`, and a value is BOOLEAN, INTEGER, UTF8String, SEQUENCE
(an array) or another `[CONTEXT 16]` dict. A generic ASN.1 library would accept far more than
this and walk it deeper; here every length is checked and nesting is capped.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 32
_BOOLEAN, _INTEGER, _UTF8, _SEQUENCE = 0x01, 0x02, 0x0C, 0x30
_APP16 = 0x70  # [APPLICATION 16], constructed
_CTX16 = 0xB0  # [CONTEXT 16], constructed


class DerError(ValueError):
    pass


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at pos."""
    if pos + 2 > end:
        raise DerError(f"element at {pos} runs past its container")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DerError(f"unexpected high tag number form at {pos}")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > end:
            raise DerError(f"bad length of {n} bytes at {pos}")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise DerError(f"element at {pos} claims {length} bytes, past its container")
    return tag, pos, pos + length


def _value(buf: bytes, pos: int, end: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise DerError("entitlements nest too deeply")
    tag, start, stop = _tlv(buf, pos, end)
    if tag == _BOOLEAN:
        return stop > start and buf[start] != 0, stop
    if tag == _INTEGER:
        return int.from_bytes(buf[start:stop], "big", signed=True), stop
    if tag == _UTF8:
        return buf[start:stop].decode("utf-8", "backslashreplace"), stop
    if tag == _SEQUENCE:
        items = []
        p = start
        while p < stop:
            item, p = _value(buf, p, stop, depth + 1)
            items.append(item)
        return items, stop
    if tag == _CTX16:
        return _dict(buf, start, stop, depth + 1), stop
    raise DerError(f"unexpected tag {tag:#x} at {pos}")


def _dict(buf: bytes, start: int, stop: int, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    p = start
    while p < stop:
        tag, s, e = _tlv(buf, p, stop)
        if tag != _SEQUENCE:
            raise DerError(f"dictionary entry at {p} is tag {tag:#x}, not a SEQUENCE")
        ktag, ks, ke = _tlv(buf, s, e)
        if ktag != _UTF8:
            raise DerError(f"dictionary key at {s} is tag {ktag:#x}, not a UTF8String")
        value, after = _value(buf, ke, e, depth)
        if after != e:
            raise DerError(f"dictionary entry at {p} has trailing bytes")
        out[buf[ks:ke].decode("utf-8", "backslashreplace")] = value
        p = e
    return out


def decode_der_entitlements(payload: bytes) -> dict[str, Any]:
    """The entitlements dictionary from a DER entitlements blob's payload (after magic and length)."""
    buf = bytes(payload)
    tag, start, stop = _tlv(buf, 0, len(buf))
    if tag != _APP16:
        raise DerError(f"DER entitlements start with tag {tag:#x}, not [APPLICATION 16]")
    vtag, vs, ve = _tlv(buf, start, stop)
    if vtag != _INTEGER:
        raise DerError("DER entitlements lack their version INTEGER")
    dtag, ds, de = _tlv(buf, ve, stop)
    if dtag != _CTX16:
        raise DerError(f"DER entitlements body is tag {dtag:#x}, not a dictionary")
    return _dict(buf, ds, de, 1)


def encode_der_entitlements(value: dict[str, Any]) -> bytes:
    """The inverse, for building test fixtures (keys sorted, as codesign writes them)."""

    def enc(tag: int, body: bytes) -> bytes:
        head = bytes([tag])
        n = len(body)
        if n < 0x80:
            length = bytes([n])
        else:
            raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
            length = bytes([0x80 | len(raw)]) + raw
        return head + length + body

    def val(v: Any) -> bytes:
        if isinstance(v, bool):
            return enc(_BOOLEAN, b"\xff" if v else b"\x00")
        if isinstance(v, int):
            return enc(_INTEGER, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))
        if isinstance(v, str):
            return enc(_UTF8, v.encode())
        if isinstance(v, list):
            return enc(_SEQUENCE, b"".join(val(x) for x in v))
        if isinstance(v, dict):
            return enc(_CTX16, b"".join(enc(_SEQUENCE, enc(_UTF8, k.encode()) + val(v[k])) for k in sorted(v)))
        raise TypeError(f"cannot encode {type(v).__name__} in DER entitlements")

    return enc(_APP16, enc(_INTEGER, b"\x01") + val(value))

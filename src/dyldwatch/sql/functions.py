"""osquery's SQL additions, with osquery's results and errors, for an apsw session.

Pack queries must run unchanged in osquery, so lint, validate and the engine register the same
functions and collations osquery does (osquery/sql/sqlite_*.cpp), including the cases where osquery
raises an error: a query that errors inside osquery returns nothing to the fleet.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import apsw

#: osquery refuses regexes longer than its `regex_max_size` flag (default 256 bytes).
REGEX_MAX_SIZE = 256


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    if len(pattern.encode()) > REGEX_MAX_SIZE:
        raise apsw.SQLError(f"regex is longer than {REGEX_MAX_SIZE} bytes")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise apsw.SQLError(f"invalid regex {pattern!r}: {exc}") from exc


def _sqlite_int(value: Any) -> int:
    """sqlite3_value_int: a number's integer part, a text's leading integer, else 0."""
    if isinstance(value, bool | int | float):
        return int(value)
    m = re.match(r"\s*([+-]?\d+)", _text(value) or "")
    return int(m.group(1)) if m else 0


def regex_match(value: Any, pattern: Any, index: Any) -> str | None:
    """Group `index` of the first match of `pattern` in `value` (osquery/sql/sqlite_string.cpp)."""
    if value is None or pattern is None or index is None:
        return None
    s, p = _text(value) or "", _text(pattern) or ""
    if len(p.encode()) > REGEX_MAX_SIZE:
        raise apsw.SQLError(f"Invalid regex: too big, max size is {REGEX_MAX_SIZE} bytes")
    try:
        m = _regex(p).search(s)
    except apsw.SQLError as exc:
        raise apsw.SQLError("Invalid regex") from exc
    i = _sqlite_int(index)
    if m is None or not 0 <= i <= (m.re.groups or 0):  # a size_t cast: negative is out of range
        return None
    return m.group(i) or ""


def _pick(parts: list[str], index: Any) -> str | None:
    i = _sqlite_int(index)
    return parts[i] if 0 <= i < len(parts) else None


def split(value: Any, tokens: Any, index: Any) -> str | None:
    """Split on any character of `tokens`, drop empty pieces, then trim each (osquery/utils/conversions/split.cpp)."""
    if value is None or tokens is None or index is None:
        return None
    s, t = _text(value) or "", _text(tokens) or ""
    if not t:
        raise apsw.SQLError("Invalid input to split function")
    parts = re.split("[" + re.escape(t) + "]", s)
    return _pick([p.strip(" \t\n\r\f\v") for p in parts if p], index)


def regex_split(value: Any, pattern: Any, index: Any) -> str | None:
    """Split on a regex (empty pieces kept, as boost::split_regex does) and pick one."""
    s, p = _text(value), _text(pattern)
    if s is None or p is None or index is None:
        return None
    if not p:
        raise apsw.SQLError("Invalid input to split function")
    return _pick(_regex(p).split(s), index)


def concat(*args: Any) -> str | None:
    """NULLs skipped; no argument at all gives NULL (osquery/sql/sqlite_string.cpp)."""
    if not args:
        return None
    return "".join(t for t in map(_text, args) if t is not None)


def concat_ws(*args: Any) -> str | None:
    """osquery's concat_ws: the separator follows every non-NULL argument that is not the last
    argument, so a trailing NULL leaves a trailing separator (osquery/sql/sqlite_string.cpp)."""
    if not args:
        raise apsw.SQLError("Missing separator to concat_ws")
    sep = _text(args[0]) or ""
    rest = args[1:]
    if not rest:
        return None
    out: list[str] = []
    for i, v in enumerate(rest):
        t = _text(v)
        if t is None:
            continue
        out.append(t)
        if sep and i + 1 < len(rest):
            out.append(sep)
    return "".join(out)


def parent_directory(path: Any) -> str | None:
    """Text before the last '/'; NULL without one; an error for non-text (osquery/sql/sqlite_filesystem.cpp)."""
    if not isinstance(path, str):
        raise apsw.SQLError("Invalid inputs to parent_directory, TEXT was expected")
    cut = path.rfind("/")
    return None if cut < 0 else path[:cut]


def _hasher(name: str) -> Callable[[Any], str | None]:
    def digest(value: Any) -> str | None:
        if value is None:
            return None
        data = value if isinstance(value, bytes) else str(value).encode()
        return hashlib.new(name, data).hexdigest()

    digest.__name__ = name
    return digest


def in_cidr_block(cidr: Any, ip: Any) -> int:
    """osquery's in_cidr_block (osquery/sql/sqlite_network.cpp, boost::asio semantics).

    Both arguments must be TEXT (NULL is an error); the address family of the IP decides how the
    CIDR is parsed, so an IPv4 address against an IPv6 CIDR (or the reverse) is an error, not 0.
    IPv4 ranges are boost's `hosts()`: network and broadcast addresses lie outside them (a /31
    holds nothing), a /32 holds its one address; an IPv6 range holds every address.
    """
    if not isinstance(cidr, str):
        raise apsw.SQLError("CIDR must be a string")
    if not isinstance(ip, str):
        raise apsw.SQLError("IP address must be a string")
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0] if ":" in ip else ip)
    except ValueError as exc:
        raise apsw.SQLError("IP address cannot be parsed") from exc
    family = "v4" if addr.version == 4 else "v6"
    try:
        if "/" not in cidr:
            raise ValueError("no prefix length")
        net = ipaddress.ip_network(cidr, strict=False)
        if net.version != addr.version:
            raise ValueError("other family")
    except ValueError as exc:
        raise apsw.SQLError(f"CIDR for IP address {family} cannot be parsed") from exc
    if addr.version == 4 and net.prefixlen < 32:
        return int(int(net.network_address) < int(addr) < int(net.broadcast_address))
    return int(addr in net)


def inet_aton(value: Any) -> int | None:
    s = _text(value)
    if s is None or ":" in s:
        return None
    try:
        return int(ipaddress.IPv4Address(s))
    except ValueError:
        return None


def to_base64(value: Any) -> str | None:
    if value is None:
        return None
    data = value if isinstance(value, bytes) else str(value).encode()
    return base64.b64encode(data).decode()


def from_base64(value: Any) -> str | None:
    """Decoded text; an empty string for input that is not base64 (osquery's behaviour)."""
    s = _text(value)
    if s is None:
        return None
    try:
        return base64.b64decode(s, validate=True).decode("utf-8", "replace")
    except ValueError:
        return ""


def conditional_to_base64(value: Any) -> str | None:
    """Base64 only when the text holds a non-ASCII character."""
    s = _text(value)
    if s is None:
        return None
    return s if s.isascii() else to_base64(s)


# --- versions: osquery's collation algorithm (sqlite_collation.cpp), re-expressed -------------

_DELIMS = "~-^.:"


def _version_cmp(lv: str, rv: str, epoch: bool, delim_prec: bool, comp_rem: bool, rem_prec: bool) -> int:
    ll, rl = len(lv), len(rv)
    if lv == rv:
        return 0
    if epoch:
        le, re_ = lv.find(":"), rv.find(":")
        if le >= 0 and re_ >= 0 and le != re_:
            return le - re_
        if le >= 0 > re_:
            return 1
        if re_ >= 0 > le:
            return -1
    first = 0
    for i in range(min(ll, rl)):
        a, b = lv[i], rv[i]
        ad, bd = a in _DELIMS, b in _DELIMS
        if not ad and not bd:
            first = first or (ord(a) - ord(b))
            continue
        if ad and not bd:
            return -1
        if bd and not ad:
            return 1
        if first:
            return first
        if delim_prec:
            d = (_DELIMS.index(a) + 1) - (_DELIMS.index(b) + 1)
            if d:
                return d
    if ll == rl:
        return first
    pos = min(ll, rl)
    if comp_rem:
        if ll == pos:
            nxt = rv[pos]
            if nxt in "~-^":
                return {"~": 1, "-": 0, "^": -1}[nxt]
            if first and (not rem_prec or not lv[pos - 1].isdigit()):
                return first
        if rl == pos:
            nxt = lv[pos]
            if nxt in "~-^":
                return {"~": -1, "-": 0, "^": 1}[nxt]
            if first and (not rem_prec or not rv[pos - 1].isdigit()):
                return first
    return ll - rl


_FLAVOURS: dict[str, tuple[bool, bool, bool, bool]] = {
    "": (False, False, False, False),
    "ARCH": (True, False, True, True),
    "DPKG": (True, True, False, False),
    "RHEL": (True, True, True, False),
}


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


def version_compare(left: Any, right: Any, flavour: Any = None) -> int | None:
    """-1, 0 or 1 comparing two version strings (generic, ARCH, DPKG or RHEL rules)."""
    lv, rv = _text(left), _text(right)
    if lv is None or rv is None:
        return None
    key = (_text(flavour) or "").upper()
    if key not in _FLAVOURS:
        raise apsw.SQLError(f"unknown version flavour {flavour!r} (ARCH, DPKG or RHEL)")
    return _sign(_version_cmp(lv, rv, *_FLAVOURS[key]))


def _collation(flavour: str) -> Callable[[str, str], int]:
    return lambda a, b: _sign(_version_cmp(a, b, *_FLAVOURS[flavour]))


# --- math ------------------------------------------------------------------------------------


def _math1(fn: Callable[[float], float]) -> Callable[[Any], float | None]:
    def call(x: Any) -> float | None:
        if x is None:
            return None
        try:
            return fn(float(x))
        except (ValueError, OverflowError, ZeroDivisionError):
            return None

    return call


def _power(x: Any, y: Any = 2) -> float | None:
    if x is None or y is None:
        return None
    try:
        return math.pow(float(x), float(y))
    except (ValueError, OverflowError):
        return None


_MATH: dict[str, Callable[[float], float]] = {
    "sqrt": math.sqrt, "log": math.log, "ln": math.log, "log10": math.log10, "exp": math.exp,
    "ceil": math.ceil, "floor": math.floor, "sin": math.sin, "cos": math.cos, "tan": math.tan,
    "cot": lambda x: 1.0 / math.tan(x), "asin": math.asin, "acos": math.acos, "atan": math.atan,
    "degrees": math.degrees, "radians": math.radians,
}

#: name -> (callable, number of arguments; -1 for variadic)
FUNCTIONS: dict[str, tuple[Callable[..., Any], int]] = {
    "regex_match": (regex_match, 3),
    "regex_split": (regex_split, 3),
    "split": (split, 3),
    "concat": (concat, -1),
    "concat_ws": (concat_ws, -1),
    "parent_directory": (parent_directory, 1),
    "sha1": (_hasher("sha1"), 1),
    "sha256": (_hasher("sha256"), 1),
    "md5": (_hasher("md5"), 1),
    "in_cidr_block": (in_cidr_block, 2),
    "inet_aton": (inet_aton, 1),
    "to_base64": (to_base64, 1),
    "from_base64": (from_base64, 1),
    "conditional_to_base64": (conditional_to_base64, 1),
    "version_compare": (version_compare, -1),
    "pi": (lambda: math.pi, 0),
    "power": (_power, -1),
    **{name: (_math1(fn), 1) for name, fn in _MATH.items()},
}


def register_functions(conn: apsw.Connection) -> None:
    """Add osquery's SQL functions and version collations to `conn` (SQLite's own math is replaced)."""
    for name, (fn, nargs) in FUNCTIONS.items():
        conn.createscalarfunction(name, fn, nargs, deterministic=True)
    conn.createcollation("version", _collation(""))
    for flavour in ("ARCH", "DPKG", "RHEL"):
        conn.createcollation(f"version_{flavour.lower()}", _collation(flavour))

"""osquery's SQL additions for a plain SQLite (apsw) session.

Pack queries must run unchanged in osquery, so lint and validate need the same functions and
collations osquery registers (docs: introduction/sql.md, "SQL additions"). Semantics follow
osquery's behaviour where it is documented: `split` drops empty tokens and trims each one,
`regex_split` keeps empties, out-of-range indexes give NULL, `concat` ignores NULLs.
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


def regex_match(value: Any, pattern: Any, index: Any) -> str | None:
    """Group `index` of the first match of `pattern` in `value` (0 is the whole match)."""
    s, p = _text(value), _text(pattern)
    if s is None or p is None or index is None:
        return None
    m = _regex(p).search(s)
    if m is None or not 0 <= int(index) <= (m.re.groups or 0):
        return None
    return m.group(int(index))


def _pick(parts: list[str], index: Any) -> str | None:
    i = int(index)
    return parts[i] if 0 <= i < len(parts) else None


def split(value: Any, tokens: Any, index: Any) -> str | None:
    """Split on any character of `tokens`, drop empty pieces, trim each, pick one."""
    s, t = _text(value), _text(tokens)
    if s is None or t is None or index is None:
        return None
    if not t:
        raise apsw.SQLError("Invalid input to split function")
    parts = re.split("[" + re.escape(t) + "]", s)
    return _pick([p.strip() for p in parts if p], index)


def regex_split(value: Any, pattern: Any, index: Any) -> str | None:
    """Split on a regex (empty pieces kept, as boost::split_regex does) and pick one."""
    s, p = _text(value), _text(pattern)
    if s is None or p is None or index is None:
        return None
    if not p:
        raise apsw.SQLError("Invalid input to split function")
    return _pick(_regex(p).split(s), index)


def concat(*args: Any) -> str:
    return "".join(t for t in map(_text, args) if t is not None)


def concat_ws(sep: Any, *args: Any) -> str:
    return (_text(sep) or "").join(t for t in map(_text, args) if t is not None)


def _hasher(name: str) -> Callable[[Any], str | None]:
    def digest(value: Any) -> str | None:
        if value is None:
            return None
        data = value if isinstance(value, bytes) else str(value).encode()
        return hashlib.new(name, data).hexdigest()

    digest.__name__ = name
    return digest


def in_cidr_block(cidr: Any, ip: Any) -> int | None:
    """1 when `ip` lies in `cidr`, 0 when not, NULL when either does not parse."""
    c, a = _text(cidr), _text(ip)
    if c is None or a is None:
        return None
    try:
        net = ipaddress.ip_network(c, strict=False)
        addr = ipaddress.ip_address(a.split("%", 1)[0])
    except ValueError:
        return None
    return int(addr.version == net.version and addr in net)


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
        conn.create_scalar_function(name, fn, nargs, deterministic=True)
    conn.create_collation("version", _collation(""))
    for flavour in ("ARCH", "DPKG", "RHEL"):
        conn.create_collation(f"version_{flavour.lower()}", _collation(flavour))


def connect(database: str | None = None, *, readonly: bool = False, ddl: bool = True,
            platform: str | None = None) -> apsw.Connection:
    """A SQLite session shaped like osquery: its functions, and (optionally) every table's DDL.

    DDL uses `IF NOT EXISTS`, so a sample database keeps its own tables and rows.
    """
    if database and readonly:
        conn = apsw.Connection(database, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    else:
        conn = apsw.Connection(database or ":memory:")
    register_functions(conn)
    if ddl and not readonly:
        from .schema_facts import ddl_script

        conn.execute(ddl_script(platform))
    return conn

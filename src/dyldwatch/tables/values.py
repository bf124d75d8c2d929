"""Values as they cross osquery: rows as string maps, then typed by the column's declared type.

An extension's rows reach osquery as maps of strings (a missing key is NULL); osquery types each
value by the column's declared type when SQLite reads it (osquery/sql/dynamic_table_row.cpp), and
hands constraint values to tables as SQLite's text of them (osquery/sql/virtual_table.cpp xFilter).
"""

from __future__ import annotations

import math
import re
from typing import Any

_INT32 = 1 << 32
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_SPACE = " \t\n\v\f\r"


def safe_text(text: str) -> tuple[str, bool]:
    """(text that encodes as UTF-8, whether it had to be escaped): undecodable bytes become \\xNN."""
    if text.isascii():
        return text, False
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        pass
    try:  # bytes that os.fsdecode / our Thrift reader kept as surrogates
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"), True
    except UnicodeEncodeError:  # lone surrogates from elsewhere (JSON \ud800 escapes)
        return text.encode("utf-8", "backslashreplace").decode("utf-8"), True


def to_wire(value: Any) -> tuple[str, bool]:
    """A row value as osquery's string, and whether bytes had to be escaped; booleans are 0/1."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, bool):
        return ("1" if value else "0"), False
    if isinstance(value, int):
        return str(value), False
    if isinstance(value, float):
        return repr(value), False
    if isinstance(value, bytes):
        return safe_text(value.decode("utf-8", "surrogateescape"))
    return str(value), False


def wire_text(value: Any) -> str | None:
    """What a row value looks like on osquery's wire (the extension's own rendering, to_wire), or
    None for a key left out."""
    return None if value is None else to_wire(value)[0]


def sqlite_text(value: Any) -> str | None:
    """sqlite3_value_text of a constraint value (NULL stays None; 2.0 reads "2.0")."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float):
        if math.isinf(value):
            return "Inf" if value > 0 else "-Inf"
        text = f"{value:.15g}"
        return text if any(c in text for c in ".eEn") else text + ".0"
    return str(value)


def stol(value: str, base: int = 0) -> int | None:
    """std::stoll(value, &pos, base) as osquery's tryTo calls it (pos unchecked): leading space, a
    sign, then the longest digit prefix (base 0: 0x hex, 0 octal, else decimal; base 16 allows 0x);
    None when no digit parses or the value overflows 64 bits (osquery/utils/conversions/tryto.h)."""
    if base == 0:
        pat = r"(0[xX](?=[0-9a-fA-F])[0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)"
    elif base == 16:
        pat = r"(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)"
    else:
        pat = r"([0-9]+)"
    m = re.match(r"[ \t\n\v\f\r]*([+-]?)" + pat, value)
    if m is None:
        return None
    digits = m.group(2)
    if base == 0:
        if digits[:2] in ("0x", "0X"):
            n = int(digits[2:], 16)
        else:
            n = int(digits, 8) if digits.startswith("0") else int(digits)
    else:
        n = int(digits, base)
    n = -n if m.group(1) == "-" else n
    return n if _INT64_MIN <= n <= _INT64_MAX else None


def _strtod(text: str) -> float | None:
    """strtod over the whole text (leading blanks allowed, nothing may follow)."""
    if not text or text[-1] in _SPACE:
        return None
    s = text.lstrip(_SPACE)
    try:
        return float(s)
    except ValueError:
        try:
            return float.fromhex(s)
        except ValueError:
            return None


def column_value(text: str | None, ctype: str) -> Any:
    """The SQLite value osquery gives a column (osquery/sql/dynamic_table_row.cpp get_column).

    A missing key is NULL; TEXT/BLOB keep the text, '' included; an empty numeric is NULL;
    INTEGER goes through `long` then `sqlite3_result_int`, so it wraps to 32 bits; BIGINT and
    UNSIGNED BIGINT are 64-bit; DOUBLE must be a whole strtod number; anything unparsable is NULL.
    """
    if text is None:
        return None
    if ctype in ("TEXT", "BLOB"):
        return text
    if text == "":
        return None
    if ctype == "INTEGER":
        n = stol(text)
        if n is None:
            return None
        n %= _INT32
        return n - _INT32 if n >= _INT32 // 2 else n
    if ctype in ("BIGINT", "UNSIGNED BIGINT"):
        return stol(text)
    if ctype == "DOUBLE":
        return _strtod(text)
    return text

"""Values cross osquery as strings typed by the column (osquery/sql/dynamic_table_row.cpp)."""

from __future__ import annotations

import pytest

from dyldwatch.tables.values import column_value, sqlite_text, wire_text


@pytest.mark.parametrize(("text", "ctype", "expected"), [
    (None, "TEXT", None),  # a missing key is NULL
    ("", "TEXT", ""),  # TEXT '' stays ''
    ("", "INTEGER", None),  # an empty number is NULL
    ("", "DOUBLE", None),
    ("42", "INTEGER", 42),
    ("0x10", "INTEGER", 16),  # tryTo<long>(value, 0): base 0
    ("010", "INTEGER", 8),  # a leading 0 is octal
    ("12abc", "INTEGER", 12),  # trailing junk ignored (the parsed length is not checked)
    ("abc", "INTEGER", None),
    ("4294967295", "INTEGER", -1),  # sqlite3_result_int: 32 bits
    ("2147483648", "INTEGER", -2147483648),
    ("4294967295", "BIGINT", 4294967295),
    ("9223372036854775808", "BIGINT", None),  # out of 64-bit range
    ("-5", "UNSIGNED BIGINT", -5),
    ("1.5", "DOUBLE", 1.5),
    ("1.5x", "DOUBLE", None),  # strtod must consume everything
    (" 2.5", "DOUBLE", 2.5),
])
def test_column_value(text: str | None, ctype: str, expected: object) -> None:
    assert column_value(text, ctype) == expected


def test_wire_and_constraint_text() -> None:
    assert wire_text(None) is None and wire_text(True) == "1" and wire_text(7) == "7"
    # the extension's rendering: undecodable bytes escaped as \xNN, as osquery receives them
    assert wire_text(b"/tmp/\xff") == wire_text("/tmp/\udcff") == "/tmp/\\xff"
    assert sqlite_text(2.0) == "2.0" and sqlite_text(5) == "5" and sqlite_text(None) is None

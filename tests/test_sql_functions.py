"""osquery's SQL functions give osquery's results and raise osquery's errors (osquery/sql/sqlite_*.cpp)."""

from __future__ import annotations

import hashlib

import apsw
import pytest

from dyldwatch.sql.functions import register_functions


@pytest.fixture(scope="module")
def conn() -> apsw.Connection:
    c = apsw.Connection(":memory:")
    register_functions(c)
    return c


def one(conn: apsw.Connection, expr: str) -> object:
    return conn.execute(f"SELECT {expr}").fetchall()[0][0]


@pytest.mark.parametrize(("expr", "expected"), [
    ("regex_match('hello world. Goodbye', '(\\w+) \\w+', 0)", "hello world"),
    ("regex_match('hello world. Goodbye', '(\\w+) \\w+', 1)", "hello"),
    ("regex_match('hello', '(\\w+)', 2)", None),
    ("regex_match('hello', '(\\w+)', -1)", None),  # size_t cast: negative is out of range
    ("regex_match('hello', '^\\d+$', 0)", None),
    ("regex_match('/Applications/A B.app/Contents/MacOS/x', '^(.*?\\.app)/', 1)", "/Applications/A B.app"),
    ("split('1001', '1', 0)", "00"),
    ("split('192.168.0.1', '.', 1)", "168"),
    ("split('192.168.0.1', '.0', 0)", "192"),
    ("split(' a , b ', ',', 1)", "b"),
    ("split('a,b', ',', 5)", None),
    ("split('/usr/lib/a.so:/tmp/b.so', ': ', 1)", "/tmp/b.so"),
    ("regex_split('192.168.0.1', '\\.0', 0)", "192.168"),
    ("regex_split('a,,b', ',', 1)", ""),
    ("concat('hello', NULL, ' ', 'world')", "hello world"),
    ("concat()", None),
    # osquery appends the separator after every non-NULL argument that is not the last one
    ("concat_ws(' ', 'hello', NULL, 'world')", "hello world"),
    ("concat_ws('; ', 'a', NULL)", "a; "),
    ("concat_ws('; ', 'a', 'b', NULL)", "a; b; "),
    ("concat_ws('; ', NULL, 'b')", "b"),
    ("parent_directory('/usr/lib/libc.so')", "/usr/lib"),
    ("parent_directory('libc.so')", None),
    ("inet_aton('1.0.1.5')", 16777477),
    ("inet_aton('::1')", None),
    ("in_cidr_block('10.0.0.0/26', '10.0.0.24')", 1),
    ("in_cidr_block('10.0.0.0/26', '10.0.0.64')", 0),
    ("in_cidr_block('2001:db8::/48', '2001:db8:0:ffff:ffff:ffff:ffff:ffff')", 1),
    ("in_cidr_block('::1/128', '::1')", 1),
    # boost::asio network_v4::hosts(): network and broadcast addresses are not hosts; a /32 is its address
    ("in_cidr_block('127.0.0.0/8', '127.0.0.0')", 0),
    ("in_cidr_block('10.0.0.0/8', '10.255.255.255')", 0),
    ("in_cidr_block('10.0.0.1/32', '10.0.0.1')", 1),
    ("in_cidr_block('10.0.0.0/31', '10.0.0.1')", 0),
    ("to_base64('CPU0')", "Q1BVMA=="),
    ("from_base64('Q1BVMA==')", "CPU0"),
    ("from_base64('***')", ""),
    ("conditional_to_base64('CPU0')", "CPU0"),
    ("conditional_to_base64('CPU' || char(183))", "Q1BVwrc="),
    ("sqrt(16)", 4.0),
    ("power(2, 10)", 1024.0),
    ("log10(1000)", 3.0),
    ("floor(2.7)", 2),
    ("round(pi(), 5)", 3.14159),
])
def test_functions(conn: apsw.Connection, expr: str, expected: object) -> None:
    assert one(conn, expr) == expected


@pytest.mark.parametrize(("expr", "message"), [
    # the address family of the IP decides how the CIDR is parsed: a mismatch is an error, not 0
    ("in_cidr_block('127.0.0.0/8', '::1')", "CIDR for IP address v6 cannot be parsed"),
    ("in_cidr_block('::1/128', '10.1.2.3')", "CIDR for IP address v4 cannot be parsed"),
    ("in_cidr_block('127.0.0.0/8', 'not an ip')", "IP address cannot be parsed"),
    ("in_cidr_block('127.0.0.0/8', '')", "IP address cannot be parsed"),
    ("in_cidr_block('127.0.0.0/8', NULL)", "IP address must be a string"),
    ("in_cidr_block(NULL, '1.2.3.4')", "CIDR must be a string"),
    ("in_cidr_block('10.0.0.1', '10.0.0.1')", "CIDR for IP address v4 cannot be parsed"),
    ("split('a', '', 0)", "Invalid input to split function"),
    ("regex_match('a', '(', 0)", "Invalid regex"),
    ("regex_match('a', '" + "a" * 300 + "', 0)", "too big"),
    ("parent_directory(5)", "TEXT was expected"),
    ("version_compare('1', '2', 'NOPE')", "flavour"),
])
def test_osquery_errors(conn: apsw.Connection, expr: str, message: str) -> None:
    with pytest.raises(apsw.SQLError, match=message):
        one(conn, expr)


def test_hashes_match_hashlib(conn: apsw.Connection) -> None:
    assert one(conn, "sha1('Guest')") == "face83ee3014bdc8f98203cc94e2e89222452e90"  # osquery docs
    assert one(conn, "sha256('Guest')") == hashlib.sha256(b"Guest").hexdigest()
    assert one(conn, "md5('Guest')") == hashlib.md5(b"Guest").hexdigest()
    assert one(conn, "sha1(NULL)") is None


@pytest.mark.parametrize(("expr", "expected"), [
    ("version_compare('1.0', '1.0')", 0),
    ("version_compare('4:1.1.0', '4:1.1.0-3', 'ARCH')", 0),
    ("version_compare('50.4.1b', '50.4.1c')", -1),
    ("version_compare('1.0.0~rc2^2021', '1.0.0', 'RHEL')", -1),
    ("version_compare('1:1.2.13-2', '4.2.1', 'ARCH')", 1),
    ("'1.0' = '1.0' COLLATE VERSION", 1),
    ("'20.10a' > '20.102' COLLATE VERSION", 1),
    ("'4:2' = '4:2-1' COLLATE VERSION_ARCH", 1),
    ("'2-2pre' < '2-2rc' COLLATE VERSION_ARCH", 1),
    ("'42.2-1' > '42.1-2' COLLATE VERSION_ARCH", 1),
    ("'22.07.5-2ubuntu1.3' < '22.07.5-2ubuntu1.4' COLLATE VERSION_DPKG", 1),
    ("'2:8.2.3995-1ubuntu2.9' > '2:8.2.3995-1ubuntu2.3' COLLATE VERSION_DPKG", 1),
    ("'1.1.0~BETA2' < '1.1.0~CR1' COLLATE VERSION_RHEL", 1),
    ("'1.0.0' > '1.0.0~rc2' COLLATE VERSION_RHEL", 1),
])
def test_versions(conn: apsw.Connection, expr: str, expected: int) -> None:
    assert one(conn, expr) == expected


def test_json_of_empty_text_is_an_error_in_osquerys_sqlite(conn: apsw.Connection) -> None:
    """Why packs never hand a possibly-empty TEXT column to json_extract (SQLite 3.42)."""
    with pytest.raises(apsw.SQLError, match="malformed JSON"):
        one(conn, "json_extract('', '$.a')")
    assert one(conn, "json_extract(NULL, '$.a')") is None

"""osquery's SQL additions behave as osquery documents them, so pack queries mean the same here."""

from __future__ import annotations

import hashlib

import apsw
import pytest

from dyldwatch.osquery_sql import connect
from dyldwatch.schema_facts import columns_of, native_tables, our_tables


@pytest.fixture(scope="module")
def conn() -> apsw.Connection:
    return connect(ddl=False)


def one(conn: apsw.Connection, expr: str) -> object:
    return conn.execute(f"SELECT {expr}").fetchall()[0][0]


@pytest.mark.parametrize(("expr", "expected"), [
    ("regex_match('hello world. Goodbye', '(\\w+) \\w+', 0)", "hello world"),
    ("regex_match('hello world. Goodbye', '(\\w+) \\w+', 1)", "hello"),
    ("regex_match('hello', '(\\w+)', 2)", None),
    ("regex_match('hello', '^\\d+$', 0)", None),
    ("regex_match('/Applications/A B.app/Contents/MacOS/x', '^(.*?\\.app)/', 1)", "/Applications/A B.app"),
    ("split('1001', '1', 0)", "00"),
    ("split('192.168.0.1', '.', 1)", "168"),
    ("split('192.168.0.1', '.0', 0)", "192"),
    ("split(' a , b ', ',', 1)", "b"),
    ("split('a,b', ',', 5)", None),
    ("regex_split('192.168.0.1', '\\.0', 0)", "192.168"),
    ("regex_split('a,,b', ',', 1)", ""),
    ("concat('hello', NULL, ' ', 'world')", "hello world"),
    ("concat_ws(' ', 'hello', NULL, 'world')", "hello world"),
    ("inet_aton('1.0.1.5')", 16777477),
    ("inet_aton('::1')", None),
    ("in_cidr_block('10.0.0.0/26', '10.0.0.24')", 1),
    ("in_cidr_block('10.0.0.0/26', '10.0.0.64')", 0),
    ("in_cidr_block('2001:db8::/48', '2001:db8:0:ffff:ffff:ffff:ffff:ffff')", 1),
    ("in_cidr_block('127.0.0.0/8', '::1')", 0),
    ("in_cidr_block('127.0.0.0/8', 'not an ip')", None),
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


def test_errors_are_sql_errors(conn: apsw.Connection) -> None:
    with pytest.raises(apsw.Error, match="split"):
        one(conn, "split('a', '', 0)")
    with pytest.raises(apsw.Error, match="flavour"):
        one(conn, "version_compare('1', '2', 'NOPE')")


def test_ddl_holds_every_table_and_keeps_existing_rows(tmp_path) -> None:
    db = tmp_path / "x.db"
    first = connect(str(db))
    names = {r[0] for r in first.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert {"processes", "launchd", "process_memory_map", *our_tables()} <= names
    first.execute("INSERT INTO processes (pid, name) VALUES (7, 'x')")
    first.close()
    again = connect(str(db))  # IF NOT EXISTS: a second DDL pass keeps the data
    assert again.execute("SELECT name FROM processes WHERE pid = 7").fetchall() == [("x",)]


def test_platform_ddl_excludes_other_platforms() -> None:
    linux = connect(platform="linux")
    with pytest.raises(apsw.SQLError, match="no such table: launchd"):
        linux.execute("SELECT * FROM launchd")
    assert columns_of("launchd", "linux") is None
    assert "program_arguments" in (columns_of("launchd", "darwin") or [])
    assert "entitlements" in (columns_of("macho_info", "darwin") or [])


def test_schema_override(monkeypatch, tmp_path) -> None:
    from dyldwatch import schema_facts

    alt = tmp_path / "schema.json"
    alt.write_text('{"source": "t", "tables": {"only": {"name": "only", "description": "", '
                   '"platforms": ["linux"], "columns": [{"name": "c", "type": "text"}]}}}')
    monkeypatch.setenv("DYLDWATCH_SCHEMA", str(alt))
    assert set(native_tables()) == {"only"}
    monkeypatch.delenv("DYLDWATCH_SCHEMA")
    assert "processes" in schema_facts.native_tables()


@pytest.mark.parametrize("name", sorted(our_tables()))
def test_real_tables_cover_the_contract(name: str) -> None:
    """When a table module exists, it declares at least the columns the packs rely on."""
    from dyldwatch.schema_facts import CONTRACT
    from dyldwatch.tables import load_table

    try:
        table = load_table(name)
    except ImportError:
        pytest.skip(f"{name} module not available yet")
    missing = [c for c, _ in CONTRACT[name] if c not in table.column_names()]
    assert not missing, f"{name} lacks contract columns {missing}"

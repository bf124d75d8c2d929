"""The CLI as analysts and CI use it: query formats, schema listing, clear errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner

from dyldwatch.cli import main
from dyldwatch.formats.macho import writer as mw
from dyldwatch.tables import TABLES


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_query_json_is_an_array_of_row_objects(tmp_path: Path) -> None:
    (tmp_path / "app").write_bytes(mw.sample_executable().build())
    code, out = run("query", "--format", "json",
                    f"SELECT arch, cmd, name, weak FROM macho_load_commands WHERE path = '{tmp_path}/app' AND cmd LIKE 'LC_LOAD%DYLIB'")
    assert code == 0, out
    rows = json.loads(out)
    assert rows == [
        {"arch": "arm64", "cmd": "LC_LOAD_DYLIB", "name": "/usr/lib/libSystem.B.dylib", "weak": 0},
        {"arch": "arm64", "cmd": "LC_LOAD_WEAK_DYLIB", "name": "@rpath/libfoo.dylib", "weak": 1},
    ]


def test_query_json_empty_result_is_an_empty_array() -> None:
    code, out = run("query", "--format", "json", "SELECT path FROM macho_info WHERE path = '/nonexistent' AND error IS NULL")
    assert code == 0 and json.loads(out) == []


def test_query_csv_and_table(tmp_path: Path) -> None:
    (tmp_path / "app").write_bytes(mw.sample_executable().build())
    code, out = run("query", "--format", "csv", f"SELECT path, arch, filetype FROM macho_info WHERE directory = '{tmp_path}'")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [["path", "arch", "filetype"], [f"{tmp_path}/app", "arm64", "execute"]]
    code, out = run("query", f"SELECT arch, filetype FROM macho_info WHERE directory = '{tmp_path}'")
    assert code == 0 and "execute" in out and "1 row" in out


def test_join_feeds_a_path_keyed_table(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(mw.sample_executable().build())
    sql = (f"SELECT l.path, i.arch FROM macho_load_commands l JOIN macho_info i ON i.path = l.path "
           f"WHERE l.directory = '{tmp_path}' AND l.cmd = 'LC_MAIN'")
    code, out = run("query", "--format", "json", sql)
    assert code == 0, out
    assert json.loads(out) == [{"path": f"{tmp_path}/a", "arch": "arm64"}]


def test_missing_required_constraint_is_a_clear_error() -> None:
    code, out = run("query", "SELECT * FROM macho_info")
    assert code != 0 and "needs a constraint on path or directory" in out
    assert "Table macho_info was queried without a required column in the WHERE clause" in out  # osquery's words


def test_sql_error_is_reported_not_raised() -> None:
    code, out = run("query", "SELECT nope FROM macho_info WHERE path = '/x'")
    assert code != 0 and "SQL error" in out and "nope" in out


def test_tables_lists_every_table_and_flags() -> None:
    code, out = run("tables", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert {r["table"] for r in rows} == set(TABLES)
    path = next(r for r in rows if r["table"] == "macho_info" and r["column"] == "path")
    assert path["options"] == "index,required,optimized" and path["type"] == "TEXT"
    code, out = run("tables", "no_such_table")
    assert code != 0 and "unknown table" in out


def test_help_teaches() -> None:
    code, out = run("--help")
    assert code == 0 and "dyldwatch query" in out
    code, out = run("query", "--help")
    assert code == 0 and "%%" in out and "Examples" in out


def test_probe_answers_through_the_extensions_own_socket(tmp_path) -> None:
    """`dyldwatch probe` starts the extension, registers it with a stand-in manager and asks over Thrift."""
    from dyldwatch.formats.macho.writer import sample_executable

    (tmp_path / "tool").write_bytes(sample_executable().build())
    code, out = run("probe", "macho_info", "--directory", str(tmp_path), "--column", "path",
                    "--column", "filetype", "--format", "json")
    assert code == 0, out
    assert json.loads(out) == [{"path": str(tmp_path / "tool"), "filetype": "execute"}]

"""The generated table reference is current, and every table example prepares in the SQL session."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from click.testing import CliRunner

from dyldwatch.cli import main
from dyldwatch.sql.session import empty_engine
from dyldwatch.tables import TABLES, load_table
from dyldwatch.tables.base import REQUIRED, TEXT, Column, Table
from dyldwatch.tables.reference import check_docs, check_examples, render_docs, table_page


def _connect(platform: str):
    return empty_engine(platform).conn

ROOT = Path(__file__).resolve().parents[1]


def test_committed_table_docs_are_current() -> None:
    problems = check_docs(ROOT / "docs" / "tables")
    assert not problems, "\n".join(problems) + "\nrun: dyldwatch docs -o docs/tables"


def test_every_example_prepares() -> None:
    assert check_examples(_connect) == []


def test_a_broken_example_is_reported() -> None:
    class Broken(Table):
        name = "macho_info"
        description = "x"
        platforms = ("linux",)
        columns: ClassVar = (Column("path", TEXT, "p", REQUIRED),)
        examples = ("SELECT no_such_column FROM macho_info WHERE path = '/x'",)

        def generate(self, ctx):  # type: ignore[no-untyped-def]
            return iter(())

    problems = check_examples(_connect, [Broken])
    assert len(problems) == 1 and "no_such_column" in problems[0]


def test_pages_carry_every_column_type_and_option() -> None:
    pages = render_docs()
    assert set(pages) == {f"{n}.md" for n in TABLES} | {"README.md"}
    for name in TABLES:
        table = load_table(name)
        page = table_page(table)
        for c in table.columns:
            assert f"| `{c.name}` | {c.type} |" in page
        for sql in table.examples:
            assert sql.strip() in page
        assert f"[`{name}`]({name}.md)" in pages["README.md"]
    assert "| `path` | TEXT | index, required, optimized |" in pages["macho_info.md"]
    assert "| `arch` | TEXT |  |" in pages["macho_info.md"]


def test_check_fails_on_stale_docs(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["docs", "-o", str(tmp_path)]).exit_code == 0
    assert runner.invoke(main, ["docs", "--check", "-o", str(tmp_path)]).exit_code == 0
    (tmp_path / "macho_info.md").write_text("old\n")
    (tmp_path / "gone_table.md").write_text("old\n")
    result = runner.invoke(main, ["docs", "--check", "-o", str(tmp_path)])
    assert result.exit_code == 1
    assert "macho_info.md: differs" in result.output and "gone_table.md: no such table" in result.output

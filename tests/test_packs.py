"""Pack model, lint and SITE substitution: problems come back as FILE:LINE with the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dyldwatch.cli.packs import lint
from dyldwatch.packs import PackError, load_pack, load_packs, load_site, quote, sql_literal
from dyldwatch.packs.lint import lint_pack, lint_paths, session_for

GOOD_SQL = """\
      SELECT p.pid, p.path, m.team_id, 'medium' AS severity, 'unsigned' AS reason
        FROM processes p
        JOIN macho_info m ON m.path = p.path
       WHERE m.signature_type = 'none' AND m.team_id NOT IN ({{teams}})
         AND p.start_time > {{since}}
"""


def pack_text(sql: str = GOOD_SQL, *, platform: str = "darwin", tables: str = "[processes, macho_info]",
              extra_query: str = "", knobs: str | None = None) -> str:
    knobs = knobs if knobs is not None else """\
  teams: {type: list, default: [ABC], description: allowlisted teams}
  since: {type: integer, default: 0, description: start time floor}
"""
    return f"""\
id: AN9999
title: Test pack
description: For tests.
attack:
  - {{id: T1055, name: Process Injection}}
platforms: [darwin, linux]
knobs:
{knobs}queries:
  - name: q_one
    platform: {platform}
    interval: 3600
    tables: {tables}
    description: d
    value: v
{extra_query}    sql: |
{sql}  - name: q_linux
    platform: linux
    interval: 3600
    tables: [processes]
    description: d
    value: v
    sql: SELECT pid, path, 'low' AS severity, 'x' AS reason FROM processes
expectations:
  - {{scenario: darwin_baseline, fires: false}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "AN9999.yaml"
    path.write_text(text)
    return path


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_shipped_packs_lint_clean() -> None:
    assert [str(p) for p in lint_paths()] == []
    ids = [p.id for p in load_packs()]
    assert ids == sorted(ids) and set(ids) == {"AN0054", "AN0057", "AN0607", "AN0840", "AN1467"}


def test_good_pack_is_clean(tmp_path: Path) -> None:
    assert lint_paths([write(tmp_path, pack_text())]) == []


def test_misspelled_column_reports_file_line_and_field(tmp_path: Path) -> None:
    text = pack_text(GOOD_SQL.replace("m.signature_type", "m.signature_kind"))
    path = write(tmp_path, text)
    [problem] = lint_paths([path])
    assert problem.file == str(path)
    assert problem.line == line_of(text, "m.signature_kind")
    assert problem.field == "queries.0.sql"
    assert "no such column: m.signature_kind" in problem.message
    assert str(problem).startswith(f"{path}:{problem.line}: queries.0.sql:")


def test_table_missing_on_the_query_platform(tmp_path: Path) -> None:
    sql = "      SELECT l.path, 'low' AS severity, l.program AS reason FROM launchd l\n"
    text = pack_text(sql, platform="linux", tables="[launchd]")
    problems = lint_paths([write(tmp_path, text)])
    assert any("[linux]" in p.message and "no such table: launchd" in p.message for p in problems)


def test_unknown_missing_and_mistyped_fields(tmp_path: Path) -> None:
    text = pack_text(extra_query="    intervall: 5\n").replace("    interval: 3600\n    tables: [processes, macho",
                                                             "    interval: '3600'\n    tables: [processes, macho")
    text = text.replace("title: Test pack\n", "")
    with pytest.raises(PackError) as err:
        load_pack(write(tmp_path, text))
    by_field = {p.field: p for p in err.value.problems}
    assert by_field["queries.0.intervall"].line == line_of(text, "intervall")
    assert "unknown field" in by_field["queries.0.intervall"].message
    assert by_field["queries.0.interval"].line == line_of(text, "interval: '3600'")
    assert "expected integer" in by_field["queries.0.interval"].message
    assert any(p.field == "pack" and "missing field 'title'" in p.message for p in err.value.problems)


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    text = pack_text().replace("value: v\n", "value: [v\n", 1)
    [problem] = lint_paths([write(tmp_path, text)])
    assert problem.field == "yaml" and problem.line > 1


def test_knob_and_table_declarations(tmp_path: Path) -> None:
    undeclared = pack_text(GOOD_SQL.replace("{{since}}", "{{floor}}"))
    with pytest.raises(PackError, match=r"uses knob \{\{floor\}\}"):
        load_pack(write(tmp_path, undeclared))
    unused = pack_text(knobs="""\
  teams: {type: list, default: [ABC], description: t}
  since: {type: integer, default: 0, description: s}
  spare: {type: string, default: x, description: never used}
""")
    assert any(p.field == "knobs.spare" for p in lint_paths([write(tmp_path, unused)]))
    wrong_tables = pack_text(tables="[processes]")
    problems = lint_paths([write(tmp_path, wrong_tables)])
    assert any("reads macho_info but does not list it" in p.message for p in problems)


def test_output_must_name_object_and_reason(tmp_path: Path) -> None:
    text = pack_text(GOOD_SQL.replace(", 'unsigned' AS reason", ""))
    assert any("reason" in p.message for p in lint_paths([write(tmp_path, text)]))


def test_only_one_read_only_statement(tmp_path: Path) -> None:
    two = pack_text(GOOD_SQL + "      ; SELECT 1\n")
    assert any("more than one statement" in p.message for p in lint_paths([write(tmp_path, two)]))
    pack = load_pack(write(tmp_path, pack_text()))
    pack.queries[0].sql = "DELETE FROM processes WHERE pid = 1 RETURNING pid, path, 'x' AS reason"
    assert any("not read-only" in p.message for p in lint_pack(pack))


def test_sql_literals() -> None:
    assert quote("o'brien") == "'o''brien'"
    assert sql_literal(["a", "b'c"], "list") == "'a','b''c'"
    assert sql_literal([], "list") == ""
    assert sql_literal(42, "integer") == "42"
    for bad, kind in ((True, "integer"), ("7", "integer"), ("a\x00b", "string"), ("a\nb", "string"), ([1], "list")):
        with pytest.raises(ValueError):
            sql_literal(bad, kind)


def site(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "SITE.yaml"
    path.write_text(text)
    return path


def test_site_quote_is_escaped_and_sql_still_prepares(tmp_path: Path) -> None:
    import apsw.ext

    packs = load_packs()
    values = load_site(site(tmp_path, "knobs:\n  allowlisted_team_ids: [\"O'BRIEN01\", 'X\"Y']\n"
                                      "packs:\n  AN0057:\n    search_roots: [\"/Users/%/it's here/%%\"]\n"), packs)
    assert values["AN0054"]["allowlisted_team_ids"] == ["O'BRIEN01", 'X"Y']
    an0057 = next(p for p in packs if p.id == "AN0057")
    sql = an0057.render(an0057.queries[0], values["AN0057"])
    assert "'/Users/%/it''s here/%%'" in sql
    apsw.ext.query_info(session_for("darwin"), sql)  # prepares
    assert not lint_paths(sites=values)


@pytest.mark.parametrize(("body", "needle"), [
    ("knobs:\n  recency_seconds: \"7 days\"\n", "expected an integer"),
    ("knobs:\n  allowlisted_team_ids: \"ABC\"\n", "expected a list"),
    ("knobs:\n  allowlisted_team_ids: [\"A\\0B\"]\n", "NUL or control character"),
    ("knobs:\n  allowlisted_team_ids: [\"A\\nB\"]\n", "NUL or control character"),
    ("knobs:\n  recency_sconds: 5\n", "no pack declares knob"),
    ("packs:\n  AN0840:\n    search_roots: []\n", "AN0840 has no knob"),
    ("packs:\n  AN1234: {}\n", "unknown pack"),
])
def test_site_values_refused_with_file_line_and_knob(tmp_path: Path, body: str, needle: str) -> None:
    path = site(tmp_path, "# site tuning\n" + body)
    with pytest.raises(PackError) as err:
        load_site(path, load_packs())
    [problem] = err.value.problems
    assert needle in problem.message
    assert problem.file == str(path) and problem.line >= 2


def test_lint_cli_exit_codes_and_formats(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(lint, [])
    assert ok.exit_code == 0, ok.output
    bad = write(tmp_path, pack_text(GOOD_SQL.replace("m.team_id NOT", "m.teamid NOT")))
    result = runner.invoke(lint, [str(bad), "--format", "json"])
    assert result.exit_code == 1
    rows = json.loads(result.output)
    assert rows[0]["file"] == str(bad) and rows[0]["field"] == "queries.0.sql"
    assert "m.teamid" in rows[0]["problem"]
    csv_out = runner.invoke(lint, [str(bad), "--format", "csv"])
    assert csv_out.exit_code == 1 and csv_out.output.startswith("file,line,field,problem")


def test_path_keyed_table_needs_a_path_constraint(tmp_path: Path) -> None:
    unfed = "      SELECT m.path, 'low' AS severity, m.team_id AS reason FROM macho_info m WHERE m.signature_type = 'none'\n"
    text = pack_text(unfed, tables="[macho_info]", knobs="")
    [problem] = lint_paths([write(tmp_path, text)])
    assert "macho_info is read without a path or directory constraint" in problem.message
    assert problem.line == line_of(text, "FROM macho_info")
    fed = unfed.replace("WHERE", "WHERE m.path LIKE '/Users/%/Downloads/%%' AND")
    assert lint_paths([write(tmp_path, pack_text(fed, tables="[macho_info]", knobs=""))]) == []
    native = "      SELECT f.path, 'low' AS severity, 'x' AS reason FROM file f WHERE f.size > 0\n"
    [problem] = lint_paths([write(tmp_path, pack_text(native, tables="[file]", knobs=""))])
    assert "file is read without a path or directory constraint" in problem.message


def test_output_must_carry_a_severity(tmp_path: Path) -> None:
    text = pack_text(GOOD_SQL.replace("'medium' AS severity, ", ""))
    assert any("severity" in p.message for p in lint_paths([write(tmp_path, text)]))


@pytest.mark.parametrize("where", ["m.path GLOB '/Users/*'", "m.path != '/x'"])
def test_a_key_given_only_an_unusable_operator_is_caught(tmp_path: Path, where: str) -> None:
    """osquery accepts these (the REQUIRED column is constrained) but the table gets nothing it can
    walk, so the query silently returns nothing inside osquery."""
    sql = f"      SELECT m.path, 'low' AS severity, m.team_id AS reason FROM macho_info m WHERE {where}\n"
    problems = lint_paths([write(tmp_path, pack_text(sql, tables="[macho_info]", knobs=""))])
    assert any("only gets path op" in p.message and "returns nothing" in p.message for p in problems)


def test_events_are_kept_for_every_recency_window_that_reads_them() -> None:
    """A pack that looks events up over N seconds needs osquery to keep them N seconds."""
    from dyldwatch.deploy.layout import flags, layout_for
    from dyldwatch.packs import EVENTS_EXPIRY, load_packs
    from dyldwatch.sql.facts import native_tables

    events = {n for n, t in native_tables().items() if t.event_based}
    for pack in load_packs():
        if any(t in events for q in pack.queries for t in q.tables):
            assert pack.knobs["recency_seconds"].default <= EVENTS_EXPIRY, pack.id
    for system in ("linux", "darwin"):
        assert dict(flags(layout_for(system)))["events_expiry"] == str(EVENTS_EXPIRY)

"""The engine plans and feeds tables the way osqueryd does (osquery/sql/virtual_table.cpp).

Each test pins one rule of osquery's planner contract with a recording table, so a change that
breaks the rule fails here rather than silently in a fleet.
"""

from __future__ import annotations

from typing import Any

import apsw
import pytest

from dyldwatch.sql.engine import Engine, EventRows, Flags, RunState, StoredRows
from dyldwatch.sql.facts import INDEX, OPTIMIZED, REQUIRED, ColumnFacts, TableFacts, native_tables, tables_for
from dyldwatch.tables.base import QueryContext


class Recorder(StoredRows):
    """Stored rows that remember every context osquery handed them."""

    def __init__(self, facts: TableFacts, rows: list[dict[str, Any]], keys: tuple[str, ...] | None = None) -> None:
        super().__init__(facts, rows, keys)
        self.calls: list[QueryContext] = []

    def rows(self, ctx: QueryContext, state: RunState):  # type: ignore[override]
        self.calls.append(ctx)
        return super().rows(ctx, state)


def facts(name: str, *cols: tuple[str, str, int], ours: bool = True) -> TableFacts:
    return TableFacts(name, ("linux",), tuple(ColumnFacts(n, t, o) for n, t, o in cols), ours)


IMAGES = [{"pid": 1, "path": "/usr/lib/libc.so.6"}, {"pid": 1, "path": "/tmp/x.so"}]
PROV = [{"path": "/usr/lib/libc.so.6", "system_path": 1}, {"path": "/tmp/x.so", "system_path": 0}]


def engine_with(prov_options: int, path_options: int = REQUIRED | INDEX | OPTIMIZED,
                flags: Flags | None = None) -> tuple[Engine, Recorder]:
    images = StoredRows(facts("images", ("pid", "INTEGER", INDEX | OPTIMIZED), ("path", "TEXT", OPTIMIZED)), IMAGES)
    prov = Recorder(facts("prov", ("path", "TEXT", path_options), ("system_path", "INTEGER", prov_options)), PROV,
                    keys=("path",))
    return Engine({"images": images, "prov": prov}, now=1000, flags=flags), prov


#: The shape of AN0054: a materialised image list joined to a path-keyed table, plus a constant filter.
JOIN = ("WITH i AS (SELECT pid, path FROM images WHERE path != '' UNION SELECT pid, path FROM images WHERE pid > 0) "
        "SELECT i.path FROM i JOIN prov d ON d.path = i.path WHERE d.system_path = 0")


def test_default_index_rule_lets_a_constant_filter_steer_the_plan() -> None:
    """Columns registered with options 0 are INDEX: `system_path = 0` costs as little as the join
    key, SQLite 3.42 scans prov without a path first, and the path-keyed table returns nothing."""
    engine, prov = engine_with(0, path_options=0)
    assert engine.run(JOIN).rows == []
    assert prov.calls and all(not c.get("path") for c in prov.calls)
    assert any(c.get("system_path") == ["0"] for c in prov.calls)


@pytest.mark.parametrize(("prov_options", "path_options"), [(OPTIMIZED, 0), (0, REQUIRED | INDEX | OPTIMIZED)])
def test_a_required_key_or_a_non_key_filter_keeps_the_join_feeding_the_table(prov_options: int,
                                                                             path_options: int) -> None:
    engine, prov = engine_with(prov_options, path_options)
    assert engine.run(JOIN).rows == [{"path": "/tmp/x.so"}]
    assert prov.calls and all(c.get("path") for c in prov.calls)


def test_non_key_columns_stay_with_sqlite() -> None:
    engine, prov = engine_with(OPTIMIZED)
    assert engine.run(JOIN).rows == [{"path": "/tmp/x.so"}]
    assert all(c.get("path") and not c.get("system_path") for c in prov.calls)


def test_without_default_index_flag_options_zero_is_not_a_key() -> None:
    engine, prov = engine_with(0, flags=Flags(extensions_default_index=False))
    engine.run("SELECT * FROM prov WHERE path = '/tmp/x.so' AND system_path = 0")
    assert prov.calls[-1].equals("path") == ["/tmp/x.so"] and not prov.calls[-1].has("system_path")
    engine, prov = engine_with(0)
    engine.run("SELECT * FROM prov WHERE path = '/tmp/x.so' AND system_path = 0")
    assert prov.calls[-1].equals("system_path") == ["0"]


def test_in_list_is_one_call_only_on_optimized_columns() -> None:
    opt = Recorder(facts("opt", ("k", "TEXT", INDEX | OPTIMIZED)), [{"k": "a"}, {"k": "b"}, {"k": "c"}])
    plain = Recorder(facts("plain", ("k", "TEXT", INDEX)), [{"k": "a"}, {"k": "b"}, {"k": "c"}])
    engine = Engine({"opt": opt, "plain": plain})
    run = engine.run("SELECT k FROM opt WHERE k IN ('a', 'b', 'x')")
    assert sorted(r["k"] for r in run.rows) == ["a", "b"] and run.calls == {"opt": 1}
    assert sorted(v for c in opt.calls for v in c.equals("k")) == ["a", "b", "x"]
    run = engine.run("SELECT k FROM plain WHERE k IN ('a', 'b', 'x')")
    assert sorted(r["k"] for r in run.rows) == ["a", "b"] and run.calls == {"plain": 3}


def test_required_column_left_unconstrained_fails_with_osquerys_message() -> None:
    engine, _ = engine_with(OPTIMIZED)
    with pytest.raises(apsw.ConstraintError, match="Table prov was queried without a required column"):
        engine.run("SELECT * FROM prov")


@pytest.mark.parametrize("where", ["path = ''", "path != '/tmp/x.so'", "path GLOB '/tmp/*'", "path IS NOT NULL"])
def test_any_operator_satisfies_required_but_only_values_reach_the_table(where: str) -> None:
    """osquery accepts the query, but an empty value is dropped and other operators give a
    path-keyed table nothing it can use: it returns no rows, silently. The engine notes it."""
    engine, prov = engine_with(OPTIMIZED)
    run = engine.run(f"SELECT * FROM prov WHERE {where}")
    assert run.rows == [] and run.calls == {"prov": 1}
    assert not prov.calls[0].equals("path")
    assert any("no usable value for path" in n for n in run.notes)


def test_ordering_comparisons_on_text_are_not_pushed_and_like_escape_never_is() -> None:
    t = Recorder(facts("t", ("k", "TEXT", INDEX), ("n", "BIGINT", INDEX)), [{"k": "a", "n": 5}])
    engine = Engine({"t": t})
    engine.run("SELECT * FROM t WHERE k > 'a' AND n > 1")
    assert t.calls[-1].get("k") == [] and t.calls[-1].get("n") == ["1"]
    engine.run("SELECT * FROM t WHERE k LIKE 'a!%' ESCAPE '!'")
    assert t.calls[-1].get("k") == []


def test_values_are_typed_by_the_declared_column() -> None:
    t = StoredRows(facts("t", ("i", "INTEGER", 0), ("b", "BIGINT", 0), ("s", "TEXT", 0), ("m", "TEXT", 0)),
                   [{"i": 4294967295, "b": 4294967295, "s": "", "m": None}])
    row = Engine({"t": t}).run("SELECT i, b, s, m, typeof(m) AS tm FROM t").rows[0]
    assert row == {"i": -1, "b": 4294967295, "s": "", "m": None, "tm": "null"}


EVENTS = facts("es", ("pid", "BIGINT", 0), ("filename", "TEXT", 0), ("time", "BIGINT", 4), ours=False)


def event_engine(**flags: Any) -> Engine:
    rows = [{"pid": 1, "filename": "/a", "time": 100_000 - 30},       # since the previous run
            {"pid": 2, "filename": "/b", "time": 100_000 - 2_000},    # before it, still stored
            {"pid": 3, "filename": "/c", "time": 100_000 - 20_000}]   # expired
    f = TableFacts(EVENTS.name, EVENTS.platforms, EVENTS.columns, False, True)
    return Engine({"es": EventRows(f, rows)}, now=100_000, flags=Flags(**flags))


def test_scheduled_event_query_without_time_sees_only_events_since_its_last_run() -> None:
    engine = event_engine()
    assert [r["pid"] for r in engine.run("SELECT pid FROM es", interval=900).rows] == [1]
    # a time constraint reaches the table (ADDITIONAL) and turns the optimisation off
    got = engine.run("SELECT pid FROM es WHERE time >= 100000 - 86400", interval=900).rows
    assert sorted(r["pid"] for r in got) == [1, 2]
    # ad hoc (osqueryi) queries are not optimised; expiry still applies
    assert sorted(r["pid"] for r in engine.run("SELECT pid FROM es").rows) == [1, 2]


def test_event_expiry_follows_the_flag_and_the_longest_interval() -> None:
    assert sorted(r["pid"] for r in event_engine(events_expiry=86400).run("SELECT pid FROM es").rows) == [1, 2, 3]
    # 3 x 3600 s rounded up to a minute keeps 10,860 s of events whatever events_expiry says
    got = event_engine().run("SELECT pid FROM es WHERE time > 0", interval=3600).rows
    assert sorted(r["pid"] for r in got) == [1, 2]
    assert event_engine(disable_events=True).run("SELECT pid FROM es").rows == []


def test_native_facts_carry_osquerys_options() -> None:
    native = native_tables()
    file_path = next(c for c in native["file"].columns if c.name == "path")
    assert file_path.options & REQUIRED and file_path.options & OPTIMIZED
    assert native["es_process_file_events"].event_based
    assert "launchd" not in tables_for("linux") and "launchd" in tables_for("darwin")
    procs = Engine({"file": StoredRows(native["file"], [{"path": "/etc/hosts", "size": 10}])})
    assert procs.run("SELECT size FROM file WHERE path = '/etc/hosts'").rows == [{"size": 10}]
    with pytest.raises(apsw.ConstraintError):
        procs.run("SELECT size FROM file")


def test_our_tables_register_keys_and_never_default_index() -> None:
    """Every column of ours is either a key osquery must push, or flagged so it never is."""
    from dyldwatch.tables import all_tables

    for table in all_tables():
        for c in table.columns:
            assert int(c.options) != 0, f"{table.name}.{c.name} would become INDEX inside osquery"
            if c.name in ("path", "directory") and table.name not in ("process_images", "rwx_regions"):
                assert c.required and c.options & OPTIMIZED
            elif c.name != "pid":
                assert not c.key, f"{table.name}.{c.name} is a key"

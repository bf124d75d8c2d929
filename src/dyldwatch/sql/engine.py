"""An SQL engine that executes queries the way osqueryd does, for validate, lint, query and hunt.

Every table, ours and osquery's native ones, is a virtual table behind osquery's planner contract:
- the declared DDL and column options of osquery (osquery/core/tables.cpp columnDefinition), with
  the extension rule that a column registered with options 0 counts as INDEX
  (`--extensions_default_index`, osquery/sql/virtual_table.cpp xCreate);
- xBestIndex costs and constraint delivery (osquery/sql/virtual_table.cpp xBestIndex): only
  INDEX/REQUIRED/ADDITIONAL columns receive constraints, cost 1 for any such constraint and
  1,000,000 otherwise or when a used REQUIRED column is unconstrained, ordering comparisons on
  TEXT columns are refused, IN lists arrive whole only on OPTIMIZED columns (else one call per
  value);
- xFilter (same file): empty and NULL constraint values are dropped, a plan with no REQUIRED
  constraint fails with osquery's own message;
- value conversion (osquery/sql/dynamic_table_row.cpp, see values.py) and osquery's SQL functions
  (functions.py);
- event tables (osquery/events/eventsubscriberplugin.cpp): rows older than the expiry are gone and,
  without a `time` constraint, a scheduled query only sees events since its previous run.

The SQLite library should be osquery's pinned version (3.42.0; `SQLITE_VERSION` below): the planner's
choices between equal costs are what make or break a pack.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import apsw

from ..tables.base import Op, QueryContext, TableUsageError
from ..tables.values import column_value, sqlite_text, wire_text
from .facts import ADDITIONAL, HIDDEN, INDEX, OPTIMIZED, REQUIRED, TableFacts
from .functions import register_functions

#: osquery's SQLite (libraries/third_party_libraries_manifest.json in osquery 5.23).
SQLITE_VERSION = "3.42.0"
#: osquery/sql/virtual_table.cpp kMaxIndexCost.
MAX_INDEX_COST = 1_000_000.0
_ORDERING_OPS = (Op.GREATER_THAN, Op.LESS_THAN_OR_EQUALS, Op.LESS_THAN, Op.GREATER_THAN_OR_EQUALS)
Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Flags:
    """The osqueryd flags that change what a query returns."""

    extensions_default_index: bool = True
    events_expiry: int = 3600
    events_optimize: bool = True  # a scheduled (daemon) query; osqueryi does not optimize
    disable_events: bool = False


@dataclass(slots=True)
class RunState:
    """What one query execution knows: the host's clock and the query's schedule."""

    now: int
    interval: int | None
    flags: Flags
    calls: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)


class Source(Protocol):
    """Rows of one table for one osquery call (one xFilter)."""

    facts: TableFacts

    def rows(self, ctx: QueryContext, state: RunState) -> Iterable[Row]: ...


# --- sources ---------------------------------------------------------------------------------


def like_regex(pattern: str, *, path: bool) -> re.Pattern[str]:
    """A LIKE pattern as a regex; for path columns with osquery's file-table expansion
    (`%` stays inside one directory level, a trailing `%%` recurses; osquery/filesystem/filesystem.cpp)."""
    out: list[str] = []
    body = pattern[:-2] if path and pattern.endswith("%%") else pattern
    for ch in body:
        if ch == "%":
            out.append("[^/]*" if path else ".*")
        elif ch == "_":
            out.append("[^/]" if path else ".")
        else:
            out.append(re.escape(ch))
    if path and pattern.endswith("%%"):
        out.append(".*")
    return re.compile("".join(out) + r"\Z", 0 if path else re.IGNORECASE)


def _matches(value: Any, op: int, expr: str, column: str) -> bool:
    text = wire_text(value)
    if text is None:
        return False
    if op == Op.EQUALS:
        return text == expr
    if op == Op.LIKE:
        return bool(like_regex(expr, path=column in ("path", "directory")).match(text))
    return True  # other operators: the table ignores them, SQLite re-checks every row


class StoredRows:
    """Rows recorded for a table (a scenario or a snapshot), served as that table would serve them.

    A table with keys (osquery's `file` and its REQUIRED path/directory; our path-keyed tables,
    whatever options they registered, as their `generate` needs them) only produces rows for
    the values it is given on them (`=`, each IN value, LIKE with file-table expansion); with none
    it produces nothing, exactly as the real table does. Other tables return every row that
    satisfies the `=` constraints they were given; SQLite re-checks everything else.
    """

    def __init__(self, facts: TableFacts, rows: Iterable[Row], keys: tuple[str, ...] | None = None) -> None:
        self.facts = facts
        self._rows = list(rows)
        self._required = facts.required if keys is None else keys
        self._index = [c.name for c in facts.columns if c.options & INDEX and not c.options & REQUIRED]

    def rows(self, ctx: QueryContext, state: RunState) -> Iterator[Row]:
        wanted = [(c, k.op, k.expr) for c in self._required for k in ctx.constraints.get(c, ())
                  if k.op in (Op.EQUALS, Op.LIKE)]
        equals = {c: {k.expr for k in ctx.constraints.get(c, ()) if k.op == Op.EQUALS} for c in self._index}
        equals = {c: v for c, v in equals.items() if v}
        for row in self._rows:
            if self._required and not any(_matches(row.get(c), op, e, c) for c, op, e in wanted):
                continue
            if any(wire_text(row.get(c)) not in values for c, values in equals.items()):
                continue
            yield row


class EventRows(StoredRows):
    """Rows of an event table with osquery's expiry and the scheduler's time optimisation."""

    def rows(self, ctx: QueryContext, state: RunState) -> Iterator[Row]:
        # osquery/events/eventfactory.cpp: the minimum expiry is 3x the longest interval, rounded up to a minute.
        interval = state.interval or 0
        min_expiry = interval * 3 + (60 - (interval * 3) % 60)
        oldest = state.now - max(state.flags.events_expiry, min_expiry)
        start, stop = 0, None
        times = ctx.constraints.get("time", [])
        if times:  # osquery/events/eventsubscriberplugin.cpp genTable: a time constraint disables the optimisation
            for k in times:
                try:
                    t = int(k.expr)
                except ValueError:
                    continue
                if k.op == Op.EQUALS:
                    start = stop = t
                    break
                if k.op == Op.GREATER_THAN:
                    start = max(start, t + 1)
                elif k.op == Op.GREATER_THAN_OR_EQUALS:
                    start = max(start, t)
        elif state.flags.events_optimize and state.interval:
            start = state.now - state.interval  # only events since the query's previous run
        for row in super().rows(ctx, state):
            try:
                t = int(wire_text(row.get("time")) or 0)
            except ValueError:
                continue
            if t < oldest or t < start or (stop is not None and t > stop):
                continue
            yield row


class LiveTable:
    """One of our tables running its real `generate` (this host, or a root it was built for)."""

    def __init__(self, facts: TableFacts, generate: Callable[[QueryContext], Iterable[Row]]) -> None:
        self.facts = facts
        self._generate = generate

    def rows(self, ctx: QueryContext, state: RunState) -> Iterable[Row]:
        return self._generate(ctx)


# --- the virtual tables ----------------------------------------------------------------------


def effective_options(facts: TableFacts, extensions_default_index: bool) -> list[int]:
    """Column options as osquery holds them: an extension column registered with 0 becomes INDEX."""
    return [c.options or (INDEX if facts.ours and extensions_default_index else 0) for c in facts.columns]


def declaration(facts: TableFacts, options: list[int]) -> str:
    """The CREATE TABLE osquery declares for a virtual table (osquery/core/tables.cpp columnDefinition)."""
    parts: list[str] = []
    pkeys: list[str] = []
    indexed = without_rowid = False
    for c, opts in zip(facts.columns, options, strict=True):
        parts.append(f"`{c.name}` {c.type}" + (" HIDDEN" if opts & HIDDEN else ""))
        indexed = indexed or bool(opts & INDEX)
        if opts & (INDEX | ADDITIONAL):
            pkeys.append(c.name)
            without_rowid = True
    if not indexed and without_rowid:
        pkeys = [c.name for c in facts.columns]
    body = ", ".join(parts) + (", PRIMARY KEY (" + ", ".join(f"`{k}`" for k in pkeys) + ")" if pkeys else "")
    return f"CREATE TABLE x({body})" + (" WITHOUT ROWID" if without_rowid and not facts.ours else "")


class _Cursor:
    def __init__(self, table: _Table) -> None:
        self.table = table
        self.rows: list[Row] = []
        self.pos = 0

    def Filter(self, indexnum: int, indexname: str | None, constraintargs: tuple[Any, ...] | None) -> None:
        t = self.table
        state = t.engine.state
        plan = t.plans.get(indexnum, ([], None))
        constraints, cols_used = plan
        built: dict[str, list[tuple[int, str]]] = {}
        for (name, op), arg in zip(constraints, constraintargs or (), strict=False):
            if op == Op.IN:  # an OPTIMIZED IN list handed over whole; empty values are kept
                for v in sorted(arg, key=str) if isinstance(arg, set | frozenset) else (arg,):
                    text = sqlite_text(v)
                    if text is not None:
                        built.setdefault(name, []).append((Op.EQUALS, text))
                continue
            text = sqlite_text(arg)
            if text is None or text == "":  # xFilter drops NULL and empty expressions
                continue
            built.setdefault(name, []).append((op, text))
        required = [c for c, o in zip(t.facts.columns, t.options, strict=True) if o & REQUIRED]
        if required and not any(t.options_by_name[n] & REQUIRED for n, _ in constraints):
            raise apsw.ConstraintError(f"Table {t.facts.name} was queried without a required column in the WHERE clause")
        ctx = QueryContext.build(built, cols_used)
        if required and not any(ctx.get(c.name, Op.EQUALS, Op.LIKE) for c in required):
            state.notes.append(f"{t.facts.name} was called with no usable value for "
                               f"{' or '.join(c.name for c in required)}; it returns no rows")
        state.calls[t.facts.name] += 1
        if t.facts.event_based and state.flags.disable_events:
            self.rows = []
        else:
            try:
                self.rows = list(t.source.rows(ctx, state))
            except TableUsageError as exc:
                raise apsw.ConstraintError(str(exc)) from exc
        self.pos = 0

    def Eof(self) -> bool:
        return self.pos >= len(self.rows)

    def Rowid(self) -> int:
        return self.pos

    def Column(self, number: int) -> Any:
        if number == -1:
            return self.pos
        c = self.table.facts.columns[number]
        return column_value(wire_text(self.rows[self.pos].get(c.name)), c.type)

    def Next(self) -> None:
        self.pos += 1

    def Close(self) -> None:
        self.rows = []


class _Table:
    def __init__(self, engine: Engine, source: Source) -> None:
        self.engine = engine
        self.source = source
        self.facts = source.facts
        self.options = effective_options(self.facts, engine.flags.extensions_default_index)
        self.options_by_name = {c.name: o for c, o in zip(self.facts.columns, self.options, strict=True)}
        self.plans: dict[int, tuple[list[tuple[str, int]], list[str]]] = {}

    def BestIndexObject(self, info: apsw.IndexInfo) -> bool:
        """osquery/sql/virtual_table.cpp xBestIndex, rule for rule."""
        columns = self.facts.columns
        cost = MAX_INDEX_COST
        constraints: list[tuple[str, int]] = []
        has_required_constraints = False
        for i in range(info.nConstraint):
            if not info.get_aConstraint_usable(i):
                continue
            col = info.get_aConstraint_iColumn(i)
            if col < 0 or col >= len(columns):
                continue
            op = info.get_aConstraint_op(i)
            if columns[col].type == "TEXT" and op in _ORDERING_OPS:
                cost += 10
                continue
            opts = self.options[col]
            if opts & REQUIRED:
                has_required_constraints = True
                cost = 1
            elif opts & (INDEX | ADDITIONAL):
                cost = 1
            else:
                continue
            if opts & OPTIMIZED and info.get_aConstraintUsage_in(i):
                info.set_aConstraintUsage_in(i, True)
                op = Op.IN
            constraints.append((columns[col].name, op))
            info.set_aConstraintUsage_argvIndex(i, len(constraints))
        used = info.colUsed or set()
        cols_used = [c.name for i, c in enumerate(columns) if min(i, 63) in used]
        has_required_columns = any(self.options[i] & REQUIRED for i in range(len(columns)) if min(i, 63) in used)
        if has_required_columns and not has_required_constraints:
            cost = MAX_INDEX_COST
        idx = self.engine.next_index()
        self.plans[idx] = (constraints, cols_used)
        info.idxNum = idx
        info.idxStr = json.dumps({"table": self.facts.name, "constraints": constraints,
                                  "unconstrained": bool(has_required_columns and not has_required_constraints)})
        info.estimatedCost = cost
        return True

    def Open(self) -> _Cursor:
        return _Cursor(self)

    def Disconnect(self) -> None:
        pass

    Destroy = Disconnect


class _Module:
    def __init__(self, engine: Engine, source: Source) -> None:
        self.engine = engine
        self.source = source

    def Connect(self, connection: apsw.Connection, modulename: str, databasename: str, tablename: str,
                *args: str) -> tuple[str, _Table]:
        vt = _Table(self.engine, self.source)
        return declaration(self.source.facts, vt.options), vt

    Create = Connect


# --- the engine ------------------------------------------------------------------------------


@dataclass(slots=True)
class QueryRun:
    """One query's result, with what it cost inside osquery."""

    columns: list[str]
    rows: list[dict[str, Any]]
    calls: dict[str, int]
    notes: list[str]

    @property
    def extension_calls(self) -> int:
        """Calls osquery would make to dyldwatch's extension (each one a Thrift round trip)."""
        from .facts import OUR_TABLES

        return sum(n for t, n in self.calls.items() if t in OUR_TABLES)


class Engine:
    """A session whose tables and functions behave as inside osqueryd (see the module docstring)."""

    def __init__(self, sources: Mapping[str, Source], *, now: int | None = None, flags: Flags | None = None) -> None:
        import time

        self.flags = flags or Flags()
        self.now = int(now if now is not None else time.time())
        self.conn = apsw.Connection(":memory:")
        register_functions(self.conn)
        self.sources = dict(sources)
        self._index = 0
        self.state = RunState(self.now, None, self.flags)
        for name, source in self.sources.items():
            self.conn.createmodule(name, _Module(self, source), use_bestindex_object=True, eponymous=True,
                                   eponymous_only=True, read_only=True)

    def next_index(self) -> int:
        self._index += 1
        return self._index

    def iterate(self, sql: str, *, interval: int | None = None) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
        """Column names and a row iterator for one statement, run as a scheduled query with this
        interval (None: an ad-hoc query, which osquery never optimises for events)."""
        flags = self.flags if interval else replace(self.flags, events_optimize=False)
        self.state = RunState(self.now, interval, flags)
        cursor = self.conn.cursor()
        rows = cursor.execute(sql)
        try:
            names = [d[0] for d in cursor.getdescription()]
        except apsw.ExecutionCompleteError:  # no rows: the statement finished at once
            names = []
        return names, rows

    def run(self, sql: str, *, interval: int | None = None) -> QueryRun:
        """Execute one statement to the end, with what it cost inside osquery."""
        names, it = self.iterate(sql, interval=interval)
        rows = [dict(zip(names, r, strict=True)) for r in it]
        s = self.state
        return QueryRun(names, rows, dict(s.calls), list(dict.fromkeys(s.notes)))


def sqlite_version() -> str:
    return apsw.sqlitelibversion()

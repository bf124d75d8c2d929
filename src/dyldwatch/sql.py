"""A local SQL session over our tables, for analysts and CI without osquery.

Each Table becomes an eponymous SQLite virtual table (apsw). Constraints are pushed down the way
osquery pushes them: every usable constraint reaches `generate` in a QueryContext (IN lists as
all their values at once), SQLite re-checks them on the returned rows, and a table whose required
columns are unconstrained costs so much that the planner feeds it from a join when it can.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import apsw

from .tables import all_tables
from .tables.base import ColumnType, Op, QueryContext, Row, Table, TableUsageError

log = logging.getLogger(__name__)

_COST_INDEXED = 10.0
_COST_PATTERN = 1_000.0
_COST_SCAN = 1_000_000.0
_COST_MISSING_REQUIRED = 1e15


def _convert(value: Any, ctype: ColumnType) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if ctype in (ColumnType.INTEGER, ColumnType.BIGINT):
        if isinstance(value, int):
            return value
        try:
            return int(value)
        except (TypeError, ValueError):
            return str(value)
    if ctype is ColumnType.DOUBLE:
        try:
            return float(value)
        except (TypeError, ValueError):
            return str(value)
    return value if isinstance(value, str) else str(value)


class _Cursor:
    def __init__(self, vt: _VirtualTable) -> None:
        self.vt = vt
        self.rows: Iterator[Row] = iter(())
        self.row: Row | None = None
        self.rowid = 0

    def Filter(self, indexnum: int, indexname: str | None, constraintargs: tuple[Any, ...] | None) -> None:
        plan: list[list[Any]] = json.loads(indexname) if indexname else []
        built: dict[str, list[tuple[int, Any]]] = {}
        for (column, op), arg in zip(plan, constraintargs or (), strict=False):
            if isinstance(arg, set | frozenset):  # an IN list handed over whole
                built.setdefault(column, []).extend((Op.EQUALS, v) for v in sorted(arg, key=str))
            else:
                built.setdefault(column, []).append((op, arg))
        ctx = QueryContext.build(built, self.vt.cols_used)
        self.vt.check_required(ctx)
        self.rows = iter(self.vt.instance.generate(ctx))
        self.rowid = 0
        self.Next()

    def Eof(self) -> bool:
        return self.row is None

    def Rowid(self) -> int:
        return self.rowid

    def Column(self, number: int) -> Any:
        if number == -1:
            return self.rowid
        col = self.vt.table.columns[number]
        assert self.row is not None
        return _convert(self.row.get(col.name), col.type)

    def Next(self) -> None:
        self.row = next(self.rows, None)
        self.rowid += 1

    def Close(self) -> None:
        self.rows = iter(())


class _VirtualTable:
    def __init__(self, table: type[Table]) -> None:
        self.table = table
        self.instance = table()
        self.cols_used: list[str] | None = None
        self.required = [c.name for c in table.columns if c.required]

    def check_required(self, ctx: QueryContext) -> None:
        if self.required and not any(ctx.has(c) for c in self.required):
            raise TableUsageError(
                f"table {self.table.name} needs a constraint on {' or '.join(self.required)} "
                f"(for example: WHERE {self.required[0]} LIKE '/usr/lib/%')"
            )

    def BestIndexObject(self, info: apsw.IndexInfo) -> bool:
        plan: list[list[Any]] = []
        names = self.table.column_names()
        required_hit = not self.required
        indexed_hit = False
        pattern_hit = False
        for i in range(info.nConstraint):
            if not info.get_aConstraint_usable(i):
                continue
            col = info.get_aConstraint_iColumn(i)
            if col < 0 or col >= len(names):
                continue
            op = info.get_aConstraint_op(i)
            if op not in (2, 4, 8, 16, 32, 65, 66, 67, 68):
                continue
            column = self.table.columns[col]
            plan.append([column.name, op])
            info.set_aConstraintUsage_argvIndex(i, len(plan))
            if op == Op.EQUALS and info.get_aConstraintUsage_in(i):
                info.set_aConstraintUsage_in(i, True)
            if column.required or column.index:
                if op == Op.EQUALS:
                    indexed_hit = True
                elif op in (Op.LIKE, Op.GLOB):
                    pattern_hit = True
                if column.required and op in (Op.EQUALS, Op.LIKE):
                    required_hit = True
        if not required_hit:
            info.estimatedCost = _COST_MISSING_REQUIRED
        elif indexed_hit:
            info.estimatedCost = _COST_INDEXED
        elif pattern_hit:
            info.estimatedCost = _COST_PATTERN
        else:
            info.estimatedCost = _COST_SCAN
        info.idxStr = json.dumps(plan)
        try:
            used = info.colUsed
            self.cols_used = [names[i] for i in sorted(used) if i < len(names)] if used is not None else None
        except (AttributeError, TypeError):
            self.cols_used = None
        return True

    def Open(self) -> _Cursor:
        return _Cursor(self)

    def Disconnect(self) -> None:
        pass

    Destroy = Disconnect


class _Module:
    def __init__(self, table: type[Table]) -> None:
        self.table = table

    def Connect(self, connection: apsw.Connection, modulename: str, databasename: str, tablename: str,
                *args: str) -> tuple[str, _VirtualTable]:
        cols = ", ".join(f'"{c.name}" {c.type}' for c in self.table.columns)
        return f"CREATE TABLE x({cols})", _VirtualTable(self.table)

    Create = Connect


def register_tables(conn: apsw.Connection, tables: Iterable[type[Table]] | None = None) -> list[str]:
    """Make each table queryable by name on `conn` (eponymous virtual tables)."""
    names = []
    for table in tables if tables is not None else all_tables():
        conn.createmodule(table.name, _Module(table), use_bestindex_object=True, eponymous=True,
                          eponymous_only=True, read_only=True)
        names.append(table.name)
    return names


def connect(database: str | None = None, *, live_tables: bool = True, tables: Iterable[type[Table]] | None = None) -> apsw.Connection:
    """A session: the given sample database (read-only) or memory, plus our live tables.

    With a database whose own tables carry our table names (a snapshot), the stored rows win: the
    database is the host moment being examined, so the live tables are not registered.
    """
    if database:
        conn = apsw.Connection(database, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    else:
        conn = apsw.Connection(":memory:")
    try:
        from .osquery_sql import register_functions  # osquery's SQL functions, when present
    except ImportError:
        register_functions = None
    if register_functions is not None:
        register_functions(conn)
    if live_tables:
        stored = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type IN ('table','view')")}
        register_tables(conn, [t for t in (tables if tables is not None else all_tables()) if t.name not in stored])
    return conn


def run_query(conn: apsw.Connection, sql: str) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    """Column names and a row iterator for one statement."""
    cursor = conn.cursor()
    rows = cursor.execute(sql)
    try:
        names = [d[0] for d in cursor.getdescription()]
    except apsw.ExecutionCompleteError:
        names = []
    return names, rows

"""The table contract: declarative columns, osquery's query context, and the Table base class.

A table declaration is the single source for osquery registration (route `op` flags), the local SQL
session, the sample-database DDL and the generated docs, so everything a runtime needs is data here.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag, StrEnum
from typing import Any, ClassVar

from ..host.paths import PathConstraints

log = logging.getLogger(__name__)

Row = dict[str, Any]


class ColumnType(StrEnum):
    """osquery's column affinities (the strings osquery expects in a column route)."""

    TEXT = "TEXT"
    INTEGER = "INTEGER"
    BIGINT = "BIGINT"
    DOUBLE = "DOUBLE"


class ColumnOptions(IntFlag):
    """osquery's ColumnOptions bits, sent as the route `op` so osquery enforces them itself."""

    DEFAULT = 0
    INDEX = 1
    REQUIRED = 2
    ADDITIONAL = 4
    OPTIMIZED = 8
    HIDDEN = 16


TEXT, INTEGER, BIGINT, DOUBLE = ColumnType.TEXT, ColumnType.INTEGER, ColumnType.BIGINT, ColumnType.DOUBLE
INDEX, REQUIRED, ADDITIONAL, OPTIMIZED, HIDDEN = (
    ColumnOptions.INDEX,
    ColumnOptions.REQUIRED,
    ColumnOptions.ADDITIONAL,
    ColumnOptions.OPTIMIZED,
    ColumnOptions.HIDDEN,
)
#: Options of a column that is not a key. osquery treats an extension column registered with 0
#: as INDEX (--extensions_default_index, osquery/sql/virtual_table.cpp), so every constraint on it
#: would be pushed to us and a constant filter (`system_path = 0`) would cost as little as the
#: join key and steer the plan. OPTIMIZED alone is neither INDEX nor REQUIRED: osquery leaves such
#: constraints to SQLite.
NOT_A_KEY = ColumnOptions.OPTIMIZED
#: A path key, as osquery's own `file.path` (index, required, IN lists whole).
PATH_KEY = REQUIRED | INDEX | OPTIMIZED
#: A directory key, as osquery's own `file.directory`.
DIRECTORY_KEY = REQUIRED | OPTIMIZED
#: A pid key of a table that can also list every process.
PID_KEY = INDEX | OPTIMIZED


@dataclass(frozen=True, slots=True)
class Column:
    """One declared column: name, osquery type, what it means, and osquery option flags."""

    name: str
    type: ColumnType
    description: str
    options: ColumnOptions = NOT_A_KEY

    @property
    def required(self) -> bool:
        return bool(self.options & ColumnOptions.REQUIRED)

    @property
    def index(self) -> bool:
        return bool(self.options & ColumnOptions.INDEX)

    @property
    def key(self) -> bool:
        """Whether osquery hands constraints on this column to the table."""
        return bool(self.options & (ColumnOptions.INDEX | ColumnOptions.REQUIRED | ColumnOptions.ADDITIONAL))

    @property
    def hidden(self) -> bool:
        return bool(self.options & ColumnOptions.HIDDEN)

    def route(self) -> dict[str, str]:
        """The registry route osquery reads for this column (all values are strings on the wire)."""
        return {"id": "column", "name": self.name, "type": str(self.type), "op": str(int(self.options))}


class Op(IntEnum):
    """SQLite index-constraint operators as osquery forwards them in the query context."""

    EQUALS = 2
    IN = 3
    GREATER_THAN = 4
    LESS_THAN_OR_EQUALS = 8
    LESS_THAN = 16
    GREATER_THAN_OR_EQUALS = 32
    MATCH = 64
    LIKE = 65
    GLOB = 66
    REGEXP = 67
    NE = 68
    ISNOT = 69
    ISNOTNULL = 70
    ISNULL = 71
    IS = 72


@dataclass(frozen=True, slots=True)
class Constraint:
    op: int
    expr: str


class ContextError(ValueError):
    """The query context JSON is not what osquery sends."""


@dataclass(slots=True)
class QueryContext:
    """osquery's query context: constraints per column and the columns the query uses.

    Tables use the constraints they can (to bound work) and leave the rest to SQLite, which
    re-checks every constraint on the rows returned.
    """

    constraints: dict[str, list[Constraint]] = field(default_factory=dict)
    cols_used: frozenset[str] | None = None

    @classmethod
    def from_json(cls, text: str | bytes | Mapping[str, Any] | None) -> QueryContext:
        """Parse the context osquery sends with `generate` (JSON text, or already-decoded)."""
        if text is None or text == "" or text == b"":
            return cls()
        try:
            doc = json.loads(text) if isinstance(text, str | bytes) else dict(text)
        except (ValueError, TypeError) as exc:
            raise ContextError(f"query context is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ContextError("query context must be a JSON object")
        out: dict[str, list[Constraint]] = {}
        raw = doc.get("constraints") or []
        if not isinstance(raw, list):
            raise ContextError("query context 'constraints' must be a list")
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ContextError(f"malformed constraint entry: {item!r}")
            entries = item.get("list") or []  # osquery sends "" when a column has no constraint
            if not isinstance(entries, list):
                raise ContextError(f"constraint list for {item['name']!r} must be a list")
            bucket = out.setdefault(item["name"], [])
            for entry in entries:
                if not isinstance(entry, dict) or "op" not in entry:
                    raise ContextError(f"malformed constraint for {item['name']!r}: {entry!r}")
                try:
                    op = int(entry["op"])
                except (TypeError, ValueError) as exc:
                    raise ContextError(f"constraint op for {item['name']!r} is not a number") from exc
                expr = entry.get("expr", "")
                if op == Op.IN and isinstance(expr, list):
                    bucket.extend(Constraint(Op.EQUALS, str(v)) for v in expr)
                else:
                    bucket.append(Constraint(op, "" if expr is None else str(expr)))
        used = doc.get("colsUsed")
        cols = frozenset(str(c) for c in used) if isinstance(used, list) else None
        return cls(out, cols)

    @classmethod
    def build(
        cls, constraints: Mapping[str, Iterable[tuple[int, Any]]] | None = None, cols_used: Iterable[str] | None = None
    ) -> QueryContext:
        """Construct a context in code (the local SQL session and tests)."""
        out = {name: [Constraint(int(op), str(expr)) for op, expr in items] for name, items in (constraints or {}).items()}
        return cls({k: v for k, v in out.items() if v}, frozenset(cols_used) if cols_used is not None else None)

    def to_json(self) -> str:
        """Serialise exactly as osquery does (used by the test harness and tools)."""
        cons = [
            {"name": name, "list": [{"op": c.op, "expr": c.expr} for c in items], "affinity": "TEXT"}
            for name, items in self.constraints.items()
        ]
        doc: dict[str, Any] = {"constraints": cons}
        if self.cols_used is not None:
            doc["colsUsed"] = sorted(self.cols_used)
        return json.dumps(doc)

    def get(self, column: str, *ops: int) -> list[str]:
        """Expressions of the constraints on `column` with one of `ops` (all ops when none given)."""
        return [c.expr for c in self.constraints.get(column, ()) if not ops or c.op in ops]

    def equals(self, column: str) -> list[str]:
        """Values the column must equal (`=` and each member of `IN`), de-duplicated, in order."""
        return list(dict.fromkeys(self.get(column, Op.EQUALS, Op.IN)))

    def like(self, column: str) -> list[str]:
        return list(dict.fromkeys(self.get(column, Op.LIKE)))

    def has(self, column: str) -> bool:
        return bool(self.constraints.get(column))

    def uses(self, column: str) -> bool:
        """Whether the query reads this column (True when osquery did not say)."""
        return self.cols_used is None or column in self.cols_used

    def equals_int(self, column: str) -> list[int] | None:
        """Integer `=`/`IN` values, or None when the column is unconstrained.

        A value that is not an integer can match nothing, so it is dropped rather than raised.
        """
        values = self.equals(column)
        if not values:
            return None
        out: list[int] = []
        for v in values:
            try:
                out.append(int(v, 0) if isinstance(v, str) else int(v))
            except ValueError:
                continue
        return out


class Table(ABC):
    """A virtual table: declaration plus a row generator.

    Subclasses set the ClassVars and implement `generate`. `generate` must not raise for bad data
    in a file or process; it yields a row with `error` instead. It may raise `TableUsageError`
    for a query it cannot answer (missing required constraint), which runtimes report to the user.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    platforms: ClassVar[tuple[str, ...]] = ("darwin", "linux")
    columns: ClassVar[tuple[Column, ...]]
    examples: ClassVar[tuple[str, ...]] = ()
    #: Columns one of which must be given a value (`=`, IN, LIKE) for the table to produce rows, as
    #: osquery's `file` table needs a path or directory; empty for tables that can list everything.
    row_keys: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def generate(self, ctx: QueryContext) -> Iterator[Row]:
        """Yield rows (dicts keyed by column name; missing keys are NULL)."""

    @classmethod
    def column_names(cls) -> list[str]:
        return [c.name for c in cls.columns]

    @classmethod
    def column(cls, name: str) -> Column:
        for c in cls.columns:
            if c.name == name:
                return c
        raise KeyError(f"{cls.name} has no column {name!r}")

    @classmethod
    def routes(cls) -> list[dict[str, str]]:
        return [c.route() for c in cls.columns]

    @classmethod
    def ddl(cls, name: str | None = None) -> str:
        """CREATE TABLE text for a plain SQLite table with this schema (sample databases, lint)."""
        cols = ", ".join(f'"{c.name}" {c.type}' for c in cls.columns)
        return f'CREATE TABLE "{name or cls.name}" ({cols})'


class TableUsageError(Exception):
    """The query cannot be answered as asked (e.g. a required constraint is missing)."""


def error_row(path: str, message: str, **extra: Any) -> Row:
    """The row a file-reading table yields when the file cannot be read or parsed."""
    import os

    return {"path": path, "directory": os.path.dirname(path), "error": message, **extra}


def path_constraints(ctx: QueryContext, *, path_column: str = "path",
                     directory_column: str = "directory") -> PathConstraints:
    """The query's path and directory constraints as plain lists for host.paths.expand_paths."""
    return PathConstraints(tuple(ctx.equals(path_column)), tuple(ctx.like(path_column)),
                           tuple(ctx.equals(directory_column)), tuple(ctx.get(directory_column, Op.LIKE)))


def has_path_constraint(ctx: QueryContext, *, path_column: str = "path", directory_column: str = "directory") -> bool:
    """True when the query names files (osquery's `file` table rule: no constraint, no rows)."""
    return path_constraints(ctx, path_column=path_column, directory_column=directory_column).any

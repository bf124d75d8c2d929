"""Which tables and columns exist where, with the column options osquery plans with.

Lint, the sample databases, validate and the osquery-faithful engine all need one answer to "does
`launchd.program` exist on linux, and may a constraint on `file.path` reach the table?". Native
facts come from osquery's specs, shipped in `dyldwatch/data/osquery_schema.json` (or
`$DYLDWATCH_SCHEMA`); our tables come from their declarations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .. import resources

PLATFORMS = ("darwin", "linux")

# osquery/core/sql/column.h: ColumnOptions bits.
INDEX, REQUIRED, ADDITIONAL, OPTIMIZED, HIDDEN = 1, 2, 4, 8, 16

#: Spec type names -> the type names osquery declares its virtual tables with
#: (osquery/core/tables.cpp kColumnTypeNames); the declared type sets SQLite's column affinity.
_TYPES = {"text": "TEXT", "integer": "INTEGER", "bigint": "BIGINT", "unsigned_bigint": "UNSIGNED BIGINT",
          "double": "DOUBLE", "datetime": "TEXT", "blob": "BLOB"}
_OPTION_KEYS = (("index", INDEX), ("required", REQUIRED), ("additional", ADDITIONAL),
                ("optimized", OPTIMIZED), ("hidden", HIDDEN))

#: Our tables, by name (the declarations in dyldwatch.tables are the source of their columns).
OUR_TABLES = ("macho_load_commands", "macho_info", "dylib_provenance", "rwx_regions", "process_images",
              "applescript_info")


@dataclass(frozen=True, slots=True)
class ColumnFacts:
    """One column: name, osquery type name, and osquery's ColumnOptions bits."""

    name: str
    type: str
    options: int = 0


@dataclass(frozen=True, slots=True)
class TableFacts:
    """One table as lint, the sample databases and the engine see it."""

    name: str
    platforms: tuple[str, ...]
    columns: tuple[ColumnFacts, ...]
    ours: bool = False
    event_based: bool = False

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.options & REQUIRED)

    def ddl(self) -> str:
        """Plain storage DDL (sample databases keep every table's rows in ordinary tables)."""
        cols = ", ".join(f'"{c.name}" {c.type}' for c in self.columns)
        return f'CREATE TABLE IF NOT EXISTS "{self.name}" ({cols});'


def schema_path() -> Path:
    """Where the native facts live (see resources.schema_path: `$DYLDWATCH_SCHEMA`, else package data)."""
    return resources.schema_path()


def _options(column: dict[str, object]) -> int:
    return sum(bit for key, bit in _OPTION_KEYS if column.get(key))


@lru_cache(maxsize=4)
def _native(path: str) -> dict[str, TableFacts]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"osquery schema facts not readable at {path}: {exc} "
                                "(set DYLDWATCH_SCHEMA to a schema.json path)") from exc
    out: dict[str, TableFacts] = {}
    for name, t in doc["tables"].items():
        cols = tuple(ColumnFacts(c["name"], _TYPES.get(str(c.get("type", "text")).lower(), "TEXT"), _options(c))
                     for c in t["columns"])
        events = bool((t.get("attributes") or {}).get("event_subscriber"))
        out[name] = TableFacts(name, tuple(t.get("platforms") or ()), cols, False, events)
    return out


def native_tables() -> dict[str, TableFacts]:
    return _native(str(schema_path()))


def our_facts(name: str) -> TableFacts:
    """Facts of one of our tables, from its declaration (options exactly as registered with osquery)."""
    from ..tables import load_table

    table = load_table(name)
    cols = tuple(ColumnFacts(c.name, str(c.type), int(c.options)) for c in table.columns)
    return TableFacts(name, tuple(table.platforms), cols, True)


@lru_cache(maxsize=1)
def our_tables() -> dict[str, TableFacts]:
    return {name: our_facts(name) for name in OUR_TABLES}


def all_tables() -> dict[str, TableFacts]:
    """Native and ours; ours win on a name clash (none today)."""
    return {**native_tables(), **our_tables()}


def expand_platforms(spec: str | None) -> tuple[str, ...]:
    """osquery pack platform strings (`darwin`, `linux`, `posix`, `all`, comma lists) as our platforms."""
    out: list[str] = []
    for part in (spec or "all").replace(" ", "").split(","):
        if part in ("posix", "all", "any", ""):
            out.extend(PLATFORMS)
        elif part in PLATFORMS:
            out.append(part)
        else:
            raise ValueError(f"unsupported platform {part!r} (darwin, linux, posix)")
    return tuple(dict.fromkeys(out))


def tables_for(platform: str | None) -> dict[str, TableFacts]:
    """Tables that exist on `platform` (all of them for None)."""
    return {n: t for n, t in all_tables().items() if platform is None or platform in t.platforms}


def columns_of(table: str, platform: str | None = None) -> list[str] | None:
    """Column names of `table` on `platform`, or None when it does not exist there."""
    t = tables_for(platform).get(table)
    return t.column_names() if t else None


def ddl_script(platform: str | None = None, only: set[str] | None = None) -> str:
    """`CREATE TABLE IF NOT EXISTS` for every table on `platform` (or just the named ones)."""
    return "\n".join(t.ddl() for n, t in sorted(tables_for(platform).items()) if only is None or n in only)

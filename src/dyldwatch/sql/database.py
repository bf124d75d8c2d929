"""The database format of a recorded host moment (a scenario's sample database or a snapshot).

Every table of every platform is a plain SQLite table holding the rows osquery (or our tables)
produced; `dyldwatch_scenario` says which host moment it is (name, platform, now, digests).
The engine serves these rows with each table's own semantics (session.database_engine).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import apsw

from .facts import ddl_script

#: Where sample and snapshot databases record which host moment they hold.
META_TABLE = "dyldwatch_scenario"
Row = dict[str, Any]


def sqlite_value(value: Any) -> Any:
    """A YAML value as a SQLite value: booleans 0/1, lists and mappings as compact JSON text."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return value


def schema_digest() -> str:
    """Digest of every table's DDL: a database built before a table declaration changed is stale."""
    return hashlib.sha256(ddl_script(None).encode()).hexdigest()


def time_row(now: int) -> Row:
    import datetime as dt

    t = dt.datetime.fromtimestamp(now, dt.UTC)
    return {"weekday": t.strftime("%A"), "year": t.year, "month": t.month, "day": t.day, "hour": t.hour,
            "minutes": t.minute, "seconds": t.second, "timezone": "UTC", "local_timezone": "UTC",
            "unix_time": now, "timestamp": t.strftime("%a %b %d %H:%M:%S %Y UTC"),
            "datetime": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "iso_8601": t.strftime("%Y-%m-%dT%H:%M:%SZ")}


def insert_rows(conn: apsw.Connection, table: str, rows: Iterable[Row], columns: Sequence[str] | None = None) -> int:
    """Insert rows: every declared column named (NULL when missing), or each row's own keys."""
    n = 0
    for row in rows:
        cols = list(columns) if columns is not None else list(row)
        sql = (f'INSERT INTO "{table}" ({", ".join(chr(34) + c + chr(34) for c in cols)}) '
               f'VALUES ({", ".join("?" * len(cols))})')
        conn.execute(sql, [sqlite_value(row.get(c)) for c in cols])
        n += 1
    return n


def database_meta(db: str | Path) -> dict[str, Any]:
    """The scenario a database was built from (name, platform, now, digests)."""
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{META_TABLE}")')]
        if not cols:
            raise ValueError(f"{db}: not a dyldwatch database (no {META_TABLE} table)")
        rows = list(conn.execute(f'SELECT * FROM "{META_TABLE}"'))
    finally:
        conn.close()
    if not rows:
        raise ValueError(f"{db}: empty {META_TABLE} table")
    meta = dict(zip(cols, rows[0], strict=True))
    meta["path"] = str(db)
    return meta


def table_rows(conn: apsw.Connection, table: str) -> list[Row]:
    """Every stored row of a table as a dict; NULL columns are left out (a missing key is NULL)."""
    cur = conn.cursor()
    it = cur.execute(f'SELECT * FROM "{table}"')
    try:
        names = [d[0] for d in cur.getdescription()]
    except apsw.ExecutionCompleteError:  # an empty table: the statement finished at once
        return []
    return [{k: v for k, v in zip(names, r, strict=True) if v is not None} for r in it]

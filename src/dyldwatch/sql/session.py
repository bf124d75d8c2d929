"""Engines over a recorded host moment (a scenario or snapshot database) or over this host.

`validate`, `lint`, `query` and `hunt` all run through `Engine`, so what an analyst or CI sees
locally is what osqueryd will do with the same SQL.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import apsw

from .database import database_meta, table_rows
from .engine import Engine, EventRows, Flags, LiveTable, Source, StoredRows
from .facts import PLATFORMS, TableFacts, tables_for


def host_platform() -> str:
    return "darwin" if sys.platform == "darwin" else "linux"


def stored_source(facts: TableFacts, rows: list[dict[str, Any]]) -> Source:
    """Recorded rows served with the semantics of the table that produced them."""
    if facts.event_based:
        return EventRows(facts, rows)
    if facts.ours:
        from ..tables import load_table

        return StoredRows(facts, rows, load_table(facts.name).row_keys)
    return StoredRows(facts, rows)


def live_source(facts: TableFacts) -> Source:
    from ..tables import load_table

    instance = load_table(facts.name)()
    return LiveTable(facts, instance.generate)


def database_engine(db: str | Path, *, platform: str | None = None, flags: Flags | None = None,
                    live_ours: bool = False) -> Engine:
    """An engine over a recorded host moment: every table of its platform serves the stored rows."""
    meta = database_meta(db)
    plat = platform or meta.get("platform") or host_platform()
    if plat not in PLATFORMS:
        raise ValueError(f"{db}: unknown platform {plat!r}")
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        stored = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        sources: dict[str, Source] = {}
        for name, facts in tables_for(plat).items():
            if facts.ours and live_ours:
                sources[name] = live_source(facts)
                continue
            sources[name] = stored_source(facts, table_rows(conn, name) if name in stored else [])
    finally:
        conn.close()
    return Engine(sources, now=meta.get("now"), flags=flags)


def native_sources(platform: str) -> dict[str, Source]:
    """osquery's native tables this host can fill without osquery (Linux: /proc and the file system,
    with osquery's Linux column semantics); none elsewhere."""
    if platform != "linux" or not sys.platform.startswith("linux"):
        return {}
    from ..tables.native import NATIVE_LINUX

    facts = tables_for("linux")
    return {name: LiveTable(facts[name], gen) for name, gen in NATIVE_LINUX.items() if name in facts}


def live_engine(*, platform: str | None = None, flags: Flags | None = None) -> Engine:
    """An engine over this host: our tables run for real, and osquery's native ones where we can fill them."""
    plat = platform or host_platform()
    sources: dict[str, Source] = {n: live_source(f) for n, f in tables_for(plat).items() if f.ours}
    sources.update(native_sources(plat))
    return Engine(sources, flags=flags)


def empty_engine(platform: str, flags: Flags | None = None) -> Engine:
    """Every table of a platform with no rows: for preparing and planning queries (lint)."""
    return Engine({n: stored_source(f, []) for n, f in tables_for(platform).items()}, now=0, flags=flags)

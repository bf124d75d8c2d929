"""A recorded host moment (a snapshot database) as a scenario YAML, so a false positive seen on a
real host becomes a near-miss test in one step: `dyldwatch snapshot --native`, then
`dyldwatch export-scenario`, then an expectation in the packs.

Rows are kept as recorded (literal rows for every table, ours included); with `pids`, process rows
are limited to those processes and file rows to the files they run or map, so the scenario holds
the case and not the whole host. The description asks for the software and its sources: a near
miss must name a real kind of software.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import apsw
import yaml

from .packs.scenarios import load_scenario
from .sql.database import META_TABLE, database_meta, table_rows
from .sql.facts import tables_for

#: Tables whose rows are kept whole (persistence and files the packs look up by path).
_CONTEXT = ("launchd", "crontab", "file", "plist")
_SKIP = ("time", META_TABLE, "dyldwatch_snapshot")


def export_scenario(db: str | Path, name: str, pids: Iterable[int] = (), description: str | None = None) -> str:
    """The scenario YAML text for a snapshot database (checked by the scenario lint before it is returned)."""
    meta = database_meta(db)
    platform = meta["platform"]
    wanted = set(pids)
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        stored = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        facts = tables_for(platform)
        tables = {t: table_rows(conn, t) for t in sorted(stored) if t in facts and t not in _SKIP}
    finally:
        conn.close()
    if wanted:
        for t, rows in tables.items():
            if t not in _CONTEXT and "pid" in facts[t].column_names() and t != "dylib_provenance":
                tables[t] = [r for r in rows if r.get("pid") in wanted]
        paths = {r.get("path") for t in ("processes", "process_images", "process_memory_map")
                 for r in tables.get(t, []) if r.get("pid") in wanted}
        for t in ("macho_info", "macho_load_commands", "dylib_provenance", "applescript_info"):
            if t in tables:
                tables[t] = [r for r in tables[t] if r.get("path") in paths]
    doc = {
        "name": name,
        "platform": platform,
        "description": description or (
            f"Exported from {meta.get('description') or meta.get('name')}"
            + (f" (pids {', '.join(map(str, sorted(wanted)))})" if wanted else "")
            + ". Say what this software is and why it is benign or malicious, and cite sources."),
        "now": int(meta.get("now") or 0),
        "tables": {t: rows for t, rows in tables.items() if rows},
    }
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=200, allow_unicode=True)
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / f"{name}.yaml"
        probe.write_text(text)
        load_scenario(probe)  # PackError with FILE:LINE problems when it does not fit the facts
    return text

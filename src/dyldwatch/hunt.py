"""Run the packs on this host without osquery: our tables and the native tables they read, live.

The engine is the same one `validate` uses (osquery's planner contract, value conversion and
functions), so a finding here is what the scheduled pack would log inside osqueryd. On Linux the
native tables come from /proc and the file system with osquery's Linux column semantics
(tables/native); on macOS only our tables are live, and queries that read native tables are listed
as skipped (run them in `osqueryi --extension`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import apsw

from .packs import Pack, Query
from .sql.engine import Engine
from .sql.session import host_platform, live_engine

SEVERITIES = ("low", "medium", "high")
#: The columns every finding shows first; the rest of a query's output follows in `details`.
FINDING_COLUMNS = ("analytic", "query", "severity", "pid", "process_path", "path", "reason")


@dataclass(slots=True)
class Finding:
    analytic: str
    query: str
    severity: str
    row: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        out = {"analytic": self.analytic, "query": self.query, "severity": self.severity}
        for c in FINDING_COLUMNS[3:]:
            out[c] = self.row.get(c)
        out["details"] = {k: v for k, v in self.row.items() if k not in out}
        return out


@dataclass(slots=True)
class HuntResult:
    findings: list[Finding] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (query, why)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (query, message)

    def at_least(self, severity: str) -> list[Finding]:
        floor = SEVERITIES.index(severity)
        return [f for f in self.findings if f.severity in SEVERITIES and SEVERITIES.index(f.severity) >= floor]


def hunt(packs: Iterable[Pack], sites: Mapping[str, Mapping[str, Any]] | None = None, *,
         engine: Engine | None = None, platform: str | None = None,
         progress: Callable[[str], None] | None = None) -> HuntResult:
    """Every pack query for this platform, run once on the live host."""
    plat = platform or host_platform()
    engine = engine or live_engine(platform=plat)
    available = set(engine.sources)
    result = HuntResult()
    for pack in packs:
        for q in pack.queries:
            if plat not in q.platforms:
                continue
            missing = [t for t in q.tables if t not in available]
            if missing:
                result.skipped.append((q.name, f"needs {', '.join(missing)}, which only osquery provides here"))
                continue
            if progress:
                progress(f"{pack.id} {q.name}")
            try:
                result.findings += _run(engine, pack, q, sites)
            except apsw.Error as exc:  # what osquery would log as a failed query
                result.errors.append((q.name, str(exc)))
    return result


def _run(engine: Engine, pack: Pack, q: Query, sites: Mapping[str, Mapping[str, Any]] | None) -> list[Finding]:
    run = engine.run(pack.render(q, (sites or {}).get(pack.id)), interval=q.interval)
    return [Finding(pack.id, q.name, str(r.get("severity") or "medium"), r) for r in run.rows]

"""Validation: every pack query on every scenario database, executed as osqueryd executes it.

A query that fails inside osquery (an SQL error, a required column left unconstrained) fails
every expectation it takes part in; `low` rows are inventory and count as silence.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from ..sql.database import database_meta
from ..sql.engine import Engine, Flags
from ..sql.session import database_engine
from .model import EVENTS_EXPIRY, Expectation, Pack, Query
from .scenarios import build_all

Row = dict[str, Any]


# --- validation ------------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    """One expectation checked (or one unchecked analytic x scenario cell)."""

    analytic: str
    query: str
    scenario: str
    expected: str
    rows: int
    ok: bool | None
    detail: str = ""
    extension_calls: int = 0
    severities: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"analytic": self.analytic, "query": self.query, "scenario": self.scenario,
                "expected": self.expected, "rows": self.rows,
                "result": "unchecked" if self.ok is None else ("pass" if self.ok else "FAIL"), "detail": self.detail,
                "extension_calls": self.extension_calls, "severities": self.severities}


@dataclass(slots=True)
class QueryOutcome:
    """What one query did on one scenario database inside the engine."""

    rows: list[Row]
    extension_calls: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(slots=True)
class Run:
    """Rows of every query on every database, plus the expectation results."""

    results: list[Result]
    outcomes: dict[tuple[str, str, str], QueryOutcome]  # (pack id, query name, scenario) -> outcome
    scenarios: list[dict[str, Any]]
    packs: list[Pack]

    @property
    def rows(self) -> dict[tuple[str, str, str], list[Row]]:
        return {k: v.rows for k, v in self.outcomes.items()}

    @property
    def ok(self) -> bool:
        return all(r.ok is not False for r in self.results)

    def query_costs(self) -> dict[str, dict[str, Any]]:
        """Per query: extension calls (Thrift round trips inside osquery) summed over the scenarios."""
        out: dict[str, dict[str, Any]] = {}
        for (a, q, _s), o in sorted(self.outcomes.items()):
            cell = out.setdefault(q, {"analytic": a, "extension_calls": 0, "table_calls": {}, "errors": 0})
            cell["extension_calls"] += o.extension_calls
            cell["errors"] += 1 if o.error else 0
            for t, n in o.calls.items():
                cell["table_calls"][t] = cell["table_calls"].get(t, 0) + n
        return out

    def quality(self) -> dict[str, dict[str, int]]:
        """Per analytic: firing expectations met / declared, alerts (medium, high) on scenarios it must
        stay silent on, and low (inventory) rows overall."""
        out: dict[str, dict[str, int]] = {}
        for p in self.packs:
            q = out.setdefault(p.id, {"found": 0, "expected": 0, "benign_alerts": 0, "low_rows": 0})
            for r in self.results:
                if r.analytic != p.id or r.ok is None:
                    continue
                if r.expected.startswith("fires"):
                    q["expected"] += 1
                    q["found"] += 1 if r.ok else 0
                elif r.expected.startswith("silent"):
                    q["benign_alerts"] += sum(n for s, n in r.severities.items() if s != "low")
            q["low_rows"] = sum(1 for (a, _q, _s), o in self.outcomes.items() if a == p.id
                                for row in o.rows if row.get("severity") == "low")
        return out

    def cell(self, analytic: str, scenario: str) -> tuple[int | None, bool | None]:
        """Alert rows (medium, high) an analytic returned on a scenario (None: not applicable) and its verdict."""
        counts = [sum(1 for r in v.rows if r.get("severity") != "low")
                  for (a, _, s), v in self.outcomes.items() if a == analytic and s == scenario]
        verdicts = [r.ok for r in self.results if r.analytic == analytic and r.scenario == scenario]
        total = sum(counts) if counts else None
        if any(v is False for v in verdicts):
            return total, False
        return total, (True if any(v for v in verdicts) else None)


def _applies(q: Query, platform: str) -> bool:
    return platform in q.platforms


def _check(e: Expectation, rows: list[Row], errors: list[str]) -> tuple[bool, str]:
    if errors:
        return False, "fails inside osquery: " + "; ".join(errors)
    if not e.fires:
        alerts = [r for r in rows if str(r.get("severity", "medium")) != "low"]
        return (not alerts, "" if not alerts else
                f"expected silence, got {len(alerts)} alert row(s): {alerts[0].get('reason', '')}")
    if len(rows) < e.min_rows:
        return False, f"expected at least {e.min_rows} row(s), got {len(rows)}"
    if e.match:
        for r in rows:
            if all(str(r.get(k)) == str(v) for k, v in e.match.items()):
                return True, ""
        return False, f"no row has {e.match}"
    return True, ""


def run_queries(packs: list[Pack], meta: dict[str, Any], sites: Mapping[str, Mapping[str, Any]] | None = None,
                flags: Flags | None = None, engine: Engine | None = None) -> dict[tuple[str, str, str], QueryOutcome]:
    """Every applicable query of every pack on one database, executed as osqueryd would."""
    engine = engine or database_engine(meta["path"], flags=flags)
    out: dict[tuple[str, str, str], QueryOutcome] = {}
    for pack in packs:
        for q in pack.queries:
            if not _applies(q, meta["platform"]):
                continue
            sql = pack.render(q, (sites or {}).get(pack.id))
            try:
                run = engine.run(sql, interval=q.interval)
            except apsw.Error as exc:
                out[(pack.id, q.name, meta["name"])] = QueryOutcome([], error=f"{q.name}: {exc}")
                continue
            out[(pack.id, q.name, meta["name"])] = QueryOutcome(run.rows, run.extension_calls, run.calls, run.notes)
    return out


def validate(packs: list[Pack], dbs: Iterable[str | Path], sites: Mapping[str, Mapping[str, Any]] | None = None,
             *, require_all: bool = True, flags: Flags | None = None) -> Run:
    """Run every query on every applicable database through the osquery engine; check every expectation.

    With `require_all`, an expectation whose scenario has no database is a failure (the default set);
    with explicit `--db` paths, such expectations are skipped. A query that fails inside osquery
    (an SQL error, a required column left unconstrained) fails every expectation it takes part in.
    """
    flags = flags or Flags(events_expiry=EVENTS_EXPIRY)  # the flags `build` generates for osqueryd
    metas = [database_meta(db) for db in dbs]
    outcomes: dict[tuple[str, str, str], QueryOutcome] = {}
    for meta in metas:
        outcomes.update(run_queries(packs, meta, sites, flags))
    by_name = {m["name"]: m for m in metas}
    results: list[Result] = []
    for pack in packs:
        declared: set[str] = set()
        for e in pack.expectations:
            declared.add(e.scenario)
            qname = e.query or "*"
            expected = f"fires >= {e.min_rows}" if e.fires else "silent"
            if e.match:
                expected += " " + ", ".join(f"{k}={v}" for k, v in e.match.items())
            if e.scenario not in by_name:
                if require_all:
                    results.append(Result(pack.id, qname, e.scenario, expected, 0, False,
                                          f"{pack.path}:{e.line}: no database for scenario {e.scenario!r}"))
                continue
            mine = [o for (a, qn, s), o in outcomes.items() if a == pack.id and s == e.scenario
                    and (e.query is None or qn == e.query)]
            got = [r for o in mine for r in o.rows]
            errors = [o.error for o in mine if o.error]
            ok, detail = _check(e, got, errors)
            sev: dict[str, int] = {}
            for r in got:
                key = str(r.get("severity") or "unrated")
                sev[key] = sev.get(key, 0) + 1
            results.append(Result(pack.id, qname, e.scenario, expected, len(got), ok,
                                  detail and f"{pack.path}:{e.line}: {detail}",
                                  sum(o.extension_calls for o in mine), sev))
        for meta in metas:
            if meta["name"] not in declared and meta["platform"] in pack.platforms:
                mine = [o for (a, _, s), o in outcomes.items() if a == pack.id and s == meta["name"]]
                results.append(Result(pack.id, "*", meta["name"], "—", sum(len(o.rows) for o in mine), None,
                                      "no expectation declared", sum(o.extension_calls for o in mine)))
    return Run(results, outcomes, metas, packs)


def default_dbs(build_dir: str | Path | None = None) -> list[Path]:
    """Databases to validate by default: freshly built from the scenarios (into `build_dir` or a temp dir)."""
    target = Path(build_dir) if build_dir else Path(tempfile.mkdtemp(prefix="dyldwatch-samples-"))
    return build_all(target)


# --- rendering -------------------------------------------------------------------------------


def matrix(run: Run) -> tuple[list[str], list[list[str]]]:
    """Scenario rows x analytic columns: `fired N ✓`, `silent ✓`, `… ✗`, `·` when not applicable."""
    metas = sorted(run.scenarios, key=lambda m: (m["platform"], m["name"]))
    body: list[list[str]] = []
    for meta in metas:
        line = [meta["name"]]
        for pack in run.packs:
            n, verdict = run.cell(pack.id, meta["name"])
            if n is None:
                line.append("·")
                continue
            low = sum(1 for (a, _, s), o in run.outcomes.items() if a == pack.id and s == meta["name"]
                      for r in o.rows if r.get("severity") == "low")
            text = (f"fired {n}" if n else "silent") + (f" (+{low} low)" if low else "")
            line.append(text + (" ✓" if verdict else " ✗" if verdict is False else ""))
        body.append(line)
    return ["scenario", *(p.id for p in run.packs)], body


def matrix_markdown(run: Run) -> str:
    """The detection matrix as a Markdown table for the README (generated, never typed)."""
    head, body = matrix(run)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    lines += ["", "| analytic | detections found / expected | alerts on benign scenarios | inventory rows (low) |",
              "|---|---|---|---|"]
    lines += [f"| {a} | {q['found']}/{q['expected']} | {q['benign_alerts']} | {q['low_rows']} |"
              for a, q in run.quality().items()]
    legend = ("\n`fired N` / `silent`: alert rows (severity medium or high) the analytic returned on that "
              "scenario database, executed as osqueryd executes it; `+N low`: inventory rows, never alerts; "
              "✓ matches the pack's expectation, ✗ does not; `·` the analytic does not run on that platform.\n")
    return "\n".join(lines) + "\n" + legend

"""Scenario fixtures -> sample SQLite databases, and validation of every pack against them.

A scenario (`sample_dbs/scenarios/NAME.yaml`) is one host moment: rows for osquery's native
tables (columns exactly as in the schema facts) and for ours. `build` turns it into
`sample_dbs/NAME.db` holding every table (empty when the scenario has no rows for it), so a pack
query prepares and runs there exactly as it would in osquery. `validate` runs every query on every
database of its platform and checks the pack's expectations.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from .osquery_sql import register_functions
from .packs import Expectation, Pack, PackError, Problem, Query
from .schema_facts import PLATFORMS, all_tables, ddl_script, project_root, tables_for
from .yamlloc import Located, YamlError, load_located

SAMPLES_DIR = project_root() / "sample_dbs"
SCENARIOS_DIR = SAMPLES_DIR / "scenarios"
META_TABLE = "dyldwatch_scenario"
_SCENARIO_FIELDS = ("name", "platform", "description", "now", "tables", "generate")
_GENERATE_FIELDS = ("table", "fixture", "path")

Row = dict[str, Any]


@dataclass(slots=True)
class Scenario:
    name: str
    platform: str
    description: str
    now: int
    tables: dict[str, list[Row]]
    generate: list[dict[str, str]] = field(default_factory=list)
    path: str = ""
    digest: str = ""
    located: Located | None = None


# --- loading and linting fixtures ------------------------------------------------------------


def _cell(value: Any) -> Any:
    """A YAML value as a SQLite value: booleans 0/1, lists and mappings as compact JSON text."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return value


def lint_scenario_doc(loc: Located) -> list[Problem]:
    """Fields, platform, and every table and column checked against the facts for its platform."""
    f, doc = loc.file, loc.data
    if not isinstance(doc, dict):
        return [Problem(f, 1, "scenario", "a scenario is a mapping")]
    out = [Problem(f, loc.line((k,)), str(k), f"unknown field (known: {', '.join(_SCENARIO_FIELDS)})")
           for k in doc if k not in _SCENARIO_FIELDS]
    for k, t in (("name", str), ("platform", str), ("description", str), ("now", int), ("tables", dict)):
        if k not in doc:
            out.append(Problem(f, 1, k, "missing field"))
        elif not isinstance(doc[k], t) or isinstance(doc[k], bool):
            out.append(Problem(f, loc.line((k,)), k, f"expected {t.__name__}"))
    if out:
        return out
    if doc["name"] != Path(f).stem and Path(f).suffix in (".yaml", ".yml"):
        out.append(Problem(f, loc.line(("name",)), "name", f"must match the file name {Path(f).stem!r}"))
    platform = doc["platform"]
    if platform not in PLATFORMS:
        return out + [Problem(f, loc.line(("platform",)), "platform", f"must be one of {', '.join(PLATFORMS)}")]
    known = tables_for(platform)
    for table, rows in doc["tables"].items():
        where = ("tables", table)
        if table not in known:
            hint = " (exists on another platform)" if table in all_tables() else ""
            out.append(Problem(f, loc.line(where), f"tables.{table}", f"no table {table!r} on {platform}{hint}"))
            continue
        if not isinstance(rows, list):
            out.append(Problem(f, loc.line(where), f"tables.{table}", "expected a list of rows"))
            continue
        columns = set(known[table].column_names())
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                out.append(Problem(f, loc.line((*where, i)), f"tables.{table}.{i}", "a row is a mapping"))
                continue
            for col, value in row.items():
                if col not in columns:
                    out.append(Problem(f, loc.line((*where, i, col)), f"tables.{table}.{i}.{col}",
                                       f"{table} has no column {col!r} on {platform}"))
                elif value is not None and not isinstance(value, str | int | float | bool | list | dict):
                    out.append(Problem(f, loc.line((*where, i, col)), f"tables.{table}.{i}.{col}",
                                       f"unsupported value type {type(value).__name__}"))
    for i, g in enumerate(doc.get("generate") or []):
        if not isinstance(g, dict) or set(g) != set(_GENERATE_FIELDS):
            out.append(Problem(f, loc.line(("generate", i)), f"generate.{i}",
                               f"expected exactly {', '.join(_GENERATE_FIELDS)}"))
        elif g["table"] not in known or not known[g["table"]].ours:
            out.append(Problem(f, loc.line(("generate", i)), f"generate.{i}.table",
                               f"{g['table']!r} is not one of dyldwatch's tables"))
    return out


def load_scenario(path: str | Path) -> Scenario:
    """Load and lint one scenario (PackError with FILE:LINE problems when it does not fit the facts)."""
    try:
        loc = load_located(path)
    except YamlError as exc:
        raise PackError([Problem(exc.file, exc.line, "yaml", exc.message)]) from exc
    problems = lint_scenario_doc(loc)
    if problems:
        raise PackError(problems)
    d = loc.data
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    tables = {t: [{k: _cell(v) for k, v in r.items()} for r in rows] for t, rows in d["tables"].items()}
    return Scenario(d["name"], d["platform"], d["description"], d["now"], tables,
                    list(d.get("generate") or []), str(path), digest, loc)


def scenario_paths(directory: Path = SCENARIOS_DIR) -> list[Path]:
    return sorted(directory.glob("*.yaml"))


def load_scenarios(directory: Path = SCENARIOS_DIR) -> list[Scenario]:
    out: list[Scenario] = []
    problems: list[Problem] = []
    for p in scenario_paths(directory):
        try:
            out.append(load_scenario(p))
        except PackError as exc:
            problems += exc.problems
    if problems:
        raise PackError(problems)
    return out


# --- building databases ----------------------------------------------------------------------

#: Turns a `generate:` entry into rows by running our real table over a fixture file. The lead's
#: generator step (tests/machowriter.py fixtures) replaces this hook; None means "not available".
Generator = Callable[[str, str, str], list[Row]]
GENERATOR: Generator | None = None


def schema_digest() -> str:
    """Digest of every table's DDL: a database built before a table declaration changed is stale."""
    return hashlib.sha256(ddl_script(None).encode()).hexdigest()


def _time_row(now: int) -> Row:
    import datetime as dt

    t = dt.datetime.fromtimestamp(now, dt.UTC)
    return {"weekday": t.strftime("%A"), "year": t.year, "month": t.month, "day": t.day, "hour": t.hour,
            "minutes": t.minute, "seconds": t.second, "timezone": "UTC", "local_timezone": "UTC",
            "unix_time": now, "timestamp": t.strftime("%a %b %d %H:%M:%S %Y UTC"),
            "datetime": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "iso_8601": t.strftime("%Y-%m-%dT%H:%M:%SZ")}


def _insert(conn: apsw.Connection, table: str, rows: Iterable[Row]) -> None:
    for row in rows:
        cols = list(row)
        sql = f'INSERT INTO "{table}" ({", ".join(f"{chr(34)}{c}{chr(34)}" for c in cols)}) VALUES ({", ".join("?" * len(cols))})'
        conn.execute(sql, [row[c] for c in cols])


def build(scenario: Scenario | str | Path, out_dir: str | Path = SAMPLES_DIR) -> Path:
    """Write `out_dir/NAME.db` for a scenario (replacing it) and return its path."""
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    out = Path(out_dir) / f"{sc.name}.db"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".db.tmp")
    tmp.unlink(missing_ok=True)
    conn = apsw.Connection(str(tmp))
    try:
        conn.execute("PRAGMA page_size = 512")  # ~300 mostly empty tables: keep committed files small
        with conn:
            conn.execute(ddl_script(None))
            conn.execute(f'CREATE TABLE "{META_TABLE}" (name TEXT, platform TEXT, description TEXT, now INTEGER, '
                         "source TEXT, source_sha256 TEXT, schema_sha256 TEXT)")
            conn.execute(f'INSERT INTO "{META_TABLE}" VALUES (?, ?, ?, ?, ?, ?, ?)',
                         (sc.name, sc.platform, sc.description.strip(), sc.now,
                          f"sample_dbs/scenarios/{sc.name}.yaml", sc.digest, schema_digest()))
            if "time" not in sc.tables:
                _insert(conn, "time", [_time_row(sc.now)])
            for table, rows in sc.tables.items():
                _insert(conn, table, rows)
            for g in sc.generate:
                if GENERATOR is None:
                    raise RuntimeError(f"{sc.path}: generate entry for {g['table']} needs the fixture generator, "
                                       "which is not installed in this build")
                _insert(conn, g["table"], GENERATOR(g["table"], g["fixture"], g["path"]))
    finally:
        conn.close()
    os.replace(tmp, out)
    return out


def build_all(out_dir: str | Path = SAMPLES_DIR, directory: Path = SCENARIOS_DIR) -> list[Path]:
    return [build(sc, out_dir) for sc in load_scenarios(directory)]


def db_meta(db: str | Path) -> dict[str, Any]:
    """The scenario a database was built from (name, platform, source digest)."""
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = list(conn.execute(f'SELECT name, platform, source_sha256, schema_sha256 FROM "{META_TABLE}"'))
    except apsw.SQLError as exc:
        raise ValueError(f"{db}: not a dyldwatch sample database (no {META_TABLE} table)") from exc
    finally:
        conn.close()
    if not rows:
        raise ValueError(f"{db}: empty {META_TABLE} table")
    name, platform, digest, schema = rows[0]
    return {"name": name, "platform": platform, "source_sha256": digest, "schema_sha256": schema, "path": str(db)}


def stale(db_dir: Path = SAMPLES_DIR, directory: Path = SCENARIOS_DIR) -> list[str]:
    """Scenario names whose database is missing or was built from another fixture or table schema."""
    out = []
    schema = schema_digest()
    for p in scenario_paths(directory):
        db = db_dir / f"{p.stem}.db"
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        try:
            meta = db_meta(db) if db.exists() else {}
            ok = meta.get("source_sha256") == digest and meta.get("schema_sha256") == schema
        except (ValueError, apsw.Error):
            ok = False
        if not ok:
            out.append(p.stem)
    return out


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

    def as_dict(self) -> dict[str, Any]:
        return {"analytic": self.analytic, "query": self.query, "scenario": self.scenario,
                "expected": self.expected, "rows": self.rows,
                "result": "unchecked" if self.ok is None else ("pass" if self.ok else "FAIL"), "detail": self.detail}


@dataclass(slots=True)
class Run:
    """Rows of every query on every database, plus the expectation results."""

    results: list[Result]
    rows: dict[tuple[str, str, str], list[Row]]  # (pack id, query name, scenario) -> rows
    scenarios: list[dict[str, Any]]
    packs: list[Pack]

    @property
    def ok(self) -> bool:
        return all(r.ok is not False for r in self.results)

    def cell(self, analytic: str, scenario: str) -> tuple[int | None, bool | None]:
        """Rows an analytic returned on a scenario (None: not applicable) and its verdict there."""
        counts = [len(v) for (a, _, s), v in self.rows.items() if a == analytic and s == scenario]
        verdicts = [r.ok for r in self.results if r.analytic == analytic and r.scenario == scenario]
        total = sum(counts) if counts else None
        if any(v is False for v in verdicts):
            return total, False
        return total, (True if any(v for v in verdicts) else None)


def _run_query(conn: apsw.Connection, sql: str) -> list[Row]:
    cur = conn.cursor()
    it = cur.execute(sql)
    try:
        names = [d[0] for d in cur.getdescription()]
    except apsw.ExecutionCompleteError:  # no rows: the statement finished at once
        return []
    return [dict(zip(names, r, strict=True)) for r in it]


def _applies(q: Query, platform: str) -> bool:
    return platform in q.platforms


def _check(e: Expectation, rows: list[Row]) -> tuple[bool, str]:
    if not e.fires:
        return (not rows, "" if not rows else f"expected silence, got {len(rows)} row(s): {rows[0].get('reason', '')}")
    if len(rows) < e.min_rows:
        return False, f"expected at least {e.min_rows} row(s), got {len(rows)}"
    if e.match:
        for r in rows:
            if all(str(r.get(k)) == str(v) for k, v in e.match.items()):
                return True, ""
        return False, f"no row has {e.match}"
    return True, ""


def validate(packs: list[Pack], dbs: Iterable[str | Path], sites: Mapping[str, Mapping[str, Any]] | None = None,
             *, require_all: bool = True) -> Run:
    """Run every query on every applicable database and check every expectation.

    With `require_all`, an expectation whose scenario has no database is a failure (the default set);
    with explicit `--db` paths, such expectations are skipped.
    """
    metas = [db_meta(db) for db in dbs]
    rows: dict[tuple[str, str, str], list[Row]] = {}
    for meta in metas:
        conn = apsw.Connection(meta["path"], flags=apsw.SQLITE_OPEN_READONLY)
        register_functions(conn)
        try:
            for pack in packs:
                for q in pack.queries:
                    if _applies(q, meta["platform"]):
                        sql = pack.render(q, (sites or {}).get(pack.id))
                        try:
                            rows[(pack.id, q.name, meta["name"])] = _run_query(conn, sql)
                        except apsw.Error as exc:
                            raise RuntimeError(f"{pack.path}: {q.name} failed on {meta['path']}: {exc}") from exc
        finally:
            conn.close()
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
            got = [r for (a, qn, s), rs in rows.items() if a == pack.id and s == e.scenario
                   and (e.query is None or qn == e.query) for r in rs]
            ok, detail = _check(e, got)
            results.append(Result(pack.id, qname, e.scenario, expected, len(got), ok,
                                  detail and f"{pack.path}:{e.line}: {detail}"))
        for meta in metas:
            if meta["name"] not in declared and meta["platform"] in pack.platforms:
                n = sum(len(v) for (a, _, s), v in rows.items() if a == pack.id and s == meta["name"])
                results.append(Result(pack.id, "*", meta["name"], "—", n, None, "no expectation declared"))
    return Run(results, rows, metas, packs)


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
            text = f"fired {n}" if n else "silent"
            line.append(text + (" ✓" if verdict else " ✗" if verdict is False else ""))
        body.append(line)
    return ["scenario", *(p.id for p in run.packs)], body


def matrix_markdown(run: Run) -> str:
    """The detection matrix as a Markdown table for the README (generated, never typed)."""
    head, body = matrix(run)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    legend = ("\n`fired N` / `silent`: rows the analytic returned on that scenario database; ✓ matches "
              "the pack's expectation, ✗ does not; `·` the analytic does not run on that platform.\n")
    return "\n".join(lines) + "\n" + legend

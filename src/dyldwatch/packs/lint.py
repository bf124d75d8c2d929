"""Lint: every pack query prepares, on each of its platforms, against exactly the facts.

SQLite itself is the parser: a session per platform is the osquery-faithful engine over empty
tables (only the tables that exist there, with osquery's column options, planner rules and
functions), and each query is prepared (never run) with an authorizer recording every
table.column it reads. An unknown table or column therefore fails to prepare, and the message is
mapped back to the pack file and line; the plan shows which constraints osquery would push.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import apsw
import apsw.ext

from ..sql.facts import OUR_TABLES, tables_for
from ..sql.session import empty_engine
from .model import KNOB_RE, Pack, PackError, Problem, Query, load_pack, pack_paths

#: Authorizer actions a read-only query may take.
_READ_ONLY = {"SQLITE_SELECT", "SQLITE_READ", "SQLITE_FUNCTION", "SQLITE_RECURSIVE"}
#: Output columns that name the host object to act on; every query returns one, plus `reason`.
_OBJECT_COLUMNS = ("pid", "path")
#: What our keyed tables can use: `=` (IN arrives as `=`) and LIKE; any other operator on a key
#: satisfies osquery's REQUIRED check yet gives the table nothing to work from.
_USABLE_OPS = (2, 3, 65)


@lru_cache(maxsize=4)
def _session(platform: str) -> apsw.Connection:
    return empty_engine(platform).conn


def session_for(platform: str) -> apsw.Connection:
    """An empty osquery-faithful session whose schema is exactly what exists on `platform`."""
    return _session(platform)


def _plans(plan: Any) -> list[dict[str, Any]]:
    """The engine's planner records (table, constraints pushed, unconstrained) in a query plan."""
    out: list[dict[str, Any]] = []
    stack = [plan]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        m = re.search(r"VIRTUAL TABLE INDEX \d+:(\{.*\})", node.detail or "")
        if m:
            out.append(json.loads(m.group(1)))
        stack.extend(node.sub or ())
    return out


def _plan_problems(plan: Any, platform: str) -> list[tuple[str, str]]:
    """(table, message) for scans that osquery would run without a usable key."""
    existing = tables_for(platform)
    out: list[tuple[str, str]] = []
    for p in _plans(plan):
        table = p["table"]
        facts = existing.get(table)
        if facts is None or not facts.required:
            continue
        need = " or ".join(facts.required)
        if p["unconstrained"]:
            out.append((table, f"[{platform}] {table} is read without a {need} constraint; in osquery the query "
                               "fails (feed it from a join or a WHERE on the key)"))
        elif table in OUR_TABLES:
            keys = [(c, op) for c, op in p["constraints"] if c in facts.required]
            if keys and not any(op in _USABLE_OPS for _, op in keys):
                ops = ", ".join(f"{c} op {op}" for c, op in keys)
                out.append((table, f"[{platform}] {table} only gets {ops} on its keys: osquery accepts it but "
                                   "the table can use only =, IN and LIKE, so it returns nothing"))
    return out


def _line_of(sql: str, start_line: int, message: str) -> int:
    """Best line for an SQLite error: where the offending name first appears in the SQL."""
    m = re.search(r"no such (?:column|table|function): ([\w.]+)", message) or re.search(r'near "([^"]+)"', message)
    if m:
        token = m.group(1)
        hit = re.search(r"(?<![\w.])" + re.escape(token) + r"(?![\w])", sql)
        if hit:
            return start_line + sql.count("\n", 0, hit.start())
    return start_line


def lint_query(pack: Pack, index: int, query: Query, site: Mapping[str, Any] | None = None) -> list[Problem]:
    """Problems of one query on each of its platforms (empty when it is fine)."""
    file, base = pack.path, f"queries.{index}"
    sql_line = query.sql_line
    out: list[Problem] = []
    try:
        sql = pack.render(query, site)
    except (KeyError, ValueError) as exc:
        return [Problem(file, sql_line, f"{base}.sql", f"cannot substitute knob: {exc}")]
    for platform in query.platforms:
        if platform not in pack.platforms:
            out.append(Problem(file, pack.line("queries", index, "platform"), f"{base}.platform",
                               f"{platform} is not among the pack's platforms {pack.platforms}"))
            continue
        conn = session_for(platform)
        try:
            info = apsw.ext.query_info(conn, sql, actions=True, explain_query_plan=True)
        except apsw.Error as exc:
            msg = str(exc)
            if "may not be modified" in msg:  # osquery's tables are read-only virtual tables
                out.append(Problem(file, sql_line, f"{base}.sql", f"is not read-only ({msg})"))
                continue
            out.append(Problem(file, _line_of(query.sql, sql_line, msg), f"{base}.sql",
                               f"[{platform}] does not prepare: {msg}"))
            continue
        if info.query_remaining and info.query_remaining.strip(" \t\r\n;"):
            out.append(Problem(file, sql_line, f"{base}.sql", "holds more than one statement"))
        used: set[str] = set()
        for action in info.actions or ():
            if action.action_name not in _READ_ONLY:
                out.append(Problem(file, sql_line, f"{base}.sql", f"is not read-only ({action.action_name})"))
            elif action.action_name == "SQLITE_READ" and action.table_name:
                used.add(action.table_name)
        existing = tables_for(platform)
        undeclared = sorted(t for t in used if t in existing and t not in query.tables)
        if undeclared:
            out.append(Problem(file, pack.line("queries", index, "tables"), f"{base}.tables",
                               f"[{platform}] query reads {', '.join(undeclared)} but does not list it"))
        unused = sorted(t for t in query.tables if t not in used)
        if unused:
            out.append(Problem(file, pack.line("queries", index, "tables"), f"{base}.tables",
                               f"[{platform}] lists {', '.join(unused)} but the query does not read it"))
        for table, message in _plan_problems(info.query_plan, platform):
            out.append(Problem(file, _line_of(query.sql, sql_line, f"no such table: {table}"), f"{base}.sql", message))
        names = [d[0] for d in info.description or ()]
        if "reason" not in names or "severity" not in names or not any(c in names for c in _OBJECT_COLUMNS):
            out.append(Problem(file, sql_line, f"{base}.sql",
                               "output must name the object to act on (pid or path) and carry `severity` "
                               "(low, medium, high) and `reason` columns"))
    return list(dict.fromkeys(out))


def lint_pack(pack: Pack, site: Mapping[str, Any] | None = None) -> list[Problem]:
    out: list[Problem] = []
    used_knobs: set[str] = set()
    for i, q in enumerate(pack.queries):
        out += lint_query(pack, i, q, site)
        used_knobs.update(KNOB_RE.findall(q.sql))
    for name in pack.knobs:
        if name not in used_knobs:
            out.append(Problem(pack.path, pack.line("knobs", name), f"knobs.{name}", "declared but no query uses it"))
    covered = {pl for q in pack.queries for pl in q.platforms}
    for pl in pack.platforms:
        if pl not in covered:
            out.append(Problem(pack.path, pack.line("platforms"), "platforms", f"no query runs on {pl}"))
    return out


def lint_paths(paths: Iterable[str | Path] = (), sites: Mapping[str, Mapping[str, Any]] | None = None) -> list[Problem]:
    """Every problem in the named packs (all of packs/ when none are named)."""
    problems: list[Problem] = []
    files = pack_paths(paths)
    if not files:
        return [Problem(str(Path(*paths) if paths else "packs"), 1, "packs", "no pack files found")]
    seen: dict[str, str] = {}
    for path in files:
        try:
            pack = load_pack(path)
        except PackError as exc:
            problems += exc.problems
            continue
        if pack.id in seen:
            problems.append(Problem(pack.path, pack.line("id"), "id", f"duplicate id, also in {seen[pack.id]}"))
        seen[pack.id] = pack.path
        problems += lint_pack(pack, (sites or {}).get(pack.id))
    return problems

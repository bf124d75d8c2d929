"""Pack model: one YAML file per analytic, its queries, tuning knobs and scenario expectations.

Loading keeps the line of every field so lint and SITE errors point at FILE:LINE. Knobs are
written `{{name}}` in the SQL and substituted at build time as SQL literals (strings quoted
with single quotes doubled, lists as `'a','b'`, integers validated), so a site value can
never change the shape of a query.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .. import resources
from ..sql.facts import expand_platforms
from .yamlloc import Located, YamlError, load_located

T = TypeVar("T")

PACKS_DIR = resources.packs_dir()
KNOB_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
ID_RE = re.compile(r"^AN\d{4}$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
KNOB_TYPES = ("string", "integer", "list")
#: Seconds osquery must keep event rows (osquery/events/eventsubscriberplugin.cpp; default 3600):
#: the packs look events up within their recency window (7 days by default, AN0057's
#: `recency_seconds`). The generated flags set it and validate runs with it; a test holds it
#: against every pack that reads an event table.
EVENTS_EXPIRY = 7 * 86400
LOGGING = ("snapshot", "differential", "differential_ignore_removals")


@dataclass(frozen=True, slots=True)
class Problem:
    """One lint finding, located in a file."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class PackError(ValueError):
    """A pack or SITE file that cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


@dataclass(slots=True)
class Knob:
    name: str
    type: str
    default: Any
    description: str


@dataclass(slots=True)
class Query:
    name: str
    platform: str
    interval: int
    sql: str
    tables: list[str]
    description: str
    value: str
    logging: str = "differential"
    version: str = "5.0.0"
    sql_line: int = 1

    @property
    def platforms(self) -> tuple[str, ...]:
        return expand_platforms(self.platform)

    @property
    def snapshot(self) -> bool:
        return self.logging == "snapshot"

    @property
    def removed(self) -> bool:
        return self.logging == "differential"


@dataclass(slots=True)
class Expectation:
    """What one scenario database must show: rows (at least `min_rows`, some matching `match`) or none."""

    scenario: str
    fires: bool
    min_rows: int = 1
    query: str | None = None
    match: dict[str, Any] = field(default_factory=dict)
    line: int = 1


@dataclass(slots=True)
class Pack:
    id: str
    title: str
    description: str
    attack: list[dict[str, str]]
    platforms: list[str]
    knobs: dict[str, Knob]
    queries: list[Query]
    expectations: list[Expectation]
    path: str = ""
    located: Located | None = None

    @property
    def pack_name(self) -> str:
        return f"dyldwatch-{self.id}"

    def line(self, *path: str | int) -> int:
        return self.located.line(path) if self.located else 1

    def knob_values(self, site: Mapping[str, Any] | None = None) -> dict[str, Any]:
        values = {k.name: k.default for k in self.knobs.values()}
        values.update({k: v for k, v in (site or {}).items() if k in self.knobs})
        return values

    def render(self, query: Query, site: Mapping[str, Any] | None = None) -> str:
        """The query's SQL with every knob replaced by a SQL literal."""
        values = self.knob_values(site)

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in self.knobs:
                raise KeyError(name)
            return sql_literal(values[name], self.knobs[name].type)

        return KNOB_RE.sub(sub, query.sql)


# --- SQL literals ----------------------------------------------------------------------------

_BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_value(value: Any, type_: str) -> str | None:
    """Why `value` cannot be a `type_` knob value, or None when it can."""
    if type_ == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer, got {type(value).__name__} {value!r}"
        return None
    if type_ == "string":
        if not isinstance(value, str):
            return f"expected a string, got {type(value).__name__} {value!r}"
        if _BAD_CHARS.search(value) or "\n" in value or "\r" in value:
            return "contains a NUL or control character, which cannot be put in a query"
        return None
    if type_ == "list":
        if not isinstance(value, list):
            return f"expected a list of strings, got {type(value).__name__} {value!r}"
        for i, item in enumerate(value):
            why = check_value(item, "string")
            if why:
                return f"item {i}: {why}"
        return None
    return f"unknown knob type {type_!r}"


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql_literal(value: Any, type_: str) -> str:
    """Render a validated knob value as SQL (raises ValueError for a value that does not fit)."""
    why = check_value(value, type_)
    if why:
        raise ValueError(why)
    if type_ == "integer":
        return str(int(value))
    if type_ == "string":
        return quote(value)
    return ",".join(quote(v) for v in value)


# --- structural validation -------------------------------------------------------------------

_PACK_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "id": (str, True), "title": (str, True), "description": (str, True), "attack": (list, True),
    "platforms": (list, True), "knobs": (dict, False), "queries": (list, True), "expectations": (list, True),
}
_QUERY_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "name": (str, True), "platform": (str, True), "interval": (int, True), "sql": (str, True),
    "tables": (list, True), "description": (str, True), "value": (str, True), "logging": (str, False),
    "version": (str, False),
}
_KNOB_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "type": (str, True), "default": ((str, int, list), True), "description": (str, True),
}
_EXPECT_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "scenario": (str, True), "fires": (bool, True), "min_rows": (int, False), "query": (str, False),
    "match": (dict, False),
}
_ATTACK_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {"id": (str, True), "name": (str, True)}


def _typename(t: type | tuple[type, ...]) -> str:
    names = {str: "string", int: "integer", list: "list", dict: "mapping", bool: "boolean"}
    return " or ".join(names.get(x, x.__name__) for x in (t if isinstance(t, tuple) else (t,)))


def _check_fields(loc: Located, path: tuple[str | int, ...], obj: Any,
                  spec: Mapping[str, tuple[type | tuple[type, ...], bool]], what: str) -> list[Problem]:
    label = ".".join(map(str, path)) or what
    if not isinstance(obj, dict):
        return [Problem(loc.file, loc.line(path), label, f"{what} must be a mapping")]
    out: list[Problem] = []
    for key, value in obj.items():
        where = (*path, key)
        if key not in spec:
            out.append(Problem(loc.file, loc.line(where), ".".join(map(str, where)),
                               f"unknown field {key!r} (known: {', '.join(spec)})"))
            continue
        types, required = spec[key]
        if value is None and not required:  # `knobs:` left empty
            continue
        bad = isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,))
        if bad or not isinstance(value, types):
            out.append(Problem(loc.file, loc.line(where), ".".join(map(str, where)),
                               f"expected {_typename(types)}, got {type(value).__name__}"))
    for key, (_, required) in spec.items():
        if required and key not in obj:
            out.append(Problem(loc.file, loc.line(path), label, f"missing field {key!r}"))
    return out


def _structure(loc: Located) -> list[Problem]:
    doc = loc.data
    problems = _check_fields(loc, (), doc, _PACK_FIELDS, "pack")
    if not isinstance(doc, dict):
        return problems
    if isinstance(doc.get("id"), str) and not ID_RE.match(doc["id"]):
        problems.append(Problem(loc.file, loc.line(("id",)), "id", "must look like AN0054"))
    for i, a in enumerate(doc.get("attack") or []):
        problems += _check_fields(loc, ("attack", i), a, _ATTACK_FIELDS, "attack reference")
    for i, p in enumerate(doc.get("platforms") or []):
        if p not in ("darwin", "linux"):
            problems.append(Problem(loc.file, loc.line(("platforms", i)), f"platforms.{i}",
                                    f"unknown platform {p!r} (darwin, linux)"))
    knobs = doc.get("knobs") or {}
    for name, k in knobs.items() if isinstance(knobs, dict) else ():
        problems += _check_fields(loc, ("knobs", name), k, _KNOB_FIELDS, "knob")
        if not NAME_RE.match(str(name)):
            problems.append(Problem(loc.file, loc.line(("knobs", name)), f"knobs.{name}",
                                    "knob names are lower_snake_case"))
        if isinstance(k, dict) and "type" in k and "default" in k:
            why = check_value(k["default"], k["type"])
            if why:
                problems.append(Problem(loc.file, loc.line(("knobs", name, "default")),
                                        f"knobs.{name}.default", why))
    for i, q in enumerate(doc.get("queries") or []):
        problems += _check_fields(loc, ("queries", i), q, _QUERY_FIELDS, "query")
        if not isinstance(q, dict):
            continue
        if isinstance(q.get("logging"), str) and q["logging"] not in LOGGING:
            problems.append(Problem(loc.file, loc.line(("queries", i, "logging")), f"queries.{i}.logging",
                                    f"must be one of {', '.join(LOGGING)}"))
        if isinstance(q.get("platform"), str):
            try:
                expand_platforms(q["platform"])
            except ValueError as exc:
                problems.append(Problem(loc.file, loc.line(("queries", i, "platform")),
                                        f"queries.{i}.platform", str(exc)))
        if isinstance(q.get("interval"), int) and not 10 <= q["interval"] <= 604800:
            problems.append(Problem(loc.file, loc.line(("queries", i, "interval")), f"queries.{i}.interval",
                                    "must be between 10 and 604800 seconds"))
        if isinstance(q.get("name"), str) and not NAME_RE.match(q["name"]):
            problems.append(Problem(loc.file, loc.line(("queries", i, "name")), f"queries.{i}.name",
                                    "query names are lower_snake_case"))
        for name in KNOB_RE.findall(q.get("sql") or "") if isinstance(q.get("sql"), str) else ():
            if not isinstance(knobs, dict) or name not in knobs:
                problems.append(Problem(loc.file, loc.line(("queries", i, "sql")), f"queries.{i}.sql",
                                        f"uses knob {{{{{name}}}}} that the pack does not declare"))
    for i, e in enumerate(doc.get("expectations") or []):
        problems += _check_fields(loc, ("expectations", i), e, _EXPECT_FIELDS, "expectation")
    names = [q.get("name") for q in doc.get("queries") or [] if isinstance(q, dict)]
    for i, n in enumerate(names):
        if n in names[:i]:
            problems.append(Problem(loc.file, loc.line(("queries", i, "name")), f"queries.{i}.name",
                                    f"duplicate query name {n!r}"))
    for i, e in enumerate(doc.get("expectations") or []):
        if isinstance(e, dict) and e.get("query") is not None and e["query"] not in names:
            problems.append(Problem(loc.file, loc.line(("expectations", i, "query")),
                                    f"expectations.{i}.query", f"no query named {e['query']!r} in this pack"))
    return problems


def _build(loc: Located) -> Pack:
    d = loc.data
    knobs = {n: Knob(n, k["type"], k["default"], k["description"]) for n, k in (d.get("knobs") or {}).items()}
    queries = [
        Query(q["name"], q["platform"], q["interval"], q["sql"], list(q["tables"]), q["description"],
              q["value"], q.get("logging", "differential"), q.get("version", "5.0.0"),
              loc.body_line(("queries", i, "sql")))
        for i, q in enumerate(d["queries"])
    ]
    expectations = [
        Expectation(e["scenario"], e["fires"], e.get("min_rows", 1 if e["fires"] else 0), e.get("query"),
                    dict(e.get("match") or {}), loc.line(("expectations", i)))
        for i, e in enumerate(d["expectations"])
    ]
    return Pack(d["id"], d["title"], d["description"], list(d["attack"]), list(d["platforms"]), knobs,
                queries, expectations, loc.file, loc)


def load_pack(path: str | Path, text: str | None = None) -> Pack:
    """Load and structurally check one pack (PackError lists every problem with FILE:LINE)."""
    try:
        loc = load_located(path, text)
    except YamlError as exc:
        raise PackError([Problem(exc.file, exc.line, "yaml", exc.message)]) from exc
    problems = _structure(loc)
    if problems:
        raise PackError(problems)
    pack = _build(loc)
    stem = Path(path).stem
    if text is None and stem != pack.id:
        raise PackError([Problem(loc.file, loc.line(("id",)), "id", f"id {pack.id!r} differs from file name {stem!r}")])
    return pack


def pack_paths(paths: Iterable[str | Path] = ()) -> list[Path]:
    """The named pack files (directories expand to their *.yaml), or every pack in packs/."""
    out: list[Path] = []
    for p in map(Path, paths or [PACKS_DIR]):
        out.extend(sorted(p.glob("*.yaml")) if p.is_dir() else [p])
    return out


def load_all(paths: Iterable[Path], load: Callable[[Path], T]) -> list[T]:
    """Load every file, or raise one PackError with the problems of all files at once."""
    loaded: list[T] = []
    problems: list[Problem] = []
    for p in paths:
        try:
            loaded.append(load(p))
        except PackError as exc:
            problems += exc.problems
    if problems:
        raise PackError(problems)
    return loaded


def load_packs(paths: Iterable[str | Path] = ()) -> list[Pack]:
    """Every pack, or PackError with the problems of all files at once."""
    return load_all(pack_paths(paths), load_pack)


# --- SITE files ------------------------------------------------------------------------------

_SITE_TOP = ("knobs", "packs")


def load_site(path: str | Path, packs: list[Pack]) -> dict[str, dict[str, Any]]:
    """Per-pack knob values from a SITE file, validated against each knob's type.

    Format: `knobs: {name: value}` applies to every pack that declares the knob;
    `packs: {AN0840: {name: value}}` overrides for one pack. Unknown knobs, wrong types, NUL and
    control characters are refused with the file, line and knob named.
    """
    try:
        loc = load_located(path)
    except YamlError as exc:
        raise PackError([Problem(exc.file, exc.line, "yaml", exc.message)]) from exc
    doc = loc.data if loc.data is not None else {}
    problems: list[Problem] = []
    if not isinstance(doc, dict):
        raise PackError([Problem(loc.file, 1, "site", "a SITE file is a mapping with 'knobs' and/or 'packs'")])
    for key in doc:
        if key not in _SITE_TOP:
            problems.append(Problem(loc.file, loc.line((key,)), str(key), f"unknown field (known: {', '.join(_SITE_TOP)})"))
    by_id = {p.id: p for p in packs}
    declared: dict[str, list[Pack]] = {}
    for p in packs:
        for k in p.knobs:
            declared.setdefault(k, []).append(p)
    out: dict[str, dict[str, Any]] = {p.id: {} for p in packs}

    def take(where: tuple[str, ...], name: str, value: Any, targets: list[Pack]) -> None:
        for p in targets:
            why = check_value(value, p.knobs[name].type)
            if why:
                problems.append(Problem(loc.file, loc.line(where), ".".join(where), f"knob {name!r}: {why}"))
                return
        for p in targets:
            out[p.id][name] = value

    glob = doc.get("knobs") or {}
    if not isinstance(glob, dict):
        problems.append(Problem(loc.file, loc.line(("knobs",)), "knobs", "must be a mapping of knob: value"))
        glob = {}
    for name, value in glob.items():
        if name not in declared:
            problems.append(Problem(loc.file, loc.line(("knobs", name)), f"knobs.{name}",
                                    f"no pack declares knob {name!r} (known: {', '.join(sorted(declared))})"))
            continue
        take(("knobs", name), name, value, declared[name])
    per = doc.get("packs") or {}
    if not isinstance(per, dict):
        problems.append(Problem(loc.file, loc.line(("packs",)), "packs", "must be a mapping of pack id: knobs"))
        per = {}
    for pid, knobs in per.items():
        if pid not in by_id:
            problems.append(Problem(loc.file, loc.line(("packs", pid)), f"packs.{pid}", f"unknown pack {pid!r}"))
            continue
        if not isinstance(knobs, dict):
            problems.append(Problem(loc.file, loc.line(("packs", pid)), f"packs.{pid}", "must be a mapping of knob: value"))
            continue
        for name, value in knobs.items():
            if name not in by_id[pid].knobs:
                problems.append(Problem(loc.file, loc.line(("packs", pid, name)), f"packs.{pid}.{name}",
                                        f"{pid} has no knob {name!r}"))
                continue
            take(("packs", pid, name), name, value, [by_id[pid]])
    if problems:
        raise PackError(problems)
    return out

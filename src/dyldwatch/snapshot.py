"""Run dyldwatch's tables on this host (or over a mounted image) into a SQLite database.

The database has the shape of a sample database (every native table's DDL, empty; our tables
filled; a `dyldwatch_scenario` row), so `dyldwatch query --db` and `dyldwatch validate --db` read it
as they read the scenarios. What was asked for is recorded in `dyldwatch_snapshot`.

`root` is for triage of a mounted macOS image from another machine: each pattern is scanned under
`root` and every path is stored as it is inside the image. The same runner builds the scenario
rows of the sample databases (samples.py), with a temporary directory as the root.

Limits with a root: absolute install names and `@rpath` candidates are resolved against the
image (`exists` is checked under the root), but ownership (`uid`, `user_writable`) is what the
mount shows, and `user_writable` also weighs the directories above the mount point; quarantine
and other extended attributes are seen only when the mount exposes them; the quarantine events
database is not consulted; process tables describe this host and are refused.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from .sql.database import insert_rows
from .tables import TABLES, load_table
from .tables.base import Op, QueryContext, Row

#: Tables that read files named by path patterns (osquery `file`-table semantics).
PATH_TABLES = ("macho_info", "macho_load_commands", "dylib_provenance", "applescript_info")
#: Tables that read every process of this host.
PROCESS_TABLES = ("process_images", "rwx_regions")
SNAPSHOT_TABLE = "dyldwatch_snapshot"

Progress = Callable[[str, int, bool], None]  # table, rows so far, done
XattrReader = Callable[[str, Iterable[str]], Any]


class SnapshotError(Exception):
    """The snapshot cannot be taken as asked (unknown table, unwritable output, bad root)."""


# --- paths under a root ----------------------------------------------------------------------


def _norm_root(root: str | os.PathLike[str] | None) -> str:
    if not root:
        return ""
    r = os.path.abspath(os.fspath(root)).rstrip("/")
    return "" if r == "" else r


def strip_root(value: Any, root: str) -> Any:
    """A text value with the root prefix removed wherever a rooted path appears in it."""
    if not root or not isinstance(value, str):
        return value
    if value == root:
        return "/"
    return value.replace(root + "/", "/")


def path_constraints(patterns: Sequence[str], root: str = "") -> dict[str, list[tuple[int, str]]]:
    """Query constraints for patterns: `%` makes a LIKE pattern, a directory lists its entries,
    anything else is one file (`path =`), each looked up under `root`."""
    out: dict[str, list[tuple[int, str]]] = {}
    for p in patterns:
        rooted = root + p if root else p
        if "%" in p:
            out.setdefault("path", []).append((Op.LIKE, rooted))
        elif os.path.isdir(rooted) and not p.endswith((".scptd", ".app")):
            out.setdefault("directory", []).append((Op.EQUALS, rooted.rstrip("/") or "/"))
        else:
            out.setdefault("path", []).append((Op.EQUALS, rooted))
    return out


def _public(row: Row, root: str) -> Row:
    return {k: strip_root(v, root) for k, v in row.items() if not k.startswith("_")}


# --- running one table -----------------------------------------------------------------------


def load_command_rows(ctx: QueryContext, root: str = "") -> Iterator[Row]:
    """macho_load_commands rows with dylib resolution done in the image's coordinates: the table's
    own resolver, looking up existence and links under `root`, so a scenario or a mounted image
    resolves as it would on its own machine."""
    from .tables.macho_load_commands import (
        _RESOLVED,
        SCANNER,
        MachoLoadCommandsTable,
        Resolver,
        RootedResolver,
    )

    every = MachoLoadCommandsTable.column_names()
    resolver = RootedResolver(QueryContext(ctx.constraints, frozenset(every)), root) if root else \
        Resolver(QueryContext(ctx.constraints, frozenset(every)))
    static = QueryContext(ctx.constraints, frozenset(every) - frozenset(_RESOLVED))
    for row in SCANNER.scan(static, private=True):
        out = _public(row, root)
        spec = resolver.spec(row)
        if spec is not None:
            out.update(resolver.columns(resolver.outcome(spec)))
        yield out


@dataclass(slots=True)
class Runner:
    """Runs our tables with a root and the platform and attribute readers a run needs."""

    root: str = ""
    platform: str = field(default_factory=lambda: "darwin" if sys.platform == "darwin" else "linux")
    read_xattrs: XattrReader | None = None

    def provenance_table(self) -> Any:
        from .tables.dylib_provenance import DylibProvenanceTable

        kw: dict[str, Any] = {"platform": self.platform}
        if self.read_xattrs is not None:
            kw["read_xattrs"] = self.read_xattrs
        if self.root:
            kw["quarantine_db_for"] = lambda _uid: None  # the events database of the image is not ours
        return DylibProvenanceTable(**kw)

    def provenance_rows(self, ctx: QueryContext) -> Iterator[Row]:
        from .formats.provenance import is_system_path
        from .host.pathfacts import path_facts

        for row in self.provenance_table().generate(ctx):
            rooted = row["path"]
            out = _public(row, self.root)
            if self.root:  # the table judged the rooted path; judge the path inside the image
                try:
                    st: os.stat_result | None = os.stat(rooted)
                except (OSError, ValueError):
                    st = None
                facts = path_facts(rooted, None, st) if self.platform == "linux" else []
                out["system_path"] = int(is_system_path(os.path.normpath(out["path"]), self.platform,  # type: ignore[arg-type]
                                                        exists=st is not None, facts=facts))
            yield out

    def rows(self, table: str, patterns: Sequence[str] = (), *, extra_paths: Sequence[str] = ()) -> Iterator[Row]:
        """Rows of one table: path tables over `patterns` (+ `extra_paths`, named exactly),
        process tables over every process."""
        if table in PROCESS_TABLES:
            if self.root:
                raise SnapshotError(f"{table} reads this host's processes; it cannot run with --root")
            yield from load_table(table)().generate(QueryContext())
            return
        cons = path_constraints(patterns, self.root)
        if extra_paths:
            cons.setdefault("path", []).extend((Op.EQUALS, self.root + p) for p in extra_paths)
        if not cons:
            return
        ctx = QueryContext.build(cons)
        if table == "macho_load_commands":
            yield from load_command_rows(ctx, self.root)
        elif table == "dylib_provenance":
            yield from self.provenance_rows(ctx)
        else:
            for row in load_table(table)().generate(ctx):
                yield _public(row, self.root)


# --- the snapshot database -------------------------------------------------------------------


@dataclass(slots=True)
class SnapshotResult:
    path: Path
    counts: dict[str, int]
    warnings: list[str]


def check_tables(tables: Sequence[str], root: str = "") -> list[str]:
    """The tables to run (all of ours by default; process tables are left out with a root)."""
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise SnapshotError(f"unknown table {unknown[0]!r}; dyldwatch's tables are: {', '.join(TABLES)}")
    if root:
        bad = [t for t in tables if t in PROCESS_TABLES]
        if bad:
            raise SnapshotError(f"{bad[0]} reads this host's processes and cannot run with --root")
    chosen = list(dict.fromkeys(tables)) or [t for t in TABLES if not (root and t in PROCESS_TABLES)]
    return chosen


#: Files the packs read through osquery's `file` table (it needs a path), recorded with --native.
NATIVE_FILE_PATHS = ("/etc/ld.so.preload",)


def native_rows(platform: str) -> dict[str, Iterator[Row]]:
    """osquery's native tables the packs read, filled from this host (Linux) as osquery would."""
    if platform != "linux" or not sys.platform.startswith("linux"):
        raise SnapshotError("--native records osquery's tables from /proc: Linux only (on macOS, "
                            "record them with osqueryi)")
    from .tables.native import NATIVE_LINUX

    out: dict[str, Iterator[Row]] = {}
    for name, gen in NATIVE_LINUX.items():
        if name == "time":
            continue  # the snapshot's own time row stands for it
        ctx = QueryContext.build({"path": [(Op.EQUALS, p) for p in NATIVE_FILE_PATHS]}) if name == "file" else QueryContext()
        out[name] = gen(ctx)
    return out


def take_snapshot(out: str | Path, *, tables: Sequence[str] = (), patterns: Sequence[str] = (),
                  root: str | Path | None = None, platform: str | None = None,
                  progress: Progress | None = None, now: int | None = None, native: bool = False) -> SnapshotResult:
    """Write a snapshot database to `out` (replacing it) and say what went in."""
    from . import __version__
    from .sql.database import META_TABLE, schema_digest, time_row
    from .sql.facts import ddl_script

    r = _norm_root(root)
    if root and not os.path.isdir(r):
        raise SnapshotError(f"--root {root}: not a directory")
    if root and native:
        raise SnapshotError("--native records this host's osquery tables and cannot be used with --root")
    chosen = check_tables(tables, r)
    bad = [p for p in patterns if not p.startswith("/")]
    if bad:
        raise SnapshotError(f"--path {bad[0]!r}: patterns are absolute paths (inside the root with --root)")
    runner = Runner(r, platform or ("darwin" if r or sys.platform == "darwin" else "linux"))
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        tmp.touch()
    except OSError as exc:
        raise SnapshotError(f"cannot write {out}: {exc.strerror or exc}") from exc
    now = int(time.time()) if now is None else now
    warnings: list[str] = []
    counts: dict[str, int] = {}
    conn = apsw.Connection(str(tmp))
    try:
        with conn:
            conn.execute(ddl_script(None))
            host = socket.gethostname()
            conn.execute(f'CREATE TABLE "{META_TABLE}" (name TEXT, platform TEXT, description TEXT, now INTEGER, '
                         "source TEXT, source_sha256 TEXT, schema_sha256 TEXT)")
            conn.execute(f'INSERT INTO "{META_TABLE}" VALUES (?, ?, ?, ?, ?, ?, ?)',
                         (f"snapshot_{host}", runner.platform, f"snapshot of {host}" + (f" (root {r})" if r else ""),
                          now, "snapshot", "", schema_digest()))
            conn.execute(f'CREATE TABLE "{SNAPSHOT_TABLE}" (host TEXT, time INTEGER, dyldwatch_version TEXT, '
                         "platform TEXT, root TEXT, tables TEXT, patterns TEXT, row_counts TEXT, warnings TEXT)")
            insert_rows(conn, "time", [time_row(now)])
            images: list[str] = []
            order = sorted(chosen, key=lambda t: (t not in PROCESS_TABLES, t))  # images first: provenance uses them
            for table in order:
                if table in PATH_TABLES and not patterns:
                    if table == "dylib_provenance" and "process_images" in chosen:
                        warnings.append("dylib_provenance: no --path patterns; only the images process_images found")
                    else:
                        warnings.append(f"{table}: no --path patterns given; the table is empty")
                        counts[table] = 0
                        continue
                extra = images if table == "dylib_provenance" else []
                rows = runner.rows(table, patterns, extra_paths=extra)
                if table == "process_images":
                    rows = _collect_images(rows, images)
                counted = _counting(rows, table, progress)
                counts[table] = insert_rows(conn, table, counted, load_table(table).column_names())
            if native:
                from .sql.facts import native_tables

                facts = native_tables()
                for name, rows in native_rows(runner.platform).items():
                    counts[name] = insert_rows(conn, name, _counting(rows, name, progress),
                                               facts[name].column_names())
            conn.execute(f'INSERT INTO "{SNAPSHOT_TABLE}" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
                         (host, now, __version__, runner.platform, r or None, json.dumps(chosen),
                          json.dumps(list(patterns)), json.dumps(counts, sort_keys=True), json.dumps(warnings)))
    except BaseException:
        conn.close()
        tmp.unlink(missing_ok=True)
        raise
    conn.close()
    os.replace(tmp, out)
    return SnapshotResult(out, counts, warnings)


def _collect_images(rows: Iterable[Row], into: list[str]) -> Iterator[Row]:
    seen = set(into)
    for row in rows:
        p = row.get("path")
        if p and p.startswith("/") and p not in seen:
            seen.add(p)
            into.append(p)
        yield row


def _counting(rows: Iterable[Row], table: str, progress: Progress | None) -> Iterator[Row]:
    n = 0
    for row in rows:
        n += 1
        if progress is not None and n % 100 == 0:
            progress(table, n, False)
        yield row
    if progress is not None:
        progress(table, n, True)

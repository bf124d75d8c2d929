"""One table's `columns` and `generate` calls, answered the way osqueryd reads them.

- Rows are string maps. osquery turns a missing key into NULL and keeps TEXT '' as ''
  (osquery/sql/dynamic_table_row.cpp), so a None value is left out of the row, never sent as ''.
- Text that is not valid UTF-8 (a file name found on disk, a constraint osqueryd passed through)
  cannot cross Thrift as a string: it is sent with \\xNN escapes and the row's `error` says so.
- osqueryd abandons a call after --thrift_timeout seconds (300 by default,
  osquery/extensions/impl_thrift.cpp). `generate` runs against a budget well below that; when the
  budget runs out the rows so far are returned and the last row says where and how to narrow the query.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..tables.base import ContextError, Op, QueryContext, Table, TableUsageError

log = logging.getLogger("dyldwatch.extension")

#: Seconds one `generate` may take: a fifth of osquery's default --thrift_timeout (300 s).
DEFAULT_BUDGET = 60.0
BUDGET_ENV = "DYLDWATCH_GENERATE_BUDGET"


def budget_from_env(default: float = DEFAULT_BUDGET) -> float:
    """The generate budget from $DYLDWATCH_GENERATE_BUDGET (seconds), else `default`."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        log.warning("%s=%r is not a number of seconds; using %gs", BUDGET_ENV, raw, default)
        return default
    return value if value > 0 else default


def safe_text(text: str) -> tuple[str, bool]:
    """(text that encodes as UTF-8, whether it had to be escaped): undecodable bytes become \\xNN."""
    if text.isascii():
        return text, False
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        pass
    try:  # bytes that os.fsdecode / our Thrift reader kept as surrogates
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"), True
    except UnicodeEncodeError:  # lone surrogates from elsewhere (JSON \ud800 escapes)
        return text.encode("utf-8", "backslashreplace").decode("utf-8"), True


def to_wire(value: Any) -> tuple[str, bool]:
    """A row value as osquery's string, and whether bytes had to be escaped; booleans are 0/1."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, bool):
        return ("1" if value else "0"), False
    if isinstance(value, float):
        return repr(value), False
    if isinstance(value, bytes):
        return safe_text(value.decode("utf-8", "surrogateescape"))
    return str(value), False


@functools.lru_cache(maxsize=64)
def _shape(table: type[Table]) -> tuple[tuple[str, ...], bool]:
    names = tuple(table.column_names())
    return names, "error" in names


def render_row(table: type[Table], row: Mapping[str, Any]) -> dict[str, str]:
    """One row in declaration order, None left out; escaped text is noted in `error` when declared."""
    names, has_error = _shape(table)
    out: dict[str, str] = {}
    escaped: list[str] = []
    for name in names:
        value = row.get(name)
        if value is None:
            continue
        out[name], bad = to_wire(value)
        if bad:
            escaped.append(name)
    if escaped and has_error:
        note = f"not valid UTF-8 in {', '.join(escaped)}: undecodable bytes shown as \\xNN"
        out["error"] = f"{out['error']}; {note}" if out.get("error") else note
    return out


def render_rows(table: type[Table], rows: Any) -> list[dict[str, str]]:
    return [render_row(table, r) for r in rows]


def cut_row(table: type[Table], ctx: QueryContext, rows: list[dict[str, str]], elapsed: float,
            budget: float) -> dict[str, str] | None:
    """The error row that ends a cut result, or None when the table has no `error` column.

    osquery's SQLite re-checks every constraint on returned rows, so each constrained column takes
    the query's own `=` value or LIKE pattern (a pattern matches itself) and the row survives the
    filter (op-0 columns are pushed too: --extensions_default_index).
    """
    names = table.column_names()
    if "error" not in names:
        return None
    row: dict[str, str] = {}
    for name in names:
        exprs = ctx.get(name, Op.EQUALS, Op.LIKE)
        if exprs:
            row[name] = safe_text(exprs[0])[0]
    last = rows[-1].get("path") if rows else None
    where = f"; the last file read was {last}" if last else ""
    row["error"] = (
        f"{table.name}: walk cut after {len(rows)} rows and {elapsed:.1f}s (the extension's per-query budget is "
        f"{budget:g}s, under osquery's Thrift call timeout){where}; results are incomplete. Scope the query: a "
        "narrower LIKE pattern (one level '/dir/%' instead of '/dir/%%'), or directory = '/dir'.")
    return row


class TablePluginAdapter:
    """Answers osquery's `columns` and `generate` calls for one table."""

    def __init__(self, table: type[Table], budget: float = DEFAULT_BUDGET) -> None:
        self.table = table
        self.instance = table()
        self.budget = budget

    def call(self, request: Mapping[str, str]) -> tuple[int, str, list[dict[str, str]]]:
        """(status code, message, response) for one call; never raises."""
        action = request.get("action", "")
        if action == "columns":
            return 0, "OK", self.table.routes()
        if action != "generate":
            return 1, f"{self.table.name}: unknown action {action!r}", []
        started = time.monotonic()
        try:
            ctx = QueryContext.from_json(request.get("context"))
            rows, cut = self._generate(ctx)
        except (ContextError, TableUsageError) as exc:
            log.warning("%s: %s", self.table.name, safe_text(str(exc))[0])
            return 1, f"{self.table.name}: {exc}", []
        except Exception as exc:  # a bug must cost one query, never the extension
            log.exception("%s: generate failed", self.table.name)
            return 1, f"{self.table.name}: internal error: {type(exc).__name__}: {exc}", []
        elapsed = time.monotonic() - started
        if cut:
            log.warning("%s: generate cut at its %gs budget after %d rows", self.table.name, self.budget, len(rows))
            note = cut_row(self.table, ctx, rows, elapsed, self.budget)
            if note is not None:
                rows.append(note)
        log.debug("%s: %d rows in %.3fs", self.table.name, len(rows), elapsed)
        return 0, "OK", rows

    def _generate(self, ctx: QueryContext) -> tuple[list[dict[str, str]], bool]:
        """Rendered rows and whether the budget cut them. A worker thread walks, so that a walk that
        finds nothing for a long time is cut too; it stops at its next row once told to."""
        rows: list[dict[str, str]] = []
        failure: list[BaseException] = []
        stop = threading.Event()

        def produce() -> None:
            gen = self.instance.generate(ctx)
            try:
                for row in gen:
                    if stop.is_set():
                        break
                    rows.append(render_row(self.table, row))
            except BaseException as exc:
                failure.append(exc)
            finally:
                close = getattr(gen, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:
                        log.debug("%s: closing the generator failed", self.table.name, exc_info=True)

        worker = threading.Thread(target=produce, name=f"generate-{self.table.name}", daemon=True)
        worker.start()
        worker.join(self.budget)
        if worker.is_alive():
            stop.set()
            return rows[:len(rows)], True
        if failure:
            raise failure[0]
        return rows, False

"""One table's `columns` and `generate` calls, answered the way osqueryd reads them.

- Rows are string maps. osquery turns a missing key into NULL and keeps TEXT '' as ''
  (osquery/sql/dynamic_table_row.cpp), so a None value is left out of the row, never sent as ''.
- Text that is not valid UTF-8 (a file name found on disk, a constraint osqueryd passed through)
  cannot cross Thrift as a string: it is sent with \\xNN escapes and the row's `error` says so.
- Rows are encoded to Thrift bytes as they are produced (ext_wire), with only the columns the query
  reads; tables that keep encoded rows of unchanged files (generate_wire) hand those over as is.
- osqueryd cannot stream an answer, so one answer is capped at MAX_RESPONSE_BYTES of encoded rows:
  past it the rows so far are returned with an error row, as for the time budget below.
- osqueryd abandons a call after --thrift_timeout seconds (300 by default,
  osquery/extensions/impl_thrift.cpp). `generate` runs against a budget well below that; when the
  budget runs out the rows so far are returned and the last row says where and how to narrow the query.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..tables.base import ContextError, Op, QueryContext, Table, TableUsageError
from ..tables.values import safe_text, to_wire
from .wire import EncodedRows, RowEncoder, encode_pairs, row_bytes

__all__ = ["DEFAULT_BUDGET", "MAX_RESPONSE_BYTES", "TablePluginAdapter", "budget_from_env", "cut_row", "render_row",
           "render_rows", "safe_text", "to_wire"]

log = logging.getLogger("dyldwatch.extension")

#: Seconds one `generate` may take: a fifth of osquery's default --thrift_timeout (300 s).
DEFAULT_BUDGET = 60.0
BUDGET_ENV = "DYLDWATCH_GENERATE_BUDGET"
#: Encoded bytes one answer may hold (osqueryd holds a copy too, and its watchdog counts ours).
#: 24 MB: with the row caches and the interpreter (numpy included, once an entropy is read) the
#: process stays under osquery's 100 MB watchdog on a walk that reaches the cap (docs/scaling.md).
MAX_RESPONSE_BYTES = 24 << 20


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


def render_row(table: type[Table], row: Mapping[str, Any]) -> dict[str, str]:
    """One row as wire strings, every declared column, None left out (tools and the Thrift benchmark)."""
    return RowEncoder(table, QueryContext()).values(row)[0]


def render_rows(table: type[Table], rows: Any) -> list[dict[str, str]]:
    return [render_row(table, r) for r in rows]


def cut_row(table: type[Table], ctx: QueryContext, nrows: int, last: str | None, why: str) -> bytes | None:
    """The encoded error row that ends a cut result, or None when the table has no `error` column.

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
    where = f"; the last file read was {safe_text(last)[0]}" if last else ""
    row["error"] = (
        f"{table.name}: walk cut after {nrows} rows: {why}{where}; results are incomplete. Scope the query: a "
        "narrower LIKE pattern (one level '/dir/%' instead of '/dir/%%'), or directory = '/dir'.")
    return row_bytes(encode_pairs(row))


class TablePluginAdapter:
    """Answers osquery's `columns` and `generate` calls for one table."""

    def __init__(self, table: type[Table], budget: float = DEFAULT_BUDGET,
                 max_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.table = table
        self.instance = table()
        self.budget = budget
        self.max_bytes = max_bytes

    def call(self, request: Mapping[str, str]) -> tuple[int, str, list[Any]]:
        """(status code, message, response) for one call; never raises. `generate` answers with
        encoded rows (bytes, see ext_wire.EncodedResponse), `columns` with its route dicts."""
        action = request.get("action", "")
        if action == "columns":
            return 0, "OK", self.table.routes()
        if action != "generate":
            return 1, f"{self.table.name}: unknown action {action!r}", []
        started = time.monotonic()
        try:
            ctx = QueryContext.from_json(request.get("context"))
            out = self._generate(ctx)
        except (ContextError, TableUsageError) as exc:
            log.warning("%s: %s", self.table.name, safe_text(str(exc))[0])
            return 1, f"{self.table.name}: {exc}", []
        except Exception as exc:  # a bug must cost one query, never the extension
            log.exception("%s: generate failed", self.table.name)
            return 1, f"{self.table.name}: internal error: {type(exc).__name__}: {exc}", []
        elapsed = time.monotonic() - started
        rows = out.rows
        if out.cut is not None:
            rows = rows.snapshot()  # the walk of a query cut by time may still be adding rows
            why = (f"{elapsed:.1f}s (the extension's per-query budget is {self.budget:g}s, under osquery's Thrift "
                   "call timeout)" if out.cut == "time" else
                   f"{out.size >> 20} MB of rows (the extension's per-answer cap, which bounds its memory)")
            log.warning("%s: generate cut after %d rows: %s", self.table.name, rows.count, why)
            note = cut_row(self.table, ctx, rows.count, out.last, why)
            if note is not None:
                rows.add((note,))
        log.debug("%s: %d rows, %d bytes in %.3fs", self.table.name, rows.count, out.size, elapsed)
        return 0, "OK", rows

    def _generate(self, ctx: QueryContext) -> _Answer:
        """Encoded rows and whether the budget or the size cap cut them. A worker thread walks, so
        that a walk that finds nothing for a long time is cut too; it stops once told to."""
        out = _Answer()
        failure: list[BaseException] = []
        stop = threading.Event()
        encoder = RowEncoder(self.table, ctx)
        wire = getattr(self.instance, "generate_wire", None)

        def chunks() -> Iterator[tuple[str | None, Sequence[bytes]]]:
            if wire is not None:
                yield from wire(ctx, encoder)
                return
            for row in self.instance.generate(ctx):
                yield row.get("path"), (encoder.encode(row),)

        def produce() -> None:
            gen = chunks()
            try:
                for last, chunk in gen:
                    if stop.is_set():
                        break
                    out.size += out.rows.add(chunk)
                    out.last = last if last is not None else out.last
                    if out.size > self.max_bytes:
                        out.cut = "size"
                        break
            except BaseException as exc:
                failure.append(exc)
            finally:
                try:
                    gen.close()
                except Exception:
                    log.debug("%s: closing the generator failed", self.table.name, exc_info=True)

        done = WORKERS.run(produce)
        if not done.wait(self.budget):
            stop.set()
            out.cut = "time"
            return out
        if failure:
            raise failure[0]
        return out


class Workers:
    """Threads that walk for `generate`, kept between calls: starting a thread costs about as much as
    answering a small query (osquery's joins make many). A walk cut by the budget keeps its thread
    until it notices; the next call then takes another one, so a stuck walk never blocks a query."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._idle: list[queue.SimpleQueue[tuple[Callable[[], None], threading.Event]]] = []
        self._lock = threading.Lock()

    def run(self, work: Callable[[], None]) -> threading.Event:
        """Start `work` on an idle thread (or a new one); the event is set when it has returned."""
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), name="generate", daemon=True).start()
        done = threading.Event()
        inbox.put((work, done))
        return done

    def _serve(self, inbox: queue.SimpleQueue[tuple[Callable[[], None], threading.Event]]) -> None:
        while True:
            work, done = inbox.get()
            try:
                work()  # produce() keeps its own failures; nothing escapes
            finally:
                done.set()
            with self._lock:
                if len(self._idle) >= self.keep:
                    return
                self._idle.append(inbox)


#: The walking threads of every table of this process.
WORKERS = Workers()


class _Answer:
    """What one generate produced so far (shared with its worker thread)."""

    __slots__ = ("rows", "size", "last", "cut")

    def __init__(self) -> None:
        self.rows = EncodedRows()
        self.size = 0
        self.last: str | None = None
        self.cut: str | None = None

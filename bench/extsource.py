"""An engine Source that answers one of our tables through the real extension process, as osqueryd does.

`Engine` (dyldwatch.sql.engine) plans and filters every query the way osquery's SQLite does; at each
xFilter it asks a Source for rows. `ExtensionSource` turns that QueryContext into the context JSON
osqueryd's xFilter sends (osquery/core/tables.cpp setRequestFromContext: one entry per constrained
column with its (op, expr) list and the column's affinity, `colsUsed`, `colsUsedBitset` by column
position) and makes the `generate` call over the extension's Thrift socket. The answer's rows are
handed to the engine as the string maps osqueryd receives (a missing key is NULL); the engine types
them exactly as it types a LiveTable's rows (`_Cursor.Column`: column_value(wire_text(v), type)).

`Accounts` keeps, per query, what the extension did for it: calls, rows, the extension's CPU seconds
(utime + stime from /proc, read around the whole query), wall seconds spent in calls, and its peak
RSS (VmHWM, reset when the query starts).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from dyldwatch.sql.engine import RunState  # noqa: E402
from dyldwatch.sql.facts import TableFacts  # noqa: E402
from dyldwatch.tables.base import QueryContext, TableUsageError  # noqa: E402
from extproc import Extension  # noqa: E402


@dataclass
class Usage:
    """What the extension did for one query (or a sum of queries)."""

    calls: int = 0
    rows: int = 0
    seconds: float = 0.0  # wall seconds inside generate calls, decoding of the answer included
    cpu: float = 0.0  # extension CPU seconds (set when the query ends)
    peak_mb: float = 0.0  # extension VmHWM during the query
    by_table: Counter[str] = field(default_factory=Counter)  # calls per table
    contexts: dict[str, set[int]] = field(default_factory=dict)  # distinct contexts (hashes) per table
    errors: list[str] = field(default_factory=list)
    cut: int = 0  # answers whose last row says the walk was cut (budget or answer cap)


class Accounts:
    """Per-query accounting of one extension process."""

    def __init__(self, ext: Extension) -> None:
        self.ext = ext
        self.current = Usage()
        self._cpu0 = 0.0

    def begin(self) -> None:
        self.current = Usage()
        self.ext.reset_peak()
        self._cpu0 = self.ext.cpu()

    def end(self) -> Usage:
        u = self.current
        u.cpu = self.ext.cpu() - self._cpu0
        u.peak_mb = self.ext.peak_mb()
        return u


def context_json(facts: TableFacts, ctx: QueryContext) -> str:
    """The context osqueryd's xFilter sends an extension for this call."""
    position = {c.name: i for i, c in enumerate(facts.columns)}
    types = {c.name: c.type for c in facts.columns}
    constraints = [{"name": name, "list": [{"op": int(k.op), "expr": k.expr} for k in items],
                    "affinity": types.get(name, "TEXT")}
                   for name, items in ctx.constraints.items() if items]
    doc: dict[str, Any] = {"constraints": constraints}
    if ctx.cols_used is not None:
        used = sorted(ctx.cols_used, key=lambda c: position.get(c, 1 << 30))
        doc["colsUsed"] = used
        bits = 0
        for name in used:
            if name in position:
                bits |= 1 << min(position[name], 63)
        doc["colsUsedBitset"] = bits
    return json.dumps(doc)


class ExtensionSource:
    """One of our tables, answered by the running extension over its socket."""

    def __init__(self, facts: TableFacts, ext: Extension, accounts: Accounts) -> None:
        self.facts = facts
        self.ext = ext
        self.accounts = accounts

    def rows(self, ctx: QueryContext, state: RunState) -> Iterable[dict[str, str]]:
        text = context_json(self.facts, ctx)
        t = time.perf_counter()
        resp = self.ext.call(self.facts.name, {"action": "generate", "context": text})
        u = self.accounts.current
        u.seconds += time.perf_counter() - t
        u.calls += 1
        u.by_table[self.facts.name] += 1
        u.contexts.setdefault(self.facts.name, set()).add(hash(text))
        if resp.status.code != 0:
            u.errors.append(f"{self.facts.name}: {resp.status.message}")
            raise TableUsageError(f"{self.facts.name}: extension answered {resp.status.code}: {resp.status.message}")
        rows = resp.response
        u.rows += len(rows)
        if rows and "walk cut after" in (rows[-1].get("error") or ""):
            u.cut += 1
            u.errors.append(rows[-1]["error"][:200])
        return rows


class TimedSource:
    """A Source in this process (our emulation of an osquery native table), its calls and CPU counted."""

    def __init__(self, inner: Any, counts: Counter[str], cpu: Counter[str]) -> None:
        self.inner = inner
        self.facts = inner.facts
        self.counts = counts
        self.cpu = cpu

    def rows(self, ctx: QueryContext, state: RunState) -> list[Any]:
        t = time.process_time()
        rows = list(self.inner.rows(ctx, state))
        self.cpu[self.facts.name] += time.process_time() - t
        self.counts[self.facts.name] += 1
        return rows

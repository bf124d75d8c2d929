"""The plugin adapter over real Thrift, with tables built to misbehave.

The runtime runs in this process (so a table can be made to fail on purpose), but every call
crosses a UNIX socket through osquery's generated Thrift client, exactly as osqueryd makes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dyldwatch.extension.runtime import ExtensionRuntime
from dyldwatch.tables.base import INDEX, INTEGER, REQUIRED, TEXT, Column, QueryContext, Row, Table

from .harness import ExtensionConnection, FakeOsqueryd, constraint, context


class Numbers(Table):
    """A generator table (the osquery package would fail on it: it indexes rows as a list)."""

    name: ClassVar[str] = "numbers"
    description: ClassVar[str] = "n for each requested n, as a generator"
    columns: ClassVar[tuple[Column, ...]] = (
        Column("n", INTEGER, "a number", INDEX),
        Column("label", TEXT, "its text", REQUIRED),
        Column("missing", TEXT, "None for even n (NULL: the key is left out), '' for odd n (stays '')"),
    )

    def generate(self, ctx: QueryContext) -> Iterator[Row]:
        for n in ctx.equals_int("n") or [1, 2, 3]:
            yield {"n": n, "label": f"#{n}", "flag": True, "missing": None if n % 2 == 0 else ""}


class Exploding(Table):
    name: ClassVar[str] = "exploding"
    description: ClassVar[str] = "raises half way through its rows"
    columns: ClassVar[tuple[Column, ...]] = (Column("n", INTEGER, "a number"),)

    def generate(self, ctx: QueryContext) -> Iterator[Row]:
        yield {"n": 1}
        raise RuntimeError("boom in generate")


class Stalling(Table):
    """A walk that finds nothing for a long time (yields no row the adapter could stop at)."""

    name: ClassVar[str] = "stalling"
    description: ClassVar[str] = "sleeps before its only row"
    columns: ClassVar[tuple[Column, ...]] = (Column("path", TEXT, "a path", REQUIRED), Column("error", TEXT, "why"))

    def generate(self, ctx: QueryContext) -> Iterator[Row]:
        threading.Event().wait(3)
        yield {"path": "/late"}


class Runs(Table):
    """Answers in the pieces a kept answer is sent in: single rows and runs of rows joined."""

    name: ClassVar[str] = "runs"
    description: ClassVar[str] = "rows sent one by one and as joined runs"
    columns: ClassVar[tuple[Column, ...]] = (Column("n", INTEGER, "a number"),)

    def generate(self, ctx: QueryContext) -> Iterator[Row]:
        yield from ({"n": n} for n in range(7))

    def generate_wire(self, ctx: QueryContext, encoder: Any) -> Iterator[tuple[str, Any]]:
        rows = [encoder.encode({"n": n}) for n in range(7)]
        yield "a", (rows[0],)
        yield "b", encoder.join_rows(rows[1:4])
        yield "c", tuple(rows[4:6])
        yield "d", encoder.join_rows(rows[6:])


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[FakeOsqueryd, ExtensionRuntime, ExtensionConnection, list[int]]]:
    manager = FakeOsqueryd(tmp_path)
    exits: list[int] = []
    runtime: ExtensionRuntime

    def terminate(code: int) -> None:
        exits.append(code)

    runtime = ExtensionRuntime(manager.path, timeout=5, interval=0.2, tables=[Numbers, Exploding, Stalling, Runs],
                               terminate=terminate, budget=0.5)
    thread = threading.Thread(target=runtime.serve, daemon=True)
    thread.start()
    reg = manager.wait_registered()
    conn = ExtensionConnection(f"{manager.path}.{reg.uuid}")
    try:
        yield manager, runtime, conn, exits
    finally:
        conn.close()
        manager.stop()
        thread.join(timeout=10)


def test_registry_carries_option_bits(served) -> None:
    manager, _, _, _ = served
    routes = manager.handler.registrations[0].registry["table"]["numbers"]
    assert routes == [
        {"id": "column", "name": "n", "type": "INTEGER", "op": "1"},
        {"id": "column", "name": "label", "type": "TEXT", "op": "2"},
        {"id": "column", "name": "missing", "type": "TEXT", "op": "8"},  # not a key: never INDEX by default
    ]
    assert manager.handler.registrations[0].info.name == "dyldwatch"


def test_generator_rows_are_string_maps_none_is_a_missing_key(served) -> None:
    """osquery's DynamicTableRow reads a missing key as NULL and '' as ''; undeclared keys are dropped."""
    _, _, conn, _ = served
    resp = conn.generate("numbers", context(constraint("n", (2, "7"), (2, "8"), affinity="INTEGER")))
    assert resp.status.code == 0
    assert resp.response == [{"n": "7", "label": "#7", "missing": ""}, {"n": "8", "label": "#8"}]


def test_rows_joined_into_runs_are_counted_and_read_as_rows(served) -> None:
    """A run of rows is one piece on our side; osqueryd reads the list header's count of maps."""
    _, _, conn, _ = served
    resp = conn.generate("runs", context())
    assert resp.status.code == 0
    assert resp.response == [{"n": str(n)} for n in range(7)]
    assert conn.ping().code == 0  # the message ended where the client expected: the stream is in step


def test_raising_generate_is_a_failed_status_and_the_extension_keeps_serving(served) -> None:
    _, _, conn, _ = served
    resp = conn.generate("exploding", context())
    assert resp.status.code == 1
    assert "boom in generate" in resp.status.message and resp.response == []
    assert conn.ping().code == 0
    assert conn.generate("numbers", context()).status.code == 0


def test_unknown_action_table_and_registry_fail_politely(served) -> None:
    _, _, conn, _ = served
    assert conn.client.call("table", "numbers", {"action": "explode"}).status.code == 1
    assert conn.client.call("table", "numbers", {}).status.code == 1
    assert "no table" in conn.client.call("table", "nope", {"action": "columns"}).status.message
    assert conn.client.call("config", "numbers", {"action": "genConfig"}).status.code == 1
    assert conn.ping().code == 0


def test_malformed_context_is_reported(served) -> None:
    _, _, conn, _ = served
    resp = conn.generate("numbers", "{not json")
    assert resp.status.code == 1 and "not JSON" in resp.status.message
    resp = conn.generate("numbers", '{"constraints": [{"name": "n", "list": [{"op": "x"}]}]}')
    assert resp.status.code == 1


def test_columns_action_returns_routes(served) -> None:
    _, _, conn, _ = served
    resp = conn.columns("numbers")
    assert resp.status.code == 0 and [r["name"] for r in resp.response] == ["n", "label", "missing"]


def test_exits_when_manager_goes_away(served) -> None:
    manager, _, _, exits = served
    manager.stop()
    for _ in range(100):
        if exits:
            break
        threading.Event().wait(0.05)
    assert exits == [0]


def test_accelerated_protocol_is_used_when_thrift_has_its_c_extension() -> None:
    pytest.importorskip("thrift.protocol.fastbinary")
    from thrift.protocol.TBinaryProtocol import TBinaryProtocolAcceleratedFactory

    from dyldwatch.extension.runtime import protocol_factory

    assert isinstance(protocol_factory(), TBinaryProtocolAcceleratedFactory)


def test_budget_cuts_a_walk_that_yields_nothing(served) -> None:
    _, _, conn, _ = served
    started = time.monotonic()
    resp = conn.generate("stalling", context(constraint("path", (65, "/data/%%"))))
    assert time.monotonic() - started < 2.0
    assert resp.status.code == 0
    (row,) = resp.response
    assert row["path"] == "/data/%%" and "walk cut after 0 rows" in row["error"] and "0.5s" in row["error"]
    assert conn.generate("numbers", context()).status.code == 0  # the budget is per call


def test_a_connection_per_call_starts_no_thread_and_a_long_call_delays_no_other(
        served, monkeypatch: pytest.MonkeyPatch) -> None:
    """osqueryd connects anew for every call (callExtension, osquery/extensions/extensions.cpp)."""
    manager, runtime, _, _ = served
    path = f"{manager.path}.{runtime.uuid}"

    def call() -> None:
        conn = ExtensionConnection(path)
        assert conn.generate("numbers", context()).status.code == 0
        conn.close()

    for _ in range(8):  # the first ones may start acceptors until enough wait
        call()
    started: list[str] = []
    real_start = threading.Thread.start

    def counting(self: threading.Thread) -> None:
        started.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", counting)
    for _ in range(16):  # one after another: the waiting acceptors take them (a thread per call did not)
        call()
    assert len(started) <= 2, started
    monkeypatch.undo()
    slow: list[float] = []

    def stall() -> None:
        started = time.monotonic()
        conn = ExtensionConnection(path)
        assert "walk cut" in conn.generate("stalling", context(constraint("path", (2, "/x"))
                                                              )).response[0]["error"]
        conn.close()
        slow.append(time.monotonic() - started)

    calls = [threading.Thread(target=stall) for _ in range(3)]  # three long calls at once
    for t in calls:
        t.start()
    time.sleep(0.1)
    started = time.monotonic()
    conn = ExtensionConnection(path)
    assert conn.generate("numbers", context()).status.code == 0  # answered while they run
    quick = time.monotonic() - started
    conn.close()
    for t in calls:
        t.join(10)
    assert len(slow) == 3 and quick < min(slow) - 0.1


def test_walking_threads_are_reused_and_a_busy_one_never_blocks_the_next_call() -> None:
    from dyldwatch.extension.adapter import Workers

    workers = Workers(keep=2)
    seen: list[int] = []

    def note() -> None:
        seen.append(threading.get_ident())

    for _ in range(3):
        assert workers.run(note).wait(5)
        time.sleep(0.01)  # the thread goes back to the idle list after setting its event
    assert len(set(seen)) == 1  # one thread served the three calls
    release = threading.Event()
    stuck = workers.run(lambda: release.wait(5))  # a walk that does not return yet
    assert not stuck.wait(0.05)
    assert workers.run(note).wait(5)  # served by another thread meanwhile
    assert seen[-1] != seen[0]  # the idle thread took the stuck walk; a new one served this call
    release.set()
    assert stuck.wait(5)

"""The extension over Thrift: rows per second against in-process generate, and peak memory.

- a 100k-row result through the Thrift socket vs the same rows from `generate` in-process
- peak RSS (VmHWM) of the real extension process while it scans the whole corpus
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from thrift.protocol import TBinaryProtocol  # noqa: E402
from thrift.transport import TSocket, TTransport  # noqa: E402

from common import corpus_files, report  # noqa: E402
from dyldwatch.extension.adapter import render_rows  # noqa: E402
from dyldwatch.extension.protocol.wire import Extension  # noqa: E402
from dyldwatch.extension.runtime import ExtensionRuntime  # noqa: E402
from dyldwatch.tables.base import INTEGER, TEXT, Column, QueryContext, Row, Table  # noqa: E402

ROWS = 100_000


class Bulk(Table):
    """Rows shaped like macho_load_commands rows, generated without I/O."""

    name: ClassVar[str] = "bulk"
    description: ClassVar[str] = "benchmark rows"
    columns: ClassVar[tuple[Column, ...]] = (
        Column("path", TEXT, ""), Column("arch", TEXT, ""), Column("cmd_index", INTEGER, ""),
        Column("cmd", TEXT, ""), Column("name", TEXT, ""), Column("weak", INTEGER, ""),
        Column("resolved_path", TEXT, ""), Column("error", TEXT, ""),
    )

    def generate(self, ctx: QueryContext) -> Iterator[Row]:
        for i in range(ROWS):
            yield {"path": f"/Applications/App{i % 50}.app/Contents/MacOS/App", "arch": "arm64", "cmd_index": i % 40,
                   "cmd": "LC_LOAD_DYLIB", "name": "@rpath/libfoo.dylib", "weak": 0,
                   "resolved_path": "/Applications/App.app/Contents/Frameworks/libfoo.dylib", "error": None}


def thrift_throughput() -> None:
    from harness import FakeOsqueryd

    with tempfile.TemporaryDirectory() as tmp:
        manager = FakeOsqueryd(tmp)
        runtime = ExtensionRuntime(manager.path, timeout=5, interval=5, tables=[Bulk], terminate=lambda code: None)
        threading.Thread(target=runtime.serve, daemon=True).start()
        reg = manager.wait_registered()
        sock = TSocket.TSocket(unix_socket=f"{manager.path}.{reg.uuid}")
        transport = TTransport.TBufferedTransport(sock)
        client = Extension.Client(TBinaryProtocol.TBinaryProtocolAccelerated(transport))
        transport.open()
        ctx = json.dumps({"constraints": []})

        t = time.perf_counter()
        rows = render_rows(Bulk, Bulk().generate(QueryContext()))
        t_local = time.perf_counter() - t
        assert len(rows) == ROWS
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            resp = client.call("table", "bulk", {"action": "generate", "context": ctx})
            best = min(best, time.perf_counter() - t)
            assert resp.status.code == 0 and len(resp.response) == ROWS
        transport.close()
        manager.stop()
    report("in-process generate + render, rows/s", ROWS / t_local, "rows/s")
    report("through Thrift (UNIX socket, accelerated), rows/s", ROWS / best, "rows/s")
    report("Thrift vs in-process", best / t_local, "x slower")


def peak_rss() -> None:
    from harness import constraint, context, running_extension

    files = corpus_files()
    directory = os.path.dirname(files[0])
    with tempfile.TemporaryDirectory() as tmp, running_extension(tmp, interval=2) as (_, proc, conn):
        n = 0
        for table in ("macho_load_commands", "macho_info"):
            resp = conn.generate(table, context(constraint("directory", (2, directory))))
            assert resp.status.code == 0, resp.status.message
            n += len(resp.response)
        with open(f"/proc/{proc.pid}/status") as fh:
            hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    report(f"extension peak RSS scanning the corpus ({n} rows)", hwm / 1024, "MB", "< 150 MB", hwm / 1024 < 150)


def main() -> None:
    print("Extension over Thrift")
    thrift_throughput()
    peak_rss()


if __name__ == "__main__":
    main()

"""The real extension process as osqueryd sees it, for the socket benchmarks.

Starts `python -m dyldwatch extension` against tests/harness.py's fake osqueryd, and reads the
process's own accounting from /proc: CPU seconds (utime + stime) and peak RSS (VmHWM), which
`reset_peak` sets back to the current RSS so each scan reports its own peak.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from thrift.protocol import TBinaryProtocol  # noqa: E402
from thrift.transport import TSocket, TTransport  # noqa: E402

from dyldwatch.extension.protocol.wire import Extension as Wire  # noqa: E402
from harness import running_extension  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")
#: The size of each answer seen, by (table, context): the same question over unchanged files gets an
#: answer of the same size, so reading it needs no decoding until that many bytes have arrived.
ANSWER_SIZES: dict[tuple[str, str], int] = {}


@dataclass
class Call:
    """One generate call: wall seconds until the answer's last byte arrived, extension CPU seconds,
    rows, the peak RSS during it, and the seconds a Python client then spends decoding the answer."""

    seconds: float
    cpu: float
    rows: int
    peak_mb: float
    status: int
    message: str
    cut: bool = False  # the last row says the walk was cut (time budget or answer cap)
    decode: float = 0.0
    size: int = 0  # bytes of the answer on the wire

    @property
    def decoded_seconds(self) -> float:
        """What a Python client waits for, decoding included (osqueryd decodes in C++)."""
        return self.seconds + self.decode


class _Recorder:
    """A socket's reads, kept: the answer is read whole off the wire, timed, and decoded after."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock

    def read_answer(self, expect: int = 0) -> tuple[bytes, float]:
        """Everything the extension sends for one call. The reply is a Thrift message with no length
        in front, so its end is found by decoding; the bytes are collected first (the clock stops
        at the last one) and decoded afterwards, so the client's own decoding is not counted.
        Returns the bytes and the perf_counter() at which the last of them arrived."""
        chunks: list[bytes] = []
        handle = self.sock.handle
        handle.setblocking(True)
        got = 0
        while True:
            chunk = handle.recv(1 << 20)
            arrived = time.perf_counter()
            if not chunk:
                raise EOFError("the extension closed the connection mid-answer")
            chunks.append(chunk)
            got += len(chunk)
            if got >= expect and _complete(chunks, handle):
                return b"".join(chunks), arrived


def _complete(chunks: list[bytes], handle: Any) -> bool:
    """Whether the bytes so far hold a whole reply. A reply ends with two struct stops (ExtensionResponse,
    call_result), so a read ending in two zero bytes after which nothing more comes for a moment is
    decoded to find out (the moment is not counted: the clock stopped at the read)."""
    if not chunks[-1].endswith(b"\x00\x00") or select.select([handle], [], [], 0.01)[0]:
        return False
    try:
        _decode(b"".join(chunks))
    except Exception:
        return False
    return True


def _decode(data: bytes) -> Any:
    from thrift.transport import TTransport as _T

    proto = TBinaryProtocol.TBinaryProtocolAccelerated(_T.TMemoryBuffer(data))
    proto.readMessageBegin()
    result = Wire.call_result()
    result.read(proto)
    proto.readMessageEnd()
    return result.success


class Extension:
    """One running extension, called as osqueryd calls it: a connection of its own for every call
    (callExtension in osquery/extensions/extensions.cpp), timed from the connect; calls accounted."""

    def __init__(self, pid: int, socket_path: str) -> None:
        self.pid = pid
        self.socket_path = socket_path

    @contextlib.contextmanager
    def connection(self) -> Iterator[tuple[Any, Any]]:
        """(socket, client) for one call."""
        sock = TSocket.TSocket(unix_socket=self.socket_path)
        sock.setTimeout(600_000)  # calls may run longer than the harness client's 120 s
        transport = TTransport.TBufferedTransport(sock)
        transport.open()
        try:
            # osqueryd decodes answers in C++; the accelerated reader is the closest Python gets to
            # it, so the client's own decoding does not dominate what is measured.
            yield sock, Wire.Client(TBinaryProtocol.TBinaryProtocolAccelerated(transport))
        finally:
            transport.close()

    def call(self, table: str, request: dict[str, str]) -> Any:
        """One call, its answer decoded (what the pack benchmarks' SQL reads)."""
        with self.connection() as (_, client):
            return client.call("table", table, request)

    def cpu(self) -> float:
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK

    def _status(self, key: str) -> float:
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def rss_mb(self) -> float:
        return self._status("VmRSS:")

    def peak_mb(self) -> float:
        return self._status("VmHWM:")

    def reset_peak(self) -> None:
        """VmHWM back to the current RSS (Linux clear_refs 5), so the next peak is the next call's."""
        with open(f"/proc/{self.pid}/clear_refs", "w") as fh:
            fh.write("5")

    def generate(self, table: str, constraints: list[dict[str, Any]], cols: list[str] | None) -> Call:
        """One call exactly as osqueryd makes it (context JSON with colsUsed and its bitset)."""
        text = _context(constraints, cols)
        self.reset_peak()
        cpu0 = self.cpu()
        seconds, data = self._timed(table, text)
        cpu = self.cpu() - cpu0
        t = time.perf_counter()
        resp = _decode(data)
        decode = time.perf_counter() - t
        last = resp.response[-1].get("error", "") if resp.response else ""
        return Call(seconds, cpu, len(resp.response), self.peak_mb(), resp.status.code,
                    resp.status.message, "walk cut after" in last, decode, len(data))

    def repeat(self, table: str, constraints: list[dict[str, Any]], cols: list[str] | None, times: int) -> list[Call]:
        """The same call `times` times back to back, as a schedule's queries follow one another: the
        first decoded, the others compared byte for byte with it (decoding each would leave the
        extension idle between calls, and this VM runs a call after an idle moment markedly slower)."""
        first = self.generate(table, constraints, cols)
        text = _context(constraints, cols)
        expected = self._last
        calls = [first]
        for _ in range(times - 1):
            self.reset_peak()
            cpu0 = self.cpu()
            seconds, data = self._timed(table, text)
            if data != expected:
                raise AssertionError(f"{table}: a repeated call answered differently ({len(data)} bytes, "
                                     f"{len(expected)} before)")
            calls.append(Call(seconds, self.cpu() - cpu0, first.rows, self.peak_mb(), first.status, first.message,
                              first.cut, first.decode, len(data)))
        return calls

    def answer_bytes(self, table: str, constraints: list[dict[str, Any]], cols: list[str] | None) -> bytes:
        """One call's answer as it came off the socket, not decoded (no pause before the next call)."""
        return self._timed(table, _context(constraints, cols))[1]

    def _timed(self, table: str, text: str) -> tuple[float, bytes]:
        t = time.perf_counter()
        with self.connection() as (sock, client):
            client.send_call("table", table, {"action": "generate", "context": text})
            data, arrived = _Recorder(sock).read_answer(ANSWER_SIZES.get((table, text), 0))
        ANSWER_SIZES[(table, text)] = len(data)
        self._last = data
        return arrived - t, data


def _context(constraints: list[dict[str, Any]], cols: list[str] | None) -> str:
    doc: dict[str, Any] = {"constraints": constraints}
    if cols is not None:
        doc["colsUsed"] = cols
        doc["colsUsedBitset"] = (1 << len(cols)) - 1
    return json.dumps(doc)


def pin_cpus() -> tuple[set[int] | None, set[int] | None]:
    """(the benchmark's CPUs, the extension's): on a machine with two or more, the extension gets the
    last one to itself and the benchmark (the client and its baselines) the others, so neither is
    moved between CPUs mid-measurement (unpinned, a call on this 2-vCPU VM varies by a third)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return None, None
    return set(cpus[:-1]), {cpus[-1]}


BENCH_CPUS, EXTENSION_CPUS = pin_cpus()
if BENCH_CPUS:
    os.sched_setaffinity(0, BENCH_CPUS)


@contextlib.contextmanager
def extension(budget: float = 290.0) -> Iterator[Extension]:
    """A fresh extension process (cold table caches) with a generous generate budget."""
    # Not --verbose: osqueryd passes it only when it runs verbose itself.
    with tempfile.TemporaryDirectory() as tmp, running_extension(
            tmp, interval=5, verbose=False, cpus=EXTENSION_CPUS,
            env={"DYLDWATCH_GENERATE_BUDGET": str(budget)}) as (manager, proc, _):
        uuid = manager.handler.registrations[-1].uuid
        yield Extension(proc.pid, f"{manager.path}.{uuid}")


def eq(column: str, *values: str) -> dict[str, Any]:
    return {"name": column, "list": [{"op": 2, "expr": v} for v in values], "affinity": "TEXT"}


def like(column: str, pattern: str) -> dict[str, Any]:
    return {"name": column, "list": [{"op": 65, "expr": pattern}], "affinity": "TEXT"}

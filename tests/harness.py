"""A stand-in for osqueryd's extension manager, speaking real Thrift over a UNIX socket.

It plays osqueryd's side of an autoloaded extension: serves ExtensionManager on `<dir>/osquery.em`,
accepts `registerExtension` and records the registry, hands out a uuid, lists it in `extensions()`
for the extension's watcher (until a test makes it `forget` the uuid), and lets a test call the
extension on `<socket>.<uuid>` exactly as osqueryd does. Stopping it closes the socket, which is
how an extension sees osqueryd die.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osquery.extensions import Extension, ExtensionManager
from osquery.extensions.ttypes import ExtensionResponse, ExtensionStatus, InternalExtensionInfo
from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Registration:
    uuid: int
    info: InternalExtensionInfo
    registry: dict[str, dict[str, list[dict[str, str]]]]


@dataclass
class FakeManagerHandler(ExtensionManager.Iface):
    """What osqueryd answers on its manager socket."""

    registrations: list[Registration] = field(default_factory=list)
    pings: int = 0
    refuse: str | None = None
    _next_uuid: int = 1000

    def ping(self) -> ExtensionStatus:
        self.pings += 1
        return ExtensionStatus(code=0, message="OK")

    def call(self, registry: str, item: str, request: Mapping[str, str]) -> ExtensionResponse:
        return ExtensionResponse(status=ExtensionStatus(code=1, message="core plugins not served here"), response=[])

    def shutdown(self) -> None:
        return None

    def extensions(self) -> dict[int, Any]:
        """Registered extensions by uuid, as osqueryd lists them (the SDK's watcher checks its own)."""
        return {r.uuid: r.info for r in self.registrations}

    def forget(self, uuid: int) -> None:
        """osqueryd drops an extension from its list (its watcher gave up on it) but keeps running."""
        self.registrations = [r for r in self.registrations if r.uuid != uuid]

    def options(self) -> dict[str, Any]:
        return {}

    def registerExtension(self, info: InternalExtensionInfo, registry: dict) -> ExtensionStatus:
        if self.refuse:
            return ExtensionStatus(code=1, message=self.refuse)
        # osqueryd refuses a second extension that claims the same table name.
        for reg in self.registrations:
            clash = set(reg.registry.get("table", {})) & set(registry.get("table", {}))
            if clash:
                return ExtensionStatus(code=1, message=f"duplicate table: {sorted(clash)[0]}")
        self._next_uuid += 1
        self.registrations.append(Registration(self._next_uuid, info, registry))
        return ExtensionStatus(code=0, message="OK", uuid=self._next_uuid)

    def deregisterExtension(self, uuid: int) -> ExtensionStatus:
        self.registrations = [r for r in self.registrations if r.uuid != uuid]
        return ExtensionStatus(code=0, message="OK")

    def query(self, sql: str) -> ExtensionResponse:
        return ExtensionResponse(status=ExtensionStatus(code=1, message="no SQL engine here"), response=[])

    def getQueryColumns(self, sql: str) -> ExtensionResponse:
        return self.query(sql)


class FakeOsqueryd:
    """Serves the manager on a UNIX socket in a background thread until `stop()`."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = os.path.join(os.fspath(directory), "osquery.em")
        self.handler = FakeManagerHandler()
        self._processor = ExtensionManager.Processor(self.handler)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(16)
        self._clients: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._clients.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        sock = TSocket.TSocket()
        sock.setHandle(conn)
        transport = TTransport.TBufferedTransport(sock)
        proto = TBinaryProtocol.TBinaryProtocol(transport)
        try:
            while not self._stopped.is_set():
                self._processor.process(proto, proto)
        except (TTransport.TTransportException, OSError, EOFError):
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        """osqueryd dies: the manager socket and every open connection go away."""
        self._stopped.set()
        for conn in [self._listener, *self._clients]:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        with suppress(OSError):
            os.unlink(self.path)

    def wait_registered(self, timeout: float = 20.0) -> Registration:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.handler.registrations:
                return self.handler.registrations[-1]
            time.sleep(0.05)
        raise TimeoutError("the extension did not register")


class BytesBinaryProtocol(TBinaryProtocol.TBinaryProtocol):
    """Writes a bytes value as is: osqueryd's strings are bytes and need not be UTF-8."""

    def writeString(self, str_val: str | bytes) -> None:  # noqa: N802 (Thrift's name)
        self.writeBinary(str_val if isinstance(str_val, bytes) else str_val.encode("utf-8"))


class ExtensionConnection:
    """osqueryd's client to one extension's socket `<manager socket>.<uuid>`."""

    def __init__(self, path: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise TimeoutError(f"extension socket {path} never appeared")
            time.sleep(0.05)
        sock = TSocket.TSocket(unix_socket=path)
        sock.setTimeout(120_000)
        self.transport = TTransport.TBufferedTransport(sock)
        self.client = Extension.Client(BytesBinaryProtocol(self.transport))
        while True:
            try:
                self.transport.open()
                break
            except TTransport.TTransportException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def ping(self) -> ExtensionStatus:
        return self.client.ping()

    def columns(self, table: str) -> ExtensionResponse:
        return self.client.call("table", table, {"action": "columns"})

    def generate(self, table: str, context: Mapping[str, Any] | str | bytes) -> ExtensionResponse:
        text = context if isinstance(context, str | bytes) else json.dumps(context)
        return self.client.call("table", table, {"action": "generate", "context": text})

    def close(self) -> None:
        self.transport.close()


def constraint(name: str, *pairs: tuple[int, str], affinity: str = "TEXT") -> dict[str, Any]:
    """One entry of osquery's context JSON: a column and its (op, expr) list."""
    return {"name": name, "list": [{"op": op, "expr": expr} for op, expr in pairs], "affinity": affinity}


def context(*constraints: dict[str, Any], cols: list[str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"constraints": list(constraints)}
    if cols is not None:
        doc["colsUsed"] = cols
        doc["colsUsedBitset"] = (1 << len(cols)) - 1
    return doc


def extension_command(socket_path: str, *, timeout: float = 5, interval: float = 0.5, launcher: bool = False,
                      verbose: bool = True) -> list[str]:
    """The command line osqueryd uses to autoload an extension (with --verbose when osqueryd runs
    verbose, as the tests want to read what the extension logged)."""
    flags = ["--socket", socket_path, "--timeout", str(timeout), "--interval", str(interval)]
    if verbose:
        flags.append("--verbose")
    if launcher:
        return [str(ROOT / "extension" / "dyldwatch.ext"), *flags]
    return [sys.executable, "-m", "dyldwatch", "extension", *flags]


@contextmanager
def running_extension(tmp: str | os.PathLike[str], *, env: Mapping[str, str] | None = None, umask: int = -1,
                      cpus: set[int] | None = None,
                      **kw: Any) -> Iterator[tuple[FakeOsqueryd, subprocess.Popen[bytes], ExtensionConnection]]:
    """A fake osqueryd, the extension autoloaded against it, and a connection to the extension
    (kept on `cpus` when given, as the benchmarks do so the scheduler does not move it mid-call)."""
    manager = FakeOsqueryd(tmp)
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONPATH", str(ROOT / "src"))
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    proc = subprocess.Popen(extension_command(manager.path, **kw), env=full_env, umask=umask,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=pin)
    conn = None
    try:
        reg = manager.wait_registered()
        conn = ExtensionConnection(f"{manager.path}.{reg.uuid}")
        yield manager, proc, conn
    finally:
        if conn is not None:
            conn.close()
        manager.stop()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def decode_rows(rows: Iterable[bytes] | bytes) -> list[dict[str, str]]:
    """Rows as the extension encodes them (Thrift map<string,string> each), decoded as osqueryd would.
    A piece may hold several rows back to back (a kept answer's RowRun), and may come alone."""
    from thrift.protocol import TBinaryProtocol
    from thrift.transport import TTransport

    out = []
    for raw in (rows,) if isinstance(rows, bytes) else rows:
        buf = TTransport.TMemoryBuffer(raw)
        proto = TBinaryProtocol.TBinaryProtocol(buf)
        while buf.cstringio_buf.tell() < len(raw):
            _, _, n = proto.readMapBegin()
            out.append({proto.readString(): proto.readString() for _ in range(n)})
    return out

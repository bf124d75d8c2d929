"""Ask a freshly started extension one question over its own Thrift socket, as osqueryd would.

Plays osqueryd's side just enough: serves an extension manager on a private socket, starts
`dyldwatch extension` (or a given artifact) against it, waits for the registration, sends one
`generate` call with osquery's query-context JSON to the socket the extension bound, and stops it.
It proves an installed artifact end to end without osquery (the demo's last step, and an
operator's check before rollout); it is not a test double: the tests use their own harness.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from .protocol.wire import Extension, ExtensionManager
from .protocol.wire.ttypes import ExtensionResponse, ExtensionStatus


class _Manager(ExtensionManager.Iface):
    def __init__(self) -> None:
        self.registered: dict[int, Any] = {}
        self.event = threading.Event()

    def ping(self) -> ExtensionStatus:
        return ExtensionStatus(code=0, message="OK")

    def call(self, registry: str, item: str, request: Mapping[str, str]) -> ExtensionResponse:
        return ExtensionResponse(status=ExtensionStatus(code=1, message="not served by the probe"), response=[])

    def shutdown(self) -> None:
        return None

    def extensions(self) -> dict[int, Any]:
        return dict(self.registered)

    def options(self) -> dict[str, Any]:
        return {}

    def registerExtension(self, info: Any, registry: dict[str, Any]) -> ExtensionStatus:  # noqa: N802
        uuid = 1000 + len(self.registered) + 1
        self.registered[uuid] = info
        self.event.set()
        return ExtensionStatus(code=0, message="OK", uuid=uuid)

    def deregisterExtension(self, uuid: int) -> ExtensionStatus:  # noqa: N802
        self.registered.pop(uuid, None)
        return ExtensionStatus(code=0, message="OK")

    def query(self, sql: str) -> ExtensionResponse:
        return ExtensionResponse(status=ExtensionStatus(code=1, message="no SQL here"), response=[])

    def getQueryColumns(self, sql: str) -> ExtensionResponse:  # noqa: N802
        return self.query(sql)


def _serve(listener: socket.socket, manager: _Manager, stop: threading.Event) -> None:
    processor = ExtensionManager.Processor(manager)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            return

        def one(c: socket.socket = conn) -> None:
            sock = TSocket.TSocket()
            sock.setHandle(c)
            proto = TBinaryProtocol.TBinaryProtocol(TTransport.TBufferedTransport(sock))
            try:
                while not stop.is_set():
                    processor.process(proto, proto)
            except (TTransport.TTransportException, OSError, EOFError):
                pass
            finally:
                c.close()

        threading.Thread(target=one, daemon=True).start()


def context_json(constraints: Mapping[str, Sequence[tuple[int, str]]], cols_used: Sequence[str] | None = None) -> str:
    """osquery's query context, as xFilter serialises it for an extension's generate call."""
    doc: dict[str, Any] = {"constraints": [
        {"name": name, "list": [{"op": op, "expr": expr} for op, expr in items], "affinity": "TEXT"}
        for name, items in constraints.items()]}
    if cols_used:
        doc["colsUsed"] = list(cols_used)
    return json.dumps(doc)


def probe(table: str, context: str, command: Sequence[str] | None = None, timeout: float = 30.0) -> list[dict[str, str]]:
    """Rows of one generate call answered by a real extension process over its Thrift socket."""
    with tempfile.TemporaryDirectory(prefix="dyldwatch-probe-") as tmp:
        os.chmod(tmp, 0o700)
        path = os.path.join(tmp, "osquery.em")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(8)
        manager, stop = _Manager(), threading.Event()
        threading.Thread(target=_serve, args=(listener, manager, stop), daemon=True).start()
        argv = [*(command or [sys.executable, "-m", "dyldwatch"]), "--socket", path, "--timeout", "5", "--interval", "1"]
        if command is None:
            argv.insert(3, "extension")
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            if not manager.event.wait(timeout):
                raise TimeoutError(f"the extension did not register within {timeout:.0f} s")
            uuid = next(iter(manager.registered))
            ext_path = f"{path}.{uuid}"
            deadline = time.monotonic() + timeout
            while not os.path.exists(ext_path) and time.monotonic() < deadline:
                time.sleep(0.02)
            sock = TSocket.TSocket(unix_socket=ext_path)
            sock.setTimeout(int(timeout * 1000))
            transport = TTransport.TBufferedTransport(sock)
            client = Extension.Client(TBinaryProtocol.TBinaryProtocol(transport))
            transport.open()
            try:
                resp = client.call("table", table, {"action": "generate", "context": context})
            finally:
                transport.close()
            if resp.status.code != 0:
                raise RuntimeError(f"the extension answered {resp.status.code}: {resp.status.message}")
            return [dict(r) for r in resp.response]
        finally:
            stop.set()
            listener.close()
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()

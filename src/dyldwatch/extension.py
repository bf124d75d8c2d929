"""The osquery extension: our tables as Thrift table plugins, registered with osqueryd.

We speak osquery's Thrift protocol through bindings generated from our own IDL
(protocol/osquery_extension.thrift): the `osquery` package's generated classes predate the spec
format of thrift's C extension, so they cannot use the accelerated protocol. The tests' fake
osqueryd uses the package's classes, which shows the two agree on the wire. We also build the
plugin adapter ourselves, because the package's own adapter sends every column
with `"op": "0"` (so osquery never enforces REQUIRED/INDEX), indexes rows as a list (generators
fail), lets an exception in `generate` escape into the Thrift server, and raises on an unknown
action. Here a failing `generate` becomes a failed ExtensionStatus and the extension keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from . import __version__
from .tables import all_tables
from .tables.base import ContextError, QueryContext, Table, TableUsageError

log = logging.getLogger("dyldwatch.extension")

EXTENSION_NAME = "dyldwatch"
#: The osquery SDK we speak (osquery refuses extensions whose min_sdk_version is newer than itself).
SDK_VERSION = "5.0.0"
MIN_SDK_VERSION = "1.8.0"


def _thrift():
    """Import the generated Thrift modules (kept lazy: the CLI's other commands don't need them)."""
    from .protocol.wire import Extension, ExtensionManager, ttypes

    return Extension, ExtensionManager, ttypes


def protocol_factory() -> Any:
    """The accelerated binary protocol when thrift's C extension is present (same wire format)."""
    try:
        from thrift.protocol import fastbinary  # noqa: F401

        return TBinaryProtocol.TBinaryProtocolAcceleratedFactory()
    except ImportError:
        return TBinaryProtocol.TBinaryProtocolFactory()


def to_wire(value: Any) -> str:
    """osquery rows are string maps: NULL is the empty string, booleans are 0/1."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def render_rows(table: type[Table], rows: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Rows with every declared column, as strings, in declaration order."""
    names = table.column_names()
    return [{n: to_wire(row.get(n)) for n in names} for row in rows]


class TablePluginAdapter:
    """Answers osquery's `columns` and `generate` calls for one table."""

    def __init__(self, table: type[Table]) -> None:
        self.table = table
        self.instance = table()

    def call(self, request: Mapping[str, str]) -> Any:
        _, _, tt = _thrift()
        action = request.get("action", "")
        if action == "columns":
            return tt.ExtensionResponse(status=tt.ExtensionStatus(code=0, message="OK"), response=self.table.routes())
        if action == "generate":
            started = time.monotonic()
            try:
                ctx = QueryContext.from_json(request.get("context"))
                rows = render_rows(self.table, self.instance.generate(ctx))
            except (ContextError, TableUsageError) as exc:
                log.warning("%s: %s", self.table.name, exc)
                return _failure(f"{self.table.name}: {exc}")
            except Exception as exc:  # a bug must cost one query, never the extension
                log.exception("%s: generate failed", self.table.name)
                return _failure(f"{self.table.name}: internal error: {type(exc).__name__}: {exc}")
            log.debug("%s: %d rows in %.3fs", self.table.name, len(rows), time.monotonic() - started)
            return tt.ExtensionResponse(status=tt.ExtensionStatus(code=0, message="OK"), response=rows)
        return _failure(f"{self.table.name}: unknown action {action!r}")


def _failure(message: str) -> Any:
    _, _, tt = _thrift()
    return tt.ExtensionResponse(status=tt.ExtensionStatus(code=1, message=message), response=[])


class ExtensionHandler:
    """The Extension service osqueryd calls on our socket: ping, call, shutdown."""

    def __init__(self, tables: Iterable[type[Table]], on_shutdown: Any = None) -> None:
        self.plugins = {t.name: TablePluginAdapter(t) for t in tables}
        self.on_shutdown = on_shutdown

    def registry(self) -> dict[str, dict[str, list[dict[str, str]]]]:
        """What registerExtension broadcasts: every table with its column routes."""
        return {"table": {name: p.table.routes() for name, p in self.plugins.items()}}

    def ping(self) -> Any:
        _, _, tt = _thrift()
        return tt.ExtensionStatus(code=0, message="OK")

    def call(self, registry: str, item: str, request: Mapping[str, str]) -> Any:
        if registry != "table":
            return _failure(f"dyldwatch serves only table plugins, not {registry!r}")
        plugin = self.plugins.get(item)
        if plugin is None:
            return _failure(f"dyldwatch has no table {item!r}")
        return plugin.call(request or {})

    def shutdown(self) -> None:
        log.info("shutdown requested by osquery")
        if self.on_shutdown:
            self.on_shutdown(0)


def _client(path: str) -> tuple[Any, Any]:
    sock = TSocket.TSocket(unix_socket=path)
    transport = TTransport.TBufferedTransport(sock)
    return transport, TBinaryProtocol.TBinaryProtocol(transport)


def connect_manager(path: str, timeout: float) -> tuple[Any, Any]:
    """Open the osqueryd extension-manager socket, retrying until `timeout` seconds have passed."""
    _, ExtensionManager, _ = _thrift()
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        transport, proto = _client(path)
        try:
            transport.open()
            return transport, ExtensionManager.Client(proto)
        except TTransport.TTransportException as exc:
            if time.monotonic() >= deadline:
                raise ConnectionError(f"cannot connect to the osquery extension socket {path}: {exc}") from exc
            time.sleep(0.2)


class ExtensionRuntime:
    """Registers with osqueryd, serves our socket, and exits when osqueryd goes away."""

    def __init__(self, socket_path: str, *, timeout: float = 3.0, interval: float = 3.0,
                 tables: Iterable[type[Table]] | None = None, terminate: Any = None) -> None:
        self.socket_path = socket_path
        self.terminate = terminate or os._exit  # tests embedding a runtime pass their own
        self.timeout = timeout
        self.interval = max(interval, 0.1)
        self.handler = ExtensionHandler(tables if tables is not None else all_tables(), on_shutdown=self.exit)
        self.uuid: int | None = None
        self.server_path: str | None = None
        self._exiting = threading.Event()

    def register(self) -> Any:
        Extension, _, tt = _thrift()
        transport, manager = connect_manager(self.socket_path, self.timeout)
        try:
            info = tt.InternalExtensionInfo(name=EXTENSION_NAME, version=__version__,
                                            sdk_version=SDK_VERSION, min_sdk_version=MIN_SDK_VERSION)
            status = manager.registerExtension(info, self.handler.registry())
        finally:
            transport.close()
        if status.code != 0:
            raise ConnectionError(f"osquery refused the extension: {status.message}")
        self.uuid = status.uuid
        self.server_path = f"{self.socket_path}.{status.uuid}"
        log.info("registered as extension %s with %d tables; serving %s", status.uuid,
                 len(self.handler.plugins), self.server_path)
        return status

    def watch(self) -> None:
        """Ping the manager every interval; when it stops answering, exit (osquery's watcher contract)."""
        transport, manager = None, None
        while not self._exiting.is_set():
            try:
                if manager is None:
                    transport, manager = connect_manager(self.socket_path, 0)
                status = manager.ping()
                if status.code != 0:
                    raise ConnectionError(f"ping answered {status.code}: {status.message}")
            except Exception as exc:
                log.warning("osquery extension manager is gone (%s); exiting", exc)
                self.exit(0)
                return
            self._exiting.wait(self.interval)
        if transport is not None:
            transport.close()

    def exit(self, code: int) -> None:
        """Leave promptly: the Thrift server blocks in accept, so the process ends itself."""
        self._exiting.set()

        def _later() -> None:
            time.sleep(0.2)
            self.stop_serving()
            self.cleanup()
            logging.shutdown()
            self.terminate(code)

        threading.Thread(target=_later, daemon=True).start()

    def stop_serving(self) -> None:
        """Wake the accept loop (shutdown does on Linux and macOS; close alone does not)."""
        sock = getattr(self, "server_socket", None)
        handle = getattr(sock, "handle", None)
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.shutdown(2)
            sock.close()

    def cleanup(self) -> None:
        if self.server_path:
            with contextlib.suppress(OSError):
                os.unlink(self.server_path)

    def serve(self) -> None:
        """Register, then answer osqueryd on our socket until osqueryd goes away or asks us to stop."""
        Extension, _, _ = _thrift()
        self.register()
        assert self.server_path is not None
        server_socket = TSocket.TServerSocket(unix_socket=self.server_path)
        server_socket.listen()
        self.server_socket = server_socket
        processor = Extension.Processor(self.handler)
        pfactory = protocol_factory()
        threading.Thread(target=self.watch, name="manager-watch", daemon=True).start()
        try:
            while not self._exiting.is_set():
                try:
                    client = server_socket.accept()
                except (OSError, TTransport.TTransportException):
                    if self._exiting.is_set() or server_socket.handle is None:
                        break
                    raise
                if client is None:
                    break
                threading.Thread(target=self._serve_client, args=(processor, pfactory, client), daemon=True).start()
        finally:
            self.cleanup()

    @staticmethod
    def _serve_client(processor: Any, pfactory: Any, client: Any) -> None:
        """One osqueryd connection: calls in order until it hangs up."""
        transport = TTransport.TBufferedTransport(client)
        proto = pfactory.getProtocol(transport)
        try:
            while True:
                processor.process(proto, proto)
        except (TTransport.TTransportException, EOFError, OSError):
            pass
        except Exception:  # a protocol error from a confused peer: drop that connection only
            log.exception("dropping a connection after a protocol error")
        finally:
            transport.close()


def run_extension(socket_path: str, timeout: float, interval: float, verbose: bool) -> int:
    """Entry point for `dyldwatch extension`: log to stderr (osquery collects it with --verbose)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="dyldwatch[%(process)d] %(levelname)s %(name)s: %(message)s")
    logging.getLogger("thrift").setLevel(logging.CRITICAL)
    runtime = ExtensionRuntime(socket_path, timeout=timeout, interval=interval)
    try:
        runtime.serve()
    except ConnectionError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0

"""The osquery extension: our tables as Thrift table plugins, registered with osqueryd.

We speak osquery's Thrift protocol through bindings generated from our own IDL
(protocol/osquery_extension.thrift): the `osquery` package's generated classes predate the spec
format of thrift's C extension, so they cannot use the accelerated protocol. The tests' fake
osqueryd uses the package's classes, which shows the two agree on the wire. We also build the
plugin adapter ourselves, because the package's own adapter sends every column
with `"op": "0"` (so osquery never enforces REQUIRED/INDEX), indexes rows as a list (generators
fail), lets an exception in `generate` escape into the Thrift server, and raises on an unknown
action. Here a failing `generate` becomes a failed ExtensionStatus and the extension keeps serving.

The lifecycle follows osquery's C++ SDK (osquery/extensions/extensions.cpp): register, serve
`<manager socket>.<uuid>` (owner-only, see ext_socket), and exit when osqueryd no longer lists our
uuid in `extensions()` or stops answering, so that osqueryd's watcher can start a fresh one.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from .. import __version__
from ..tables import all_tables
from ..tables.base import Table
from . import private_socket
from .adapter import DEFAULT_BUDGET, TablePluginAdapter, safe_text
from .wire import EncodedResponse, RowTransport, wire_processor

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


class SafeInputProtocol(TBinaryProtocol.TBinaryProtocol):
    """Reads osqueryd's calls; bytes that are not UTF-8 become surrogates instead of failing the call.

    The accelerated reader decodes strictly, so calls are read with this (they are small) and
    answers written with the accelerated protocol (they are large).
    """

    def readString(self) -> str:  # noqa: N802 (Thrift's name)
        return self.readBinary().decode("utf-8", "surrogateescape")


def _response(code: int, message: str, rows: list[Any]) -> Any:
    """The call's answer; rows that are already encoded (bytes, from generate) are sent as they are."""
    _, _, tt = _thrift()
    status = tt.ExtensionStatus(code=code, message=safe_text(message)[0])
    if rows and isinstance(rows[0], bytes):
        return EncodedResponse(status, rows)
    return tt.ExtensionResponse(status=status, response=rows)


class ExtensionHandler:
    """The Extension service osqueryd calls on our socket: ping, call, shutdown."""

    def __init__(self, tables: Iterable[type[Table]], on_shutdown: Any = None,
                 budget: float = DEFAULT_BUDGET) -> None:
        self.plugins = {t.name: TablePluginAdapter(t, budget) for t in tables}
        self.on_shutdown = on_shutdown

    def registry(self) -> dict[str, dict[str, list[dict[str, str]]]]:
        """What registerExtension broadcasts: every table with its column routes."""
        return {"table": {name: p.table.routes() for name, p in self.plugins.items()}}

    def ping(self) -> Any:
        _, _, tt = _thrift()
        return tt.ExtensionStatus(code=0, message="OK")

    def call(self, registry: str, item: str, request: Mapping[str, str]) -> Any:
        if registry != "table":
            return _response(1, f"dyldwatch serves only table plugins, not {registry!r}", [])
        plugin = self.plugins.get(item)
        if plugin is None:
            return _response(1, f"dyldwatch has no table {item!r}", [])
        return _response(*plugin.call(request or {}))

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


#: osquery's watcher never checks more often than every 200 ms (osquery/extensions/extensions.cpp).
MIN_INTERVAL = 0.2


class ExtensionRuntime:
    """Registers with osqueryd, serves our socket, and exits when osqueryd forgets us or goes away."""

    def __init__(self, socket_path: str, *, timeout: float = 3.0, interval: float = 3.0,
                 tables: Iterable[type[Table]] | None = None, terminate: Any = None,
                 budget: float = DEFAULT_BUDGET) -> None:
        self.socket_path = socket_path
        self.terminate = terminate or os._exit  # tests embedding a runtime pass their own
        self.timeout = timeout
        self.interval = max(interval, MIN_INTERVAL)
        self.handler = ExtensionHandler(tables if tables is not None else all_tables(), on_shutdown=self.exit,
                                        budget=budget)
        self.uuid: int | None = None
        self.server_path: str | None = None
        self.listener: Any = None
        self.exit_code = 0
        self._exiting = threading.Event()
        self._acceptor_lock = threading.Lock()
        self._idle_acceptors = 0

    def register(self) -> Any:
        _, _, tt = _thrift()
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

    def check_registered(self, manager: Any) -> int | None:
        """One watcher check: None while osqueryd lists our uuid, else the exit code.

        Mirrors the C++ SDK's ExtensionWatcher with a uuid (osquery/extensions/extensions.cpp): a
        failed `extensions()` status or a missing uuid exits 1; osqueryd unreachable exits 0.
        """
        try:
            listed = manager.extensions()
        except Exception as exc:
            log.warning("osquery extension manager is gone (%s); exiting", exc)
            return 0
        if self.uuid not in (listed or {}):
            log.error("osquery no longer lists extension %s; exiting so that osqueryd can start a fresh one",
                      self.uuid)
            return 1
        return None

    def watch(self) -> None:
        """Check every interval that osqueryd still lists us; exit when it does not (or is gone)."""
        transport, manager = None, None
        while not self._exiting.is_set():
            if not os.path.exists(self.socket_path):
                log.warning("osquery extension manager socket %s is gone; exiting", self.socket_path)
                self.exit(0)
                break
            try:
                if manager is None:
                    transport, manager = connect_manager(self.socket_path, 0)
            except ConnectionError as exc:
                log.warning("%s; exiting", exc)
                self.exit(0)
                break
            code = self.check_registered(manager)
            if code is not None:
                self.exit(code)
                break
            self._exiting.wait(self.interval)
        if transport is not None:
            transport.close()

    def exit(self, code: int) -> None:
        """Leave promptly: the Thrift server blocks in accept, so the process ends itself."""
        if self._exiting.is_set():
            return
        self.exit_code = code
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
        listener = self.listener
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(2)
            listener.close()

    def cleanup(self) -> None:
        private_socket.remove(self.server_path)

    def serve(self) -> None:
        """Register, then answer osqueryd on our socket until osqueryd goes away or asks us to stop."""
        self.register()
        assert self.server_path is not None
        self.listener = private_socket.bind_private(self.server_path, self.socket_path)
        processor = wire_processor(self.handler)
        pfactory = protocol_factory()
        threading.Thread(target=self.watch, name="manager-watch", daemon=True).start()
        try:
            self._accept(processor, pfactory)  # this thread is an acceptor too, until we exit
        finally:
            self.cleanup()

    #: Acceptors kept waiting between calls. osqueryd opens a connection for every call
    #: (callExtension in osquery/extensions/extensions.cpp), so a thread started per connection
    #: would cost every call a thread start. Calls in quick succession (a join's) overlap a
    #: little: the next connection arrives before the thread that served the last one has seen
    #: it close, so a few wait.
    IDLE_ACCEPTORS = 4

    def _accept(self, processor: Any, pfactory: Any) -> None:
        """Accept a connection, serve it, and accept again (leader/followers): the thread that
        accepts serves, with no handoff. Whichever thread takes the last waiting place starts
        another, so a long call never delays the next connection; surplus ones end."""
        main = threading.current_thread() is threading.main_thread()
        with self._acceptor_lock:
            self._idle_acceptors += 1
        while not self._exiting.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError as exc:
                if not self._exiting.is_set():  # e.g. out of file descriptors: osqueryd restarts us
                    log.error("cannot accept connections on %s: %s; exiting", self.server_path, exc)
                    self.exit(1)
                break
            with self._acceptor_lock:
                self._idle_acceptors -= 1
                more = self._idle_acceptors == 0
            if more:
                threading.Thread(target=self._accept, args=(processor, pfactory), name="acceptor", daemon=True).start()
            self._serve_client(processor, pfactory, conn)
            with self._acceptor_lock:
                if self._idle_acceptors >= self.IDLE_ACCEPTORS and not main:
                    return
                self._idle_acceptors += 1
        with self._acceptor_lock:
            self._idle_acceptors -= 1

    @staticmethod
    def _serve_client(processor: Any, pfactory: Any, conn: Any) -> None:
        """One osqueryd connection: calls in order until it hangs up."""
        client = TSocket.TSocket()
        client.setHandle(conn)
        transport = RowTransport(TTransport.TBufferedTransport(client), conn)
        iproto, oproto = SafeInputProtocol(transport), pfactory.getProtocol(transport)
        try:
            while True:
                processor.process(iproto, oproto)
        except (TTransport.TTransportException, EOFError, OSError):
            pass
        except Exception:  # a protocol error from a confused peer: drop that connection only
            log.exception("dropping a connection after a protocol error")
        finally:
            transport.close()


#: Allocations between young-generation collections. A walk allocates tens of thousands of small
#: objects (parsed load commands, rows) that live until the answer is sent; at CPython's default
#: (700) the collector rescans them hundreds of times per walk. The tables make no reference
#: cycles to speak of, so collecting less often costs no memory.
GC_THRESHOLD = (10_000, 10, 10)


def tune_collector() -> None:
    """A long-lived server's collector settings: the modules loaded so far are moved out of the
    collector's sight (gc.freeze) and young objects are collected less often."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def run_extension(socket_path: str, timeout: float, interval: float, verbose: bool,
                  budget: float | None = None) -> int:
    """Entry point for `dyldwatch extension`: log to stderr (osquery collects it with --verbose)."""
    from .adapter import budget_from_env

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="dyldwatch[%(process)d] %(levelname)s %(name)s: %(message)s")
    logging.getLogger("thrift").setLevel(logging.CRITICAL)
    runtime = ExtensionRuntime(socket_path, timeout=timeout, interval=interval,
                               budget=budget if budget else budget_from_env())
    tune_collector()  # after the tables' modules are loaded, so they are frozen too
    try:
        runtime.serve()
    except (ConnectionError, OSError) as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 0
    return runtime.exit_code  # serve returns once exit() woke it; exit() decided the code


def extension_main(args: list[str]) -> int:
    """`--socket S --timeout T --interval I [--verbose]` as osqueryd passes them, parsed without click.

    The autoloaded path (`python -m dyldwatch extension`, the launcher, the artifact) imports only
    what registration needs; click, the CLI and the pack tooling stay unloaded.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="dyldwatch extension", description="dyldwatch osquery extension")
    parser.add_argument("--socket", required=True, help="osqueryd's extension manager socket")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the manager socket")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between checks that osqueryd lists us")
    parser.add_argument("--verbose", action="store_true", help="log registration and every query to stderr")
    parser.add_argument("--generate-budget", type=float, default=None,
                        help="seconds one query may walk (default $DYLDWATCH_GENERATE_BUDGET or 60)")
    ns, _unknown = parser.parse_known_args(args)  # tolerate flags newer osqueryd versions add
    return run_extension(ns.socket, ns.timeout, ns.interval, ns.verbose, ns.generate_budget)

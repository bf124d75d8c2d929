"""Rows in the form they cross the socket: Thrift binary map<string,string>, encoded once.

osqueryd cannot stream an extension's answer: the whole ExtensionResponse is one Thrift message,
so every row is held until the call returns. Holding a row as its encoded bytes (a few hundred
bytes) instead of a dict of str (about a kilobyte) keeps a large answer small, and a row encoded
once can be sent again as is: the Mach-O tables keep the bytes of a cached file's rows and reuse
them while the file and the query's columns are unchanged. A row is kept in two halves when part
of it is computed per query (dylib resolution): `Pairs` are concatenable key/value runs, and
`row_bytes` puts a map header in front of any number of them.

Only the columns the query reads (colsUsed) are sent, and a None value is left out: osquery turns
a missing key into NULL (osquery/sql/dynamic_table_row.cpp) and SQLite reads no other column.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from thrift.Thrift import TMessageType, TType

from ..tables.base import QueryContext, Table
from ..tables.values import to_wire

log = logging.getLogger("dyldwatch.extension")

_MAP_HEAD = struct.Struct(">bbi")
_FIELD = struct.Struct(">bh")
_LIST_HEAD = struct.Struct(">bi")
_LEN = struct.Struct(">i")
#: Rows written to the socket at a time when an answer is large.
_BATCH = 4096


class _Map:
    """A one-field struct whose field is the row map: fastbinary encodes it in C."""

    __slots__ = ("m",)
    thrift_spec = (None, (1, TType.MAP, "m", (TType.STRING, "UTF8", TType.STRING, "UTF8", False), None))


try:
    from thrift.protocol.fastbinary import encode_binary as _encode_binary
except ImportError:  # pragma: no cover - thrift without its C extension
    _encode_binary = None
_SPEC = [_Map, _Map.thrift_spec]
#: field header (3 bytes) and map header (6 bytes) before the pairs, struct stop (1 byte) after.
_SKIP = _FIELD.size + _MAP_HEAD.size


@dataclass(frozen=True, slots=True)
class Pairs:
    """Encoded key/value pairs of (part of) one row: `count` entries in `data`."""

    count: int
    data: bytes


EMPTY = Pairs(0, b"")


def encode_pairs(values: Mapping[str, str]) -> Pairs:
    """Wire strings (already UTF-8 safe, no None) as concatenable Thrift map entries."""
    if not values:
        return EMPTY
    if _encode_binary is not None:
        holder = _Map()
        holder.m = values
        return Pairs(len(values), _encode_binary(holder, _SPEC)[_SKIP:-1])
    parts: list[bytes] = []
    for k, v in values.items():
        kb, vb = k.encode(), v.encode()
        parts += (_LEN.pack(len(kb)), kb, _LEN.pack(len(vb)), vb)
    return Pairs(len(values), b"".join(parts))


def row_bytes(*pairs: Pairs) -> bytes:
    """One encoded row (a Thrift map<string,string>) from one or more runs of pairs."""
    if len(pairs) == 1:
        return _MAP_HEAD.pack(TType.STRING, TType.STRING, pairs[0].count) + pairs[0].data
    return _MAP_HEAD.pack(TType.STRING, TType.STRING, sum(p.count for p in pairs)) + b"".join(p.data for p in pairs)


def map_bytes(count: int, data: bytes) -> bytes:
    """One encoded row from `count` key/value runs a table joined itself (see RowEncoder.text)."""
    return _MAP_HEAD.pack(TType.STRING, TType.STRING, count) + data


class RowRun(bytes):
    """Encoded rows back to back, as one piece, and how many (`rows`): a kept answer is sent again
    as it is, without its rows being gathered and joined again one by one."""

    rows: int


def join_rows(rows: Sequence[bytes]) -> RowRun:
    """One piece holding `rows` in order."""
    run = RowRun(b"".join(rows))
    run.rows = len(rows)
    return run


class EncodedRows(list):  # type: ignore[type-arg]
    """An answer's encoded rows as the pieces they are sent in (a row, or a RowRun of several), and
    how many rows they hold (`count`, what the answer's list header says)."""

    count: int = 0

    def add(self, chunk: Sequence[bytes] | RowRun) -> int:
        """Append one chunk of a table's answer; returns its length in bytes."""
        if isinstance(chunk, RowRun):
            self.append(chunk)
            self.count += chunk.rows
            return len(chunk)
        self.extend(chunk)
        self.count += len(chunk)
        return sum(map(len, chunk))

    def snapshot(self) -> EncodedRows:
        """A copy, counted from its own pieces (the original may be growing in another thread)."""
        copy = EncodedRows(self)
        copy.count = sum(p.rows if isinstance(p, RowRun) else 1 for p in copy)
        return copy


def extend_row(row: bytes, more: Pairs) -> bytes:
    """An encoded row with more pairs after its own (the count in its map header raised to match)."""
    if not more.count:
        return row
    count = _LEN.unpack_from(row, 2)[0] + more.count
    return b"".join((_MAP_HEAD.pack(TType.STRING, TType.STRING, count), memoryview(row)[_MAP_HEAD.size:], more.data))


class RowEncoder:
    """Encodes rows of one table for one query: the columns it reads, in declaration order.

    `key` identifies the column set, so a cache of encoded rows is reused only by queries that
    read the same columns (a scheduled query reads the same ones every time).
    """

    __slots__ = ("names", "key", "has_error", "memo")

    def __init__(self, table: type[Table], ctx: QueryContext) -> None:
        self.names: tuple[str, ...] = tuple(n for n in table.column_names() if ctx.uses(n))
        self.key = frozenset(self.names)
        self.has_error = "error" in self.names
        #: encoded pieces a table reuses within this query, as it likes (see `text`)
        self.memo: dict[object, object] = {}

    def values(self, row: Mapping[str, Any], names: Sequence[str] | None = None) -> tuple[dict[str, str], bool]:
        """The row's wire strings for `names` (default: the query's columns), None left out, and
        whether any text had to be escaped. Text that is not valid UTF-8 is sent with \\xNN escapes
        and, when `error` is among `names`, noted there."""
        out: dict[str, str] = {}
        escaped: list[str] = []
        get = row.get
        for name in self.names if names is None else names:
            value = get(name)
            if value is None:
                continue
            kind = type(value)
            if kind is str:
                if value.isascii():
                    out[name] = value
                    continue
            elif kind is int:
                out[name] = str(value)
                continue
            out[name], bad = to_wire(value)
            if bad:
                escaped.append(name)
        if escaped and "error" in (self.names if names is None else names):
            note = f"not valid UTF-8 in {', '.join(escaped)}: undecodable bytes shown as \\xNN"
            out["error"] = f"{out['error']}; {note}" if out.get("error") else note
        return out, bool(escaped)

    def encode(self, row: Mapping[str, Any]) -> bytes:
        return row_bytes(encode_pairs(self.values(row)[0]))

    # Handed to the tables with the encoder, so they encode without importing the wire layer.
    encode_pairs = staticmethod(encode_pairs)
    row_bytes = staticmethod(row_bytes)

    @staticmethod
    def text(value: str) -> bytes:
        """One encoded string (a key or a value) for `pairs`: raises UnicodeEncodeError for text
        holding undecodable bytes (surrogates), which only `values` knows how to send."""
        data = value.encode()
        return _LEN.pack(len(data)) + data

    map_bytes = staticmethod(map_bytes)
    extend_row = staticmethod(extend_row)
    join_rows = staticmethod(join_rows)


class RowTransport:
    """The server side of one osqueryd connection: reads buffered (through Thrift's transport), and
    writes gathered: pieces are kept as they are and handed to the kernel with sendmsg, so an
    answer's rows are never joined, copied into a buffer, or re-sliced after a partial send
    (Thrift's own socket write copies the unsent rest of a buffer after every partial send)."""

    #: buffers one sendmsg takes (the kernel's IOV_MAX is 1024 on Linux and macOS)
    IOV = 1024

    #: kernel send buffer asked for: a typical answer (a few hundred KB) then leaves in one
    #: sendmsg instead of waiting for osqueryd to drain the default ~200 KB (best effort: the
    #: kernel caps it at net.core.wmem_max or kern.ipc.maxsockbuf)
    SEND_BUFFER = 4 << 20

    def __init__(self, reader: Any, sock: Any) -> None:
        self.reader = reader  # a TBufferedTransport over the same socket, for osqueryd's calls
        self.sock = sock
        self._out: list[bytes | memoryview] = []
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.SEND_BUFFER)
        except (OSError, AttributeError):
            log.debug("could not enlarge the socket's send buffer", exc_info=True)

    def isOpen(self) -> bool:  # noqa: N802 (Thrift's names)
        return bool(self.reader.isOpen())

    def read(self, sz: int) -> bytes:
        return self.reader.read(sz)  # type: ignore[no-any-return]

    def readAll(self, sz: int) -> bytes:  # noqa: N802
        return self.reader.readAll(sz)  # type: ignore[no-any-return]

    def write(self, buf: bytes) -> None:
        self._out.append(buf)

    #: rows joined into one piece before they go out: the kernel copies each piece of a sendmsg
    #: separately, and an answer holds thousands of rows of ~200 bytes
    PIECE = 256

    def write_many(self, bufs: Sequence[bytes]) -> None:
        if len(bufs) == 1:  # a kept answer's RowRun: already one piece
            self._out.append(bufs[0])
            return
        step = self.PIECE
        self._out.extend(b"".join(bufs[i:i + step]) for i in range(0, len(bufs), step))

    def flush(self) -> None:
        out, self._out = self._out, []
        i = 0
        while i < len(out):
            sent = self.sock.sendmsg(out[i:i + self.IOV])
            while sent:  # drop what went out; keep the unsent tail of a piece sent in part
                n = len(out[i])
                if sent >= n:
                    sent -= n
                    i += 1
                else:
                    out[i] = memoryview(out[i])[sent:]
                    sent = 0

    def close(self) -> None:
        self.reader.close()


class EncodedResponse:
    """An ExtensionResponse whose rows are already encoded (see WireProcessor)."""

    __slots__ = ("status", "rows")

    def __init__(self, status: Any, rows: list[bytes]) -> None:
        self.status = status
        self.rows = rows

    def write(self, oprot: Any) -> None:
        """call_result{success: ExtensionResponse{status, response}} in Thrift's binary protocol."""
        trans = oprot.trans
        trans.write(_FIELD.pack(TType.STRUCT, 0))  # call_result.success
        trans.write(_FIELD.pack(TType.STRUCT, 1))  # ExtensionResponse.status
        self.status.write(oprot)
        rows = self.rows
        count = rows.count if isinstance(rows, EncodedRows) else len(rows)
        trans.write(_FIELD.pack(TType.LIST, 2) + _LIST_HEAD.pack(TType.MAP, count))
        write_many = getattr(trans, "write_many", None)
        for start in range(0, len(rows), _BATCH):
            if write_many is not None:  # RowTransport: the rows themselves go to the kernel
                write_many(rows[start:start + _BATCH])
            else:
                # Sent in pieces: joining a large answer whole, then copying it into the transport's
                # buffer, would hold it three times. An unframed stream may be flushed mid-message.
                trans.write(b"".join(rows[start:start + _BATCH]))
            if len(rows) > _BATCH:
                trans.flush()
        trans.write(b"\x00\x00")  # end of ExtensionResponse, end of call_result


def wire_processor(handler: Any) -> Any:
    """Extension.Processor whose `call` sends an EncodedResponse as its bytes."""
    from .protocol.wire import Extension

    class WireProcessor(Extension.Processor):  # type: ignore[misc, name-defined]
        def __init__(self, handler: Any) -> None:
            super().__init__(handler)
            self._processMap["call"] = WireProcessor.process_call  # the generated map names its own

        def process_call(self, seqid: int, iprot: Any, oprot: Any) -> None:
            args = Extension.call_args()
            args.read(iprot)
            iprot.readMessageEnd()
            try:
                answer = self._handler.call(args.registry, args.item, args.request)
            except Exception:  # the handler never raises; if it did, answer as the generated code does
                log.exception("unexpected exception in the call handler")
                from thrift.Thrift import TApplicationException

                oprot.writeMessageBegin("call", TMessageType.EXCEPTION, seqid)
                TApplicationException(TApplicationException.INTERNAL_ERROR, "Internal error").write(oprot)
                oprot.writeMessageEnd()
                oprot.trans.flush()
                return
            oprot.writeMessageBegin("call", TMessageType.REPLY, seqid)
            if isinstance(answer, EncodedResponse):
                answer.write(oprot)
            else:
                result = Extension.call_result()
                result.success = answer
                result.write(oprot)
            oprot.writeMessageEnd()
            oprot.trans.flush()

    return WireProcessor(handler)

"""osquery's Linux `process_open_sockets`: /proc/PID/fd socket inodes joined with /proc/PID/net/*.

Mirrors osquery/tables/networking/linux/process_open_sockets.cpp and the parsers in
osquery/filesystem/linux/proc.cpp, including two behaviours a test must expect: the socket tables
of a network namespace are read once per namespace id, and a process whose namespace link cannot be
read counts as namespace 0 — so when pid 1's namespace is unreadable (a container, a hardened
/proc) every socket of the shared namespace is listed twice, once with net_namespace "0". Without a
pid constraint, sockets no process holds get pid and fd -1.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..base import QueryContext
from ..values import stol
from .osq import proc_pids, read_text, readlink, split, typed

PROC = "/proc"

# specs/process_open_sockets.table (+ the Linux extended schema)
PROCESS_OPEN_SOCKETS_COLUMNS: dict[str, str] = {
    "pid": "INTEGER", "fd": "BIGINT", "socket": "BIGINT", "family": "INTEGER", "protocol": "INTEGER",
    "local_address": "TEXT", "remote_address": "TEXT", "local_port": "INTEGER", "remote_port": "INTEGER",
    "path": "TEXT", "state": "TEXT", "net_namespace": "TEXT",
}

# kLinuxProtocolNames, in std::map order (proc.h)
PROTOCOL_NAMES: tuple[tuple[int, str], ...] = ((1, "icmp"), (6, "tcp"), (17, "udp"), (136, "udplite"), (255, "raw"))
# tcp_states (proc.h)
TCP_STATES = ("UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
              "CLOSED", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING")
AF_UNIX, AF_INET, AF_INET6, AF_PACKET = 1, 2, 10, 17


@dataclass(slots=True)
class SocketInfo:
    """proc.h's SocketInfo."""

    socket: str
    net_ns: int
    family: int
    protocol: int
    local_address: str = ""
    local_port: int = 0
    remote_address: str = ""
    remote_port: int = 0
    unix_socket_path: str = ""
    state: str = ""


def decode_address(encoded: str, family: int) -> str:
    """procDecodeAddressFromHex: /proc/net hex words in host order, printed by inet_ntop; "" when
    the length is wrong (proc.cpp)."""
    try:
        if family == AF_INET and len(encoded) == 8:
            return socket.inet_ntop(socket.AF_INET, struct.pack("=I", int(encoded, 16)))
        if family == AF_INET6 and len(encoded) == 32:
            words = [int(encoded[i : i + 8], 16) for i in range(0, 32, 8)]
            return socket.inet_ntop(socket.AF_INET6, struct.pack("=4I", *words))
    except ValueError:
        return ""
    return ""


def decode_short(encoded: str) -> int:
    """procDecodeUnsignedShortFromHex: 4 hex digits, else 0 (proc.cpp)."""
    if len(encoded) != 4:
        return 0
    try:
        return int(encoded, 16)
    except ValueError:
        return 0


def _tcp_state(field: str) -> str:
    try:
        n = int(field, 16)
    except ValueError:
        return "UNKNOWN"
    return "UNKNOWN" if n == 0 or n >= len(TCP_STATES) else TCP_STATES[n]


def parse_inet(family: int, protocol: int, net_ns: int, content: str) -> list[SocketInfo] | None:
    """procGetSocketListInet (proc.cpp); None for a bad header."""
    out: list[SocketInfo] = []
    lines = split(content, "\n")
    if lines and not lines[0].startswith(("sl", "sk")):
        return None
    for line in lines[1:]:
        fields = split(line, " ")
        if len(fields) < 10:
            continue
        locals_, remotes = split(fields[1], ":"), split(fields[2], ":")
        if len(locals_) != 2 or len(remotes) != 2:
            continue
        info = SocketInfo(fields[9], net_ns, family, protocol,
                          decode_address(locals_[0], family), decode_short(locals_[1]),
                          decode_address(remotes[0], family), decode_short(remotes[1]))
        if protocol == 6:
            info.state = _tcp_state(fields[3])
        out.append(info)
    return out


def parse_unix(net_ns: int, content: str) -> list[SocketInfo] | None:
    """procGetSocketListUnix (proc.cpp): the path is the first word of the name."""
    out: list[SocketInfo] = []
    lines = split(content, "\n")
    if lines and not lines[0].startswith("Num"):
        return None
    for line in lines[1:]:
        fields = split(line, " ")
        if len(fields) < 7:
            continue
        proto = stol(fields[2], 10) or 0  # std::atoll of the hex-printed Protocol column (00000000)
        out.append(SocketInfo(fields[6], net_ns, AF_UNIX, proto, unix_socket_path=fields[7] if len(fields) >= 8 else ""))
    return out


def parse_packet(net_ns: int, content: str) -> list[SocketInfo] | None:
    """procGetSocketListPacket (proc.cpp), protocol 0 = all; state NONE."""
    out: list[SocketInfo] = []
    lines = split(content, "\n")
    if lines and not lines[0].startswith(("sl", "sk")):
        return None
    for line in lines[1:]:
        fields = split(line, " ")
        if len(fields) < 9:
            continue
        out.append(SocketInfo(fields[8], net_ns, AF_PACKET, decode_short(fields[3]), state="NONE"))
    return out


def socket_list(pid: str, net_ns: int) -> list[SocketInfo]:
    """Step 3 of genOpenSockets: every socket of the namespace, read through /proc/PID/net."""
    base = f"{PROC}/{pid}/net/"
    out: list[SocketInfo] = []
    for proto, name in PROTOCOL_NAMES:
        for family, suffix in ((AF_INET, ""), (AF_INET6, "6")):
            content = read_text(base + name + suffix)
            if content is not None:
                out += parse_inet(family, proto, net_ns, content) or []
    for name, parser in (("unix", parse_unix), ("packet", parse_packet)):
        content = read_text(base + name)
        if content is not None:
            out += parser(net_ns, content) or []
    return out


def net_namespace(pid: str) -> int:
    """procGetProcessNamespaces(pid, {"net"}) then namespaces["net"]: 0 when the link is unreadable
    or malformed (proc.cpp)."""
    link = readlink(f"{PROC}/{pid}/ns/net")
    if not link.startswith("net:[") or not link.endswith("]"):
        return 0
    try:
        return int(link[5:-1])
    except ValueError:
        return 0


def socket_inodes(pid: str, into: dict[str, tuple[str, str]]) -> None:
    """procGetSocketInodeToProcessInfoMap: fd links `socket:[INODE]`, later pids/fds overwrite."""
    fd_dir = f"{PROC}/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)  # readdir order, as boost's directory_iterator
    except OSError:
        return
    for fd in fds:
        link = readlink(f"{fd_dir}/{fd}")
        if link.startswith("socket:["):
            into[link[8:-1]] = (pid, fd)


def process_open_sockets(ctx: QueryContext) -> Iterator[dict[str, Any]]:
    """genOpenSockets (process_open_sockets.cpp): `pid =` restricts (unless one value is -1)."""
    pids = set(ctx.equals("pid"))
    pid_filter = bool(pids) and "-1" not in pids
    pid_list = sorted(pids) if pid_filter else proc_pids(PROC)
    seen_ns: set[int] = set()
    inode_map: dict[str, tuple[str, str]] = {}
    sockets: list[SocketInfo] = []
    for pid in pid_list:
        socket_inodes(pid, inode_map)
        ns = net_namespace(pid)
        if ns not in seen_ns:
            seen_ns.add(ns)
            sockets += socket_list(pid, ns)
    for info in sockets:
        owner = inode_map.get(info.socket)
        if owner is None:
            if pid_filter:
                continue
            owner = ("-1", "-1")
        yield typed({
            "pid": owner[0], "fd": owner[1], "socket": info.socket, "family": str(info.family),
            "protocol": str(info.protocol), "local_address": info.local_address,
            "local_port": str(info.local_port), "remote_address": info.remote_address,
            "remote_port": str(info.remote_port), "path": info.unix_socket_path, "state": info.state,
            "net_namespace": str(info.net_ns),
        }, PROCESS_OPEN_SOCKETS_COLUMNS)

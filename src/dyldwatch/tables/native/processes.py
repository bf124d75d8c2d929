"""osquery's Linux `processes`, `process_envs` and `process_memory_map`, read from /proc.

All three come from one osquery source file (osquery/tables/system/linux/processes.cpp); each
function below mirrors the C++ function named in its docstring, string for string, and the row is
cast by the column types of the table spec at the end.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from typing import Any

from ..base import QueryContext
from ..values import stol
from .osq import pids_from_context, read_bytes, read_text, readlink, split, split_n, text, trim, typed

PROC = "/proc"

# specs/processes.table (+ the Linux extended schema)
PROCESSES_COLUMNS: dict[str, str] = {
    "pid": "BIGINT", "name": "TEXT", "path": "TEXT", "cmdline": "TEXT", "state": "TEXT", "cwd": "TEXT",
    "root": "TEXT", "uid": "BIGINT", "gid": "BIGINT", "euid": "BIGINT", "egid": "BIGINT", "suid": "BIGINT",
    "sgid": "BIGINT", "on_disk": "INTEGER", "wired_size": "BIGINT", "resident_size": "BIGINT",
    "total_size": "BIGINT", "user_time": "BIGINT", "system_time": "BIGINT", "disk_bytes_read": "BIGINT",
    "disk_bytes_written": "BIGINT", "start_time": "BIGINT", "parent": "BIGINT", "pgroup": "BIGINT",
    "threads": "INTEGER", "nice": "INTEGER", "cgroup_path": "TEXT",
}
# specs/posix/process_envs.table
PROCESS_ENVS_COLUMNS: dict[str, str] = {"pid": "INTEGER", "key": "TEXT", "value": "TEXT"}
# specs/process_memory_map.table
PROCESS_MEMORY_MAP_COLUMNS: dict[str, str] = {
    "pid": "INTEGER", "start": "TEXT", "end": "TEXT", "permissions": "TEXT", "offset": "BIGINT",
    "device": "TEXT", "inode": "INTEGER", "path": "TEXT", "pseudo": "INTEGER",
}

DELETED = " (deleted)"
_CLK_TCK: int = os.sysconf("SC_CLK_TCK")
#: kMSIn1CLKTCK = 1000 / sysconf(_SC_CLK_TCK), integer division (processes.cpp)
_MS_PER_TICK = 1000 // _CLK_TCK


@functools.cache
def boot_time() -> int:
    """getBootTime: the `btime` line of /proc/stat, 0 when unreadable (utils/system/linux/boottime.cpp).

    osquery reads it once per process (a function-local static); so do we.
    """
    content = read_text("/proc/stat")
    if content is None:
        return 0
    at = content.find("btime")
    if at < 0:
        return 0
    end = content.find("\n", at + 6)
    if end < 0:
        return 0
    m = re.fullmatch(r"\s*\+?([0-9]+)\s*", content[at + 6 : end])
    return int(m.group(1)) if m else 0


def _attr(pid: str, attr: str) -> str:
    return f"{PROC}/{pid}/{attr}"


def read_cmdline(pid: str) -> str:
    """readProcCMDLine: NULs become spaces, then trimmed; "" when unreadable (processes.cpp)."""
    data = read_bytes(_attr(pid, "cmdline")) or b""
    return trim(text(data.replace(b"\0", b" ")))


def parse_cgroup(content: str) -> str:
    """parseProcCGroup: what follows the second colon of the first line (processes.cpp)."""
    end = content.find("\n")
    first = content.find(":")
    if first < 0:
        return ""
    second = content.find(":", first + 1)
    end_pos = len(content) if end < 0 else end
    if second >= 0 and second < end_pos:
        return content[second + 1 : end_pos]
    return ""


def on_disk(pid: str, path: str) -> tuple[int, str]:
    """getOnDisk: (tristate, path) with a " (deleted)" suffix stripped when the file is gone.

    osquery/tables/system/linux/processes.cpp: -1 no path; 1 exists; 0 gone. A path really ending in
    " (deleted)" is told apart by the inode in /proc/PID/maps (deletedMatchesInode).
    """
    if not path:
        return -1, path
    if not path.endswith(DELETED):
        return (1 if os.path.exists(path) else 0), path
    stripped = path[: -len(DELETED)]
    if not os.path.exists(path):
        return 0, stripped
    maps = read_text(_attr(pid, "maps"))
    if maps is None:
        return -1, path
    m = re.search(r"([0-9]+)[ \t]+" + re.escape(path), maps)
    if m is None:
        return -1, path
    try:
        st = os.stat(path)
    except OSError:
        return -1, path
    return (1, path) if str(st.st_ino) == m.group(1) else (0, stripped)


def _proc_stat(pid: str) -> dict[str, str] | None:
    """SimpleProcStat: /proc/PID/stat fields and /proc/PID/status lines; None when osquery's status
    is not ok (status unreadable, malformed stat, or a VmRSS/VmSize that does not parse)."""
    out: dict[str, str] = {}
    content = read_text(_attr(pid, "stat"))
    if content is not None:
        start = content.rfind(")")
        if start < 0 or len(content) <= start + 2:
            return None
        details = split(content[start + 2 :], " ")
        if len(details) <= 19:
            return None
        out.update(state=details[0], parent=details[1], group=details[2], user_time=details[11],
                   system_time=details[12], nice=details[16], threads=details[17], start_time=details[19])
    status = read_text(_attr(pid, "status"))
    if status is None:
        return None
    for line in split(status, "\n"):
        detail = split_n(line, ":", 1)
        if len(detail) != 2:
            continue
        key, value = detail
        if key == "Name":
            out["name"] = value
        elif key in ("VmRSS", "VmSize"):
            m = re.fullmatch(r"\s*\+?([0-9]+).*", value[:-3], re.S)  # erase " kB", tryTo<uint64_t>
            if m is None:
                return None
            out["resident_size" if key == "VmRSS" else "total_size"] = str(int(m.group(1)) * 1024)
        elif key in ("Gid", "Uid"):
            ids = split(value, "\t")
            if len(ids) == 4:
                kind = "gid" if key == "Gid" else "uid"
                out["real_" + kind], out["effective_" + kind], out["saved_" + kind] = ids[:3]
    return out


def _strtoull(s: str) -> int:
    m = re.match(r"\s*\+?([0-9]+)", s)
    return int(m.group(1)) if m else 0


def gen_process(pid: str, ctx: QueryContext) -> dict[str, str] | None:
    """genProcess (processes.cpp): one row of strings, or None when the process is gone."""
    st = _proc_stat(pid)
    if st is None:
        return None
    r: dict[str, str] = {
        "pid": pid,
        "parent": st.get("parent", ""),
        "path": readlink(_attr(pid, "exe")),
        "name": st.get("name", ""),
        "pgroup": st.get("group", ""),
        "state": st.get("state", ""),
        "nice": st.get("nice", ""),
        "threads": st.get("threads", ""),
        "cmdline": read_cmdline(pid),
    }
    if ctx.uses("cgroup_path"):
        cg = read_text(_attr(pid, "cgroup"))
        r["cgroup_path"] = "" if cg is None else parse_cgroup(cg)
    r["cwd"] = readlink(_attr(pid, "cwd"))
    r["root"] = readlink(_attr(pid, "root"))
    for col, key in (("uid", "real_uid"), ("euid", "effective_uid"), ("suid", "saved_uid"),
                     ("gid", "real_gid"), ("egid", "effective_gid"), ("sgid", "saved_gid")):
        r[col] = st.get(key, "")
    disk, r["path"] = on_disk(pid, r["path"])
    r["on_disk"] = str(disk)
    r["wired_size"] = "0"
    r["resident_size"] = st.get("resident_size", "")
    r["total_size"] = st.get("total_size", "")
    r["user_time"] = str(_strtoull(st.get("user_time", "")) * _MS_PER_TICK)
    r["system_time"] = str(_strtoull(st.get("system_time", "")) * _MS_PER_TICK)
    ticks = stol(st.get("start_time", ""), 10)  # tryTo<long>
    r["start_time"] = str(boot_time() + ticks // _CLK_TCK) if ticks is not None and boot_time() > 0 else "-1"
    io = read_text(_attr(pid, "io"))
    if io is not None:  # SimpleProcIo: /proc/PID/io may need root; then the columns stay NULL
        vals: dict[str, str] = {}
        for line in split(io, "\n"):
            detail = split_n(line, ":", 1)
            if len(detail) == 2:
                vals[detail[0]] = detail[1]
        r["disk_bytes_read"] = vals.get("read_bytes", "")
        written = (_stoll_or0(vals.get("write_bytes", "")) - _stoll_or0(vals.get("cancelled_write_bytes", "")))
        r["disk_bytes_written"] = str(written)
    return r


def _stoll_or0(s: str) -> int:
    n = stol(s, 10)
    return 0 if n is None else n


def processes(ctx: QueryContext) -> Iterator[dict[str, Any]]:
    """genProcesses: one row per pid of the `pid` constraint, else per process in /proc."""
    for pid in pids_from_context(ctx, PROC):
        row = gen_process(pid, ctx)
        if row is not None:
            yield typed(row, PROCESSES_COLUMNS)


def gen_environment(pid: str) -> Iterator[dict[str, str]]:
    """genProcessEnvironment (processes.cpp): NUL-separated KEY=VALUE; a variable without '=' gets
    itself as value (substr(npos + 1)); a byte >= 0x80 or an empty string ends the walk (char > 0)."""
    data = read_bytes(_attr(pid, "environ")) or b""
    at = 0
    while at < len(data) and 0 < data[at] < 0x80:
        end = data.find(b"\0", at)
        buf = data[at:] if end < 0 else data[at:end]
        idx = buf.find(b"=")
        key, value = (buf, buf) if idx < 0 else (buf[:idx], buf[idx + 1 :])
        yield {"pid": pid, "key": text(key), "value": text(value)}
        at += len(buf) + 1


def process_envs(ctx: QueryContext) -> Iterator[dict[str, Any]]:
    """genProcessEnvs: environments of the constrained pids, else of every process."""
    for pid in pids_from_context(ctx, PROC):
        for row in gen_environment(pid):
            yield typed(row, PROCESS_ENVS_COLUMNS)


def gen_process_map(pid: str) -> Iterator[dict[str, str]]:
    """genProcessMap (processes.cpp): maps lines split on spaces, so `path` is the FIRST word of the
    pathname (no " (deleted)", nothing after a space) and "" for anonymous memory; pseudo is 1 when
    the inode is 0 and there is a name ([heap], [stack], /memfd:... on some kernels)."""
    content = read_text(_attr(pid, "maps")) or ""
    for line in split(content, "\n"):
        fields = split(line, " ")
        if len(fields) < 5:
            continue
        addresses = split(fields[0], "-")
        if len(addresses) < 2:
            continue
        offset = stol(fields[2], 16)
        path = fields[5] if len(fields) > 5 else ""
        yield {
            "pid": pid, "start": "0x" + addresses[0], "end": "0x" + addresses[1], "permissions": fields[1],
            "offset": str(-1 if offset is None else offset), "device": fields[3], "inode": fields[4], "path": path,
            "pseudo": "1" if fields[4] == "0" and path else "0",
        }


def process_memory_map(ctx: QueryContext) -> Iterator[dict[str, Any]]:
    """genProcessMemoryMap: every mapping of the constrained pids, else of every process."""
    for pid in pids_from_context(ctx, PROC):
        for row in gen_process_map(pid):
            yield typed(row, PROCESS_MEMORY_MAP_COLUMNS)

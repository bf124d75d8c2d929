"""osquery's native Linux tables from /proc: pure rules from the osquery source, then live children.

Expected values are what osquery's C++ would produce for the same /proc state (see the module
docstrings in src/dyldwatch/host/native/ for the source file each rule comes from).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dyldwatch.sql.facts import native_tables
from dyldwatch.tables.base import Op, QueryContext
from dyldwatch.tables.native import NATIVE_LINUX, NATIVE_LINUX_COLUMNS, rows
from dyldwatch.tables.native.crontab import cron_row, crontab
from dyldwatch.tables.native.files import filename, lsperms, parent_path
from dyldwatch.tables.native.osq import cast, split, split_n
from dyldwatch.tables.native.sockets import decode_address, parse_inet, parse_unix

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux /proc")
SLEEP = shutil.which("sleep") or "/bin/sleep"


def pid_ctx(pid: int) -> QueryContext:
    return QueryContext.build({"pid": [(Op.EQUALS, str(pid))]})


def path_ctx(*constraints: tuple[int, str], column: str = "path") -> QueryContext:
    return QueryContext.build({column: list(constraints)})


@contextlib.contextmanager
def child(argv: list[str], env: dict[str, str] | None = None, ready: bool = False, **kw: object) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, killed by its pid in `finally`; with `ready`, waits for a line on stdout."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE if ready else subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    try:
        if ready:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, 9)
        proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def wait_exec(pid: int, not_exe: str = "") -> None:
    """Wait (bounded) until the child has exec'd (its exe is no longer the forking Python)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            exe = os.readlink(f"/proc/{pid}/exe")
            # the exe link switches before the new argv is published in /proc/PID/cmdline
            if exe not in (sys.executable, os.path.realpath(sys.executable), not_exe) and \
                    Path(f"/proc/{pid}/cmdline").read_bytes():
                return
        time.sleep(0.01)


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


# --- pure rules -------------------------------------------------------------------------------


def test_registry_and_columns_match_osquery_schema_facts() -> None:
    assert set(NATIVE_LINUX) == {"processes", "process_memory_map", "process_open_sockets", "process_envs",
                                 "crontab", "file", "time"}
    facts = native_tables()
    for table, cols in NATIVE_LINUX_COLUMNS.items():
        want = {c.name: ("BIGINT" if c.type == "UNSIGNED BIGINT" else c.type) for c in facts[table].columns}
        assert cols == {c: t for c, t in want.items() if c in cols}, table
        linux_only_missing = set(want) - set(cols)
        assert not linux_only_missing or all(c.startswith(("upid", "uppid", "cpu_", "translated", "elevated",
                                                              "secure_", "protection_", "virtual_", "elapsed",
                                                              "handle_", "percent_", "win_", "attributes",
                                                              "volume_", "file_id", "file_version", "product_",
                                                              "original_", "shortcut_", "bsd_flags"))
                                                for c in linux_only_missing), (table, linux_only_missing)


def test_osquery_split_and_cast() -> None:
    assert split("  a  b\tc ", " ") == ["a", "b\tc"]  # pieces trimmed, empties dropped
    assert split_n("Name:\tkworker/u8:2", ":", 1) == ["Name", "kworker/u8:2"]
    assert split_n("Uid:\t1000\t1000\t1000\t1000", ":", 1) == ["Uid", "1000\t1000\t1000\t1000"]
    assert cast("", "BIGINT") is None and cast("", "TEXT") == ""
    assert cast("12abc", "BIGINT") == 12 and cast("x", "INTEGER") is None
    assert cast("0x10", "BIGINT") == 16 and cast("010", "BIGINT") == 8  # tryTo base 0
    assert cast(str(2**32 + 5), "INTEGER") == 5  # sqlite3_result_int truncation
    assert cast(str(2**32 + 5), "BIGINT") == 2**32 + 5


def test_crontab_line_rules() -> None:
    assert cron_row("/etc/crontab", "*/5 * *\t* 1-5 root /usr/bin/x  --flag") == {
        "path": "/etc/crontab", "minute": "*/5", "hour": "*", "day_of_month": "*", "month": "*",
        "day_of_week": "1-5", "command": "root /usr/bin/x --flag", "pid_with_namespace": "0"}
    assert cron_row("p", "@reboot /opt/a b") == {"path": "p", "event": "@reboot", "command": "/opt/a b",
                                                 "pid_with_namespace": "0"}
    assert cron_row("p", "SHELL=/bin/sh") is None and cron_row("p", "MAILTO = root") is None


def test_socket_address_decoding() -> None:
    assert decode_address("0100007F", 2) == "127.0.0.1"
    assert decode_address("00000000000000000000000001000000", 10) == "::1"
    assert decode_address("0000000000000000FFFF00000100007F", 10) == "::ffff:127.0.0.1"
    assert decode_address("7F", 2) == ""
    tcp = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
           "   0: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000 0 4242 1 0 20 4 30 10 -1\n")
    [info] = parse_inet(2, 6, 7, tcp) or []
    assert (info.local_port, info.remote_port, info.state, info.socket) == (8080, 54321, "ESTABLISHED", "4242")
    unix = ("Num       RefCount Protocol Flags    Type St Inode Path\n"
            "0000000000000000: 00000002 00000000 00010000 0001 01 999 /run/my sock\n")
    [u] = parse_unix(3, unix) or []
    assert (u.family, u.protocol, u.unix_socket_path, u.state) == (1, 0, "/run/my", "")


def test_boost_v3_path_parts_and_lsperms() -> None:
    assert (filename("/a/b"), parent_path("/a/b")) == ("b", "/a")
    assert (filename("/a/b/"), parent_path("/a/b/")) == (".", "/a/b")
    assert (filename("/a"), parent_path("/a")) == ("a", "/")
    assert lsperms(0o104755) == "4755" and lsperms(0o100640) == "0640"


# --- live /proc -------------------------------------------------------------------------------


@linux
def test_processes_sleep_child() -> None:
    with child([SLEEP, "30"]) as p:
        wait_exec(p.pid)
        [row] = list(rows("processes", pid_ctx(p.pid)))
        assert row["path"] == os.path.realpath(SLEEP)
        assert row["cmdline"] == f"{SLEEP} 30"
        assert row["name"] == "sleep" and row["on_disk"] == 1 and row["parent"] == os.getpid()
        assert row["pid"] == p.pid and row["wired_size"] == 0 and row["uid"] == os.getuid()
        assert row["cwd"] == os.getcwd() and isinstance(row["start_time"], int) and row["start_time"] > 0
        mm = list(rows("process_memory_map", pid_ctx(p.pid)))
        assert any(r["path"] == os.path.realpath(SLEEP) and "x" in r["permissions"] for r in mm)
        assert {r["pid"] for r in mm} == {p.pid}
        anon = [r for r in mm if r["inode"] == 0 and r["path"] == ""]
        assert anon and all(r["pseudo"] == 0 for r in anon)
        assert any(r["path"] == "[stack]" and r["pseudo"] == 1 for r in mm)
    all_pids = [r["pid"] for r in rows("processes", QueryContext())]
    assert all_pids == sorted(all_pids, key=str)  # std::set<std::string> order


@linux
def test_deleted_executable_and_first_word_of_mapped_path(tmp_path: Path) -> None:
    exe = tmp_path / "dir with space" / "sleeper"
    exe.parent.mkdir()
    shutil.copy(SLEEP, exe)
    with child([str(exe), "30"]) as p:
        wait_exec(p.pid)
        exe.unlink()
        [row] = list(rows("processes", pid_ctx(p.pid)))
        assert row["path"] == str(exe) and row["on_disk"] == 0  # " (deleted)" stripped
        paths = {r["path"] for r in rows("process_memory_map", pid_ctx(p.pid))}
        assert str(tmp_path / "dir") in paths  # only the first word of "…/dir with space/sleeper (deleted)"
        assert not any("(deleted)" in x or " " in x for x in paths)


@linux
def test_memfd_executable() -> None:
    code = ("import os,sys; fd=os.memfd_create('dwtest', 0); os.write(fd, open(sys.argv[1],'rb').read()); "
            "os.execve(fd, ['dwtest', '30'], {})")
    with child([sys.executable, "-c", code, os.path.realpath(SLEEP)]) as p:
        wait_exec(p.pid)
        [row] = list(rows("processes", pid_ctx(p.pid)))
        assert row["path"] == "/memfd:dwtest" and row["on_disk"] == 0
        assert row["cmdline"] == "dwtest 30"
        mm = [r for r in rows("process_memory_map", pid_ctx(p.pid)) if r["path"] == "/memfd:dwtest"]
        assert mm and any("x" in r["permissions"] for r in mm) and all(r["inode"] != 0 for r in mm)


@linux
def test_process_envs_exact_values() -> None:
    env = {"DW_TEST_VAR": "a=b c", "DW_EMPTY": "", "PATH": os.environ.get("PATH", "")}
    with child([SLEEP, "30"], env=env) as p:
        wait_exec(p.pid)
        got = [(r["key"], r["value"]) for r in rows("process_envs", pid_ctx(p.pid))]
        assert ("DW_TEST_VAR", "a=b c") in got and ("DW_EMPTY", "") in got
        assert len(got) == 3


@linux
def test_process_open_sockets_loopback_connection() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        code = ("import socket,sys,time; s=socket.create_connection(('127.0.0.1', int(sys.argv[1]))); "
                "print(s.fileno(), s.getsockname()[1], flush=True); time.sleep(30)")
        proc = subprocess.Popen([sys.executable, "-c", code, str(port)], stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            fd, local_port = map(int, proc.stdout.readline().split())
            conn, _ = srv.accept()
            with conn:
                mine = [r for r in rows("process_open_sockets", pid_ctx(proc.pid)) if r["family"] == 2]
                assert len(mine) == 1
                assert {k: mine[0][k] for k in ("pid", "fd", "family", "protocol", "local_address", "local_port",
                                                 "remote_address", "remote_port", "state", "path")} == {
                    "pid": proc.pid, "fd": fd, "family": 2, "protocol": 6, "local_address": "127.0.0.1",
                    "local_port": local_port, "remote_address": "127.0.0.1", "remote_port": port,
                    "state": "ESTABLISHED", "path": ""}
                ns = os.readlink(f"/proc/{proc.pid}/ns/net")[5:-1]
                assert mine[0]["net_namespace"] == ns
                # Unfiltered: the same socket, listed once per namespace id osquery reads (twice, one
                # with net_namespace "0", where pid 1's namespace link is unreadable).
                every = [r for r in rows("process_open_sockets", QueryContext()) if r["socket"] == mine[0]["socket"]]
                pid1_ns_readable = os.path.exists("/proc/1/ns/net") and bool(_readlink("/proc/1/ns/net"))
                assert {r["net_namespace"] for r in every} <= {"0", ns}
                assert len(every) == (1 if pid1_ns_readable else 2)
                assert all(r["pid"] == proc.pid for r in every)
                listener = [r for r in every if r["state"] == "LISTEN"]
                assert not listener
        finally:
            os.kill(proc.pid, 9)
            proc.wait(timeout=5)
            assert proc.stdout is not None
            proc.stdout.close()


@linux
def test_file_table_equals_like_and_directory(tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    a.write_bytes(b"x" * 123)
    a.chmod(0o640)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("b")
    (tmp_path / "link").symlink_to(a)
    [row] = list(rows("file", path_ctx((Op.EQUALS, str(a)))))
    st = a.stat()
    assert row == {"path": str(a), "directory": str(tmp_path), "filename": "a.txt", "inode": st.st_ino,
                   "uid": st.st_uid, "gid": st.st_gid, "mode": "0640", "device": 0, "size": 123,
                   "block_size": st.st_blksize, "atime": int(st.st_atime), "mtime": int(st.st_mtime),
                   "ctime": int(st.st_ctime), "btime": 0, "hard_links": 1, "symlink": 0, "type": "regular",
                   "pid_with_namespace": 0}
    one = {r["path"]: r for r in rows("file", path_ctx((Op.LIKE, f"{tmp_path}/%")))}
    assert set(one) == {str(a), f"{tmp_path}/link", f"{tmp_path}/sub/"}
    assert one[f"{tmp_path}/sub/"]["filename"] == "." and one[f"{tmp_path}/sub/"]["directory"] == f"{tmp_path}/sub"
    assert one[f"{tmp_path}/sub/"]["type"] == "directory"
    link = one[f"{tmp_path}/link"]
    assert (link["symlink"], link["symlink_target_path"], link["type"], link["size"]) == (1, str(a), "regular", 123)
    deep = {r["path"] for r in rows("file", path_ctx((Op.LIKE, f"{tmp_path}/%%")))}
    assert deep == set(one) | {f"{tmp_path}/sub/b.txt"}
    listed = {r["path"]: r["directory"] for r in rows("file", path_ctx((Op.EQUALS, str(tmp_path)), column="directory"))}
    assert listed == {str(a): str(tmp_path), f"{tmp_path}/link": str(tmp_path), f"{tmp_path}/sub": str(tmp_path)}
    assert list(rows("file", QueryContext())) == []  # path/directory are required
    assert list(rows("file", path_ctx((Op.EQUALS, str(tmp_path / "missing"))))) == []


@linux
def test_time_and_crontab(tmp_path: Path) -> None:
    [t] = list(rows("time"))
    assert abs(t["unix_time"] - time.time()) < 5 and t["timezone"] == "UTC"
    assert t["datetime"] == t["iso_8601"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t["unix_time"]))
    (tmp_path / "etc" / "cron.d").mkdir(parents=True)
    (tmp_path / "etc" / "crontab").write_text("SHELL=/bin/sh\n# c\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n")
    (tmp_path / "etc" / "cron.d" / "job").write_text("@reboot root /opt/x/agent --start\n")
    (tmp_path / "etc" / "cron.d" / ".hidden").write_text("* * * * * root /hidden\n")
    got = list(crontab(QueryContext(), root=str(tmp_path)))
    assert [(r["path"], r.get("event"), r.get("minute"), r["command"]) for r in got] == [
        (f"{tmp_path}/etc/crontab", None, "17", "root cd / && run-parts --report /etc/cron.hourly"),
        (f"{tmp_path}/etc/cron.d/job", "@reboot", None, "root /opt/x/agent --start"),
    ]


@linux
def test_processes_exiting_mid_read_are_skipped() -> None:
    """Short-lived children come and go while every process table is read: no errors, no partial
    rows for a gone pid (osquery drops a process whose /proc/PID/status cannot be read)."""
    procs = [subprocess.Popen(["true"]) for _ in range(20)]
    try:
        for name in ("processes", "process_memory_map", "process_envs", "process_open_sockets"):
            for row in rows(name):
                assert "pid" in row
        gone = procs[0].pid
        procs[0].wait(timeout=5)
        assert list(rows("processes", pid_ctx(gone))) == [] or os.path.isdir(f"/proc/{gone}")
        assert list(rows("processes", pid_ctx(999_999_999))) == []
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, 9)
            p.wait(timeout=5)

"""Each live workload simulator's effect, seen through the native tables and dyldwatch's own
`rwx_regions` / `process_images` (what `dyldwatch hunt` will join)."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

import livehost
from dyldwatch.tables.base import Op, QueryContext
from dyldwatch.tables.native import rows
from dyldwatch.tables.process_images import ProcessImagesTable
from dyldwatch.tables.rwx_regions import RwxRegionsTable

pytestmark = pytest.mark.skipif(not livehost.have_toolchain(), reason="needs Linux and gcc")


def ctx(pid: int) -> QueryContext:
    return QueryContext.build({"pid": [(Op.EQUALS, str(pid))]})


def table(name: str, pid: int) -> list[dict[str, Any]]:
    if name == "rwx_regions":
        return list(RwxRegionsTable().generate(ctx(pid)))
    if name == "process_images":
        return list(ProcessImagesTable().generate(ctx(pid)))
    return list(rows(name, ctx(pid)))


def exec_paths(pid: int) -> set[str]:
    return {r["path"] for r in table("process_memory_map", pid) if "x" in r["permissions"]}


def env(pid: int) -> dict[str, str]:
    return {r["key"]: r["value"] for r in table("process_envs", pid)}


def test_a_ld_preload_from_dev_shm_with_connection() -> None:
    with livehost.ld_preload_shm() as sim:
        hook = sim.paths["hook"]
        assert hook.startswith("/dev/shm/")
        assert env(sim.pid)["LD_PRELOAD"] == hook
        assert hook in exec_paths(sim.pid)
        assert hook in {r["path"] for r in table("process_images", sim.pid)}
        conns = [r for r in table("process_open_sockets", sim.pid) if r["protocol"] == 6]
        assert [(r["remote_address"], r["remote_port"], r["state"]) for r in conns] == [
            ("127.0.0.1", sim.extra["port"], "ESTABLISHED")]
    assert not os.path.exists(hook) and not os.path.exists(f"/proc/{sim.pid}/exe")


def test_b_dlopen_of_planted_non_so_file() -> None:
    with livehost.dlopen_planted() as sim:
        lib = sim.paths["library"]
        assert lib.endswith("/.cache/x/update.dat")
        assert lib in exec_paths(sim.pid)
        assert lib in {r["path"] for r in table("process_images", sim.pid)}
        [f] = list(rows("file", QueryContext.build({"path": [(Op.EQUALS, lib)]})))
        assert f["type"] == "regular" and f["mode"] == "0644"


def test_c_anonymous_rwx() -> None:
    with livehost.anonymous_rwx() as sim:
        rwx = [r for r in table("rwx_regions", sim.pid) if r["permissions"].startswith("rwx")]
        assert rwx and all(r["anonymous"] == 1 for r in rwx)
        starts = {r["start"] for r in rwx}
        mm = [r for r in table("process_memory_map", sim.pid) if r["start"] in starts]
        assert mm and all(r["path"] == "" and r["inode"] == 0 and r["pseudo"] == 0 for r in mm)


def test_d_memfd_exec() -> None:
    with livehost.memfd_exec() as sim:
        memfd = sim.paths["memfd"]
        [p] = table("processes", sim.pid)
        assert (p["path"], p["on_disk"]) == (memfd, 0)  # osquery strips " (deleted)"; the file is gone
        assert p["name"]  # comm of an fexecve'd memfd is kernel-dependent ("3", "memfd:NAME"...)
        assert memfd in exec_paths(sim.pid)
        assert any(r["region_type"] == "memfd" for r in table("rwx_regions", sim.pid))


def test_e_ld_preload_allowlisted_first_entry() -> None:
    with livehost.ld_preload_allowlisted_first() as sim:
        assert env(sim.pid)["LD_PRELOAD"] == f"{sim.paths['first']}:{sim.paths['hook']}"
        assert {sim.paths["first_real"], sim.paths["hook"]} <= exec_paths(sim.pid)


def test_f_crontab_points_at_planted_binary() -> None:
    from dyldwatch.tables.native.crontab import ROOT_ENV

    before = os.environ.get(ROOT_ENV)
    with livehost.crontab_planted() as sim:
        assert os.environ[ROOT_ENV] == sim.paths["root"]
        cron = [r for r in rows("crontab") if r["path"] == sim.paths["cron_file"]]
        assert [r["command"] for r in cron] == [f"root {sim.paths['binary']} --quiet"]
        assert cron[0]["minute"] == "*/5"
        [p] = table("processes", sim.pid)
        assert p["path"] == sim.paths["binary"] and p["on_disk"] == 1
    assert os.environ.get(ROOT_ENV) == before


def test_g_benign_python_extension() -> None:
    with livehost.python_extension() as sim:
        ext = sim.paths["extension"]
        assert ext.startswith(sim.paths["site_packages"])
        assert ext in exec_paths(sim.pid)
        assert ext in {r["path"] for r in table("process_images", sim.pid)}
        assert table("rwx_regions", sim.pid) == []  # nothing JIT-like in a plain CPython
        [p] = table("processes", sim.pid)
        assert p["path"] == os.path.realpath(sys.executable)


def test_h_benign_jit_runtime() -> None:
    with livehost.jit_runtime() as sim:
        [p] = table("processes", sim.pid)
        assert p["path"] == sim.paths["exe"] and "/usr/lib/jvm/" in p["path"]
        rx = [r for r in table("rwx_regions", sim.pid) if r["anonymous"] == 1]
        assert rx and all(r["permissions"].startswith("r-x") for r in rx)

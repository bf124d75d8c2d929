"""End to end on this live Linux host: real attack simulations and benign workloads, through hunt.

Each test starts real processes (tests/livehost.py: gcc-built payloads, loopback only, every
process killed by its pid on exit), runs the packs the way `dyldwatch hunt` does (our tables and
osquery's native Linux tables, live, through the osquery-faithful engine), and asserts what fires
at which severity for those pids, and what stays silent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import livehost
from dyldwatch.hunt import Finding, hunt
from dyldwatch.packs import load_packs

pytestmark = [
    pytest.mark.skipif(not livehost.have_toolchain(), reason="needs Linux and gcc"),
    pytest.mark.skipif(os.geteuid() != 0, reason="reads every process's maps and environment as root"),
]


@pytest.fixture(scope="module")
def packs():
    return load_packs()


def findings(packs, pid: int | None = None, path: str | None = None, sites=None) -> list[Finding]:
    result = hunt(packs, sites)
    assert not result.errors, result.errors
    return [f for f in result.findings
            if (pid is None or f.row.get("pid") == pid) and (path is None or f.row.get("path") == path)]


def by(found: list[Finding], analytic: str, query: str | None = None) -> list[Finding]:
    return [f for f in found if f.analytic == analytic and (query is None or f.query == query)]


@pytest.fixture
def home_tmp() -> Iterator[None]:
    """Benign workloads live in a home, not in /tmp (a shared folder is evidence by itself)."""
    base = Path.home() / ".cache" / "dyldwatch-e2e"
    base.mkdir(parents=True, exist_ok=True)
    old = tempfile.tempdir
    tempfile.tempdir = str(base)
    try:
        yield
    finally:
        tempfile.tempdir = old


def test_preloaded_hook_from_dev_shm_with_a_connection_and_a_crontab_entry(packs, tmp_path: Path,
                                                                           monkeypatch) -> None:
    from dyldwatch.tables.native.crontab import ROOT_ENV

    with livehost.ld_preload_shm() as sim:
        cron = tmp_path / "etc" / "cron.d" / "sim"
        cron.parent.mkdir(parents=True)
        cron.write_text(f"*/5 * * * * root LD_PRELOAD={sim.paths['hook']} {sim.paths['exe']} connect 1\n")
        monkeypatch.setenv(ROOT_ENV, str(tmp_path))
        found = findings(packs, pid=sim.pid)
    hook = sim.paths["hook"]
    [lib] = [f for f in by(found, "AN0054") if f.row["path"] == hook]
    assert lib.severity == "high"
    assert "in a shared or temporary folder" in lib.row["reason"] and "named in LD_PRELOAD" in lib.row["reason"]
    assert "crontab entry points at it" in lib.row["reason"]
    [pre] = [f for f in by(found, "AN1467", "an1467_linux_preload") if f.row["path"] == hook]
    assert pre.severity == "high"


def test_library_planted_under_a_non_library_name_and_loaded_with_dlopen(packs) -> None:
    with livehost.dlopen_planted() as sim:
        found = findings(packs, pid=sim.pid)
    [lib] = [f for f in by(found, "AN0054") if f.row["path"] == sim.paths["library"]]
    assert lib.severity in ("medium", "high")
    assert "not a shared object's" in lib.row["reason"] and "replaceable by another user" in lib.row["reason"]


def test_anonymous_rwx_memory(packs) -> None:
    with livehost.anonymous_rwx() as sim:
        found = findings(packs, pid=sim.pid)
    assert [f.severity for f in by(found, "AN0840")] == ["high"]
    assert [f.severity for f in by(found, "AN1467", "an1467_linux_injected_memory")] == ["high"]


def test_code_running_from_an_unsealed_memfd(packs) -> None:
    with livehost.memfd_exec() as sim:
        found = findings(packs, pid=sim.pid)
    memfd = [f for f in by(found, "AN0840") if f.row["region_type"] == "memfd"]
    assert memfd and {f.severity for f in memfd} == {"high"} and "not sealed" in memfd[0].row["reason"]
    assert any(f.row["region_type"] == "memfd" for f in by(found, "AN1467", "an1467_linux_injected_memory"))


def test_an_allowlisted_first_preload_entry_does_not_hide_the_second(packs) -> None:
    with livehost.ld_preload_allowlisted_first() as sim:
        allow = [sim.paths["first"], sim.paths["first_real"]]
        found = findings(packs, pid=sim.pid, sites={"AN1467": {"allowlisted_preload_paths": allow}})
    preload = by(found, "AN1467", "an1467_linux_preload")
    assert [f.row["path"] for f in preload] == [sim.paths["hook"]]
    assert preload[0].severity == "high"


def test_a_virtualenv_with_a_compiled_extension_is_inventory(packs, home_tmp) -> None:
    with livehost.python_extension() as sim:
        found = findings(packs, pid=sim.pid)
    ext = [f for f in by(found, "AN0054") if f.row["path"] == sim.paths["extension"]]
    assert ext and {f.severity for f in ext} == {"low"}
    assert not [f for f in found if f.severity != "low"], [f.as_dict() for f in found if f.severity != "low"]


def test_pcre_regex_jit_is_inventory() -> None:
    """grep -P compiles its pattern with PCRE2's JIT into anonymous read-write-execute memory."""
    proc = subprocess.Popen(["grep", "-P", "(a+)+b"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        livehost.wait_until(lambda: any(line.split()[1] == "rwxp" and len(line.split()) == 5
                                        for line in livehost.maps_of(proc.pid).splitlines()), "PCRE JIT memory")
        found = findings(load_packs(), pid=proc.pid)
    finally:
        livehost.kill_pid(proc.pid)
        proc.wait(timeout=5)
    jit = by(found, "AN0840")
    assert jit and {f.severity for f in jit} == {"low"} and "JIT engine" in jit[0].row["reason"]
    assert not by(found, "AN1467")


def test_hunt_command_exits_non_zero_on_an_alert_and_prints_json() -> None:
    cmd = [sys.executable, "-m", "dyldwatch", "hunt", "--format", "json"]
    with livehost.anonymous_rwx() as sim:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    rows = json.loads(out.stdout)
    mine = [r for r in rows if r["pid"] == sim.pid]
    assert {r["analytic"] for r in mine} >= {"AN0840", "AN1467"} and all(r["severity"] == "high" for r in mine)
    assert all(r["severity"] in ("medium", "high") for r in rows)

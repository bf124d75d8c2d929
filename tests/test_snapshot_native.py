"""A live host moment becomes a near-miss scenario in one step: snapshot --native, export-scenario."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import livehost
from dyldwatch.cli import main
from dyldwatch.packs import load_packs
from dyldwatch.packs.scenarios import build, load_scenario
from dyldwatch.packs.validate import run_queries
from dyldwatch.sql.database import database_meta

pytestmark = pytest.mark.skipif(not livehost.have_toolchain() or os.geteuid() != 0,
                                reason="live Linux processes, read as root")


def test_snapshot_native_then_export_replays_the_finding(tmp_path: Path) -> None:
    runner = CliRunner()
    db = tmp_path / "host.db"
    with livehost.anonymous_rwx() as sim:
        out = runner.invoke(main, ["snapshot", "-o", str(db), "--native", "--table", "rwx_regions",
                                   "--table", "process_images"])
        assert out.exit_code == 0, out.output
    scenario = tmp_path / "linux_live_rwx.yaml"
    out = runner.invoke(main, ["export-scenario", str(db), "--name", "linux_live_rwx", "--pid", str(sim.pid),
                               "-o", str(scenario)])
    assert out.exit_code == 0, out.output
    sc = load_scenario(scenario)
    assert {r["pid"] for r in sc.tables["processes"]} == {sim.pid}
    assert any(r["permissions"].startswith("rwx") for r in sc.tables["rwx_regions"])
    assert "process_memory_map" in sc.tables  # osquery's rows, as osquery's Linux table fills them
    rebuilt = build(sc, tmp_path / "dbs")
    outcomes = run_queries(load_packs(), database_meta(rebuilt))
    fired = {q for (_, q, _), o in outcomes.items() if any(r.get("pid") == sim.pid for r in o.rows)}
    assert {"an0840_linux_anonymous_exec_memory", "an1467_linux_injected_memory"} <= fired


def test_native_refused_with_a_root(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["snapshot", "-o", str(tmp_path / "x.db"), "--native", "--root", str(tmp_path)])
    assert out.exit_code != 0 and "--native" in out.output


def test_export_of_something_that_is_not_a_snapshot_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00" * 4096)
    out = CliRunner().invoke(main, ["export-scenario", str(junk), "--name", "x"])
    assert out.exit_code != 0 and "does not make a valid scenario" in out.output and "Traceback" not in out.output

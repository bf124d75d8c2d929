"""Scenario databases: every expectation holds, near misses stay silent, fixtures fit the facts."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dyldwatch.cli.packs import validate as validate_cmd
from dyldwatch.packs import PackError, load_packs
from dyldwatch.packs import scenarios as samples
from dyldwatch.packs import validate as validation
from dyldwatch.packs.scenarios import SCENARIOS_DIR, Scenario, build, build_all, load_scenario, load_scenarios


@pytest.fixture(scope="module")
def packs():
    return load_packs()


@pytest.fixture(scope="module")
def dbs(tmp_path_factory) -> list[Path]:
    return build_all(tmp_path_factory.mktemp("dbs"))


@pytest.fixture(scope="module")
def run(packs, dbs):
    return validation.validate(packs, dbs)


def test_every_expectation_holds(run) -> None:
    failures = [r.as_dict() for r in run.results if r.ok is False]
    assert not failures, json.dumps(failures, indent=1)
    assert run.ok


def test_every_pack_declares_every_scenario_of_its_platforms(packs) -> None:
    scenarios = {s.name: s.platform for s in load_scenarios()}
    for p in packs:
        declared = {e.scenario for e in p.expectations}
        wanted = {n for n, plat in scenarios.items() if plat in p.platforms}
        assert wanted <= declared, f"{p.id} has no expectation for {sorted(wanted - declared)}"
        assert declared <= set(scenarios), f"{p.id} names unknown scenarios {sorted(declared - set(scenarios))}"


def test_each_analytic_fires_somewhere_and_baselines_are_silent(packs, run) -> None:
    for p in packs:
        fired = {s for (a, _, s), rows in run.rows.items()
                 if a == p.id and any(r["severity"] != "low" for r in rows)}
        assert fired, f"{p.id} never fires"
        assert not fired & {"darwin_baseline", "linux_baseline"}  # low rows are inventory, not alerts


def test_rows_name_the_object_and_reason(run) -> None:
    for (_, _, _), rows in run.rows.items():
        for row in rows:
            assert row["reason"], row
            assert row["severity"] in ("low", "medium", "high"), row
            assert row.get("pid") is not None or row.get("path"), row


def rerun(packs, tmp_path: Path, scenario: Scenario, analytic: str) -> int:
    """Rows the analytic (or one query of it, `AN0607/query_name`) returns on the scenario."""
    pack_id, _, query = analytic.partition("/")
    db = build(scenario, tmp_path)
    r = validation.validate([p for p in packs if p.id == pack_id], [db], require_all=False)
    return sum(len(v) for (_, q, _), v in r.rows.items() if not query or q == query)


def variant(name: str, edit) -> Scenario:
    """The scenario with `edit(sc)` applied: literal rows in sc.tables, generated ones via sc.fixtures."""
    sc = copy.deepcopy(load_scenario(SCENARIOS_DIR / f"{name}.yaml"))
    edit(sc)
    sc.name = f"{name}_variant"
    return sc


def _fixture(sc: Scenario, suffix: str) -> dict:
    return next(fx for fx in sc.fixtures if fx["path"].endswith(suffix))


def _entitle(sc: Scenario) -> None:
    sig = _fixture(sc, "/QuickNotes")["macho"]["signature"]
    sig["entitlements"] = {**sig.get("entitlements", {}), "com.apple.security.cs.allow-jit": True}


def _same_team(sc: Scenario) -> None:
    _fixture(sc, "libcrashreporter.dylib")["macho"]["signature"] = {"type": "certificate", "team_id": "ACME12345"}


def _benign_preload(sc: Scenario) -> None:
    sc.tables["process_envs"] = [e for e in sc.tables["process_envs"] if "jemalloc" in e["value"]]
    sc.tables["file"][0]["size"] = 0


def _editable(sc: Scenario) -> None:
    sc.tables["applescript_info"][0]["run_only"] = 0


def _old_and_team_signed(sc: Scenario) -> None:
    for fx in sc.fixtures:
        fx["host"] = {**fx.get("host", {}), "user_writable": 0, "btime": 1700000000, "mtime": 1700000000}
        fx.pop("xattrs", None)


@pytest.mark.parametrize(("scenario", "analytic", "edit"), [
    ("darwin_rwx_injection", "AN0840", _entitle),
    ("darwin_rwx_injection", "AN1467", _entitle),
    ("darwin_dylib_hijack", "AN0607/an0607_darwin_planted_dylib", _same_team),
    ("linux_ld_preload", "AN1467", _benign_preload),
    ("darwin_runonly_applescript", "AN0057", _editable),
    ("darwin_dropped_dylib", "AN0054", _old_and_team_signed),
])
def test_near_miss_variant_of_a_firing_scenario_is_silent(packs, tmp_path, scenario, analytic, edit) -> None:
    original = load_scenario(SCENARIOS_DIR / f"{scenario}.yaml")
    assert rerun(packs, tmp_path, original, analytic) > 0, "the unmodified scenario must fire"
    assert rerun(packs, tmp_path, variant(scenario, edit), analytic) == 0


def test_fixture_lint_reports_file_line(tmp_path: Path) -> None:
    text = (SCENARIOS_DIR / "linux_baseline.yaml").read_text()
    bad = tmp_path / "linux_baseline.yaml"
    bad.write_text(text.replace("{pid: 812, name: nginx, path: /usr/sbin/nginx",
                                "{pid: 812, nam: nginx, path: /usr/sbin/nginx")
                   + "  launchd:\n    - {path: /x, label: y}\n")
    with pytest.raises(PackError) as err:
        load_scenario(bad)
    messages = {p.field: p for p in err.value.problems}
    nam = next(p for f, p in messages.items() if f.endswith(".nam"))
    assert nam.line == next(i for i, ln in enumerate(bad.read_text().splitlines(), 1) if "nam: nginx" in ln)
    assert "has no column 'nam'" in nam.message
    assert "no table 'launchd' on linux" in messages["tables.launchd"].message


def test_generate_entries_need_the_generator(tmp_path: Path, monkeypatch) -> None:
    sc = copy.deepcopy(load_scenario(SCENARIOS_DIR / "darwin_packed_macho.yaml"))
    sc.generate = [{"table": "macho_info", "path": "/Users/alice/x"}]
    monkeypatch.setattr(samples, "GENERATOR", None)
    with pytest.raises(RuntimeError, match="generator"):
        build(sc, tmp_path)
    monkeypatch.setattr(samples, "GENERATOR", lambda s: {"macho_info": [{"path": "/Users/alice/x", "arch": "arm64"}]})
    db = build(sc, tmp_path)
    import apsw

    rows = apsw.Connection(str(db)).execute("SELECT arch FROM macho_info WHERE path = '/Users/alice/x'").fetchall()
    assert rows == [("arm64",)]


def test_staleness_and_meta(tmp_path: Path) -> None:
    scen = tmp_path / "scenarios"
    scen.mkdir()
    src = SCENARIOS_DIR / "linux_memfd_exec.yaml"
    (scen / src.name).write_text(src.read_text())
    assert samples.stale(tmp_path, scen) == ["linux_memfd_exec"]
    build_all(tmp_path, scen)
    assert samples.stale(tmp_path, scen) == []
    assert validation.database_meta(tmp_path / "linux_memfd_exec.db")["platform"] == "linux"
    (scen / src.name).write_text(src.read_text() + "\n# edited\n")
    assert samples.stale(tmp_path, scen) == ["linux_memfd_exec"]


def test_build_is_deterministic(tmp_path: Path) -> None:
    a = build(SCENARIOS_DIR / "darwin_baseline.yaml", tmp_path / "a").read_bytes()
    b = build(SCENARIOS_DIR / "darwin_baseline.yaml", tmp_path / "b").read_bytes()
    assert a == b


def test_validate_cli(dbs, tmp_path: Path) -> None:
    runner = CliRunner()
    args = [a for db in dbs for a in ("--db", str(db))]
    out = runner.invoke(validate_cmd, [*args, "--format", "json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    rows = doc["results"]
    assert rows and {"analytic", "scenario", "expected", "rows", "result", "extension_calls"} <= set(rows[0])
    assert all(r["result"] in ("pass", "unchecked") for r in rows)
    assert doc["sqlite"] and doc["queries"]["an0054_linux_user_writable_objects"]["extension_calls"] > 0
    assert all(q["found"] == q["expected"] and q["benign_alerts"] == 0 for q in doc["quality"].values())
    md = runner.invoke(validate_cmd, [*args, "--markdown"])
    assert md.output.startswith("| scenario | AN0054 |") and "darwin_baseline" in md.output
    broken = tmp_path / "AN0840.yaml"
    broken.write_text(Path("packs/AN0840.yaml").read_text().replace(
        "scenario: darwin_jit_browsers, fires: false", "scenario: darwin_jit_browsers, fires: true"))
    bad = runner.invoke(validate_cmd, [*args, str(broken)])
    assert bad.exit_code == 1 and "failed expectations" in bad.output


def test_committed_databases_are_current() -> None:
    """CI: sample_dbs/*.db must be rebuilt (`dyldwatch build --target samples`) when a fixture or table changes."""
    if not list(samples.SAMPLES_DIR.glob("*.db")):
        pytest.skip("no committed sample databases")
    assert samples.stale() == [], "run: dyldwatch build --target samples"


def test_scenario_rows_must_look_like_osquerys(tmp_path: Path) -> None:
    """Rows osquery never produces would prove a pack on nothing: lint names file, line and rule."""
    from dyldwatch.packs import PackError

    bad = tmp_path / "linux_shapes.yaml"
    bad.write_text(
        "name: linux_shapes\nplatform: linux\ndescription: shapes\nnow: 1795000000\ntables:\n"
        "  processes:\n    - {pid: 5, name: x, path: /tmp/x (deleted), on_disk: 0}\n"
        "  process_memory_map:\n    - {pid: 5, start: '0x1', end: '0x2', permissions: r-xp, path: /tmp/x (deleted)}\n")
    with pytest.raises(PackError) as err:
        samples.load_scenario(bad)
    text = str(err.value)
    assert f"{bad}:7: tables.processes.0.path" in text and "drops ' (deleted)'" in text
    assert f"{bad}:9: tables.process_memory_map.0.path" in text and "first word" in text

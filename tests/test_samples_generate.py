"""Scenario rows generated from fixture recipes equal what the real tables say about the same files."""

from __future__ import annotations

import copy
import os

import pytest

from dyldwatch.packs import scenarios as samples
from dyldwatch.packs.scenarios import (
    SCENARIOS_DIR,
    Scenario,
    build,
    build_macho,
    check_recipe,
    generate_rows,
    load_scenario,
)
from dyldwatch.tables.base import Op, QueryContext
from dyldwatch.tables.macho_info import MachoInfoTable

APP = "/Applications/Acme.app/Contents/MacOS/Acme"
PLANT = "/Users/Shared/Acme/libplant.dylib"
MISSING = "/Users/Shared/Acme/libnext.dylib"
RECIPE = {"filetype": "execute", "arch": "arm64",
          "dylibs": ["@rpath/libplant.dylib", {"name": "@rpath/libnext.dylib", "kind": "weak"},
                     "@rpath/Core.framework/Versions/A/Core", "/usr/lib/libSystem.B.dylib"],
          "rpaths": ["/Users/Shared/Acme", "@executable_path/../Frameworks"], "symbols": 12, "cstrings": 30,
          "signature": {"type": "certificate", "team_id": "ACME12345", "identifier": "com.acme",
                        "hardened_runtime": True, "entitlements": {"com.apple.security.cs.allow-jit": True}}}


def scenario() -> Scenario:
    fixtures = [
        {"path": APP, "macho": RECIPE, "host": {"uid": 0, "btime": 1780000000, "user_writable": 0}},
        {"path": PLANT, "macho": {"filetype": "dylib", "archs": ["x86_64", "arm64"], "signature": "adhoc"},
         "host": {"uid": 502, "mode": "0664", "btime": 1794990000, "user_writable": 1, "writable_by": "group staff"},
         "xattrs": {"quarantine": {"agent": "Safari", "time": 1794990000}, "where_froms": ["https://x.example/a"]}},
        {"path": "/Applications/Acme.app/Contents/Frameworks/Core.framework/Versions/A/Core",
         "macho": {"filetype": "dylib", "signature": "linker-signed"}},
        {"path": MISSING, "absent": True, "host": {"user_writable": 1, "writable_by": "group staff"}},
    ]
    generate = [{"table": "macho_info", "path": "/%%"}, {"table": "macho_load_commands", "path": APP},
                {"table": "dylib_provenance", "path": [APP, PLANT, MISSING]}]
    return Scenario("t", "darwin", "test", 1795000000, {}, generate, fixtures)


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict]]:
    return generate_rows(scenario())


def test_macho_info_rows_equal_the_table_on_the_same_file(rows, tmp_path) -> None:
    f = tmp_path / "Acme"
    f.write_bytes(build_macho(APP, RECIPE))
    direct = list(MachoInfoTable().generate(QueryContext.build({"path": [(Op.EQUALS, str(f))]})))
    assert len(direct) == 1
    gen = next(r for r in rows["macho_info"] if r["path"] == APP)
    for col, value in direct[0].items():
        want = value.replace(str(tmp_path), "/Applications/Acme.app/Contents/MacOS") if isinstance(value, str) else value
        assert gen[col] == (int(want) if isinstance(want, bool) else want), col
    assert gen["signature_type"] == "certificate" and gen["team_id"] == "ACME12345" and gen["hardened_runtime"] == 1
    assert gen["entitlements"] == '{"com.apple.security.cs.allow-jit":true}'
    fat = [r for r in rows["macho_info"] if r["path"] == PLANT]
    assert [r["arch"] for r in fat] == ["x86_64", "arm64"] and all(r["fat"] == 1 for r in fat)
    assert {r["signature_type"] for r in rows["macho_info"]} == {"certificate", "adhoc", "linker-signed"}


def test_install_names_resolve_under_the_mirrored_root(rows) -> None:
    lc = {r["name"]: r for r in rows["macho_load_commands"] if r["cmd"].startswith("LC_LOAD")}
    assert (lc["@rpath/libplant.dylib"]["resolved_path"], lc["@rpath/libplant.dylib"]["resolved_exists"]) == (PLANT, 1)
    assert (lc["@rpath/libnext.dylib"]["resolved_path"], lc["@rpath/libnext.dylib"]["resolved_exists"]) == (MISSING, 0)
    core = lc["@rpath/Core.framework/Versions/A/Core"]
    assert core["resolved_path"] == "/Applications/Acme.app/Contents/Frameworks/Core.framework/Versions/A/Core"
    assert core["resolved_exists"] == 1
    system = lc["/usr/lib/libSystem.B.dylib"]
    assert (system["resolved_exists"], system["in_shared_cache"]) == (0, 1)


def test_no_temporary_path_leaks_and_host_facts_are_declared(rows) -> None:
    for table, rs in rows.items():
        for r in rs:
            for v in r.values():
                assert not (isinstance(v, str) and "dyldwatch-fixtures-" in v), (table, r)
    prov = {r["path"]: r for r in rows["dylib_provenance"]}
    plant = prov[PLANT]
    assert (plant["uid"], plant["mode"], plant["user_writable"], plant["writable_by"]) == (502, "0664", 1, "group staff")
    assert (plant["quarantined"], plant["quarantine_agent"], plant["quarantine_time"]) == (1, "Safari", 1794990000)
    assert plant["where_froms"] == '["https://x.example/a"]' and plant["signature_type"] == "adhoc"
    assert (prov[APP]["ctime"], prov[APP]["mtime"]) == (None, 1780000000)  # undeclared host facts are NULL
    assert (prov[MISSING]["exists"], prov[MISSING]["user_writable"]) == (0, 1)


def test_generation_is_deterministic(tmp_path) -> None:
    assert generate_rows(scenario()) == generate_rows(scenario())
    sc = load_scenario(SCENARIOS_DIR / "darwin_dylib_hijack.yaml")
    a = build(sc, tmp_path / "a").read_bytes()
    b = build(copy.deepcopy(sc), tmp_path / "b").read_bytes()
    assert a == b


def test_recipe_and_generate_lint(tmp_path) -> None:
    with pytest.raises(ValueError, match="signature"):
        check_recipe({"signature": "developer-id"})
    with pytest.raises(ValueError, match="unknown field"):
        check_recipe({"fat": True})
    text = (SCENARIOS_DIR / "darwin_packed_macho.yaml").read_text()
    bad = tmp_path / "darwin_packed_macho.yaml"
    bad.write_text(text + "  - {table: rwx_regions, path: /x}\n")
    with pytest.raises(samples.PackError, match="cannot run over fixture files"):
        load_scenario(bad)


def test_every_darwin_file_table_is_generated() -> None:
    """Our file tables are generated wherever a recipe can say it; literal rows stay for the rest."""
    for sc in samples.load_scenarios():
        if sc.platform == "darwin":
            assert not set(sc.tables) & set(samples.GENERATED_TABLES), sc.name
        assert all(os.path.isabs(fx["path"]) for fx in sc.fixtures)

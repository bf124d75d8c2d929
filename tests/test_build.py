"""Build targets: each output has its format's documented fields, and the built SQL still lints."""

from __future__ import annotations

import json
from pathlib import Path

import apsw.ext
import pytest
import yaml
from click.testing import CliRunner

from dyldwatch.cli.packs import build
from dyldwatch.deploy.build import build as build_target
from dyldwatch.deploy.layout import LAYOUTS, extensions_load_text, flags_text
from dyldwatch.packs import load_packs, load_site
from dyldwatch.packs.lint import session_for
from dyldwatch.sql.facts import OUR_TABLES, expand_platforms

OSQUERY_QUERY_KEYS = {"query", "interval", "platform", "version", "description", "value", "snapshot", "removed"}
FLEET_PACK_QUERY_KEYS = {"query", "name", "description", "interval", "snapshot", "removed", "platform", "version"}
GITOPS_KEYS = {"name", "description", "query", "platform", "interval", "min_osquery_version", "logging",
               "observer_can_run", "automations_enabled", "discard_data"}


def assert_prepares(sql: str, platform: str) -> None:
    assert "{{" not in sql
    for p in expand_platforms(platform):
        info = apsw.ext.query_info(session_for(p), sql)
        assert not (info.query_remaining or "").strip(" \n;")


@pytest.fixture(scope="module")
def packs():
    return load_packs()


def test_osquery_target(tmp_path: Path, packs) -> None:
    build_target(packs, "osquery", tmp_path)
    for layout in LAYOUTS.values():  # per-platform places and flags, from the one layout module
        conf = json.loads((tmp_path / layout.folder / "osquery.conf").read_text())
        assert conf["packs"] == {p.pack_name: f"{layout.packs_dir}/{p.pack_name}.json" for p in packs}
        assert (tmp_path / layout.folder / "osquery.flags").read_text() == flags_text(layout, config=True)
        assert (tmp_path / layout.folder / "extensions.load").read_text() == extensions_load_text(layout)
    for p in packs:
        doc = json.loads((tmp_path / "packs" / f"{p.pack_name}.json").read_text())
        assert set(doc) == {"platform", "version", "discovery", "queries"}
        assert doc["discovery"], "discovery must gate the pack on the extension's tables"
        for q in doc["discovery"]:
            assert "osquery_registry" in q and "active = 1" in q
            assert any(f"name = '{t}'" in q for t in OUR_TABLES)
            assert_prepares(q, doc["platform"])
        assert set(doc["queries"]) == {q.name for q in p.queries}
        for entry in doc["queries"].values():
            assert set(entry) <= OSQUERY_QUERY_KEYS and {"query", "interval", "platform"} <= set(entry)
            assert isinstance(entry["interval"], int) and isinstance(entry["snapshot"], bool)
            assert_prepares(entry["query"], entry["platform"])


def test_fleetctl_target(tmp_path: Path, packs) -> None:
    build_target(packs, "fleetctl", tmp_path)
    for p in packs:
        docs = list(yaml.safe_load_all((tmp_path / f"{p.pack_name}.yml").read_text()))
        assert all(d["apiVersion"] == "v1" for d in docs)
        queries = {d["spec"]["name"]: d["spec"] for d in docs if d["kind"] == "query"}
        [pack] = [d["spec"] for d in docs if d["kind"] == "pack"]
        assert pack["name"] == p.pack_name and pack["targets"]["labels"]
        for spec in queries.values():
            assert set(spec) == {"name", "description", "query"}
        for entry in pack["queries"]:
            assert set(entry) == FLEET_PACK_QUERY_KEYS
            assert entry["query"] in queries, "pack entries reference kind: query documents by name"
            assert_prepares(queries[entry["query"]]["query"], entry["platform"])


def test_fleet_gitops_target(tmp_path: Path, packs) -> None:
    build_target(packs, "fleet-gitops", tmp_path)
    snippet = yaml.safe_load((tmp_path / "default.snippet.yml").read_text())
    refs = [r["path"] for r in snippet["reports"]]
    assert len(refs) == len(packs)
    for ref in refs:
        items = yaml.safe_load((tmp_path / ref).read_text())
        assert isinstance(items, list) and items
        for item in items:
            assert set(item) == GITOPS_KEYS
            assert item["logging"] in ("snapshot", "differential", "differential_ignore_removals")
            assert item["platform"] in ("darwin", "linux")
            assert_prepares(item["query"], item["platform"])


def test_site_values_reach_every_target(tmp_path: Path, packs) -> None:
    site = tmp_path / "SITE.yaml"
    site.write_text("knobs:\n  allowlisted_team_ids: [\"O'NEIL1234\"]\n  recency_seconds: 86400\n")
    sites = load_site(site, packs)
    build_target(packs, "osquery", tmp_path / "o", sites)
    doc = json.loads((tmp_path / "o" / "packs" / "dyldwatch-AN0054.json").read_text())
    sql = doc["queries"]["an0054_darwin_user_writable_images"]["query"]
    assert "'O''NEIL1234'" in sql and "now.t - 86400" in sql
    assert_prepares(sql, "darwin")


def test_build_cli_refuses_bad_site_and_bad_packs(tmp_path: Path) -> None:
    runner = CliRunner()
    site = tmp_path / "SITE.yaml"
    site.write_text("knobs:\n  jit_runtimes: [\"/opt/x\\0y\"]\n")
    result = runner.invoke(build, ["--target", "osquery", "--site", str(site), "-o", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert f"{site}:2" in result.output and "jit_runtimes" in result.output
    assert not (tmp_path / "out").exists()
    bad = tmp_path / "AN0840.yaml"
    bad.write_text(Path("packs/AN0840.yaml").read_text().replace("r.max_permissions", "r.max_perms"))
    result = runner.invoke(build, ["--target", "fleetctl", "-o", str(tmp_path / "f"), str(bad)])
    assert result.exit_code != 0 and "no such column: r.max_perms" in result.output


def test_build_cli_writes_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(build, ["--target", "fleet-gitops", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lib" / "dyldwatch" / "AN0607.reports.yml").exists()

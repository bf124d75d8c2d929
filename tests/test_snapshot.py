"""`dyldwatch snapshot`: our tables on this host (or under a root) into a database query/validate read."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import apsw
import pytest
from click.testing import CliRunner

from dyldwatch.cli import main
from dyldwatch.packs.scenarios import build_macho

EXE_RECIPE = {"filetype": "execute", "dylibs": ["@rpath/libfoo.dylib", "/opt/acme/lib/libabs.dylib"],
              "rpaths": ["@executable_path/../lib"], "signature": {"type": "certificate", "team_id": "ACME12345"}}


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    """A tiny mounted 'image': /opt/acme/bin/tool, /opt/acme/lib/libfoo.dylib, /opt/acme/lib/libabs.dylib."""
    root = tmp_path / "image"
    (root / "opt/acme/bin").mkdir(parents=True)
    (root / "opt/acme/lib").mkdir(parents=True)
    (root / "opt/acme/bin/tool").write_bytes(build_macho("/opt/acme/bin/tool", EXE_RECIPE))
    for name in ("libfoo.dylib", "libabs.dylib"):
        (root / "opt/acme/lib" / name).write_bytes(build_macho(f"/opt/acme/lib/{name}",
                                                               {"filetype": "dylib", "signature": "adhoc"}))
    (root / "opt/acme/README").write_text("not a Mach-O")
    return root


def rows(db: Path, sql: str) -> list[tuple]:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def test_snapshot_of_fixture_tree_and_processes_reads_back(image: Path, tmp_path: Path) -> None:
    db = tmp_path / "host.db"
    runner = CliRunner()
    res = runner.invoke(main, ["snapshot", "-o", str(db), "--path", f"{image}/opt/%%"])
    assert res.exit_code == 0, res.output
    assert db.exists()
    info = rows(db, "SELECT path, signature_type FROM macho_info ORDER BY path")
    assert [p for p, _ in info] == [f"{image}/opt/acme/bin/tool", f"{image}/opt/acme/lib/libabs.dylib",
                                    f"{image}/opt/acme/lib/libfoo.dylib"]
    lc = dict(rows(db, "SELECT name, resolved_exists FROM macho_load_commands WHERE cmd = 'LC_LOAD_DYLIB'"))
    assert lc["@rpath/libfoo.dylib"] == 1 and lc["/opt/acme/lib/libabs.dylib"] == 0  # not under / on this host
    if sys.platform.startswith("linux"):
        assert rows(db, "SELECT count(*) FROM process_images")[0][0] > 0
        images = rows(db, "SELECT count(*) FROM dylib_provenance d JOIN process_images i ON i.path = d.path")
        assert images[0][0] > 0, "dylib_provenance covers the images process_images found"
    meta = rows(db, "SELECT tables, patterns, row_counts FROM dyldwatch_snapshot")[0]
    assert json.loads(meta[1]) == [f"{image}/opt/%%"] and json.loads(meta[2])["macho_info"] == 3
    assert rows(db, "SELECT count(*) FROM processes")[0][0] == 0  # native tables exist, empty

    q = runner.invoke(main, ["query", "--db", str(db), "--format", "json",
                             f"SELECT path, team_id FROM macho_info WHERE path LIKE '{image}/opt/%%' "
                             "AND signature_type = 'certificate'"])
    assert q.exit_code == 0, q.output
    assert json.loads(q.output) == [{"path": f"{image}/opt/acme/bin/tool", "team_id": "ACME12345"}]
    v = runner.invoke(main, ["validate", "--db", str(db), "--format", "json"])
    assert v.exit_code == 0, v.output
    assert all(r["result"] == "unchecked" for r in json.loads(v.output)["results"])


def test_root_strips_the_prefix_and_resolves_inside_the_image(image: Path, tmp_path: Path) -> None:
    db = tmp_path / "image.db"
    res = CliRunner().invoke(main, ["snapshot", "-o", str(db), "--root", str(image), "--path", "/opt/acme/%%"])
    assert res.exit_code == 0, res.output
    paths = [p for (p,) in rows(db, "SELECT path FROM macho_info ORDER BY path")]
    assert paths == ["/opt/acme/bin/tool", "/opt/acme/lib/libabs.dylib", "/opt/acme/lib/libfoo.dylib"]
    lc = {n: (p, e) for n, p, e in rows(
        db, "SELECT name, resolved_path, resolved_exists FROM macho_load_commands WHERE cmd = 'LC_LOAD_DYLIB'")}
    assert lc["@rpath/libfoo.dylib"] == ("/opt/acme/lib/libfoo.dylib", 1)
    assert lc["/opt/acme/lib/libabs.dylib"] == ("/opt/acme/lib/libabs.dylib", 1)  # checked under the root
    assert rows(db, "SELECT directory FROM dylib_provenance WHERE path = '/opt/acme/bin/tool'") == [("/opt/acme/bin",)]
    for (text,) in rows(db, "SELECT group_concat(coalesce(path,'') || coalesce(error,'') || "
                            "coalesce(writable_by,'')) FROM dylib_provenance"):
        assert str(image) not in text
    assert rows(db, "SELECT count(*) FROM process_images") == [(0,)]  # process tables are left out
    assert rows(db, "SELECT platform, root FROM dyldwatch_snapshot") == [("darwin", str(image))]


@pytest.mark.parametrize(("args", "message"), [
    (["--table", "nope"], "unknown table 'nope'"),
    (["--table", "rwx_regions", "--root", "."], "cannot run with --root"),
    (["--path", "relative/%"], "absolute"),
])
def test_bad_arguments_are_refused_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    res = CliRunner().invoke(main, ["snapshot", "-o", str(tmp_path / "x.db"), *args])
    assert res.exit_code != 0
    assert message in res.output
    assert not (tmp_path / "x.db").exists()


def test_unwritable_output_and_missing_patterns(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = CliRunner().invoke(main, ["snapshot", "-o", str(blocker / "x.db"), "--table", "macho_info"])
    assert res.exit_code != 0 and "cannot write" in res.output
    ok = CliRunner().invoke(main, ["snapshot", "-o", str(tmp_path / "y.db"), "--table", "macho_info"])
    assert ok.exit_code == 0, ok.output
    assert "macho_info: no --path patterns" in ok.output  # CliRunner mixes stderr in

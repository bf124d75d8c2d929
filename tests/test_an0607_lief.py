"""AN0607 on a real binary tampered the way an attacker does it.

A Developer ID signed executable from the corpus (sentry-cli, universal) gets an LC_LOAD_DYLIB for
a foreign dylib added with LIEF and its signature removed (insert_dylib/optool --strip-codesig), or
left in place, or broken. Our real tables read the copies; their rows, plus recorded process rows,
go into a sample-style database where the pack's queries run exactly as `validate` runs them.
Nothing here is committed: the corpus file and its modified copies live under pytest's tmp_path.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import apsw
import lief
import pytest

from dyldwatch import resources
from dyldwatch.packs import load_pack
from dyldwatch.packs.scenarios import _declared, build_macho
from dyldwatch.snapshot import Runner
from dyldwatch.sql.database import META_TABLE
from dyldwatch.sql.database import insert_rows as _insert
from dyldwatch.sql.facts import ddl_script
from dyldwatch.sql.functions import register_functions
from dyldwatch.sql.session import database_engine
from dyldwatch.tables import load_table
from dyldwatch.tables.base import QueryContext
from dyldwatch.tables.macho_info import MachoInfoTable
from dyldwatch.tables.macho_load_commands import MachoLoadCommandsTable

pytestmark = pytest.mark.corpus
lief.logging.disable()

SENTRY_TEAM = "97JCY7859U"  # the corpus pins the file by sha256 (manifest.tsv)
FOREIGN = "/Users/Shared/.cache/libhelper.dylib"
MACOS = "/Applications/Acme Tools.app/Contents/MacOS"
SIBLING = f"{MACOS}/acme-helper"  # the vendor's binary, untouched
TAMPERED = f"{MACOS}/acme-tools"
TAMPERED_QUERY = "an0607_darwin_tampered_executable"
PLANTED_QUERY = "an0607_darwin_planted_dylib"
DYLIB_CMDS = {"LC_LOAD_DYLIB", "LC_LOAD_WEAK_DYLIB", "LC_REEXPORT_DYLIB", "LC_LAZY_LOAD_DYLIB", "LC_LOAD_UPWARD_DYLIB"}


def _signed_binary(corpus_dir: Path) -> Path:
    rows = (corpus_dir / "manifest.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    for line in rows[1:]:
        row = dict(zip(header, line.split("\t"), strict=False))
        if row.get("path_in_package", "").endswith("bin/sentry-cli"):
            path = corpus_dir / "files" / row["file"]
            if path.is_file():
                return path
    pytest.skip(f"sentry-cli (Developer ID signed) is not in the corpus at {corpus_dir}")


def _info(path: Path | str) -> list[dict[str, Any]]:
    return list(MachoInfoTable().generate(QueryContext.build({"path": [(2, str(path))]})))


def _load_commands(path: Path | str) -> list[dict[str, Any]]:
    return list(MachoLoadCommandsTable().generate(QueryContext.build({"path": [(2, str(path))]})))


def _tamper(original: Path, out: Path, *, strip: bool = True, break_signature: bool = False) -> None:
    """Add LC_LOAD_DYLIB FOREIGN to every slice and strip the signature, as insert_dylib/optool do."""
    fat = lief.MachO.parse(str(original))
    assert fat is not None
    for i in range(fat.size):
        b = fat.at(i)
        b.add_library(FOREIGN)
        if strip:
            b.remove_signature()
    out.parent.mkdir(parents=True, exist_ok=True)
    fat.write(str(out))
    if break_signature:  # a signature blob that no longer parses (a sloppy patcher)
        data = bytearray(out.read_bytes())
        written = lief.MachO.parse(str(out))
        for i in range(written.size):
            b = written.at(i)
            off = b.fat_offset + b.code_signature.data_offset
            data[off:off + 4] = b"\0\0\0\0"
        out.write_bytes(bytes(data))


def _host(tmp_path: Path, original: Path, exe_copy: Path | None) -> Path:
    """A host image: the untouched sibling, the executable under test, and the planted dylib."""
    root = tmp_path / "host"
    (root / SIBLING.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(original, root / SIBLING.lstrip("/"))
    shutil.copyfile(exe_copy or original, root / TAMPERED.lstrip("/"))
    dylib = root / FOREIGN.lstrip("/")
    dylib.parent.mkdir(parents=True, exist_ok=True)
    dylib.write_bytes(build_macho(FOREIGN, {"filetype": "dylib", "archs": ["x86_64", "arm64"], "signature": "none"}))
    return root


def _run_pack(tmp_path: Path, root: Path, exe: str) -> dict[str, list[dict[str, Any]]]:
    """Rows of every AN0607 query over a database of the real tables' rows and recorded process rows."""
    runner = Runner(str(root), "darwin")
    rows = {
        "macho_info": list(runner.rows("macho_info", [f"{MACOS}/%", FOREIGN])),
        "macho_load_commands": list(runner.rows("macho_load_commands", [exe])),
    }
    db = tmp_path / "an0607.db"
    db.unlink(missing_ok=True)
    conn = apsw.Connection(str(db))
    register_functions(conn)
    with conn:
        conn.execute(ddl_script(None))
        conn.execute(f'CREATE TABLE "{META_TABLE}" (name TEXT, platform TEXT, now INTEGER)')
        conn.execute(f'INSERT INTO "{META_TABLE}" VALUES (?, ?, ?)', ("an0607_lief", "darwin", 1_800_000_000))
        _insert(conn, "processes", [{"pid": 1, "name": "launchd", "path": "/sbin/launchd", "uid": 0, "parent": 0},
                                    {"pid": 4242, "name": Path(exe).name, "path": exe, "uid": 501, "parent": 1,
                                     "on_disk": 1}])
        _insert(conn, "process_images", [{"pid": 4242, "path": exe, "base_address": "0x100000000"},
                                         {"pid": 4242, "path": FOREIGN, "base_address": "0x104000000"}])
        for table, trows in rows.items():
            _insert(conn, table, _declared(load_table(table), trows))
    conn.close()
    pack = load_pack(resources.packs_dir() / "AN0607.yaml")
    engine = database_engine(db)  # executed the way osqueryd executes it
    return {q.name: engine.run(pack.render(q), interval=q.interval).rows for q in pack.queries}


@pytest.fixture(scope="module")
def original(corpus_dir: Path) -> Path:
    return _signed_binary(corpus_dir)


def test_lief_insert_dylib_strips_certificate_and_adds_the_command(original: Path, tmp_path: Path) -> None:
    before = _info(original)
    assert len(before) >= 2 and all(r["fat"] == 1 for r in before)
    assert {r["signature_type"] for r in before} == {"certificate"}
    assert {r["team_id"] for r in before} == {SENTRY_TEAM}
    assert not [r for r in _load_commands(original) if r.get("name") == FOREIGN]

    tampered = tmp_path / "out" / "sentry-cli"
    _tamper(original, tampered)
    after = _info(tampered)
    assert [r["arch"] for r in after] == [r["arch"] for r in before]
    assert {r["signature_type"] for r in after} == {"none"}
    assert all(r.get("team_id") is None and r["signed"] == 0 for r in after)

    cmds = _load_commands(tampered)
    added = [r for r in cmds if r.get("name") == FOREIGN]
    assert {r["arch"] for r in added} == {r["arch"] for r in before}  # one per slice
    for r in added:
        assert r["cmd"] == "LC_LOAD_DYLIB" and r["weak"] == 0
        assert r["resolved_path"] == FOREIGN
        assert r["resolved_exists"] == (1 if Path(FOREIGN).exists() else 0)  # judged on this machine's disk
        same_slice = [c for c in cmds if c["arch"] == r["arch"] and c["cmd"] in DYLIB_CMDS]
        assert r["cmd_index"] == max(c["cmd_index"] for c in same_slice)  # appended after the others
    assert not [r for r in cmds if r["cmd"] == "LC_CODE_SIGNATURE"]


def test_tampered_copy_fires_and_original_stays_silent(original: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "out" / "sentry-cli"
    _tamper(original, tampered)

    # resolved under the host image: the planted dylib exists there
    root = _host(tmp_path, original, tampered)
    lc = [r for r in Runner(str(root), "darwin").rows("macho_load_commands", [TAMPERED]) if r.get("name") == FOREIGN]
    assert lc and all(r["resolved_exists"] == 1 and r["resolved_path"] == FOREIGN for r in lc)

    got = _run_pack(tmp_path, root, TAMPERED)[TAMPERED_QUERY]
    assert {r["arch"] for r in got} == {"x86_64", "arm64"}
    for r in got:
        assert (r["pid"], r["process_path"], r["path"]) == (4242, TAMPERED, FOREIGN)
        assert r["exe_signature"] == "none" and r["expected_team_id"] == SENTRY_TEAM
        assert r["signed_sibling"] == SIBLING and r["dylib_signature"] == "none"
        assert "unsigned where a certificate is expected" in r["reason"]

    # the vendor's binary, running and even with the same dylib mapped, is not a tampered executable
    clean_root = _host(tmp_path / "clean", original, None)
    assert _run_pack(tmp_path / "clean", clean_root, TAMPERED)[TAMPERED_QUERY] == []


def test_broken_signature_counts_as_tampered(original: Path, tmp_path: Path) -> None:
    broken = tmp_path / "out" / "sentry-cli"
    _tamper(original, broken, strip=False, break_signature=True)
    assert {r["signature_type"] for r in _info(broken)} == {"invalid"}
    got = _run_pack(tmp_path, _host(tmp_path, original, broken), TAMPERED)[TAMPERED_QUERY]
    assert got and all(r["exe_signature"] == "invalid" and r["path"] == FOREIGN for r in got)


def test_signature_left_in_place_is_the_planted_dylib_case(original: Path, tmp_path: Path) -> None:
    """Without --strip-codesig the stale blob still parses (its page hashes are not verified), so
    macho_info says certificate: the planted-dylib query covers that copy, the tampered one does not."""
    kept = tmp_path / "out" / "sentry-cli"
    _tamper(original, kept, strip=False)
    assert {r["signature_type"] for r in _info(kept)} == {"certificate"}
    rows = _run_pack(tmp_path, _host(tmp_path, original, kept), TAMPERED)
    assert rows[TAMPERED_QUERY] == []
    assert rows[PLANTED_QUERY] and all(r["path"] == FOREIGN for r in rows[PLANTED_QUERY])


INSERTED_QUERY = "an0607_darwin_inserted_load_command"


@pytest.mark.parametrize("strip", [True, False])
def test_inserted_command_is_found_by_its_place_whatever_the_signature(original: Path, tmp_path: Path,
                                                                       strip: bool) -> None:
    """LIEF appends the new LC_LOAD_DYLIB after LC_FUNCTION_STARTS/LC_DATA_IN_CODE, where ld64 never
    puts one: the query fires with the signature stripped or left in place (still `certificate`)."""
    copy = tmp_path / "out" / "sentry-cli"
    _tamper(original, copy, strip=strip)
    got = _run_pack(tmp_path, _host(tmp_path, original, copy), TAMPERED)[INSERTED_QUERY]
    assert {r["arch"] for r in got} == {"x86_64", "arm64"}
    assert all(r["install_name"] == FOREIGN and r["cmd_index"] > r["trailer_index"] for r in got)
    assert all(r["severity"] == "high" and "added after linking" in r["reason"] for r in got)
    clean = _run_pack(tmp_path / "clean", _host(tmp_path / "clean", original, None), TAMPERED)[INSERTED_QUERY]
    assert clean == []

"""What the packs make the extension compute: the costly columns only where the analytic needs them.
Run through the engine (osquery's planner contract) with our tables live over real files."""

from __future__ import annotations

from pathlib import Path

from dyldwatch.formats.macho import analysis
from dyldwatch.formats.macho import writer as mw
from dyldwatch.formats.macho.sigwriter import build_superblob
from dyldwatch.packs.model import load_packs
from dyldwatch.sql.engine import Engine, LiveTable, StoredRows
from dyldwatch.sql.facts import tables_for
from dyldwatch.tables import _macho
from dyldwatch.tables.macho_info import MachoInfoTable

NOW = 1_700_000_000


def _engine() -> Engine:
    sources = {}
    for name, facts in tables_for("darwin").items():
        if name == "macho_info":
            sources[name] = LiveTable(facts, MachoInfoTable().generate)
        elif name == "time":
            sources[name] = StoredRows(facts, [{"unix_time": NOW}])
        else:
            sources[name] = StoredRows(facts, [])
    return Engine(sources, now=NOW)


def _adhoc(w: mw.MachOWriter, name: str) -> bytes:
    w.set_code_signature(build_superblob(name, flags=0x2))  # an ad-hoc signature, as ld64 or codesign -s - write
    return w.build()


def test_an0057_walk_reads_strings_and_entropy_only_for_suspects(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "Users" / "alice" / "Downloads"
    root.mkdir(parents=True)
    for n in range(5):  # ordinary builds: a symbol table, so never suspects
        (root / f"tool{n}").write_bytes(_adhoc(mw.sample_executable(), f"tool{n}"))
    bare = mw.sample_executable()
    bare.set_symbols([], dysymtab=False)  # stripped bare
    (root / "helper").write_bytes(_adhoc(bare, "helper"))
    read: list[str] = []
    for part in ("_text", "_strings"):
        real = getattr(analysis, part)

        def counting(src, sl, *rest, _real=real, _part=part):  # type: ignore[no-untyped-def]
            read.append(f"{_part}:{src.path}")
            return _real(src, sl, *rest)

        monkeypatch.setattr(analysis, part, counting)
    _macho.INFO_SCANNER.clear()
    _macho.PARSE_CACHE.clear()
    (pack,) = [p for p in load_packs() if p.id == "AN0057"]
    (query,) = [q for q in pack.queries if q.name == "an0057_darwin_packed_macho"]
    run = _engine().run(pack.render(query, {"search_roots": [f"{tmp_path}/Users/%/Downloads/%%"]}),
                        interval=query.interval)
    (row,) = run.rows
    assert row["path"] == str(root / "helper") and row["text_entropy"] is not None and row["strings_count"] is not None
    assert sorted(read) == [f"_strings:{root / 'helper'}", f"_text:{root / 'helper'}"]


def _stored_engine(platform: str, tables: dict[str, list[dict]]) -> Engine:
    from dyldwatch.tables import load_table

    sources = {}
    for name, facts in tables_for(platform).items():
        rows = tables.get(name, [])
        sources[name] = StoredRows(facts, rows, load_table(name).row_keys if facts.ours else None)
    return Engine(sources, now=NOW)


def test_an0054_asks_the_extension_once_per_distinct_library(tmp_path: Path) -> None:
    """A host where 60 processes map the same few non-system libraries (Electron helpers, a shared
    plug-in): osquery must not call dylib_provenance once per process image."""
    libs = [f"/Users/Shared/Vendor/lib{n}.dylib" for n in range(3)]
    exe = "/Applications/Vendor.app/Contents/MacOS/Vendor"
    procs = [{"pid": 1000 + n, "name": "Vendor", "path": exe, "uid": 501, "start_time": NOW - 86400}
             for n in range(60)]
    images = [{"pid": p["pid"], "path": path} for p in procs for path in [exe, *libs]]
    provenance = [{"path": path, "directory": path.rsplit("/", 1)[0], "system_path": 0, "user_writable": 1,
                   "writable_by": "alice (owner)", "uid": 501, "btime": NOW - 90 * 86400,
                   "ctime": NOW - 90 * 86400, "quarantined": 0, "signature_type": "adhoc"} for path in libs]
    provenance.append({"path": exe, "directory": exe.rsplit("/", 1)[0], "system_path": 0, "user_writable": 0,
                       "uid": 0, "quarantined": 0, "signature_type": "certificate", "team_id": "ABCDE12345"})
    engine = _stored_engine("darwin", {
        "time": [{"unix_time": NOW}], "processes": procs, "process_images": images,
        "dylib_provenance": provenance,
        "macho_info": [{"path": exe, "directory": exe.rsplit("/", 1)[0], "arch": "arm64",
                        "signature_type": "certificate", "team_id": "ABCDE12345"}]})
    (pack,) = [p for p in load_packs() if p.id == "AN0054"]
    (query,) = [q for q in pack.queries if q.name == "an0054_darwin_user_writable_images"]
    run = engine.run(pack.render(query), interval=query.interval)
    assert len(run.rows) == 60 * len(libs)  # every process and library still reported
    assert {r["severity"] for r in run.rows} == {"medium"}  # a place other users share
    assert run.calls["dylib_provenance"] <= len(libs) + 2  # once per library (+ the program's own origin)
    assert run.calls["macho_info"] <= 2  # the program's signing, once

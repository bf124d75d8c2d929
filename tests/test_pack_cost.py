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

"""Work follows the columns asked: costly parts run only when read, caches grow part by part, rows
leave encoded once, and caches and answers stay bounded. Behaviour only; speed lives in bench/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest

from dyldwatch.extension.adapter import TablePluginAdapter, render_row
from dyldwatch.extension.wire import RowEncoder
from dyldwatch.formats.macho import analysis
from dyldwatch.formats.macho import writer as mw
from dyldwatch.host.cache import BoundedCache
from dyldwatch.tables import _macho, macho_load_commands
from dyldwatch.tables._macho import PARSE_CACHE
from dyldwatch.tables.base import TEXT, Column, QueryContext, Table
from dyldwatch.tables.macho_info import MachoInfoTable
from harness import decode_rows

EQ = 2
SIGNING = ["path", "arch", "signature_type", "team_id"]


@pytest.fixture(autouse=True)
def _clear() -> None:
    _macho.INFO_SCANNER.clear()
    macho_load_commands.SCANNER.clear()
    PARSE_CACHE.clear()


def _file(tmp_path: Path) -> str:
    p = tmp_path / "app"
    p.write_bytes(mw.sample_executable().build())
    return str(p)


def _ctx(path: str, cols: list[str] | None) -> QueryContext:
    return QueryContext.build({"path": [(EQ, path)]}, cols)


def test_signing_query_computes_no_entropy_strings_or_symbols(tmp_path: Path, monkeypatch) -> None:
    path = _file(tmp_path)

    def forbidden(*_a: object) -> None:
        raise AssertionError("computed a part the query did not ask for")

    for name in ("_text", "_strings", "_symbols", "_imports", "_upx"):
        monkeypatch.setattr(analysis, name, forbidden)
    (row,) = MachoInfoTable().generate(_ctx(path, SIGNING))
    assert row["signature_type"] and "text_entropy" not in row and "strings_count" not in row


def test_more_columns_later_give_the_rows_of_a_fresh_query(tmp_path: Path) -> None:
    path = _file(tmp_path)
    table = MachoInfoTable()
    list(table.generate(_ctx(path, SIGNING)))
    list(table.generate(_ctx(path, ["path", "text_entropy", "error"])))
    grown = list(table.generate(_ctx(path, None)))
    _macho.INFO_SCANNER.clear()
    PARSE_CACHE.clear()
    fresh = list(table.generate(_ctx(path, None)))
    assert grown == fresh and grown[0]["text_entropy"] is not None and grown[0]["nsyms"] is not None


def test_a_cached_part_is_not_computed_again(tmp_path: Path, monkeypatch) -> None:
    path = _file(tmp_path)
    calls: list[str] = []
    real = _macho.part_columns

    def counting(src, sl, part):  # type: ignore[no-untyped-def]
        calls.append(part)
        return real(src, sl, part)

    monkeypatch.setattr(_macho, "part_columns", counting)
    table = MachoInfoTable()
    list(table.generate(_ctx(path, SIGNING)))
    list(table.generate(_ctx(path, [*SIGNING, "text_entropy"])))
    assert calls == ["signing", "text"]  # the signing columns alone take the light signature read


def test_error_names_only_the_problems_of_parts_read(tmp_path: Path) -> None:
    w = mw.sample_executable()
    data = bytearray(w.build())
    path = tmp_path / "short"
    path.write_bytes(bytes(data[: len(data) - 64]))  # the signature blob runs past the end
    (full,) = MachoInfoTable().generate(_ctx(str(path), None))
    (names,) = MachoInfoTable().generate(_ctx(str(path), ["path", "filetype", "error"]))
    assert full["error"] and names["error"] is None


_decode = decode_rows


def test_wire_rows_hold_only_the_columns_read_and_match_render_row(tmp_path: Path) -> None:
    path = _file(tmp_path)
    adapter = TablePluginAdapter(MachoInfoTable)
    context = json.dumps({"constraints": [{"name": "path", "list": [{"op": 2, "expr": path}]}],
                          "colsUsed": SIGNING})
    code, _, rows = adapter.call({"action": "generate", "context": context})
    assert code == 0
    (row,) = _decode(rows)
    assert set(row) <= set(SIGNING) and row["path"] == path
    (py,) = MachoInfoTable().generate(_ctx(path, SIGNING))
    assert row == {k: v for k, v in render_row(MachoInfoTable, py).items() if k in SIGNING}


def test_repeated_query_reuses_the_encoded_rows_and_resolution_stays_live(tmp_path: Path) -> None:
    exe = tmp_path / "exe"
    w = mw.sample_executable()
    w.add_dylib("@loader_path/libplanted.dylib")
    exe.write_bytes(w.build())
    table = macho_load_commands.MachoLoadCommandsTable()
    ctx = _ctx(str(exe), ["path", "cmd", "name", "resolved_exists"])
    enc = RowEncoder(type(table), ctx)
    first = _decode(list(table.generate_wire(ctx, enc))[0][1])
    (entry,) = macho_load_commands.SCANNER.cache.values()
    pairs = entry.wire[enc.key]
    (tmp_path / "libplanted.dylib").write_bytes(b"x")  # planted after the first query
    second = _decode(list(table.generate_wire(ctx, RowEncoder(type(table), ctx)))[0][1])
    assert entry.wire[enc.key] is pairs  # the file's own columns were not encoded again
    planted = [r for r in second if r.get("name") == "@loader_path/libplanted.dylib"]
    before = [r for r in first if r.get("name") == "@loader_path/libplanted.dylib"]
    assert before[0]["resolved_exists"] == "0" and planted[0]["resolved_exists"] == "1"


class _Wide(Table):
    name: ClassVar[str] = "wide"
    description: ClassVar[str] = "rows of 1 KB"
    columns: ClassVar[tuple[Column, ...]] = (Column("path", TEXT, ""), Column("error", TEXT, ""))

    def generate(self, ctx: QueryContext):  # type: ignore[no-untyped-def]
        for i in range(10_000):
            yield {"path": f"/x/{i}" + "y" * 1000}


def test_an_answer_is_cut_at_its_byte_cap_with_an_error_row() -> None:
    adapter = TablePluginAdapter(_Wide, max_bytes=100_000)
    code, _, rows = adapter.call({"action": "generate", "context": "{}"})
    decoded = _decode(rows)
    assert code == 0 and len(rows) < 200
    assert "MB of rows" in decoded[-1]["error"] and "results are incomplete" in decoded[-1]["error"]


def test_cache_is_bounded_by_weight_as_well_as_entries() -> None:
    cache: BoundedCache[str] = BoundedCache(100, max_weight=10)
    for i in range(5):
        cache.put(i, str(i), weight=4)
    assert len(cache) == 2 and cache.weight == 8 and cache.get(4) == "4" and cache.get(0) is None
    cache.put("huge", "x", weight=11)
    assert cache.get("huge") is None


def test_load_command_fields_are_decoded_only_when_read(tmp_path: Path) -> None:
    from dyldwatch.formats.macho import read_load_commands, read_slices
    from dyldwatch.host.files import FileSource

    with FileSource(_file(tmp_path)) as src:
        (sl,) = [read_load_commands(src, ref) for ref in read_slices(src)]
    seg = next(c for c in sl.commands if c.cmd_name == "LC_SEGMENT_64")
    assert seg._lazy is not None and seg.name == "__PAGEZERO" or seg.name  # named at parse time
    assert seg.data["segname"] == seg.name and seg._lazy is None  # decoded on first read, once


def test_details_asked_after_a_query_without_them_match_a_fresh_query(tmp_path: Path) -> None:
    path = _file(tmp_path)
    table = macho_load_commands.MachoLoadCommandsTable()
    list(table.generate(_ctx(path, ["path", "cmd", "name"])))
    grown = list(table.generate(_ctx(path, ["path", "cmd", "details"])))
    macho_load_commands.SCANNER.clear()
    PARSE_CACHE.clear()
    fresh = list(table.generate(_ctx(path, ["path", "cmd", "details"])))
    assert grown == fresh and any(r.get("details") for r in grown)


def test_cached_resolution_plans_still_see_dylibs_planted_and_removed(tmp_path: Path) -> None:
    """Plans (candidate lists) are shared between queries; which candidate exists never is."""
    exe = tmp_path / "exe"
    w = mw.sample_executable()
    w.add_rpath("@loader_path/first")
    w.add_rpath("@loader_path/second")
    w.add_dylib("@rpath/libx.dylib")
    exe.write_bytes(w.build())
    table = macho_load_commands.MachoLoadCommandsTable()
    cols = ["path", "cmd", "name", "resolved_path", "resolved_exists", "search_paths"]
    ctx = _ctx(str(exe), cols)

    def wire_row() -> dict[str, str]:
        (_, rows), = table.generate_wire(ctx, RowEncoder(type(table), ctx))
        return next(r for r in _decode(list(rows)) if r.get("name") == "@rpath/libx.dylib")

    def py_row() -> dict:
        return next(r for r in table.generate(ctx) if r.get("name") == "@rpath/libx.dylib")

    first, second = tmp_path / "first", tmp_path / "second"
    assert wire_row()["resolved_exists"] == "0" and py_row()["resolved_exists"] == 0
    second.mkdir()
    (second / "libx.dylib").write_bytes(b"x")
    assert wire_row()["resolved_path"] == str(second / "libx.dylib") and py_row()["resolved_exists"] == 1
    first.mkdir()
    (first / "libx.dylib").write_bytes(b"x")  # an earlier rpath now wins
    assert wire_row()["resolved_path"] == str(first / "libx.dylib")
    (first / "libx.dylib").unlink()
    (second / "libx.dylib").unlink()
    got = wire_row()
    paths = [c["path"] for c in json.loads(got["search_paths"])]
    assert got["resolved_exists"] == "0" and str(first / "libx.dylib") in paths and str(second / "libx.dylib") in paths
    assert len(macho_load_commands.PLANS) >= 1  # the candidates were planned once and reused


def test_resolution_only_computes_the_columns_read(tmp_path: Path, monkeypatch) -> None:
    exe = tmp_path / "exe"
    w = mw.sample_executable()
    w.add_dylib("@loader_path/libplanted.dylib")
    exe.write_bytes(w.build())

    def forbidden(*_a: object, **_k: object) -> bytes:
        raise AssertionError("search_paths encoded though not read")

    monkeypatch.setattr(macho_load_commands.orjson, "dumps", forbidden)
    rows = list(macho_load_commands.MachoLoadCommandsTable().generate(
        _ctx(str(exe), ["path", "name", "resolved_exists"])))
    assert any(r.get("resolved_exists") == 0 for r in rows)


def test_resolution_is_the_same_when_plans_are_evicted_mid_query(tmp_path: Path, monkeypatch) -> None:
    """A walk keeps few plans per query (QUERY_PLANS) and PLANS is bounded: a plan evicted between a
    row's outcome and its columns is planned again from its key, with the same columns."""
    exe = tmp_path / "exe"
    w = mw.sample_executable()
    w.add_rpath("@loader_path/lib")
    for n in range(6):
        w.add_dylib(f"@rpath/lib{n}.dylib")
    exe.write_bytes(w.build())
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "lib3.dylib").write_bytes(b"x")
    cols = ["path", "cmd_index", "name", "resolved_path", "resolved_exists", "rpath_source", "search_paths"]
    table = macho_load_commands.MachoLoadCommandsTable()
    ctx = _ctx(str(exe), cols)

    def wire() -> list[dict[str, str]]:
        (_, rows), = table.generate_wire(ctx, RowEncoder(type(table), ctx))  # every outcome, then columns
        return _decode(list(rows))

    expected, expected_wire = list(table.generate(ctx)), wire()
    macho_load_commands.SCANNER.clear()
    macho_load_commands.PLANS.clear()
    monkeypatch.setattr(macho_load_commands, "QUERY_PLANS", 1)
    monkeypatch.setattr(macho_load_commands, "PLANS", BoundedCache(1))
    assert wire() == expected_wire
    macho_load_commands.SCANNER.clear()
    assert list(table.generate(ctx)) == expected
    assert any(r.get("resolved_exists") == 1 for r in expected)

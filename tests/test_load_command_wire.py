"""macho_load_commands' rows for the extension are encoded straight from the parse, with resolution
plans shared between files: the answer must be exactly what encoding the table's own rows gives,
for every column set, every kind of file (clean, malformed, non-UTF-8 name) and every query."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dyldwatch.extension.wire import RowEncoder, RowRun
from dyldwatch.formats.macho import constants as C
from dyldwatch.formats.macho import writer as mw
from dyldwatch.tables import macho_load_commands as lc
from dyldwatch.tables._macho import PARSE_CACHE
from dyldwatch.tables.base import QueryContext, path_constraints
from harness import decode_rows

EQ = 2
TABLE = lc.MachoLoadCommandsTable
DETECTION = ["path", "arch", "cmd", "cmd_index", "name", "weak", "resolved_path", "resolved_exists"]
COLUMN_SETS = [
    DETECTION,
    ["path", "cmd", "name", "link_flags", "rpath_index", "cmd_size", "compatibility_version", "current_version"],
    ["path", "directory", "arch", "cmd", "details", "error"],
    ["path", "name", "resolved_realpath", "in_shared_cache", "rpath_source", "search_paths", "planting_vector"],
    None,  # osqueryd sent no colsUsed: every column
]


@pytest.fixture(autouse=True)
def _cold() -> None:
    lc.SCANNER.clear()
    PARSE_CACHE.clear()
    lc.PLANS.clear()


_decode = decode_rows


def _wire(ctx: QueryContext) -> list[dict[str, str]]:
    enc = RowEncoder(TABLE, ctx)
    return [r for _, rows in TABLE().generate_wire(ctx, enc) for r in _decode(rows)]


def _expected(ctx: QueryContext) -> list[dict[str, str]]:
    """The table's own rows, through the general encoder (what every other table sends)."""
    enc = RowEncoder(TABLE, ctx)
    return _decode(tuple(enc.encode(r) for r in TABLE().generate(ctx)))


def _app(tmp_path: Path) -> Path:
    """A bundle with a main executable, a framework using @rpath from the main executable's rpaths,
    @loader_path and @executable_path names, a truncated file and an empty (non-Mach-O) one."""
    app = tmp_path / "Demo.app" / "Contents"
    (app / "MacOS").mkdir(parents=True)
    (app / "Frameworks").mkdir()
    main = mw.sample_executable()
    main.add_rpath("@executable_path/../Frameworks")
    main.add_dylib("@rpath/libhelper.dylib")
    main.add_dylib("@loader_path/../Frameworks/libnear.dylib", C.LC_LOAD_WEAK_DYLIB)
    main.add_dylib("/System/Library/Frameworks/Foundation.framework/Versions/C/Foundation")
    (app / "MacOS" / "Demo").write_bytes(main.build())
    helper = mw.sample_executable()
    helper.add_dylib("@rpath/libhelper.dylib")
    helper.add_dylib("@executable_path/../Frameworks/libnear.dylib")
    helper.add_dylib("libbare.dylib")
    (app / "Frameworks" / "libhelper.dylib").write_bytes(helper.build())
    (app / "Frameworks" / "libnear.dylib").write_bytes(b"not a Mach-O")
    data = mw.sample_executable().build()
    (app / "Frameworks" / "truncated.dylib").write_bytes(data[:40])
    return app


@pytest.mark.parametrize("cols", COLUMN_SETS, ids=lambda c: "all" if c is None else ",".join(c[:3]))
def test_wire_rows_equal_the_encoded_table_rows(tmp_path: Path, cols: list[str] | None) -> None:
    app = _app(tmp_path)
    ctx = QueryContext.build({"path": [(65, f"{app}/%%")]}, cols)
    expected = _expected(ctx)
    assert len(expected) > 20
    if cols is None or "error" in cols:
        assert any("run past the end" in r.get("error", "") for r in expected)
    assert _wire(ctx) == expected
    assert _wire(ctx) == expected  # the cached answer too


def test_wire_rows_equal_the_encoded_table_rows_over_the_corpus(corpus_dir: Path) -> None:
    directory = str(corpus_dir / "files")
    for cols in COLUMN_SETS:
        ctx = QueryContext.build({"directory": [(EQ, directory)]}, cols)
        expected = _expected(ctx)
        assert len(expected) > 1000
        assert _wire(ctx) == expected, cols


def test_a_name_that_is_not_utf8_takes_the_general_encoder(tmp_path: Path) -> None:
    odd = os.path.join(os.fsencode(tmp_path), b"lib\xff.dylib")
    with open(odd, "wb") as fh:
        fh.write(mw.sample_executable().build())
    ctx = QueryContext.build({"directory": [(EQ, str(tmp_path))]}, ["path", "cmd", "resolved_path", "error"])
    rows = _wire(ctx)
    assert rows == _expected(ctx)
    assert all("\\xff" in r["path"] and "not valid UTF-8" in r["error"] for r in rows)


def test_a_shared_plan_still_resolves_each_loader_in_its_own_directory(tmp_path: Path) -> None:
    """Absolute names are planned once for every file; @loader_path names once per directory."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        w = mw.sample_executable()
        w.add_dylib("@loader_path/libsib.dylib")
        w.add_dylib("/opt/shared/libcommon.dylib")
        (tmp_path / name / "exe").write_bytes(w.build())
    (tmp_path / "b" / "libsib.dylib").write_bytes(b"x")
    ctx = QueryContext.build({"path": [(65, f"{tmp_path}/%%")]}, ["path", "name", "resolved_path", "resolved_exists"])
    rows = {(r["path"], r["name"]): r for r in _wire(ctx) if r.get("name", "").endswith(("libsib.dylib", "common.dylib"))}
    a, b = str(tmp_path / "a" / "exe"), str(tmp_path / "b" / "exe")
    assert rows[(a, "@loader_path/libsib.dylib")]["resolved_exists"] == "0"
    assert rows[(b, "@loader_path/libsib.dylib")] == {
        "path": b, "name": "@loader_path/libsib.dylib", "resolved_path": str(tmp_path / "b" / "libsib.dylib"),
        "resolved_exists": "1"}
    assert rows[(a, "/opt/shared/libcommon.dylib")]["resolved_path"] == "/opt/shared/libcommon.dylib"
    keys = [k for k in lc.PLANS if k[0] == "absolute" and k[1] == "/opt/shared/libcommon.dylib"]
    assert len(keys) == 1  # one plan served both files
    assert len([k for k in lc.PLANS if k[0] == "loader" and k[1] == "@loader_path/libsib.dylib"]) == 2


def test_a_dotdot_name_is_planned_against_the_file_system_of_each_query(tmp_path: Path) -> None:
    """A `..` after a symlink depends on where the link points now: never a shared plan."""
    (tmp_path / "real" / "lib").mkdir(parents=True)
    (tmp_path / "real" / "lib" / "libz.dylib").write_bytes(b"x")
    (tmp_path / "other" / "lib").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real" / "lib")
    w = mw.sample_executable()
    w.add_dylib(f"{tmp_path}/link/../lib/libz.dylib")
    exe = tmp_path / "exe"
    exe.write_bytes(w.build())
    ctx = QueryContext.build({"path": [(EQ, str(exe))]}, ["path", "name", "resolved_path", "resolved_exists"])

    def hit() -> dict[str, str]:
        return next(r for r in _wire(ctx) if r.get("name", "").endswith("libz.dylib"))

    assert hit()["resolved_path"] == str(tmp_path / "real" / "lib" / "libz.dylib") and hit()["resolved_exists"] == "1"
    (tmp_path / "link").unlink()
    (tmp_path / "link").symlink_to(tmp_path / "other" / "lib")
    assert hit()["resolved_path"] == str(tmp_path / "other" / "lib" / "libz.dylib") and hit()["resolved_exists"] == "0"


def test_a_repeated_answer_is_sent_again_only_while_nothing_it_depends_on_changed(tmp_path: Path) -> None:
    """The kept answer is re-checked file by file (name, version) and dylib by dylib (existence)."""
    w = mw.sample_executable()
    w.add_dylib("@loader_path/libplanted.dylib")
    w.add_dylib("/opt/dyldwatch-test/libgone.dylib")
    (tmp_path / "exe").write_bytes(w.build())
    ctx = QueryContext.build({"directory": [(EQ, str(tmp_path))]}, DETECTION)
    enc = RowEncoder(TABLE, ctx)

    def answer() -> list[tuple[str, tuple[bytes, ...]]]:
        return list(TABLE().generate_wire(ctx, RowEncoder(TABLE, ctx)))

    def planted(rows: list[tuple[str, tuple[bytes, ...]]]) -> str:
        return next(r["resolved_exists"] for _, rs in rows for r in _decode(rs)
                    if r.get("name") == "@loader_path/libplanted.dylib")

    first = answer()
    again = answer()
    [(_, sent_again)] = again  # one piece: the rows sent first, joined, and how many
    assert isinstance(sent_again, RowRun) and sent_again.rows == sum(len(rows) for _, rows in first) > 0
    assert sent_again == b"".join(r for _, rows in first for r in rows)
    assert lc.SCANNER.answers.get((path_constraints(ctx), enc.key)) is not None
    (tmp_path / "libplanted.dylib").write_bytes(b"x")  # a dylib planted: live outcome changed
    assert planted(answer()) == "1"
    (tmp_path / "libplanted.dylib").unlink()
    assert planted(answer()) == "0"
    other = mw.sample_executable()
    (tmp_path / "new").write_bytes(other.build())  # a new file in the directory
    assert {p for p, _ in answer()} == {str(tmp_path / "exe"), str(tmp_path / "new")}
    (tmp_path / "new").write_bytes(b"no longer a Mach-O")  # a file replaced
    assert {p for p, rows in answer() if rows} == {str(tmp_path / "exe")}
    answer()
    (tmp_path / "new").unlink()  # a file gone
    assert {p for p, _ in answer()} == {str(tmp_path / "exe")}
    assert _wire(ctx) == _expected(ctx)


def test_a_repeat_over_a_settled_directory_skips_the_listing_but_not_a_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory whose stamp is unchanged lists what it listed: a repeat stats the kept files
    without listing it; a new, replaced or removed file is still seen."""
    from dyldwatch.host import paths

    monkeypatch.setattr(paths, "SETTLED_NS", 0)  # this directory is fresh: trust its stamp at once
    listed: list[str] = []
    real_list_dir = paths._list_dir

    def counting(directory: str, *args: object) -> list[str]:
        listed.append(directory)
        return real_list_dir(directory, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(paths, "_list_dir", counting)
    past = iter(range(1_000_000, 0, -1000))

    def settle() -> None:  # a distinct old mtime after every change, so no change shares a tick
        t = next(past)
        os.utime(tmp_path, (t, t))

    (tmp_path / "exe").write_bytes(mw.sample_executable().build())
    settle()
    ctx = QueryContext.build({"directory": [(EQ, str(tmp_path))]}, DETECTION)

    def answer() -> set[str]:
        return {p for p, rows in TABLE().generate_wire(ctx, RowEncoder(TABLE, ctx)) if rows}

    assert answer() == {str(tmp_path / "exe")} and len(listed) == 1
    assert answer() == {str(tmp_path / "exe")} and len(listed) == 1  # kept answer: no listing
    (tmp_path / "new").write_bytes(mw.sample_executable().build())
    settle()
    assert answer() == {str(tmp_path / "exe"), str(tmp_path / "new")} and len(listed) > 1
    (tmp_path / "new").write_bytes(b"no longer a Mach-O")  # replaced in place: the directory is unchanged
    assert answer() == {str(tmp_path / "exe")}
    answer()
    (tmp_path / "new").unlink()
    settle()
    assert answer() == {str(tmp_path / "exe")}
    assert _wire(ctx) == _expected(ctx)


def test_a_parse_is_let_go_once_encoded_and_read_again_only_for_other_columns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache keeps a file's encoded rows, not its parse: a repeat reads nothing, a query reading
    other columns (or needing the dylib specs a first query did not) parses the file again into the
    same entry, which keeps every encoding it had."""
    from dyldwatch.tables import _macho

    parses: list[str] = []
    real_parse = _macho.parse_file

    def counting(src):  # type: ignore[no-untyped-def]
        parses.append(src.path)
        return real_parse(src)

    monkeypatch.setattr(_macho, "parse_file", counting)
    app = _app(tmp_path)
    machos = 3  # Demo, libhelper, truncated (libnear is not a Mach-O)
    where = {"path": [(65, f"{app}/%%")]}
    plain = QueryContext.build(where, ["path", "cmd", "name"])  # no live columns: no dylib specs
    sets = [plain, QueryContext.build(where, DETECTION), QueryContext.build(where, COLUMN_SETS[1])]
    answers = []
    for ctx in sets:
        PARSE_CACHE.clear()
        before = len(parses)
        answers.append(_wire(ctx))
        # each file once more (the bundle's main executable once more when read for its rpaths)
        assert machos <= len(parses) - before <= machos + 1
        entries = lc.SCANNER.cache.values()
        assert len(entries) == machos + 1 and all(e.parsed is None for e in entries)
        lc.SCANNER.answers.clear()  # no kept answer: the entries alone must answer a repeat
        before = len(parses)
        assert _wire(ctx) == answers[-1]
        assert len(parses) == before
    assert max(len(e.wire or ()) for e in lc.SCANNER.cache.values()) == min(len(sets), _macho.WIRE_SETS)
    lc.SCANNER.clear()
    PARSE_CACHE.clear()
    assert answers == [_expected(ctx) for ctx in sets]  # the table's own rows, from a cold cache

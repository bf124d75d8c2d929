"""Path constraints expand like osquery's file table."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dyldwatch.host import paths
from dyldwatch.host.paths import expand_paths, like_to_glob
from dyldwatch.tables.base import Op, QueryContext, path_constraints


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    for rel in ["a/one.dylib", "a/two.dylib", "a/sub/three.dylib", "a/sub/deep/four.dylib", "b/[x].dylib", "b/50%.dylib"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    os.symlink(tmp_path / "a", tmp_path / "a" / "sub" / "loop")  # a directory link loop
    return tmp_path


def paths_for(**cons: list[tuple[int, str]]) -> list[str]:
    return [r.path for r in expand_paths(path_constraints(QueryContext.build(cons)))]


def test_like_percent_is_one_level(tree: Path) -> None:
    got = paths_for(path=[(Op.LIKE, f"{tree}/a/%")])
    assert got == [f"{tree}/a/one.dylib", f"{tree}/a/two.dylib"]


def test_double_percent_is_recursive_and_does_not_follow_link_loops(tree: Path) -> None:
    got = paths_for(path=[(Op.LIKE, f"{tree}/a/%%")])
    assert f"{tree}/a/sub/deep/four.dylib" in got and f"{tree}/a/sub/three.dylib" in got
    assert not any("/loop/" in p for p in got)
    assert len(got) == len(set(got))


def test_percent_in_middle_component(tree: Path) -> None:
    got = paths_for(path=[(Op.LIKE, f"{tree}/%/%.dylib")])
    assert f"{tree}/a/one.dylib" in got and f"{tree}/b/[x].dylib" in got
    assert f"{tree}/a/sub/three.dylib" not in got


def test_glob_metacharacters_in_names_are_literal(tree: Path) -> None:
    assert paths_for(path=[(Op.LIKE, f"{tree}/b/[x]%")]) == [f"{tree}/b/[x].dylib"]
    assert like_to_glob("/a/[b]/%")[0] == "/a/[[]b]/*"


def test_directory_lists_entries_and_equals_is_explicit(tree: Path) -> None:
    reqs = list(expand_paths(path_constraints(QueryContext.build({"directory": [(Op.EQUALS, f"{tree}/a")],
                                                                  "path": [(Op.EQUALS, "/nonexistent")]}))))
    assert reqs[0].path == "/nonexistent" and reqs[0].explicit
    assert {r.path for r in reqs[1:]} == {f"{tree}/a/one.dylib", f"{tree}/a/two.dylib"}
    assert not any(r.explicit for r in reqs[1:])


def test_expansion_is_bounded(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = list(expand_paths(path_constraints(QueryContext.build({"path": [(Op.LIKE, f"{tree}/%%")]})), limit=3))
    assert len(got) == 3
    monkeypatch.setattr(paths, "MAX_DEPTH", 2)
    got = paths_for(path=[(Op.LIKE, f"{tree}/a/%%")])
    assert f"{tree}/a/sub/deep/four.dylib" not in got and f"{tree}/a/sub/three.dylib" in got


def test_unlistable_directory_yields_nothing_quietly(tmp_path: Path) -> None:
    assert paths_for(directory=[(Op.EQUALS, str(tmp_path / "missing"))]) == []


def test_bundle_directories_are_one_object(tree: Path) -> None:
    (tree / "a" / "tool.scptd" / "Contents").mkdir(parents=True)
    (tree / "a" / "tool.scptd" / "Contents" / "main.scpt").write_bytes(b"x")
    for cons in ({"path": [(Op.LIKE, f"{tree}/a/%")]}, {"path": [(Op.LIKE, f"{tree}/a/%%")]},
                 {"directory": [(Op.EQUALS, f"{tree}/a")]}):
        got = [r.path for r in expand_paths(path_constraints(QueryContext.build(cons)), bundles=(".scptd", ".app"))]
        assert f"{tree}/a/tool.scptd" in got
        assert not any("main.scpt" in p for p in got)
    plain = [r.path for r in expand_paths(path_constraints(QueryContext.build({"path": [(Op.LIKE, f"{tree}/a/%%")]})))]
    assert f"{tree}/a/tool.scptd/Contents/main.scpt" in plain


def _listings(**cons: list[tuple[int, str]]) -> paths.Listings:
    out: paths.Listings = []
    list(expand_paths(path_constraints(QueryContext.build(cons)), listings=out))
    return out


def test_a_directory_changed_within_the_last_seconds_cannot_vouch_for_its_listing(tree: Path) -> None:
    """A change in the same timestamp tick as the listing would leave the stamp as it was."""
    assert paths.dir_stamp(str(tree / "a")) is None  # just made
    assert _listings(directory=[(Op.EQUALS, f"{tree}/a")]) == [(f"{tree}/a", None)]


def test_listings_are_stamped_and_a_new_entry_moves_the_stamp(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "SETTLED_NS", 0)
    os.utime(tree / "a", (1_000_000, 1_000_000))
    os.utime(tree / "a" / "sub", (1_000_000, 1_000_000))
    listed = _listings(directory=[(Op.EQUALS, f"{tree}/a")])
    assert [d for d, _ in listed] == [f"{tree}/a"] and listed[0][1] is not None
    # a walk from a fixed directory, stamped at every level (named without `_`, a LIKE wildcard)
    plain = Path(f"/tmp/dyldwatch-stamps-{os.getpid()}")
    plain.symlink_to(tree)
    try:
        walked = _listings(path=[(Op.LIKE, f"{plain}/a/%%")])
        assert [d for d, _ in walked] == [f"{plain}/a", f"{plain}/a/sub", f"{plain}/a/sub/deep"]
        assert all(s is not None for _, s in walked)
        stamped = tuple((d, s) for d, s in walked if s is not None)
        assert paths.listings_unchanged(stamped)
        (tree / "a" / "sub" / "new.dylib").write_bytes(b"x")
        assert not paths.listings_unchanged(stamped)
    finally:
        plain.unlink()


def test_listings_that_depend_on_more_than_the_directory_are_not_stamped(
        tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "SETTLED_NS", 0)
    assert _listings(path=[(Op.LIKE, f"{tree}/a/%.dylib")])[0][1] is None  # glob lists on its own
    assert _listings(path=[(Op.LIKE, f"{tree}/%/one.dylib")])[0][1] is None
    os.symlink(tree / "b", tree / "a" / "linked")  # left out for being a directory, through a link
    os.utime(tree / "a", (1_000_000, 1_000_000))
    assert _listings(directory=[(Op.EQUALS, f"{tree}/a")]) == [(f"{tree}/a", None)]
    os.unlink(tree / "a" / "linked")
    os.utime(tree / "a", (1_000_000, 1_000_000))
    got: paths.Listings = []
    assert len(list(expand_paths(path_constraints(QueryContext.build({"directory": [(Op.EQUALS, f"{tree}/a")]})),
                                 limit=1, listings=got))) == 1
    assert got == [(f"{tree}/a", None)]  # cut by the file limit

"""QueryContext reads osquery's context JSON as osqueryd sends it."""

from __future__ import annotations

import json

import pytest

from dyldwatch.tables.base import (
    INDEX,
    REQUIRED,
    TEXT,
    Column,
    ColumnOptions,
    ContextError,
    Op,
    QueryContext,
)


def test_parses_equals_like_and_in_lists() -> None:
    doc = {
        "constraints": [
            {"name": "path", "list": [{"op": 2, "expr": "/a"}, {"op": 2, "expr": "/b"}, {"op": 65, "expr": "/d/%"}],
             "affinity": "TEXT"},
            {"name": "pid", "list": [{"op": 2, "expr": "42"}], "affinity": "INTEGER"},
            {"name": "directory", "list": "", "affinity": "TEXT"},  # osquery sends "" for no constraint
        ],
        "colsUsed": ["path", "arch"],
        "colsUsedBitset": 3,
    }
    ctx = QueryContext.from_json(json.dumps(doc))
    assert ctx.equals("path") == ["/a", "/b"]
    assert ctx.like("path") == ["/d/%"]
    assert ctx.equals_int("pid") == [42]
    assert ctx.equals_int("uid") is None
    assert not ctx.has("directory")
    assert ctx.uses("arch") and not ctx.uses("error")


def test_in_operator_with_list_expr_expands_to_equals() -> None:
    ctx = QueryContext.from_json({"constraints": [{"name": "pid", "list": [{"op": 3, "expr": ["1", "2", "2"]}]}]})
    assert ctx.equals("pid") == ["1", "2"]


def test_non_integer_pid_matches_nothing_rather_than_raising() -> None:
    ctx = QueryContext.build({"pid": [(Op.EQUALS, "abc"), (Op.EQUALS, "7")]})
    assert ctx.equals_int("pid") == [7]


@pytest.mark.parametrize("bad", ["{", "[]", '{"constraints": 3}', '{"constraints": [{"list": []}]}',
                                 '{"constraints": [{"name": "p", "list": [{"expr": "x"}]}]}',
                                 '{"constraints": [{"name": "p", "list": [{"op": "two", "expr": "x"}]}]}'])
def test_malformed_context_is_a_context_error(bad: str) -> None:
    with pytest.raises(ContextError):
        QueryContext.from_json(bad)


def test_empty_context_means_no_constraints() -> None:
    for empty in (None, "", "{}"):
        assert QueryContext.from_json(empty).constraints == {}


def test_round_trip_through_osquery_json() -> None:
    ctx = QueryContext.build({"path": [(Op.LIKE, "/x/%%")]}, ["path"])
    again = QueryContext.from_json(ctx.to_json())
    assert again.like("path") == ["/x/%%"] and again.cols_used == frozenset({"path"})


def test_column_route_carries_option_bits() -> None:
    assert Column("path", TEXT, "p", REQUIRED).route() == {"id": "column", "name": "path", "type": "TEXT", "op": "2"}
    assert Column("pid", TEXT, "p", INDEX | ColumnOptions.HIDDEN).route()["op"] == "17"

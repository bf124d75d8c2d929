"""osquery's native Linux tables, filled from /proc and the filesystem without osquery.

`dyldwatch hunt` runs the packs on a host that has no osquery; these generators stand in for the
native tables the Linux packs use, with osquery's Linux column semantics (each module mirrors the
osquery source file it names). Every generator takes a QueryContext and yields dicts keyed by
osquery column names, values cast as osquery hands them to SQLite (str, int or float); a key is
absent where osquery's value is NULL. They honour the constraints osquery's implementation honours
(`pid` for the process tables, `path`/`directory` for `file`) and return everything otherwise;
SQLite is expected to re-check every constraint on the rows, as it does for osquery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..base import QueryContext
from .clock import TIME_COLUMNS, time_table
from .crontab import CRONTAB_COLUMNS, crontab
from .crontab import ROOT_ENV as CRONTAB_ROOT_ENV
from .files import FILE_COLUMNS, file_table
from .processes import (
    PROCESS_ENVS_COLUMNS,
    PROCESS_MEMORY_MAP_COLUMNS,
    PROCESSES_COLUMNS,
    process_envs,
    process_memory_map,
    processes,
)
from .sockets import PROCESS_OPEN_SOCKETS_COLUMNS, process_open_sockets

Generator = Callable[[QueryContext], Iterator[dict[str, Any]]]

#: table name -> row generator.
NATIVE_LINUX: dict[str, Generator] = {
    "processes": processes,
    "process_memory_map": process_memory_map,
    "process_open_sockets": process_open_sockets,
    "process_envs": process_envs,
    "crontab": crontab,
    "file": file_table,
    "time": time_table,
}

#: table name -> {column: osquery type (TEXT, INTEGER, BIGINT, DOUBLE)}, Linux schema incl. hidden columns.
NATIVE_LINUX_COLUMNS: dict[str, dict[str, str]] = {
    "processes": PROCESSES_COLUMNS,
    "process_memory_map": PROCESS_MEMORY_MAP_COLUMNS,
    "process_open_sockets": PROCESS_OPEN_SOCKETS_COLUMNS,
    "process_envs": PROCESS_ENVS_COLUMNS,
    "crontab": CRONTAB_COLUMNS,
    "file": FILE_COLUMNS,
    "time": TIME_COLUMNS,
}


def rows(table: str, ctx: QueryContext | None = None) -> Iterator[dict[str, Any]]:
    """Rows of one native table (KeyError for a table not provided here)."""
    return NATIVE_LINUX[table](ctx or QueryContext())


__all__ = ["CRONTAB_ROOT_ENV", "NATIVE_LINUX", "NATIVE_LINUX_COLUMNS", "Generator", "rows"]

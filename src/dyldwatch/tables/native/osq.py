"""osquery's row plumbing, reproduced: string splitting, file reads and the string-to-SQL cast.

osquery's Linux tables build every row as a map of strings and SQLite casts each value by the
column's declared type when it is read. Mirroring that two-step (build strings as the C++ does, cast
as osquery does) is what keeps our rows equal to osquery's in the corner cases: an empty string in
an integer column is NULL, an unparsable integer is NULL, an INTEGER column is a 32-bit C int.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..values import column_value

log = logging.getLogger(__name__)

#: osquery's --read_max default (50 MiB): readFile refuses larger files; we cut instead.
READ_MAX = 50 << 20
#: Characters boost::algorithm::trim removes (std::isspace in the C locale).
_SPACE = " \t\n\v\f\r"


def text(data: bytes) -> str:
    """Bytes from the kernel as row text (osquery passes raw bytes; a str must stay encodable)."""
    return data.decode("utf-8", "backslashreplace")


def read_bytes(path: str, limit: int = READ_MAX) -> bytes | None:
    """A whole file, or None when it cannot be opened or read (osquery's readFile failing)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks: list[bytes] = []
        total = 0
        while total < limit:
            chunk = os.read(fd, min(1 << 20, limit - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_text(path: str) -> str | None:
    data = read_bytes(path)
    return None if data is None else text(data)


def readlink(path: str) -> str:
    """readlink(2) text, or "" when it fails (osquery's readProcLink and procReadDescriptor)."""
    try:
        return os.fsencode(os.readlink(path)).decode("utf-8", "backslashreplace")
    except OSError:
        return ""


def split(s: str, delims: str) -> list[str]:
    """osquery::split(s, delim): split on ANY of `delims`, drop empty pieces, trim each piece.

    osquery/utils/conversions/split.cpp
    """
    parts = re.split("[" + re.escape(delims) + "]", s) if len(delims) > 1 else s.split(delims)
    return [p.strip(_SPACE) for p in parts if p]


def split_n(s: str, delim: str, occurrences: int) -> list[str]:
    """osquery::split(s, char, occurrences): the first `occurrences` pieces, the rest re-joined.

    osquery/utils/conversions/split.cpp
    """
    content = split(s, delim)
    head, rest = content[:occurrences], content[occurrences:]
    return head + ([delim.join(rest)] if rest else [])


def trim(s: str) -> str:
    """boost::algorithm::trim."""
    return s.strip(_SPACE)


def cast(value: str, sql_type: str) -> Any:
    """One value as osquery's DynamicTableRow::get_column hands it to SQLite (None is NULL)."""
    return column_value(value, sql_type)


def typed(row: Mapping[str, str], columns: Mapping[str, str]) -> dict[str, Any]:
    """A string row cast per column; keys osquery leaves unset (or casts to NULL) are omitted."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        sql_type = columns.get(name)
        if sql_type is None:
            continue
        v = cast(value, sql_type)
        if v is not None:
            out[name] = v
    return out


def typed_rows(rows: Iterable[Mapping[str, str]], columns: Mapping[str, str]) -> Iterator[dict[str, Any]]:
    for row in rows:
        yield typed(row, columns)


def proc_pids(proc: str = "/proc") -> list[str]:
    """procEnumerateProcesses: directory entries of /proc whose atoll() is positive, as strings,
    in std::set<std::string> order (lexicographic, so "10" sorts before "2").

    osquery/filesystem/linux/proc.h
    """
    try:
        entries = list(os.scandir(proc))
    except OSError as exc:
        log.warning("cannot list %s: %s", proc, exc.strerror)
        return []
    out: set[str] = set()
    for e in entries:
        m = re.match(r"\s*[+-]?[0-9]+", e.name)
        if m is None or int(m.group(0)) <= 0:
            continue
        try:
            if e.is_dir():
                out.add(e.name)
        except OSError:
            continue
    return sorted(out)


def pids_from_context(ctx: Any, proc: str = "/proc") -> list[str]:
    """getProcList: the `pid =`/IN values whose /proc directory exists, else every process.

    osquery/tables/system/linux/processes.cpp. Only decimal values are looked up: osquery would
    also accept `/proc/self`, a pid SQLite's own re-check then discards anyway.
    """
    wanted = ctx.equals("pid")
    if not wanted:
        return proc_pids(proc)
    return sorted({p for p in (str(w).strip() for w in wanted) if p.isdigit() and os.path.isdir(f"{proc}/{p}")})

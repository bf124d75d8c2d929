"""osquery's `time` (osquery/tables/utility/time.cpp): one row, the current time in UTC."""

from __future__ import annotations

import time as _time
from collections.abc import Iterator
from typing import Any

from ..base import QueryContext
from .osq import typed

# specs/utility/time.table
TIME_COLUMNS: dict[str, str] = {
    "weekday": "TEXT", "year": "INTEGER", "month": "INTEGER", "day": "INTEGER", "hour": "INTEGER",
    "minutes": "INTEGER", "seconds": "INTEGER", "timezone": "TEXT", "local_timezone": "TEXT",
    "unix_time": "INTEGER", "timestamp": "TEXT", "datetime": "TEXT", "iso_8601": "TEXT",
}


def time_row(now: int | None = None) -> dict[str, str]:
    """genTime: gmtime fields, asctime + " UTC", %FT%TZ twice, and strftime("%Z") of local time
    (8-byte buffer: a longer zone name fails and becomes "UTC")."""
    t = int(_time.time()) if now is None else now
    gmt = _time.gmtime(t)
    local_tz = _time.strftime("%Z", _time.localtime(t))
    if len(local_tz.encode()) >= 8:
        local_tz = ""
    iso = _time.strftime("%Y-%m-%dT%H:%M:%SZ", gmt)
    return {
        "weekday": _time.strftime("%A", gmt), "year": str(gmt.tm_year), "month": str(gmt.tm_mon),
        "day": str(gmt.tm_mday), "hour": str(gmt.tm_hour), "minutes": str(gmt.tm_min),
        "seconds": str(gmt.tm_sec), "timezone": "UTC", "local_timezone": local_tz or "UTC",
        "unix_time": str(t), "timestamp": _time.asctime(gmt).strip() + " UTC", "datetime": iso, "iso_8601": iso,
    }


def time_table(ctx: QueryContext) -> Iterator[dict[str, Any]]:
    yield typed(time_row(), TIME_COLUMNS)

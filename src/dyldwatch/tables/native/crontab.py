"""osquery's `crontab` (osquery/tables/system/posix/crontab.cpp): system and user cron tables.

Files read, in order: /etc/crontab, then the files (not sub-directories, no dotfiles) directly in
/etc/cron.d/, /var/at/tabs/, /var/spool/cron/ and /var/spool/cron/crontabs/. Each non-blank line not
starting with '#' is split on spaces and tabs: five schedule fields then the command (re-joined with
single spaces), or an `@event` then the command. Lines without a command (variables) are dropped.
System files keep their user field at the front of `command`, as osquery does.

`DYLDWATCH_CRONTAB_ROOT` (or the `root` argument) prefixes every one of those paths, so tests and
simulators read a planted tree instead of /etc; `path` then names the file actually read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ..base import QueryContext
from .globbing import list_files_in_directory
from .osq import read_text, split, trim, typed

ROOT_ENV = "DYLDWATCH_CRONTAB_ROOT"
SYSTEM_CRON = "/etc/crontab"  # kSystemCron
SEARCH_DIRS = ("/etc/cron.d/", "/var/at/tabs/", "/var/spool/cron/", "/var/spool/cron/crontabs/")  # kCronSearchDirs

# specs/posix/crontab.table (+ the Linux extended schema)
CRONTAB_COLUMNS: dict[str, str] = {
    "event": "TEXT", "minute": "TEXT", "hour": "TEXT", "day_of_month": "TEXT", "month": "TEXT",
    "day_of_week": "TEXT", "command": "TEXT", "path": "TEXT", "pid_with_namespace": "INTEGER",
}
_FIELDS = ("minute", "hour", "day_of_month", "month", "day_of_week")


def cron_files(root: str = "") -> list[str]:
    """genCronTabImpl's file list."""
    files = [root + SYSTEM_CRON]
    for d in SEARCH_DIRS:
        files += list_files_in_directory(root + d)
    return files


def cron_lines(path: str) -> list[str]:
    """cronFromFile: trimmed lines that are neither blank nor comments; none when unreadable."""
    if not os.path.exists(path) or not os.access(path, os.R_OK):
        return []
    content = read_text(path)
    if content is None:
        return []
    return [t for t in (trim(line) for line in split(content, "\n")) if t and not t.startswith("#")]


def cron_row(path: str, line: str) -> dict[str, str] | None:
    """genCronLine: one row of strings, or None for a line without a command."""
    r: dict[str, str] = {"path": path}
    index = 0
    for word in split(line, " \t"):
        if index == 0 and word.startswith("@"):
            r["event"] = word
            index = 5
            continue
        if index < 5:
            r[_FIELDS[index]] = word
        elif index == 5:
            r["command"] = word
        else:
            r["command"] += " " + word
        index += 1
    if not r.get("command"):
        return None
    r["pid_with_namespace"] = "0"
    return r


def crontab(ctx: QueryContext, root: str | None = None) -> Iterator[dict[str, Any]]:
    """Every cron line of the host (or of `root` / $DYLDWATCH_CRONTAB_ROOT)."""
    prefix = (os.environ.get(ROOT_ENV, "") if root is None else root).rstrip("/")
    for path in cron_files(prefix):
        for line in cron_lines(path):
            row = cron_row(path, line)
            if row is not None:
                yield typed(row, CRONTAB_COLUMNS)

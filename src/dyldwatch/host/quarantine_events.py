"""Look up a quarantine event in the user's LaunchServices QuarantineEventsV2 database.

macOS records each quarantined download there (table LSQuarantineEvent, keyed by the event UUID
that also appears in the file's com.apple.quarantine value), with the download URL
(LSQuarantineDataURLString) and the page it came from (LSQuarantineOriginURLString).

The database belongs to the user and LaunchServices writes it while we read. We run as root and
must leave nothing behind in the user's Library: a root-owned -shm file there would lock
LaunchServices out. So without a -wal file the database is opened read-only and `immutable` (no
locks, no side files). With one, recent events live only in the -wal until a checkpoint, so the
database and its -wal are copied to a private temporary directory and the copy is read: SQLite
replays the WAL there, and the user's files are only ever read.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import sqlite3
import stat
import tempfile
from dataclasses import dataclass
from urllib.parse import quote

from .cache import BoundedCache

log = logging.getLogger(__name__)

DB_RELATIVE = "Library/Preferences/com.apple.LaunchServices.QuarantineEventsV2"
#: A quarantine database larger than this is not opened (they are typically well under 10 MiB).
MAX_DB_SIZE = 512 << 20


@dataclass(frozen=True, slots=True)
class QuarantineEvent:
    """The URLs one quarantine event recorded (None where the database has none)."""

    data_url: str | None
    origin_url: str | None
    agent_name: str | None


def database_for_uid(uid: int) -> str | None:
    """The QuarantineEventsV2 path in the home directory of `uid`, or None for an unknown user."""
    try:
        home = pwd.getpwuid(uid).pw_dir
    except (KeyError, OverflowError):
        return None
    return os.path.join(home, DB_RELATIVE) if home else None


_MISSING = QuarantineEvent(None, None, None)
_CACHE: BoundedCache[QuarantineEvent] = BoundedCache(2048)


def lookup_event(db_path: str, event_id: str) -> QuarantineEvent | None:
    """The event `event_id` in the database at `db_path`, or None when absent or unreadable.

    Answers are cached per database version (device, inode, size, mtime), so a directory full of
    files from one download costs one query.
    """
    try:
        st = os.stat(db_path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_DB_SIZE:  # never let SQLite open a FIFO
        return None
    wal = _wal_stat(db_path)
    if wal is not None and st.st_size + wal.st_size > MAX_DB_SIZE:
        return None
    wal_key = (wal.st_size, wal.st_mtime_ns) if wal is not None else None
    key = (db_path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, wal_key, event_id.upper())
    cached = _CACHE.get(key)
    if cached is not None:
        return None if cached is _MISSING else cached
    event = _query_with_wal(db_path, event_id) if wal is not None else _query(db_path, event_id)
    _CACHE.put(key, event if event is not None else _MISSING)
    return event


def _wal_stat(db_path: str) -> os.stat_result | None:
    """The -wal file next to the database when it is a non-empty regular file."""
    try:
        st = os.stat(db_path + "-wal")
    except (OSError, ValueError):
        return None
    return st if stat.S_ISREG(st.st_mode) and st.st_size > 0 else None


def _query_with_wal(db_path: str, event_id: str) -> QuarantineEvent | None:
    """Query a private copy of the database and its -wal, so uncheckpointed events are seen."""
    with tempfile.TemporaryDirectory(prefix="dyldwatch-qe-") as tmp:
        copy = os.path.join(tmp, "QuarantineEventsV2")
        try:
            shutil.copyfile(db_path, copy)
            shutil.copyfile(db_path + "-wal", copy + "-wal")
        except OSError as exc:
            log.debug("cannot copy %s: %s", db_path, exc)
            return _query(db_path, event_id)
        return _query(copy, event_id, immutable=False)


def _query(db_path: str, event_id: str, *, immutable: bool = True) -> QuarantineEvent | None:
    # the private copy is opened read-write so SQLite can build its -shm and replay the WAL there
    uri = f"file:{quote(db_path)}?mode=ro&immutable=1" if immutable else f"file:{quote(db_path)}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=0, check_same_thread=False)
    except sqlite3.Error as exc:
        log.debug("cannot open %s: %s", db_path, exc)
        return None
    try:
        conn.execute("PRAGMA query_only = 1")
        row = conn.execute(
            "SELECT LSQuarantineDataURLString, LSQuarantineOriginURLString, LSQuarantineAgentName "
            "FROM LSQuarantineEvent WHERE LSQuarantineEventIdentifier = ? COLLATE NOCASE LIMIT 1",
            (event_id,),
        ).fetchone()
    except sqlite3.Error as exc:  # not a database, another schema, corrupt
        log.debug("cannot query %s: %s", db_path, exc)
        return None
    finally:
        conn.close()
    if row is None:
        return None
    return QuarantineEvent(*(_text(v) for v in row))


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value)[:8192]
    return text or None


def clear_cache() -> None:
    _CACHE.clear()

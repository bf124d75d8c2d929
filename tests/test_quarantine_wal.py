"""QuarantineEventsV2 events still in the -wal file are seen, and the user's files are only read."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from dyldwatch.host import quarantine_events

from .test_dylib_provenance import QUARANTINE_SCHEMA

EVENT = "5A3C1E2B-0D4F-4A6B-8C9D-0E1F2A3B4C5D"


def test_event_only_in_the_wal_is_found(tmp_path: Path) -> None:
    db = tmp_path / "QuarantineEventsV2"
    writer = sqlite3.connect(db)  # LaunchServices keeps its connection open: no checkpoint happens
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute(QUARANTINE_SCHEMA)
    writer.commit()
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    writer.execute("INSERT INTO LSQuarantineEvent VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (EVENT, 1.0, "com.apple.Safari", "Safari", "https://x.example/a.dmg", None, None, 0, None,
                    "https://x.example/", None))
    writer.commit()
    try:
        assert os.path.getsize(str(db) + "-wal") > 0
        before = sorted(os.listdir(tmp_path))
        stat_before = {n: os.stat(tmp_path / n).st_mtime_ns for n in before}
        quarantine_events.clear_cache()
        assert quarantine_events._query(str(db), EVENT) is None  # what `immutable` alone sees
        event = quarantine_events.lookup_event(str(db), EVENT)
        assert event is not None and event.data_url == "https://x.example/a.dmg"
        assert sorted(os.listdir(tmp_path)) == before  # nothing created next to the user's database
        assert {n: os.stat(tmp_path / n).st_mtime_ns for n in before} == stat_before
    finally:
        writer.close()

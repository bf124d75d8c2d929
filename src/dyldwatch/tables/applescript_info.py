"""applescript_info: compiled AppleScripts and JXA scripts, with run-only detection.

Run-only scripts carry no source, so nobody can read what they do: malware droppers favour them
(AN0057). Script bundles (`.scptd`) and applets (`.app` with Contents/Resources/Scripts) are
opened and each compiled script inside reported with the bundle it belongs to.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import ClassVar

from ..formats.applescript import ScriptInfo, is_compiled_script, parse_script, script_paths_in_bundle
from ..host.cache import BoundedCache
from ..host.files import FileKey, FileProblem, FileSource
from ..host.paths import expand_paths
from ..host.statx import birth_time
from .base import (
    BIGINT,
    DIRECTORY_KEY,
    INTEGER,
    PATH_KEY,
    TEXT,
    Column,
    QueryContext,
    Row,
    Table,
    error_row,
    has_path_constraint,
    path_constraints,
)

log = logging.getLogger(__name__)

BUNDLES = (".scptd", ".app")
#: A compiled script this large is not a script anyone wrote by hand; it is not parsed.
MAX_SCRIPT_SIZE = 64 << 20
_HEAD = 64

_CACHE: BoundedCache[Row] = BoundedCache(4096)


def _script_row(path: str, bundle: str | None, explicit: bool) -> Row | None:
    """The row of one script file, or None for a non-script found by a pattern."""
    try:
        st = os.stat(path)
    except OSError:
        st = None
    key = (FileKey.of(path, st), bundle) if st is not None else None
    if key is not None:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached if (cached.get("format") or explicit) else None
    try:
        with FileSource(path, max_size=MAX_SCRIPT_SIZE, pre=st) as src:
            head = src.read(0, _HEAD)
            if not is_compiled_script(head):
                row: Row = error_row(path, "not a compiled AppleScript or JXA script", bundle=bundle)
            else:
                data = src.read(0, src.size)
                if len(data) != src.size:
                    raise FileProblem("file changed size while being read")
                info: ScriptInfo = parse_script(data)
                row = {
                    "path": path, "directory": os.path.dirname(path), "bundle": bundle,
                    "format": info.format, "version": info.version,
                    "run_only": None if info.run_only is None else int(info.run_only),
                    "objects": info.objects, "evidence": info.evidence, "error": info.error,
                }
            row["size"] = src.size
            row["mtime"] = int(src.stat.st_mtime)
            row["btime"] = birth_time(path, src.stat)
    except FileProblem as exc:
        return error_row(path, str(exc), bundle=bundle)
    if key is not None:
        _CACHE.put(key, row)
    if not row.get("format") and not explicit:
        return None
    return row


class AppleScriptInfoTable(Table):
    name: ClassVar[str] = "applescript_info"
    description: ClassVar[str] = (
        "Compiled AppleScript (FasdUAS) and JXA (JsOsaDAS) scripts, including those inside script "
        "bundles (.scptd) and applets, with whether each was saved run-only (no source kept). "
        "Needs a path or directory constraint, like the file table."
    )
    row_keys = ("path", "directory")
    columns: ClassVar[tuple[Column, ...]] = (
        Column("path", TEXT, "Path of the compiled script (for a bundle, the script inside it)", PATH_KEY),
        Column("directory", TEXT, "Directory of the script", DIRECTORY_KEY),
        Column("bundle", TEXT, "The .scptd bundle or applet the script belongs to, if any"),
        Column("format", TEXT, "applescript or jxa"),
        Column("version", TEXT, "Format version from the header (e.g. 1.101.10)"),
        Column("run_only", INTEGER, "1 when saved run-only (no source can be recovered), 0 when editable"),
        Column("objects", INTEGER, "Objects walked in the script's object table"),
        Column("evidence", TEXT, "Why run_only was decided"),
        Column("size", BIGINT, "Size of the file in bytes"),
        Column("mtime", BIGINT, "Last modification time (Unix seconds)"),
        Column("btime", BIGINT, "Creation (birth) time where the file system records it"),
        Column("error", TEXT, "Why the file could not be read or parsed"),
    )
    examples: ClassVar[tuple[str, ...]] = (
        "SELECT path, run_only, evidence FROM applescript_info WHERE path LIKE '/Users/%/Library/%%'",
        "SELECT path, bundle FROM applescript_info WHERE directory = '/Applications' AND run_only = 1",
    )

    def generate(self, ctx: QueryContext) -> Iterator[Row]:
        if not has_path_constraint(ctx):
            # osquery refuses a query with no key at all; here the key's value was empty (a join on ''
            # or NULL, which osquery drops): ordinary in joins, so said at INFO (--verbose).
            log.info("applescript_info: no path or directory constraint; returning no rows")
            return
        for req in expand_paths(path_constraints(ctx), bundles=BUNDLES):
            if os.path.isdir(req.path):
                if not req.path.rstrip("/").endswith(BUNDLES):
                    if req.explicit:
                        yield error_row(req.path, "a directory, not a script or script bundle")
                    continue
                scripts = script_paths_in_bundle(req.path)
                if not scripts and req.explicit:
                    yield error_row(req.path, "bundle holds no compiled script", bundle=req.path)
                for script in scripts:
                    row = _script_row(script, req.path, True)
                    if row is not None:
                        yield row
                continue
            row = _script_row(req.path, None, req.explicit)
            if row is not None:
                yield row

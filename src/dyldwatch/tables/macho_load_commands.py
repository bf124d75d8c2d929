"""macho_load_commands: one row per load command per architecture slice.

The cheap path of the Mach-O tables: it reads only the fat header and each slice's header and
load-command area, so it can run over whole directories on a schedule.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, ClassVar

import orjson

from ..host.files import FileSource
from .base import BIGINT, DIRECTORY_KEY, INTEGER, PATH_KEY, TEXT, Column, QueryContext, Row, Table
from .machofiles import MachOScanner, ParsedFile

if TYPE_CHECKING:  # the parsers (and numpy) load at the first query, not at registration
    from ..macho import MachOSlice

DYLIB_COMMANDS = frozenset(
    {"LC_LOAD_DYLIB", "LC_LOAD_WEAK_DYLIB", "LC_REEXPORT_DYLIB", "LC_LAZY_LOAD_DYLIB", "LC_LOAD_UPWARD_DYLIB"}
)
NAMED_COMMANDS = DYLIB_COMMANDS | {"LC_ID_DYLIB", "LC_RPATH", "LC_LOAD_DYLINKER", "LC_ID_DYLINKER", "LC_DYLD_ENVIRONMENT"}
_SEGMENTS = frozenset({"LC_SEGMENT", "LC_SEGMENT_64"})
_RESOLVED = ("resolved_path", "resolved_exists", "in_shared_cache")


def details_json(cmd_name: str, data: dict | None) -> str | None:
    """A command's decoded fields as compact JSON (section lists summarised as a count)."""
    if not data:
        return None
    if cmd_name in _SEGMENTS:
        data = {k: v for k, v in data.items() if k != "sections"} | {"nsects": len(data.get("sections") or ())}
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS, default=str).decode()


def _executable_path(path: str, sl: MachOSlice) -> str:
    """@executable_path is the main program; for a library seen on its own we assume it is the loader."""
    return path


def slice_rows(path: str, sl: MachOSlice) -> Iterator[Row]:
    directory = os.path.dirname(path)
    arch = sl.ref.arch
    rpaths = tuple(c.name for c in sl.commands if c.cmd_name == "LC_RPATH" and c.name)
    executable_path = _executable_path(path, sl)
    for cmd in sl.commands:
        kind = cmd.cmd_name
        row: Row = {
            "path": path,
            "directory": directory,
            "arch": arch,
            "cmd_index": cmd.index,
            "cmd": kind,
            "cmd_size": cmd.cmd_size,
            "name": cmd.name if kind in NAMED_COMMANDS else None,
            "compatibility_version": cmd.compatibility_version,
            "current_version": cmd.current_version,
            "weak": 1 if cmd.weak else 0,
            "error": None,
            "_data": cmd.data,
        }
        if kind in DYLIB_COMMANDS and cmd.name:
            row["_resolve"] = (cmd.name, executable_path, path, rpaths)
        elif kind == "LC_RPATH" and cmd.name:
            row["rpath_index"] = rpaths.index(cmd.name)
        yield row


def rows_for(src: FileSource, parsed: ParsedFile) -> Iterator[Row]:
    for sl in parsed.slices:
        if sl.commands:
            yield from slice_rows(src.path, sl)
        elif not parsed.error:  # nothing dyld could load; say so rather than return nothing
            yield {"path": src.path, "directory": os.path.dirname(src.path), "arch": sl.ref.arch,
                   "error": f"slice {sl.ref.arch} has no load commands"}
    if parsed.error:
        yield {"path": src.path, "directory": os.path.dirname(src.path), "error": parsed.error}


def finisher(ctx: QueryContext) -> Callable[[Row], Row] | None:
    """The per-query step: `details` when the query reads it, and dylib resolution against the file
    system as it is now (never from cache, so a dylib planted later is seen at once). Existence
    checks are shared within one query: many binaries name the same libraries."""
    want_details = ctx.uses("details")
    want_resolution = any(ctx.uses(c) for c in _RESOLVED)
    if not (want_details or want_resolution):
        return None
    from ..macho import in_shared_cache_path, resolve_install_name

    known: dict[str, bool] = {}

    def exists(path: str) -> bool:
        hit = known.get(path)
        if hit is None:
            hit = known[path] = os.path.exists(path)
        return hit

    def finish(row: Row) -> Row:
        data = row.get("_data") if want_details else None
        spec = row.get("_resolve") if want_resolution else None
        if data is None and spec is None:
            return row
        out = dict(row)
        if data is not None:
            out["details"] = details_json(row["cmd"], data)
        if spec is not None:
            name, executable_path, loader_path, rpaths = spec
            resolved, found = resolve_install_name(
                name, executable_path=executable_path, loader_path=loader_path, rpaths=list(rpaths), exists=exists
            )
            out["resolved_path"] = resolved
            out["resolved_exists"] = 1 if found else 0
            out["in_shared_cache"] = 1 if (resolved and not found and in_shared_cache_path(resolved)) else 0
        return out

    return finish


SCANNER = MachOScanner("macho_load_commands", rows_for, finisher)


class MachoLoadCommandsTable(Table):
    name: ClassVar[str] = "macho_load_commands"
    description: ClassVar[str] = (
        "Load commands of Mach-O files, one row per command per architecture slice, with dylib "
        "references resolved (@executable_path, @loader_path, @rpath in LC_RPATH order). Needs a "
        "path or directory constraint, like the file table."
    )
    row_keys = ("path", "directory")
    columns: ClassVar[tuple[Column, ...]] = (
        Column("path", TEXT, "Path of the Mach-O file", PATH_KEY),
        Column("directory", TEXT, "Directory of the file", DIRECTORY_KEY),
        Column("arch", TEXT, "Architecture of the slice (x86_64, arm64, arm64e, …)"),
        Column("cmd_index", INTEGER, "Position of the command in the slice's load commands (0-based)"),
        Column("cmd", TEXT, "Command name, e.g. LC_LOAD_DYLIB (unknown ones as LC_0x…)"),
        Column("cmd_size", BIGINT, "cmdsize of the command in bytes"),
        Column("name", TEXT, "Dylib install name, rpath, or dylinker path the command names"),
        Column("compatibility_version", TEXT, "Dylib compatibility version (X.Y.Z)"),
        Column("current_version", TEXT, "Dylib current version (X.Y.Z)"),
        Column("weak", INTEGER, "1 for LC_LOAD_WEAK_DYLIB: dyld runs on when the library is missing"),
        Column("resolved_path", TEXT, "Where dyld would look for the dylib, after @-path and @rpath expansion"),
        Column("resolved_exists", INTEGER, "1 when resolved_path exists on disk now"),
        Column("in_shared_cache", INTEGER,
               "1 when resolved_path is absent on disk but a system path that macOS 11+ serves from the dyld shared cache"),
        Column("rpath_index", INTEGER, "For LC_RPATH: its position in the search order (0 is searched first)"),
        Column("details", TEXT, "Decoded fields of the command as JSON (uuid, versions, offsets, segment …)"),
        Column("error", TEXT, "Why the file or part of it could not be read or parsed"),
    )
    examples: ClassVar[tuple[str, ...]] = (
        "SELECT arch, cmd, name, resolved_path, resolved_exists FROM macho_load_commands "
        "WHERE path = '/Applications/Slack.app/Contents/MacOS/Slack' AND cmd LIKE 'LC_LOAD%'",
        "SELECT path, name FROM macho_load_commands WHERE path LIKE '/Users/%/Library/%%' "
        "AND cmd = 'LC_LOAD_WEAK_DYLIB' AND resolved_exists = 0",
    )

    def generate(self, ctx: QueryContext) -> Iterator[Row]:
        return SCANNER.scan(ctx)

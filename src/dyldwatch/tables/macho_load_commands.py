"""macho_load_commands: one row per load command per architecture slice.

The cheap path of the Mach-O tables: it reads only the fat header and each slice's header and
load-command area, so it can run over whole directories on a schedule.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, ClassVar

import orjson

from ..host.files import FileProblem, FileSource
from ._macho import MachOScanner, ParsedFile
from .base import BIGINT, DIRECTORY_KEY, INTEGER, PATH_KEY, TEXT, Column, QueryContext, Row, Table

if TYPE_CHECKING:  # the parsers (and numpy) load at the first query, not at registration
    from ..extension.wire import RowEncoder
    from ..formats.macho import MachOSlice
    from ..formats.macho.resolve import Resolution

DYLIB_COMMANDS = frozenset(
    {"LC_LOAD_DYLIB", "LC_LOAD_WEAK_DYLIB", "LC_REEXPORT_DYLIB", "LC_LAZY_LOAD_DYLIB", "LC_LOAD_UPWARD_DYLIB"}
)
NAMED_COMMANDS = DYLIB_COMMANDS | {"LC_ID_DYLIB", "LC_RPATH", "LC_LOAD_DYLINKER", "LC_ID_DYLINKER", "LC_DYLD_ENVIRONMENT"}
_SEGMENTS = frozenset({"LC_SEGMENT", "LC_SEGMENT_64"})
_RESOLVED = ("resolved_path", "resolved_exists", "in_shared_cache", "rpath_source", "search_paths", "planting_vector",
             "resolved_realpath")
#: Link kind of the classic dylib commands, in dylib_use_command's DYLIB_USE_* words.
_CLASSIC_LINK = {"LC_LOAD_WEAK_DYLIB": "WEAK_LINK", "LC_REEXPORT_DYLIB": "REEXPORT", "LC_LOAD_UPWARD_DYLIB": "UPWARD"}


def details_json(cmd_name: str, data: dict | None) -> str | None:
    """A command's decoded fields as compact JSON (section lists summarised as a count)."""
    if not data:
        return None
    if cmd_name in _SEGMENTS:
        data = {k: v for k, v in data.items() if k != "sections"} | {"nsects": len(data.get("sections") or ())}
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS, default=str).decode()


def _build(sl: MachOSlice) -> tuple[str | None, str | None]:
    from ..formats.macho import constants as C
    """(sdk, platform) of a slice, LC_BUILD_VERSION winning over LC_VERSION_MIN_*."""
    build = sl.first(C.LC_BUILD_VERSION)
    if build is not None and build.data:
        return build.data["sdk"], build.data["platform"]
    for c in sl.commands:
        if c.cmd in C.VERSION_MIN_PLATFORMS and c.data:
            return c.data["sdk"], c.data["platform"]
    return None, None


def link_flags(kind: str, data: dict | None) -> str:
    """How a dylib is linked: dylib_use_command's flags, or what the classic command number implies."""
    if data and data.get("format") == "dylib_use_command":
        return "|".join(data["use_flags"])
    return _CLASSIC_LINK.get(kind, "")


def slice_rows(path: str, sl: MachOSlice) -> Iterator[Row]:
    from ..formats.macho import constants as C
    from ..formats.macho.resolve import needs_fallbacks
    directory = os.path.dirname(path)
    arch = sl.ref.arch
    rpaths = tuple(c.name for c in sl.commands if c.cmd_name == "LC_RPATH" and c.name)
    executable_path = path  # a bundle's main executable replaces it per query (see finisher)
    sdk, platform = _build(sl)
    fallbacks = needs_fallbacks(sdk, platform) and sl.header.filetype != C.MH_OBJECT
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
            row["_fallbacks"] = fallbacks
            row["link_flags"] = link_flags(kind, cmd.data)
        elif kind == "LC_RPATH" and cmd.name:
            row["rpath_index"] = rpaths.index(cmd.name)
        yield row


def rows_for(src: FileSource, parsed: ParsedFile, parts: frozenset[str] = frozenset(),
             prior: tuple[Row, ...] | None = None) -> Iterator[Row]:
    """Every command's row (this table has no optional parts: the load commands are the parse)."""
    for sl in parsed.slices:
        if sl.commands:
            yield from slice_rows(src.path, sl)
        elif not parsed.error:  # nothing dyld could load; say so rather than return nothing
            yield {"path": src.path, "directory": os.path.dirname(src.path), "arch": sl.ref.arch,
                   "error": f"slice {sl.ref.arch} has no load commands"}
    if parsed.error:
        yield {"path": src.path, "directory": os.path.dirname(src.path), "error": parsed.error}


def finisher(ctx: QueryContext) -> Callable[[Row], Row] | None:
    """`details` when the query reads it (depends on the row alone, so its encoding is cached)."""
    if not ctx.uses("details"):
        return None

    def finish(row: Row) -> Row:
        data = row.get("_data")
        return row if data is None else {**row, "details": details_json(row["cmd"], data)}

    return finish


def live(ctx: QueryContext) -> Callable[[Row], Row | None] | None:
    """Dylib resolution against the file system as it is now (never from cache, so a dylib
    planted later is seen at once). Existence checks are shared within one query: many binaries
    name the same libraries."""
    if not any(ctx.uses(c) for c in _RESOLVED):
        return None
    from ..formats.macho.resolve import bundle_main_executable, physical_path, resolve_dylib

    known: dict[str, bool] = {}
    real: dict[str, str] = {}
    heads: dict[tuple[str, str], tuple[str, tuple[str, ...]] | None] = {}

    def exists(path: str) -> bool:
        hit = known.get(path)
        if hit is None:
            hit = known[path] = os.path.exists(path)
        return hit

    def realpath(path: str) -> str:
        hit = real.get(path)
        if hit is None:
            hit = real[path] = os.path.realpath(path)
        return hit

    def head(path: str, arch: str) -> tuple[str, tuple[str, ...]] | None:
        """The main executable of the bundle holding `path`, with its LC_RPATHs for `arch`."""
        key = (os.path.dirname(path), arch)
        if key not in heads:
            exe = bundle_main_executable(path)
            heads[key] = None if exe is None else (exe, main_rpaths(exe, arch))
        return heads[key]

    def resolve(row: Row) -> Row | None:
        spec = row.get("_resolve")
        if spec is None:
            return None
        name, _exe, loader_path, rpaths = spec
        top = head(loader_path, row.get("arch") or "")
        stack: list[tuple[str, tuple[str, ...]]] = []
        executable_path = None
        if top is not None and physical_path(top[0]) != physical_path(loader_path):
            executable_path = top[0]
            stack.append(top)
        res = resolve_dylib(name, loader_path=loader_path, rpaths=rpaths, exists=exists,
                            executable_path=executable_path, rpath_stack=stack, realpath=realpath,
                            fallbacks=bool(row.get("_fallbacks")))
        out = resolution_columns(res)
        # the kernel reports images by their real path (Homebrew's opt/ links lead into Cellar/)
        out["resolved_realpath"] = realpath(res.path) if res.exists and res.path else None
        return out

    return resolve


def _json_text(text: str) -> str:
    """A file name that may hold undecodable bytes (kept as surrogates) as JSON-safe text."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def resolution_columns(res: Resolution) -> Row:
    """The resolution columns of one dylib row."""
    from ..formats.macho import in_shared_cache_path

    found = res.exists
    return {
        "resolved_path": res.path,
        "resolved_exists": 1 if found else 0,
        "in_shared_cache": 1 if (res.path and not found and in_shared_cache_path(res.path)) else 0,
        "rpath_source": res.source,
        "search_paths": orjson.dumps([{"path": _json_text(c.path), "via": c.via,
                                       **({"source": _json_text(c.source)} if c.source else {})}
                                      for c in res.candidates]).decode() if res.candidates else None,
        "planting_vector": "; ".join(res.planting) or None,
    }


def main_rpaths(exe: str, arch: str) -> tuple[str, ...]:
    """LC_RPATHs of a bundle's main executable for one arch (its first slice when `arch` is absent)."""
    from ._macho import parse_file

    try:
        with FileSource(exe, max_size=2 << 30) as src:
            parsed = parse_file(src)
    except (FileProblem, OSError, ValueError):
        return ()
    slices = [s for s in parsed.slices if s.ref.arch == arch] or list(parsed.slices[:1])
    return tuple(slices[0].rpaths) if slices else ()


#: Load-command rows carry their decoded fields (for `details`) and are many per file: half the rows.
SCANNER = MachOScanner("macho_load_commands", rows_for, finisher, live=live, live_columns=_RESOLVED,
                       cache_rows=8_000)


class MachoLoadCommandsTable(Table):
    name: ClassVar[str] = "macho_load_commands"
    description: ClassVar[str] = (
        "Load commands of Mach-O files, one row per command per architecture slice, with dylib "
        "references resolved as dyld does (@executable_path, @loader_path, @rpath over the rpath stack: "
        "the file's LC_RPATHs, then those of its app bundle's main executable). Needs a path or "
        "directory constraint, like the file table."
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
        Column("resolved_realpath", TEXT, "resolved_path with every symlink resolved, as the kernel names the image "
               "once it is mapped (process_images, process_memory_map); NULL when the dylib is absent"),
        Column("in_shared_cache", INTEGER,
               "1 when resolved_path is absent on disk but a system path that macOS 11+ serves from the dyld shared cache"),
        Column("link_flags", TEXT, "How a dylib is linked: WEAK_LINK, REEXPORT, UPWARD, DELAYED_INIT (|-separated; "
               "from dylib_use_command's flags or the classic command)"),
        Column("rpath_source", TEXT, "For @rpath names: the image whose LC_RPATH supplied resolved_path (the file "
               "itself, or its bundle's main executable)"),
        Column("search_paths", TEXT, "Every path dyld would try, in order, as JSON [{path, via, source}]"),
        Column("planting_vector", TEXT, "Where a file planted by someone else could be loaded instead: a relative "
               "LC_RPATH (searched against the working directory), dyld's fallback directories for pre-2022-SDK "
               "binaries"),
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

    def generate_wire(self, ctx: QueryContext, encoder: RowEncoder) -> Iterator[tuple[str, tuple[bytes, ...]]]:
        """Encoded rows for the extension: a cached file's rows are encoded once per column set;
        the resolution columns are computed and encoded for every query."""
        return SCANNER.scan_wire(ctx, encoder)

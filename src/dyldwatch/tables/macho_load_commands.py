"""macho_load_commands: one row per load command per architecture slice.

The cheap path of the Mach-O tables: it reads only the fat header and each slice's header and
load-command area, so it can run over whole directories on a schedule.
"""

from __future__ import annotations

import functools
import operator
import os
import sys
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import orjson

from ..formats.macho import constants as C
from ..formats.macho.resolve import (
    bundle_main_executable,
    in_shared_cache_path,
    needs_fallbacks,
    physical_path,
    plan_dylib,
)
from ..host.cache import BoundedCache
from ..host.files import FileProblem, FileSource, exists
from ._macho import MachOScanner, ParsedFile
from .base import BIGINT, DIRECTORY_KEY, INTEGER, PATH_KEY, TEXT, Column, QueryContext, Row, Table

if TYPE_CHECKING:  # the parsers (and numpy) load at the first query, not at registration
    from ..extension.wire import RowEncoder
    from ..formats.macho import MachOSlice
    from ..formats.macho.model import LoadCommand
    from ..formats.macho.resolve import Plan, Resolution

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


@functools.cache
def _build_target() -> Callable[[LoadCommand], tuple[str | None, str | None]]:
    from ..formats.macho.loadcommands import build_target  # the parser loads at the first query

    return build_target


def _build(sl: MachOSlice) -> tuple[str | None, str | None]:
    """(sdk, platform) of a slice, LC_BUILD_VERSION winning over LC_VERSION_MIN_*."""
    vmin = None
    for c in sl.commands:
        if c.cmd == C.LC_BUILD_VERSION:
            return _build_target()(c)
        if vmin is None and c.cmd in C.VERSION_MIN_PLATFORMS:
            vmin = c
    return _build_target()(vmin) if vmin is not None else (None, None)


def link_flags(kind: str, data: dict | None) -> str:
    """How a dylib is linked: dylib_use_command's flags, or what the classic command number implies."""
    if data and data.get("format") == "dylib_use_command":
        return "|".join(data["use_flags"])
    return _CLASSIC_LINK.get(kind, "")


#: The optional part of this table's rows: `details`, the decoded fields of every command as JSON.
#: Everything else comes with the parse (names and versions are decoded with the commands; the
#: fields of segments, symbol tables and the like are decoded only for `details`).
DETAILS = "details"


#: needs_fallbacks for the few (sdk, platform) pairs a walk meets
_needs_fallbacks = functools.lru_cache(maxsize=256)(needs_fallbacks)


def _rpaths(sl: MachOSlice) -> tuple[str, ...]:
    return tuple(c.name for c in sl.commands if c.cmd_name == "LC_RPATH" and c.name)


def slice_specs(path: str, sl: MachOSlice) -> dict[int, Spec]:
    """The Spec of each of a slice's dylib commands, by position: what its resolution depends on
    besides the file system and the bundle. One pass over the commands (every walk pays it)."""
    dylibs: list[tuple[int, str]] = []
    rpaths: list[str] = []
    for i, cmd in enumerate(sl.commands):
        kind = cmd.cmd_name
        if kind in DYLIB_COMMANDS:
            if cmd.name:
                dylibs.append((i, cmd.name))
        elif kind == "LC_RPATH" and cmd.name:
            rpaths.append(cmd.name)
    if not dylibs:
        return {}
    sdk, platform = _build(sl)
    fallbacks = _needs_fallbacks(sdk, platform) and sl.header.filetype != C.MH_OBJECT
    arch = sl.ref.arch
    stack = tuple(rpaths)
    return {i: (name, path, stack, fallbacks, arch) for i, name in dylibs}


def slice_rows(path: str, sl: MachOSlice, details: bool = False) -> Iterator[Row]:
    directory = sys.intern(os.path.dirname(path))
    arch = sl.ref.arch
    rpaths = _rpaths(sl)
    specs = slice_specs(path, sl)
    for i, cmd in enumerate(sl.commands):
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
        }
        if details:
            row["details"] = details_json(kind, cmd.data)
        if i in specs:
            row["_resolve"] = specs[i]
            row["link_flags"] = link_flags(kind, cmd.data)
        elif kind == "LC_RPATH" and cmd.name:
            row["rpath_index"] = rpaths.index(cmd.name)
        yield row


def rows_for(path: str, parsed: ParsedFile, parts: frozenset[str] = frozenset()) -> Iterator[Row]:
    """Every command's row, with `details` when asked."""
    details = DETAILS in parts
    for sl in parsed.slices:
        if sl.commands:
            yield from slice_rows(path, sl, details)
        elif not parsed.error:  # nothing dyld could load; say so rather than return nothing
            yield {"path": path, "directory": os.path.dirname(path), "arch": sl.ref.arch,
                   "error": f"slice {sl.ref.arch} has no load commands"}
    if parsed.error:
        yield {"path": path, "directory": os.path.dirname(path), "error": parsed.error}


#: A value of a command's row for one column, from (command, its name, the slice's LC_RPATHs).
_Getter = Callable[["LoadCommand", str, tuple[str, ...]], "str | int | None"]
_GETTERS: dict[str, _Getter] = {
    "cmd_index": lambda c, k, r: c.index,
    "cmd": lambda c, k, r: k,
    "cmd_size": lambda c, k, r: c.cmd_size,
    "name": lambda c, k, r: c.name if k in NAMED_COMMANDS else None,
    "compatibility_version": lambda c, k, r: c.compatibility_version,
    "current_version": lambda c, k, r: c.current_version,
    "weak": lambda c, k, r: 1 if c.weak else 0,
    "link_flags": lambda c, k, r: link_flags(k, c.data) if k in DYLIB_COMMANDS and c.name else None,
    "rpath_index": lambda c, k, r: r.index(c.name) if k == "LC_RPATH" and c.name else None,
    "details": lambda c, k, r: details_json(k, c.data),
    "error": lambda c, k, r: None,
}
#: Columns whose values repeat across commands and files (their encoded pairs are kept per query).
_REPEATED = frozenset({"cmd_index", "cmd", "cmd_size", "name", "compatibility_version", "current_version", "weak",
                       "link_flags", "rpath_index"})
#: Encoded pairs one query keeps for reuse, per column.
_MEMO_LIMIT = 20_000


_PER_SLICE = ("path", "directory", "arch")
#: Columns that are a command's own parsed fields (what detection queries read): encoded through
#: one memo of whole runs of pairs, keyed by the fields' values.
_OWN_FIELDS = {"cmd": "cmd_name", "cmd_size": "cmd_size", "name": "name",
               "compatibility_version": "compatibility_version", "current_version": "current_version",
               "weak": "weak"}
_FIELDS = frozenset({*_PER_SLICE, "cmd_index", *_OWN_FIELDS})


def _head(path: str, sl: MachOSlice, names: Sequence[str], text: Callable[[str], bytes],
          memo: dict[object, object]) -> bytes:
    """The encoded pairs every row of a slice starts with (path, directory, arch as asked); the
    directory and arch pairs are the same for many files, so they are encoded once per query."""
    parts = []
    for n in names:
        if n == "path":
            parts.append(text("path") + text(path))
            continue
        value = sl.ref.arch if n == "arch" else os.path.dirname(path)
        pair = memo.get((n, value))
        if pair is None:
            pair = memo[(n, value)] = text(n) + text(value)
        parts.append(pair)  # type: ignore[arg-type]
    return b"".join(parts)  # type: ignore[arg-type]


class _FieldsLayout(NamedTuple):
    """How _wire_fields lays out one query's rows: the same for every file, so worked out once."""

    own: tuple[str, ...]
    fields: Callable[[LoadCommand], tuple]
    memo: dict[tuple, tuple[int, bytes]]
    per_slice: tuple[str, ...]
    want_index: bool
    #: map headers by the number of pairs beyond the head (a run holds 0..len(own) of them)
    headers: tuple[bytes, ...]


def _fields_layout(names: Sequence[str], encoder: RowEncoder) -> _FieldsLayout:
    layout: _FieldsLayout | None = encoder.memo.get(("layout", tuple(names)))  # type: ignore[assignment]
    if layout is None:
        own = tuple(n for n in names if n in _OWN_FIELDS)
        # (cmd_name, *own fields): cmd_name decides whether `name` is shown
        fields = operator.attrgetter("cmd_name", *(_OWN_FIELDS[n] for n in own)) if own else _no_fields
        per_slice = tuple(n for n in names if n in _PER_SLICE)
        want_index = "cmd_index" in names
        nhead = len(per_slice) + want_index
        headers = tuple(encoder.map_bytes(nhead + n, b"") for n in range(len(own) + 1))
        layout = _FieldsLayout(own, fields, {}, per_slice, want_index, headers)
        encoder.memo[("layout", tuple(names))] = layout
    elif len(layout.memo) > _MEMO_LIMIT:
        layout.memo.clear()
    return layout


def _wire_fields(path: str, parsed: ParsedFile, names: Sequence[str], encoder: RowEncoder) -> tuple[bytes, ...]:
    """Rows made of the slice's head, the command's index and a run of pairs for its own fields;
    a walk meets few distinct runs (LC_SEGMENT_64 __TEXT, LC_LOAD_DYLIB libSystem …), each encoded
    once per query."""
    text = encoder.text
    own, fields, memo, per_slice, want_index, headers = _fields_layout(names, encoder)
    indexes: list[bytes] = encoder.memo.setdefault("cmd_index", [])  # type: ignore[assignment]
    out: list[bytes] = []
    append = out.append
    join = b"".join
    for sl in parsed.slices:
        head = _head(path, sl, per_slice, text, encoder.memo)
        for cmd in sl.commands:
            values = fields(cmd)
            run = memo.get(values)
            if run is None:
                run = memo[values] = _own_run(own, values, text)
            if want_index:
                i = cmd.index
                while len(indexes) <= i:
                    indexes.append(text("cmd_index") + text(str(len(indexes))))
                append(join((headers[run[0]], head, indexes[i], run[1])))
            else:
                append(join((headers[run[0]], head, run[1])))
    return tuple(out)


def _no_fields(cmd: LoadCommand) -> tuple:
    return ()


def _own_run(own: Sequence[str], values: tuple, text: Callable[[str], bytes]) -> tuple[int, bytes]:
    """(pairs, bytes) for a command's own fields: `values` is (cmd_name, *fields in `own` order)."""
    if not own:
        return 0, b""
    kind = values[0]
    parts: list[bytes] = []
    for name, value in zip(own, values[1:], strict=True):
        if name == "name" and kind not in NAMED_COMMANDS:
            continue
        if name == "weak":
            value = 1 if value else 0
        if value is None:
            continue
        parts.append(text(name) + text(value if type(value) is str else str(value)))
    return len(parts), b"".join(parts)


class LoadCommandRows:
    """This table's rows from a file's parse (see _macho.ParseRows): dicts for in-process queries,
    and for the extension the rows encoded straight from the load commands, each repeated pair (a
    command name, an index, an install name) encoded once per query."""

    rows = staticmethod(rows_for)

    def wire(self, path: str, parsed: ParsedFile, names: Sequence[str], encoder: RowEncoder) -> tuple[bytes, ...] | None:
        if not parsed.clean:
            return None  # error rows take the general encoder
        try:
            if _FIELDS.issuperset(names):
                return _wire_fields(path, parsed, names, encoder)
            return self._wire_any(path, parsed, names, encoder)
        except UnicodeEncodeError:
            return None  # a name holding undecodable bytes: the general encoder escapes and notes it

    def _wire_any(self, path: str, parsed: ParsedFile, names: Sequence[str], encoder: RowEncoder) -> tuple[bytes, ...]:
        text = encoder.text
        memos: dict[object, bytes] = encoder.memo
        columns = []
        for n in names:
            if n in _GETTERS and n != "error":
                memo = memos.setdefault(n, {}) if n in _REPEATED else None  # type: ignore[arg-type]
                if memo is not None and len(memo) > _MEMO_LIMIT:
                    memo.clear()
                columns.append((text(n), _GETTERS[n], memo))
        per_slice = [n for n in names if n in _PER_SLICE]
        row = encoder.map_bytes
        out: list[bytes] = []
        for sl in parsed.slices:
            head = _head(path, sl, per_slice, text, encoder.memo)
            rpaths = _rpaths(sl)
            for cmd in sl.commands:
                kind = cmd.cmd_name
                parts = [head]
                for key, get, memo in columns:
                    value = get(cmd, kind, rpaths)
                    if value is None:
                        continue
                    pair = memo.get(value) if memo is not None else None  # type: ignore[attr-defined]
                    if pair is None:
                        pair = key + text(value if type(value) is str else str(value))
                        if memo is not None:
                            memo[value] = pair  # type: ignore[index]
                    parts.append(pair)
                out.append(row(len(per_slice) + len(parts) - 1, b"".join(parts)))
        return tuple(out)

    def specs(self, path: str, parsed: ParsedFile) -> tuple[tuple[int, Spec], ...] | None:
        if not parsed.clean:
            return None
        out: list[tuple[int, Spec]] = []
        offset = 0
        for sl in parsed.slices:
            out += ((offset + i, spec) for i, spec in slice_specs(path, sl).items())
            offset += len(sl.commands)
        return tuple(out)


def parts_for(ctx: QueryContext) -> frozenset[str]:
    return frozenset((DETAILS,)) if ctx.uses(DETAILS) else frozenset()


#: Resolution plans (the candidate paths of one install name from one loader under one rpath
#: stack): a pure function of their key, so they are shared by every query and never go stale.
#: Which candidate exists is checked for every query. Bounded small: a walk over distinct loaders
#: fills it with plans used once (about 0.5 KB each).
PLANS: BoundedCache[Plan] = BoundedCache(4_096)
#: Plans one query keeps at hand (past that it starts over; the shared ones stay in PLANS).
QUERY_PLANS = 1_024
#: What a dylib row's resolution depends on in its own file: (install name, loader path, the
#: loader's LC_RPATHs, whether dyld's fallback paths apply, arch).
Spec = tuple[str, str, tuple[str, ...], bool, str]
#: An outcome: (plan key, index of the first existing candidate or -1, its real path when read).
Outcome = tuple[Hashable, int, "str | None"]


class Resolver:
    """Dylib resolution against the file system as it is now, for one query (LiveColumns).

    Plans come from PLANS; existence checks, real paths, bundle heads and outcomes are looked up
    once per query (many binaries name the same libraries) and never kept past it, so a dylib
    planted after one query is seen by the next."""

    def __init__(self, ctx: QueryContext) -> None:
        self.want = frozenset(c for c in _RESOLVED if ctx.uses(c))
        self.known: dict[str, bool] = {}
        self.real: dict[str, str] = {}
        self.heads: dict[tuple[str, str], tuple[str, tuple[str, ...]] | None] = {}
        self.plans: dict[Hashable, Plan] = {}
        self.outcomes: dict[Hashable, Outcome] = {}
        self.rechecked: dict[Hashable, bool] = {}

    def exists(self, path: str) -> bool:
        hit = self.known.get(path)
        if hit is None:
            hit = self.known[path] = exists(path)
        return hit

    def realpath(self, path: str) -> str:
        hit = self.real.get(path)
        if hit is None:
            hit = self.real[path] = os.path.realpath(path)
        return hit

    def head(self, path: str, arch: str) -> tuple[str, tuple[str, ...]] | None:
        """The main executable of the bundle holding `path`, with its LC_RPATHs for `arch`."""
        key = (os.path.dirname(path), arch)
        if key not in self.heads:
            exe = bundle_main_executable(path)
            self.heads[key] = None if exe is None else (exe, main_rpaths(exe, arch))
        return self.heads[key]

    def spec(self, row: Row) -> Spec | None:
        return row.get("_resolve")

    def plan_key(self, spec: Spec) -> Hashable:
        """What the plan of `spec` depends on. An absolute name (or a bare leaf) is planned the same
        from any loader, an @loader_path name from any loader in the same directory, so those plans
        are shared by every file naming them; @rpath and @executable_path names depend on the
        bundle's main executable too. A `/..` may depend on symlinks: such names take the full key."""
        name, loader_path, rpaths, fallbacks, arch = spec
        if "/.." not in name:
            if name[:1] != "@":
                return ("absolute", name, fallbacks)
            if name.startswith("@loader_path/") and "/.." not in loader_path:
                return ("loader", name, os.path.dirname(loader_path), fallbacks)
        top = self.head(loader_path, arch)
        executable_path: str | None = None
        stack: tuple[tuple[str, tuple[str, ...]], ...] = ()
        if top is not None and physical_path(top[0]) != physical_path(loader_path):
            executable_path, stack = top[0], (top,)
        return ("chain", name, loader_path, rpaths, fallbacks, executable_path, stack)

    def outcome(self, spec: Hashable) -> Outcome:
        key = self.plan_key(spec)  # type: ignore[arg-type]
        hit = self.outcomes.get(key)
        if hit is not None:
            return hit
        plan = self.plans.get(key) or PLANS.get(key)
        if plan is None:
            used: list[str] = []

            def realpath(p: str) -> str:
                used.append(p)
                return self.realpath(p)

            plan = self._planned(key, realpath)
            if used:  # a `..` after a symlink: the plan depends on the file system, this query only
                key = ("symlinks", key, plan)
            else:
                PLANS.put(key, plan)
        if len(self.plans) >= QUERY_PLANS:
            # A walk over distinct loaders meets a new plan per dylib row: the query keeps only the
            # recent ones (columns() finds an evicted one again from its key).
            self.plans.clear()
            self.outcomes.clear()
        self.plans[key] = plan
        found = plan.outcome(self.exists)
        result = (key, found, self._real(plan, found))
        self.outcomes[key[1] if key[0] == "symlinks" else key] = result  # type: ignore[index]
        return result

    def unchanged(self, specs: Sequence[tuple[int, Hashable]], outcomes: Sequence[Hashable]) -> bool:
        """Whether the specs' outcomes now are `outcomes`. An absolute or @loader_path plan is the same
        for its spec whatever the file system, so its outcome is re-checked once per query by key;
        the others (they depend on the bundle's main executable) are worked out again."""
        rechecked = self.rechecked
        for (_, spec), was in zip(specs, outcomes, strict=True):
            if self.spec_free(was):  # a kept answer holds each of these once
                if not self._still(was):  # type: ignore[arg-type]
                    return False
                continue
            same = rechecked.get(was)
            if same is None:
                same = rechecked[was] = self.outcome(spec) == was
            if not same:
                return False
        return True

    def spec_free(self, outcome: Hashable) -> bool:
        kind = outcome[0][0]  # type: ignore[index]
        return kind == "absolute" or kind == "loader"

    def _still(self, was: Outcome) -> bool:
        """Whether a spec-independent plan's outcome is still `was` (its key names its plan)."""
        key, found, real = was
        plan = self.plans.get(key) or PLANS.peek(key) or self._planned(key, self.realpath)
        return plan.outcome(self.exists) == found and self._real(plan, found) == real

    def _real(self, plan: Plan, found: int) -> str | None:
        """The real path of the candidate found, when the query reads resolved_realpath: the kernel
        reports images by their real path (Homebrew's opt/ links lead into Cellar/)."""
        if found < 0 or "resolved_realpath" not in self.want:
            return None
        hit = plan.candidates[found] if found < len(plan.candidates) else plan.fallbacks[found - len(plan.candidates)]
        return self.realpath(hit.path)

    def _planned(self, key: Hashable, realpath: Callable[[str], str]) -> Plan:
        """The plan a key (from plan_key) stands for."""
        kind = key[0]  # type: ignore[index]
        if kind == "absolute":  # the loader plays no part
            _, name, fallbacks = key  # type: ignore[misc]
            return plan_dylib(name, loader_path="/", rpaths=(), realpath=realpath, fallbacks=fallbacks)
        if kind == "loader":  # only the loader's directory does
            _, name, directory, fallbacks = key  # type: ignore[misc]
            return plan_dylib(name, loader_path=os.path.join(directory, "-"), rpaths=(), realpath=realpath,
                                    fallbacks=fallbacks)
        _, name, loader_path, rpaths, fallbacks, executable_path, stack = key  # type: ignore[misc]
        return plan_dylib(name, loader_path=loader_path, rpaths=rpaths, executable_path=executable_path,
                                rpath_stack=stack, realpath=realpath, fallbacks=fallbacks)

    def _plan(self, key: Hashable) -> Plan:
        """The plan an outcome names: this query's, the shared one, or planned again from its key."""
        plan = self.plans.get(key) or PLANS.get(key)
        if plan is not None:
            return plan
        if key[0] == "symlinks":  # type: ignore[index]  # a plan that depended on symlinks: kept in its key
            return key[2]  # type: ignore[index]
        return self._planned(key, self.realpath)

    def columns(self, outcome: Hashable) -> Row:
        key, found, real = outcome  # type: ignore[misc]
        out = resolution_columns(self._plan(key).settle(found), self.want)
        if "resolved_realpath" in self.want:
            out["resolved_realpath"] = real
        return out


class RootedResolver(Resolver):
    """Resolution in a mounted image's (or a fixture tree's) coordinates: install names resolve as on
    their own machine, existence and links are looked up under `root`, and paths come back as inside
    the image. What `dyldwatch snapshot --root` and the scenario fixtures use."""

    def __init__(self, ctx: QueryContext, root: str) -> None:
        super().__init__(ctx)
        self.root = root.rstrip("/")

    def _strip(self, path: str) -> str:
        return path[len(self.root):] or "/" if path == self.root or path.startswith(self.root + "/") else path

    def exists(self, path: str) -> bool:
        hit = self.known.get(path)
        if hit is None:
            hit = self.known[path] = exists(self.root + path)
        return hit

    def realpath(self, path: str) -> str:
        hit = self.real.get(path)
        if hit is None:
            hit = self.real[path] = self._strip(os.path.realpath(self.root + path))
        return hit

    def head(self, path: str, arch: str) -> tuple[str, tuple[str, ...]] | None:
        key = (os.path.dirname(path), arch)
        if key not in self.heads:
            exe = bundle_main_executable(self.root + path)
            self.heads[key] = None if exe is None else (self._strip(exe), main_rpaths(exe, arch))
        return self.heads[key]

    def spec(self, row: Row) -> Spec | None:
        spec = row.get("_resolve")
        if spec is None:
            return None
        name, loader, rpaths, fallbacks, arch = spec
        return (name, self._strip(loader), rpaths, fallbacks, arch)


def live(ctx: QueryContext) -> Resolver | None:
    """The query's Resolver, or None when it reads no resolution column."""
    if not any(ctx.uses(c) for c in _RESOLVED):
        return None
    return Resolver(ctx)


def _json_text(text: str) -> str:
    """A file name that may hold undecodable bytes (kept as surrogates) as JSON-safe text."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def resolution_columns(res: Resolution, want: frozenset[str] = frozenset(_RESOLVED)) -> Row:
    """The resolution columns of one dylib row (those in `want`)."""
    found = res.exists
    out: Row = {}
    if "resolved_path" in want:
        out["resolved_path"] = res.path
    if "resolved_exists" in want:
        out["resolved_exists"] = 1 if found else 0
    if "in_shared_cache" in want:
        out["in_shared_cache"] = 1 if (res.path and not found and in_shared_cache_path(res.path)) else 0
    if "rpath_source" in want:
        out["rpath_source"] = res.source
    if "search_paths" in want:
        out["search_paths"] = orjson.dumps([{"path": _json_text(c.path), "via": c.via,
                                             **({"source": _json_text(c.source)} if c.source else {})}
                                            for c in res.candidates]).decode() if res.candidates else None
    if "planting_vector" in want:
        out["planting_vector"] = "; ".join(res.planting) or None
    return out


def main_rpaths(exe: str, arch: str) -> tuple[str, ...]:
    """LC_RPATHs of a bundle's main executable for one arch (its first slice when `arch` is absent).
    Read through the shared parse cache, checked against the file as it is now."""
    from ._macho import PARSE_CACHE, parse_file

    try:
        with FileSource(exe, max_size=2 << 30) as src:
            parsed = PARSE_CACHE.get(src.key)
            if parsed is None:
                parsed = parse_file(src)
                PARSE_CACHE.put(src.key, parsed)
    except (FileProblem, OSError, ValueError):
        return ()
    slices = [s for s in parsed.slices if s.ref.arch == arch] or list(parsed.slices[:1])
    return tuple(slices[0].rpaths) if slices else ()


#: Load-command rows are many per file: half the rows of macho_info's cache.
SCANNER = MachOScanner("macho_load_commands", parts_for=parts_for, live=live, live_columns=_RESOLVED,
                       cache_rows=8_000, parse_rows=LoadCommandRows())


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

    def generate_wire(self, ctx: QueryContext, encoder: RowEncoder) -> Iterator[tuple[str, tuple[bytes, ...] | bytes]]:
        """Encoded rows for the extension: a cached file's rows are encoded once per column set;
        the resolution columns are computed and encoded for every query."""
        return SCANNER.scan_wire(ctx, encoder)

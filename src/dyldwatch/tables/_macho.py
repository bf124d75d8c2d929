"""What the Mach-O tables share: which files a query names, safe opening, caching, error rows.

Both Mach-O tables parse the same structure (slices and load commands); a file's parse is cached
by its identity and version, so a join that asks for the same file twice, or a scheduled query
over unchanged files, pays once.

Work follows the columns a query reads (colsUsed): a table names the costly PARTS of its rows,
and a file's cached rows grow part by part, so a later query that reads more columns computes
only what is missing. The rows' Thrift encoding is cached beside them, per column set, so a
repeated query over unchanged files costs a stat per file and a copy of bytes. Caches are bounded
by rows, not files, so memory stays bounded whatever a directory holds.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ..formats.macho.model import MachOError
from ..host.cache import BoundedCache
from ..host.files import FileKey, FileProblem, FileSource
from ..host.paths import Listings, PathRequest, expand_paths, listings_unchanged
from .base import QueryContext, Row, error_row, has_path_constraint, path_constraints

if TYPE_CHECKING:  # the parsers (and numpy) load at the first query, not at registration
    from ..extension.wire import Pairs, RowEncoder
    from ..formats.macho import MachOSlice
    from ..formats.macho.codesign import CodeSignature
    from ..formats.macho.model import SliceRef

log = logging.getLogger(__name__)

MACHO_MAGICS = frozenset(
    {
        b"\xfe\xed\xfa\xce", b"\xce\xfa\xed\xfe",  # MH_MAGIC, MH_CIGAM
        b"\xfe\xed\xfa\xcf", b"\xcf\xfa\xed\xfe",  # MH_MAGIC_64, MH_CIGAM_64
        b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf",  # FAT_MAGIC, FAT_MAGIC_64
    }
)
#: A Mach-O larger than this is not parsed (no loadable image is that large; sparse-file traps are).
MAX_MACHO_SIZE = 2 << 30


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """The cached parse of one file version: its slices, or the error that stopped the parse."""

    key: FileKey
    slices: tuple[MachOSlice, ...]
    error: str | None
    #: load commands over all slices (an empty slice counts one): what caching it weighs
    commands: int = 0
    #: one row per command and nothing else: no error, no empty slice
    clean: bool = False


def _parsed(key: FileKey, slices: list[MachOSlice], error: str | None) -> ParsedFile:
    commands, clean = 0, error is None
    for sl in slices:
        n = len(sl.commands)
        commands += n or 1
        clean = clean and n > 0
    return ParsedFile(key, tuple(slices), error, commands, clean)


@functools.cache
def _parser() -> tuple[Callable[[FileSource], list[SliceRef]], Callable[[FileSource, SliceRef], MachOSlice]]:
    """(read_slices, read_load_commands): the parser loads at the first query, once."""
    from ..formats.macho.loadcommands import read_load_commands, read_slices

    return read_slices, read_load_commands


def parse_file(src: FileSource) -> ParsedFile:
    """Slices and load commands of an open file; a malformed file yields what parsed plus an error."""
    read_slices, read_load_commands = _parser()
    slices: list[MachOSlice] = []
    try:
        refs = read_slices(src)
    except MachOError as exc:
        return _parsed(src.key, [], str(exc))
    for ref in refs:
        try:
            slices.append(read_load_commands(src, ref))
        except MachOError as exc:
            if exc.partial is not None and exc.partial.commands:
                slices.append(exc.partial)  # the commands before the bad one are still evidence
            return _parsed(src.key, slices, f"{ref.arch}: {exc}")
    return _parsed(src.key, slices, None)


def looks_like_macho(src: FileSource) -> bool:
    return src.read(0, 4) in MACHO_MAGICS


#: rows_for(src, parsed, parts, prior): a file's rows with `parts` computed; `prior` holds the
#: rows of the same file version computed earlier for other parts (None the first time).
FileRows = Callable[[FileSource, ParsedFile, frozenset[str], "tuple[Row, ...] | None"], Iterator[Row]]
#: finisher(ctx): the step that completes a cached row for the query's columns (None: nothing to do).
#: Its output may be cached per column set, so it must depend on nothing but the row and the columns.
Finisher = Callable[[QueryContext], Callable[[Row], Row] | None]


class LiveColumns(Protocol):
    """The columns of one query that depend on the file system now (whether a referenced dylib
    exists), computed for every query so they never go stale.

    `spec(row)` is what the row's live columns depend on in its own file (None when it has none):
    a function of the row alone, so a cached file keeps its specs. `outcome(spec)` checks the file
    system and returns everything the columns depend on, as a hashable; `columns(outcome)` builds
    them. Equal outcomes give equal columns, so a file whose outcomes are those of an earlier
    query is sent with the bytes encoded then."""

    def spec(self, row: Row) -> Hashable | None: ...

    def outcome(self, spec: Hashable) -> Hashable: ...

    def columns(self, outcome: Hashable) -> Row: ...

    def unchanged(self, specs: Sequence[tuple[int, Hashable]], outcomes: Sequence[Hashable]) -> bool:
        """Whether `outcome(spec)` would give `outcomes` again now (cheaper than recomputing them)."""
        ...

    def spec_free(self, outcome: Hashable) -> bool:
        """Whether `unchanged` can re-check this outcome without the spec that gave it (then an
        answer keeps it once however many rows hold it)."""
        ...


class ParseRows(Protocol):
    """A table whose rows come from the parse alone (no further reads of the file): its cache keeps
    the parse instead of row dicts, builds rows only for in-process queries, and encodes wire rows
    straight from the parse."""

    def rows(self, path: str, parsed: ParsedFile, parts: frozenset[str]) -> Iterator[Row]: ...

    def wire(self, path: str, parsed: ParsedFile, names: Sequence[str], encoder: RowEncoder) -> tuple[bytes, ...] | None:
        """The encoded rows for `names` in `rows` order, or None to have `rows` encoded instead."""
        ...

    def specs(self, path: str, parsed: ParsedFile) -> tuple[tuple[int, Hashable], ...] | None:
        """(row index, live spec) of the rows with live columns, or None to read them from `rows`."""
        ...


#: live(ctx): the query's LiveColumns, or None when it reads no live column.
Live = Callable[[QueryContext], LiveColumns | None]
#: Rows a table's cache holds at most (a row and its encoding take about 1-2 KB). 14,000 keeps the
#: AN0057 walk over 23,400 files under osquery's restrictive watchdog (100 MB) while a scheduled
#: signing query over an 11,700-file /Applications (12,700 rows) still fits whole.
CACHE_ROWS = 14_000
#: Column sets whose encoded rows one file keeps (a scheduled query reads the same set each time).
WIRE_SETS = 2


@dataclass(slots=True)
class FileEntry:
    """One file version's rows with the parts computed so far (or, for a ParseRows table, its
    parse), and their encodings per column set."""

    rows: tuple[Row, ...] | None
    parts: frozenset[str]
    parsed: ParsedFile | None = None
    #: (row index, live spec) of the rows with live columns, worked out once per file version
    specs: tuple[tuple[int, Hashable], ...] | None = None
    #: per column set: the encoded rows without their live columns (a dict once the first is kept)
    wire: dict[frozenset[str], tuple[bytes, ...]] | None = None
    #: whole encoded rows with their live columns, per (column set, live outcomes of every row)
    live_wire: dict[Hashable, tuple[bytes, ...]] | None = None


class _Sent(NamedTuple):
    """One file of a kept answer: how it was named, its version, its live specs and their
    outcomes then, and the rows sent."""

    path: str
    explicit: bool
    key: FileKey
    specs: tuple[tuple[int, Hashable], ...]
    outcomes: tuple[Hashable, ...]
    rows: tuple[bytes, ...]


class _Kept(NamedTuple):
    """An answer kept for a repeat: its files (name and version, in order), the live outcomes its
    rows hold (each distinct one once, with a spec that gave it), all its rows in order, and the
    stamped directory listings that named the files (None when a stamp could not stand for one)."""

    files: tuple[tuple[str, bool, FileKey], ...]
    specs: tuple[tuple[int, Hashable], ...]
    outcomes: tuple[Hashable, ...]
    rows: bytes  # one piece (the encoder's join_rows): sent again as it is
    listings: tuple[tuple[str, FileKey], ...] | None


def _keep(files: list[_Sent], live: LiveColumns | None, listings: Listings,
          join: Callable[[Sequence[bytes]], bytes]) -> _Kept:
    checks: dict[Hashable, tuple[tuple[int, Hashable], Hashable]] = {}
    for f in files:
        for spec, was in zip(f.specs, f.outcomes, strict=True):
            checks.setdefault(was if live is not None and live.spec_free(was) else (spec[1], was), (spec, was))
    pairs = list(checks.values())
    stamped = tuple((d, stamp) for d, stamp in listings if stamp is not None)
    return _Kept(tuple((f.path, f.explicit, f.key) for f in files), tuple(p[0] for p in pairs),
                 tuple(p[1] for p in pairs), join([r for f in files for r in f.rows]),
                 stamped if len(stamped) == len(listings) else None)


#: Answers kept per scanner (a schedule repeats a handful of query shapes), and the bytes they may
#: hold together. An answer is recorded with the cached files' own row bytes and joined into one
#: piece when it is first asked again (a copy, which this bounds); an answer larger than this is
#: not kept (its files still are).
ANSWERS = 8
ANSWER_BYTES = 4 << 20
#: Bytes a kept row costs besides its encoding (the bytes object, its slot in the answer).
_ROW_OVERHEAD = 48


class _Recording:
    """The answer being sent, recorded for a repeat until it proves too large or not reusable."""

    __slots__ = ("files", "size", "on", "listings")

    def __init__(self, on: bool = True) -> None:
        self.files: list[_Sent] = []
        self.size = 0
        self.on = on
        #: the directory listings the query's files came from (see host.paths.Listings)
        self.listings: Listings = []

    def add(self, path: str, explicit: bool, key: FileKey | None, specs: tuple[tuple[int, Hashable], ...],
            outcomes: tuple[Hashable, ...], rows: tuple[bytes, ...]) -> None:
        if not self.on:
            return
        self.size += sum(map(len, rows)) + _ROW_OVERHEAD * len(rows)
        if key is None or self.size > ANSWER_BYTES:  # a file that could not be read, or too much
            self.on = False
            self.files = []
            return
        self.files.append(_Sent(path, explicit, key, specs, outcomes, rows))


class MachOScanner:
    """Answers one Mach-O table: expands the query's paths and caches each file's rows.

    The row cache is checked after a single stat, before the file is opened, so a repeated query
    over unchanged files costs a stat per file. `parts_for(ctx)` names the parts the query's
    columns need. `finisher(ctx)` completes rows for the query's columns in a way that can be
    cached with them; `live(ctx)` adds the columns that depend on other files (whether a referenced
    dylib exists), computed for every query so they never go stale; `live_columns` names them.
    A table whose rows come from the parse alone passes `parse_rows` instead of `rows_for`.
    """

    def __init__(self, table: str, rows_for: FileRows | None = None, finisher: Finisher | None = None, *,
                 parts_for: Callable[[QueryContext], frozenset[str]] | None = None, live: Live | None = None,
                 live_columns: Sequence[str] = (), cache_rows: int = CACHE_ROWS,
                 implied: dict[str, frozenset[str]] | None = None, parse_rows: ParseRows | None = None) -> None:
        if (rows_for is None) == (parse_rows is None):
            raise ValueError("a scanner takes rows_for or parse_rows")
        self.table = table
        self.rows_for = rows_for
        self.parse_rows = parse_rows
        self.finisher = finisher
        self.parts_for = parts_for
        self.live = live
        self.live_columns = frozenset(live_columns)
        self.implied = implied or {}
        self.cache: BoundedCache[FileEntry] = BoundedCache(cache_rows, max_weight=cache_rows)
        #: the last answers by (files named, columns read): a repeated query over unchanged files
        #: re-checks each file's version and each live outcome, and sends the rows again as they are
        self.answers: BoundedCache[_Kept | _Recording] = BoundedCache(ANSWERS, max_weight=ANSWER_BYTES)

    def _requests(self, ctx: QueryContext, listings: Listings | None = None) -> Iterator[PathRequest]:
        if not has_path_constraint(ctx):
            # osquery refuses a query with no key at all; here the key's value was empty (a join on ''
            # or NULL, which osquery drops): ordinary in joins, so said at INFO (--verbose).
            log.info("%s: no path or directory constraint; returning no rows "
                        "(try: WHERE path LIKE '/Applications/%%%%' or directory = '/usr/local/lib')", self.table)
            return iter(())
        return expand_paths(path_constraints(ctx), listings=listings)

    def _rows(self, path: str, entry: FileEntry, need: frozenset[str]) -> tuple[Row, ...]:
        if entry.rows is not None:
            return entry.rows
        assert self.parse_rows is not None and entry.parsed is not None
        return tuple(self.parse_rows.rows(path, entry.parsed, need))

    def scan(self, ctx: QueryContext, *, private: bool = False) -> Iterator[Row]:
        """Rows for every Mach-O file the query names; errors become rows, never exceptions.

        Files named by `path =` are always answered (a non-Mach-O gets an error row); files found
        by a pattern or directory listing are answered only when they carry a Mach-O magic. Keys
        starting with `_` (what resolution needs) stay in the rows only with `private`.
        """
        need = self.parts_for(ctx) if self.parts_for is not None else frozenset()
        finish = self.finisher(ctx) if self.finisher is not None else None
        live = self.live(ctx) if self.live is not None else None
        for req in self._requests(ctx):
            for row in self._rows(req.path, self._entry(req, need), need):
                if finish is not None:
                    row = finish(row)
                if live is not None:
                    spec = live.spec(row)
                    if spec is not None:
                        row = {**row, **live.columns(live.outcome(spec))}
                yield row if private else {k: v for k, v in row.items() if k[:1] != "_"}

    def scan_wire(self, ctx: QueryContext, encoder: RowEncoder) -> Iterator[tuple[str, tuple[bytes, ...] | bytes]]:
        """(path, encoded rows) per file, for the extension: what `scan` yields, encoded for the
        query's columns; the part that does not depend on the file system now is encoded once per
        file version and column set, and reused. A query asked before over files that are all
        unchanged, whose live outcomes are unchanged too, gets the rows it got then, as one
        piece (a RowRun, see extension.wire)."""
        live = self.live(ctx) if self.live is not None else None
        if not has_path_constraint(ctx):
            yield from self._scan_wire(ctx, encoder, live, _Recording(on=False))
            return
        shape = (path_constraints(ctx), encoder.key)
        kept = self.answers.get(shape)
        if kept is not None:
            if isinstance(kept, _Recording):  # compacted at its first reuse, not while answering
                recorded, kept = kept, _keep(kept.files, live, kept.listings, encoder.join_rows)
                self.answers.put(shape, kept, weight=max(1, recorded.size))
            again = self._again(ctx, kept, live)
            if again is not None:
                yield from again
                return
        sent = _Recording()
        yield from self._scan_wire(ctx, encoder, live, sent)
        if sent.on:  # the whole answer went out (a cut one never gets here), every file read
            self.answers.put(shape, sent, weight=max(1, sent.size))

    def _again(self, ctx: QueryContext, kept: _Kept,
               live: LiveColumns | None) -> list[tuple[str, bytes]] | None:
        """The kept answer's rows, as one piece, if the query names the same files, each the same
        version with the same live outcomes; else None (the query is answered afresh)."""
        files = kept.files
        if kept.listings is None or not listings_unchanged(kept.listings):
            # a directory changed (or cannot vouch for its listing): expand the query again
            asked = [(r.path, r.explicit) for r in self._requests(ctx)]
            if asked != [(path, explicit) for path, explicit, _ in files]:
                return None
        stat = os.stat
        try:
            for path, _, was in files:
                st = stat(path)  # the version, field by field (FileKey's order), without building one
                if (st.st_ino != was[2] or st.st_mtime_ns != was[4] or st.st_ctime_ns != was[5]
                        or st.st_size != was[3] or st.st_dev != was[1]):
                    return None
        except (OSError, ValueError):
            return None
        if kept.specs and (live is None or not live.unchanged(kept.specs, kept.outcomes)):
            return None
        return [(files[-1][0], kept.rows)] if files else []

    def _scan_wire(self, ctx: QueryContext, encoder: RowEncoder, live: LiveColumns | None,
                   sent: _Recording) -> Iterator[tuple[str, tuple[bytes, ...]]]:
        need = self.parts_for(ctx) if self.parts_for is not None else frozenset()
        finish = self.finisher(ctx) if self.finisher is not None else None
        live_names = [n for n in encoder.names if n in self.live_columns] if live is not None else []
        static_names = [n for n in encoder.names if n not in self.live_columns]
        whole = not live_names or live is None
        #: the encoded live columns of each outcome met in this query (many rows name the same dylib)
        live_pairs: dict[Hashable, Pairs] = {}
        for req in self._requests(ctx, sent.listings if sent.on else None):
            entry, key = self._entry_and_key(req, need, wire=(encoder.key, live is not None))
            if entry.wire is None:
                entry.wire = {}
            static = entry.wire.get(encoder.key)
            if static is None:
                # Without live columns these are the whole rows, and the answer shares them (one copy
                # of each row in memory, not one in the cache and one sent).
                static = self._static(req.path, entry, need, finish, static_names, encoder)
                if len(entry.wire) >= WIRE_SETS:
                    entry.wire.pop(next(iter(entry.wire)))
                entry.wire[encoder.key] = static
            if whole:
                sent.add(req.path, req.explicit, key, (), (), static)
                self._let_go(entry)
                yield req.path, static
                continue
            assert live is not None
            specs = self._specs(req.path, entry, need, live)
            self._let_go(entry)
            outcomes = tuple(live.outcome(spec) for _, spec in specs)
            wkey = (encoder.key, outcomes)
            if entry.live_wire is None:
                entry.live_wire = {}
            out = entry.live_wire.get(wkey)
            if out is None:
                rows = list(static)
                for (i, _), outcome in zip(specs, outcomes, strict=True):
                    pairs = live_pairs.get(outcome)
                    if pairs is None:
                        pairs = live_pairs[outcome] = encoder.encode_pairs(
                            encoder.values(live.columns(outcome), live_names)[0])
                    rows[i] = encoder.extend_row(static[i], pairs)
                out = tuple(rows)
                if len(entry.live_wire) >= WIRE_SETS:
                    entry.live_wire.pop(next(iter(entry.live_wire)))
                entry.live_wire[wkey] = out
            sent.add(req.path, req.explicit, key, specs, outcomes, out)
            yield req.path, out

    def _let_go(self, entry: FileEntry) -> None:
        """Once a file's rows are encoded, its parse is not kept: the encoding is what a repeat
        sends, and a query reading other columns (or the first to need its dylib specs) parses the
        file again (see _entry_and_key). A parse holds about twice the memory of its encoded rows, and a walk
        that keeps each parse makes the process grow by it (fresh pages: the kernel's cost too)."""
        if self.parse_rows is not None:
            entry.parsed = None

    def _static(self, path: str, entry: FileEntry, need: frozenset[str], finish: Callable[[Row], Row] | None,
                names: Sequence[str], encoder: RowEncoder) -> tuple[bytes, ...]:
        """The encoded non-live columns of a file's rows: straight from the parse when the table can,
        else from its rows."""
        if entry.parsed is not None and self.parse_rows is not None and finish is None:
            fast = self.parse_rows.wire(path, entry.parsed, names, encoder)
            if fast is not None:
                return fast
        rows = self._rows(path, entry, need)
        finished = rows if finish is None else [finish(r) for r in rows]
        return tuple(encoder.row_bytes(encoder.encode_pairs(encoder.values(r, names)[0])) for r in finished)

    def _specs(self, path: str, entry: FileEntry, need: frozenset[str],
               live: LiveColumns) -> tuple[tuple[int, Hashable], ...]:
        specs = entry.specs
        if specs is None:
            if entry.parsed is not None and self.parse_rows is not None:
                specs = self.parse_rows.specs(path, entry.parsed)
            if specs is None:
                found = ((i, live.spec(r)) for i, r in enumerate(self._rows(path, entry, need)))
                specs = tuple((i, s) for i, s in found if s is not None)
            entry.specs = specs
        return specs

    def _entry(self, req: PathRequest, need: frozenset[str]) -> FileEntry:
        return self._entry_and_key(req, need)[0]

    def _entry_and_key(self, req: PathRequest, need: frozenset[str], wire: tuple[Hashable, bool] | None = None,
                       ) -> tuple[FileEntry, FileKey | None]:
        """The file's entry, and the version it stands for (None when the file could not be read).

        A ParseRows table's entry keeps its parse only until its rows are encoded: `wire` says
        what the caller reads instead (an encoding's key, and whether live specs are needed). A
        cached entry that lacks it has the file parsed again into it (the same version: its other
        encodings stay)."""
        try:
            st: os.stat_result | None = os.stat(req.path)
        except (OSError, ValueError):
            st = None  # FileSource says why
        cached: FileEntry | None = None
        if st is not None:
            key = FileKey.of(req.path, st)
            cached = self.cache.get((key, req.explicit))
            if cached is not None and (cached.parsed is not None or self._enough(cached, need, wire)):
                return cached, key
        try:
            src = FileSource(req.path, max_size=MAX_MACHO_SIZE, pre=st)
        except FileProblem as exc:
            return FileEntry((error_row(req.path, str(exc)),), need), None
        if cached is not None and st is not None and src.key != FileKey.of(req.path, st):
            cached = None  # replaced between stat and open
        parsed: ParsedFile | None = None
        with src:
            try:
                if not looks_like_macho(src):
                    rows: tuple[Row, ...] | None = (
                        (error_row(req.path, "not a Mach-O file (no Mach-O or fat magic)"),) if req.explicit else ()
                    )
                    parts = need | (cached.parts if cached else frozenset())
                else:
                    parsed = PARSE_CACHE.get(src.key)
                    if parsed is None:
                        parsed = parse_file(src)
                        if self.rows_for is not None:  # a ParseRows table's entry holds its parse itself
                            PARSE_CACHE.put(src.key, parsed)
                    if self.rows_for is None:
                        if cached is not None and cached.rows is None and cached.parsed is None:
                            cached.parsed = parsed  # let go after encoding: parsed again, same version
                            return cached, src.key
                        rows, parts = None, need  # built from the parse when asked for
                    else:
                        prior = cached.rows if cached is not None else None
                        todo = need - cached.parts if cached is not None else need
                        rows = tuple(self.rows_for(src, parsed, todo, prior))
                        parts = todo | (cached.parts if cached else frozenset())
                        parsed = None
            except FileProblem as exc:  # the file shrank or vanished mid-read: not cached
                return FileEntry((error_row(req.path, str(exc)),), need), None
            except (MachOError, ValueError, OverflowError, MemoryError) as exc:
                rows, parts, parsed = (error_row(req.path, f"cannot parse: {exc}"),), need, None
        for part, more in self.implied.items():
            if part in parts:
                parts |= more
        entry = FileEntry(rows, parts, parsed)
        weight = len(rows) if rows is not None else parsed.commands + 1  # type: ignore[union-attr]
        self.cache.put((src.key, req.explicit), entry, weight=max(1, weight))
        return entry, src.key

    def _enough(self, entry: FileEntry, need: frozenset[str], wire: tuple[Hashable, bool] | None) -> bool:
        """Whether a cached entry answers without its file being read again."""
        if entry.rows is not None:
            return need <= entry.parts
        # a ParseRows entry whose parse was let go: enough if it holds the encoding asked for
        return wire is not None and entry.wire is not None and wire[0] in entry.wire and (
            not wire[1] or entry.specs is not None)

    def clear(self) -> None:
        self.cache.clear()
        self.answers.clear()


#: Parsed files, kept by macho_info (and the bundle lookups) for the other table: a join that reads
#: a file's load commands after its macho_info row parses it once. Kept small: the tables' own
#: caches hold what a repeated query needs; this serves joins within one query, which ask for the
#: same file within a few rows. macho_load_commands reads it but does not fill it: its own entry
#: holds the parse until the rows are encoded, and a parse kept here would outlive that.
PARSE_CACHE: BoundedCache[ParsedFile] = BoundedCache(64)


# --- macho_info's rows, here so that dylib_provenance asks for signing through the same cache ---


def _json(value: object) -> str | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def signature_columns(blob: bytes | None) -> tuple[Row, str | None]:
    """Signing columns from a SuperBlob (or its absence), and a parse problem if any."""
    from ..formats.macho.codesign import CodeSignatureError, parse_code_signature

    if blob is None:
        return {"signed": 0, "signature_type": "none"}, None
    try:
        sig: CodeSignature = parse_code_signature(blob)
    except CodeSignatureError as exc:
        return {"signed": 0, "signature_type": "invalid"}, f"code signature: {exc}"
    return {
        "signed": 1,
        "signature_type": sig.signature_type,
        "signing_id": sig.signing_id,
        "team_id": sig.team_id,
        "cdhash": sig.cdhash,
        "cd_flags": sig.cd_flags,
        "hardened_runtime": 1 if sig.hardened_runtime else 0,
        "entitlements": sig.entitlements_json,
        "authority": sig.authority,
        "launch_constraints": sig.launch_constraints_json,
    }, ("code signature: " + "; ".join(sig.problems)) if sig.problems else None


def signing_columns(blob: bytes | None) -> tuple[Row, str | None]:
    """signed, signature_type and team_id alone (codesign.signature_summary: no CMS or
    entitlements decoding), and a parse problem if any."""
    from ..formats.macho.codesign import CodeSignatureError, signature_summary

    if blob is None:
        return {"signed": 0, "signature_type": "none"}, None
    try:
        kind, team = signature_summary(blob)
    except CodeSignatureError as exc:
        return {"signed": 0, "signature_type": "invalid"}, f"code signature: {exc}"
    return {"signed": 1, "signature_type": kind, "team_id": team}, None


#: The analysis part (macho.analysis.PARTS) each costly column needs; other columns come from the
#: header and cost nothing beyond the parse.
COLUMN_PARTS: dict[str, str] = {
    "uuid": "build", "min_os": "build", "sdk": "build", "platform": "build", "encrypted": "build",
    "has_symtab": "symbols", "nsyms": "symbols", "nsyms_external": "symbols",
    "nsyms_imports": "imports", "strings_count": "strings", "text_entropy": "text", "packer_markers": "packers",
    **dict.fromkeys(("signed", "signature_type", "signing_id", "team_id", "cdhash", "cd_flags", "hardened_runtime",
                     "entitlements", "authority", "launch_constraints"), "signature"),
}
ALL_PARTS = frozenset(COLUMN_PARTS.values())
#: The columns the light `signing` part gives when a query reads no other signature column.
SIGNING_COLUMNS = frozenset({"signed", "signature_type", "team_id"})
#: Parts a computed part stands in for: the full signature parse gives the signing columns too.
IMPLIED = {"signature": frozenset({"signing"})}
#: The order problems are reported in (the order the analysis reads the file).
_ORDER = ("build", "symbols", "imports", "strings", "text", "packers", "signing", "signature")
#: A row's problems per part, kept with the cached row so `error` can name those the query needs.
_PROBLEMS = "_problems"


def parts_for(ctx: QueryContext) -> frozenset[str]:
    """The analysis parts the query's columns need (all of them when osquery sent no colsUsed)."""
    if ctx.cols_used is None:
        return ALL_PARTS
    parts = {part for col, part in COLUMN_PARTS.items() if col in ctx.cols_used}
    if "signature" in parts and not any(c in ctx.cols_used for c, p in COLUMN_PARTS.items()
                                        if p == "signature" and c not in SIGNING_COLUMNS):
        parts.discard("signature")
        parts.add("signing")
    return frozenset(parts)


def part_columns(src: FileSource, sl: MachOSlice, part: str) -> tuple[Row, tuple[str, ...]]:
    """One part's columns of one slice, and the problems met computing them."""
    from ..formats.macho.analysis import analyze_slice

    try:
        a = analyze_slice(src, sl, ("signature",) if part == "signing" else (part,))
    except MachOError as exc:
        return {}, (str(exc),)
    problems = list(a.problems)
    cols: Row
    if part == "build":
        cols = {"uuid": a.uuid, "min_os": a.min_os, "sdk": a.sdk, "platform": a.platform,
                "encrypted": 1 if a.encrypted else 0}
    elif part == "symbols":
        cols = {"has_symtab": 1 if a.has_symtab else 0, "nsyms": a.nsyms, "nsyms_external": a.nsyms_external}
    elif part == "imports":
        cols = {"nsyms_imports": a.nsyms_imports}
    elif part == "strings":
        cols = {"strings_count": a.strings_count}
    elif part == "text":
        cols = {"text_entropy": a.text_entropy}
    elif part == "packers":
        cols = {"packer_markers": _json(list(a.packer_markers)) if a.packer_markers else None}
    elif part == "signing":
        cols, problem = signing_columns(a.code_signature)
        if problem:
            problems.append(problem)
    else:
        cols, problem = signature_columns(a.code_signature)
        if problem:
            problems.append(problem)
    return cols, tuple(problems)


def header_row(src: FileSource, sl: MachOSlice) -> Row:
    """The columns every query gets at the cost of the parse alone."""
    path = src.path
    # Interned: thousands of cached rows share a few directories, file types and flag sets.
    return {
        "path": path,
        "directory": sys.intern(os.path.dirname(path)),
        "arch": sys.intern(sl.ref.arch),
        "filetype": sys.intern(sl.header.filetype_name),
        "flags": sys.intern("|".join(sl.header.flag_names)),
        "ncmds": sl.header.ncmds,
        "fat": 1 if sl.ref.fat else 0,
        "slice_offset": sl.ref.offset,
        "slice_size": sl.ref.size,
        "size": src.size,
        _PROBLEMS: {},
    }


#: Problem sets as rows keep them, one shared (never mutated) dict per distinct set: nearly every
#: cached row has the same few.
_PROBLEM_SETS: dict[tuple[tuple[str, tuple[str, ...]], ...], dict[str, tuple[str, ...]]] = {}


def _shared(problems: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    key = tuple(sorted(problems.items()))
    hit = _PROBLEM_SETS.get(key)
    if hit is None:
        if len(_PROBLEM_SETS) > 4096:  # distinct problem texts name offsets: keep the common ones only
            _PROBLEM_SETS.clear()
        hit = _PROBLEM_SETS[key] = problems
    return hit


def slice_row(src: FileSource, sl: MachOSlice, parts: frozenset[str] = ALL_PARTS, prior: Row | None = None) -> Row:
    """A slice's row with `parts` computed on top of `prior` (the same slice's earlier row), as cached:
    problems kept per part until finish_row picks those a query needs."""
    row = dict(prior) if prior is not None else header_row(src, sl)
    problems = dict(row[_PROBLEMS])
    for part in (p for p in _ORDER if p in parts):
        if part == "signing" and "signature" in problems:
            continue  # the full parse already gave these columns
        cols, found = part_columns(src, sl, part)
        row.update(cols)
        problems[part] = found
        if part == "signature":  # a light query's `error` names what made the signature invalid
            problems["signing"] = found if cols.get("signature_type") == "invalid" else ()
    row[_PROBLEMS] = _shared(problems)
    return row


def finish_row(row: Row, parts: frozenset[str]) -> Row:
    """`error` for a query needing `parts`: the parse error, then those parts' problems in order."""
    problems = row.get(_PROBLEMS)
    if problems is None:  # an error row: its error stands
        return row
    found = [p for part in _ORDER if part in parts for p in problems.get(part, ())]
    out = {k: v for k, v in row.items() if k != _PROBLEMS}
    out["error"] = "; ".join(found) or None
    return out


def rows_for(src: FileSource, parsed: ParsedFile, parts: frozenset[str] = ALL_PARTS,
             prior: tuple[Row, ...] | None = None) -> Iterator[Row]:
    for i, sl in enumerate(parsed.slices):
        yield slice_row(src, sl, parts, prior[i] if prior is not None else None)
    if parsed.error:
        yield {"path": src.path, "directory": os.path.dirname(src.path), "error": parsed.error}


def finisher(ctx: QueryContext) -> Callable[[Row], Row]:
    """Sets `error` from the problems of the parts this query's columns need."""
    parts = parts_for(ctx)
    return lambda row: finish_row(row, parts)


INFO_SCANNER = MachOScanner("macho_info", rows_for, finisher, parts_for=parts_for, implied=IMPLIED)


def signing_summary(path: str) -> tuple[str | None, str | None]:
    """(signature_type, team_id) of a Mach-O file for other tables; (None, None) for anything else.

    Uses the macho_info scanner and its cache, so the signature is parsed once per file version.
    """
    kinds: list[str] = []
    teams: list[str] = []
    for row in INFO_SCANNER.scan(QueryContext.build({"path": [(2, path)]}, ("path", "signature_type", "team_id"))):
        if row.get("signature_type"):
            kinds.append(row["signature_type"])
            if row.get("team_id"):
                teams.append(row["team_id"])
    if not kinds:
        return None, None
    # A fat file is as trustworthy as its weakest slice.
    order = ["none", "invalid", "adhoc", "linker-signed", "certificate"]
    weakest = min(kinds, key=lambda k: order.index(k) if k in order else 0)
    return weakest, (teams[0] if teams and len(set(teams)) == 1 else None)

"""What the Mach-O tables share: which files a query names, safe opening, caching, error rows.

Both Mach-O tables parse the same structure (slices and load commands); a file's parse is cached
by its identity and version, so a join that asks for the same file twice, or a scheduled query
over unchanged files, pays once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..host.cache import BoundedCache
from ..host.files import FileKey, FileProblem, FileSource
from ..host.paths import PathRequest, expand_paths, has_path_constraint
from .base import QueryContext, Row, error_row

if TYPE_CHECKING:  # the parsers (and numpy) load at the first query, not at registration
    from ..macho import MachOSlice

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


def parse_file(src: FileSource) -> ParsedFile:
    """Slices and load commands of an open file; a malformed file yields what parsed plus an error."""
    from ..macho import MachOError, read_load_commands, read_slices

    slices: list[MachOSlice] = []
    try:
        refs = read_slices(src)
    except MachOError as exc:
        return ParsedFile(src.key, (), str(exc))
    for ref in refs:
        try:
            slices.append(read_load_commands(src, ref))
        except MachOError as exc:
            if exc.partial is not None and exc.partial.commands:
                slices.append(exc.partial)  # the commands before the bad one are still evidence
            return ParsedFile(src.key, tuple(slices), f"{ref.arch}: {exc}")
    return ParsedFile(src.key, tuple(slices), None)


def looks_like_macho(src: FileSource) -> bool:
    return src.read(0, 4) in MACHO_MAGICS


FileRows = Callable[[FileSource, ParsedFile], Iterator[Row]]
Finisher = Callable[[QueryContext], Callable[[Row], Row] | None]


class MachOScanner:
    """Answers one Mach-O table: expands the query's paths and caches each file's rows.

    The row cache is checked after a single stat, before the file is opened, so a repeated query
    over unchanged files costs a stat per file. `finisher(ctx)` gives the step that adds the per-query columns: those that depend
    on other files (whether a referenced dylib exists), so cached rows never go stale on them, and
    costly ones the query does not read.
    """

    def __init__(self, table: str, rows_for: FileRows, finisher: Finisher | None = None, cache_size: int = 4096) -> None:
        self.table = table
        self.rows_for = rows_for
        self.finisher = finisher
        self.cache: BoundedCache[tuple[Row, ...]] = BoundedCache(cache_size)

    def scan(self, ctx: QueryContext) -> Iterator[Row]:
        """Rows for every Mach-O file the query names; errors become rows, never exceptions.

        Files named by `path =` are always answered (a non-Mach-O gets an error row); files found
        by a pattern or directory listing are answered only when they carry a Mach-O magic.
        """
        if not has_path_constraint(ctx):
            log.warning("%s: no path or directory constraint; returning no rows "
                        "(try: WHERE path LIKE '/Applications/%%%%' or directory = '/usr/local/lib')", self.table)
            return
        finish = self.finisher(ctx) if self.finisher is not None else None
        for req in expand_paths(ctx):
            rows = self._rows(req)
            if finish is None:
                yield from rows
            else:
                for row in rows:
                    yield finish(row)

    def _rows(self, req: PathRequest) -> tuple[Row, ...]:
        from ..macho import MachOError

        try:
            st: os.stat_result | None = os.stat(req.path)
        except (OSError, ValueError):
            st = None  # FileSource says why
        if st is not None:
            cached = self.cache.get((FileKey.of(req.path, st), req.explicit))
            if cached is not None:
                return cached
        try:
            src = FileSource(req.path, max_size=MAX_MACHO_SIZE, pre=st)
        except FileProblem as exc:
            return (error_row(req.path, str(exc)),)
        with src:
            try:
                if not looks_like_macho(src):
                    rows: tuple[Row, ...] = (
                        (error_row(req.path, "not a Mach-O file (no Mach-O or fat magic)"),) if req.explicit else ()
                    )
                else:
                    parsed = PARSE_CACHE.get(src.key)
                    if parsed is None:
                        parsed = parse_file(src)
                        PARSE_CACHE.put(src.key, parsed)
                    rows = tuple(self.rows_for(src, parsed))
            except FileProblem as exc:  # the file shrank or vanished mid-read: not cached
                return (error_row(req.path, str(exc)),)
            except (MachOError, ValueError, OverflowError, MemoryError) as exc:
                rows = (error_row(req.path, f"cannot parse: {exc}"),)
        self.cache.put((src.key, req.explicit), rows)
        return rows

    def clear(self) -> None:
        self.cache.clear()


#: Parsed files, shared by both Mach-O tables (a join of the two parses each file once).
PARSE_CACHE: BoundedCache[ParsedFile] = BoundedCache(1024)

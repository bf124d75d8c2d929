"""What the Mach-O tables share: which files a query names, safe opening, caching, error rows.

Both Mach-O tables parse the same structure (slices and load commands); a file's parse is cached
by its identity and version, so a join that asks for the same file twice, or a scheduled query
over unchanged files, pays once.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..host.cache import BoundedCache
from ..host.files import FileKey, FileProblem, FileSource
from ..host.paths import PathRequest, expand_paths
from .base import Op, QueryContext, Row, error_row, has_path_constraint, path_constraints

if TYPE_CHECKING:  # the parsers (and numpy) load at the first query, not at registration
    from ..formats.macho import MachOSlice
    from ..formats.macho.codesign import CodeSignature

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
    from ..formats.macho import MachOError, read_load_commands, read_slices

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
        for req in expand_paths(path_constraints(ctx)):
            rows = self._rows(req)
            if finish is None:
                yield from rows
            else:
                for row in rows:
                    yield finish(row)

    def _rows(self, req: PathRequest) -> tuple[Row, ...]:
        from ..formats.macho import MachOError

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


# --- macho_info's rows, shared: dylib_provenance asks for signing through the same cache ----------

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


def slice_row(src: FileSource, sl: MachOSlice) -> Row:
    from ..formats.macho import MachOError, analyze_slice

    path = src.path
    row: Row = {
        "path": path,
        "directory": os.path.dirname(path),
        "arch": sl.ref.arch,
        "filetype": sl.header.filetype_name,
        "flags": "|".join(sl.header.flag_names),
        "ncmds": sl.header.ncmds,
        "fat": 1 if sl.ref.fat else 0,
        "slice_offset": sl.ref.offset,
        "slice_size": sl.ref.size,
        "size": src.size,
    }
    problems: list[str] = []
    try:
        a = analyze_slice(src, sl)
    except MachOError as exc:
        row["error"] = str(exc)
        return row
    row.update(
        uuid=a.uuid, min_os=a.min_os, sdk=a.sdk, platform=a.platform,
        has_symtab=1 if a.has_symtab else 0, nsyms=a.nsyms, nsyms_external=a.nsyms_external,
        nsyms_imports=a.nsyms_imports, strings_count=a.strings_count, text_entropy=a.text_entropy,
        encrypted=1 if a.encrypted else 0, packer_markers=_json(list(a.packer_markers)) if a.packer_markers else None,
    )
    problems.extend(a.problems or ())
    sig, problem = signature_columns(a.code_signature)
    row.update(sig)
    if problem:
        problems.append(problem)
    row["error"] = "; ".join(problems) or None
    return row


def info_rows(src: FileSource, parsed: ParsedFile) -> Iterator[Row]:
    for sl in parsed.slices:
        yield slice_row(src, sl)
    if parsed.error:
        yield {"path": src.path, "directory": os.path.dirname(src.path), "error": parsed.error}


INFO_SCANNER = MachOScanner("macho_info", info_rows)


def signing_summary(path: str) -> tuple[str | None, str | None]:
    """(signature_type, team_id) of a Mach-O file for other tables; (None, None) for anything else.

    Uses macho_info's scanner and its cache, so the signature is parsed once per file version.
    """
    kinds: list[str] = []
    teams: list[str] = []
    for row in INFO_SCANNER.scan(QueryContext.build({"path": [(Op.EQUALS, path)]})):
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

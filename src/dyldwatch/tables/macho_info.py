"""macho_info: one row per architecture slice: identity, build, symbols, strings, entropy, signature.

This is the deep read (code signature, __cstring, __TEXT entropy); it reads only the byte ranges
the query's columns need, never the whole file at once: a query for the signing columns reads
headers, load commands and signature blobs, and no __TEXT. Each costly part of a row is computed
when a query first reads one of its columns and cached with the file's rows (COLUMN_PARTS).

`error` reports the problems of the parts the query's columns needed (and any parse error): a
query that does not read text_entropy is not told that __TEXT lies outside the slice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, ClassVar

from ..host.files import FileSource
from .base import BIGINT, DIRECTORY_KEY, DOUBLE, INTEGER, PATH_KEY, TEXT, Column, QueryContext, Row, Table
from .machofiles import MachOScanner, ParsedFile

if TYPE_CHECKING:  # the parsers (and numpy) load at the first query, not at registration
    from ..ext_wire import RowEncoder
    from ..macho import MachOSlice
    from ..macho.codesign import CodeSignature


def _json(value: object) -> str | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def signature_columns(blob: bytes | None) -> tuple[Row, str | None]:
    """Signing columns from a SuperBlob (or its absence), and a parse problem if any."""
    from ..macho.codesign import CodeSignatureError, parse_code_signature

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
#: The order problems are reported in (the order the analysis reads the file).
_ORDER = ("build", "symbols", "imports", "strings", "text", "packers", "signature")
#: A row's problems per part, kept with the cached row so `error` can name those the query needs.
_PROBLEMS = "_problems"


def parts_for(ctx: QueryContext) -> frozenset[str]:
    """The analysis parts the query's columns need (all of them when osquery sent no colsUsed)."""
    if ctx.cols_used is None:
        return ALL_PARTS
    return frozenset(part for col, part in COLUMN_PARTS.items() if col in ctx.cols_used)


def part_columns(src: FileSource, sl: MachOSlice, part: str) -> tuple[Row, tuple[str, ...]]:
    """One part's columns of one slice, and the problems met computing them."""
    from ..macho import MachOError, analyze_slice

    try:
        a = analyze_slice(src, sl, (part,))
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
    else:
        cols, problem = signature_columns(a.code_signature)
        if problem:
            problems.append(problem)
    return cols, tuple(problems)


def header_row(src: FileSource, sl: MachOSlice) -> Row:
    """The columns every query gets at the cost of the parse alone."""
    path = src.path
    return {
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
        _PROBLEMS: {},
    }


def slice_row(src: FileSource, sl: MachOSlice, parts: frozenset[str] = ALL_PARTS, prior: Row | None = None) -> Row:
    """A slice's row with `parts` computed on top of `prior` (the same slice's earlier row), as cached:
    problems kept per part until finish_row picks those a query needs."""
    row = dict(prior) if prior is not None else header_row(src, sl)
    problems = dict(row[_PROBLEMS])
    for part in (p for p in _ORDER if p in parts):
        cols, found = part_columns(src, sl, part)
        row.update(cols)
        problems[part] = found
    row[_PROBLEMS] = problems
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


SCANNER = MachOScanner("macho_info", rows_for, finisher, parts_for=parts_for)


def signing_summary(path: str) -> tuple[str | None, str | None]:
    """(signature_type, team_id) of a Mach-O file for other tables; (None, None) for anything else.

    Uses the macho_info scanner and its cache, so the signature is parsed once per file version.
    """
    from .base import QueryContext as _Ctx

    kinds: list[str] = []
    teams: list[str] = []
    for row in SCANNER.scan(_Ctx.build({"path": [(2, path)]}, ("path", "signature_type", "team_id"))):
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


class MachoInfoTable(Table):
    name: ClassVar[str] = "macho_info"
    description: ClassVar[str] = (
        "Mach-O files, one row per architecture slice: type, build platform and SDK, symbol and "
        "string counts, __TEXT entropy, packer markers, encryption, and the code signature "
        "(type, identifier, team, cdhash, hardened runtime, entitlements, certificate authority). "
        "Needs a path or directory constraint, like the file table."
    )
    row_keys = ("path", "directory")
    columns: ClassVar[tuple[Column, ...]] = (
        Column("path", TEXT, "Path of the Mach-O file", PATH_KEY),
        Column("directory", TEXT, "Directory of the file", DIRECTORY_KEY),
        Column("arch", TEXT, "Architecture of the slice"),
        Column("filetype", TEXT, "Mach-O file type: execute, dylib, bundle, object, dylinker, kext_bundle, …"),
        Column("flags", TEXT, "Header flags, |-separated (PIE, TWOLEVEL, …)"),
        Column("ncmds", BIGINT, "Number of load commands"),
        Column("fat", INTEGER, "1 when the slice is inside a universal (fat) file"),
        Column("slice_offset", BIGINT, "File offset of the slice"),
        Column("slice_size", BIGINT, "Size of the slice in bytes"),
        Column("size", BIGINT, "Size of the whole file in bytes"),
        Column("uuid", TEXT, "LC_UUID"),
        Column("min_os", TEXT, "Minimum OS version (LC_BUILD_VERSION or LC_VERSION_MIN_*)"),
        Column("sdk", TEXT, "SDK version the slice was built against"),
        Column("platform", TEXT, "Build platform (macos, ios, maccatalyst, …)"),
        Column("has_symtab", INTEGER, "1 when LC_SYMTAB is present and holds symbols"),
        Column("nsyms", BIGINT, "Symbols in LC_SYMTAB"),
        Column("nsyms_external", BIGINT, "External symbols (defined + undefined, from LC_DYSYMTAB)"),
        Column("nsyms_imports", BIGINT, "Imports bound through chained fixups (LC_DYLD_CHAINED_FIXUPS)"),
        Column("strings_count", INTEGER, "Printable C strings of 4+ characters in __TEXT,__cstring"),
        Column("text_entropy", DOUBLE, "Shannon entropy of the __TEXT segment, bits per byte (packed code nears 8)"),
        Column("encrypted", INTEGER, "1 when an LC_ENCRYPTION_INFO command has a non-zero cryptid"),
        Column("packer_markers", TEXT, "JSON array of packer traces found (__XHDR, upxTEXT, UPX!)"),
        Column("signed", INTEGER, "1 when the slice carries a code signature that parses"),
        Column("signature_type", TEXT, "none, adhoc, linker-signed, certificate (invalid when it does not parse)"),
        Column("signing_id", TEXT, "CodeDirectory identifier"),
        Column("team_id", TEXT, "Team identifier from the CodeDirectory"),
        Column("cdhash", TEXT, "CodeDirectory hash (hex), as the kernel computes it"),
        Column("cd_flags", BIGINT, "CodeDirectory flags (0x2 adhoc, 0x10000 runtime, 0x20000 linker-signed)"),
        Column("hardened_runtime", INTEGER, "1 when the hardened runtime flag is set"),
        Column("entitlements", TEXT, "Entitlements as compact JSON"),
        Column("authority", TEXT, "Leaf certificate common name of a certificate signature"),
        Column("launch_constraints", TEXT,
               "Launch constraints (signature slots 8-11: self, parent, responsible, library) as JSON"),
        Column("error", TEXT, "Why the file or part of it could not be read or parsed"),
    )
    examples: ClassVar[tuple[str, ...]] = (
        "SELECT path, arch, signature_type, team_id, hardened_runtime FROM macho_info "
        "WHERE directory = '/Applications/Slack.app/Contents/MacOS'",
        "SELECT path, nsyms, strings_count, text_entropy FROM macho_info "
        "WHERE path LIKE '/Users/%/Library/%%' AND (has_symtab = 0 OR packer_markers IS NOT NULL)",
    )

    def generate(self, ctx: QueryContext) -> Iterator[Row]:
        return SCANNER.scan(ctx)

    def generate_wire(self, ctx: QueryContext, encoder: RowEncoder) -> Iterator[tuple[str, tuple[bytes, ...]]]:
        """Encoded rows for the extension, reused for unchanged files (see MachOScanner.scan_wire)."""
        return SCANNER.scan_wire(ctx, encoder)

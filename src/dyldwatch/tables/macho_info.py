"""macho_info: one row per architecture slice: identity, build, symbols, strings, entropy, signature.

This is the deep read (code signature, __cstring, __TEXT entropy); it reads only the byte ranges
those columns need, never the whole file at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

from ..host.files import FileSource
from .base import BIGINT, DIRECTORY_KEY, DOUBLE, INTEGER, PATH_KEY, TEXT, Column, QueryContext, Row, Table
from .machofiles import MachOScanner, ParsedFile

if TYPE_CHECKING:  # the parsers (and numpy) load at the first query, not at registration
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


def slice_row(src: FileSource, sl: MachOSlice) -> Row:
    from ..macho import MachOError, analyze_slice

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


def rows_for(src: FileSource, parsed: ParsedFile) -> Iterator[Row]:
    for sl in parsed.slices:
        yield slice_row(src, sl)
    if parsed.error:
        yield {"path": src.path, "directory": os.path.dirname(src.path), "error": parsed.error}


SCANNER = MachOScanner("macho_info", rows_for)


def signing_summary(path: str) -> tuple[str | None, str | None]:
    """(signature_type, team_id) of a Mach-O file for other tables; (None, None) for anything else.

    Uses the macho_info scanner and its cache, so the signature is parsed once per file version.
    """
    from .base import QueryContext as _Ctx

    kinds: list[str] = []
    teams: list[str] = []
    for row in SCANNER.scan(_Ctx.build({"path": [(2, path)]})):
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

"""macho_info: one row per architecture slice: identity, build, symbols, strings, entropy, signature.

This is the deep read (code signature, __cstring, __TEXT entropy); it reads only the byte ranges
the query's columns need, never the whole file at once: a query for the signing columns reads
headers, load commands and signature blobs, and no __TEXT. Each costly part of a row is computed
when a query first reads one of its columns and cached with the file's rows (COLUMN_PARTS).

`error` reports the problems of the parts the query's columns needed (and any parse error): a
query that does not read text_entropy is not told that __TEXT lies outside the slice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

from ._macho import INFO_SCANNER
from .base import BIGINT, DIRECTORY_KEY, DOUBLE, INTEGER, PATH_KEY, TEXT, Column, QueryContext, Row, Table

if TYPE_CHECKING:  # the parsers (and numpy) load at the first query, not at registration
    from ..extension.wire import RowEncoder


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
        return INFO_SCANNER.scan(ctx)

    def generate_wire(self, ctx: QueryContext, encoder: RowEncoder) -> Iterator[tuple[str, tuple[bytes, ...] | bytes]]:
        """Encoded rows for the extension, reused for unchanged files (see MachOScanner.scan_wire)."""
        return INFO_SCANNER.scan_wire(ctx, encoder)

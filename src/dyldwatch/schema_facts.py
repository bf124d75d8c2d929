"""Which tables and columns exist where: osquery's native facts plus dyldwatch's own tables.

Lint, the sample databases and validate all need one answer to "does `launchd.program` exist on
linux?". Native facts come from `../shared/osquery/schema.json` (or `$DYLDWATCH_SCHEMA`); our
tables come from their declarations when the module imports, else from the column contract in
DESIGN.md below, so packs can be linted while a table module is still being written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PLATFORMS = ("darwin", "linux")

_TYPES = {"text": "TEXT", "integer": "INTEGER", "bigint": "BIGINT", "unsigned_bigint": "BIGINT",
          "double": "DOUBLE", "datetime": "TEXT", "blob": "BLOB"}


@dataclass(frozen=True, slots=True)
class TableFacts:
    """One table as lint and the sample databases see it."""

    name: str
    platforms: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (name, SQLite/osquery type)
    ours: bool = False
    required: tuple[str, ...] = ()

    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns]

    def ddl(self) -> str:
        cols = ", ".join(f'"{c}" {t}' for c, t in self.columns)
        return f'CREATE TABLE IF NOT EXISTS "{self.name}" ({cols});'


_T, _I, _B, _D = "TEXT", "INTEGER", "BIGINT", "DOUBLE"

#: The column contract of our tables (DESIGN.md plus the agreed additions), used when a table
#: module is not importable yet. Queries may rely on exactly these columns.
CONTRACT: dict[str, tuple[tuple[str, str], ...]] = {
    "macho_load_commands": (
        ("path", _T), ("directory", _T), ("arch", _T), ("cmd_index", _I), ("cmd", _T), ("cmd_size", _I),
        ("name", _T), ("compatibility_version", _T), ("current_version", _T), ("weak", _I),
        ("resolved_path", _T), ("resolved_exists", _I), ("error", _T),
    ),
    "macho_info": (
        ("path", _T), ("directory", _T), ("arch", _T), ("filetype", _T), ("flags", _T), ("ncmds", _I),
        ("fat", _I), ("uuid", _T), ("min_os", _T), ("sdk", _T), ("has_symtab", _I), ("nsyms", _I),
        ("nsyms_external", _I), ("strings_count", _I), ("text_entropy", _D), ("encrypted", _I),
        ("signed", _I), ("signature_type", _T), ("signing_id", _T), ("team_id", _T), ("cdhash", _T),
        ("hardened_runtime", _I), ("entitlements", _T), ("platform", _T), ("nsyms_imports", _I),
        ("packer_markers", _T), ("authority", _T), ("cd_flags", _I), ("error", _T),
    ),
    "dylib_provenance": (
        ("path", _T), ("directory", _T), ("exists", _I), ("system_path", _I), ("user_writable", _I),
        ("uid", _I), ("mode", _T), ("size", _B), ("btime", _I), ("mtime", _I), ("ctime", _I),
        ("quarantined", _I), ("quarantine_flags", _T), ("quarantine_agent", _T), ("quarantine_time", _I),
        ("quarantine_event_id", _T), ("where_froms", _T), ("origin_url", _T), ("signature_type", _T),
        ("team_id", _T), ("pid", _I), ("quarantine_user_approved", _I), ("provenance_id", _T),
        ("writable_by", _T), ("referrer_url", _T), ("quarantine_origin_url", _T), ("error", _T),
    ),
    "rwx_regions": (
        ("pid", _I), ("start", _T), ("end", _T), ("size", _B), ("permissions", _T), ("max_permissions", _T),
        ("path", _T), ("anonymous", _I), ("region_type", _T), ("user_tag", _I), ("inode", _B),
        ("offset", _B), ("share_mode", _T), ("user_tag_name", _T), ("reason", _T),
    ),
    "process_images": (
        ("pid", _I), ("path", _T), ("base_address", _T), ("inode", _B), ("device", _T), ("deleted", _I),
    ),
    "applescript_info": (
        ("path", _T), ("directory", _T), ("format", _T), ("version", _T), ("run_only", _I), ("size", _B),
        ("bundle", _T), ("error", _T),
    ),
}
OUR_TABLES = tuple(CONTRACT)
#: Our path-keyed tables: like osquery's `file`, they return rows only for a path or directory constraint.
PATH_KEYED = ("macho_load_commands", "macho_info", "dylib_provenance", "applescript_info")


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def schema_path() -> Path:
    """Where the native facts live: `$DYLDWATCH_SCHEMA`, else `../shared/osquery/schema.json`."""
    env = os.environ.get("DYLDWATCH_SCHEMA")
    return Path(env) if env else project_root().parent / "shared" / "osquery" / "schema.json"


@lru_cache(maxsize=4)
def _native(path: str) -> dict[str, TableFacts]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"osquery schema facts not readable at {path}: {exc} "
                                "(set DYLDWATCH_SCHEMA to the schema.json path)") from exc
    out: dict[str, TableFacts] = {}
    for name, t in doc["tables"].items():
        cols = tuple((c["name"], _TYPES.get(str(c.get("type", "text")).lower(), "TEXT")) for c in t["columns"])
        req = tuple(c["name"] for c in t["columns"] if c.get("required"))
        out[name] = TableFacts(name, tuple(t.get("platforms") or ()), cols, False, req)
    return out


def native_tables() -> dict[str, TableFacts]:
    return _native(str(schema_path()))


def _our(name: str) -> TableFacts:
    try:
        from .tables import load_table

        table = load_table(name)
    except Exception:  # module missing or mid-edit by its owner: the DESIGN.md contract stands in
        req = ("path", "directory") if name in PATH_KEYED else ()
        return TableFacts(name, PLATFORMS, CONTRACT[name], True, req)
    cols = tuple((c.name, str(c.type)) for c in table.columns)
    req = tuple(c.name for c in table.columns if c.required)
    if not req and name in PATH_KEYED:
        req = tuple(c for c in ("path", "directory") if c in dict(cols))
    return TableFacts(name, tuple(table.platforms), cols, True, req)


@lru_cache(maxsize=1)
def our_tables() -> dict[str, TableFacts]:
    return {name: _our(name) for name in OUR_TABLES}


def all_tables() -> dict[str, TableFacts]:
    """Native and ours; ours win on a name clash (none today)."""
    return {**native_tables(), **our_tables()}


def expand_platforms(spec: str | None) -> tuple[str, ...]:
    """osquery pack platform strings (`darwin`, `linux`, `posix`, `all`, comma lists) as our platforms."""
    out: list[str] = []
    for part in (spec or "all").replace(" ", "").split(","):
        if part in ("posix", "all", "any", ""):
            out.extend(PLATFORMS)
        elif part in PLATFORMS:
            out.append(part)
        else:
            raise ValueError(f"unsupported platform {part!r} (darwin, linux, posix)")
    return tuple(dict.fromkeys(out))


def tables_for(platform: str | None) -> dict[str, TableFacts]:
    """Tables that exist on `platform` (all of them for None)."""
    return {n: t for n, t in all_tables().items() if platform is None or platform in t.platforms}


def columns_of(table: str, platform: str | None = None) -> list[str] | None:
    """Column names of `table` on `platform`, or None when it does not exist there."""
    t = tables_for(platform).get(table)
    return t.column_names() if t else None


def ddl_script(platform: str | None = None, only: set[str] | None = None) -> str:
    """`CREATE TABLE IF NOT EXISTS` for every table on `platform` (or just the named ones)."""
    return "\n".join(t.ddl() for n, t in sorted(tables_for(platform).items()) if only is None or n in only)

"""Scenario fixtures -> sample SQLite databases, and validation of every pack against them.

A scenario (`sample_dbs/scenarios/NAME.yaml`) is one host moment: rows for osquery's native
tables (columns exactly as in the schema facts) and for ours. `build` turns it into
`sample_dbs/NAME.db` holding every table (empty when the scenario has no rows for it), so a pack
query prepares and runs there exactly as it would in osquery. `validate` runs every query on every
database of its platform and checks the pack's expectations.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from .. import resources
from ..sql.database import META_TABLE, database_meta, insert_rows, schema_digest, sqlite_value, time_row
from ..sql.facts import PLATFORMS, all_tables, ddl_script, tables_for
from .model import PackError, Problem, load_all
from .yamlloc import Located, YamlError, load_located

SAMPLES_DIR = resources.samples_dir()
SCENARIOS_DIR = resources.scenarios_dir()
_SCENARIO_FIELDS = ("name", "platform", "description", "now", "tables", "fixtures", "generate")
_GENERATE_FIELDS = ("table", "path")
_FIXTURE_FIELDS = ("path", "macho", "absent", "host", "xattrs")

Row = dict[str, Any]


@dataclass(slots=True)
class Scenario:
    name: str
    platform: str
    description: str
    now: int
    tables: dict[str, list[Row]]
    generate: list[dict[str, Any]] = field(default_factory=list)
    fixtures: list[dict[str, Any]] = field(default_factory=list)
    path: str = ""
    digest: str = ""
    located: Located | None = None


# --- loading and linting fixtures ------------------------------------------------------------


#: How osquery shapes native rows, checked on scenario rows: (table, column, platforms, bad(value), why).
#: Each rule names the osquery source it comes from; a scenario that breaks one would prove a pack
#: on rows osquery never produces.
SHAPE_RULES: tuple[tuple[str, str, tuple[str, ...], Callable[[Any], bool], str], ...] = (
    ("process_memory_map", "path", ("linux",), lambda v: isinstance(v, str) and any(c.isspace() for c in v),
     "osquery keeps only the first word of a maps path: no spaces, never ' (deleted)' "
     "(osquery/filesystem/linux/proc.cpp procReadMaps)"),
    ("processes", "path", ("linux",), lambda v: isinstance(v, str) and v.endswith(" (deleted)"),
     "osquery drops ' (deleted)' from a process path and reports on_disk = 0 "
     "(osquery/tables/system/linux/processes.cpp)"),
    ("rwx_regions", "path", ("linux", "darwin"), lambda v: isinstance(v, str) and v.endswith(" (deleted)"),
     "rwx_regions reports the backing file without the ' (deleted)' marker (region_type says deleted)"),
    ("process_images", "path", ("linux", "darwin"), lambda v: isinstance(v, str) and v.endswith(" (deleted)"),
     "process_images reports the file without ' (deleted)' (the deleted column says so)"),
    ("process_open_sockets", "remote_address", ("linux", "darwin"),
     lambda v: isinstance(v, str) and v != "" and not ("." in v or ":" in v),
     "osquery writes socket addresses as IPv4 dotted or IPv6 text (or '' for none)"),
)


def _shape_problems(loc: Located, table: str, i: int, row: dict[str, Any], platform: str) -> list[Problem]:
    out: list[Problem] = []
    for t, col, platforms, bad, why in SHAPE_RULES:
        if t == table and platform in platforms and col in row and bad(row[col]):
            out.append(Problem(loc.file, loc.line(("tables", table, i, col)), f"tables.{table}.{i}.{col}",
                               f"{row[col]!r}: {why}"))
    return out


def lint_scenario_doc(loc: Located) -> list[Problem]:
    """Fields, platform, and every table and column checked against the facts for its platform."""
    f, doc = loc.file, loc.data
    if not isinstance(doc, dict):
        return [Problem(f, 1, "scenario", "a scenario is a mapping")]
    out = [Problem(f, loc.line((k,)), str(k), f"unknown field (known: {', '.join(_SCENARIO_FIELDS)})")
           for k in doc if k not in _SCENARIO_FIELDS]
    for k, t in (("name", str), ("platform", str), ("description", str), ("now", int), ("tables", dict)):
        if k not in doc:
            out.append(Problem(f, 1, k, "missing field"))
        elif not isinstance(doc[k], t) or isinstance(doc[k], bool):
            out.append(Problem(f, loc.line((k,)), k, f"expected {t.__name__}"))
    if out:
        return out
    if doc["name"] != Path(f).stem and Path(f).suffix in (".yaml", ".yml"):
        out.append(Problem(f, loc.line(("name",)), "name", f"must match the file name {Path(f).stem!r}"))
    platform = doc["platform"]
    if platform not in PLATFORMS:
        return out + [Problem(f, loc.line(("platform",)), "platform", f"must be one of {', '.join(PLATFORMS)}")]
    known = tables_for(platform)
    for table, rows in doc["tables"].items():
        where = ("tables", table)
        if table not in known:
            hint = " (exists on another platform)" if table in all_tables() else ""
            out.append(Problem(f, loc.line(where), f"tables.{table}", f"no table {table!r} on {platform}{hint}"))
            continue
        if not isinstance(rows, list):
            out.append(Problem(f, loc.line(where), f"tables.{table}", "expected a list of rows"))
            continue
        columns = set(known[table].column_names())
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                out.append(Problem(f, loc.line((*where, i)), f"tables.{table}.{i}", "a row is a mapping"))
                continue
            out += _shape_problems(loc, table, i, row, platform)
            for col, value in row.items():
                if col not in columns:
                    out.append(Problem(f, loc.line((*where, i, col)), f"tables.{table}.{i}.{col}",
                                       f"{table} has no column {col!r} on {platform}"))
                elif value is not None and not isinstance(value, str | int | float | bool | list | dict):
                    out.append(Problem(f, loc.line((*where, i, col)), f"tables.{table}.{i}.{col}",
                                       f"unsupported value type {type(value).__name__}"))
    for i, g in enumerate(doc.get("generate") or []):
        if not isinstance(g, dict) or set(g) != set(_GENERATE_FIELDS):
            out.append(Problem(f, loc.line(("generate", i)), f"generate.{i}",
                               f"expected exactly {', '.join(_GENERATE_FIELDS)}"))
        elif g["table"] not in known or not known[g["table"]].ours:
            out.append(Problem(f, loc.line(("generate", i)), f"generate.{i}.table",
                               f"{g['table']!r} is not one of dyldwatch's tables"))
        elif g["table"] not in GENERATED_TABLES:
            out.append(Problem(f, loc.line(("generate", i)), f"generate.{i}.table",
                               f"{g['table']} cannot run over fixture files (generated: "
                               f"{', '.join(GENERATED_TABLES)}); keep its rows literal under tables:"))
        else:
            paths = [g["path"]] if isinstance(g["path"], str) else g["path"]
            if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
                out.append(Problem(f, loc.line(("generate", i, "path")), f"generate.{i}.path",
                                   "expected an absolute path or LIKE pattern, or a list of them"))
        if isinstance(g, dict) and g.get("table") in doc["tables"]:
            out.append(Problem(f, loc.line(("generate", i)), f"generate.{i}.table",
                               f"{g['table']} has literal rows too; a table is either generated or literal"))
    for i, fx in enumerate(doc.get("fixtures") or []):
        where = ("fixtures", i)
        if not isinstance(fx, dict) or not isinstance(fx.get("path"), str) or not fx["path"].startswith("/"):
            out.append(Problem(f, loc.line(where), f"fixtures.{i}", "a fixture is a mapping with an absolute path"))
            continue
        out += [Problem(f, loc.line((*where, k)), f"fixtures.{i}.{k}",
                        f"unknown field (known: {', '.join(_FIXTURE_FIELDS)})") for k in fx if k not in _FIXTURE_FIELDS]
        for k in ("macho", "host", "xattrs"):
            if k in fx and not isinstance(fx[k], dict):
                out.append(Problem(f, loc.line((*where, k)), f"fixtures.{i}.{k}", "expected a mapping"))
        for k in (fx.get("host") or {}) if isinstance(fx.get("host"), dict) else ():
            if k not in HOST_FACTS:
                out.append(Problem(f, loc.line((*where, "host", k)), f"fixtures.{i}.host.{k}",
                                   f"unknown host fact (known: {', '.join(HOST_FACTS)})"))
        if isinstance(fx.get("macho"), dict):
            try:
                check_recipe(fx["macho"])
            except ValueError as exc:
                out.append(Problem(f, loc.line((*where, "macho")), f"fixtures.{i}.macho", str(exc)))
    return out


def load_scenario(path: str | Path) -> Scenario:
    """Load and lint one scenario (PackError with FILE:LINE problems when it does not fit the facts)."""
    try:
        loc = load_located(path)
    except YamlError as exc:
        raise PackError([Problem(exc.file, exc.line, "yaml", exc.message)]) from exc
    problems = lint_scenario_doc(loc)
    if problems:
        raise PackError(problems)
    d = loc.data
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    tables = {t: [{k: sqlite_value(v) for k, v in r.items()} for r in rows] for t, rows in d["tables"].items()}
    return Scenario(d["name"], d["platform"], d["description"], d["now"], tables,
                    list(d.get("generate") or []), list(d.get("fixtures") or []), str(path), digest, loc)


def scenario_paths(directory: Path = SCENARIOS_DIR) -> list[Path]:
    return sorted(directory.glob("*.yaml"))


def load_scenarios(directory: Path = SCENARIOS_DIR) -> list[Scenario]:
    return load_all(scenario_paths(directory), load_scenario)


# --- building databases ----------------------------------------------------------------------

#: Turns a scenario's `fixtures:` and `generate:` into rows (table -> rows) by running our real
#: tables over files built from the recipes (fixtures.py); None means "not available".
Generator = Callable[["Scenario"], dict[str, list[Row]]]


GENERATOR: Generator | None = None  # set below to generate_rows
#: Tables that can run over fixture files; process tables cannot (their rows stay literal, recorded).
GENERATED_TABLES = ("macho_info", "macho_load_commands", "dylib_provenance")
#: Facts of the scenario host a fixture declares because a build machine cannot reproduce them.
HOST_FACTS = ("uid", "mode", "btime", "mtime", "ctime", "user_writable", "writable_by", "system_path")


def build(scenario: Scenario | str | Path, out_dir: str | Path = SAMPLES_DIR) -> Path:
    """Write `out_dir/NAME.db` for a scenario (replacing it) and return its path."""
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    out = Path(out_dir) / f"{sc.name}.db"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".db.tmp")
    tmp.unlink(missing_ok=True)
    conn = apsw.Connection(str(tmp))
    try:
        conn.execute("PRAGMA page_size = 512")  # ~300 mostly empty tables: keep committed files small
        with conn:
            conn.execute(ddl_script(None))
            conn.execute(f'CREATE TABLE "{META_TABLE}" (name TEXT, platform TEXT, description TEXT, now INTEGER, '
                         "source TEXT, source_sha256 TEXT, schema_sha256 TEXT)")
            conn.execute(f'INSERT INTO "{META_TABLE}" VALUES (?, ?, ?, ?, ?, ?, ?)',
                         (sc.name, sc.platform, sc.description.strip(), sc.now,
                          f"sample_dbs/scenarios/{sc.name}.yaml", sc.digest, schema_digest()))
            if "time" not in sc.tables:
                insert_rows(conn, "time", [time_row(sc.now)])
            for table, rows in sc.tables.items():
                insert_rows(conn, table, rows)
            if sc.generate:
                if GENERATOR is None:
                    raise RuntimeError(f"{sc.path}: generate entries need the fixture generator, "
                                       "which is not installed in this build")
                for table, rows in GENERATOR(sc).items():
                    insert_rows(conn, table, rows)
    finally:
        conn.close()
    os.replace(tmp, out)
    return out


def build_all(out_dir: str | Path = SAMPLES_DIR, directory: Path = SCENARIOS_DIR) -> list[Path]:
    return [build(sc, out_dir) for sc in load_scenarios(directory)]


def stale(db_dir: Path = SAMPLES_DIR, directory: Path = SCENARIOS_DIR) -> list[str]:
    """Scenario names whose database is missing or was built from another fixture or table schema."""
    out = []
    schema = schema_digest()
    for p in scenario_paths(directory):
        db = db_dir / f"{p.stem}.db"
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        try:
            meta = database_meta(db) if db.exists() else {}
            ok = meta.get("source_sha256") == digest and meta.get("schema_sha256") == schema
        except (ValueError, apsw.Error):
            ok = False
        if not ok:
            out.append(p.stem)
    return out


# --- fixture files from recipes ---------------------------------------------------------------
#
# A fixture is a file on the scenario host, described by a recipe instead of committed bytes:
#
#   fixtures:
#     - path: /Users/alice/Library/Application Support/Foo/libfoo.dylib
#       macho: {filetype: dylib, arch: arm64, dylibs: [/usr/lib/libSystem.B.dylib], symbols: 12,
#               cstrings: 40, signature: {type: certificate, team_id: ABCDE12345, identifier: com.foo}}
#       xattrs: {quarantine: {agent: Safari, time: 1794913600}, where_froms: [https://x/y.zip]}
#       host: {uid: 501, btime: 1794913600, user_writable: 1, writable_by: alice}
#   generate:
#     - {table: macho_info, path: /Users/alice/Library/%%}
#
# The files are written with dyldwatch.formats.macho.writer under a temporary root that mirrors the scenario
# paths; the real tables run there (snapshot.Runner, which resolves install names under the root
# and strips it from every value). `host` holds what a build machine cannot reproduce (owner, birth
# and change times, writability of the host's directories): mode and mtime are applied to the file
# so the table reads them, the others replace the table's values. Columns that depend on the build
# machine and are not declared are NULL, so builds are byte-identical anywhere.

_MACHO_FIELDS = ("filetype", "arch", "archs", "id", "dylibs", "rpaths", "symbols", "cstrings", "segments",
                 "packed", "signature", "min_os", "sdk", "inserted_dylibs")
#: ld64 ends the load commands with these linkedit trailers (then LC_CODE_SIGNATURE); a dylib command
#: after them was added after linking (insert_dylib, optool and LIEF's add_library append there).
_LC_FUNCTION_STARTS, _LC_DATA_IN_CODE = 0x26, 0x29
_FILETYPES = {"execute": 0x2, "dylib": 0x6, "bundle": 0x8}
_ARCHS = {"arm64": (0x0100000C, 0), "arm64e": (0x0100000C, 2), "x86_64": (0x01000007, 3)}
_DYLIB_KINDS = {"load": 0xC, "weak": 0x80000018, "reexport": 0x8000001F, "lazy": 0x20, "upward": 0x80000023}
_SIGNATURES = ("none", "adhoc", "linker-signed", "certificate")
_SIG_FIELDS = ("type", "identifier", "team_id", "hardened_runtime", "entitlements", "authority_org")
#: Columns of dylib_provenance that describe the build machine, not the fixture: NULL unless declared.
_HOST_DEPENDENT = ("uid", "btime", "ctime", "user_writable", "writable_by")


def check_recipe(recipe: dict[str, Any]) -> None:
    """Raise ValueError naming the first field of a Mach-O recipe that the generator cannot build."""
    for k in recipe:
        if k not in _MACHO_FIELDS:
            raise ValueError(f"unknown field {k!r} (known: {', '.join(_MACHO_FIELDS)})")
    if recipe.get("filetype", "execute") not in _FILETYPES:
        raise ValueError(f"filetype must be one of {', '.join(_FILETYPES)}")
    for a in recipe.get("archs") or [recipe.get("arch", "arm64")]:
        if a not in _ARCHS:
            raise ValueError(f"arch {a!r} must be one of {', '.join(_ARCHS)}")
    for d in recipe.get("dylibs") or []:
        kind = d.get("kind", "load") if isinstance(d, dict) else "load"
        if kind not in _DYLIB_KINDS:
            raise ValueError(f"dylib kind {kind!r} must be one of {', '.join(_DYLIB_KINDS)}")
    sig = recipe.get("signature", "none")
    kind = sig.get("type") if isinstance(sig, dict) else sig
    if kind not in _SIGNATURES:
        raise ValueError(f"signature must be one of {', '.join(_SIGNATURES)} (or a mapping with type:)")
    if isinstance(sig, dict):
        bad = [k for k in sig if k not in _SIG_FIELDS]
        if bad:
            raise ValueError(f"unknown signature field {bad[0]!r} (known: {', '.join(_SIG_FIELDS)})")


def _test_helpers() -> tuple[Any, Any]:
    """The Mach-O writer and code-signature writer (dyldwatch.formats.macho), shipped with the package."""
    from ..formats.macho import sigwriter, writer

    return writer, sigwriter


def _stream(seed: str, n: int) -> bytes:
    """n deterministic pseudo-random bytes (packed-looking code) from a seed."""
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def _signature_blob(sw: Any, sig: Any, code: bytes) -> bytes | None:
    kind = sig.get("type") if isinstance(sig, dict) else sig
    if kind == "none":
        return None
    opts = sig if isinstance(sig, dict) else {}
    flags = {"adhoc": 0x2, "linker-signed": 0x20002, "certificate": 0}[kind]
    if opts.get("hardened_runtime"):
        flags |= 0x10000
    team = opts.get("team_id") or None
    cms = None
    if kind == "certificate":
        cms = sw.developer_id_cms(opts.get("authority_org", "Example"), team or "APPLE00000")
    return sw.build_superblob(opts.get("identifier", "a.out"), team_id=team, flags=flags,
                              entitlements=opts.get("entitlements"), cms_blob=cms, code_pages=code[:0x4000])


def build_macho(path: str, recipe: dict[str, Any]) -> bytes:
    """The bytes of a Mach-O file for a recipe (deterministic: the UUID comes from the path)."""
    mw, sw = _test_helpers()
    check_recipe(recipe)
    archs = list(recipe.get("archs") or [recipe.get("arch", "arm64")])
    slices = []
    for arch in archs:
        cputype, sub = _ARCHS[arch]
        ftype = _FILETYPES[recipe.get("filetype", "execute")]
        w = mw.MachOWriter(cputype=cputype, cpusubtype=sub, filetype=ftype,
                           flags=0x00200085 if ftype == 0x2 else 0x00100085)
        n_strings = recipe.get("cstrings", 20)
        strings = n_strings if isinstance(n_strings, list) else [f"message {i:05d}" for i in range(int(n_strings))]
        if recipe.get("packed"):
            w.set_text(b"UPX!" + _stream(path + arch, 0x5000), strings or None)
        else:
            w.set_text(b"\x1f\x20\x03\xd5" * 64, strings or None)
        for seg in recipe.get("segments") or []:
            w.add_segment(seg, _stream(path + seg, 0x1000) if recipe.get("packed") else b"\0" * 16,
                          initprot=5, maxprot=7)
        if ftype == 0x6:
            w.add_dylib(recipe.get("id", path), 0xD)
        else:
            w.add_dylinker()
        w.add_uuid(hashlib.sha256(f"{path}:{arch}".encode()).digest()[:16])
        w.add_build_version(1, recipe.get("min_os", "12.0.0"), recipe.get("sdk", "14.2.0"))
        if ftype == 0x2:
            w.add_main()
        for d in recipe.get("dylibs") or []:
            name, kind = (d, "load") if isinstance(d, str) else (d["name"], d.get("kind", "load"))
            w.add_dylib(name, _DYLIB_KINDS[kind])
        for rp in recipe.get("rpaths") or []:
            w.add_rpath(rp)
        for trailer in (_LC_FUNCTION_STARTS, _LC_DATA_IN_CODE):  # linkedit_data_command, no data
            w.add_command(trailer, b"\0" * 8)
        for name in recipe.get("inserted_dylibs") or []:  # appended after linking, as tampering tools do
            w.add_dylib(name, _DYLIB_KINDS["load"])
        nsyms = recipe.get("symbols", 10)
        if nsyms:
            n = int(nsyms) if not isinstance(nsyms, bool) else 10
            syms = [mw.Sym(f"_local_{i}", 0x0E) for i in range(n // 2)]
            syms += [mw.Sym(f"_export_{i}") for i in range(n - n // 2 - 1)] + [mw.Sym("_printf", 0x01, 0)]
            w.set_symbols(syms)
        blob = _signature_blob(sw, recipe.get("signature", "none"), w.text)
        if blob is not None:
            w.set_code_signature(blob)
        slices.append(w.build())
    return mw.fat(slices) if len(slices) > 1 else slices[0]


def _xattr_values(spec: dict[str, Any]) -> dict[str, bytes]:
    """Raw attribute values for a fixture's `xattrs:` (quarantine, where_froms, origin_url, …)."""
    import plistlib

    from ..formats.provenance import (
        PROVENANCE_XATTR,
        QUARANTINE_XATTR,
        WHERE_FROMS_XATTR,
        XDG_ORIGIN_XATTR,
        XDG_REFERRER_XATTR,
    )

    out: dict[str, bytes] = {}
    if (q := spec.get("quarantine")) is not None:
        q = q if isinstance(q, dict) else {}
        fields = [f"{int(q.get('flags', 0x0083)):04x}", f"{int(q.get('time', 0)):08x}", q.get("agent", ""),
                  q.get("event_id", "")]
        out[QUARANTINE_XATTR] = ";".join(fields).encode()
    if (w := spec.get("where_froms")) is not None:
        out[WHERE_FROMS_XATTR] = plistlib.dumps(list(w), fmt=plistlib.FMT_BINARY)
    if (u := spec.get("origin_url")) is not None:
        out[XDG_ORIGIN_XATTR] = str(u).encode()
    if (u := spec.get("referrer_url")) is not None:
        out[XDG_REFERRER_XATTR] = str(u).encode()
    if (p := spec.get("provenance_id")) is not None:
        out[PROVENANCE_XATTR] = bytes.fromhex(str(p))
    return out


def _declared(table: type[Any], rows: list[Row]) -> list[Row]:
    names = table.column_names()
    return [{c: sqlite_value(r.get(c)) for c in names} for r in rows]


def generate_rows(sc: Scenario) -> dict[str, list[Row]]:
    """Rows of the scenario's `generate:` tables, from its fixtures, as a real run would give them."""
    from ..host.xattrs import XattrValues
    from ..snapshot import Runner
    from ..tables import load_table

    by_path = {fx["path"]: fx for fx in sc.fixtures}
    with tempfile.TemporaryDirectory(prefix="dyldwatch-fixtures-") as tmp:
        root = os.path.realpath(tmp)
        for fx in sc.fixtures:
            if fx.get("absent"):
                os.makedirs(root + os.path.dirname(fx["path"]), exist_ok=True)
                continue
            target = Path(root + fx["path"])
            target.parent.mkdir(parents=True, exist_ok=True)
            data = build_macho(fx["path"], fx["macho"]) if "macho" in fx else b"\0" * 64
            target.write_bytes(data)
            host = fx.get("host") or {}
            os.chmod(target, int(str(host.get("mode", "0755")), 8))
            mtime = int(host.get("mtime", host.get("btime", sc.now)))
            os.utime(target, (mtime, mtime))
        xattrs = {root + p: _xattr_values(fx.get("xattrs") or {}) for p, fx in by_path.items()}

        def read_xattrs(path: str, names: Any) -> XattrValues:
            wanted = set(names)
            return XattrValues({k: v for k, v in xattrs.get(path, {}).items() if k in wanted})

        runner = Runner(root, sc.platform, read_xattrs=read_xattrs)
        out: dict[str, list[Row]] = {}
        for g in sc.generate:
            paths = [g["path"]] if isinstance(g["path"], str) else list(g["path"])
            rows = list(runner.rows(g["table"], paths))
            if g["table"] == "dylib_provenance":
                for row in rows:
                    host = (by_path.get(row["path"]) or {}).get("host") or {}
                    row.update({k: None for k in _HOST_DEPENDENT})
                    row.update({k: sqlite_value(v) for k, v in host.items() if k != "mode"})
            out.setdefault(g["table"], []).extend(_declared(load_table(g["table"]), rows))
    return out


GENERATOR = generate_rows

"""One contract over all six tables: raw generate() rows against each table's declaration.

Nothing downstream catches a misspelt column key (the adapter and the SQL session drop unknown
keys; osquery shows NULL), so every table runs here on real inputs — a writer-built signed Mach-O,
a compiled script, a garbage file, a missing path, and this process with one RWX mapping — and
each raw row must use only declared columns with values of the declared type.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dyldwatch.formats.macho import writer as mw
from dyldwatch.tables import TABLES, load_table
from dyldwatch.tables.base import BIGINT, DOUBLE, INTEGER, TEXT, Op, QueryContext
from test_applescript import tiny_script

PY_TYPES = {TEXT: (str,), INTEGER: (int,), BIGINT: (int,), DOUBLE: (float, int)}
FILE_TABLES = {"macho_info", "macho_load_commands", "dylib_provenance", "applescript_info"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("contract")
    w = mw.sample_executable()
    try:
        from dyldwatch.formats.macho import sigwriter

        w.set_code_signature(sigwriter.build_superblob("com.example.contract", team_id="TEAM123456", flags=0x10000,
                                                       entitlements={"com.apple.security.cs.allow-jit": True}))
    except ImportError:  # asn1crypto missing: an unsigned binary still exercises every other column
        pass
    (d / "tool").write_bytes(w.build())
    (d / "fat").write_bytes(mw.fat([mw.sample_executable().build(),
                                    mw.sample_executable(is64=False, cputype=mw.C.CPU_TYPE_X86).build()]))
    (d / "script.scpt").write_bytes(tiny_script(statements=True, tag=True))
    (d / "garbage").write_bytes(b"\xcf\xfa\xed\xfe" + b"\xff" * 60)
    (d / "empty").write_bytes(b"")
    rwx = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    rwx.write(b"\xc3" * 16)
    yield {"dir": str(d), "missing": str(d / "missing.dylib"), "pid": str(os.getpid())}
    rwx.close()


def _context(name: str, inputs: dict[str, Any]) -> QueryContext:
    if name in FILE_TABLES:
        return QueryContext.build({"path": [(Op.LIKE, inputs["dir"] + "/%"), (Op.EQUALS, inputs["missing"])]})
    return QueryContext.build({"pid": [(Op.EQUALS, inputs["pid"])]})


@pytest.mark.parametrize("name", sorted(TABLES))
def test_raw_rows_match_the_declaration(name: str, inputs: dict[str, Any]) -> None:
    table = load_table(name)()
    declared = {c.name: c.type for c in table.columns}
    rows = list(table.generate(_context(name, inputs)))
    assert rows, f"{name}: no rows from the contract inputs"
    for row in rows:
        unknown = set(row) - set(declared)
        assert not unknown, f"{name}: undeclared column(s) {sorted(unknown)} in {row}"
        for key, value in row.items():
            if value is None or key[:1] == "_":
                continue
            ok = PY_TYPES[declared[key]]
            assert isinstance(value, ok) and not isinstance(value, bool), \
                f"{name}.{key} is {declared[key]} but the row holds {type(value).__name__} {value!r}"
    if name in FILE_TABLES:
        assert "error" in declared, f"{name}: a file-reading table declares an error column"
        assert any(r.get("error") for r in rows), f"{name}: the garbage/missing inputs yield an error row"


def test_no_private_keys_leave_a_table(inputs: dict[str, Any]) -> None:
    for name in sorted(TABLES):
        for row in load_table(name)().generate(_context(name, inputs)):
            assert not [k for k in row if k[:1] == "_"], f"{name}: private keys in {sorted(row)}"


def test_the_six_tables_are_covered() -> None:
    assert set(TABLES) == {"macho_info", "macho_load_commands", "dylib_provenance", "rwx_regions",
                           "process_images", "applescript_info"}


def test_library_never_loads_files_from_tests() -> None:
    src = Path(__file__).resolve().parents[1] / "src" / "dyldwatch"
    offenders = [p for p in src.rglob("*.py") if "spec_from_file_location" in p.read_text()]
    assert offenders == []

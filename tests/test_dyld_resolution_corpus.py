"""dyld's view of real corpus dylibs, changed the way each case needs (LIEF or a byte patch).

libxcb links `@loader_path/libXau.6.dylib`; the tests rewrite that name to `@rpath/...` and add
the LC_RPATH under test, then ask macho_load_commands where dyld would find it.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from dyldwatch.formats.macho import constants as C
from dyldwatch.formats.macho import read_load_commands, read_slices
from dyldwatch.host.files import FileSource
from dyldwatch.tables._macho import PARSE_CACHE
from dyldwatch.tables.base import QueryContext
from dyldwatch.tables.macho_load_commands import SCANNER, MachoLoadCommandsTable

from .corpus_files import copy_to, corpus_file

lief = pytest.importorskip("lief")
lief.logging.disable()
pytestmark = pytest.mark.corpus

XCB = "47dcd925ac4e8c54_libxcb.1.1.0.dylib"  # x86_64, links @loader_path/libXau.6.dylib
XAU = "eebb0f30bde551ed_libXau.6.dylib"


def _rows(path: Path | str) -> list[dict[str, Any]]:
    SCANNER.clear()
    PARSE_CACHE.clear()
    return list(MachoLoadCommandsTable().generate(QueryContext.build({"path": [(2, str(path))]})))


def _dep(rows: list[dict[str, Any]], leaf: str) -> dict[str, Any]:
    return next(r for r in rows if r["cmd"].startswith("LC_LOAD") and (r["name"] or "").endswith(leaf))


def _retarget(src: Path, out: Path, *, name: str, rpaths: list[str] = (), sdk: list[int] | None = None) -> Path:
    """Copy of `src` whose libXau dependency is renamed to `name`, with `rpaths` added."""
    fat = lief.MachO.parse(str(src))
    b = fat.at(0)
    for lib in b.libraries:
        if lib.name.endswith("libXau.6.dylib"):
            lib.name = name
    for rp in rpaths:
        b.add(lief.MachO.RPathCommand.create(rp))
    if sdk is not None:
        (b.build_version if b.has_build_version else b.version_min).sdk = sdk
    out.parent.mkdir(parents=True, exist_ok=True)
    b.write(str(out))
    return out


@pytest.fixture
def xcb(corpus_dir: Path) -> Path:
    return corpus_file(corpus_dir, XCB, prefer="47dcd925")


@pytest.fixture
def xau(corpus_dir: Path) -> Path:
    return corpus_file(corpus_dir, XAU, prefer="eebb0f30")


@pytest.mark.parametrize("rpath", ["@loader_path", "@loader_path/", "@executable_path"])
def test_bare_anchor_rpath_resolves(xcb: Path, xau: Path, tmp_path: Path, rpath: str) -> None:
    lib = _retarget(xcb, tmp_path / "lib" / "libxcb.1.1.0.dylib", name="@rpath/libXau.6.dylib", rpaths=[rpath])
    copy_to(xau, tmp_path / "lib" / "libXau.6.dylib")
    parsed = lief.MachO.parse(str(lib))  # kept alive: LIEF's slices point into it
    assert [r.path for r in parsed.at(0).rpaths] == [rpath]  # the oracle agrees on the input
    row = _dep(_rows(lib), "libXau.6.dylib")
    assert row["resolved_path"] == str(tmp_path / "lib" / "libXau.6.dylib")
    assert row["resolved_exists"] == 1
    assert row["rpath_source"] == str(lib)


def test_token_must_end_or_be_followed_by_slash(xcb: Path, xau: Path, tmp_path: Path) -> None:
    lib = _retarget(xcb, tmp_path / "lib" / "libxcb.dylib", name="@rpath/libXau.6.dylib",
                    rpaths=["@loader_pathX"])
    copy_to(xau, tmp_path / "lib" / "libXau.6.dylib")
    row = _dep(_rows(lib), "libXau.6.dylib")
    assert row["resolved_exists"] == 0 and row["resolved_path"] is None


def test_rpath_stack_reaches_the_bundle_main_executable(corpus_dir: Path, xcb: Path, xau: Path,
                                                        tmp_path: Path) -> None:
    """A framework without LC_RPATH finds its @rpath dependency through the app's main executable."""
    app = tmp_path / "Viewer.app" / "Contents"
    (app).mkdir(parents=True)
    import plistlib

    (app / "Info.plist").write_bytes(plistlib.dumps({"CFBundleExecutable": "viewer-bin"}))
    ninja = corpus_file(corpus_dir, "_ninja")
    fat = lief.MachO.parse(str(ninja))
    for i in range(fat.size):
        fat.at(i).add(lief.MachO.RPathCommand.create("@executable_path/../Frameworks"))
    (app / "MacOS").mkdir()
    fat.write(str(app / "MacOS" / "viewer-bin"))
    lib = _retarget(xcb, app / "Frameworks" / "libxcb.1.1.0.dylib", name="@rpath/libXau.6.dylib")
    copy_to(xau, app / "Frameworks" / "libXau.6.dylib")
    row = _dep(_rows(lib), "libXau.6.dylib")
    assert row["resolved_path"] == str(app / "Frameworks" / "libXau.6.dylib")
    assert row["resolved_exists"] == 1
    assert row["rpath_source"] == str(app / "MacOS" / "viewer-bin")
    tried = json.loads(row["search_paths"])
    assert tried[0]["source"] == str(app / "MacOS" / "viewer-bin")


def test_relative_rpath_is_a_planting_vector(xcb: Path, tmp_path: Path) -> None:
    lib = _retarget(xcb, tmp_path / "libxcb.dylib", name="@rpath/libXau.6.dylib", rpaths=["vendor/lib"])
    row = _dep(_rows(lib), "libXau.6.dylib")
    assert row["resolved_exists"] == 0
    assert "working directory" in row["planting_vector"] and "vendor/lib/libXau.6.dylib" in row["planting_vector"]
    assert json.loads(row["search_paths"])[0]["via"] == "relative_rpath"


def test_pre_2022_sdk_missing_dylib_names_the_fallback_dirs(xcb: Path, tmp_path: Path) -> None:
    old = _retarget(xcb, tmp_path / "old" / "libxcb.dylib", name="/opt/gone/libXau.6.dylib", sdk=[13, 3, 0])
    new = _retarget(xcb, tmp_path / "new" / "libxcb.dylib", name="/opt/gone/libXau.6.dylib", sdk=[14, 0, 0])
    old_row, new_row = _dep(_rows(old), "libXau.6.dylib"), _dep(_rows(new), "libXau.6.dylib")
    assert "/usr/local/lib/libXau.6.dylib" in old_row["planting_vector"]
    assert [c["via"] for c in json.loads(old_row["search_paths"])] == ["absolute", "fallback", "fallback"]
    assert old_row["resolved_path"] == "/opt/gone/libXau.6.dylib"
    assert new_row["planting_vector"] is None


def test_dotdot_is_applied_after_symlinks(xcb: Path, xau: Path, tmp_path: Path) -> None:
    """@loader_path/../x from a symlinked directory lands where the kernel goes, not the lexical parent."""
    real = tmp_path / "opt" / "pkg" / "lib"
    lib = _retarget(xcb, real / "libxcb.dylib", name="@loader_path/../share/libXau.6.dylib")
    copy_to(xau, tmp_path / "opt" / "pkg" / "share" / "libXau.6.dylib")
    (tmp_path / "links").mkdir()
    os.symlink(real, tmp_path / "links" / "lib")
    row = _dep(_rows(tmp_path / "links" / "lib" / "libxcb.dylib"), "libXau.6.dylib")
    assert row["resolved_path"] == str(tmp_path / "opt" / "pkg" / "share" / "libXau.6.dylib")
    assert row["resolved_exists"] == 1
    assert lib.exists()


def _as_dylib_use(path: Path, leaf: str, flags: int) -> tuple[int, str]:
    """Rewrite the LC_LOAD_DYLIB naming `leaf` in place as a dylib_use_command; (offset, name)."""
    data = bytearray(path.read_bytes())
    with FileSource(str(path)) as src:
        sl = read_load_commands(src, read_slices(src)[0])
    cmd = next(c for c in sl.commands if c.cmd == C.LC_LOAD_DYLIB and c.name and c.name.endswith(leaf))
    name = cmd.name.encode()
    assert len(name) + 1 <= cmd.cmd_size - 28, "no room for the longer header"
    off = cmd.offset
    current = struct.unpack_from("<I", data, off + 16)[0]
    body = struct.pack("<5I", 28, C.DYLIB_USE_MARKER, current, 0x10000, flags) + name
    data[off + 8 : off + cmd.cmd_size] = body.ljust(cmd.cmd_size - 8, b"\0")
    path.write_bytes(bytes(data))
    return off, cmd.name


def test_dylib_use_command_flags_not_a_timestamp(xcb: Path, tmp_path: Path) -> None:
    lib = copy_to(xcb, tmp_path / "libxcb.dylib")
    _off, name = _as_dylib_use(lib, "libSystem.B.dylib", 0x1 | 0x8)
    row = _dep(_rows(lib), "libSystem.B.dylib")
    assert row["name"] == name == "/usr/lib/libSystem.B.dylib"
    assert row["cmd"] == "LC_LOAD_DYLIB" and row["weak"] == 1
    assert row["link_flags"] == "WEAK_LINK|DELAYED_INIT"
    rows = list(MachoLoadCommandsTable().generate(QueryContext.build({"path": [(2, str(lib))]},
                                                                    cols_used=("details", "name", "cmd"))))
    details = json.loads(_dep(rows, "libSystem.B.dylib")["details"])
    assert "timestamp" not in details and details["flags"] == 9 and details["marker"] == C.DYLIB_USE_MARKER


def test_classic_dylib_commands_keep_their_timestamp(xcb: Path) -> None:
    row = _dep(_rows(xcb), "libSystem.B.dylib")
    assert row["weak"] == 0 and row["link_flags"] == ""


def test_implicit_pagezero_flag_is_named(xcb: Path, tmp_path: Path) -> None:
    lib = copy_to(xcb, tmp_path / "libxcb.dylib")
    data = bytearray(lib.read_bytes())
    (flags,) = struct.unpack_from("<I", data, 24)
    struct.pack_into("<I", data, 24, flags | 0x10000000)
    lib.write_bytes(bytes(data))
    with FileSource(str(lib)) as src:
        header = read_load_commands(src, read_slices(src)[0]).header
    assert "IMPLICIT_PAGEZERO" in header.flag_names and not any(n.startswith("0x") for n in header.flag_names)

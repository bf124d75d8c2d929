"""Mach-O tables against baselines measured in the same run, over the real corpus.

- macho_load_commands vs a bare floor (header + load-command walk with struct) and vs LIEF's parse
- macho_info vs SHA-256 of the same files
- a repeated query over unchanged files vs the first (the cache)
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(__file__))

from common import best_of, corpus_files, report  # noqa: E402
from dyldwatch.tables import _macho, macho_info, macho_load_commands  # noqa: E402
from dyldwatch.tables._macho import PARSE_CACHE  # noqa: E402
from dyldwatch.tables.base import Op, QueryContext  # noqa: E402

_THIN = {b"\xcf\xfa\xed\xfe": ("<", 32), b"\xce\xfa\xed\xfe": ("<", 28), b"\xfe\xed\xfa\xcf": (">", 32),
         b"\xfe\xed\xfa\xce": (">", 28)}


def floor_walk(files: list[str]) -> int:
    """The least any load-command reader must do: read headers and step through every command."""
    total = 0
    for path in files:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if head[:4] in (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"):
                n = struct.unpack(">I", head[4:8])[0]
                is64 = head[3] == 0xBF
                esz = 32 if is64 else 20
                table = fh.read(esz * n)
                offsets = [struct.unpack_from(">Q" if is64 else ">I", table, i * esz + 8)[0] for i in range(n)]
            else:
                offsets = [0]
            for off in offsets:
                fh.seek(off)
                hdr = fh.read(32)
                endian, hsize = _THIN[hdr[:4]]
                ncmds, sizeofcmds = struct.unpack_from(endian + "2I", hdr, 16)
                fh.seek(off + hsize)
                cmds = fh.read(sizeofcmds)
                pos = 0
                for _ in range(ncmds):
                    _, size = struct.unpack_from(endian + "2I", cmds, pos)
                    pos += size
                    total += 1
    return total


#: The columns a detection query such as AN0607 reads (osquery passes colsUsed to the extension).
TYPICAL = ["path", "arch", "cmd", "name", "weak", "resolved_path", "resolved_exists", "in_shared_cache"]


def table_rows(table: object, files: list[str], cols: list[str] | None = None) -> int:
    ctx = QueryContext.build({"path": [(Op.EQUALS, p) for p in files]}, cols)
    return sum(1 for _ in table.generate(ctx))  # type: ignore[attr-defined]


def clear() -> None:
    macho_load_commands.SCANNER.clear()
    _macho.INFO_SCANNER.clear()
    PARSE_CACHE.clear()


def sha256_all(files: list[str]) -> None:
    for path in files:
        with open(path, "rb") as fh:
            hashlib.file_digest(fh, "sha256")


def main() -> None:
    import lief

    lief.logging.disable()
    files = corpus_files()
    n = len(files)
    size = sum(os.path.getsize(f) for f in files)
    print(f"Mach-O tables over the corpus: {n} files, {size / 1e6:.1f} MB, warm page cache")
    sha256_all(files)  # warm the page cache

    lc = macho_load_commands.MachoLoadCommandsTable()
    info = macho_info.MachoInfoTable()
    t_floor = best_of(lambda: floor_walk(files), 7)
    t_lc = best_of(lambda: table_rows(lc, files), 7, setup=clear)
    t_lc_typical = best_of(lambda: table_rows(lc, files, TYPICAL), 7, setup=clear)
    t_lief = best_of(lambda: [lief.MachO.parse(f) for f in files], 2)
    t_sha = best_of(lambda: sha256_all(files), 5)
    t_info = best_of(lambda: table_rows(info, files), 3, setup=clear)
    clear()
    t_first = best_of(lambda: (table_rows(lc, files), table_rows(info, files)), 1)
    t_again = best_of(lambda: (table_rows(lc, files), table_rows(info, files)), 5)

    report("floor: header + load-command walk, per file", t_floor / n * 1e6, "us")
    report("macho_load_commands, per file (cold cache)", t_lc / n * 1e6, "us")
    report("macho_load_commands, detection columns only, per file", t_lc_typical / n * 1e6, "us")
    report("lief.MachO.parse, per file", t_lief / n * 1e6, "us")
    report("macho_load_commands vs floor", t_lc / t_floor, "x slower", "<= 10x", t_lc / t_floor <= 10)
    report("macho_load_commands (detection columns) vs floor", t_lc_typical / t_floor, "x slower", "<= 10x",
           t_lc_typical / t_floor <= 10)
    report("macho_load_commands vs LIEF parse", t_lief / t_lc, "x faster", ">= 50x", t_lief / t_lc >= 50)
    report("sha256 of the corpus", t_sha * 1e3, "ms")
    report("macho_info over the corpus (cold cache)", t_info * 1e3, "ms")
    report("macho_info vs sha256", t_info / t_sha, "x", "<= 3x", t_info / t_sha <= 3)
    report("both tables, first query", t_first * 1e3, "ms")
    report("both tables, repeated query (cache)", t_again * 1e3, "ms")
    report("repeated vs first", t_first / t_again, "x faster", ">= 20x", t_first / t_again >= 20)


if __name__ == "__main__":
    main()

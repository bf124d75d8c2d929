"""The Mach-O tables at scale, measured the way osqueryd calls them: through the extension's socket.

Every figure is a call to the real extension process (imports warm, table cache cold unless the
line says repeated, colsUsed sent as osqueryd sends it), compared with a baseline measured in the
same run on this machine:

- macho_load_commands over the corpus vs LIEF's default parse of the same files (in this process)
- the same query repeated over unchanged files vs the first
- macho_info asked for the signing columns over a generated tree of app bundles vs the floor of
  reading each file's header, load commands and signature blob
- growth: per-file cost and peak RSS of both tables over trees of increasing size (must stay flat)
- the full macho_info row (AN0057's columns) over the largest tree, against osquery's 300 s timeout

Usage: bench/bench_scale.py [BUNDLES ...]   (tree sizes in app bundles; default 50 100 200 400)
The trees are hard links under $DYLDWATCH_BENCH_TREES (default ~/.cache/dyldwatch-bench-trees).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from common import best_of, corpus_files, report  # noqa: E402
from extproc import Call, eq, extension, like  # noqa: E402
from scale_tree import floor_signing, make_tree, tree_files  # noqa: E402

#: Columns a detection query reads from macho_load_commands (AN0607's lc.* and the join keys).
LC_COLS = ["path", "arch", "cmd", "cmd_index", "name", "weak", "resolved_path", "resolved_exists"]
#: The signing columns (AN0607's tampered/signed_kin reads of macho_info).
SIGNING_COLS = ["path", "arch", "signature_type", "team_id"]
#: AN0057's packed-Mach-O query reads these (entropy, strings, symbols, packer markers, signing).
AN0057_COLS = ["path", "arch", "filetype", "has_symtab", "nsyms", "strings_count", "text_entropy",
               "packer_markers", "signature_type", "team_id", "error"]
OSQUERY_TIMEOUT = 300.0
RSS_LIMIT = 100.0  # MB: osquery's watchdog at its restrictive level


def trees_root() -> Path:
    return Path(os.environ.get("DYLDWATCH_BENCH_TREES") or Path.home() / ".cache" / "dyldwatch-bench-trees")


def warm(ext, scratch: str) -> None:
    """Load every parser in the extension on a file outside the measured sets (cold cache stays cold)."""
    for table in ("macho_load_commands", "macho_info", "dylib_provenance"):
        call = ext.generate(table, [eq("path", scratch)], None)
        assert call.status == 0, call.message


def line(name: str, call: Call, files: int) -> None:
    cut = " (CUT: answer cap or budget reached)" if call.cut else ""
    report(f"{name}: {call.rows} rows, {files} files{cut}", call.seconds, "s")
    report("  per file", call.seconds / files * 1e6, "us/file")
    report("  rows/s through the socket", call.rows / call.seconds, "rows/s")
    report("  peak RSS", call.peak_mb, "MB", f"< {RSS_LIMIT:g} MB", call.peak_mb < RSS_LIMIT)


def corpus_part(files: list[str], scratch: str) -> None:
    import lief

    lief.logging.disable()
    directory = os.path.dirname(files[0])
    t_lief = best_of(lambda: [lief.MachO.parse(f) for f in files], 2)
    with extension() as ext:
        warm(ext, scratch)
        first = ext.generate("macho_load_commands", [eq("directory", directory)], LC_COLS)
        again = min((ext.generate("macho_load_commands", [eq("directory", directory)], LC_COLS) for _ in range(5)),
                    key=lambda c: c.seconds)
    with extension() as ext:
        warm(ext, scratch)
        full = ext.generate("macho_load_commands", [eq("directory", directory)], None)
    print(f"Corpus: {len(files)} files; LIEF default parse {t_lief * 1e3:.1f} ms")
    line("macho_load_commands, detection columns, cold", first, len(files))
    report("  vs LIEF parse", t_lief / first.seconds, "x faster", ">= 50x", t_lief / first.seconds >= 50)
    line("macho_load_commands, every column, cold", full, len(files))
    report("  vs LIEF parse", t_lief / full.seconds, "x faster")
    line("macho_load_commands, detection columns, repeated", again, len(files))
    report("  repeated vs first", first.seconds / again.seconds, "x faster", ">= 10x",
           first.seconds / again.seconds >= 10)


def tree_part(corpus: list[str], sizes: list[int], scratch: str) -> None:
    base = trees_root()
    largest = max(sizes)
    per_file: list[tuple[int, float, float, float]] = []
    for bundles in sizes:
        root = base / f"tree{bundles}"
        t = time.perf_counter()
        nfiles = make_tree(root, corpus, bundles)
        build = time.perf_counter() - t
        pattern = f"{root}/%%"
        paths = tree_files(root)
        floor_signing(paths)  # warm the page cache (the corpus's data blocks are shared by every link)
        t_floor = best_of(lambda paths=paths: floor_signing(paths), 2)
        with extension() as ext:
            warm(ext, scratch)
            sig = ext.generate("macho_info", [like("path", pattern)], SIGNING_COLS)
            sig_again = ext.generate("macho_info", [like("path", pattern)], SIGNING_COLS)
        with extension() as ext:
            warm(ext, scratch)
            lc = ext.generate("macho_load_commands", [like("path", pattern)], LC_COLS)
        print(f"\nTree of {bundles} app bundles: {nfiles} Mach-O files (built in {build:.1f}s); "
              f"signing floor {t_floor:.2f}s ({t_floor / nfiles * 1e6:.0f} us/file)")
        for call in (sig, sig_again, lc):
            assert call.status == 0, call.message
        line("macho_info signing columns, cold", sig, nfiles)
        report("  vs floor (header, load commands, signature blob)", sig.seconds / t_floor, "x", "<= 20x",
               sig.seconds / t_floor <= 20)
        report("  CPU seconds in the extension", sig.cpu, "s")
        line("macho_info signing columns, repeated", sig_again, nfiles)
        report("  repeated vs first", sig.seconds / sig_again.seconds, "x faster")
        line("macho_load_commands detection columns, cold", lc, nfiles)
        per_file.append((nfiles, sig.seconds / nfiles, lc.seconds / nfiles, max(sig.peak_mb, lc.peak_mb)))
        if bundles == largest:
            with extension() as ext:
                warm(ext, scratch)
                heavy = ext.generate("macho_info", [like("path", pattern)], AN0057_COLS)
            assert heavy.status == 0, heavy.message
            line("macho_info AN0057 columns (entropy, strings, symbols), cold", heavy, nfiles)
            report("  share of osquery's 300 s call timeout", heavy.seconds / OSQUERY_TIMEOUT * 100, "%",
                   "< 33%", heavy.seconds < OSQUERY_TIMEOUT / 3)
    if len(per_file) > 1:
        print("\nGrowth (per-file cost should stay flat as the tree grows):")
        small, big = per_file[0], per_file[-1]
        for n, s, lc_s, peak in per_file:
            report(f"{n} files: macho_info / macho_load_commands per file, peak", s * 1e6, "us/file")
            report(f"{n} files: macho_load_commands per file", lc_s * 1e6, "us/file")
            report(f"{n} files: peak RSS of either scan", peak, "MB", f"< {RSS_LIMIT:g} MB", peak < RSS_LIMIT)
        growth = big[1] / small[1]
        report(f"per-file cost, {big[0]} vs {small[0]} files", growth, "x", "<= 1.5x (linear)", growth <= 1.5)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [50, 100, 200, 400]
    corpus = corpus_files()
    scratch_dir = trees_root() / "scratch"
    scratch_dir.mkdir(parents=True, exist_ok=True)
    scratch = str(scratch_dir / "warm")
    if not os.path.exists(scratch):
        os.link(corpus[0], scratch)
    corpus_part(corpus, scratch)
    tree_part(corpus, sizes, scratch)


if __name__ == "__main__":
    main()

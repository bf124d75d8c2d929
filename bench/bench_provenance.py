"""dylib_provenance over every image of every process on this machine, against a plain os.stat loop.

The baseline is measured in the same run over the same (pid, path) list, so the ratio says what
the table costs on top of the one stat any file-metadata query must pay. Runs reported:

- cold: a fresh table (empty caches), every column including the Mach-O signing summary;
- warm: the same table again (per-file facts cached; parents, stat, quarantine still live);
- no-signing: a fresh table, query not using signature_type/team_id (colsUsed), as packs do
  when they only ask about writability and origin;
- end to end: `generate` with a pid IN (...) constraint, including reading every /proc/PID/maps.

    /tmp/venv/bin/python bench/bench_provenance.py [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Callable

from dyldwatch.tables.base import Op, QueryContext
from dyldwatch.tables.dylib_provenance import DylibProvenanceTable, process_images


def clear_shared_caches() -> None:
    """Empty the Mach-O tables' caches too, so 'cold' includes the signing summary's parse."""
    try:
        from dyldwatch.tables import _macho as machofiles

        machofiles.INFO_SCANNER.cache.clear()
        machofiles.PARSE_CACHE.clear()
    except Exception:  # the Mach-O layer may not import yet; signing then costs nothing
        pass


def all_images() -> list[tuple[int, str]]:
    from dyldwatch.host.processes import process_reader

    out: list[tuple[int, str]] = []
    for pid in process_reader().pids():
        out.extend((pid, img.path) for img in process_images(pid))
    return out


def best_of(repeat: int, fn: Callable[[], int]) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - started)
    return best, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement; the best is reported")
    args = ap.parse_args()

    images = all_images()
    pids = sorted({pid for pid, _ in images})
    unique = len({path for _, path in images})
    print(f"{len(pids)} processes, {len(images)} mapped images ({unique} distinct files)")

    def stat_loop() -> int:
        n = 0
        for _, path in images:
            with contextlib.suppress(OSError):
                os.stat(path)
            n += 1
        return n

    def table_rows(table: DylibProvenanceTable, want_signing: bool) -> int:
        memo: dict = {}
        real_memo: dict[str, str] = {}
        for pid, path in images:
            table.row(path, pid=pid, want_signing=want_signing, memo=memo, real_memo=real_memo)
        return len(images)

    def cold(want_signing: bool) -> Callable[[], int]:
        def run() -> int:
            clear_shared_caches()
            return table_rows(DylibProvenanceTable(), want_signing)

        return run

    warm_table = DylibProvenanceTable()
    table_rows(warm_table, True)

    def end_to_end() -> int:
        ctx = QueryContext.build({"pid": [(Op.EQUALS, str(p)) for p in pids]})
        return sum(1 for _ in DylibProvenanceTable().generate(ctx))

    base_s, n = best_of(args.repeat, stat_loop)
    base_us = base_s / max(n, 1) * 1e6
    print(f"{'os.stat loop':<28} {n / base_s:>12,.0f} files/s {base_us:>9.2f} us/file   1.0x")
    for label, fn in (
        ("dylib_provenance cold", cold(True)),
        ("dylib_provenance warm", lambda: table_rows(warm_table, True)),
        ("dylib_provenance no-signing", cold(False)),
        ("generate(pid IN all) e2e", end_to_end),
    ):
        secs, count = best_of(args.repeat, fn)
        us = secs / max(count, 1) * 1e6
        print(f"{label:<28} {count / secs:>12,.0f} files/s {us:>9.2f} us/file {us / base_us:>6.1f}x")


if __name__ == "__main__":
    main()

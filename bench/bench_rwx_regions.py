"""Benchmark: rwx_regions over every process against the floor of just reading every /proc/*/maps.

The floor (open, read, close each maps file, no parsing) is measured in the same run, so the ratio
is meaningful on any machine. Target: the full table within 3x of the floor. Then a `pid =` query
is shown to open exactly one maps file and to cost about one process's read.

    /tmp/venv/bin/python bench/bench_rwx_regions.py [--rounds 15] [--spawn 50]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable

from dyldwatch.host.linux_proc import LinuxProcessReader, ProcFS
from dyldwatch.tables.base import Op, QueryContext
from dyldwatch.tables.rwx_regions import RwxRegionsTable

TARGET_RATIO = 3.0


class CountingProcFS(ProcFS):
    """ProcFS that records which pids' maps were opened."""

    __slots__ = ("opened",)

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[int] = []

    def open_maps(self, pid: int) -> int:
        self.opened.append(pid)
        return super().open_maps(pid)


def read_all_maps() -> int:
    """The floor: every /proc/PID/maps read in full, nothing parsed. Returns bytes read."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/maps", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            while chunk := os.read(fd, 1 << 20):
                total += len(chunk)
        except OSError:
            pass
        finally:
            os.close(fd)
    return total


def best_of(rounds: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15, help="best of this many runs per measurement")
    ap.add_argument("--spawn", type=int, default=0, help="start this many extra python processes first")
    args = ap.parse_args()
    if not sys.platform.startswith("linux"):
        print("this benchmark reads /proc (Linux only)")
        return 0

    extra = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(args.spawn)]
    try:
        time.sleep(0.3 if extra else 0)
        table = RwxRegionsTable()
        everything = QueryContext.build()
        nprocs = sum(1 for n in os.listdir("/proc") if n.isdigit())
        nbytes = read_all_maps()
        rows = len(list(table.generate(everything)))

        floor = best_of(args.rounds, read_all_maps)
        full = best_of(args.rounds, lambda: list(table.generate(everything)))
        ratio = full / floor
        print(f"processes: {nprocs}   maps bytes: {nbytes:,}   rwx_regions rows: {rows}")
        print(f"floor (read every /proc/*/maps):   {floor * 1e3:8.2f} ms")
        print(f"rwx_regions, all processes:        {full * 1e3:8.2f} ms")
        print(f"ratio: {ratio:.2f}x  (target <= {TARGET_RATIO:.0f}x)  {'OK' if ratio <= TARGET_RATIO else 'OVER'}")

        pid = os.getpid()
        counting = CountingProcFS()
        one = QueryContext.build({"pid": [(Op.EQUALS, pid)]})
        list(RwxRegionsTable(LinuxProcessReader(counting)).generate(one))
        single = best_of(args.rounds, lambda: list(table.generate(one)))
        print(f"pid = {pid}: maps files opened {counting.opened} ({len(counting.opened)} of {nprocs}); "
              f"{single * 1e3:.3f} ms, {full / single:.0f}x faster than all")  # fmt: skip
        ok = ratio <= TARGET_RATIO and counting.opened == [pid]
    finally:
        for p in extra:
            p.kill()
            p.wait()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

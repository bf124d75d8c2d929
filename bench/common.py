"""Helpers shared by the benchmarks: the corpus location, timing, and result lines."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def corpus_files() -> list[str]:
    """The real Mach-O corpus (`dyldwatch corpus`); exits when it is absent."""
    base = Path(os.environ.get("DYLDWATCH_CORPUS") or Path.home() / ".cache" / "dyldwatch-corpus")
    files = sorted(str(p) for p in (base / "files").glob("*") if p.is_file())
    if not files:
        sys.exit(f"no corpus at {base}: run `make corpus` (dyldwatch corpus)")
    return files


def best_of(fn: Callable[[], object], repeat: int = 5, setup: Callable[[], object] | None = None) -> float:
    """Fastest of `repeat` runs in seconds (the least disturbed by the rest of the machine)."""
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        del out  # freeing what fn built is not part of its time (117 LIEF binaries take ~55 ms to free)
    return min(times)


def median_of(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def report(name: str, value: float, unit: str, target: str = "", ok: bool | None = None) -> None:
    """One result line: `name  value unit  target  PASS|MISS`."""
    verdict = "" if ok is None else ("PASS" if ok else "MISS")
    print(f"  {name:<58} {value:>12.3f} {unit:<10} {target:<18} {verdict}")

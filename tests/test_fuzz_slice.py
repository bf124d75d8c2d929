"""A bounded slice of the Mach-O fuzzer runs in every test run (the full run is `make fuzz`)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import fuzz_macho  # noqa: E402


def test_fuzz_slice_yields_rows_or_errors_for_every_input() -> None:
    assert fuzz_macho.main(["--inputs", "1500", "--workers", "2", "--seed", "7000", "--max-seed", str(256 << 10)]) == 0


def test_mutations_actually_change_inputs() -> None:
    seeds = fuzz_macho.writer_seeds()
    marks = [fuzz_macho.landmarks(s) for s in seeds]
    assert all(m["cmd"] for m in marks)  # the seeds parse, so mutations can aim at real structure
    changed = sum(fuzz_macho.mutate(seeds[0], marks[0], random.Random(i)) != seeds[0] for i in range(200))
    assert changed >= 190

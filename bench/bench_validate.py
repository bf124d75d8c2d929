"""Time `validate`: every pack query on every scenario database (target: under 2 s in total).

Run: python bench/bench_validate.py [--repeat N]. Builds the databases into a temp dir first
(timed separately), then validates; prints the best of N runs and the query count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from dyldwatch.packs import load_packs
from dyldwatch.packs import scenarios as samples
from dyldwatch.packs import validate as validation

TARGET_SECONDS = 2.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    packs = load_packs()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        dbs = samples.build_all(Path(tmp))
        build_s = time.perf_counter() - t0
        best = float("inf")
        run = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            run = validation.validate(packs, dbs)
            best = min(best, time.perf_counter() - t0)
    assert run is not None
    queries = len(run.rows)
    status = "ok" if best < TARGET_SECONDS else "SLOW"
    print(f"build: {len(dbs)} databases in {build_s:.3f}s")
    print(f"validate: {len(packs)} packs x {len(dbs)} databases = {queries} query runs, "
          f"{len(run.results)} results, best of {args.repeat}: {best:.3f}s (target < {TARGET_SECONDS}s) {status}")
    return 0 if best < TARGET_SECONDS and run.ok else 1


if __name__ == "__main__":
    sys.exit(main())

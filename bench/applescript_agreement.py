"""Run-only detection against the labelled real scripts in ../shared/samples/applescript.

Prints agreement per label group (folder x label strength, read from the samples' MANIFEST.md),
then every disagreement with its structural evidence, then the parse time of the largest file.
The rule under test: a compiled AppleScript is run-only when its object graph holds no
statement-map objects (type 13). Exit status 1 when a strong label disagrees.
"""

from __future__ import annotations

import fnmatch
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

from dyldwatch.formats.applescript import parse_script

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "applescript"


def strengths(manifest: Path) -> dict[tuple[str, str], str]:
    """(folder, file pattern) -> strong | medium, from the manifest's table rows."""
    out: dict[tuple[str, str], str] = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].endswith("/"):
            continue
        level = "strong" if cells[3].lower().startswith("strong") else "medium"
        for pattern in re.findall(r"`([^`]+)`", cells[1]):
            out[(cells[0].rstrip("/"), pattern)] = level
    return out


def strength(table: dict[tuple[str, str], str], folder: str, name: str) -> str:
    for (f, pattern), level in table.items():
        if f == folder and fnmatch.fnmatchcase(name, pattern):
            return level
    return "unlabelled"


def main() -> int:
    if not SAMPLES.is_dir():
        print(f"no samples at {SAMPLES}")
        return 1
    table = strengths(SAMPLES / "MANIFEST.md")
    groups: dict[tuple[str, str], list[tuple[str, bool | None, str]]] = defaultdict(list)
    slowest = (0.0, "")
    for path in sorted(SAMPLES.glob("*/*.scpt")):
        data = path.read_bytes()
        t = time.perf_counter()
        info = parse_script(data)
        took = time.perf_counter() - t
        slowest = max(slowest, (took, f"{path.name} ({len(data)} bytes, {info.objects} objects)"))
        folder = path.parent.name
        groups[(folder, strength(table, folder, path.name))].append(
            (path.name, info.run_only, info.error or info.evidence or ""))
    print(f"{'group':<22} {'files':>5} {'agree':>6}  {'rate':>5}")
    disagreements = []
    for (folder, level), items in sorted(groups.items()):
        expected = folder == "run-only"
        agree = sum(1 for _, got, _ in items if got is expected)
        print(f"{folder + '/' + level:<22} {len(items):>5} {agree:>6}  {agree / len(items):>5.0%}")
        disagreements += [(folder, level, n, got, ev) for n, got, ev in items if got is not expected]
    for folder, level, name, got, evidence in disagreements:
        print(f"  disagrees ({folder}, {level}): {name}: run_only={got}; {evidence}")
    print(f"slowest parse: {slowest[0] * 1000:.1f} ms, {slowest[1]}")
    return 1 if any(d[1] == "strong" for d in disagreements) else 0


if __name__ == "__main__":
    sys.exit(main())

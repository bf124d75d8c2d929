"""Run-only detection against the labelled real scripts in ../shared/samples/applescript.

Prints agreement per label group (folder x label strength from MANIFEST.md) and every
disagreement, with the structural evidence. The rule: a script is run-only when its object graph
holds no statement-map objects (type 13).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from dyldwatch.applescript import parse_script

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "applescript"


def strength(folder: str, name: str) -> str:
    """Label strength as MANIFEST.md gives it."""
    if name.startswith("quicksilver__"):
        return "strong"
    return "medium"


def main() -> int:
    if not SAMPLES.is_dir():
        print(f"no samples at {SAMPLES}")
        return 1
    groups: dict[tuple[str, str], list[tuple[str, bool | None, str]]] = defaultdict(list)
    for path in sorted(SAMPLES.glob("*/*.scpt")):
        info = parse_script(path.read_bytes())
        folder = path.parent.name
        groups[(folder, strength(folder, path.name))].append((path.name, info.run_only, info.evidence or info.error or ""))
    print(f"{'group':<22} {'files':>5} {'agree':>6}  rate")
    disagreements = []
    for (folder, level), items in sorted(groups.items()):
        expected = folder == "run-only"
        agree = sum(1 for _, got, _ in items if got is expected)
        print(f"{folder + '/' + level:<22} {len(items):>5} {agree:>6}  {agree / len(items):.0%}")
        disagreements += [(folder, level, n, got, ev) for n, got, ev in items if got is not expected]
    for folder, level, name, got, evidence in disagreements:
        print(f"  disagrees ({folder}, {level}): {name}: run_only={got}; {evidence}")
    strong_miss = [d for d in disagreements if d[1] == "strong"]
    return 1 if strong_miss else 0


if __name__ == "__main__":
    sys.exit(main())

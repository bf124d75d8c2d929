"""Packs and column options of an earlier commit vs now, executed the way osqueryd executes them.

    python bench/packs_before_after.py [REV]     (default REV: 335ff7e, before the osquery-faithful engine)

Runs the 18 scenarios that existed at REV through the engine twice: with REV's packs (from git) and
the column options REV registered (paths REQUIRED on the Mach-O tables, pid INDEX, everything else
options 0, which osquery treats as INDEX), then with today's packs and options. Prints expectations
held and extension calls per query.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from dyldwatch.packs import load_packs
from dyldwatch.packs.validate import validate
from dyldwatch.sql import facts
from dyldwatch.sql.facts import INDEX, REQUIRED, ColumnFacts, TableFacts

ORIGINAL = ["darwin_adhoc_dev_build", "darwin_baseline", "darwin_dropped_dylib", "darwin_dyld_insert",
            "darwin_dylib_hijack", "darwin_editable_applescript", "darwin_homebrew", "darwin_jit_browsers",
            "darwin_packed_macho", "darwin_runonly_applescript", "darwin_rwx_injection", "darwin_signed_updater",
            "darwin_stripped_release", "darwin_tampered_binary", "darwin_xcode_build", "linux_baseline",
            "linux_ld_preload", "linux_memfd_exec"]


def report(label: str, packs: list) -> None:
    run = validate(packs, [Path("sample_dbs") / f"{n}.db" for n in ORIGINAL], require_all=False)
    checked = [r for r in run.results if r.ok is not None]
    failed = [r for r in checked if r.ok is False]
    costs = run.query_costs()
    print(f"{label}: {len(checked) - len(failed)}/{len(checked)} expectations hold; extension calls "
          f"{sum(c['extension_calls'] for c in costs.values())}")
    for name, c in sorted(costs.items()):
        print(f"    {name:45} {c['extension_calls']}")
    for r in failed:
        print(f"    FAIL {r.analytic} {r.scenario}: {r.detail[-90:]}")


def old_options() -> dict[str, TableFacts]:
    out = {}
    for name, t in facts.our_tables().items():
        cols = []
        for c in t.columns:
            opts = 0
            if c.name in ("path", "directory") and name in ("macho_info", "macho_load_commands", "applescript_info"):
                opts = REQUIRED
            elif c.name == "pid":
                opts = INDEX
            cols.append(ColumnFacts(c.name, c.type, opts))
        out[name] = TableFacts(name, t.platforms, tuple(cols), True)
    return out


def main() -> None:
    rev = sys.argv[1] if len(sys.argv) > 1 else "335ff7e"
    report("now", load_packs())
    with tempfile.TemporaryDirectory() as tmp:
        for p in ("AN0054", "AN0057", "AN0607", "AN0840", "AN1467"):
            text = subprocess.run(["git", "show", f"{rev}:packs/{p}.yaml"], check=True, capture_output=True,
                                  text=True).stdout
            (Path(tmp) / f"{p}.yaml").write_text(text)
        old = old_options()
        facts.our_tables.cache_clear()
        facts.our_tables = lambda: old  # type: ignore[assignment]
        report(f"{rev} (its packs and column options)", load_packs([tmp]))


if __name__ == "__main__":
    main()

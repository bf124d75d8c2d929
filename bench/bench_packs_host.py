"""The five packs' scheduled queries on a host-sized workload, run the way osqueryd runs them.

Every query of the packs for a platform goes through `Engine` (osquery's SQLite 3.42 and planner
contract) as a scheduled query with its interval; our tables are answered by the real extension
process over its Thrift socket (bench/extsource.py: the context JSON osqueryd sends, rows as the
string maps it receives), osquery's native tables in this process.

Linux, live: hundreds of real processes each dlopen()ing many shared objects (bench/hostload.py),
so the host maps tens of thousands of images; native tables from /proc (dyldwatch.tables.native).
The workload is measured at each size given (default half and full), with a fresh extension each,
its code warmed on files outside the workload (with --linux-repeat every query runs a second time at
the largest size: the steady state of a long-running extension). Before the first size, a few
queries run over our tables both in this process and over the socket must return the same rows.
At the darwin size every query runs twice: the Mach-O tables keep answers of unchanged files.

Darwin, generated (bench/darwin_host.py): a scenario over a real tree of app bundles made from the
Mach-O corpus (bench/scale_tree.py); macho_info, macho_load_commands, dylib_provenance and
applescript_info answered by the extension on those files; osquery's native tables and our process
tables (process_images, rwx_regions: they need a live Mac) are generated rows. AN0057's
search_roots and AN0607's certificate_expected_paths point at the tree through the sites mapping
(`Pack.render(q, site)`), as a site's SITE file would point them at /Applications.

Per query: interval, wall seconds, seconds inside generate calls ("in ext": round trips, answers
decoded), extension CPU seconds (utime+stime of its process), CPU seconds of this process (our
Python emulation of osquery's native tables, SQLite, and the Thrift client's decoding: an upper
bound for osqueryd's own share), extension calls and CPU milliseconds per call, rows the extension
sent, rows the query returned, the extension's peak RSS (VmHWM); below each, the calls per table
(ours with how many distinct contexts they carried, native ones with our emulation's CPU seconds).
Totals: CPU-seconds per scheduled hour, sum(cpu * 3600 / interval), for the extension and for this
process; the extension's peak RSS against osquery's restrictive watchdog (100 MB); how busy the
longest query keeps the extension (osquery's extensions watchdog, when enabled, stops an extension
above 10% of the physical cores for 12 s, 5% for 6 s when restrictive); per-image cost at each
Linux size and its growth.

Usage: bench/bench_packs_host.py [--procs 150,300] [--libs 96] [--local-every 10] [--linux-repeat]
                                 [--bundles 20] [--darwin-procs 300] [--no-linux] [--no-darwin]
Run it under `nice -n 10` on a shared machine; it takes about three minutes with the defaults.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

import apsw  # noqa: E402

from common import corpus_files, report  # noqa: E402
from darwin_host import CLOCK_SHIFT, Scenario, scenario  # noqa: E402
from dyldwatch.extension.adapter import DEFAULT_BUDGET  # noqa: E402
from dyldwatch.packs.model import EVENTS_EXPIRY, Pack, load_packs  # noqa: E402
from dyldwatch.sql.engine import Engine, Flags, RunState, Source, StoredRows  # noqa: E402
from dyldwatch.sql.facts import INDEX, REQUIRED, TableFacts, tables_for  # noqa: E402
from dyldwatch.sql.session import native_sources, stored_source  # noqa: E402
from dyldwatch.tables.base import Op, QueryContext  # noqa: E402
from dyldwatch.tables.values import wire_text  # noqa: E402
from extproc import extension  # noqa: E402
from extsource import Accounts, ExtensionSource, TimedSource, Usage  # noqa: E402
from hostload import RWX_EVERY, Workload, count_images, linux_workload, spawn  # noqa: E402
from scale_tree import make_tree  # noqa: E402

RSS_LIMIT = 100.0  # MB: osquery's restrictive watchdog (on extensions with --enable_extensions_watchdog; it limits
#                   growth since launch, VmHWM here is the whole resident peak)
GROWTH_LIMIT = 1.5


@dataclass
class QueryCost:
    pack: str
    name: str
    interval: int
    wall: float = 0.0
    engine_cpu: float = 0.0
    rows: int = 0
    ext: Usage = field(default_factory=Usage)
    calls: dict[str, int] = field(default_factory=dict)  # every table's xFilter calls
    native_cpu: dict[str, float] = field(default_factory=dict)
    error: str = ""


@dataclass
class Run:
    label: str
    costs: list[QueryCost]

    def per_hour(self, attr: str) -> float:
        return sum(_cpu(c, attr) * 3600 / c.interval for c in self.costs)

    def total(self, attr: str) -> float:
        return sum(_cpu(c, attr) for c in self.costs)

    @property
    def peak_mb(self) -> float:
        return max((c.ext.peak_mb for c in self.costs), default=0.0)


def _cpu(c: QueryCost, attr: str) -> float:
    return c.ext.cpu if attr == "ext" else c.engine_cpu


# --- sources ---------------------------------------------------------------------------------


class PidIndexed:
    """Stored rows of a table keyed by an INDEX `pid`, split per pid: a `pid =` call reads only that
    process's rows (what the real table does) instead of scanning every process's. Same answers as
    the StoredRows it wraps."""

    def __init__(self, facts: TableFacts, rows: list[dict[str, Any]]) -> None:
        self.facts = facts
        self.all = stored_source(facts, rows)
        buckets: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            buckets[wire_text(r.get("pid"))].append(r)
        self.parts = {k: stored_source(facts, v) for k, v in buckets.items()}
        self.none = stored_source(facts, [])

    def rows(self, ctx: QueryContext, state: RunState) -> list[Any]:
        pids = list(dict.fromkeys(k.expr for k in ctx.constraints.get("pid", ()) if k.op == Op.EQUALS))
        if not pids:
            return list(self.all.rows(ctx, state))
        return [r for p in pids for r in self.parts.get(p, self.none).rows(ctx, state)]


def stored(facts: TableFacts, rows: list[dict[str, Any]]) -> Source:
    pid = next((c for c in facts.columns if c.name == "pid"), None)
    if pid is not None and pid.options & INDEX and not pid.options & REQUIRED and not facts.event_based:
        return PidIndexed(facts, rows)
    return stored_source(facts, rows)


# --- running the queries ---------------------------------------------------------------------


def run_queries(engine: Engine, packs: list[Pack], platform: str, accounts: Accounts, counts: Counter[str],
                native_cpu: Counter[str], sites: dict[str, dict[str, Any]] | None = None) -> list[QueryCost]:
    out = []
    for pack in packs:
        for q in pack.queries:
            if platform not in q.platforms:
                continue
            sql = pack.render(q, (sites or {}).get(pack.id))
            cost = QueryCost(pack.id, q.name, q.interval)
            counts.clear()
            native_cpu.clear()
            accounts.begin()
            t, c = time.perf_counter(), time.process_time()
            try:
                result = engine.run(sql, interval=q.interval)
                cost.rows = len(result.rows)
                cost.calls = dict(result.calls)
            except apsw.Error as exc:  # what osqueryd would log as a failed query
                cost.error = str(exc)[:200]
                cost.calls = dict(engine.state.calls)
            cost.engine_cpu = time.process_time() - c
            cost.wall = time.perf_counter() - t
            cost.ext = accounts.end()
            cost.native_cpu = dict(native_cpu)
            out.append(cost)
    return out


def print_run(run: Run) -> None:
    print(f"\n{run.label}")
    print(f"  {'query':<38} {'every':>5} {'wall s':>7} {'in ext':>7} {'ext cpu':>8} {'eng cpu':>8} "
          f"{'ext calls':>9} {'ms/call':>7} {'ext rows':>9} {'rows':>6} {'ext MB':>6}")
    for c in run.costs:
        per_call = c.ext.cpu / c.ext.calls * 1e3 if c.ext.calls else 0.0
        print(f"  {c.name:<38} {c.interval:>5} {c.wall:>7.2f} {c.ext.seconds:>7.2f} {c.ext.cpu:>8.2f} "
              f"{c.engine_cpu:>8.2f} {c.ext.calls:>9} {per_call:>7.2f} {c.ext.rows:>9} {c.rows:>6} "
              f"{c.ext.peak_mb:>6.1f}")
        ours = ", ".join(f"{t} {n} ({len(c.ext.contexts.get(t, ()))} distinct)"
                         for t, n in sorted(c.ext.by_table.items(), key=lambda x: -x[1]))
        native = ", ".join(f"{t} {n} ({c.native_cpu.get(t, 0.0):.1f}s)"
                           for t, n in sorted(c.calls.items(), key=lambda x: -x[1]) if t not in c.ext.by_table)
        print(f"      calls: {ours or '-'} | {native or '-'}")
        for e in [c.error, *c.ext.errors[:2]]:
            if e:
                print(f"      ERROR: {e}")


def print_totals(label: str, run: Run) -> None:
    ext_h, eng_h = run.per_hour("ext"), run.per_hour("engine")
    report(f"{label}: extension CPU-seconds per scheduled hour", ext_h, "cpu-s/h")
    report("  share of one core", ext_h / 3600 * 100, "%")
    report(f"{label}: engine-process CPU-seconds per scheduled hour", eng_h, "cpu-s/h")
    report("  (Python natives + SQLite + client decoding; osqueryd's bound)", eng_h / 3600 * 100, "% of a core")
    report(f"{label}: extension peak RSS", run.peak_mb, "MB", f"< {RSS_LIMIT:g} MB", run.peak_mb < RSS_LIMIT)
    rows = sum(c.ext.rows for c in run.costs)
    calls = sum(c.ext.calls for c in run.costs)
    if calls:
        report("  extension CPU per call", run.total("ext") / calls * 1e6, "us/call")
        report("  extension CPU per row it sent", run.total("ext") / max(rows, 1) * 1e6, "us/row")
    longest = max(run.costs, key=lambda c: c.ext.seconds, default=None)
    if longest is not None and longest.ext.seconds > 0:
        report(f"  longest in the extension: {longest.name}, seconds in calls", longest.ext.seconds, "s")
        report("    extension CPU while in those calls", longest.ext.cpu / longest.ext.seconds * 100, "% of a core")


# --- Linux -----------------------------------------------------------------------------------


def warm_linux(ext: Any) -> None:
    """Load the extension's code for every table (as a long-running one has) on files and a process
    outside the workload, so a size's first run measures work, not imports."""
    from extproc import eq

    me = str(os.getpid())
    for table, cons in (("process_images", [eq("pid", me)]), ("rwx_regions", [eq("pid", me)]),
                        ("dylib_provenance", [eq("path", sys.executable)]),
                        ("dylib_provenance", [eq("pid", me)])):
        call = ext.generate(table, cons, None)
        assert call.status == 0, call.message


def linux_engine(ext: Any, accounts: Accounts, counts: Counter[str], native_cpu: Counter[str]) -> Engine:
    facts = tables_for("linux")
    sources: dict[str, Source] = {n: ExtensionSource(f, ext, accounts) for n, f in facts.items() if f.ours}
    sources.update({n: TimedSource(s, counts, native_cpu) for n, s in native_sources("linux").items()})
    return Engine(sources)


def agreement(engine: Engine, w: Workload) -> None:
    """The same SQL over our tables running in this process (LiveTable) and over the socket must give
    the same rows: the wire strings are typed by the engine exactly as in-process values are."""
    from dyldwatch.sql.session import live_engine

    live = live_engine(platform="linux")
    rwx = next((p for i, p in enumerate(w.pids) if i % RWX_EVERY == RWX_EVERY - 1), None)
    objects = sorted(w.local.glob("*.so"))[:4] + (sorted(w.system.glob("*.so"))[:4] if w.system else [])
    paths = ", ".join(f"'{p}'" for p in [*map(str, objects), *w.system_libs[:2], "/nonexistent/libx.so"])
    checks = [f"SELECT * FROM dylib_provenance WHERE path IN ({paths})",
              f"SELECT * FROM dylib_provenance WHERE pid = {w.pids[0]}",
              f"SELECT * FROM process_images WHERE pid IN ({w.pids[0]}, {w.pids[-1]})",
              f"SELECT typeof(pid), typeof(inode), typeof(deleted), typeof(base_address), count(*) "
              f"FROM process_images WHERE pid = {w.pids[1]} GROUP BY 1, 2, 3, 4"]
    if rwx is not None:  # a worker holding an rwx page (one in RWX_EVERY)
        checks.append(f"SELECT * FROM rwx_regions WHERE pid = {rwx}")
    diffs = 0
    for sql in checks:
        a = sorted(map(repr, live.run(sql).rows))
        b = sorted(map(repr, engine.run(sql).rows))
        if a != b or not a:
            diffs += 1
            print(f"   DIFFERENT (or empty) over the socket: {sql[:100]}")
    report(f"queries whose rows differ over the socket vs in-process (of {len(checks)})", diffs, "queries", "0",
           diffs == 0)


def linux_part(packs: list[Pack], sizes: list[int], libs: int, local_every: int, repeat: bool) -> None:
    print(f"== Linux, live: {libs} shared objects; worker processes at sizes {sizes}; every "
          f"{local_every}th worker loads non-system copies (/tmp), the others system copies (/usr/lib)")
    growth: list[tuple[int, int, Run]] = []
    counts: Counter[str] = Counter()
    native_cpu: Counter[str] = Counter()
    t0 = time.perf_counter()
    with linux_workload(libs, local_every) as w:
        print(f"   built in {time.perf_counter() - t0:.1f}s; system copies: {w.system or 'none (not writable)'}")
        for n in sorted(sizes):
            spawn(w, n)
            host = count_images()
            print(f"\n-- {n} workers: the host has {host.processes} processes, {host.images} images "
                  f"(executable file mappings by process), {host.files} distinct image files, "
                  f"{host.mappings} mappings")
            with extension(budget=DEFAULT_BUDGET) as ext:
                warm_linux(ext)
                accounts = Accounts(ext)
                engine = linux_engine(ext, accounts, counts, native_cpu)
                if n == min(sizes):
                    agreement(engine, w)
                first = Run(f"Linux, {n} workers, {host.images} images: first run (extension caches cold)",
                            run_queries(engine, packs, "linux", accounts, counts, native_cpu))
                print_run(first)
                growth.append((n, host.images, first))
                if n == max(sizes):
                    again = None
                    if repeat:
                        again = Run(f"Linux, {n} workers: repeated (a long-running extension's later runs)",
                                    run_queries(engine, packs, "linux", accounts, counts, native_cpu))
                        print_run(again)
                    print()
                    print_totals(f"Linux {n} workers, first run", first)
                    if again is not None:
                        print_totals(f"Linux {n} workers, repeated", again)
        _check_workers(w)
    if len(growth) > 1:
        print("\nGrowth with the host (per image: one run of every Linux query / images on the host):")
        for n, images, run in growth:
            report(f"{n} workers, {images} images: extension CPU per image", run.total("ext") / images * 1e6,
                   "us/image")
            report(f"{n} workers: engine-process CPU per image", run.total("engine") / images * 1e6, "us/image")
            report(f"{n} workers: extension peak RSS", run.peak_mb, "MB", f"< {RSS_LIMIT:g} MB",
                   run.peak_mb < RSS_LIMIT)
        (_, small_images, small), (_, big_images, big) = growth[0], growth[-1]
        for attr, what in (("ext", "extension"), ("engine", "engine-process")):
            ratio = (big.total(attr) / big_images) / (small.total(attr) / small_images)
            report(f"{what} CPU per image, {big_images} vs {small_images} images", ratio, "x",
                   f"<= {GROWTH_LIMIT:g}x (linear)", ratio <= GROWTH_LIMIT)


def _check_workers(w: Workload) -> None:
    dead = [p.pid for p in w.procs if p.poll() is not None]
    if dead:
        print(f"   WARNING: {len(dead)} workers exited during the run: {dead[:5]}")


# --- Darwin ----------------------------------------------------------------------------------


def trees_root() -> Path:
    return Path(os.environ.get("DYLDWATCH_BENCH_TREES") or Path.home() / ".cache" / "dyldwatch-bench-trees")


def darwin_engine(sc: Scenario, ext: Any, accounts: Accounts, counts: Counter[str],
                  native_cpu: Counter[str]) -> tuple[Engine, list[str]]:
    facts = tables_for("darwin")
    sources: dict[str, Source] = {}
    generated = []
    for name, f in facts.items():
        if name in sc.tables:
            sources[name] = TimedSource(stored(f, sc.tables[name]), counts, native_cpu)
            generated.append(name)
        elif f.ours:
            sources[name] = ExtensionSource(f, ext, accounts)
        else:
            sources[name] = TimedSource(StoredRows(f, []), counts, native_cpu)
    return Engine(sources, now=sc.now, flags=Flags(events_expiry=EVENTS_EXPIRY)), generated


def warm_darwin(ext: Any, corpus: list[str], scratch: Path) -> None:
    """The Mach-O and provenance code loaded on a file outside the tree (a copy of one corpus file)."""
    from extproc import eq

    probe = scratch / "warm" / "probe"
    probe.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(corpus[0], probe)
    for table in ("macho_info", "macho_load_commands", "dylib_provenance", "applescript_info"):
        call = ext.generate(table, [eq("path", str(probe))], None)
        assert call.status == 0, call.message
    call = ext.generate("macho_info", [eq("path", str(probe))], ["path", "text_entropy", "strings_count"])
    assert call.status == 0, call.message


def darwin_part(packs: list[Pack], bundles: int, procs: int) -> None:
    try:
        corpus = corpus_files()
    except SystemExit as exc:
        print(f"\nDarwin part skipped: {exc}")
        return
    root = trees_root() / f"tree{bundles}"
    t = time.perf_counter()
    nfiles = make_tree(root, corpus, bundles)
    scratch = Path(tempfile.mkdtemp(prefix="dyldwatch-packbench-darwin-"))
    try:
        sc = scenario(root, scratch, corpus, bundles, procs, int(time.time()))
        sites = {"AN0057": {"search_roots": [f"{root}/%%", f"{sc.plugin_dir}/%%"]},
                 "AN0607": {"certificate_expected_paths": [f"{root}/%.app/%", "/Library/PrivilegedHelperTools/%"]}}
        print(f"\n== Darwin, generated: {procs} processes over {bundles} app bundles ({nfiles} Mach-O files, "
              f"{root}); {sc.images} process_images rows; {len(sc.tables['launchd'])} launchd jobs; "
              f"{len(sc.scripts)} run-only AppleScripts; built in {time.perf_counter() - t:.1f}s")
        print(f"   the scenario's clock is {CLOCK_SHIFT // 86400} days after now (an established host); AN0057 "
              f"searches {sites['AN0057']['search_roots']}")
        counts: Counter[str] = Counter()
        native_cpu: Counter[str] = Counter()
        with extension(budget=DEFAULT_BUDGET) as ext:
            warm_darwin(ext, corpus, scratch)
            accounts = Accounts(ext)
            engine, generated = darwin_engine(sc, ext, accounts, counts, native_cpu)
            print(f"   generated rows (not measured as osquery or the extension would produce them): "
                  f"{', '.join(sorted(generated))}; from the extension: "
                  f"{', '.join(sorted(n for n, s in engine.sources.items() if isinstance(s, ExtensionSource)))}")
            first = Run(f"Darwin, {procs} processes, {nfiles} files: first run (extension caches cold)",
                        run_queries(engine, packs, "darwin", accounts, counts, native_cpu, sites))
            print_run(first)
            again = Run(f"Darwin, {procs} processes: repeated (a long-running extension's later runs)",
                        run_queries(engine, packs, "darwin", accounts, counts, native_cpu, sites))
            print_run(again)
        print()
        print_totals("Darwin, first run", first)
        print_totals("Darwin, repeated", again)
        walk = next((c for c in first.costs if c.name == "an0057_darwin_packed_macho"), None)
        if walk is not None and walk.ext.rows:
            report("  AN0057 packed-Mach-O walk, first run: extension CPU per file", walk.ext.cpu / nfiles * 1e6,
                   "us/file")
        images = next((c for c in first.costs if c.name == "an0054_darwin_user_writable_images"), None)
        if images is not None:
            report("  AN0054, first run: extension CPU per process image", images.ext.cpu / sc.images * 1e6,
                   "us/image")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", default="150,300", help="Linux worker counts, comma-separated (default 150,300)")
    ap.add_argument("--libs", type=int, default=96, help="distinct shared objects (default 96)")
    ap.add_argument("--local-every", type=int, default=10,
                    help="every Nth Linux worker loads non-system copies (default 10)")
    ap.add_argument("--bundles", type=int, default=20, help="app bundles in the darwin tree (default 20)")
    ap.add_argument("--darwin-procs", type=int, default=300, help="darwin processes (default 300)")
    ap.add_argument("--linux-repeat", action="store_true",
                    help="run the Linux queries a second time at the largest size (measured to cost about "
                         "the same as the first: the per-call work dominates; off to keep the run short)")
    ap.add_argument("--no-linux", action="store_true")
    ap.add_argument("--no-darwin", action="store_true")
    args = ap.parse_args()
    # A terminated run still kills its workers and removes its directories (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    packs = load_packs()
    started = time.perf_counter()
    if not args.no_linux:
        if not sys.platform.startswith("linux") or shutil.which("gcc") is None:
            print("Linux part skipped: needs Linux and gcc")
        else:
            linux_part(packs, [int(s) for s in args.procs.split(",") if s], args.libs, args.local_every,
                       args.linux_repeat)
    if not args.no_darwin:
        darwin_part(packs, args.bundles, args.darwin_procs)
    print(f"\n({time.perf_counter() - started:.0f}s)")


if __name__ == "__main__":
    main()

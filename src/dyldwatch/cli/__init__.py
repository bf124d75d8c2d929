"""The `dyldwatch` command: options in, calls out, rendering. No table or parser logic lives here."""

from __future__ import annotations

import logging
import sys

import click

from .. import __version__
from .render import FORMATS, render


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dyldwatch")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug) to stderr.")
def main(verbose: int) -> None:
    """dyldwatch: see suspicious dynamic code loading on macOS and Linux.

    Virtual tables for osquery (macho_load_commands, macho_info, dylib_provenance, rwx_regions,
    process_images, applescript_info), the query packs that use them, and the tools to test and
    ship both.

    \b
    Ask the tables directly, without osquery:
      dyldwatch query "SELECT path, arch, cmd, name FROM macho_load_commands WHERE path = '/bin/ls'"
    Run as an osquery extension (osqueryd passes these flags when it autoloads it):
      dyldwatch extension --socket /var/osquery/osquery.em --timeout 3 --interval 3
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("sql")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True,
              help="table for people, json (an array of row objects) or csv for machines.")
@click.option("--db", type=click.Path(exists=True, dir_okay=False),
              help="Query a sample or snapshot database instead of this host (read-only).")
def query(sql: str, fmt: str, db: str | None) -> None:
    """Run SQL over dyldwatch's tables on this host, executed the way osqueryd executes it.

    The same engine as `validate`: osquery's planner contract (which constraints reach which
    table), its value conversion and its SQL functions, on SQLite 3.42 (osquery's version).

    Path-keyed tables need a path or directory constraint, like osquery's `file` table:
    `path = '/x'`, `path LIKE '/dir/%'` (one level), `path LIKE '/dir/%%'` (recursive),
    `directory = '/dir'`. Joins feed them: `... JOIN macho_info m ON m.path = f.path`.

    \b
    Examples:
      dyldwatch query "SELECT path, arch, signature_type, team_id FROM macho_info WHERE directory = '/usr/lib'"
      dyldwatch query --format json "SELECT * FROM rwx_regions"
      dyldwatch query --db sample_dbs/baseline.db "SELECT name FROM processes"
    """
    import apsw

    from ..sql.session import database_engine, live_engine
    from ..tables.base import TableUsageError

    try:
        engine = database_engine(db) if db else live_engine()
        columns, rows = engine.iterate(sql)
        render(columns, rows, fmt)
    except TableUsageError as exc:
        raise click.ClickException(str(exc)) from exc
    except apsw.ConstraintError as exc:
        import re

        m = re.search(r"Table (\w+) was queried without a required column", str(exc))
        hint = ""
        if m:
            from ..sql.facts import tables_for

            need = " or ".join(tables_for(None)[m.group(1)].required) or "its key"
            hint = f" ({m.group(1)} needs a constraint on {need}, for example WHERE path LIKE '/usr/lib/%')"
        raise click.ClickException(f"{exc}{hint}") from exc
    except (apsw.Error, ValueError) as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, TableUsageError):
            raise click.ClickException(str(cause)) from exc
        raise click.ClickException(f"SQL error: {exc}") from exc


@main.command()
@click.argument("names", nargs=-1)
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def tables(names: tuple[str, ...], fmt: str) -> None:
    """Print the schema of dyldwatch's tables (all, or the ones named)."""
    from ..tables import TABLES, load_table

    unknown = [n for n in names if n not in TABLES]
    if unknown:
        raise click.ClickException(f"unknown table {unknown[0]!r}; known: {', '.join(TABLES)}")
    rows = []
    for name in names or tuple(TABLES):
        t = load_table(name)
        for c in t.columns:
            flags = [f.name.lower() for f in type(c.options) if f and f in c.options]
            rows.append((t.name, ",".join(t.platforms), c.name, str(c.type), ",".join(flags), c.description))
    render(("table", "platforms", "column", "type", "options", "description"), rows, fmt)


@main.command()
@click.option("--socket", "socket_path", required=True, help="osqueryd's extension manager socket.")
@click.option("--timeout", type=float, default=3.0, show_default=True,
              help="Seconds to wait for the manager socket to appear.")
@click.option("--interval", type=float, default=3.0, show_default=True,
              help="Seconds between checks that osqueryd still lists the extension; it exits when not.")
@click.option("--verbose", is_flag=True, help="Log registration and every query to stderr.")
@click.option("--generate-budget", type=float, default=None,
              help="Seconds one query may walk before it is cut with an error row "
                   "(default: $DYLDWATCH_GENERATE_BUDGET or 60; osquery gives up on a call after 300).")
def extension(socket_path: str, timeout: float, interval: float, verbose: bool, generate_budget: float | None) -> None:
    """Serve the tables to osqueryd over Thrift (what extensions.load autoloads).

    `python -m dyldwatch extension` (the launcher) takes a shorter path with the same options.
    """
    from ..extension.runtime import run_extension

    sys.exit(run_extension(socket_path, timeout, interval, verbose, generate_budget))


@main.command()
@click.argument("table")
@click.option("--path", "paths", multiple=True, help="path = VALUE (repeatable: an IN list).")
@click.option("--like", "likes", multiple=True, help="path LIKE PATTERN ('/dir/%' one level, '/dir/%%' recursive).")
@click.option("--directory", "directories", multiple=True, help="directory = VALUE.")
@click.option("--pid", "pids", multiple=True, type=int, help="pid = VALUE (process tables).")
@click.option("--column", "columns", multiple=True, help="Columns the query reads (osquery's colsUsed); default all.")
@click.option("--artifact", type=click.Path(exists=True, dir_okay=False),
              help="Start this dyldwatch.ext instead of `python -m dyldwatch extension`.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def probe(table: str, paths: tuple[str, ...], likes: tuple[str, ...], directories: tuple[str, ...],
          pids: tuple[int, ...], columns: tuple[str, ...], artifact: str | None, fmt: str) -> None:
    """Start the extension and ask it one question over its own Thrift socket, as osqueryd would.

    Proves an installed extension (or a built artifact) end to end without osquery: it registers
    with a private stand-in for osqueryd's manager, gets one `generate` call with osquery's query
    context, and the rows it answers are printed.

    \b
    Examples:
      dyldwatch probe macho_info --directory /usr/lib --column path --column signature_type
      dyldwatch probe rwx_regions --pid 1234 --format json
      dyldwatch probe macho_load_commands --path /bin/ls --artifact dist/linux-x86_64/dyldwatch.ext
    """
    from ..extension.probe import context_json
    from ..extension.probe import probe as run_probe
    from ..tables import TABLES, load_table

    if table not in TABLES:
        raise click.ClickException(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    constraints: dict[str, list[tuple[int, str]]] = {}
    for name, op, values in (("path", 2, paths), ("path", 65, likes), ("directory", 2, directories),
                             ("pid", 2, tuple(map(str, pids)))):
        constraints.setdefault(name, []).extend((op, v) for v in values)
    try:
        rows = run_probe(table, context_json({k: v for k, v in constraints.items() if v}, columns or None),
                         [artifact] if artifact else None)
    except (OSError, RuntimeError, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from exc
    names = [c for c in load_table(table).column_names() if not columns or c in columns]
    render(names, [tuple(r.get(c) for c in names) for r in rows], fmt, title=f"{table} through the extension's socket")


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table for people, json for machines.")
def selfcheck(fmt: str) -> None:
    """Compare dyldwatch's readers with the platform's own tools; exit 1 on any disagreement.

    On macOS (best as root): region walks vs vmmap, flavor 22 vs flavor 8, macho_info vs codesign,
    load commands vs otool, @rpath resolution vs DYLD_PRINT_SEARCHING, quarantine and provenance vs
    xattr. On Linux: /proc maps vs rwx_regions and process_images, statx btime, xdg xattrs.
    """
    from ..selfcheck import exit_code, run_checks

    results = list(run_checks())
    render(["check", "platform", "status", "detail"], ([r.check, r.platform, r.status, r.detail] for r in results),
           fmt, title="dyldwatch selfcheck")
    sys.exit(exit_code(results))


def _add_optional_commands() -> None:
    """Commands that live beside the core: packs (lint, build, validate, snapshot) and deployment
    (package, install, docs). They import nothing until the group is built."""
    from . import deploy as cli_deploy
    from . import packs as cli_packs

    for name in ("lint", "build", "validate", "snapshot", "hunt", "corpus", "export_scenario"):
        main.add_command(getattr(cli_packs, name))
    cli_deploy.register(main)


_add_optional_commands()

"""`dyldwatch package`, `install` and `docs`: ship the extension to hosts and document its tables.

Only option parsing and rendering here; the work is in packaging.py, install.py and docs.py (all
imported lazily so that these commands cost nothing to the CLI's start-up).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

PLATFORMS = ("macos-arm64", "macos-x86_64", "linux-x86_64", "linux-aarch64")


@click.command()
@click.option("--platform", "platforms", multiple=True, type=click.Choice(PLATFORMS),
              help="Target platform (repeatable). Default: all four with --bundle, else this machine's.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default="dist/package", show_default=True,
              help="Output folder; each artifact goes to OUT/<platform>/dyldwatch.ext.")
@click.option("--bundle", is_flag=True,
              help="Also write the osquery/launchd/systemd/Fleet configuration, the packs and an operator README.")
def package(platforms: tuple[str, ...], out_dir: str, bundle: bool) -> None:
    """Build the one-file extension (dyldwatch.ext) per platform, with its SHA-256.

    \b
    Each artifact is a PEX zipapp carrying our code and the target platform's wheels; it needs only
    the platform's Python (macOS: python.org 3.12; Linux: /usr/bin/python3.11). See docs/deploy.md.
    """
    from ..deploy.artifact import TARGETS, PackagingError, build_artifact, host_platform
    from ..deploy.bundle import write_bundle

    chosen = list(platforms) or (list(TARGETS) if bundle else [host_platform()])
    out = Path(out_dir)
    try:
        artifacts = [build_artifact(p, out) for p in chosen]
        if bundle:
            write_bundle(out, artifacts)
    except PackagingError as exc:
        raise click.ClickException(str(exc)) from exc
    for a in artifacts:
        click.echo(f"{a.path}  {a.size / 1e6:.1f} MB  sha256:{a.sha256}")
    if bundle:
        click.echo(f"bundle: {out} (start with {out / 'README.md'})")


@click.command()
@click.option("--prefix", type=click.Path(file_okay=False), help="Stage the layout under PREFIX instead of /.")
@click.option("--artifact", type=click.Path(dir_okay=False),
              help="The dyldwatch.ext to install (default: dist/package/<this platform>/dyldwatch.ext).")
@click.option("--system", type=click.Choice(["linux", "darwin"]), help="Layout to use (default: this host's).")
@click.option("--dry-run", is_flag=True, help="Print what would be done; write nothing.")
def install(prefix: str | None, artifact: str | None, system: str | None, dry_run: bool) -> None:
    """Install dyldwatch.ext and osquery's autoload configuration on this host.

    \b
    Linux: /usr/local/osquery/extensions/dyldwatch.ext, /etc/osquery/{extensions.load,osquery.flags}
    macOS: /usr/local/osquery/extensions/dyldwatch.ext, /var/osquery/{extensions.load,osquery.flags}
    Everything is root-owned and not writable by group or others (osquery refuses anything else);
    an existing directory on the way that others can write is refused, not fixed behind your back.
    """
    from ..deploy.artifact import host_platform
    from ..deploy.install import InstallError, apply, plan_install

    path = Path(artifact) if artifact else Path("dist/package") / host_platform() / "dyldwatch.ext"
    try:
        plan = plan_install(path, Path(prefix) if prefix else None, system)
        if dry_run:
            for line in plan.lines():
                click.echo(f"would {line}")
            return
        for p in apply(plan):
            click.echo(f"installed {p}")
    except (InstallError, OSError) as exc:
        raise click.ClickException(f"install refused: {exc}") from exc
    click.echo("restart osqueryd to load the extension (see docs/deploy.md).", err=True)


@click.command()
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default="docs/tables", show_default=True)
@click.option("--check", is_flag=True, help="Exit 1 when the files in OUT differ from the table declarations.")
def docs(out_dir: str, check: bool) -> None:
    """Write the table reference (one Markdown page per table and an index) from the declarations."""
    from ..tables.reference import check_docs, write_docs

    if check:
        stale = check_docs(Path(out_dir))
        for line in stale:
            click.echo(line, err=True)
        if stale:
            click.echo(f"table docs in {out_dir} are stale: run `dyldwatch docs -o {out_dir}` and commit.", err=True)
            sys.exit(1)
        click.echo(f"{out_dir}: up to date")
        return
    for path in write_docs(Path(out_dir)):
        click.echo(str(path))


def register(group: click.Group) -> None:
    """Add package, install and docs to the `dyldwatch` group (called from cli._add_optional_commands)."""
    for cmd in (package, install, docs):
        group.add_command(cmd)

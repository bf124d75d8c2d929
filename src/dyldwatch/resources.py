"""Where shipped files live: packs, scenario sources, osquery schema facts, deployment templates.

One place knows the difference between a source checkout and an installed wheel. Lookups go to
the checkout first (a developer edits packs/ and sample_dbs/scenarios/ in place), then to the
copies the wheel carries as package data (`dyldwatch/data/packs`, `dyldwatch/data/scenarios`,
copied there at build time by setup.py; the source files never move).

Owns: paths of shipped files. May import: the standard library only (bottom layer).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

_PACKAGE = "dyldwatch"


def _package_dir(*parts: str) -> Path:
    """A directory inside the installed package (wheels install as plain files; pex unpacks them)."""
    return Path(str(resources.files(_PACKAGE).joinpath(*parts)))


def checkout_root() -> Path | None:
    """The source checkout this package runs from, or None for an installed wheel.

    A checkout is the folder two levels above the package (src layout) that holds pyproject.toml
    and the packs/ folder; a wheel installed into site-packages has neither.
    """
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "src" / _PACKAGE).is_dir() and (root / "packs").is_dir():
        return root
    return None


def _first(checkout_rel: str, *package_parts: str) -> Path:
    root = checkout_root()
    if root is not None and (root / checkout_rel).is_dir():
        return root / checkout_rel
    return _package_dir(*package_parts)


def packs_dir() -> Path:
    """The shipped packs: `packs/` of the checkout, else the wheel's copy."""
    return _first("packs", "data", "packs")


def scenarios_dir() -> Path:
    """The scenario sources (fixture YAML): `sample_dbs/scenarios/` of the checkout, else the wheel's copy."""
    return _first("sample_dbs/scenarios", "data", "scenarios")


def samples_dir() -> Path:
    """Where scenario databases are built by default: the checkout's `sample_dbs/`, else `./sample_dbs`.

    An installed package never writes into site-packages; `validate` builds into a temporary folder.
    """
    root = checkout_root()
    return root / "sample_dbs" if root is not None else Path.cwd() / "sample_dbs"


def schema_path() -> Path:
    """osquery's schema facts: `$DYLDWATCH_SCHEMA`, else the copy shipped in the package."""
    env = os.environ.get("DYLDWATCH_SCHEMA")
    if env:
        return Path(env)
    return _package_dir("data", "osquery_schema.json")


def templates_dir() -> Path:
    """Deployment templates (launchd plist, systemd unit, Fleet agent options, INSTALL.md): package data."""
    return _package_dir("deploy", "templates")


def template(name: str) -> Path:
    """One deployment template; FileNotFoundError names the file and the folder it was looked for in."""
    path = templates_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"deployment template {name} is missing from {templates_dir()} "
                                "(a broken install: reinstall dyldwatch)")
    return path

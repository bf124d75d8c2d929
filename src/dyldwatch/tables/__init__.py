"""The virtual tables dyldwatch adds to osquery, one per module."""

from __future__ import annotations

import importlib

from .base import Table

#: Every table, by name, as "module:Class" so that importing the registry stays cheap.
TABLES: dict[str, str] = {
    "macho_load_commands": "dyldwatch.tables.macho_load_commands:MachoLoadCommandsTable",
    "macho_info": "dyldwatch.tables.macho_info:MachoInfoTable",
    "dylib_provenance": "dyldwatch.tables.dylib_provenance:DylibProvenanceTable",
    "rwx_regions": "dyldwatch.tables.rwx_regions:RwxRegionsTable",
    "process_images": "dyldwatch.tables.process_images:ProcessImagesTable",
    "applescript_info": "dyldwatch.tables.applescript_info:AppleScriptInfoTable",
}


def load_table(name: str) -> type[Table]:
    """The Table class registered under `name` (KeyError for an unknown name)."""
    module, _, cls = TABLES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def all_tables() -> list[type[Table]]:
    """Every table class, in registry order."""
    return [load_table(name) for name in TABLES]

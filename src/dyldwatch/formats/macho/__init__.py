"""Mach-O parsing: fat slices, headers and load commands, per-slice analysis, install-name resolution.

Everything here is pure: it reads through a ByteSource and never touches the OS (resolve.py takes
an `exists` callable instead). Names load on first use, so importing one submodule (a constant
list for the provenance rules, say) does not pull in the analysis and numpy at registration time.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "SliceAnalysis": "analysis", "analyze_slice": "analysis", "shannon_entropy": "analysis",
    "arch_name": "constants", "lc_name": "constants",
    "read_header": "loadcommands", "read_load_commands": "loadcommands", "read_slices": "loadcommands",
    "uuid_string": "loadcommands", "version_string": "loadcommands",
    "LoadCommand": "model", "MachHeader": "model", "MachOError": "model", "MachOSlice": "model",
    "Section": "model", "SliceRef": "model",
    "in_shared_cache_path": "resolve", "resolve_install_name": "resolve",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)

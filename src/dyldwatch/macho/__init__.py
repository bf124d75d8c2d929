"""Mach-O parsing: fat slices, headers and load commands, per-slice analysis, install-name resolution.

Everything here is pure: it reads through a ByteSource and never touches the OS (resolve.py takes
an `exists` callable instead).
"""

from .analysis import SliceAnalysis, analyze_slice, shannon_entropy
from .constants import arch_name, lc_name
from .loadcommands import read_header, read_load_commands, read_slices, uuid_string, version_string
from .model import LoadCommand, MachHeader, MachOError, MachOSlice, Section, SliceRef
from .resolve import in_shared_cache_path, resolve_install_name

__all__ = [
    "LoadCommand",
    "MachHeader",
    "MachOError",
    "MachOSlice",
    "Section",
    "SliceAnalysis",
    "SliceRef",
    "analyze_slice",
    "arch_name",
    "in_shared_cache_path",
    "lc_name",
    "read_header",
    "read_load_commands",
    "read_slices",
    "resolve_install_name",
    "shannon_entropy",
    "uuid_string",
    "version_string",
]

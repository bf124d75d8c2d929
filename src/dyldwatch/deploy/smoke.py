"""`dyldwatch.ext --list-tables`: the artifact's smoke test, runnable where its native wheels cannot load.

Owns: the inert stand-ins for missing native modules. May import: tables.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

#: Our runtime dependencies' import names that carry compiled code (checked by `--list-tables`).
NATIVE_MODULES = ("apsw", "numpy", "orjson", "xattr", "_cffi_backend", "yaml._yaml", "thrift.protocol.fastbinary")


def list_tables(out: Callable[[str], None] = print) -> int:
    """Print every table with its columns, importing our table declarations without native modules.

    This runs where the native wheels cannot load (a macOS artifact checked on Linux CI) and on the
    host itself as a smoke test: modules that fail to import are stood in for by placeholders that
    raise on use, so the declarations (plain data) load; the last line says which natives loaded.
    """
    import importlib
    import types

    missing: list[str] = []
    for mod in NATIVE_MODULES:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            missing.append(f"{mod} ({exc.__class__.__name__}: {exc})")
            top = mod.split(".")[0]
            if top in ("apsw", "numpy", "orjson", "xattr") and top not in sys.modules:
                sys.modules[top] = _placeholder(top, types)
    from ..tables import TABLES, load_table

    for name in TABLES:
        table = load_table(name)
        cols = ", ".join(f"{c.name} {c.type}" for c in table.columns)
        out(f"{table.name}\t{','.join(table.platforms)}\t{cols}")
    out(f"# {len(TABLES)} tables; native modules: " + ("all loaded" if not missing else
                                                      "NOT loadable here: " + "; ".join(missing)))
    return 0 if not missing else 3


class _Inert:
    """Stands in for any attribute or call result of a module that has no native build here."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> _Inert:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Inert(f"{self._name}.{attr}")

    def __call__(self, *args: object, **kwargs: object) -> _Inert:
        return _Inert(f"{self._name}()")

    def __getitem__(self, key: object) -> _Inert:
        return _Inert(f"{self._name}[]")

    def __repr__(self) -> str:
        return f"<unavailable native {self._name}>"


def _placeholder(name: str, types: Any) -> Any:
    """A module whose every name is inert: module-level uses (np.dtype(...)) pass, nothing computes.

    Used only by --list-tables, which reads declarations and exits; it never calls generate().
    """
    mod = types.ModuleType(name)
    mod.__getattr__ = lambda attr: _Inert(f"{name}.{attr}")
    mod.__path__ = []  # a package, so `from numpy import x` and submodule lookups resolve to inert names
    return mod

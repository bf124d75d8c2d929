"""Where dyld would find a dylib an install name refers to.

Mirrors dyld's expansion of `@executable_path/`, `@loader_path/` and `@rpath/` (LC_RPATH entries
in load-command order, first existing candidate wins). File-system checks go through the `exists`
argument so the logic is testable without a disk.
"""

from __future__ import annotations

import os.path
from collections.abc import Callable

_EXECUTABLE = "@executable_path/"
_LOADER = "@loader_path/"
_RPATH = "@rpath/"

#: Prefixes whose libraries macOS 11+ ships only inside the dyld shared cache (no file on disk).
SHARED_CACHE_PREFIXES = ("/usr/lib/", "/System/Library/", "/System/iOSSupport/")


def _expand_anchor(path: str, executable_path: str, loader_path: str) -> str | None:
    """Expand @executable_path/ or @loader_path/ at the start of `path`; None for other @-tokens."""
    if path.startswith(_EXECUTABLE):
        return os.path.normpath(os.path.join(os.path.dirname(executable_path), path[len(_EXECUTABLE):]))
    if path.startswith(_LOADER):
        return os.path.normpath(os.path.join(os.path.dirname(loader_path), path[len(_LOADER):]))
    if path.startswith("@"):
        return None
    return os.path.normpath(path)


def rpath_candidates(name: str, *, executable_path: str, loader_path: str, rpaths: list[str]) -> list[str]:
    """Every path an `@rpath/` name could resolve to, in dyld's search order.

    Relative rpaths (neither absolute nor @-anchored) depend on the process's working directory,
    which we cannot know, so they are skipped, as are rpaths using other @-tokens.
    """
    rest = name[len(_RPATH):]
    out: list[str] = []
    for rp in rpaths:
        base = _expand_anchor(rp, executable_path, loader_path)
        if base is None or not os.path.isabs(base):
            continue
        cand = os.path.normpath(os.path.join(base, rest))
        if cand not in out:
            out.append(cand)
    return out


def resolve_install_name(
    name: str,
    *,
    executable_path: str | None,
    loader_path: str,
    rpaths: list[str],
    exists: Callable[[str], bool],
) -> tuple[str | None, bool]:
    """(resolved path, whether it exists) for an install name found in the file at `loader_path`.

    `executable_path` is the main program that would load this file. When it is None (a dylib
    inspected on its own, with no program known) the loader's own path stands in for it, so
    `@executable_path/` is read relative to the loader's directory, which is what dyld does when
    the file is itself the main executable. A name with no slash or a relative path is left
    unresolved (None, False): dyld would search DYLD_* paths or the working directory, which are
    properties of a process, not of the file. For `@rpath/`, the first candidate that exists wins;
    when none exists the first candidate is returned with False.
    """
    exe = executable_path if executable_path is not None else loader_path
    if name.startswith(_RPATH):
        candidates = rpath_candidates(name, executable_path=exe, loader_path=loader_path, rpaths=rpaths)
        for cand in candidates:
            if exists(cand):
                return cand, True
        return (candidates[0], False) if candidates else (None, False)
    if "/" not in name:
        return None, False
    expanded = _expand_anchor(name, exe, loader_path)
    if expanded is None or not os.path.isabs(expanded):
        return None, False
    return expanded, bool(exists(expanded))


def in_shared_cache_path(path: str) -> bool:
    """True for system library paths that macOS 11+ serves from the dyld shared cache.

    Since macOS 11 the system dylibs and frameworks under /usr/lib and /System/Library are not
    present as files; dyld finds them inside the shared cache. A reference to such a path that does
    not exist on disk is therefore normal, and the tables report it as `in_shared_cache` rather
    than as a missing library. This is a path test only: it cannot tell whether a given name really
    is in the cache of a given OS build. The path is normalised first so `/usr/lib/../../tmp/x`
    does not pass.
    """
    if not path.startswith("/"):
        return False
    norm = os.path.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm.startswith(SHARED_CACHE_PREFIXES)

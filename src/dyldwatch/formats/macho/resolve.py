"""Where dyld would find a dylib an install name refers to.

Mirrors dyld's Loader::forEachResolvedAtPathVar and ProcessConfig::PathOverrides (dyld
dyld/Loader.cpp, dyld/DyldProcessConfig.cpp): `@loader_path` and `@executable_path` are the token
followed by `/` or the end of the string; `@rpath/` walks the rpath stack, the loading image's
LC_RPATHs first, then each image up the load chain to the main executable; the first existing
candidate wins. What depends on the process rather than on files (a relative LC_RPATH, tried
against the working directory; the fallback directories of pre-2022-SDK binaries) cannot be
resolved, so it is reported as a planting vector. File-system checks go through the `exists` and
`realpath` arguments so the logic is testable without a disk.
"""

from __future__ import annotations

import os.path
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_EXECUTABLE = "@executable_path"
_LOADER = "@loader_path"
_RPATH = "@rpath/"

#: Prefixes whose libraries dyld looks for in the shared cache (dyld mach_o/UnsafeHeader.cpp
#: isSharedCacheEligiblePath); the one list for every table.
SHARED_CACHE_PREFIXES = (
    "/usr/lib/",
    "/System/Library/",
    "/System/iOSSupport/usr/lib/",
    "/System/iOSSupport/System/Library/",
    "/Library/Apple/usr/lib/",
    "/Library/Apple/System/Library/",
    "/System/DriverKit/",
    "/System/Cryptexes/OS/usr/lib/",
    "/System/Cryptexes/OS/System/Library/",
    "/System/Cryptexes/OS/System/iOSSupport/usr/lib/",
    "/System/Cryptexes/OS/System/iOSSupport/System/Library/",
    "/System/ExclaveKit/usr/lib/",
    "/System/ExclaveKit/System/Library/",
)

#: dyld's default fallbacks for binaries built before the 2022 SDKs, in classic mode (dyld
#: DyldProcessConfig.cpp forEachDylibFallback / forEachFrameworkFallback; restricted processes keep
#: only the second of each).
DYLIB_FALLBACKS = ("/usr/local/lib", "/usr/lib")
FRAMEWORK_FALLBACKS = ("/Library/Frameworks", "/System/Library/Frameworks")
#: macOS SDK from which a binary no longer gets fallbacks (dyld common/MachOFile.cpp enforceFormat,
#: Malformed::sdkOnOrAfter2022: sdk >= 0x000E0000 on macOS).
FALLBACK_FREE_SDK = (14, 0)

Realpath = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One path dyld would try: how it was formed, and which image's LC_RPATH supplied it."""

    path: str
    via: str  # absolute | loader_path | executable_path | rpath | relative_rpath | fallback
    source: str | None = None
    rpath: str | None = None


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of resolving one install name.

    `path` is the first existing candidate, else the first candidate (None when there is none);
    `source` is the image whose LC_RPATH supplied `path`; `planting` says why a file placed
    somewhere else could be loaded instead, in words.
    """

    path: str | None
    exists: bool
    source: str | None = None
    candidates: tuple[Candidate, ...] = ()
    planting: tuple[str, ...] = field(default=())


def physical_path(path: str, realpath: Realpath | None = None) -> str:
    """`path` with `..` applied after the symlinks before it, as the kernel's lookup does.

    Without `realpath` the path is normalised lexically (the best a pure caller can do). With it,
    the prefix before each `..` is resolved first, so `/a/link/../x` follows `link`. The final
    component is never resolved: the name dyld opens is kept.
    """
    if realpath is None or "/.." not in path:
        return posixpath.normpath(path) if path else path
    out = "/" if path.startswith("/") else ""
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            out = posixpath.dirname(realpath(out) if out not in ("", "/") else out) or out
        else:
            out = posixpath.join(out, part) if out else part
    return out or "/"


def _token(path: str, token: str) -> str | None:
    """The rest after `token` when `path` is the token followed by `/` or the end; else None."""
    if not path.startswith(token):
        return None
    rest = path[len(token):]
    return rest if rest == "" or rest.startswith("/") else None


def _expand_executable(rest: str, executable_path: str) -> str:
    """dyld Loader::expandAndNormalizeAtExecutablePath: leading `/..` chopped off the (real) main path."""
    base = posixpath.dirname(executable_path)
    while rest.startswith("/..") and (len(rest) == 3 or rest[3] == "/") and base not in ("", "/"):
        base = posixpath.dirname(base)
        rest = rest[3:]
    return base + rest


def _expand_anchor(path: str, executable_path: str, loader_path: str, realpath: Realpath | None) -> str | None:
    """Expand @executable_path or @loader_path at the start of `path`; None for other @-tokens."""
    rest = _token(path, _EXECUTABLE)
    if rest is not None:
        return physical_path(_expand_executable(rest, executable_path), realpath)
    rest = _token(path, _LOADER)
    if rest is not None:
        return physical_path(posixpath.dirname(loader_path) + rest, realpath)
    if path.startswith("@"):
        return None
    return physical_path(path, realpath)


def _rpath_candidates(rest: str, executable_path: str, stack: Sequence[tuple[str, Sequence[str]]],
                      realpath: Realpath | None) -> list[Candidate]:
    out: list[Candidate] = []
    seen: set[str] = set()
    for image, rpaths in stack:
        for rp in rpaths:
            if not rp.startswith("/") and not rp.startswith("@"):
                # dyld (macOS) joins a relative LC_RPATH as is: the working directory decides
                out.append(Candidate(posixpath.join(rp, rest), "relative_rpath", image, rp))
                continue
            base = _expand_anchor(rp, executable_path, image, realpath)
            if base is None or not base.startswith("/"):
                continue
            cand = physical_path(posixpath.join(base, rest), realpath)
            if cand not in seen:
                seen.add(cand)
                out.append(Candidate(cand, "rpath", image, rp))
    return out


def rpath_candidates(name: str, *, executable_path: str, loader_path: str, rpaths: list[str]) -> list[str]:
    """Every absolute path an `@rpath/` name could resolve to from the loader's own LC_RPATHs."""
    found = _rpath_candidates(name[len(_RPATH):], executable_path, [(loader_path, rpaths)], None)
    return [c.path for c in found if c.via == "rpath"]


def _framework_partial(name: str) -> str | None:
    """`Foo.framework/...Foo` tail of an install name (dyld's getFrameworkPartialPath), or None."""
    parts = name.split("/")
    for i, part in enumerate(parts[:-1]):
        if part.endswith(".framework") and parts[-1] == part[: -len(".framework")]:
            return "/".join(parts[i:])
    return None


def fallback_candidates(name: str) -> list[Candidate]:
    """Where a pre-2022-SDK binary's missing dylib is looked for next (classic mode order)."""
    partial = _framework_partial(name)
    if partial is not None:
        return [Candidate(f"{d}/{partial}", "fallback") for d in FRAMEWORK_FALLBACKS]
    leaf = name.rsplit("/", 1)[-1]
    if not leaf:
        return []
    return [Candidate(f"{d}/{leaf}", "fallback") for d in DYLIB_FALLBACKS]


def needs_fallbacks(sdk: str | None, platform: str | None) -> bool:
    """Whether dyld gives a binary the default fallback paths (built with a macOS SDK before 14)."""
    if platform not in (None, "macos"):
        return False
    if not sdk:
        return True  # no platform load command: dyld's enforceFormat answers false, so fallbacks apply
    try:
        major, minor = (int(x) for x in (sdk.split(".") + ["0"])[:2])
    except ValueError:
        return True
    return (major, minor) < FALLBACK_FREE_SDK


@dataclass(frozen=True, slots=True)
class Plan:
    """What resolving one install name needs from files, worked out once: the candidates in order
    (then the fallbacks, tried only when none exists and the path is not served from the shared
    cache) and the planting vectors that do not depend on which candidate exists. `settle` turns
    a plan into a Resolution against the file system as it is now."""

    candidates: tuple[Candidate, ...] = ()
    fallbacks: tuple[Candidate, ...] = ()
    planting: tuple[str, ...] = ()
    fallback_note: str | None = None
    unresolvable: bool = False

    def outcome(self, exists: Callable[[str], bool]) -> int:
        """Index of the first existing candidate (fallbacks counted after the candidates), or -1."""
        if self.unresolvable:
            return -1
        for i, c in enumerate(self.candidates):
            if c.via != "relative_rpath" and exists(c.path):
                return i
        base = len(self.candidates)
        for i, c in enumerate(self.fallbacks):
            if exists(c.path):
                return base + i
        return -1

    def settle(self, found: int) -> Resolution:
        """The Resolution when `found` (from `outcome`) is the first existing candidate."""
        if self.unresolvable:
            return Resolution(None, False)
        planting = self.planting
        candidates = self.candidates
        if found < 0 or found >= len(candidates):
            if self.fallbacks:
                candidates = (*candidates, *self.fallbacks)
            if self.fallback_note:
                planting = (*planting, self.fallback_note)
        if found >= 0:
            hit = candidates[found]
            return Resolution(hit.path, True, hit.source, candidates, planting)
        first = next((c for c in candidates if c.via not in ("relative_rpath", "fallback")), None)
        return Resolution(first.path if first else None, False, first.source if first else None,
                          candidates, planting)


def plan_dylib(
    name: str,
    *,
    loader_path: str,
    rpaths: Sequence[str],
    executable_path: str | None = None,
    rpath_stack: Sequence[tuple[str, Sequence[str]]] = (),
    realpath: Realpath | None = None,
    fallbacks: bool = False,
) -> Plan:
    """The candidates of an install name (see resolve_dylib); no existence check is made here.
    `realpath` is called only for paths holding `/..` (the plan then depends on symlinks too)."""
    exe = executable_path if executable_path is not None else loader_path
    planting: list[str] = []
    if name.startswith(_RPATH):
        stack = [(loader_path, rpaths), *rpath_stack]
        candidates = _rpath_candidates(name[len(_RPATH):], exe, stack, realpath)
        for c in candidates:
            if c.via == "relative_rpath":
                planting.append(f"relative LC_RPATH '{c.rpath}' of {c.source}: dyld tries '{c.path}' "
                                "against the process's working directory")
    elif "/" not in name:
        return Plan(unresolvable=True)
    else:
        expanded = _expand_anchor(name, exe, loader_path, realpath)
        if expanded is None or not expanded.startswith("/"):
            return Plan(unresolvable=True)
        via = "executable_path" if _token(name, _EXECUTABLE) is not None else (
            "loader_path" if _token(name, _LOADER) is not None else "absolute")
        candidates = [Candidate(expanded, via)]
    # dyld tries the raw path "including in the shared cache" before any fallback
    # (dyld/DyldProcessConfig.cpp forEachPathVariant): a cache-eligible path ends the search there.
    in_cache = any(c.via != "relative_rpath" and in_shared_cache_path(c.path) for c in candidates)
    extra: list[Candidate] = []
    note = None
    if fallbacks and not in_cache:
        known = {x.path for x in candidates}
        extra = [c for c in fallback_candidates(name) if c.path not in known]
        if extra:
            note = "pre-2022-SDK binary: a missing dylib is looked for in " + ", ".join(c.path for c in extra)
    return Plan(tuple(candidates), tuple(extra), tuple(planting), note)


def resolve_dylib(
    name: str,
    *,
    loader_path: str,
    rpaths: Sequence[str],
    exists: Callable[[str], bool],
    executable_path: str | None = None,
    rpath_stack: Sequence[tuple[str, Sequence[str]]] = (),
    realpath: Realpath | None = None,
    fallbacks: bool = False,
) -> Resolution:
    """Resolve an install name found in the file at `loader_path` the way dyld would.

    `rpath_stack` lists the images above the loader in the load chain, nearest first, ending with
    the main executable, each with its LC_RPATHs. `executable_path` is the main program (the loader
    stands in for it when None, which is what dyld does when the file is itself the main
    executable). `fallbacks` says the loading image was built before the 2022 SDKs; its missing
    dylibs are then looked for in dyld's fallback directories, reported in `planting`. A bare leaf
    name or a relative path is left unresolved: DYLD_* variables and the working directory are
    properties of a process. (plan_dylib, then Plan.outcome and Plan.settle.)
    """
    plan = plan_dylib(name, loader_path=loader_path, rpaths=rpaths, executable_path=executable_path,
                      rpath_stack=rpath_stack, realpath=realpath, fallbacks=fallbacks)
    return plan.settle(plan.outcome(exists))


def resolve_install_name(
    name: str,
    *,
    executable_path: str | None,
    loader_path: str,
    rpaths: list[str],
    exists: Callable[[str], bool],
) -> tuple[str | None, bool]:
    """(resolved path, whether it exists) from the loader's own LC_RPATHs: the short form."""
    r = resolve_dylib(name, loader_path=loader_path, rpaths=rpaths, exists=exists, executable_path=executable_path)
    return r.path, r.exists


def bundle_main_executable(path: str, read_plist: Callable[[str], dict | None] | None = None) -> str | None:
    """The main executable of the innermost `.app` bundle holding `path` (None outside a bundle).

    dyld's rpath stack ends at the main executable, so a framework or plug-in inside an app is
    resolved with the app's executable as the head of the chain. CFBundleExecutable from
    Contents/Info.plist names it; the bundle's base name stands in when that cannot be read.
    """
    marker = ".app/Contents/"
    at = path.rfind(marker)
    if at < 0:
        return None
    bundle = path[: at + 4]
    name = posixpath.basename(bundle)[:-4]
    info = (read_plist or _read_plist)(posixpath.join(bundle, "Contents", "Info.plist"))
    exe = info.get("CFBundleExecutable") if isinstance(info, dict) else None
    if isinstance(exe, str) and exe and "/" not in exe:
        name = exe
    return posixpath.join(bundle, "Contents", "MacOS", name)


def _read_plist(path: str) -> dict | None:
    import plistlib

    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 20)
        value = plistlib.loads(data)
    except Exception:  # absent, unreadable, not a plist: the caller falls back to the bundle name
        return None
    return value if isinstance(value, dict) else None


def in_shared_cache_path(path: str) -> bool:
    """True for the paths dyld looks up in its shared cache (SHARED_CACHE_PREFIXES).

    Since macOS 11 those system libraries are not present as files; a reference to one that does
    not exist on disk is normal, and the tables report it as `in_shared_cache` rather than as a
    missing library. A path test only: it cannot tell whether a name is in a given cache. The path
    is normalised first so `/usr/lib/../../tmp/x` does not pass.
    """
    if not path.startswith("/"):
        return False
    norm = os.path.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm.startswith(SHARED_CACHE_PREFIXES)

"""osquery's file-pattern expansion (osquery/filesystem/filesystem.cpp genGlobs + posix platformGlob).

SQL `LIKE` patterns on path-keyed tables become glibc glob(3) patterns: `%` turns into `*`, and a
pattern ending in `%%` (`**`) globs one level and then walks every directory below it (depth 64,
each directory once by device/inode). glob runs with GLOB_MARK, so directories come back with a
trailing slash, which is how file/folder limits are applied. glibc's own glob is called through
ctypes so brace, tilde, bracket and dotfile rules are exactly osquery's; Python's glob is the
fallback where glibc is missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob as pyglob
import os
import stat

GLOB_FILES, GLOB_FOLDERS = 1, 2
GLOB_ALL = GLOB_FILES | GLOB_FOLDERS
GLOB_NO_CANON = 4
#: kMaxRecursiveGlobs (filesystem.cpp)
MAX_RECURSIVE_GLOBS = 64

_GLOB_MARK, _GLOB_BRACE, _GLOB_TILDE = 1 << 1, 1 << 10, 1 << 12


class _GlobT(ctypes.Structure):
    _fields_ = [("gl_pathc", ctypes.c_size_t), ("gl_pathv", ctypes.POINTER(ctypes.c_char_p)),
                ("gl_offs", ctypes.c_size_t), ("gl_flags", ctypes.c_int),
                ("_funcs", ctypes.c_void_p * 5)]


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        lib.glob.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(_GlobT)]
        lib.globfree.argtypes = [ctypes.POINTER(_GlobT)]
        return lib
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def platform_glob(pattern: str) -> list[str]:
    """platformGlob (osquery/filesystem/posix/fileops.cpp): glob(GLOB_TILDE|GLOB_MARK|GLOB_BRACE)."""
    if _LIBC is None:
        out = []
        for p in sorted(pyglob.glob(os.path.expanduser(pattern))):
            out.append(p + "/" if os.path.isdir(p) and not p.endswith("/") else p)
        return out
    g = _GlobT()
    _LIBC.glob(os.fsencode(pattern), _GLOB_TILDE | _GLOB_MARK | _GLOB_BRACE, None, ctypes.byref(g))
    try:
        return [os.fsdecode(g.gl_pathv[i]) for i in range(g.gl_pathc)]
    finally:
        _LIBC.globfree(ctypes.byref(g))


def replace_wildcards(pattern: str, limits: int) -> str:
    """replaceGlobWildcards (filesystem.cpp): % -> *, relative patterns made absolute, and the part
    before the first * canonicalised unless GLOB_NO_CANON."""
    pattern = pattern.replace("%", "*")
    if (not pattern or (pattern[0] not in "/\\" and len(pattern) > 3 and pattern[1] != ":"
                        and pattern[2] not in "\\/")) and not pattern.startswith("~"):
        pattern = os.path.join(os.getcwd(), pattern)
    base = pattern[: pattern.find("*")] if "*" in pattern else pattern
    if base and not limits & GLOB_NO_CANON:
        try:
            canon = os.path.realpath(base, strict=True)
        except OSError:
            canon = ""
        if canon and canon != base:
            if os.path.isdir(canon):
                canon += "/"
            pattern = canon + pattern[len(base):]
    return pattern


def _dfs(current: str, visited: set[tuple[int, int]], results: list[str], depth: int) -> None:
    """dfsTraverseDirectories (filesystem.cpp): every entry below `current`, directories marked."""
    if depth >= MAX_RECURSIVE_GLOBS or not current:
        return
    try:
        st = os.lstat(current)
        key = (st.st_dev, st.st_ino)
        if key in visited:
            return
        visited.add(key)
    except OSError:
        pass
    if not os.path.isdir(current):
        return
    try:
        entries = list(os.scandir(current))
    except OSError:
        return
    for entry in entries:
        path = current + entry.name if current.endswith("/") else current + "/" + entry.name
        try:
            is_dir = stat.S_ISDIR(os.stat(path).st_mode)
        except OSError:
            is_dir = False
        if is_dir:
            path += "/"
        results.append(path)
        if is_dir:
            _dfs(path, visited, results, depth + 1)


def resolve_file_pattern(pattern: str, limits: int = GLOB_ALL) -> list[str]:
    """resolveFilePattern / genGlobs (filesystem.cpp)."""
    pattern = replace_wildcards(pattern, limits)
    results: list[str] = []
    if pattern.endswith("**"):
        visited: set[tuple[int, int]] = set()
        for base in platform_glob(pattern[:-1]):
            results.append(base)
            if os.path.isdir(base):
                _dfs(base, visited, results, 0)
    else:
        results += platform_glob(pattern)
    return [r for r in results if (r.endswith("/") and limits & GLOB_FOLDERS)
            or (not r.endswith("/") and limits & GLOB_FILES)]


def list_files_in_directory(path: str) -> list[str]:
    """listFilesInDirectory(path, recursive=false) (filesystem.cpp): the files (not directories)
    matched by `path/*`; nothing when the directory is missing."""
    if not os.path.isdir(path):
        return []
    return resolve_file_pattern(path + "*" if path.endswith("/") else path + "/*", GLOB_FILES)

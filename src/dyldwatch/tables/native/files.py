"""osquery's `file` (osquery/tables/utility/file.cpp, POSIX branch): stat of constrained paths.

`path` and `directory` are required (osquery returns nothing and warns without either). `path =`
values and `path LIKE` patterns (expanded by osquery's glob rules, `%` one level, `%%` recursive)
are stat'ed one by one; `directory =`/`LIKE` lists each matching directory's entries. Matches of a
path pattern that are directories carry osquery's trailing slash, so their `filename` is "." and
their `directory` the directory itself (boost::filesystem v3 path semantics).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from typing import Any

from ..base import QueryContext
from .globbing import GLOB_ALL, GLOB_FOLDERS, GLOB_NO_CANON, resolve_file_pattern
from .osq import typed

log = logging.getLogger(__name__)

# specs/utility/file.table (+ the Linux extended schema; mount_namespace_id is never set here)
FILE_COLUMNS: dict[str, str] = {
    "path": "TEXT", "directory": "TEXT", "filename": "TEXT", "inode": "BIGINT", "uid": "BIGINT",
    "gid": "BIGINT", "mode": "TEXT", "device": "BIGINT", "size": "BIGINT", "block_size": "INTEGER",
    "atime": "BIGINT", "mtime": "BIGINT", "ctime": "BIGINT", "btime": "BIGINT", "hard_links": "INTEGER",
    "symlink": "INTEGER", "type": "TEXT", "symlink_target_path": "TEXT", "pid_with_namespace": "INTEGER",
    "mount_namespace_id": "TEXT",
}

_TYPE_NAMES = {stat.S_IFREG: "regular", stat.S_IFDIR: "directory", stat.S_IFLNK: "symlink",
               stat.S_IFBLK: "block", stat.S_IFCHR: "character", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}


def filename(path: str) -> str:
    """boost::filesystem (v3, osquery's 1.77) path::filename: "." after a trailing slash."""
    if path == "" or path.strip("/") == "":
        return "/" if path else ""
    if path.endswith("/"):
        return "."
    return path.rsplit("/", 1)[-1]


def parent_path(path: str) -> str:
    """boost::filesystem v3 path::parent_path: the path minus its last element and separators."""
    if path.strip("/") == "":
        return ""
    if path.endswith("/"):
        return path.rstrip("/") or "/"
    head = path.rsplit("/", 1)[0] if "/" in path else ""
    if "/" in path and head.strip("/") == "":
        return "/" if path.startswith("/") else head
    return head.rstrip("/") or head


def lsperms(mode: int) -> str:
    """lsperms (filesystem.cpp): four octal digits, special bits first."""
    return "".join(str((mode >> s) & 7) for s in (9, 6, 3, 0))


def _type_name(path: str) -> str:
    """fs::status(path).type() through kTypeNames: follows links; missing is "unknown", any other
    error "error"."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "unknown"
    except OSError:
        return "error"
    return _TYPE_NAMES.get(stat.S_IFMT(st.st_mode), "unknown")


def file_info(path: str, parent: str) -> dict[str, str] | None:
    """genFileInfoPosix: lstat for the link bits, stat (falling back to lstat) for the rest."""
    try:
        lst = os.lstat(path)
    except OSError:
        return None
    r = {"path": path, "filename": filename(path), "directory": parent, "symlink": "0"}
    if stat.S_ISLNK(lst.st_mode):
        r["symlink"] = "1"
        try:
            r["symlink_target_path"] = os.readlink(path)
        except OSError:
            r["symlink_target_path"] = ""
    try:
        st = os.stat(path)
    except OSError:
        st = lst
    r.update(inode=str(st.st_ino), uid=str(st.st_uid), gid=str(st.st_gid), mode=lsperms(st.st_mode),
             device=str(st.st_rdev), size=str(st.st_size), block_size=str(st.st_blksize),
             hard_links=str(st.st_nlink), atime=str(int(st.st_atime)), mtime=str(int(st.st_mtime)),
             ctime=str(int(st.st_ctime)), btime="0", pid_with_namespace="0", type=_type_name(path))
    return r


def _constrained(ctx: QueryContext, column: str, limits: int) -> list[str]:
    """getPathsFromConstraints / getDirsFromConstraints: `=` values plus expanded LIKE patterns,
    as a std::set (sorted, unique)."""
    out = set(ctx.equals(column))
    for pattern in ctx.like(column):
        out.update(resolve_file_pattern(pattern, limits | GLOB_NO_CANON))
    return sorted(out)


def file_table(ctx: QueryContext) -> Iterator[dict[str, Any]]:
    """genFilePosix."""
    if not (ctx.has("path") or ctx.has("directory")):
        log.warning("Table file was queried without a required column in the WHERE clause")
        return
    for path in _constrained(ctx, "path", GLOB_ALL):
        row = file_info(path, parent_path(path))
        if row is not None:
            yield typed(row, FILE_COLUMNS)
    for directory in _constrained(ctx, "directory", GLOB_FOLDERS):
        if not (os.path.exists(directory) and os.access(directory, os.R_OK) and os.path.isdir(directory)):
            continue
        try:
            names = [e.name for e in os.scandir(directory)]
        except OSError:
            continue
        for name in names:
            child = directory + name if directory.endswith("/") else directory + "/" + name
            row = file_info(child, directory)
            if row is not None:
                yield typed(row, FILE_COLUMNS)

"""Path constraints to file lists, with the semantics of osquery's own `file` table.

- `path = '/x'` (and each `IN` value): that file, reported even when it is not a candidate.
- `path LIKE '/dir/%'`: entries one level down; `%` may also stand in middle components
  (`/Users/%/Library/%.dylib`), `_` matches one character.
- `path LIKE '/dir/%%'`: everything below /dir, recursively (bounded; symlinked directories are
  not followed, so a link loop cannot make the walk endless).
- `directory = '/dir'`: the entries of /dir.
The caller hands over plain lists (PathConstraints); tables.base translates a query context into them.
Pattern and directory expansions skip directories; the caller decides what to do with other
non-candidates (e.g. a file that is not Mach-O) because only it knows what a candidate is.
"""

from __future__ import annotations

import glob
import logging
import operator
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from .files import FileKey, stat_key

log = logging.getLogger(__name__)

#: Upper bound on files one query may expand to (a runaway `%%` on `/` stops here, logged).
MAX_FILES = 200_000
#: Upper bound on directory depth for `%%`.
MAX_DEPTH = 32


#: A directory's stamp is trusted only when its last change is at least this much older than the
#: listing: a change within the same timestamp tick (1 s on HFS+, 2 s on FAT) would not move it.
SETTLED_NS = 3_000_000_000

#: The directory listings an expansion read, each with the version the directory had just before
#: (its FileKey: adding, removing or renaming an entry moves its mtime, a change of its
#: permissions its ctime);
#: a stamp of None means the files found depend on more than that listing (a glob, a symlink to a
#: directory, the file limit, a directory changed too recently to tell), so only a fresh
#: expansion can say whether they changed.
Listings = list[tuple[str, "FileKey | None"]]


def dir_stamp(path: str) -> FileKey | None:
    """The version of a directory about to be listed, or None when it cannot stand for the
    listing (unreadable, or changed too recently to tell a later change in the same tick)."""
    now = time.time_ns()
    key = stat_key(path)
    if key is None or max(key.mtime_ns, key.ctime_ns) > now - SETTLED_NS:
        return None
    return key


def listings_unchanged(listings: tuple[tuple[str, FileKey], ...]) -> bool:
    """Whether every directory still has the stamp it had when listed: then each lists the same
    entries, of the same kinds, and an expansion would name the same files in the same order."""
    return all(dir_stamp(directory) == was for directory, was in listings)


class PathRequest(NamedTuple):
    """A file to inspect; `explicit` when the query named it (report even a non-candidate). A named
    tuple: one is made per file of every walk."""

    path: str
    explicit: bool


def like_to_glob(pattern: str) -> tuple[str, bool]:
    """Translate an osquery path LIKE pattern to a glob; the flag says `%%` asked for recursion."""
    recursive = pattern.endswith("%%")
    if recursive:
        pattern = pattern[:-2]
    out: list[str] = []
    for ch in pattern:
        if ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        else:
            out.append(glob.escape(ch))
    return "".join(out), recursive


def _walk(root: str, budget: list[int], bundles: tuple[str, ...] = (),
          listings: Listings | None = None) -> Iterator[str]:
    """Every non-directory entry below root, depth-first, bounded by depth and by budget[0].

    Directories whose names end with one of `bundles` (e.g. `.scptd`) are yielded whole instead of
    being descended into: to their table they are one object. Symbolic links are never followed,
    so what is found depends on the directories' own entries only (see Listings)."""
    stack: list[tuple[str, int]] = [(root, 0)]
    while stack:
        top, depth = stack.pop()
        if listings is not None:
            listings.append((top, dir_stamp(top)))
        try:
            with os.scandir(top) as it:
                entries = sorted(it, key=_NAME)
        except OSError as exc:
            log.debug("cannot list %s: %s", top, exc)
            if listings is not None:
                listings[-1] = (top, None)
            continue
        subdirs: list[str] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir and not (bundles and entry.name.endswith(bundles)):
                if depth + 1 < MAX_DEPTH:
                    subdirs.append(entry.path)
                continue
            if budget[0] <= 0:
                if listings is not None:
                    listings.append((top, None))
                return
            budget[0] -= 1
            yield entry.path
        stack.extend((d, depth + 1) for d in reversed(subdirs))


def _is_dir(path: str) -> bool:
    try:
        return os.path.isdir(path)
    except (OSError, ValueError):
        return False


def _is_bundle(path: str, bundles: tuple[str, ...]) -> bool:
    return bool(bundles) and path.rstrip("/").endswith(bundles)


def _expand_like(pattern: str, budget: list[int], bundles: tuple[str, ...] = (),
                 listings: Listings | None = None) -> Iterator[str]:
    globbed, recursive = like_to_glob(pattern)
    if (recursive and globbed.endswith("/") and not glob.has_magic(globbed) and _is_dir(globbed)
            and not _is_bundle(globbed, bundles)):
        # "/Applications/%%": one walk from a fixed directory, every listing of it stamped
        yield from _walk(globbed.rstrip("/") or "/", budget, bundles, listings)
        return
    if listings is not None:  # glob lists directories of its own, unstamped
        listings.append((pattern, None))
    if recursive:
        # "/dir/%%" walks every directory the prefix glob names; "/dir/lib%%" also matches files.
        for base in sorted(glob.iglob(globbed + "*" if not globbed.endswith("/") else globbed)):
            if (base.endswith("/") or _is_dir(base)) and not _is_bundle(base, bundles):
                yield from _walk(base.rstrip("/") or "/", budget, bundles)
            elif budget[0] > 0:
                budget[0] -= 1
                yield base
            if budget[0] <= 0:
                return
        return
    for hit in sorted(glob.iglob(globbed)):
        if _is_dir(hit) and not _is_bundle(hit, bundles):
            continue
        if budget[0] <= 0:
            return
        budget[0] -= 1
        yield hit


_NAME = operator.attrgetter("name")


def _list_dir(directory: str, budget: list[int], bundles: tuple[str, ...] = (),
              listings: Listings | None = None) -> list[str]:
    """The files of one directory, by name (a list: the listing is read whole anyway, and a repeated
    query compares it file by file)."""
    stamp = dir_stamp(directory) if listings is not None else None
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=_NAME)
    except OSError as exc:
        log.info("cannot list directory %s: %s", directory, exc)
        entries, stamp = [], None
    out: list[str] = []
    for entry in entries:
        try:
            if entry.is_dir() and not (bundles and entry.name.endswith(bundles)):
                if entry.is_symlink():  # left out for what it points to, which can change alone
                    stamp = None
                continue
        except OSError:
            pass
        if budget[0] <= 0:
            stamp = None
            break
        out.append(entry.path)
        budget[0] -= 1
    if listings is not None:
        listings.append((directory, stamp))
    return out


@dataclass(frozen=True)
class PathConstraints:
    """What a query asked for, as plain values: `path =`/`IN` values, `path LIKE` patterns,
    `directory =` values and `directory LIKE` patterns."""

    paths: tuple[str, ...] = ()
    path_likes: tuple[str, ...] = ()
    directories: tuple[str, ...] = ()
    directory_likes: tuple[str, ...] = ()

    @property
    def any(self) -> bool:
        return bool(self.paths or self.path_likes or self.directories or self.directory_likes)


def expand_paths(
    cons: PathConstraints, *, limit: int = MAX_FILES, bundles: tuple[str, ...] = (),
    listings: Listings | None = None,
) -> Iterator[PathRequest]:
    """Files named by the query's path and directory constraints, de-duplicated, bounded.

    `bundles` names directory suffixes that count as one object (script bundles, applets).
    `listings`, when given, receives the directory listings read, with their stamps: while none is
    None and every directory keeps its stamp, the same constraints expand to the same files."""
    seen: set[str] = {""}  # an empty value names nothing
    budget = [limit]

    for path in cons.paths:
        if path not in seen:
            seen.add(path)
            yield PathRequest(path, True)
    for pattern in cons.path_likes:
        for hit in _expand_like(pattern, budget, bundles, listings):
            if hit not in seen:
                seen.add(hit)
                yield PathRequest(hit, False)
    for directory in cons.directories:
        for hit in _list_dir(directory, budget, bundles, listings):
            if hit not in seen:
                seen.add(hit)
                yield PathRequest(hit, False)
    for pattern in cons.directory_likes:
        if listings is not None:
            listings.append((pattern, None))
        globbed, recursive = like_to_glob(pattern)
        for d in sorted(glob.iglob(globbed)):
            if not _is_dir(d):
                continue
            for hit in _walk(d, budget, bundles) if recursive else _list_dir(d, budget, bundles):
                if hit not in seen:
                    seen.add(hit)
                    yield PathRequest(hit, False)
    if budget[0] <= 0:
        log.warning("path expansion stopped at %d files; narrow the path constraint", limit)

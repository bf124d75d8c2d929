"""dylib_provenance: where a library file came from and whether a non-root user could replace it.

One row per file named by a `path`/`directory` constraint (osquery `file`-table semantics), or
per executable image mapped by the processes a `pid` constraint names. Everything is read from
file metadata and extended attributes; the file's content is never read here (only the Mach-O
signing summary, delegated to macho_info, opens it, and only when those columns are asked for).

Symlinks are followed for stat, birth time and attributes because dyld and ld.so load the
target; the directories of both the named path and the resolved path count for `user_writable`.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from ..formats.provenance import (
    PROVENANCE_XATTR,
    PROVENANCE_XATTRS,
    QUARANTINE_XATTR,
    WHERE_FROMS_XATTR,
    XDG_ORIGIN_XATTR,
    XDG_REFERRER_XATTR,
    Platform,
    decode_provenance,
    decode_quarantine,
    decode_where_froms,
    decode_xdg_url,
    first_writable,
    is_system_path,
    mode_text,
    platform_of,
    where_froms_json,
)
from ..host import quarantine_events
from ..host.cache import BoundedCache
from ..host.files import FileKey, describe_mode, os_error_message
from ..host.pathfacts import DirMemo, path_facts
from ..host.paths import expand_paths
from ..host.statx import birth_time
from ..host.xattrs import XattrValues, read_xattrs
from ._macho import signing_summary as macho_signing_summary
from .base import (
    BIGINT,
    DIRECTORY_KEY,
    INTEGER,
    OPTIMIZED,
    PATH_KEY,
    REQUIRED,
    TEXT,
    Column,
    QueryContext,
    Row,
    Table,
    has_path_constraint,
    path_constraints,
)

log = logging.getLogger(__name__)

XattrReader = Callable[[str, Iterable[str]], XattrValues]
QuarantineDbFor = Callable[[int], "str | None"]
Signing = Callable[[str], "tuple[str | None, str | None]"]


# ------------------------------------------------------------------------------- process images


@dataclass(frozen=True, slots=True)
class MappedImage:
    """An executable file a process has mapped; `deleted` when the kernel says it was unlinked."""

    path: str
    deleted: bool = False


def process_images(pid: int) -> list[MappedImage]:
    """Executable images of `pid` via the shared process reader ([] when it is gone or unreadable)."""
    try:
        from ..host.processes import process_reader
        from ..host.regions import group_images
    except ImportError as exc:  # pragma: no cover - the process layer ships with the package
        log.info("process images unavailable: %s", exc)
        return []
    try:
        return [MappedImage(i.path, i.deleted) for i in group_images(process_reader().image_regions(pid)) if i.path]
    except OSError as exc:
        log.debug("cannot read images of pid %d: %s", pid, exc)
        return []


def foreign_root(pid: int) -> bool:
    """Whether `pid` sees another root directory (container, chroot): its map paths are not ours.

    Only answerable where /proc/PID/root exists (Linux); elsewhere False.
    """
    try:
        theirs = os.stat(f"/proc/{pid}/root")
        ours = os.stat("/")
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino)


def image_paths(pid: int) -> list[str]:
    """Paths of the executable images `pid` has mapped (the boundary to the process layer)."""
    return [i.path for i in process_images(pid)]


# ------------------------------------------------------------------------------- signing


def signing_summary(path: str) -> tuple[str | None, str | None]:
    """(signature_type, team_id) from macho_info's parser and cache; (None, None) for non-Mach-O."""
    try:
        return macho_signing_summary(path)
    except Exception as exc:  # another table's bug must not cost this table its rows
        log.debug("signing summary failed for %s: %s", path, exc)
        return None, None


# ------------------------------------------------------------------------------- per-file facts


def _why(exc: OSError | ValueError) -> str:
    return os_error_message(exc) if isinstance(exc, OSError) else "invalid path (embedded NUL)"


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What depends only on one version of the file (cached by its FileKey)."""

    btime: int | None
    columns: tuple[tuple[str, Any], ...]
    notes: tuple[str, ...]
    quarantine_event: str | None


def decode_xattrs(found: XattrValues) -> tuple[dict[str, Any], list[str], str | None]:
    """Columns from raw attribute values, notes about undecodable ones, and the quarantine event id."""
    cols: dict[str, Any] = {"quarantined": 0}
    notes = list(found.problems)
    event: str | None = None
    v = found.values
    if (raw := v.get(QUARANTINE_XATTR)) is not None:
        q = decode_quarantine(raw)
        approved = q.user_approved
        cols.update(
            quarantined=1,
            quarantine_flags=q.flags,
            quarantine_agent=q.agent,
            quarantine_time=q.time,
            quarantine_event_id=q.event_id,
            quarantine_user_approved=None if approved is None else int(approved),
        )
        event = q.event_id
        if q.problem:
            notes.append(q.problem)
    if (raw := v.get(WHERE_FROMS_XATTR)) is not None:
        urls, problem = decode_where_froms(raw)
        cols["where_froms"] = where_froms_json(urls)
        if problem:
            notes.append(problem)
    if (raw := v.get(PROVENANCE_XATTR)) is not None:
        ident, problem = decode_provenance(raw)
        cols["provenance_id"] = ident
        if problem:
            notes.append(problem)
    if (raw := v.get(XDG_ORIGIN_XATTR)) is not None:
        cols["origin_url"] = decode_xdg_url(raw)
    if (raw := v.get(XDG_REFERRER_XATTR)) is not None:
        cols["referrer_url"] = decode_xdg_url(raw)
    return cols, notes, event


class DylibProvenanceTable(Table):
    name: ClassVar[str] = "dylib_provenance"
    row_keys = ("path", "directory", "pid")
    description: ClassVar[str] = (
        "Provenance of library files: download origin (quarantine, where-froms, xdg origin URL, "
        "provenance id), timestamps including birth time, whether a non-root user could replace "
        "the file, whether it sits where the OS vendor's libraries live, and its signing summary. "
        "Needs a path or directory constraint (like the file table) or a pid (every image it maps)."
    )
    columns: ClassVar[tuple[Column, ...]] = (
        Column("path", TEXT, "Path of the file (as named, or as the process mapped it)", PATH_KEY),
        Column("directory", TEXT, "Directory of the path", DIRECTORY_KEY),
        Column("pid", BIGINT, "Process whose mapped images are listed (NULL for path queries)", REQUIRED | OPTIMIZED),
        Column("exists", INTEGER, '1 when the path resolves to a file now (an SQL keyword: write it "exists")'),
        Column("system_path", INTEGER,
               "1 for the OS vendor's library locations: macOS /System, /usr (not /usr/local), /bin, /sbin, "
               "/Library/Apple, or a missing /usr/lib or /System/Library path (dyld shared cache); Linux "
               "distribution library directories, only when the file and every parent are root-owned and "
               "not user-writable"),
        Column("user_writable", INTEGER,
               "1 when the file or a directory above it (named or resolved path) is writable by a non-root "
               "user: world-writable (sticky too), group-writable by a group other than gid 0, or owned by "
               "a non-root user (who may chmod it)"),
        Column("writable_by", TEXT, "The nearest user-writable component and why, e.g. '/tmp (world-writable, sticky)'"),
        Column("uid", BIGINT, "Owner of the file (of the symlink target)"),
        Column("mode", TEXT, "Permission bits in octal as the file table shows them, e.g. '0755'"),
        Column("size", BIGINT, "Size in bytes"),
        Column("btime", BIGINT, "Birth (creation) time, Unix seconds; NULL where the filesystem has none"),
        Column("mtime", BIGINT, "Last content modification, Unix seconds"),
        Column("ctime", BIGINT, "Last metadata change, Unix seconds"),
        Column("quarantined", INTEGER, "1 when com.apple.quarantine is set (0 on Linux)"),
        Column("quarantine_flags", INTEGER, "Quarantine flags (shown as 4 hex digits in the attribute)"),
        Column("quarantine_agent", TEXT, "Application that downloaded the file (quarantine agent name)"),
        Column("quarantine_time", BIGINT, "When the file was quarantined, Unix seconds"),
        Column("quarantine_event_id", TEXT, "Quarantine event UUID (key into QuarantineEventsV2)"),
        Column("quarantine_user_approved", INTEGER, "1 when the user approved the file (flag 0x0040)"),
        Column("quarantine_data_url", TEXT,
               "Download URL of the quarantine event, from the owner's QuarantineEventsV2 when readable"),
        Column("quarantine_origin_url", TEXT,
               "Page the download came from, from the owner's QuarantineEventsV2 when readable"),
        Column("where_froms", TEXT, "com.apple.metadata:kMDItemWhereFroms as a compact JSON array of URLs"),
        Column("origin_url", TEXT, "user.xdg.origin.url (Chromium, curl --xattr, wget --xattr)"),
        Column("referrer_url", TEXT, "user.xdg.referrer.url"),
        Column("provenance_id", TEXT,
               "com.apple.provenance id (macOS 13+) as 0x + 16 hex digits: key of provenance_tracking in "
               "ExecPolicy; 'raw:<hex>' when the value has an unknown shape"),
        Column("signature_type", TEXT, "Mach-O signature: none, adhoc, linker-signed, certificate (NULL if not Mach-O)"),
        Column("team_id", TEXT, "Team identifier of a certificate-signed Mach-O"),
        Column("error", TEXT, "Why the file or part of its metadata could not be read"),
    )
    examples: ClassVar[tuple[str, ...]] = (
        "SELECT p.name, d.path, d.writable_by FROM processes p JOIN dylib_provenance d USING (pid) "
        "WHERE d.user_writable = 1 AND d.system_path = 0",
        "SELECT path, quarantine_agent, quarantine_data_url, where_froms FROM dylib_provenance "
        "WHERE path LIKE '/Users/%/Library/%%' AND quarantined = 1",
        "SELECT path, origin_url, btime FROM dylib_provenance WHERE directory = '/usr/local/lib'",
    )

    def __init__(
        self,
        *,
        platform: str | None = None,
        read_xattrs: XattrReader = read_xattrs,
        quarantine_db_for: QuarantineDbFor = quarantine_events.database_for_uid,
        images: Callable[[int], list[MappedImage]] = process_images,
        signing: Signing = signing_summary,
        cache_size: int = 8192,
    ) -> None:
        self.platform: Platform = platform_of(platform or sys.platform)
        self.read_xattrs = read_xattrs
        self.quarantine_db_for = quarantine_db_for
        self.images = images
        self.signing = signing
        self.cache: BoundedCache[FileFacts] = BoundedCache(cache_size)
        self._names = tuple(self.column_names())  # every row carries every column (NULL when unknown)

    # ---------------------------------------------------------------------------- generate

    def generate(self, ctx: QueryContext) -> Iterator[Row]:
        pids = ctx.equals_int("pid")
        if pids is None and not has_path_constraint(ctx):
            # osquery refuses a query with no key at all; here the key's value was empty (a join on ''
            # or NULL, which osquery drops): ordinary in joins, so said at INFO (--verbose).
            log.info("dylib_provenance: no path, directory or pid constraint; returning no rows "
                        "(try: WHERE pid = 1234, or directory = '/usr/local/lib')")
            return
        memo: DirMemo = {}
        real_memo: dict[str, str] = {}
        want_signing = ctx.uses("signature_type") or ctx.uses("team_id")
        if pids is not None:
            for pid in pids:
                chrooted = foreign_root(pid)
                for image in self.images(pid):
                    row = self.row(image.path, pid=pid, deleted=image.deleted, want_signing=want_signing,
                                   memo=memo, real_memo=real_memo)
                    if chrooted:
                        note = "process has another root (container or chroot); this row describes the host's file"
                        row["error"] = f"{row['error']}; {note}" if row["error"] else note
                    yield row
            return
        for req in expand_paths(path_constraints(ctx)):
            yield self.row(req.path, want_signing=want_signing, memo=memo, real_memo=real_memo)

    # ---------------------------------------------------------------------------- one file

    def row(
        self,
        path: str,
        *,
        pid: int | None = None,
        deleted: bool = False,
        want_signing: bool = True,
        memo: DirMemo | None = None,
        real_memo: dict[str, str] | None = None,
    ) -> Row:
        """The row for one path; never raises for anything the file system does."""
        memo = {} if memo is None else memo
        row: Row = dict.fromkeys(self._names)
        row.update(path=path, directory=os.path.dirname(path), pid=pid, exists=0, quarantined=0)
        notes: list[str] = []
        if deleted:
            notes.append("the mapped file was deleted; the path may now name another file or none")
        if path.startswith("/memfd:"):
            notes.append("memfd: an anonymous in-memory file, not on disk")
        try:
            lst = os.lstat(path)
        except (OSError, ValueError) as exc:
            return self._missing(row, path, notes, _why(exc), memo)
        try:
            st = os.stat(path)
        except (OSError, ValueError) as exc:
            why = _why(exc)
            if why == "no such file" and stat.S_ISLNK(lst.st_mode):
                why = "no such file (dangling symbolic link)"
            return self._missing(row, path, notes, why, memo)
        real = self._real(path, lst, real_memo)
        facts = path_facts(path, real, st, memo)
        writable = first_writable(facts)
        row.update(
            exists=1,
            uid=st.st_uid,
            mode=mode_text(st.st_mode),
            size=st.st_size,
            mtime=int(st.st_mtime),
            ctime=int(st.st_ctime),
            user_writable=1 if writable else 0,
            writable_by=writable,
            system_path=int(is_system_path(real, self.platform, exists=True, facts=facts)),
        )
        if not stat.S_ISREG(st.st_mode):
            row["btime"] = birth_time(real, st)
            notes.append(f"{describe_mode(st.st_mode)}, not read")
            return self._finish(row, notes)
        facts_key = (FileKey.of(real, st), want_signing)
        ff = self.cache.get_or_compute(facts_key, lambda: self._file_facts(real, st, want_signing))
        row["btime"] = ff.btime
        row.update(ff.columns)
        notes.extend(ff.notes)
        if ff.quarantine_event and self.platform == "darwin":
            self._quarantine_event(row, st.st_uid, ff.quarantine_event)
        return self._finish(row, notes)

    def _file_facts(self, real: str, st: os.stat_result, want_signing: bool) -> FileFacts:
        found = self.read_xattrs(real, PROVENANCE_XATTRS)
        cols, notes, event = decode_xattrs(found)
        if want_signing:
            cols["signature_type"], cols["team_id"] = self.signing(real)
        return FileFacts(birth_time(real, st), tuple(cols.items()), tuple(notes), event)

    def _quarantine_event(self, row: Row, uid: int, event_id: str) -> None:
        db = self.quarantine_db_for(uid)
        if not db:
            return
        event = quarantine_events.lookup_event(db, event_id)
        if event is not None:
            row["quarantine_data_url"] = event.data_url
            row["quarantine_origin_url"] = event.origin_url

    def _missing(self, row: Row, path: str, notes: list[str], why: str, memo: DirMemo) -> Row:
        """A path that does not resolve: could someone create it? (a missing library is a hijack spot)."""
        notes.insert(0, why)
        facts = path_facts(path, None, None, memo)
        writable = first_writable(facts)
        row.update(
            user_writable=1 if writable else 0,
            writable_by=writable,
            system_path=int(is_system_path(os.path.normpath(path), self.platform, exists=False)),
        )
        return self._finish(row, notes)

    @staticmethod
    def _real(path: str, lst: os.stat_result, real_memo: dict[str, str] | None) -> str:
        """The resolved path, resolving each directory once per query (files share directories)."""
        if stat.S_ISLNK(lst.st_mode):
            return os.path.realpath(path)
        absolute = os.path.abspath(path)
        parent, base = os.path.split(absolute)
        memo = real_memo if real_memo is not None else {}
        real_parent = memo.get(parent)
        if real_parent is None:
            real_parent = memo[parent] = os.path.realpath(parent)
        return os.path.join(real_parent, base)

    @staticmethod
    def _finish(row: Row, notes: list[str]) -> Row:
        row["error"] = "; ".join(dict.fromkeys(n for n in notes if n)) or None
        return row

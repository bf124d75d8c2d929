"""Where a library came from and who could have replaced it: pure decoders and rules.

Nothing here touches the OS. The host layer gathers raw extended-attribute values and
`(path, uid, gid, mode)` facts about a file and its parent directories; these functions turn them
into the dylib_provenance columns, so every rule is testable with recorded inputs on any platform.

Extended attributes decoded here:

- `com.apple.quarantine`: text `flags;hex-unix-time;agent;event-uuid` (flags are 4 hex digits;
  0x0040 is set once the user approved the file in Gatekeeper's first-launch prompt).
- `com.apple.metadata:kMDItemWhereFroms`: a binary property list, an array of URL strings
  (download URL first, then the page it came from).
- `com.apple.provenance` (macOS 13+): 11 bytes, a 3-byte header (seen as `01 02 00`) and then an
  8-byte little-endian integer, the row key of the app in the `provenance_tracking` table of
  /var/db/SystemPolicyConfiguration/ExecPolicy. Values padded with trailing zeros have been seen.
- `user.xdg.origin.url` / `user.xdg.referrer.url` (freedesktop convention; written by Chromium,
  `curl --xattr` and `wget --xattr`). Chromium stores no trailing NUL, other writers may.

Writability rule (`user_writable`): a path component is user-writable when a non-root user can
change what the path resolves to:
- it is world-writable; in a sticky directory such as /tmp this only reaches entries that are not
  owned by root (or when the sticky directory itself is not root's), so a root-owned 0700
  directory inside /tmp protects everything below it;
- it is group-writable and its group is not gid 0 (root / wheel). Every other group, including
  macOS `admin` (gid 80), is held by ordinary users;
- its owner is not root: the owner may chmod it writable at any time, so the write bit alone
  does not protect it.
ACLs, file flags (uchg/schg), SIP and read-only mounts are not considered; the rule can only
over-report, never miss a mode-based path to replacement.
"""

from __future__ import annotations

import json
import plistlib
import re
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .macho.resolve import SHARED_CACHE_PREFIXES

Platform = Literal["darwin", "linux"]

QUARANTINE_XATTR = "com.apple.quarantine"
WHERE_FROMS_XATTR = "com.apple.metadata:kMDItemWhereFroms"
PROVENANCE_XATTR = "com.apple.provenance"
XDG_ORIGIN_XATTR = "user.xdg.origin.url"
XDG_REFERRER_XATTR = "user.xdg.referrer.url"
#: Every attribute dylib_provenance reads (both platforms: wget --xattr writes xdg names on macOS too).
PROVENANCE_XATTRS: tuple[str, ...] = (
    QUARANTINE_XATTR,
    WHERE_FROMS_XATTR,
    PROVENANCE_XATTR,
    XDG_ORIGIN_XATTR,
    XDG_REFERRER_XATTR,
)

#: Quarantine flag set once the user approved the file (Gatekeeper's first-launch assessment).
QTN_USER_APPROVED = 0x0040
#: A decoded field longer than this is cut (hostile values must not blow up rows).
MAX_FIELD = 1024
#: At most this many URLs are kept from kMDItemWhereFroms.
MAX_WHERE_FROMS = 32
#: A kMDItemWhereFroms value larger than this is not decoded.
MAX_WHERE_FROMS_BYTES = 64 << 10
#: Size of a well-formed com.apple.provenance value: 3 header bytes and an 8-byte id.
PROVENANCE_SIZE = 11

_HEX = re.compile(r"[0-9A-Fa-f]{1,8}")
#: Quarantine times outside this range are garbage (before 2001 or after year ~2100).
_MIN_TIME, _MAX_TIME = 978_307_200, 4_102_444_800


def platform_of(name: str | None = None) -> Platform:
    """Which rule set applies: 'darwin' for macOS, 'linux' for everything else."""
    return "darwin" if (name or sys.platform).startswith("darwin") else "linux"


def _text(raw: bytes | str, limit: int = MAX_FIELD) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes | bytearray) else raw
    return text[:limit]


# ---------------------------------------------------------------------------------------- quarantine


@dataclass(frozen=True, slots=True)
class Quarantine:
    """A decoded com.apple.quarantine value; fields that did not decode are None, `problem` says why."""

    flags: int | None
    time: int | None
    agent: str | None
    event_id: str | None
    problem: str | None = None

    @property
    def user_approved(self) -> bool | None:
        return None if self.flags is None else bool(self.flags & QTN_USER_APPROVED)


def decode_quarantine(raw: bytes | str) -> Quarantine:
    """Decode `flags;hex-time;agent;uuid`, tolerating missing fields, NUL padding and garbage."""
    text = _text(raw, 4 * MAX_FIELD).rstrip("\x00").strip()
    parts = text.split(";")
    problems: list[str] = []

    def field(i: int) -> str:
        return parts[i].strip().strip("\x00") if i < len(parts) else ""

    flags: int | None = None
    f = field(0)
    if _HEX.fullmatch(f):
        flags = int(f, 16)
    else:
        problems.append("quarantine flags not hex" if f else "quarantine value empty")
    when: int | None = None
    t = field(1)
    if _HEX.fullmatch(t) and _MIN_TIME <= int(t, 16) <= _MAX_TIME:
        when = int(t, 16)
    elif t or len(parts) > 1:
        problems.append("quarantine time not a plausible hex Unix time")
    agent = _text(field(2)) or None
    event = _text(field(3), 128) or None
    return Quarantine(flags, when, agent, event, "; ".join(problems) or None)


# ---------------------------------------------------------------------------------------- where froms


def decode_where_froms(raw: bytes, *, max_bytes: int = MAX_WHERE_FROMS_BYTES) -> tuple[list[str], str | None]:
    """URLs of a kMDItemWhereFroms plist; ([], why) when it is not a decodable array of strings.

    plistlib refuses XML entity declarations; a binary plist can still be deeply nested or
    self-referencing, so every failure of the parser is caught and reported, never raised.
    """
    if len(raw) > max_bytes:
        return [], f"kMDItemWhereFroms is {len(raw)} bytes, over the {max_bytes}-byte limit"
    try:
        value = plistlib.loads(bytes(raw))
    except Exception as exc:  # a hostile plist may fail anywhere in the parser
        return [], f"kMDItemWhereFroms not a property list ({type(exc).__name__})"
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return [], f"kMDItemWhereFroms is a {type(value).__name__}, not an array"
    urls = [_text(v, 8 * MAX_FIELD) for v in value if isinstance(v, str)][:MAX_WHERE_FROMS]
    problem = None
    if len(urls) < min(len(value), MAX_WHERE_FROMS):
        problem = "kMDItemWhereFroms has entries that are not text (skipped)"
    return urls, problem


def where_froms_json(urls: Sequence[str]) -> str | None:
    """The compact JSON array for the where_froms column (None when there is nothing to show)."""
    return json.dumps(list(urls), separators=(",", ":"), ensure_ascii=False) if urls else None


# ---------------------------------------------------------------------------------------- provenance


def decode_provenance(raw: bytes) -> tuple[str | None, str | None]:
    """(id as 0x-prefixed 16 hex digits, problem) of a com.apple.provenance value.

    The id is the little-endian 8-byte integer after the 3-byte header. A value too short to hold
    it is shown as raw hex of the whole value (prefixed `raw:`) with a note, so nothing is hidden.
    """
    if not raw:
        return None, None
    if len(raw) < PROVENANCE_SIZE:
        return "raw:" + raw.hex(), f"provenance value is {len(raw)} bytes, expected {PROVENANCE_SIZE}"
    ident = int.from_bytes(raw[3:PROVENANCE_SIZE], "little")
    problem = None
    if any(raw[PROVENANCE_SIZE:]):
        problem = f"provenance value has {len(raw) - PROVENANCE_SIZE} unexpected trailing bytes"
    return f"0x{ident:016x}", problem


# ---------------------------------------------------------------------------------------- xdg urls


def decode_xdg_url(raw: bytes) -> str | None:
    """A user.xdg.*.url value as text: one trailing NUL stripped (curl/wget may add it)."""
    if raw.endswith(b"\x00"):
        raw = raw[:-1]
    text = _text(raw, 8 * MAX_FIELD)
    return text or None


# ---------------------------------------------------------------------------------------- path rules


@dataclass(frozen=True, slots=True)
class PathFact:
    """The ownership and mode of one path component, as stat/lstat reported it."""

    path: str
    uid: int
    gid: int
    mode: int


def writable_reason(fact: PathFact) -> str | None:
    """Why a non-root user could change this component (None when only root can). See module doc."""
    if fact.mode & stat.S_IWOTH:
        if stat.S_ISDIR(fact.mode) and fact.mode & stat.S_ISVTX:
            return "world-writable, sticky"
        return "world-writable"
    if fact.mode & stat.S_IWGRP and fact.gid != 0:
        return f"group-writable, gid {fact.gid}"
    if fact.uid != 0:
        return f"owned by uid {fact.uid}"
    return None


def first_writable(facts: Sequence[PathFact]) -> str | None:
    """`path (reason)` of the first component through which a non-root user can replace what
    loads at the path, or None. `facts` holds the file first, then directories (see pathfacts).

    The question is who can change what the path resolves to: write on the file itself, or write on
    the directory holding any component of the path, since that lets one rename the component
    away and put another in its place. A sticky directory (such as /tmp) only lets a user rename
    entries they own, so a root-owned entry in a root-owned sticky directory stays protected,
    and with it everything below it (a root-owned 0700 directory in /tmp makes its files safe).
    """
    if not facts:
        return None
    by_path = {f.path: f for f in facts}
    reason = writable_reason(facts[0])
    if reason is not None:
        return f"{facts[0].path} ({reason})"
    parents: set[str] = set()
    for child in facts:
        parent = by_path.get(_parent(child.path))
        if parent is None or parent.path == child.path:
            continue
        parents.add(parent.path)
        reason = writable_reason(parent)
        if reason is None:
            continue
        if _sticky(parent) and child.uid == 0 and parent.uid == 0:
            continue  # only root may rename a root-owned entry of a root-owned sticky directory
        return f"{parent.path} ({reason})"
    for d in facts[1:]:  # a directory whose entry on the path is a symlink (not among the facts)
        if d.path not in parents and (reason := writable_reason(d)) is not None and not _sticky(d):
            return f"{d.path} ({reason})"
    return None


def _parent(path: str) -> str:
    cut = path.rstrip("/").rfind("/")
    return "/" if cut <= 0 else path[:cut]


def _sticky(fact: PathFact) -> bool:
    return stat.S_ISDIR(fact.mode) and bool(fact.mode & stat.S_ISVTX)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


DARWIN_SYSTEM_PREFIXES = ("/System", "/usr", "/bin", "/sbin", "/Library/Apple")
DARWIN_NON_SYSTEM = ("/usr/local",)
#: Since macOS 11 system libraries under these live only in the dyld shared cache, not on disk
#: (the one list, from dyld's rules, kept with the resolver).
DARWIN_SHARED_CACHE_PREFIXES = tuple(p.rstrip("/") for p in SHARED_CACHE_PREFIXES)
#: Distribution library directories (multiarch triplet directories are below /lib and /usr/lib).
LINUX_SYSTEM_PREFIXES = ("/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64",
                         "/usr/libx32", "/usr/libexec", "/bin", "/sbin", "/usr/bin", "/usr/sbin")


def is_system_path(path: str, platform: Platform, *, exists: bool, facts: Sequence[PathFact] = ()) -> bool:
    """Whether `path` is where the OS vendor's own libraries live.

    darwin: by location alone (SIP makes those trees read-only); a missing file counts only under
    the shared-cache prefixes, where system libraries are absent on disk by design.
    linux: a distribution library directory, and the file and every component in `facts` owned by
    root and not user-writable (nothing stops an admin from dropping a user-owned file there).
    """
    if platform == "darwin":
        if not exists:
            return any(_under(path, p) for p in DARWIN_SHARED_CACHE_PREFIXES)
        return any(_under(path, p) for p in DARWIN_SYSTEM_PREFIXES) and not any(
            _under(path, p) for p in DARWIN_NON_SYSTEM
        )
    if not exists or not facts or not any(_under(path, p) for p in LINUX_SYSTEM_PREFIXES):
        return False
    return all(f.uid == 0 and writable_reason(f) is None for f in facts)


def mode_text(mode: int) -> str:
    """Permission bits as osquery's file table shows them ("0755", "1777", "4755")."""
    return f"{stat.S_IMODE(mode):04o}"

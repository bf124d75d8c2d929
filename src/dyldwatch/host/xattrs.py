"""Extended attributes, read safely: size-capped, and "absent" for every way a value can be missing.

Uses the maintained `xattr` package because Python has no os.getxattr on macOS. Symlinks are
followed: dyld and ld.so load the link's target, so the target's attributes are the ones that
describe the code that runs. Values are read by path (no open), so reading the attributes of a
FIFO or device has no side effect; callers still skip non-regular files.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from dataclasses import dataclass, field

try:  # the size-taking primitives: the package's dict API always reads the whole value
    from xattr import XATTR_NOFOLLOW, _getxattr, _listxattr
except ImportError:  # pragma: no cover - the package is a declared dependency
    _getxattr = _listxattr = None
    XATTR_NOFOLLOW = 0

#: Values larger than this are not read (Linux caps values at 64 KiB; APFS allows far more).
MAX_XATTR_SIZE = 64 << 10
#: A name list longer than this is not trusted to be complete; each name is then asked for.
MAX_LIST_SIZE = 64 << 10

#: errno values that mean "no such attribute here" (missing, unsupported, unreadable, vanished).
ABSENT_ERRNOS = frozenset(
    e
    for e in (
        getattr(errno, "ENOATTR", None),
        errno.ENODATA,
        errno.ENOTSUP,
        errno.EOPNOTSUPP,
        errno.EACCES,
        errno.EPERM,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.ELOOP,
        errno.ENAMETOOLONG,
        errno.EINVAL,
    )
    if e is not None
)
_TOO_LARGE_ERRNOS = frozenset({errno.ERANGE, errno.E2BIG})


@dataclass(slots=True)
class XattrValues:
    """The attribute values found (name -> raw bytes) and notes about values that were skipped."""

    values: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def list_names(path: str, *, follow_symlinks: bool = True) -> frozenset[str] | None:
    """Names of the attributes on `path`, or None when the list could not be read completely."""
    if _listxattr is None:
        return None
    try:
        raw: bytes = _listxattr(path, 0 if follow_symlinks else XATTR_NOFOLLOW)
    except OSError as exc:
        return frozenset() if exc.errno in ABSENT_ERRNOS else None
    except (ValueError, TypeError):  # an embedded NUL in the path
        return frozenset()
    if len(raw) >= MAX_LIST_SIZE:
        return None
    return frozenset(n.decode("utf-8", errors="surrogateescape") for n in raw.split(b"\x00") if n)


def get_value(path: str, name: str, *, max_size: int = MAX_XATTR_SIZE, follow_symlinks: bool = True) -> bytes | None:
    """One attribute value, or None when absent, unsupported or unreadable.

    Raises ValueError when the value is larger than `max_size` (the caller notes it in `error`).
    """
    if _getxattr is None:
        return None
    try:
        return bytes(_getxattr(path, name, max_size, 0, 0 if follow_symlinks else XATTR_NOFOLLOW))
    except OSError as exc:
        if exc.errno in _TOO_LARGE_ERRNOS:
            raise ValueError(f"{name} is larger than {max_size} bytes, not read") from exc
        return None
    except (TypeError, UnicodeError):
        return None


def read_xattrs(
    path: str, names: Iterable[str], *, max_size: int = MAX_XATTR_SIZE, follow_symlinks: bool = True
) -> XattrValues:
    """The values of those of `names` present on `path`.

    One listxattr call first: most files carry none of the names, so they cost a single syscall.
    """
    out = XattrValues()
    wanted = list(names)
    present = list_names(path, follow_symlinks=follow_symlinks)
    for name in wanted:
        if present is not None and name not in present:
            continue
        try:
            value = get_value(path, name, max_size=max_size, follow_symlinks=follow_symlinks)
        except ValueError as exc:
            out.problems.append(str(exc))
            continue
        if value is not None:
            out.values[name] = value
    return out

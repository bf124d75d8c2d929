"""File birth (creation) time on macOS and Linux.

macOS reports it in stat (`st_birthtime`). Linux has it only through statx(2) (kernel 4.11,
glibc 2.28), and Python's os.stat does not expose it before 3.15, so glibc's `statx` is called
through ctypes. The struct layout is the kernel uapi one (<linux/stat.h>): `stx_mask` (u32) at 0,
`stx_ino` (u64) at 0x20, `stx_btime` at 0x50 as {i64 tv_sec, u32 tv_nsec, i32 pad}. The kernel
sets STATX_BTIME in `stx_mask` only when the filesystem records birth times (ext4, xfs, btrfs,
tmpfs do; overlayfs passes through; many network filesystems do not); otherwise the time is None.
A birth time of exactly 0.0 is also None: ext4 images built from archives leave the field zeroed.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
from collections.abc import Callable
from typing import Any

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_NO_AUTOMOUNT = 0x800  # never trigger an automount just to read a timestamp
STATX_INO = 0x100
STATX_BTIME = 0x800
#: sizeof(struct statx) is 256 bytes in every kernel so far; the buffer is that size.
STATX_SIZE = 256
_BTIME = struct.Struct("<qI")
_BTIME_OFFSET = 0x50
_INO_OFFSET = 0x20


def _load_statx() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn: Any = libc.statx
    except (OSError, AttributeError):  # musl before 1.2.5 or glibc before 2.28: no wrapper
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)
    fn.restype = ctypes.c_int
    return fn


_statx = _load_statx()


def statx_available() -> bool:
    return _statx is not None


def statx_btime(path: str, *, follow_symlinks: bool = True) -> tuple[int | None, int | None]:
    """(birth time in Unix seconds or None, inode or None) of `path` by statx(2); (None, None) on error.

    The inode lets a caller check that statx saw the same file as its earlier stat.
    """
    if _statx is None:
        return None, None
    try:
        encoded = os.fsencode(path)
    except (TypeError, ValueError):
        return None, None
    if b"\x00" in encoded:
        return None, None
    buf = ctypes.create_string_buffer(STATX_SIZE)
    flags = AT_NO_AUTOMOUNT | (0 if follow_symlinks else AT_SYMLINK_NOFOLLOW)
    if _statx(AT_FDCWD, encoded, flags, STATX_BTIME | STATX_INO, buf) != 0:
        return None, None
    raw = buf.raw
    mask = int.from_bytes(raw[0:4], "little")
    ino = int.from_bytes(raw[_INO_OFFSET : _INO_OFFSET + 8], "little") if mask & STATX_INO else None
    if not mask & STATX_BTIME:
        return None, ino
    sec, nsec = _BTIME.unpack_from(raw, _BTIME_OFFSET)
    if sec == 0 and nsec == 0:  # an inode whose creation time was never written (image builders)
        return None, ino
    return sec, ino


def birth_time(path: str, st: os.stat_result | None = None, *, follow_symlinks: bool = True) -> int | None:
    """Birth time in Unix seconds, or None where the OS or filesystem does not record it.

    With `st` (a stat of the same path), macOS answers from it; on Linux the statx result is
    dropped when its inode differs from `st`, i.e. the path was replaced in between.
    """
    if st is not None:
        bt = getattr(st, "st_birthtime", None)
        if bt is not None:
            return int(bt)
    elif sys.platform == "darwin" or sys.platform.startswith("freebsd"):
        try:
            bt = getattr(os.stat(path, follow_symlinks=follow_symlinks), "st_birthtime", None)
        except (OSError, ValueError):
            return None
        return None if bt is None else int(bt)
    sec, ino = statx_btime(path, follow_symlinks=follow_symlinks)
    if sec is None:
        return None
    if st is not None and ino is not None and ino != st.st_ino:
        return None
    return sec

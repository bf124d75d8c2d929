"""Safe access to files an attacker may have planted.

Files are opened non-blocking, checked with fstat to be regular files (never FIFOs, sockets or
devices, which could hang or have side effects), read with pread under a size cap, and never
mapped: a file truncated while mapped raises SIGBUS, which would kill the extension.
"""

from __future__ import annotations

import errno
import os
import stat
from types import TracebackType
from typing import NamedTuple

#: Files larger than this are not parsed (a Mach-O that large is not a loadable library).
DEFAULT_MAX_SIZE = 4 << 30
#: Bytes one read may return (parsers ask for more only in chunks).
MAX_READ = 64 << 20


class FileProblem(Exception):
    """A file cannot be inspected; the message is fit for an `error` column."""


class FileKey(NamedTuple):
    """What identifies one version of a file for caching (path matters: @loader_path depends on it).
    A named tuple: hashed and compared in C, for every file of every query."""

    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, path: str, st: os.stat_result) -> FileKey:
        return cls(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def describe_mode(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def os_error_message(exc: OSError) -> str:
    """A short, stable text for an OSError (no path repetition: rows carry the path)."""
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links (symlink loop)"
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


class FileSource:
    """A ByteSource over an open regular file, read with pread (no mmap, no shared offset)."""

    #: The first bytes are read once and served from memory: headers, the fat table and most load
    #: command areas live there, and every parser starts by asking for them.
    HEAD = 16 << 10

    def __init__(self, path: str, *, max_size: int = DEFAULT_MAX_SIZE, pre: os.stat_result | None = None) -> None:
        self.path = path
        self._head: bytes | None = None
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
        # Check the type before open: opening a FIFO with O_NONBLOCK is harmless, but opening
        # some devices has side effects, so we refuse anything that is not regular up front.
        if pre is None:
            try:
                pre = os.stat(path)
            except OSError as exc:
                raise FileProblem(os_error_message(exc)) from exc
        if not stat.S_ISREG(pre.st_mode):
            raise FileProblem(f"{describe_mode(pre.st_mode)}, not read")
        try:
            self._fd = os.open(path, flags)
        except OSError as exc:
            raise FileProblem(os_error_message(exc)) from exc
        try:
            st = os.fstat(self._fd)
            if not stat.S_ISREG(st.st_mode):  # swapped between stat and open
                raise FileProblem(f"{describe_mode(st.st_mode)}, not read")
            if st.st_size > max_size:
                raise FileProblem(f"file is {st.st_size} bytes, over the {max_size}-byte limit")
        except BaseException:
            os.close(self._fd)
            raise
        self.stat = st
        self.size = st.st_size
        self.key = FileKey.of(path, st)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0 or offset >= self.size:
            return b""
        length = min(length, self.size - offset, MAX_READ)
        if offset + length <= self.HEAD:
            if self._head is None:
                self._head = self._pread(0, min(self.HEAD, self.size))
            return self._head[offset : offset + length]
        return self._pread(offset, length)

    def _pread(self, offset: int, length: int) -> bytes:
        try:
            return os.pread(self._fd, length, offset)
        except OSError as exc:
            raise FileProblem(f"read failed at offset {offset}: {os_error_message(exc)}") from exc

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def stat_key(path: str) -> FileKey | None:
    """The cache key of a path's current version, or None when it cannot be stat'ed."""
    try:
        return FileKey.of(path, os.stat(path))
    except (OSError, ValueError):
        return None


def exists(path: str) -> bool:
    """Whether a path names something, links followed (os.path.exists's answer). access(F_OK) says
    so without building a stat result, at a third of the cost: a dylib resolution checks one or
    more candidates for every distinct install name of every query."""
    try:
        return os.access(path, os.F_OK)
    except (OSError, ValueError):  # a name holding NUL names nothing
        return False

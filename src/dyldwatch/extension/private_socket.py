"""The extension's own UNIX socket, `<manager socket>.<uuid>`, as private as osqueryd's.

Whoever can connect to it can call `generate` and read files with the extension's rights (root
under osqueryd). A socket's mode comes from the umask at bind time, so a permissive umask would
open it to every local user. We bind inside a fresh 0700 directory next to the target, set the
mode (owner read/write only, and never more than the manager socket allows), then rename it into
place: there is no moment at which the path exists with wider permissions. A stat afterwards
checks the result. A socket directory that others can write is warned about: they could replace
either socket with their own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import stat
import tempfile

log = logging.getLogger("dyldwatch.extension")

OWNER_RW = 0o600


class SocketError(ConnectionError):
    """The private socket could not be created as required; the message says why."""


def socket_mode(manager_path: str) -> int:
    """Owner read/write, narrowed to what the manager socket grants its owner."""
    try:
        manager_mode = stat.S_IMODE(os.stat(manager_path).st_mode)
    except OSError:
        return OWNER_RW
    return OWNER_RW & manager_mode


def warn_if_shared_directory(path: str) -> bool:
    """Log a warning when the socket's directory is writable by group or others; True if so."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(directory)
    except OSError:
        return False
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "everyone" if st.st_mode & stat.S_IWOTH else "its group"
        log.warning("the socket directory %s is writable by %s (mode %04o): another user could replace "
                    "osqueryd's or the extension's socket there; use a root-owned directory such as "
                    "/var/osquery (osquery's default --extensions_socket). The extension's socket is "
                    "still created owner-only.", directory, who, stat.S_IMODE(st.st_mode))
        return True
    return False


def bind_private(path: str, manager_path: str, backlog: int = 128) -> socket.socket:
    """A listening UNIX socket at `path`, mode owner-only, created without a wider window."""
    mode = socket_mode(manager_path)
    warn_if_shared_directory(path)
    directory = os.path.dirname(os.path.abspath(path))
    private = tempfile.mkdtemp(prefix=".dw", dir=directory)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.chmod(private, 0o700)  # mkdtemp's 0700 is still subject to the umask
        staging = os.path.join(private, "s")
        sock.bind(staging)
        os.chmod(staging, mode)
        os.replace(staging, path)  # atomic; a stale socket or planted file at `path` is replaced
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & ~mode:
            raise SocketError(f"{path} is not the private socket just created (mode {stat.S_IMODE(st.st_mode):04o}, "
                              f"uid {st.st_uid}); refusing to serve on it")
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return sock


def remove(path: str | None) -> None:
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)

"""Install the one-file extension and its configuration on a single osquery host.

osquery autoloads an extension only when the file and its directory are owned by root and writable
by nobody else (its "safe permissions" check), so we create every directory and file root-owned,
0755/0644, and refuse to put anything under a directory that group or others can write: a copy
there could be swapped before osqueryd starts it.

The places and the flags come from deploy_layout (Linux: /etc/osquery/…, macOS: /var/osquery/…,
the extension in /usr/local/osquery/extensions/). With --prefix, every path is placed under PREFIX
(a staging root for images and tests).
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from . import layout as deploy_layout
from .layout import Layout, flags_text


class InstallError(Exception):
    """Refused: the message says what is wrong, where, and how to fix it."""


def layout_for(system: str | None = None) -> Layout:
    try:
        return deploy_layout.layout_for(system)
    except KeyError as exc:
        raise InstallError(str(exc.args[0])) from exc


@dataclass
class Plan:
    """What install will do, in order; `dry_run` prints it, `apply` performs it."""

    actions: list[tuple[str, Path, int, bytes | Path | None]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        for kind, path, mode, _ in self.actions:
            what = {"dir": "create directory", "copy": "install", "write": "write", "append": "add line to"}[kind]
            out.append(f"{what} {path} (root:root {mode:04o})")
        return out


def _check_dir_safe(path: Path) -> None:
    """Refuse a directory (or any existing ancestor) writable by group/others or not root-owned."""
    for p in [path, *path.parents]:
        try:
            st = p.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            st = p.stat()
        if not stat.S_ISDIR(st.st_mode):
            raise InstallError(f"{p} exists and is not a directory; move it aside, then run install again.")
        sticky = bool(st.st_mode & stat.S_ISVTX)
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (sticky and p != path and st.st_uid == 0):
            raise InstallError(
                f"{p} is writable by {'others' if st.st_mode & stat.S_IWOTH else 'its group'} "
                f"(mode {stat.S_IMODE(st.st_mode):04o}): osquery refuses extensions below such a directory, "
                f"and anyone could replace the file. Fix: chmod go-w {p} (and make it owned by root).")
        if st.st_uid != 0:
            raise InstallError(f"{p} is owned by uid {st.st_uid}, not root: osquery refuses extensions below it. "
                               f"Fix: chown root {p}.")


def plan_install(artifact: Path, prefix: Path | None, system: str | None = None,
                 packs_conf: bytes | None = None) -> Plan:
    """Check everything and list the steps; nothing is written here."""
    layout = layout_for(system)
    if not artifact.is_file():
        raise InstallError(f"artifact {artifact} not found; build it with `dyldwatch package --platform "
                           f"{'macos-arm64' if layout.system == 'darwin' else 'linux-x86_64'}` or pass --artifact.")
    if prefix is None and os.geteuid() != 0:
        raise InstallError("install writes root-owned files into osquery's directories: run it as root "
                           "(sudo dyldwatch install), or pass --prefix DIR to stage the layout elsewhere.")
    root = Path(prefix).resolve() if prefix else Path("/")

    def at(p: str) -> Path:
        return root / p.lstrip("/")

    plan = Plan()
    ext_dir, cfg_dir = at(layout.extension_dir), at(layout.home)
    for d in (ext_dir, cfg_dir):
        _check_dir_safe(d)
    for d in (ext_dir, cfg_dir):
        plan.actions.append(("dir", d, 0o755, None))
    plan.actions.append(("copy", at(layout.extension), 0o755, artifact))
    load = at(layout.extensions_load)
    if load.exists() and layout.extension in load.read_text().split():
        pass
    else:
        plan.actions.append(("append", load, 0o644, (layout.extension + "\n").encode()))
    flags = at(layout.flags)
    existing = flags.read_text() if flags.exists() else ""
    missing = [ln for ln in flags_text(layout).splitlines() if ln.split("=")[0] not in existing]
    if missing:
        plan.actions.append(("append", flags, 0o644, ("\n".join(missing) + "\n").encode()))
    if packs_conf is not None:
        plan.actions.append(("write", at(f"{layout.packs_dir}/dyldwatch.conf"), 0o644, packs_conf))
    for _, path, _, _ in plan.actions:
        if path.is_symlink():
            raise InstallError(f"{path} is a symbolic link; osquery's files must be real files. Remove it first.")
    return plan


def apply(plan: Plan) -> list[Path]:
    """Perform the plan: root-owned, no group/other write, atomic replace of the extension."""
    done: list[Path] = []
    for kind, path, mode, payload in plan.actions:
        if kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
        elif kind == "copy":
            assert isinstance(payload, Path)
            tmp = path.with_name(f".{path.name}.tmp")
            shutil.copyfile(payload, tmp)
            _own(tmp, mode)
            os.replace(tmp, path)
        else:
            assert isinstance(payload, bytes)
            path.parent.mkdir(parents=True, exist_ok=True)
            _own(path.parent, 0o755)
            with open(path, "ab" if kind == "append" else "wb") as f:
                if kind == "append" and f.tell() and not path.read_bytes().endswith(b"\n"):
                    f.write(b"\n")
                f.write(payload)
        _own(path, mode)
        done.append(path)
    return done


def _own(path: Path, mode: int) -> None:
    if os.geteuid() == 0:
        os.chown(path, 0, 0)
    os.chmod(path, mode)

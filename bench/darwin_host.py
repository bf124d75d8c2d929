"""A generated host-sized macOS moment for the pack benchmark, over a real tree of Mach-O files.

macOS processes cannot be read here, so the darwin queries run over a scenario: osquery's native
tables (processes, process_memory_map, process_envs, process_open_sockets, launchd, plist,
es_process_file_events, file, time) and our process tables that need a live macOS host
(process_images, rwx_regions) are rows generated below, while our file-reading tables (macho_info,
macho_load_commands, dylib_provenance, applescript_info) are answered by the extension over its
socket on real files: an /Applications-like tree of app bundles made of hard links of the Mach-O
corpus (scale_tree.make_tree).

The host: PROCS processes, each the main executable of a bundle (bundles are shared round-robin),
mapping its bundle's executable and frameworks plus ten system images (absent on this machine, as
dyld's shared cache keeps them on a Mac); every PLUGIN_EVERY-th process also maps a few plugins from
a user-writable folder (AN0054's target: user_writable = 1). launchd has a helper agent per bundle
and SYSTEM_JOBS system jobs; a few processes and one agent carry DYLD_INSERT_LIBRARIES; a few
processes hold anonymous executable memory (JIT-tagged or not); es_process_file_events has writes of
tree and plugin files. When ../shared/samples/applescript (next to the repository) holds run-only
AppleScripts, a few go to the plugin folder, one run by a launchd agent.

The scenario's clock (`now`) is the real time plus CLOCK_SHIFT: every file of the tree is older than
the packs' 7-day recency window, as on an established host (the corpus was fetched recently, and
birth times cannot be set back).
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dyldwatch.sql.database import time_row

Row = dict[str, Any]

CLOCK_SHIFT = 30 * 86400
SYSTEM_JOBS = 150
PLUGIN_EVERY = 10
PLUGINS = 4
INSERT_EVERY = 50
JIT_EVERY = 20
RWX_EVERY = 37
EVENTS = 1000
#: What every app maps from dyld's shared cache (no file on disk on a Mac either).
SYSTEM_IMAGES = (
    "/usr/lib/dyld",
    "/usr/lib/libSystem.B.dylib",
    "/usr/lib/libc++.1.dylib",
    "/usr/lib/libobjc.A.dylib",
    "/usr/lib/system/libsystem_kernel.dylib",
    "/System/Library/Frameworks/Foundation.framework/Versions/C/Foundation",
    "/System/Library/Frameworks/CoreFoundation.framework/Versions/A/CoreFoundation",
    "/System/Library/Frameworks/AppKit.framework/Versions/C/AppKit",
    "/System/Library/Frameworks/Security.framework/Versions/A/Security",
    "/System/Library/PrivateFrameworks/SkyLight.framework/Versions/A/SkyLight",
)
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "applescript" / "run-only"


@dataclass
class Scenario:
    now: int
    tables: dict[str, list[Row]]
    processes: int
    images: int  # process_images rows
    files: int  # Mach-O files in the tree
    plugin_dir: Path
    scripts: list[str] = field(default_factory=list)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _plugins(scratch: Path, corpus: list[str]) -> tuple[Path, list[str], list[str]]:
    """A user-writable plugin folder: copies of a few corpus files, and run-only scripts if samples exist."""
    d = scratch / "UserPlugins"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    d.chmod(0o777)  # writable by every user: what AN0054 grades
    plugins = []
    for n, src in enumerate(corpus[1:1 + PLUGINS]):
        dest = d / f"plugin{n}.dylib"
        shutil.copyfile(src, dest)
        plugins.append(str(dest))
    scripts = []
    for src in sorted(SAMPLES.glob("*.scpt"))[:3] if SAMPLES.is_dir() else []:
        dest = d / src.name.replace(" ", "_")
        shutil.copyfile(src, dest)
        scripts.append(str(dest))
    return d, plugins, scripts


def _file_row(path: str, now: int) -> Row:
    st = _stat(path)
    if st is None:
        return {"path": path, "directory": os.path.dirname(path), "filename": os.path.basename(path)}
    return {"path": path, "directory": os.path.dirname(path), "filename": os.path.basename(path),
            "inode": st.st_ino, "uid": 501, "gid": 20, "mode": f"{st.st_mode & 0o7777:04o}", "device": st.st_dev,
            "size": st.st_size, "block_size": 4096, "atime": int(st.st_atime), "mtime": int(st.st_mtime),
            "ctime": int(st.st_ctime), "btime": int(st.st_mtime), "hard_links": st.st_nlink, "symlink": 0,
            "type": "regular"}


def scenario(root: Path, scratch: Path, corpus: list[str], bundles: int, procs: int, real_now: int) -> Scenario:
    """Rows of every table the darwin queries read that is not answered by the extension."""
    now = real_now + CLOCK_SHIFT
    rng = random.Random(1467)
    plugin_dir, plugins, scripts = _plugins(scratch, corpus)
    apps = []
    for b in range(bundles):
        contents = root / f"App{b:05d}.app" / "Contents"
        exe = str(contents / "MacOS" / f"App{b:05d}")
        frameworks = sorted(str(p) for p in (contents / "Frameworks").iterdir())
        apps.append((f"App{b:05d}", exe, frameworks))
    stats: dict[str, os.stat_result | None] = {}

    def image(pid: int, path: str, k: int) -> Row:
        st = stats.get(path) if path in stats else stats.setdefault(path, _stat(path))
        return {"pid": pid, "path": path, "base_address": f"0x{0x100000000 + k * 0x200000:x}",
                "inode": st.st_ino if st else 0, "device": st.st_dev if st else 0, "deleted": 0}

    t: dict[str, list[Row]] = {name: [] for name in (
        "processes", "process_images", "process_memory_map", "process_envs", "process_open_sockets", "launchd",
        "plist", "es_process_file_events", "file", "rwx_regions", "time")}
    t["time"].append(time_row(now))
    for i in range(procs):
        pid = 2000 + i
        name, exe, frameworks = apps[i % bundles]
        start = now - 86400 + i
        t["processes"].append({
            "pid": pid, "name": name, "path": exe, "cmdline": exe, "state": "R", "cwd": "/", "root": "/",
            "uid": 501, "gid": 20, "euid": 501, "egid": 20, "suid": 501, "sgid": 20, "on_disk": 1,
            "wired_size": 0, "resident_size": 50_000_000, "total_size": 400_000_000, "user_time": 1000,
            "system_time": 400, "start_time": start, "parent": 1, "pgroup": pid, "threads": 8, "nice": 0,
            "upid": pid, "uppid": 1, "cpu_type": 16777228, "cpu_subtype": 2, "translated": 0})
        paths = [exe, *frameworks, *SYSTEM_IMAGES]
        if i % PLUGIN_EVERY == PLUGIN_EVERY - 1:
            paths += plugins
        for k, path in enumerate(paths):
            t["process_images"].append(image(pid, path, k))
            base = 0x100000000 + k * 0x200000
            t["process_memory_map"].append({
                "pid": pid, "start": f"0x{base:x}", "end": f"0x{base + 0x100000:x}", "permissions": "r-x",
                "offset": 0, "device": "1,4", "inode": 0, "path": path, "pseudo": 0})
        env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/Users/bench", "USER": "bench", "SHELL": "/bin/zsh",
               "TMPDIR": "/var/folders/xy/abc/T/", "LANG": "en_US.UTF-8", "LOGNAME": "bench",
               "__CFBundleIdentifier": f"com.bench.{name.lower()}", "XPC_SERVICE_NAME": "0",
               "XPC_FLAGS": "0x0", "SSH_AUTH_SOCK": "/private/tmp/com.apple.launchd.x/Listeners"}
        if i % INSERT_EVERY == INSERT_EVERY - 1:
            env["DYLD_INSERT_LIBRARIES"] = plugins[i % len(plugins)]
        t["process_envs"] += [{"pid": pid, "key": k, "value": v} for k, v in env.items()]
        if i % 4 == 0:
            t["process_open_sockets"] += [
                {"pid": pid, "fd": 20, "socket": 1000 + i, "family": 2, "protocol": 6, "local_address": "192.168.1.20",
                 "remote_address": f"17.253.{i % 250}.{(i * 7) % 250}", "local_port": 50000 + i, "remote_port": 443,
                 "state": "ESTABLISHED"},
                {"pid": pid, "fd": 21, "socket": 2000 + i, "family": 2, "protocol": 6, "local_address": "127.0.0.1",
                 "remote_address": "127.0.0.1", "local_port": 40000 + i, "remote_port": 8080, "state": "ESTABLISHED"}]
        if i % JIT_EVERY == JIT_EVERY - 1 or i % RWX_EVERY == RWX_EVERY - 1:
            jit = i % JIT_EVERY == JIT_EVERY - 1
            base = 0x300000000 + i * 0x1000000
            t["rwx_regions"].append({
                "pid": pid, "start": f"0x{base:x}", "end": f"0x{base + 0x40000:x}", "size": 0x40000,
                "permissions": "rwx" if not jit else "r-x", "max_permissions": "rwx", "share_mode": "SM_PRIVATE",
                "path": "", "anonymous": 1, "region_type": "jit" if jit else "anon", "user_tag": 98 if jit else 0,
                "user_tag_name": "JAVASCRIPT_JIT_EXECUTABLE_ALLOCATOR" if jit else "", "inode": 0, "device": 0,
                "offset": 0, "reason": "executable anonymous memory"})
    for name, exe, _ in apps:
        job = f"/Library/LaunchAgents/com.bench.{name.lower()}.helper.plist"
        t["launchd"].append({"path": job, "name": os.path.basename(job), "label": f"com.bench.{name.lower()}.helper",
                             "program": "", "program_arguments": f"{exe} --agent", "run_at_load": "1",
                             "keep_alive": "", "username": "", "process_type": "Interactive"})
        t["plist"] += [{"path": job, "key": "Label", "subkey": "", "value": f"com.bench.{name.lower()}.helper"},
                       {"path": job, "key": "ProgramArguments", "subkey": "0", "value": exe},
                       {"path": job, "key": "RunAtLoad", "subkey": "", "value": "1"}]
    inserted = "/Library/LaunchAgents/com.bench.inserted.plist"
    t["launchd"].append({"path": inserted, "name": os.path.basename(inserted), "label": "com.bench.inserted",
                         "program": apps[0][1], "program_arguments": apps[0][1], "run_at_load": "1"})
    t["plist"].append({"path": inserted, "key": "EnvironmentVariables", "subkey": "DYLD_INSERT_LIBRARIES",
                       "value": plugins[0]})
    if scripts:
        job = "/Library/LaunchAgents/com.bench.script.plist"
        t["launchd"].append({"path": job, "name": os.path.basename(job), "label": "com.bench.script",
                             "program": "/usr/bin/osascript", "program_arguments": f"/usr/bin/osascript {scripts[0]}",
                             "run_at_load": "1"})
        t["file"] += [_file_row(s, now) for s in scripts]
    for n in range(SYSTEM_JOBS):
        job = f"/System/Library/LaunchDaemons/com.apple.bench{n:03d}.plist"
        program = f"/usr/libexec/benchd{n:03d}"
        t["launchd"].append({"path": job, "name": os.path.basename(job), "label": f"com.apple.bench{n:03d}",
                             "program": program, "program_arguments": program, "run_at_load": "1",
                             "username": "root"})
        t["plist"].append({"path": job, "key": "Label", "subkey": "", "value": f"com.apple.bench{n:03d}"})
    touched = [p for _, exe, fw in apps for p in (exe, *fw[:3])] + plugins + scripts
    for n in range(EVENTS):
        target = rng.choice(touched)
        t["es_process_file_events"].append({
            "version": 7, "seq_num": n, "global_seq_num": n, "pid": 2000 + rng.randrange(procs), "parent": 1,
            "path": "/usr/bin/ditto" if n % 3 else "/usr/local/bin/installer-helper", "filename": target,
            "dest_filename": "", "event_type": "write", "time": now - rng.randrange(6 * 86400), "eid": f"e{n}"})
    return Scenario(now, t, procs, len(t["process_images"]), sum(1 + len(fw) for _, _, fw in apps), plugin_dir,
                    scripts)

"""`dyldwatch selfcheck`: compare dyldwatch's readers with the platform's own tools, item by item.

Some facts can only be settled on a real host: the kernel's region answers, codesign's reading
of a signature, dyld's actual search, the quarantine formats. Each check here runs one reader
and one reference (an Apple tool, /proc, coreutils), and says agree, disagree, skipped (with the
reason) or error. On Linux the checks that apply there run; the macOS ones are listed as skipped.
Nothing is changed on the host except inside a private temporary directory.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

AGREE, DISAGREE, SKIPPED, ERROR = "agree", "disagree", "skipped", "error"
TIMEOUT = 60


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One comparison: what was compared with what, and the outcome in words."""

    check: str
    platform: str  # linux | macos
    status: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


Check = Callable[[], CheckResult]


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False)


def _result(check: str, platform: str, ours: object, theirs: object, what: str) -> CheckResult:
    if ours == theirs:
        return CheckResult(check, platform, AGREE, what)
    return CheckResult(check, platform, DISAGREE, f"{what}: dyldwatch {ours!r} vs reference {theirs!r}")


# --- Linux ------------------------------------------------------------------------------------


class _ExecMapping:
    """An anonymous executable mapping held for the duration of a check, so there is a finding to compare."""

    def __enter__(self) -> mmap.mmap | None:
        try:
            self.m: mmap.mmap | None = mmap.mmap(-1, mmap.PAGESIZE,
                                                 prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        except (OSError, ValueError, AttributeError):  # W^X policy (SELinux execmem, PaX): nothing to map
            self.m = None
        return self.m

    def __exit__(self, *exc: object) -> None:
        if self.m is not None:
            self.m.close()


def _maps_reference(pid: int) -> list[tuple[int, int, str, str]]:
    """(start, end, perms, path) of /proc/PID/maps, parsed independently of dyldwatch's parser."""
    out = []
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.rstrip("\n").split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            path = parts[5] if len(parts) > 5 else ""
            out.append((lo, hi, parts[1], path))
    return out


def check_linux_rwx_regions() -> CheckResult:
    """rwx_regions for this process vs /proc/self/maps: every W+X or executable anonymous mapping."""
    from .host.linux_proc import LinuxProcessReader
    from .host.regions import finding_reason

    with _ExecMapping() as m:
        pid = os.getpid()
        ours = {(r.start, r.end) for r in LinuxProcessReader().regions(pid, suspects_only=True)
                if finding_reason(r) is not None}
        theirs = {(lo, hi) for lo, hi, perms, path in _maps_reference(pid)
                  if "x" in perms and ("w" in perms or path == "" or path.startswith("[anon")
                                       or path.startswith("/memfd:") or path.endswith(" (deleted)"))
                  and path not in ("[vdso]", "[vsyscall]", "[uprobes]")}
        what = f"{len(theirs)} suspect mapping(s) of pid {pid}" + ("" if m is not None else " (no exec mapping allowed)")
    return _result("rwx_regions vs /proc/self/maps", "linux", sorted(ours), sorted(theirs), what)


def check_linux_process_images() -> CheckResult:
    """process_images paths for this process vs the executable file mappings of /proc/self/maps."""
    from .host.linux_proc import LinuxProcessReader
    from .host.regions import group_images

    pid = os.getpid()
    ours = {i.path for i in group_images(LinuxProcessReader().image_regions(pid))}
    theirs = {path.removesuffix(" (deleted)") for _lo, _hi, perms, path in _maps_reference(pid)
              if "x" in perms and path.startswith("/")}
    return _result("process_images vs /proc/self/maps", "linux", sorted(ours), sorted(theirs),
                   f"{len(theirs)} executable image(s) of pid {pid}")


def check_linux_statx_btime() -> CheckResult:
    """statx birth time vs coreutils `stat -c %W` on a fresh file."""
    from .host.statx import statx_available, statx_btime

    if not statx_available():
        return CheckResult("statx btime vs stat -c %W", "linux", SKIPPED, "statx(2) is not available")
    stat_tool = shutil.which("stat")
    if stat_tool is None:
        return CheckResult("statx btime vs stat -c %W", "linux", SKIPPED, "coreutils stat not found")
    with tempfile.NamedTemporaryFile(prefix="dyldwatch-selfcheck-") as fh:
        ours, _ns = statx_btime(fh.name)
        proc = _run([stat_tool, "-c", "%W", fh.name])
    if proc.returncode != 0:
        return CheckResult("statx btime vs stat -c %W", "linux", ERROR, proc.stderr.strip()[:200])
    theirs = int(proc.stdout.strip() or "0")
    if theirs == 0 and ours is None:
        return CheckResult("statx btime vs stat -c %W", "linux", AGREE, "the file system records no birth time")
    return _result("statx btime vs stat -c %W", "linux", ours, theirs, "birth time of a new file (seconds)")


def check_linux_xdg_xattrs() -> CheckResult:
    """The xattr reader vs os.getxattr for user.xdg.origin.url written on a fresh file."""
    from .host.xattrs import read_xattrs

    name, value = "user.xdg.origin.url", b"https://selfcheck.invalid/payload.so"
    with tempfile.NamedTemporaryFile(prefix="dyldwatch-selfcheck-", dir=_xattr_dir()) as fh:
        try:
            os.setxattr(fh.name, name, value)
        except OSError as exc:
            if exc.errno in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                return CheckResult("xdg xattrs vs getxattr", "linux", SKIPPED, f"no user xattrs here: {exc}")
            raise
        ours = read_xattrs(fh.name, [name]).values.get(name)
        theirs = os.getxattr(fh.name, name)
    return _result("xdg xattrs vs getxattr", "linux", ours, theirs, f"{name} of a fresh file")


def _xattr_dir() -> str | None:
    """A directory whose file system takes user xattrs (tmpfs /tmp often does not)."""
    for d in (os.environ.get("TMPDIR"), os.getcwd(), os.path.expanduser("~")):
        if d and os.access(d, os.W_OK):
            return d
    return None


# --- macOS ------------------------------------------------------------------------------------

_VMMAP_LINE = re.compile(r"\s([0-9a-f]+)-([0-9a-f]+)\s+\[.*?\]\s+([rwx-]{3})/([rwx-]{3})")


def check_macos_vmmap() -> CheckResult:
    """The flavor-8 region walk of this process vs `vmmap -v`: every executable region's start and prot."""
    from .host.darwin_proc import PROC_PIDREGIONPATHINFO, SystemLibProc, prot_string, walk_regions

    pid = os.getpid()
    ours = {(r.address, prot_string(r.protection)) for r in walk_regions(SystemLibProc(), pid, PROC_PIDREGIONPATHINFO)
            if r.protection & 4 and not r.flags & 1}
    proc = _run(["vmmap", "-v", "-interleaved", str(pid)])
    if proc.returncode != 0:
        return CheckResult("region walk vs vmmap -v", "macos", ERROR, proc.stderr.strip()[:200])
    theirs = {(int(m.group(1), 16), m.group(3)) for m in _VMMAP_LINE.finditer(proc.stdout) if "x" in m.group(3)}
    missing = sorted(theirs - ours)
    extra = sorted(a for a in ours - theirs if not any(a[0] in range(s, s + 1) for s, _ in theirs))
    if not missing:
        return CheckResult("region walk vs vmmap -v", "macos", AGREE,
                           f"{len(theirs)} executable regions of pid {pid} ({len(extra)} only in libproc)")
    return CheckResult("region walk vs vmmap -v", "macos", DISAGREE,
                       f"vmmap shows {[(hex(a), p) for a, p in missing[:5]]} that the walk does not")


def check_macos_images_flavors() -> CheckResult:
    """Flavor 22 images vs the vnode regions flavor 8 reports, for this process."""
    from .host.darwin_proc import PROC_PIDREGIONPATHINFO, PROC_PIDREGIONPATHINFO2, SystemLibProc, walk_regions

    lib, pid = SystemLibProc(), os.getpid()
    ours = {r.path for r in walk_regions(lib, pid, PROC_PIDREGIONPATHINFO2)}
    theirs = {r.path for r in walk_regions(lib, pid, PROC_PIDREGIONPATHINFO) if r.path and not r.flags & 1}
    return _result("flavor 22 images vs flavor 8 vnode regions", "macos", sorted(ours), sorted(theirs),
                   f"{len(theirs)} mapped files of pid {pid}")


def _codesign_fields(text: str) -> dict[str, str | None]:
    def field(name: str) -> str | None:
        m = re.search(rf"^{name}=(.*)$", text, re.M)
        return m.group(1).strip() if m else None

    flags = re.search(r"flags=(0x[0-9a-f]+)", text)
    return {"identifier": field("Identifier"), "team_id": field("TeamIdentifier"),
            "cdhash": (field("CDHash") or "").lower() or None, "authority": field("Authority"),
            "flags": flags.group(1) if flags else None}


def check_macos_codesign(path: str | None = None) -> CheckResult:
    """macho_info's signing columns vs `codesign -dvvv`, and its entitlements vs `--entitlements - --der`."""
    from .formats.macho.der import DerError, decode_der_entitlements
    from .tables.base import QueryContext
    from .tables.macho_info import MachoInfoTable

    path = path or os.path.realpath(sys.executable)
    proc = _run(["codesign", "-dvvv", path])
    if proc.returncode != 0:
        return CheckResult("macho_info vs codesign -dvvv", "macos", SKIPPED, f"{path}: {proc.stderr.strip()[:160]}")
    theirs = _codesign_fields(proc.stderr + proc.stdout)
    arch = os.uname().machine
    rows = [r for r in MachoInfoTable().generate(QueryContext.build({"path": [(2, path)]}))
            if r.get("arch") in (arch, "arm64e" if arch == "arm64" else arch)] or []
    if not rows:
        return CheckResult("macho_info vs codesign -dvvv", "macos", ERROR, f"no macho_info row for {path} ({arch})")
    row = rows[0]
    ours = {"identifier": row.get("signing_id"), "team_id": row.get("team_id") or (
        "not set" if theirs["team_id"] == "not set" else None), "cdhash": row.get("cdhash"),
        "authority": row.get("authority"), "flags": f"{row.get('cd_flags') or 0:#x}"}
    if theirs["flags"] is None:
        ours["flags"] = None
    verdict = _result("macho_info vs codesign -dvvv", "macos", ours, theirs, path)
    if verdict.status != AGREE:
        return verdict
    der = subprocess.run(["codesign", "-d", "--entitlements", "-", "--der", path], capture_output=True,
                         timeout=TIMEOUT, check=False).stdout
    at = der.find(b"\x70")  # codesign may print the blob header; the DER starts at [APPLICATION 16]
    try:
        ents = decode_der_entitlements(der[at:]) if at >= 0 and der[at:] else None
    except DerError as exc:
        return CheckResult("macho_info vs codesign -dvvv", "macos", DISAGREE, f"codesign's DER does not decode: {exc}")
    import json

    mine = json.loads(row["entitlements"]) if row.get("entitlements") else None
    if ents is not None and mine is not None and json.dumps(ents, sort_keys=True, default=str) != json.dumps(
            mine, sort_keys=True, default=str):
        return CheckResult("macho_info vs codesign -dvvv", "macos", DISAGREE, "entitlements differ from --der")
    return CheckResult("macho_info vs codesign -dvvv", "macos", AGREE, f"{path}: identity, cdhash, flags, entitlements")


def check_macos_otool(path: str | None = None) -> CheckResult:
    """macho_load_commands' command sequence vs `otool -l` for one file."""
    from .tables.base import QueryContext
    from .tables.macho_load_commands import MachoLoadCommandsTable

    path = path or os.path.realpath(sys.executable)
    arch = os.uname().machine
    proc = _run(["otool", "-arch", arch, "-l", path])
    if proc.returncode != 0:
        return CheckResult("macho_load_commands vs otool -l", "macos", ERROR, proc.stderr.strip()[:200])
    theirs = re.findall(r"^\s*cmd (LC_\w+)", proc.stdout, re.M)
    rows = MachoLoadCommandsTable().generate(QueryContext.build({"path": [(2, path)]}))
    ours = [r["cmd"] for r in rows if r.get("arch") in (arch, "arm64e") and r.get("cmd")]
    return _result("macho_load_commands vs otool -l", "macos", ours, theirs, f"{len(theirs)} commands of {path}")


_FIXTURE_LIB = "int selfcheck_value(void) { return 42; }\n"
_FIXTURE_MAIN = "int selfcheck_value(void);\nint main(void) { return selfcheck_value() == 42 ? 0 : 1; }\n"


def check_macos_dyld_search() -> CheckResult:
    """Our @rpath resolution vs dyld's own (DYLD_PRINT_SEARCHING=1) on a fixture built with cc.

    The fixture uses a bare `@loader_path` LC_RPATH, the case dyld accepts without a slash.
    """
    cc = shutil.which("cc")
    if cc is None:
        return CheckResult("resolution vs DYLD_PRINT_SEARCHING", "macos", SKIPPED, "no C compiler (cc)")
    from .tables.base import QueryContext
    from .tables.macho_load_commands import MachoLoadCommandsTable

    with tempfile.TemporaryDirectory(prefix="dyldwatch-selfcheck-") as tmp:
        lib_c, main_c = os.path.join(tmp, "lib.c"), os.path.join(tmp, "main.c")
        Path(lib_c).write_text(_FIXTURE_LIB)
        Path(main_c).write_text(_FIXTURE_MAIN)
        lib, exe = os.path.join(tmp, "libselfcheck.dylib"), os.path.join(tmp, "selfcheck")
        for argv in ([cc, "-dynamiclib", "-install_name", "@rpath/libselfcheck.dylib", "-o", lib, lib_c],
                     [cc, "-o", exe, main_c, lib, "-Wl,-rpath,@loader_path"]):
            built = _run(argv)
            if built.returncode != 0:
                return CheckResult("resolution vs DYLD_PRINT_SEARCHING", "macos", ERROR, built.stderr[:200])
        ran = _run([exe], env={**os.environ, "DYLD_PRINT_SEARCHING": "1"})
        found = re.findall(r'found: dylib-from-disk: "([^"]+)"', ran.stderr) + re.findall(
            r'found: "([^"]+libselfcheck[^"]*)"', ran.stderr)
        theirs = os.path.realpath(found[0]) if found else None
        rows = MachoLoadCommandsTable().generate(QueryContext.build({"path": [(2, exe)]}))
        ours = next((r["resolved_path"] for r in rows if r.get("name") == "@rpath/libselfcheck.dylib"), None)
        ours = os.path.realpath(ours) if ours else None
        return _result("resolution vs DYLD_PRINT_SEARCHING", "macos", ours, theirs,
                       f"@rpath/libselfcheck.dylib via a bare @loader_path rpath (exit {ran.returncode})")


def check_macos_quarantine() -> CheckResult:
    """The xattr reader vs `xattr -p` for com.apple.quarantine on a file marked by the `xattr` tool."""
    from .host.xattrs import read_xattrs

    value = "0083;65f0c0de;Safari;5A3C1E2B-0D4F-4A6B-8C9D-0E1F2A3B4C5D"
    with tempfile.NamedTemporaryFile(prefix="dyldwatch-selfcheck-") as fh:
        wrote = _run(["xattr", "-w", "com.apple.quarantine", value, fh.name])
        if wrote.returncode != 0:
            return CheckResult("quarantine vs xattr -p", "macos", ERROR, wrote.stderr.strip()[:200])
        theirs = _run(["xattr", "-p", "com.apple.quarantine", fh.name]).stdout.strip()
        ours = (read_xattrs(fh.name, ["com.apple.quarantine"]).values.get("com.apple.quarantine") or b"").decode()
    return _result("quarantine vs xattr -p", "macos", ours, theirs, "com.apple.quarantine of a marked file")


def check_macos_provenance() -> CheckResult:
    """Size of com.apple.provenance on this interpreter as read by us vs `xattr -px`."""
    from .host.xattrs import read_xattrs

    path = os.path.realpath(sys.executable)
    hexdump = _run(["xattr", "-px", "com.apple.provenance", path])
    if hexdump.returncode != 0:
        return CheckResult("com.apple.provenance size vs xattr -px", "macos", SKIPPED, f"{path} carries none")
    theirs = len(bytes.fromhex("".join(hexdump.stdout.split())))
    ours = len(read_xattrs(path, ["com.apple.provenance"]).values.get("com.apple.provenance") or b"")
    return _result("com.apple.provenance size vs xattr -px", "macos", ours, theirs, f"bytes on {path}")


def _downloaded_file(attr: str) -> str | None:
    """A file in the user's Downloads that carries `attr` (what a browser left there), or None."""
    from .host.xattrs import read_xattrs

    home = os.environ.get("SUDO_USER") and os.path.expanduser(f"~{os.environ['SUDO_USER']}") or os.path.expanduser("~")
    folder = os.path.join(home, "Downloads")
    try:
        names = sorted(os.listdir(folder))[:200]
    except OSError:
        return None
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path) and read_xattrs(path, [attr]).values.get(attr):
            return path
    return None


def check_macos_where_froms() -> CheckResult:
    """Our kMDItemWhereFroms decoding vs Spotlight's own reading of it (`mdls -raw`)."""
    from .formats.provenance import WHERE_FROMS_XATTR, decode_where_froms
    from .host.xattrs import read_xattrs

    path = _downloaded_file(WHERE_FROMS_XATTR)
    if path is None:
        return CheckResult("where-froms vs mdls", "macos", SKIPPED, "no file in ~/Downloads carries where-froms")
    ours, _problem = decode_where_froms(read_xattrs(path, [WHERE_FROMS_XATTR]).values[WHERE_FROMS_XATTR])
    listed = _run(["mdls", "-raw", "-name", "kMDItemWhereFroms", path]).stdout
    theirs = re.findall(r'"((?:[^"\\]|\\.)*)"', listed)
    return _result("where-froms vs mdls", "macos", ours, theirs, f"kMDItemWhereFroms of {path}")


def check_macos_quarantine_events() -> CheckResult:
    """Our QuarantineEventsV2 lookup vs the sqlite3 tool on the same event (agent and data URL)."""
    from .formats.provenance import QUARANTINE_XATTR, decode_quarantine
    from .host.quarantine_events import database_for_uid, lookup_event
    from .host.xattrs import read_xattrs

    path = _downloaded_file(QUARANTINE_XATTR)
    if path is None:
        return CheckResult("QuarantineEventsV2 vs sqlite3", "macos", SKIPPED, "no quarantined file in ~/Downloads")
    event = decode_quarantine(read_xattrs(path, [QUARANTINE_XATTR]).values[QUARANTINE_XATTR]).event_id
    db = database_for_uid(os.stat(path).st_uid)
    if not event or not db:
        return CheckResult("QuarantineEventsV2 vs sqlite3", "macos", SKIPPED, "no event id or no events database")
    found = lookup_event(db, event)
    ours = [found.agent_name, found.data_url] if found else None
    if not re.fullmatch(r"[0-9A-Fa-f-]{36}", event):
        return CheckResult("QuarantineEventsV2 vs sqlite3", "macos", ERROR, f"unexpected event id {event!r}")
    out = _run(["sqlite3", "-readonly", "-separator", "\x1f", db,
                "SELECT LSQuarantineAgentName, LSQuarantineDataURLString FROM LSQuarantineEvent "
                f"WHERE LSQuarantineEventIdentifier = '{event}'"]).stdout.rstrip("\n")
    theirs = [v or None for v in out.split("\x1f")] if out else None
    return _result("QuarantineEventsV2 vs sqlite3", "macos", ours, theirs, f"event {event} of {path}")


LINUX_CHECKS: tuple[Check, ...] = (check_linux_rwx_regions, check_linux_process_images, check_linux_statx_btime,
                                   check_linux_xdg_xattrs)
MACOS_CHECKS: tuple[Check, ...] = (check_macos_vmmap, check_macos_images_flavors, check_macos_codesign,
                                   check_macos_otool, check_macos_dyld_search, check_macos_quarantine,
                                   check_macos_provenance, check_macos_where_froms, check_macos_quarantine_events)
_NAMES = {
    check_macos_vmmap: "region walk vs vmmap -v",
    check_macos_images_flavors: "flavor 22 images vs flavor 8 vnode regions",
    check_macos_codesign: "macho_info vs codesign -dvvv",
    check_macos_otool: "macho_load_commands vs otool -l",
    check_macos_dyld_search: "resolution vs DYLD_PRINT_SEARCHING",
    check_macos_quarantine: "quarantine vs xattr -p",
    check_macos_provenance: "com.apple.provenance size vs xattr -px",
    check_macos_where_froms: "where-froms vs mdls",
    check_macos_quarantine_events: "QuarantineEventsV2 vs sqlite3",
    check_linux_rwx_regions: "rwx_regions vs /proc/self/maps",
    check_linux_process_images: "process_images vs /proc/self/maps",
    check_linux_statx_btime: "statx btime vs stat -c %W",
    check_linux_xdg_xattrs: "xdg xattrs vs getxattr",
}


def run_checks(platform: str = sys.platform) -> Iterator[CheckResult]:
    """Every check for this platform; the other platform's checks come back as skipped."""
    here, there, label = ((MACOS_CHECKS, LINUX_CHECKS, "linux") if platform == "darwin"
                          else (LINUX_CHECKS, MACOS_CHECKS, "macos"))
    for check in here:
        try:
            yield check()
        except Exception as exc:  # a check that breaks is reported, never hides the others
            yield CheckResult(_NAMES[check], "macos" if label == "linux" else "linux", ERROR,
                              f"{type(exc).__name__}: {exc}")
    for check in there:
        yield CheckResult(_NAMES[check], label, SKIPPED, f"{label}-only")


def exit_code(results: list[CheckResult]) -> int:
    """0 when nothing disagrees or breaks; 1 otherwise."""
    return 1 if any(r.status in (DISAGREE, ERROR) for r in results) else 0

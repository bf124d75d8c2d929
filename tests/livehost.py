"""Live workload simulators: real processes showing attack and benign dynamic-code shapes on Linux.

End-to-end tests of `dyldwatch hunt` need the shapes the packs look for on a live host, not in a
recorded database. Each context manager below starts the process(es), waits (bounded) until the
effect is visible in /proc, yields a `Sim` with the pids and planted paths, and on exit kills its
processes by pid and removes what it planted. C payloads are compiled with gcc at first use into a
temporary directory (never committed); `have_toolchain()` says whether that can work here.

    with ld_preload_shm() as sim:        # (a) /dev/shm hook .so preloaded + loopback TCP connection
    with dlopen_planted() as sim:        # (b) dlopen() of ~/.cache/x/update.dat under a temp home
    with anonymous_rwx() as sim:         # (c) mmap(PROT_READ|WRITE|EXEC) anonymous, ret executed
    with memfd_exec() as sim:            # (d) fexecve() of a memfd holding a compiled payload
    with ld_preload_allowlisted_first() as sim:  # (e) LD_PRELOAD="<system lib>:<hook>"
    with crontab_planted() as sim:       # (f) cron.d entry -> planted binary; sets DYLDWATCH_CRONTAB_ROOT
    with python_extension() as sim:      # (g) benign: C extension in a venv-like site-packages
    with jit_runtime() as sim:           # (h) benign: RW -> mprotect RX anonymous code in a "runtime"
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

WAIT_SECONDS = 10.0

PAYLOAD_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/* Modes: pause | connect PORT | dlopen PATH | rwx | jit. Prints "ready" once the effect exists. */
int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "pause";
    if (!strcmp(mode, "connect") && argc > 2) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET; a.sin_port = htons(atoi(argv[2])); a.sin_addr.s_addr = htonl(0x7f000001);
        if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 2; }
    } else if (!strcmp(mode, "dlopen") && argc > 2) {
        if (!dlopen(argv[2], RTLD_NOW)) { fprintf(stderr, "%s\n", dlerror()); return 2; }
    } else if (!strcmp(mode, "rwx") || !strcmp(mode, "jit")) {
        int rwx = !strcmp(mode, "rwx");
        unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | (rwx ? PROT_EXEC : 0),
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { perror("mmap"); return 2; }
        p[0] = 0xc3; /* ret */
        if (!rwx && mprotect(p, 4096, PROT_READ | PROT_EXEC) != 0) { perror("mprotect"); return 2; }
        ((void (*)(void))p)();
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
"""

HOOK_C = r"""
#include <stdlib.h>
__attribute__((constructor)) static void dyldwatch_hook_init(void) { setenv("DYLDWATCH_HOOKED", "1", 0); }
int dyldwatch_hook_marker(void) { return 42; }
"""

EXTENSION_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "dwsim_ext", NULL, -1, methods};
PyMODINIT_FUNC PyInit_dwsim_ext(void) { return PyModule_Create(&mod); }
"""


@dataclass
class Sim:
    """What a simulator started: pids (main first), planted files, and anything else to check."""

    pids: list[int]
    paths: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.pids[0]


def have_toolchain() -> bool:
    return sys.platform.startswith("linux") and shutil.which("gcc") is not None


@functools.cache
def _build_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="dyldwatch-build-"))
    atexit.register(shutil.rmtree, d, True)
    return d


@functools.cache
def _compile(name: str, source: str, *flags: str) -> Path:
    """gcc `source` into the session build directory once (cached by name, source and flags)."""
    d = _build_dir()
    src = d / f"{name}.c"
    out = d / name
    src.write_text(source)
    subprocess.run(["gcc", "-O0", "-o", str(out), str(src), *flags], check=True, capture_output=True, timeout=60)
    return out


def payload() -> Path:
    """The multi-mode payload executable."""
    return _compile("payload", PAYLOAD_C, "-ldl")


def hook_library() -> Path:
    """A tiny shared object with a constructor (the thing an attacker preloads)."""
    return _compile("libhook.so", HOOK_C, "-shared", "-fPIC")


def python_extension_module() -> Path:
    inc = sysconfig.get_paths()["include"]
    return _compile("dwsim_ext.so", EXTENSION_C, "-shared", "-fPIC", f"-I{inc}")


def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise TimeoutError(f"not visible within {timeout:.0f}s: {what}")


def maps_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text(errors="replace")
    except OSError:
        return ""


def kill_pid(pid: int) -> None:
    """SIGKILL one process by pid and reap it if it is our child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def _spawn(argv: list[str], env: dict[str, str] | None = None, ready: str = "ready",
           **kw: object) -> Iterator[subprocess.Popen[bytes]]:
    """Start a child, wait for its `ready` line (bounded), kill it by pid on exit."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **kw)  # type: ignore[call-overload]
    try:
        _await_line(proc, ready)
        yield proc
    finally:
        kill_pid(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _await_line(proc: subprocess.Popen[bytes], ready: str) -> None:
    """Read the child's stdout until `ready` appears; TimeoutError (with its stderr) otherwise."""
    import selectors

    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + WAIT_SECONDS
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while ready.encode() not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{proc.args!r} did not say {ready!r} within {WAIT_SECONDS:.0f}s")
            if sel.select(min(left, 0.2)):
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:  # EOF: the child died before getting ready
                    proc.wait(timeout=5)
                    raise RuntimeError(f"{proc.args!r} exited {proc.returncode}: {proc.stderr.read()[-2000:]!r}")
                buf += chunk


def _base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "LD_LIBRARY_PATH")}
    env.update(extra)
    return env


@contextlib.contextmanager
def loopback_listener() -> Iterator[socket.socket]:
    """A TCP listener on 127.0.0.1 (ephemeral port) whose pending connections stay open."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        yield srv
    finally:
        srv.close()


@contextlib.contextmanager
def _planted_dir(parent: str | None, prefix: str) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _copy(src: Path, dst: Path, mode: int = 0o755) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    dst.chmod(mode)
    return dst


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _has_socket(pid: int) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[") for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def _predate() -> None:
    """Let a planted file be older than its victim by a whole second, as in an attack (osquery's
    start_time and birth times are whole seconds; a file born the second its process started reads
    as extracted by that process, like a JVM's native library)."""
    time.sleep(1.1)


@contextlib.contextmanager
def ld_preload_shm(shm: str = "/dev/shm") -> Iterator[Sim]:
    """(a) A hook .so planted in /dev/shm and LD_PRELOADed into a process that holds an outbound
    TCP connection to a loopback listener. paths: hook; extra: port, listener."""
    with _planted_dir(shm, ".dyldwatch-") as d, loopback_listener() as srv:
        hook = _copy(hook_library(), d / "libprocesshider.so")
        _predate()
        port = srv.getsockname()[1]
        env = _base_env(LD_PRELOAD=str(hook))
        with _spawn([str(payload()), "connect", str(port)], env=env) as p:
            wait_until(lambda: str(hook) in maps_of(p.pid) and _has_socket(p.pid), "preloaded hook and socket")
            yield Sim([p.pid], {"hook": str(hook), "exe": str(payload())}, {"LD_PRELOAD": str(hook)},
                      {"port": port, "listener": srv})


@contextlib.contextmanager
def dlopen_planted(home: str | None = None, relpath: str = ".cache/x/update.dat") -> Iterator[Sim]:
    """(b) dlopen() of a library whose name has no `.so`, planted under a user-writable home
    (a temporary directory standing in for ~ unless `home` is given). paths: library, home."""
    with _planted_dir(home, "dyldwatch-home-") as h:
        lib = _copy(hook_library(), h / relpath, 0o644)
        h.chmod(0o777)  # user-writable from the top, like a home a non-root user owns
        _predate()
        with _spawn([str(payload()), "dlopen", str(lib)], env=_base_env()) as p:
            wait_until(lambda: str(lib) in maps_of(p.pid), "dlopen'ed library mapped")
            yield Sim([p.pid], {"library": str(lib), "home": str(h), "exe": str(payload())})


@contextlib.contextmanager
def anonymous_rwx() -> Iterator[Sim]:
    """(c) Anonymous memory mapped read+write+execute, with a `ret` written and executed."""
    with _spawn([str(payload()), "rwx"], env=_base_env()) as p:
        wait_until(lambda: any(line.split()[1].startswith("rwx") and len(line.split()) == 5
                               for line in maps_of(p.pid).splitlines()), "anonymous rwx mapping")
        yield Sim([p.pid], {"exe": str(payload())})


MEMFD_NAME = "dyldwatch-memfd-payload"


@contextlib.contextmanager
def memfd_exec(name: str = MEMFD_NAME) -> Iterator[Sim]:
    """(d) A process running from a memfd: a Python child copies the payload into memfd_create(name)
    and fexecve()s it (os.execve on the fd), so the pid stays and /proc/PID/exe is
    "/memfd:NAME (deleted)". extra: memfd_name."""
    code = ("import os,sys; fd=os.memfd_create(sys.argv[1], 0); "
            "os.write(fd, open(sys.argv[2],'rb').read()); os.execve(fd, [sys.argv[1], 'pause'], dict(os.environ))")
    with _spawn([sys.executable, "-c", code, name, str(payload())], env=_base_env()) as p:
        wait_until(lambda: _exe(p.pid).startswith(f"/memfd:{name}"), "memfd exe")
        yield Sim([p.pid], {"memfd": f"/memfd:{name}"}, extra={"memfd_name": name})


#: Libraries an allowlist might name, first existing one wins for (e).
ALLOWLIST_LOOKALIKES = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/x86_64-linux-gnu/libz.so.1",
    "/lib/x86_64-linux-gnu/libz.so.1",
    "/usr/lib/aarch64-linux-gnu/libz.so.1",
    "/usr/lib64/libz.so.1",
)


@contextlib.contextmanager
def ld_preload_allowlisted_first(shm: str = "/dev/shm", sep: str = ":") -> Iterator[Sim]:
    """(e) LD_PRELOAD whose FIRST entry looks allowlisted (jemalloc if present, else an existing
    system library) and whose second is the hook in /dev/shm. paths: first, hook; env: LD_PRELOAD."""
    first = next((p for p in ALLOWLIST_LOOKALIKES if os.path.exists(p)), None)
    if first is None:
        raise FileNotFoundError("no system library to put first in LD_PRELOAD")
    with _planted_dir(shm, ".dyldwatch-") as d:
        hook = _copy(hook_library(), d / "libhook.so")
        value = f"{first}{sep}{hook}"
        with _spawn([str(payload()), "pause"], env=_base_env(LD_PRELOAD=value)) as p:
            real_first = os.path.realpath(first)
            wait_until(lambda: str(hook) in (m := maps_of(p.pid)) and real_first in m, "both preloads mapped")
            yield Sim([p.pid], {"first": first, "first_real": real_first, "hook": str(hook)}, {"LD_PRELOAD": value})


@contextlib.contextmanager
def crontab_planted(export_env: bool = True, schedule: str = "*/5 * * * *") -> Iterator[Sim]:
    """(f) A cron.d entry pointing at a planted binary, which is also running. The cron tree is a
    temporary root (ROOT/etc/cron.d/dyldwatch-sim); point the native crontab table at it with
    DYLDWATCH_CRONTAB_ROOT=ROOT (set in os.environ for the duration when `export_env`, restored
    after) or crontab(ctx, root=ROOT). paths: root, cron_file, binary; env: the variable."""
    from dyldwatch.tables.native.crontab import ROOT_ENV

    with _planted_dir(None, "dyldwatch-cron-") as root:
        binary = _copy(payload(), root / "home" / "user" / ".local" / "bin" / "update-helper")
        cron_file = root / "etc" / "cron.d" / "dyldwatch-sim"
        cron_file.parent.mkdir(parents=True)
        cron_file.write_text(f"# planted by dyldwatch's live tests\nSHELL=/bin/sh\n{schedule} root {binary} --quiet\n")
        old = os.environ.get(ROOT_ENV)
        if export_env:
            os.environ[ROOT_ENV] = str(root)
        try:
            with _spawn([str(binary), "pause"], env=_base_env()) as p:
                yield Sim([p.pid], {"root": str(root), "cron_file": str(cron_file), "binary": str(binary)},
                          {ROOT_ENV: str(root)})
        finally:
            if export_env:
                if old is None:
                    os.environ.pop(ROOT_ENV, None)
                else:
                    os.environ[ROOT_ENV] = old


@contextlib.contextmanager
def python_extension() -> Iterator[Sim]:
    """(g) Benign: a venv-like tree whose site-packages holds a compiled C extension, imported by a
    Python child. paths: venv, site_packages, extension."""
    with _planted_dir(None, "dyldwatch-venv-") as venv:
        site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        ext = _copy(python_extension_module(), site / f"dwsim_ext{sysconfig.get_config_var('EXT_SUFFIX')}", 0o644)
        (venv / "pyvenv.cfg").write_text(f"home = {os.path.dirname(sys.executable)}\n")
        code = ("import sys,time; sys.path.insert(0, sys.argv[1]); import dwsim_ext; "
                "assert dwsim_ext.answer() == 42; print('ready', flush=True); time.sleep(3600)")
        with _spawn([sys.executable, "-c", code, str(site)], env=_base_env()) as p:
            wait_until(lambda: str(ext) in maps_of(p.pid), "extension module mapped")
            yield Sim([p.pid], {"venv": str(venv), "site_packages": str(site), "extension": str(ext)})


@contextlib.contextmanager
def jit_runtime(exe_path: str | None = None) -> Iterator[Sim]:
    """(h) Benign JIT shape: anonymous memory written RW then mprotect()ed R-X, in a process whose
    executable looks like a runtime (TMP/usr/lib/jvm/dyldwatch-sim/bin/java by default; pass
    `exe_path`, e.g. under /usr/lib/jvm/, to match a pack's runtime allowlist — its directories are
    created and the file removed on exit). paths: exe."""
    with _planted_dir(None, "dyldwatch-jit-") as d:
        target = Path(exe_path) if exe_path else d / "usr" / "lib" / "jvm" / "dyldwatch-sim" / "bin" / "java"
        made = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
        exe = _copy(payload(), target)
        try:
            with _spawn([str(exe), "jit"], env=_base_env()) as p:
                wait_until(lambda: any(len(f := line.split()) == 5 and f[1] == "r-xp" and f[4] == "0"
                                       for line in maps_of(p.pid).splitlines()), "anonymous r-x mapping")
                yield Sim([p.pid], {"exe": str(exe)})
        finally:
            if exe_path:
                with contextlib.suppress(OSError):
                    exe.unlink()
                for p in made:
                    with contextlib.suppress(OSError):
                        p.rmdir()


SIMULATORS: dict[str, Callable[[], contextlib.AbstractContextManager[Sim]]] = {
    "ld_preload_shm": ld_preload_shm,
    "dlopen_planted": dlopen_planted,
    "anonymous_rwx": anonymous_rwx,
    "memfd_exec": memfd_exec,
    "ld_preload_allowlisted_first": ld_preload_allowlisted_first,
    "crontab_planted": crontab_planted,
    "python_extension": python_extension,
    "jit_runtime": jit_runtime,
}

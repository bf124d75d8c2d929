"""A host-sized Linux workload for the pack benchmark: hundreds of live processes mapping many images.

gcc builds LIBS small distinct shared objects and a worker program that dlopen()s the objects and
system libraries named on its command line, says "ready", and sleeps. Each worker loads its own
subset (half to all of the objects, and two to eight system libraries found on this host), so the
host maps tens of thousands of images.

Like a real host, most images are distribution libraries: the objects are installed in a temporary
directory under /usr/lib (root-owned, not user-writable: dylib_provenance's system_path = 1), and
every LOCAL_EVERY-th worker loads copies from a temporary directory under /tmp instead (recent,
non-system: what AN0054 follows up with its per-image subqueries). Without the rights to write
under /usr/lib every worker loads the /tmp copies (the worst case for AN0054). A few workers also
carry an LD_PRELOAD of one object (AN1467's preload query, AN0054's "named in LD_PRELOAD") or hold
an anonymous rwx page (the memory queries of AN0840 and AN1467).

Every worker is killed by pid on exit (and dies with this process: PR_SET_PDEATHSIG), and the
temporary directories are removed.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

WORKER_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

/* worker MODE DIR ITEM...: ITEM is an absolute library path or N for DIR/libdwb<N>.so.
   MODE rwx also maps an anonymous read+write+execute page and runs a `ret` from it. */
int main(int argc, char **argv) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (argc < 3) return 2;
    char path[4096];
    for (int i = 3; i < argc; i++) {
        if (argv[i][0] == '/') snprintf(path, sizeof path, "%s", argv[i]);
        else snprintf(path, sizeof path, "%s/libdwb%s.so", argv[2], argv[i]);
        if (!dlopen(path, RTLD_NOW | RTLD_LOCAL)) { fprintf(stderr, "%s\n", dlerror()); return 2; }
    }
    if (!strcmp(argv[1], "rwx")) {
        unsigned char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { perror("mmap"); return 2; }
        p[0] = 0xc3;
        ((void (*)(void))p)();
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
"""

LIB_C = """
static volatile int dwb_state_{n}[{words}] = {{ {n} }};
int dwb_value_{n}(int x) {{ return x * {n} + dwb_state_{n}[x % {words}]; }}
const char *dwb_name_{n}(void) {{ return "dyldwatch bench object {n}"; }}
"""

#: System libraries a worker may dlopen besides the bench objects (those present on this host).
SYSTEM_LIBS = ("libz.so.1", "libbz2.so.1.0", "liblzma.so.5", "libexpat.so.1", "libffi.so.8", "libsqlite3.so.0",
               "libstdc++.so.6", "libcrypto.so.3", "libssl.so.3", "libxml2.so.2", "libpcre2-8.so.0", "libgmp.so.10",
               "libzstd.so.1", "libuuid.so.1", "libm.so.6", "libyaml-0.so.2", "liblz4.so.1", "libpng16.so.16",
               "libmpfr.so.6", "libjpeg.so.62")
SYSTEM_DIRS = ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
               "/usr/lib")
#: Every PRELOAD_EVERY-th worker carries LD_PRELOAD; every RWX_EVERY-th maps an rwx page.
PRELOAD_EVERY = 50
RWX_EVERY = 100
#: Where the system copies of the objects go (a temporary directory made under it).
SYSTEM_PARENT = "/usr/lib"


@dataclass
class Workload:
    build: Path  # the worker, and the objects as built
    local: Path  # copies under /tmp: recent, non-system
    system: Path | None  # copies under /usr/lib (None: not writable here, every worker loads local copies)
    libs: int
    local_every: int
    system_libs: list[str]
    pids: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def worker(self) -> Path:
        return self.build / "dwbench-worker"

    def is_local(self, i: int) -> bool:
        return self.system is None or i % self.local_every == 0


def system_libraries() -> list[str]:
    out = []
    for name in SYSTEM_LIBS:
        for d in SYSTEM_DIRS:
            if os.path.exists(os.path.join(d, name)):
                out.append(os.path.join(d, name))
                break
    return out


def _gcc(args: list[str]) -> None:
    subprocess.run(["nice", "-n", "10", "gcc", *args], check=True, capture_output=True, timeout=120)


def build(directory: Path, libs: int) -> None:
    """Compile the worker and `libs` distinct shared objects (two at a time: this machine has 2 cores)."""
    src = directory / "worker.c"
    src.write_text(WORKER_C)
    jobs = [["-O1", "-o", str(directory / "dwbench-worker"), str(src), "-ldl"]]
    for n in range(libs):
        c = directory / f"libdwb{n:03d}.c"
        c.write_text(LIB_C.format(n=n, words=64 + n))
        jobs.append(["-O1", "-shared", "-fPIC", "-o", str(directory / f"libdwb{n:03d}.so"), str(c)])
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(_gcc, jobs))
    for c in directory.glob("*.c"):
        c.unlink()


def _install(build_dir: Path, dest: Path, libs: int) -> None:
    for n in range(libs):
        shutil.copyfile(build_dir / f"libdwb{n:03d}.so", dest / f"libdwb{n:03d}.so")
        os.chmod(dest / f"libdwb{n:03d}.so", 0o755)


def _argv(w: Workload, i: int) -> tuple[list[str], dict[str, str]]:
    """Worker i's command line and environment: a subset of half to all of the objects (a different
    size per worker) from its directory, and two to eight system libraries."""
    rng = random.Random(i)
    count = rng.randint(w.libs // 2, w.libs)
    items = [f"{n:03d}" for n in sorted(rng.sample(range(w.libs), count))]
    system = rng.sample(w.system_libs, min(len(w.system_libs), rng.randint(2, 8)))
    where = w.local if w.is_local(i) else w.system
    assert where is not None
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "LD_LIBRARY_PATH")}
    if i % PRELOAD_EVERY == PRELOAD_EVERY - 1:
        env["LD_PRELOAD"] = str(where / f"libdwb{i % w.libs:03d}.so")
    mode = "rwx" if i % RWX_EVERY == RWX_EVERY - 1 else "sleep"
    return [str(w.worker), mode, str(where), *items, *system], env


def spawn(w: Workload, upto: int, timeout: float = 60.0) -> None:
    """Start workers until `upto` run; wait (bounded) until each says ready."""
    start = len(w.procs)
    for i in range(start, upto):
        argv, env = _argv(w, i)
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=w.build)
        w.procs.append(p)
        w.pids.append(p.pid)
    deadline = time.monotonic() + timeout
    for p in w.procs[start:]:
        assert p.stdout is not None and p.stderr is not None
        os.set_blocking(p.stdout.fileno(), True)
        left = deadline - time.monotonic()
        if not select.select([p.stdout], [], [], max(left, 0.0))[0]:
            raise TimeoutError(f"worker {p.pid} not ready within {timeout:.0f}s")
        line = p.stdout.readline()
        if b"ready" not in line:
            p.wait(timeout=5)
            raise RuntimeError(f"worker {p.pid} exited {p.returncode}: {p.stderr.read()[-500:]!r}")


def kill_all(w: Workload) -> None:
    for pid in w.pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for p in w.procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)
        for stream in (p.stdout, p.stderr):
            if stream is not None:
                stream.close()
    w.procs.clear()
    w.pids.clear()


@contextlib.contextmanager
def linux_workload(libs: int, local_every: int) -> Iterator[Workload]:
    """Build and install in temporary directories; on exit kill every worker by pid and remove them."""
    made: list[Path] = []
    w: Workload | None = None
    try:
        build_dir = Path(tempfile.mkdtemp(prefix="dyldwatch-packbench-build-"))
        made.append(build_dir)
        local = Path(tempfile.mkdtemp(prefix="dyldwatch-packbench-local-"))
        made.append(local)
        system: Path | None = None
        if os.access(SYSTEM_PARENT, os.W_OK):
            system = Path(tempfile.mkdtemp(prefix="dyldwatch-packbench-", dir=SYSTEM_PARENT))
            made.append(system)
            system.chmod(0o755)
        build(build_dir, libs)
        _install(build_dir, local, libs)
        if system is not None:
            _install(build_dir, system, libs)
        w = Workload(build_dir, local, system, libs, local_every, system_libraries())
        yield w
    finally:
        if w is not None:
            kill_all(w)
        for d in made:
            shutil.rmtree(d, ignore_errors=True)


@dataclass(frozen=True)
class HostImages:
    processes: int
    images: int  # distinct (pid, path) of executable file mappings, every process on the host
    mappings: int  # lines of /proc/*/maps
    files: int  # distinct image paths


def count_images() -> HostImages:
    """What the host maps, from /proc/*/maps (what process_images and process_memory_map read)."""
    procs = images = mappings = 0
    paths: set[str] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/maps") as fh:
                lines = fh.read().splitlines()
        except OSError:
            continue
        procs += 1
        mappings += len(lines)
        mine = set()
        for line in lines:
            parts = line.split(None, 5)
            if len(parts) == 6 and "x" in parts[1] and parts[5].startswith("/"):
                mine.add(parts[5])
        images += len(mine)
        paths |= mine
    return HostImages(procs, images, mappings, len(paths))

"""One executable per platform: `dyldwatch.ext`, a PEX zipapp with our code and every dependency.

Fleet operators ship one file and a configuration, not a pip install. We build from Linux CI for
macOS and Linux alike, so every native dependency comes as a wheel for the *target* platform:
`pip download --only-binary=:all: --platform ... --python-version ...` fills a wheelhouse (pinned
to the versions installed here, the ones the test suite ran with), and `pex --pre-resolved-dists`
wraps it with a `--complete-platform` we write ourselves (so pex never resolves or builds anything,
and no network is needed beyond pip's index). LIEF is not bundled: `dyldwatch extension` never
imports it (it is a dev-only reference parser).

The artifact's entry point is `dyldwatch.__main__:artifact_main` (the front door): an autoloaded
extension goes straight to the Thrift runtime without importing click or the pack tooling.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ARTIFACT_NAME = "dyldwatch.ext"
#: The pex release this builder was written and tested against (also in pyproject's dev extra).
PEX_REQUIREMENT = "pex==2.105.2"


class PackagingError(Exception):
    """A build step failed; the message says which, with what, and what to do."""


@dataclass(frozen=True)
class Target:
    """A host platform: its wheel tags, the interpreter it runs under and the shebang that finds it."""

    name: str
    system: str  # "darwin" | "linux"
    machine: str  # platform.machine() on the host
    python: tuple[int, int]
    platforms: tuple[str, ...]  # the newest platform tag per family; pip and we expand downwards
    shebang: str
    interpreter_note: str

    @property
    def py(self) -> str:
        return f"{self.python[0]}.{self.python[1]}"

    @property
    def cp(self) -> str:
        return f"cp{self.python[0]}{self.python[1]}"


_MACOS_PY = "/Library/Frameworks/Python.framework/Versions/3.12/bin/python3.12"
_MACOS_NOTE = ("python.org Python 3.12 (universal2 installer; macOS 10.13+), installed at "
               f"{_MACOS_PY}. macOS ships no usable python3: /usr/bin/python3 is the Command Line "
               "Tools shim (3.9, and a GUI prompt when the tools are missing).")
_LINUX_NOTE = "the distribution's Python 3.11 at /usr/bin/python3.11 (Debian 12; python3.11 package elsewhere)."

TARGETS: dict[str, Target] = {
    "macos-arm64": Target("macos-arm64", "darwin", "arm64", (3, 12), ("macosx_11_0_arm64",), _MACOS_PY, _MACOS_NOTE),
    "macos-x86_64": Target("macos-x86_64", "darwin", "x86_64", (3, 12), ("macosx_10_15_x86_64",), _MACOS_PY,
                           _MACOS_NOTE),
    "linux-x86_64": Target("linux-x86_64", "linux", "x86_64", (3, 11), ("manylinux_2_28_x86_64",),
                           "/usr/bin/python3.11", _LINUX_NOTE),
    "linux-aarch64": Target("linux-aarch64", "linux", "aarch64", (3, 11), ("manylinux_2_28_aarch64",),
                            "/usr/bin/python3.11", _LINUX_NOTE),
}

Progress = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"dyldwatch package: {msg}", file=sys.stderr, flush=True)


# --- wheel tags ------------------------------------------------------------------------------

def _platform_tags(target: Target) -> list[str]:
    """Every platform tag a host of this target accepts, newest first (what pip would derive there)."""
    tags: list[str] = []
    for plat in target.platforms:
        if plat.startswith("manylinux_"):
            _, major, minor, arch = plat.split("_", 3)
            legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
            for m in range(int(minor), 4, -1):
                tags.append(f"manylinux_{major}_{m}_{arch}")
                if m in legacy:
                    tags.append(f"{legacy[m]}_{arch}")
            tags.append(f"linux_{arch}")
        elif plat.startswith("macosx_"):
            _, major, minor, arch = plat.split("_", 3)
            formats = ["arm64", "universal2"] if arch == "arm64" else ["x86_64", "intel", "fat64", "fat32",
                                                                       "universal2", "universal"]
            versions: list[tuple[int, int]] = []
            for mj in range(int(major), 10, -1):
                versions.append((mj, 0))
            if arch == "x86_64":
                top = 16 if int(major) > 10 else int(minor)
                versions += [(10, mn) for mn in range(top, 3, -1)]
            for mj, mn in versions:
                tags += [f"macosx_{mj}_{mn}_{f}" for f in formats]
        else:
            tags.append(plat)
    return tags


def compatible_tags(target: Target) -> list[str]:
    """PEP 425 tags in priority order, as packaging.tags computes them for CPython on that host."""
    cp, (major, minor) = target.cp, target.python
    plats = _platform_tags(target)
    tags = [f"{cp}-{cp}-{p}" for p in plats]
    tags += [f"{cp}-abi3-{p}" for p in plats]
    tags += [f"{cp}-none-{p}" for p in plats]
    for m in range(minor - 1, 1, -1):
        tags += [f"cp{major}{m}-abi3-{p}" for p in plats]
    for m in range(minor, -1, -1):
        tags += [f"py{major}{m}-none-{p}" for p in plats]
    tags += [f"py{major}-none-{p}" for p in plats]
    tags.append(f"{cp}-none-any")
    for m in range(minor, -1, -1):
        tags.append(f"py{major}{m}-none-any")
    tags.append(f"py{major}-none-any")
    return tags


def complete_platform(target: Target) -> dict[str, object]:
    """pex's --complete-platform document: marker environment and compatible tags of the host."""
    darwin = target.system == "darwin"
    markers = {
        "implementation_name": "cpython",
        "implementation_version": f"{target.py}.0",
        "os_name": "posix",
        "platform_machine": target.machine,
        "platform_python_implementation": "CPython",
        "platform_system": "Darwin" if darwin else "Linux",
        "python_full_version": f"{target.py}.0",
        "python_version": target.py,
        "sys_platform": "darwin" if darwin else "linux",
    }
    return {"marker_environment": markers, "compatible_tags": compatible_tags(target)}


# --- build -----------------------------------------------------------------------------------

#: What a wheel build needs from a checkout (setup.py copies packs/ and scenarios into the package).
_CHECKOUT_BUILD_FILES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md")
_CHECKOUT_BUILD_DIRS = ("src", "packs", "sample_dbs/scenarios")


def own_wheel(out_dir: Path, work_dir: Path, progress: Progress = _stderr) -> Path:
    """The dyldwatch wheel to bundle: built from the checkout we run from, else the installed one repacked.

    From a checkout the build runs on a copy (it must not write build/ or egg-info into a tree others
    work in). From an installed wheel (`pip install 'dyldwatch[package]'`) the files the installer
    recorded are zipped back into a wheel with a fresh RECORD: the same code this CLI is running.
    """
    from .. import resources

    out_dir.mkdir(parents=True, exist_ok=True)
    root = resources.checkout_root()
    if root is None:
        progress("repacking the installed dyldwatch distribution into a wheel")
        return repack_installed(out_dir)
    progress(f"building the dyldwatch wheel from {root}")
    src = work_dir / "src-copy"
    for rel in _CHECKOUT_BUILD_DIRS:
        shutil.copytree(root / rel, src / rel, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in _CHECKOUT_BUILD_FILES:
        if (root / name).is_file():
            shutil.copy2(root / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out_dir), str(src)],
         "pip wheel dyldwatch", progress)
    return next(out_dir.glob("dyldwatch-*.whl"))


def repack_installed(out_dir: Path, dist_name: str = "dyldwatch") -> Path:
    """Zip an installed (non-editable) distribution back into a wheel: its package files and dist-info."""
    import base64
    import zipfile
    from importlib import metadata

    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError as exc:
        raise PackagingError(f"{dist_name} is not installed in {sys.prefix}: pip install '{dist_name}[package]'") \
            from exc
    files = list(dist.files or ())
    info = next((f.parts[0] for f in files if f.parts and f.parts[0].endswith(".dist-info")), None)
    if info is None or not any(f.parts[0] == dist_name for f in files):
        raise PackagingError(f"{dist_name} {dist.version} is installed without its files recorded "
                             "(an editable install outside a checkout?): reinstall it from a wheel")
    wheel = out_dir / f"{dist_name}-{dist.version}-py3-none-any.whl"
    record: list[str] = []
    skip_info = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(files, key=str):
            parts = f.parts
            if parts[0] not in (dist_name, info) or "__pycache__" in parts or f.suffix == ".pyc":
                continue
            if parts[0] == info and parts[-1] in skip_info:
                continue
            data = Path(str(f.locate())).read_bytes()
            arc = "/".join(parts)
            entry = zipfile.ZipInfo(arc, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            z.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        entry = zipfile.ZipInfo(f"{info}/RECORD", date_time=(1980, 1, 1, 0, 0, 0))
        entry.external_attr = 0o644 << 16
        z.writestr(entry, "\n".join(record) + "\n", compress_type=zipfile.ZIP_DEFLATED)
    return wheel


def _closure_pins() -> list[str]:
    """Pins for every installed distribution in dyldwatch's runtime dependency closure."""
    import re
    from importlib import metadata

    seen: dict[str, str] = {}
    todo = ["dyldwatch"]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = dist.version
        for req in dist.requires or []:
            if ";" in req and "extra ==" in req.split(";", 1)[1]:
                continue
            todo.append(re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0])
    seen.pop("dyldwatch", None)
    # apsw is pinned to osquery's SQLite for the toolchain (Python <= 3.11 wheels only); the
    # extension never imports it, so each target takes whatever apsw wheel its interpreter has.
    seen.pop("apsw", None)
    return [f"{k}=={v}" for k, v in sorted(seen.items())]


def _run(cmd: Sequence[str], what: str, progress: Progress) -> None:
    started = time.monotonic()
    # A fixed SOURCE_DATE_EPOCH keeps zip timestamps out of the hash: same inputs, same SHA-256.
    env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "315532800")}
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise PackagingError(f"{what} failed (exit {proc.returncode}):\n  $ {' '.join(cmd)}\n{tail}")
    progress(f"{what}: done in {time.monotonic() - started:.1f}s")


def _pex_command() -> list[str]:
    exe = Path(sys.executable).with_name("pex")
    if exe.exists():
        return [str(exe)]
    if shutil.which("pex"):
        return ["pex"]
    raise PackagingError(f"pex is not installed next to {sys.executable}: pip install 'dyldwatch[package]' "
                         f"(or '{PEX_REQUIREMENT}'; it is also in the dev extra).")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Artifact:
    target: Target
    path: Path
    sha256: str
    size: int
    wheels: tuple[str, ...]


def build_artifact(platform: str, out_dir: Path, *, progress: Progress = _stderr,
                   work_dir: Path | None = None) -> Artifact:
    """Build `<out_dir>/<platform>/dyldwatch.ext` (+ `.sha256`) for one target platform."""
    if platform not in TARGETS:
        raise PackagingError(f"unknown platform {platform!r}; choose one of: {', '.join(TARGETS)}")
    target = TARGETS[platform]
    pex = _pex_command()
    dest = Path(out_dir) / platform
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"dyldwatch-{platform}-", dir=work_dir) as tmp:
        tmpd = Path(tmp)
        own, wheelhouse = tmpd / "own", tmpd / "wheelhouse"
        ours = own_wheel(own, tmpd, lambda msg: progress(f"[{platform}] 1/4 {msg}"))
        constraints = tmpd / "constraints.txt"
        constraints.write_text("\n".join(_closure_pins()) + "\n")
        progress(f"[{platform}] 2/4 downloading {target.cp} wheels for {', '.join(target.platforms)}")
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--implementation", "cp",
               "--python-version", target.py, "-c", str(constraints), "-d", str(wheelhouse)]
        for plat in _platform_tags(target):
            cmd += ["--platform", plat]
        _run([*cmd, str(ours)], f"pip download ({platform})", progress)
        shutil.copy2(ours, wheelhouse / ours.name)
        wheels = tuple(sorted(p.name for p in wheelhouse.glob("*.whl")))
        if any(w.startswith("lief-") for w in wheels):
            raise PackagingError("lief ended up in the wheelhouse; the extension runtime must not need it")
        cp_file = tmpd / "complete-platform.json"
        cp_file.write_text(json.dumps(complete_platform(target)))
        progress(f"[{platform}] 3/4 pex: {len(wheels)} wheels -> {dest / ARTIFACT_NAME}")
        out = dest / ARTIFACT_NAME
        _run([*pex, "--pre-resolved-dists", str(wheelhouse), "dyldwatch", "--complete-platform", str(cp_file),
              "--python-shebang", target.shebang, "-e", "dyldwatch.__main__:artifact_main",
              "--no-pre-install-wheels", "--no-emit-warnings", "-o", str(out)], f"pex ({platform})", progress)
    os.chmod(out, 0o755)
    digest = sha256_file(out)
    (dest / f"{ARTIFACT_NAME}.sha256").write_text(f"{digest}  {ARTIFACT_NAME}\n")
    size = out.stat().st_size
    progress(f"[{platform}] 4/4 {out} {size / 1e6:.1f} MB sha256 {digest}")
    return Artifact(target, out, digest, size, wheels)


def artifact_wheels(path: Path) -> list[str]:
    """The wheel file names a built artifact carries (pex keeps them under `.deps/`)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        return sorted({n.split("/")[1] for n in z.namelist() if n.startswith(".deps/") and n.count("/") >= 1
                       and n.split("/")[1].endswith(".whl")})


# --- host ----------------------------------------------------------------------------------------

def host_platform() -> str:
    """This machine's target name (the default for `package` and `install`)."""
    import platform

    system = "macos" if sys.platform == "darwin" else "linux"
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "arm64" if system == "macos" else "aarch64"}.get(machine, machine)
    name = f"{system}-{machine}"
    if name not in TARGETS:
        raise PackagingError(f"no artifact target for this machine ({name}); pass --platform, one of: "
                             f"{', '.join(TARGETS)}")
    return name

"""One executable per platform: `dyldwatch.ext`, a PEX zipapp with our code and every dependency.

Fleet operators ship one file and a configuration, not a pip install. We build from Linux CI for
macOS and Linux alike, so every native dependency comes as a wheel for the *target* platform:
`pip download --only-binary=:all: --platform ... --python-version ...` fills a wheelhouse (pinned
to the versions installed here, the ones the test suite ran with), and `pex --pre-resolved-dists`
wraps it with a `--complete-platform` we write ourselves (so pex never resolves or builds anything,
and no network is needed beyond pip's index). LIEF is not bundled: `dyldwatch extension` never
imports it (it is a dev-only reference parser).

This module is also the artifact's entry point (`artifact_main`), so its top level imports only the
standard library: an autoloaded extension goes straight to the Thrift runtime without importing
click, the pack tooling or anything else the CLI needs.
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
from typing import Any

ARTIFACT_NAME = "dyldwatch.ext"
#: Our runtime dependencies' import names that carry compiled code (checked by `--list-tables`).
NATIVE_MODULES = ("apsw", "numpy", "orjson", "xattr", "_cffi_backend", "yaml._yaml", "thrift.protocol.fastbinary")
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

def project_root() -> Path:
    """The source checkout this module lives in (the artifact bundles the code from it)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise PackagingError(f"no pyproject.toml at {root}: `dyldwatch package` builds from a source "
                             "checkout (git clone, then pip install -e '.[dev]').")
    return root


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
    raise PackagingError(f"pex is not installed next to {sys.executable}: pip install '{PEX_REQUIREMENT}' "
                         "(it is in dyldwatch's dev extra).")


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
    root = project_root()
    dest = Path(out_dir) / platform
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"dyldwatch-{platform}-", dir=work_dir) as tmp:
        tmpd = Path(tmp)
        own, wheelhouse = tmpd / "own", tmpd / "wheelhouse"
        progress(f"[{platform}] 1/4 building the dyldwatch wheel from {root}")
        # From a copy: the build must not write build/ or egg-info into a tree others work in.
        src = tmpd / "src-copy"
        shutil.copytree(root / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, src / name)
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(own), str(src)],
             "pip wheel dyldwatch", progress)
        ours = next(own.glob("dyldwatch-*.whl"))
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
              "--python-shebang", target.shebang, "-e", "dyldwatch.packaging:artifact_main",
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


# --- the artifact's entry point --------------------------------------------------------------

def list_tables(out: Callable[[str], None] = print) -> int:
    """Print every table with its columns, importing our table declarations without native modules.

    This runs where the native wheels cannot load (a macOS artifact checked on Linux CI) and on the
    host itself as a smoke test: modules that fail to import are stood in for by placeholders that
    raise on use, so the declarations (plain data) load; the last line says which natives loaded.
    """
    import importlib
    import types

    missing: list[str] = []
    for mod in NATIVE_MODULES:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            missing.append(f"{mod} ({exc.__class__.__name__}: {exc})")
            top = mod.split(".")[0]
            if top in ("apsw", "numpy", "orjson", "xattr") and top not in sys.modules:
                sys.modules[top] = _placeholder(top, types)
    from .tables import TABLES, load_table

    for name in TABLES:
        table = load_table(name)
        cols = ", ".join(f"{c.name} {c.type}" for c in table.columns)
        out(f"{table.name}\t{','.join(table.platforms)}\t{cols}")
    out(f"# {len(TABLES)} tables; native modules: " + ("all loaded" if not missing else
                                                      "NOT loadable here: " + "; ".join(missing)))
    return 0 if not missing else 3


class _Inert:
    """Stands in for any attribute or call result of a module that has no native build here."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> _Inert:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Inert(f"{self._name}.{attr}")

    def __call__(self, *args: object, **kwargs: object) -> _Inert:
        return _Inert(f"{self._name}()")

    def __getitem__(self, key: object) -> _Inert:
        return _Inert(f"{self._name}[]")

    def __repr__(self) -> str:
        return f"<unavailable native {self._name}>"


def _placeholder(name: str, types: Any) -> Any:
    """A module whose every name is inert: module-level uses (np.dtype(...)) pass, nothing computes.

    Used only by --list-tables, which reads declarations and exits; it never calls generate().
    """
    mod = types.ModuleType(name)
    mod.__getattr__ = lambda attr: _Inert(f"{name}.{attr}")
    mod.__path__ = []  # a package, so `from numpy import x` and submodule lookups resolve to inert names
    return mod


def artifact_main(argv: Sequence[str] | None = None) -> None:
    """`dyldwatch.ext`: the osquery extension when started with --socket, else the dyldwatch CLI.

    osqueryd starts autoloaded extensions with `--socket S --timeout T --interval I [--verbose]`;
    that path skips click and the CLI's optional commands to keep cold start short.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--list-tables"]:
        sys.exit(list_tables())
    if args and args[0].startswith("--socket"):
        from .extension import extension_main

        sys.exit(extension_main(args))
    from .cli import main

    main(args, prog_name=ARTIFACT_NAME)


# --- host and bundle -------------------------------------------------------------------------

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


def extension_dir() -> Path:
    """The repository's extension/ folder: the configuration templates that ship beside the artifact."""
    return project_root() / "extension"


BUNDLE_README = """# dyldwatch for osquery: operator bundle

Built by `dyldwatch package --bundle` (dyldwatch {version}). Full guide: docs/deploy.md in the repository.

| platform | artifact | size | SHA-256 | runs with |
|---|---|---|---|---|
{rows}

Every `dyldwatch.ext` is one file (a PEX zipapp) holding dyldwatch and all its dependencies with
that platform's native wheels. The host needs only the interpreter named in its first line.
On its first start it unpacks into `~/.pex` of the user running osqueryd (root: /var/root/.pex on
macOS, /root/.pex on Linux; set PEX_ROOT to move it); later starts reuse that cache.

## Folder
- `<platform>/dyldwatch.ext`, `<platform>/dyldwatch.ext.sha256`, `SHA256SUMS` (all artifacts)
- `osquery/linux/` and `osquery/macos/`: `extensions.load` and `osquery.flags` for each layout
- `launchd/com.dyldwatch.osqueryd.plist`: osqueryd as a LaunchDaemon with those flags (macOS)
- `systemd/osqueryd.service`: osqueryd with those flags (standalone Linux hosts)
- `fleet/agent-options.yml`: the `extensions:` block for Fleet's agent options (fleetd hosts)
- `packs/osquery/`, `packs/fleetctl/`, `packs/fleet-gitops/`: the query packs, per deployment tool

## Standalone osquery host
```sh
sha256sum -c SHA256SUMS                       # macOS: shasum -a 256 -c SHA256SUMS
sudo install -d -o root -m 0755 /usr/local/osquery/extensions
sudo install -o root -m 0755 linux-x86_64/dyldwatch.ext /usr/local/osquery/extensions/dyldwatch.ext
sudo install -o root -m 0644 osquery/linux/extensions.load osquery/linux/osquery.flags /etc/osquery/
sudo systemctl restart osqueryd               # or: sudo cp systemd/osqueryd.service /etc/systemd/system/
```
macOS: the same with `macos-arm64` or `macos-x86_64`, `osquery/macos/*` into `/var/osquery/`, and
`sudo launchctl bootstrap system launchd/com.dyldwatch.osqueryd.plist` (copied to /Library/LaunchDaemons,
root:wheel 0644). `dyldwatch install --artifact <file>` does the same with every permission checked.

## Fleet (fleetd / Orbit)
Fleet starts target `extensions/<key>` as the file `<key>.ext`, with `platform` one of macos/linux, so
each architecture gets its own key, narrowed by a label (see `fleet/agent-options.yml`):
```sh
for p in macos-arm64 macos-x86_64 linux-x86_64 linux-aarch64; do
  key=dyldwatch_$(echo $p | tr - _); cp $p/dyldwatch.ext $key.ext
  fleetctl updates add --path /path/to/tuf-repo --target $key.ext --name extensions/$key \\
    --platform ${{p%%-*}} --version {version}
done
fleetctl apply -f fleet/agent-options.yml     # or merge its `extensions:` into your agent options
```
Check on a host: `SELECT name, version FROM osquery_extensions;` lists `dyldwatch`.
"""


def write_bundle(out_dir: Path, artifacts: Sequence[Artifact], *, progress: Progress = _stderr) -> list[Path]:
    """Write configuration, packs and README beside the built artifacts (the operator's one folder)."""
    from . import __version__
    from .deploy_layout import LAYOUTS, extensions_load_text, flags_text

    out_dir = Path(out_dir)
    written: list[Path] = []

    def put(rel: str, text: str) -> None:
        p = out_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        written.append(p)

    progress("bundle: osquery, launchd, systemd and Fleet configuration")
    for layout in LAYOUTS.values():
        put(f"osquery/{layout.folder}/extensions.load", extensions_load_text(layout))
        put(f"osquery/{layout.folder}/osquery.flags", flags_text(layout))
    ext = extension_dir()
    for rel, src in (("launchd/com.dyldwatch.osqueryd.plist", "com.dyldwatch.osqueryd.plist"),
                     ("systemd/osqueryd.service", "osqueryd.service"),
                     ("fleet/agent-options.yml", "fleet-agent-options.yml")):
        if not (ext / src).is_file():
            raise PackagingError(f"configuration template {ext / src} is missing from the checkout")
        put(rel, (ext / src).read_text())
    progress("bundle: packs (osquery, fleetctl, fleet-gitops)")
    written += _build_packs(out_dir / "packs")
    sums = "".join(f"{a.sha256}  {a.target.name}/{ARTIFACT_NAME}\n" for a in artifacts)
    put("SHA256SUMS", sums)
    rows = "\n".join(f"| {a.target.name} | `{a.target.name}/{ARTIFACT_NAME}` | {a.size / 1e6:.1f} MB | "
                     f"`{a.sha256}` | {a.target.shebang} |" for a in artifacts)
    put("README.md", BUNDLE_README.format(version=__version__, rows=rows))
    return written


def _build_packs(out_dir: Path) -> list[Path]:
    """The packs as `dyldwatch build` writes them, for each deployment tool (lint must pass first)."""
    from .packs import load_packs
    from .packs_build import build
    from .packs_lint import lint_paths

    packs = load_packs(())
    problems = lint_paths((), None)
    if problems:
        raise PackagingError("pack lint failed; no bundle written:\n" + "\n".join(map(str, problems)))
    paths: list[Path] = []
    for target in ("osquery", "fleetctl", "fleet-gitops"):
        paths += build(packs, target, out_dir / target, None)
    return paths

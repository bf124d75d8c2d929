"""The demo and test corpus: real macOS Mach-O files from pinned public wheels and npm packages.

Nothing third-party is committed; `dyldwatch corpus` fetches the archives from the package
registries (PyPI's JSON simple API, PEP 691; the npm registry), checks each against the digest the
registry publishes, keeps the archives as a resumable cache, and extracts every Mach-O member into
`DEST/files/` with a `manifest.tsv` (file, kind, size, package, path in package, sha256). A corpus
that is already complete is left as it is.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import struct
import tarfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

PYPI_SIMPLE = "https://pypi.org/simple"
NPM_REGISTRY = "https://registry.npmjs.org"
#: Wheels that carry macOS Mach-O files (name, version, platform tag), for CPython 3.12.
WHEELS = (
    ("numpy", "2.3.5", "macosx_14_0_arm64"), ("numpy", "2.3.5", "macosx_14_0_x86_64"),
    ("pillow", "11.3.0", "macosx_11_0_arm64"), ("pillow", "11.3.0", "macosx_10_13_x86_64"),
    ("cryptography", "46.0.3", "macosx_10_9_universal2"), ("lxml", "5.4.0", "macosx_10_9_universal2"),
    ("ruff", "0.14.6", "macosx_11_0_arm64"), ("ninja", "1.13.0", "macosx_10_9_universal2"),
    ("uv", "0.9.11", "macosx_10_12_x86_64"), ("psutil", "7.1.3", "macosx_11_0_arm64"),
    ("pyyaml", "6.0.3", "macosx_11_0_arm64"), ("orjson", "3.11.4", "macosx_15_0_arm64"),
    ("lief", "0.17.1", "macosx_11_0_arm64"), ("pydantic-core", "2.41.5", "macosx_11_0_arm64"),
    ("regex", "2025.11.3", "macosx_11_0_arm64"),
)
#: npm packages that ship macOS executables and Node addons (name, version).
NPMS = (
    ("@esbuild/darwin-arm64", "0.25.12"), ("@esbuild/darwin-x64", "0.25.12"), ("fsevents", "2.3.3"),
    ("@rollup/rollup-darwin-arm64", "4.53.3"), ("@rollup/rollup-darwin-x64", "4.53.3"),
    ("@biomejs/cli-darwin-arm64", "2.3.7"), ("@img/sharp-libvips-darwin-arm64", "1.2.4"),
    ("lightningcss-darwin-arm64", "1.30.2"), ("@parcel/watcher-darwin-arm64", "2.5.1"), ("@sentry/cli-darwin", "3.8.0"),
)
_MAGICS = {b"\xcf\xfa\xed\xfe": "macho64", b"\xce\xfa\xed\xfe": "macho32", b"\xca\xfe\xba\xbe": "fat",
           b"\xca\xfe\xba\xbf": "fat64"}
Progress = Callable[[str], None]


class CorpusError(Exception):
    """A download that cannot be had or does not match the registry's digest."""


@dataclass(frozen=True, slots=True)
class Archive:
    package: str
    filename: str
    url: str
    algorithm: str  # hashlib name
    digest: bytes


def default_dest() -> Path:
    return Path(os.environ.get("DYLDWATCH_CORPUS") or Path.home() / ".cache" / "dyldwatch-corpus")


def _get(url: str, accept: str = "application/json") -> bytes:
    req = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "dyldwatch-corpus"})
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - fixed registry URLs
        return resp.read()


def _wheel_rank(filename: str) -> int:
    """pip's preference for CPython 3.12: cp312 first, then the stable ABI, then pure tags."""
    tags = filename[:-4].split("-")[2:4]
    py, abi = (tags + ["", ""])[:2]
    if "cp312" in py.split(".") and abi == "cp312":
        return 0
    if abi == "abi3" and any(t.startswith("cp3") and int(t[3:] or 0) <= 12 for t in py.split(".")):
        return 1
    return 2 if py.startswith("py3") or "py3" in py.split(".") else 9


def wheel_archive(name: str, version: str, platform: str) -> Archive:
    """The wheel pip would pick for CPython 3.12 on `platform`, from the JSON simple API."""
    norm = re.sub(r"[-_.]+", "-", name).lower()
    doc = json.loads(_get(f"{PYPI_SIMPLE}/{norm}/", "application/vnd.pypi.simple.v1+json"))
    stem = re.sub(r"[-_.]+", "_", name).lower()
    fits = [f for f in doc.get("files", []) if f["filename"].lower().startswith(f"{stem}-{version}-")
            and f["filename"].endswith(f"{platform}.whl") and _wheel_rank(f["filename"]) < 9]
    if not fits:
        raise CorpusError(f"no {name} {version} wheel for {platform} on PyPI")
    best = min(fits, key=lambda f: _wheel_rank(f["filename"]))
    return Archive(f"{name}=={version}", best["filename"], best["url"], "sha256", bytes.fromhex(best["hashes"]["sha256"]))


def npm_archive(name: str, version: str) -> Archive:
    """The package tarball and its published integrity (sha512)."""
    doc = json.loads(_get(f"{NPM_REGISTRY}/{name.replace('/', '%2F')}/{version}"))
    algo, _, b64 = doc["dist"]["integrity"].partition("-")
    filename = f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    return Archive(f"{name}@{version}", filename, doc["dist"]["tarball"], algo, base64.b64decode(b64))


def download(archive: Archive, cache: Path, progress: Progress) -> Path:
    """The archive in `cache`, fetched (resuming a partial download) and checked against its digest."""
    cache.mkdir(parents=True, exist_ok=True)
    final, part = cache / archive.filename, cache / (archive.filename + ".part")
    if final.exists() and hashlib.new(archive.algorithm, final.read_bytes()).digest() == archive.digest:
        return final
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(archive.url, headers={"User-Agent": "dyldwatch-corpus",
                                                       **({"Range": f"bytes={have}-"} if have else {})})
    with urllib.request.urlopen(req, timeout=120) as resp, open(part, "ab" if have else "wb") as out:  # noqa: S310
        if have and resp.status != 206:  # the server ignored the range: start over
            out.truncate(0)
        while chunk := resp.read(1 << 20):
            out.write(chunk)
    if hashlib.new(archive.algorithm, part.read_bytes()).digest() != archive.digest:
        part.unlink()
        raise CorpusError(f"{archive.filename}: {archive.algorithm} does not match the registry's digest")
    os.replace(part, final)
    progress(f"fetched {archive.filename}")
    return final


def _macho_kind(head: bytes) -> str | None:
    kind = _MAGICS.get(head[:4])
    if kind in ("fat", "fat64") and not 0 < struct.unpack(">I", head[4:8])[0] < 20:
        return None  # Java class files share 0xcafebabe
    return kind


def _members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every regular member; CorpusError for an archive that does not read."""
    try:
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if not info.is_dir():
                        yield info.filename, z.read(info)
        else:
            with tarfile.open(path, "r:gz") as t:
                for m in t.getmembers():
                    if m.isfile() and (f := t.extractfile(m)) is not None:
                        yield m.name, f.read()
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise CorpusError(f"{path.name}: not a readable archive ({exc}); delete it to fetch it again") from exc


def fetch(dest: Path | None = None, progress: Progress = lambda _m: None) -> Path:
    """Fetch and extract the corpus into `dest` (default: $DYLDWATCH_CORPUS or ~/.cache/…); idempotent."""
    dest = dest or default_dest()
    manifest = dest / "manifest.tsv"
    if manifest.exists() and manifest.stat().st_size > 0:
        progress(f"corpus present: {dest}")
        return dest
    archives = [wheel_archive(*w) for w in WHEELS] + [npm_archive(*n) for n in NPMS]
    files = dest / "files"
    files.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, ...]] = []
    for i, archive in enumerate(archives, 1):
        progress(f"[{i}/{len(archives)}] {archive.package}")
        path = download(archive, dest / "downloads", progress)
        for member, data in _members(path):
            kind = _macho_kind(data[:8])
            if kind is None:
                continue
            digest = hashlib.sha256(data).hexdigest()
            name = f"{digest[:16]}_{os.path.basename(member)}"
            (files / name).write_bytes(data)
            inner = member.split("/", 1)[1] if path.suffix == ".tgz" and "/" in member else member
            rows.append((name, kind, str(len(data)), archive.filename, inner, digest))
    rows.sort()
    text = io.StringIO()
    text.write("file\tkind\tsize\tpackage\tpath_in_package\tsha256\n")
    for r in rows:
        text.write("\t".join(r) + "\n")
    manifest.write_text(text.getvalue())
    progress(f"corpus: {len(rows)} Mach-O files, {sum(int(r[2]) for r in rows) / 1e6:.1f} MB in {dest}")
    return dest

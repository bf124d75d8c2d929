"""A generated /Applications-like tree for the scale benchmark, built from hard links.

Every bundle holds all corpus files (one as the main executable in Contents/MacOS, the rest in
Contents/Frameworks) plus a few non-Mach-O resources, so a walk meets what a real app holds.
Hard links cost an inode each and no data, so 100 bundles of the 279 MB corpus take no extra disk,
and every path is distinct, so the tables' per-file caches see 117 x bundles different files.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

#: Non-Mach-O files per bundle (Info.plist, resources); the walk must open them to reject them.
RESOURCES = 8


def make_tree(root: Path, corpus: list[str], bundles: int) -> int:
    """Create `bundles` app bundles under `root` (idempotent); returns the number of Mach-O files."""
    root.mkdir(parents=True, exist_ok=True)
    resource = root / ".resource.txt"
    if not resource.exists():
        resource.write_text("not a Mach-O file\n" * 64)
    for i in range(bundles):
        app = root / f"App{i:05d}.app" / "Contents"
        if (app / ".done").exists():
            continue
        macos, frameworks, resources = app / "MacOS", app / "Frameworks", app / "Resources"
        for d in (macos, frameworks, resources):
            d.mkdir(parents=True, exist_ok=True)
        for n, src in enumerate(corpus):
            dest = (macos / f"App{i:05d}") if n == 0 else (frameworks / os.path.basename(src))
            if not dest.exists():
                os.link(src, dest)
        for n in range(RESOURCES):
            dest = resources / f"res{n}.txt"
            if not dest.exists():
                os.link(resource, dest)
        (app / ".done").touch()
    return bundles * len(corpus)


_FAT = (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf")
_THIN = {b"\xcf\xfa\xed\xfe": ("<", 32), b"\xce\xfa\xed\xfe": ("<", 28), b"\xfe\xed\xfa\xcf": (">", 32),
         b"\xfe\xed\xfa\xce": (">", 28)}
LC_CODE_SIGNATURE = 0x1D


def floor_signing(paths: list[str]) -> int:
    """The least a signing query must do per file: open it, read its header (and fat table), its
    load commands, and the signature blob LC_CODE_SIGNATURE points at. Returns bytes of blobs read."""
    total = 0
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            head = os.pread(fd, 8, 0)
            if head[:4] in _FAT:
                n = struct.unpack(">I", head[4:8])[0]
                esz = 32 if head[3] == 0xBF else 20
                table = os.pread(fd, esz * n, 8)
                fmt = ">Q" if esz == 32 else ">I"
                offsets = [struct.unpack_from(fmt, table, i * esz + 8)[0] for i in range(n)]
            elif head[:4] in _THIN:
                offsets = [0]
            else:
                continue
            for off in offsets:
                hdr = os.pread(fd, 32, off)
                endian, hsize = _THIN[hdr[:4]]
                ncmds, sizeofcmds = struct.unpack_from(endian + "2I", hdr, 16)
                cmds = os.pread(fd, sizeofcmds, off + hsize)
                pos = 0
                for _ in range(ncmds):
                    cmd, size = struct.unpack_from(endian + "2I", cmds, pos)
                    if cmd == LC_CODE_SIGNATURE:
                        dataoff, datasize = struct.unpack_from(endian + "2I", cmds, pos + 8)
                        total += len(os.pread(fd, datasize, off + dataoff))
                    pos += size
        finally:
            os.close(fd)
    return total


def tree_files(root: Path) -> list[str]:
    """Every Mach-O path of the tree (bundle order), for the floor."""
    out: list[str] = []
    for app in sorted(root.glob("App*.app")):
        for sub in ("MacOS", "Frameworks"):
            out.extend(sorted(str(p) for p in (app / "Contents" / sub).iterdir()))
    return out

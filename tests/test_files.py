"""FileSource refuses what could hang or harm the extension and reads with pread only."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from dyldwatch.host.cache import BoundedCache
from dyldwatch.host.files import FileProblem, FileSource, exists


def test_reads_ranges_and_short_at_eof(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"0123456789")
    with FileSource(str(p)) as src:
        assert src.size == 10
        assert src.read(2, 3) == b"234"
        assert src.read(8, 100) == b"89"
        assert src.read(10, 1) == b"" and src.read(-1, 4) == b""


@pytest.mark.parametrize("kind", ["fifo", "socket", "device", "directory"])
def test_non_regular_files_are_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    p = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(p))
    elif kind == "device":
        p = Path("/dev/zero")
    else:
        p.mkdir()
    with pytest.raises(FileProblem, match="not read"):
        FileSource(str(p))


def test_symlink_loop_and_missing_file(tmp_path: Path) -> None:
    os.symlink(tmp_path / "l2", tmp_path / "l1")
    os.symlink(tmp_path / "l1", tmp_path / "l2")
    with pytest.raises(FileProblem, match="symlink loop"):
        FileSource(str(tmp_path / "l1"))
    with pytest.raises(FileProblem, match="no such file"):
        FileSource(str(tmp_path / "missing"))


def test_size_cap_on_sparse_file(tmp_path: Path) -> None:
    p = tmp_path / "sparse"
    with open(p, "wb") as fh:
        fh.truncate(3 << 30)  # 3 GiB of nothing, takes no disk
    with pytest.raises(FileProblem, match="over the"):
        FileSource(str(p), max_size=1 << 30)


def test_file_truncated_after_open_reads_short_not_crash(tmp_path: Path) -> None:
    p = tmp_path / "shrinks"
    p.write_bytes(b"x" * 100_000)
    with FileSource(str(p)) as src:
        os.truncate(p, 10)
        assert src.read(50_000, 100) == b""


def test_bounded_cache_evicts_oldest_and_counts() -> None:
    c: BoundedCache[int] = BoundedCache(2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1
    c.put("c", 3)  # evicts b, the least recently used
    assert c.get("b") is None and c.get("a") == 1 and c.get("c") == 3
    assert c.get_or_compute("d", lambda: 4) == 4 and len(c) == 2


def test_exists_answers_as_os_path_exists(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "to-file").symlink_to(tmp_path / "file")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    names = ["file", "dir", "to-file", "dangling", "gone", "file/under-a-file", "nul\0name"]
    got = {n: exists(str(tmp_path / n)) for n in names}
    assert got == {n: os.path.exists(str(tmp_path / n)) for n in names}
    assert got["file"] and got["to-file"] and not got["dangling"] and not got["nul\0name"]

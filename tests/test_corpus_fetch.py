"""The corpus fetcher: digests checked, partial downloads resumed, only Mach-O members kept.

A loopback HTTP server stands in for the registry's file host (no network in the test).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dyldwatch import corpus
from dyldwatch.formats.macho.writer import sample_executable


class _Ranged(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        data = self.server.payload  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def wheel() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pkg/_native.cpython-312-darwin.so", sample_executable().build())
        z.writestr("pkg/__init__.py", "x = 1\n")
        z.writestr("pkg/Thing.class", b"\xca\xfe\xba\xbe\x00\x00\x00\x34")  # Java, not a fat Mach-O
    return buf.getvalue()


@pytest.fixture
def server(wheel: bytes) -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ranged)
    httpd.payload = wheel  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/pkg-1.0-cp312-cp312-macosx_11_0_arm64.whl"
    finally:
        httpd.shutdown()


def test_download_resumes_and_checks_the_digest(wheel: bytes, server: str, tmp_path: Path) -> None:
    archive = corpus.Archive("pkg==1.0", "pkg-1.0-cp312-cp312-macosx_11_0_arm64.whl", server, "sha256",
                             hashlib.sha256(wheel).digest())
    (tmp_path / (archive.filename + ".part")).write_bytes(wheel[:100])  # an interrupted earlier run
    got = corpus.download(archive, tmp_path, lambda _m: None)
    assert got.read_bytes() == wheel and not (tmp_path / (archive.filename + ".part")).exists()
    bad = corpus.Archive("pkg==1.0", "other.whl", server, "sha256", b"\0" * 32)
    with pytest.raises(corpus.CorpusError, match="does not match"):
        corpus.download(bad, tmp_path, lambda _m: None)
    assert not (tmp_path / "other.whl").exists()


def test_only_macho_members_are_kept(wheel: bytes, tmp_path: Path) -> None:
    path = tmp_path / "pkg-1.0-cp312-cp312-macosx_11_0_arm64.whl"
    path.write_bytes(wheel)
    kinds = {name: corpus._macho_kind(data[:8]) for name, data in corpus._members(path)}
    assert kinds == {"pkg/_native.cpython-312-darwin.so": "macho64", "pkg/__init__.py": None, "pkg/Thing.class": None}


def test_pip_preference_among_wheels() -> None:
    names = ["x-1-cp312-abi3-macosx_11_0_arm64.whl", "x-1-cp312-cp312-macosx_11_0_arm64.whl",
             "x-1-py3-none-macosx_11_0_arm64.whl", "x-1-cp311-cp311-macosx_11_0_arm64.whl"]
    assert min(names, key=corpus._wheel_rank) == "x-1-cp312-cp312-macosx_11_0_arm64.whl"
    assert corpus._wheel_rank("x-1-cp311-cp311-macosx_11_0_arm64.whl") == 9


def test_an_unreadable_archive_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x-1.0-cp312-cp312-macosx_11_0_arm64.whl"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(corpus.CorpusError, match="not a readable archive"):
        list(corpus._members(bad))

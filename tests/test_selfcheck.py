"""`dyldwatch selfcheck`: the Linux checks run for real; a planted disagreement makes it exit 1."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from dyldwatch import selfcheck
from dyldwatch.cli import main

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="runs the Linux checks for real")


@linux_only
def test_linux_checks_agree_and_macos_ones_are_listed() -> None:
    results = list(selfcheck.run_checks())
    linux = [r for r in results if r.platform == "linux"]
    assert [r.check for r in linux] == ["rwx_regions vs /proc/self/maps", "process_images vs /proc/self/maps",
                                       "statx btime vs stat -c %W", "xdg xattrs vs getxattr"]
    assert all(r.status in (selfcheck.AGREE, selfcheck.SKIPPED) for r in linux), linux
    assert {r.status for r in results if r.platform == "macos"} == {selfcheck.SKIPPED}
    assert selfcheck.exit_code(results) == 0


@linux_only
def test_cli_json_and_exit_code() -> None:
    out = CliRunner().invoke(main, ["selfcheck", "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert {r["status"] for r in rows} <= {"agree", "skipped"}
    assert len(rows) == len(selfcheck.LINUX_CHECKS) + len(selfcheck.MACOS_CHECKS) == 13


@linux_only
def test_a_reader_that_drops_a_region_disagrees(monkeypatch: pytest.MonkeyPatch) -> None:
    from dyldwatch.host import linux_proc

    real = linux_proc.LinuxProcessReader.image_regions

    def lossy(self, pid):  # type: ignore[no-untyped-def]
        regions = list(real(self, pid))
        lost = next(r.path for r in regions if r.executable and r.path)
        return iter([r for r in regions if r.path != lost])  # every mapping of one image is lost

    monkeypatch.setattr(linux_proc.LinuxProcessReader, "image_regions", lossy)
    result = selfcheck.check_linux_process_images()
    assert result.status == selfcheck.DISAGREE
    assert selfcheck.exit_code([result]) == 1
    out = CliRunner().invoke(main, ["selfcheck", "--format", "json"])
    assert out.exit_code == 1


def test_vmmap_and_codesign_output_parsing() -> None:
    line = ("__TEXT                      102d7c000-102d80000    [   16K    16K     0K     0K] r-x/r-x SM=COW  "
            "         /usr/bin/python3\n")
    m = selfcheck._VMMAP_LINE.search(line)
    assert m is not None and (int(m.group(1), 16), m.group(3)) == (0x102D7C000, "r-x")
    text = ("Identifier=com.apple.python3\nCodeDirectory v=20400 size=1234 flags=0x10000(runtime) hashes=3+7\n"
            "CDHash=ABCDEF0123\nAuthority=Software Signing\nTeamIdentifier=not set\n")
    assert selfcheck._codesign_fields(text) == {"identifier": "com.apple.python3", "team_id": "not set",
                                                "cdhash": "abcdef0123", "authority": "Software Signing",
                                                "flags": "0x10000"}


def test_where_froms_check_compares_with_spotlights_listing(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The macOS where-froms check, with recorded answers: our binary-plist decoding against the
    strings `mdls -raw` prints, agreeing and then disagreeing."""
    import plistlib
    import subprocess

    from dyldwatch.host import xattrs

    urls = ["https://dl.example.com/tool.zip", "https://example.com/download"]
    raw = plistlib.dumps(urls, fmt=plistlib.FMT_BINARY)
    target = tmp_path / "tool.zip"
    target.write_bytes(b"x")
    monkeypatch.setattr(selfcheck, "_downloaded_file", lambda attr: str(target))
    monkeypatch.setattr(xattrs, "read_xattrs", lambda path, names: xattrs.XattrValues({n: raw for n in names}))
    listing = '(\n    "https://dl.example.com/tool.zip",\n    "https://example.com/download"\n)'
    monkeypatch.setattr(selfcheck, "_run", lambda argv, env=None: subprocess.CompletedProcess(argv, 0, listing, ""))
    assert selfcheck.check_macos_where_froms().status == selfcheck.AGREE
    listing = '(\n    "https://dl.example.com/other.zip"\n)'
    assert selfcheck.check_macos_where_froms().status == selfcheck.DISAGREE

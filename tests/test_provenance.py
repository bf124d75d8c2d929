"""Pure provenance rules: quarantine, where-froms, provenance and xdg decoding; writability and system paths."""

from __future__ import annotations

import json
import plistlib
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dyldwatch.formats.provenance import (
    PathFact,
    decode_provenance,
    decode_quarantine,
    decode_where_froms,
    decode_xdg_url,
    first_writable,
    is_system_path,
    mode_text,
    platform_of,
    where_froms_json,
    writable_reason,
)

UUID = "3F2504E0-4F89-41D3-9A0C-0305E82C3301"

# ------------------------------------------------------------------------------------------ quarantine


def test_quarantine_safari_download() -> None:
    q = decode_quarantine(f"0083;65a1b2c3;Safari;{UUID}".encode())
    assert (q.flags, q.time, q.agent, q.event_id) == (0x83, 0x65A1B2C3, "Safari", UUID)
    assert q.user_approved is False
    assert q.problem is None


def test_quarantine_curl_like_has_no_agent_or_event() -> None:
    q = decode_quarantine(b"0001;65a1b2c3;;")
    assert (q.flags, q.time, q.agent, q.event_id, q.problem) == (1, 0x65A1B2C3, None, None, None)


def test_quarantine_user_approved_flag() -> None:
    q = decode_quarantine(f"00c3;65a1b2c3;Google Chrome;{UUID}".encode())
    assert q.user_approved is True and q.agent == "Google Chrome"


def test_quarantine_trailing_nuls_and_missing_fields() -> None:
    q = decode_quarantine(b"0083;65a1b2c3;Safari\x00\x00")
    assert (q.flags, q.time, q.agent, q.event_id) == (0x83, 0x65A1B2C3, "Safari", None)
    q = decode_quarantine(b"0083")
    assert (q.flags, q.time, q.agent, q.event_id, q.problem) == (0x83, None, None, None, None)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00", b"zzzz;nothex;\xff\xfe;", b";;;;;;;", b"0083;ffffffffff;x;y", b"\xff" * 5000, b"0083;00000001;a;b"],
)
def test_quarantine_garbage_decodes_partially(raw: bytes) -> None:
    q = decode_quarantine(raw)
    assert q.problem is not None or q.flags is not None
    assert q.time is None or q.time > 978_307_200
    assert q.agent is None or len(q.agent) <= 1024


def test_quarantine_garbage_keeps_good_fields() -> None:
    q = decode_quarantine(b"zz;65a1b2c3;Safari;" + UUID.encode())
    assert q.flags is None and q.user_approved is None
    assert (q.time, q.agent, q.event_id) == (0x65A1B2C3, "Safari", UUID)
    assert "flags" in (q.problem or "")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_quarantine_never_raises(raw: bytes) -> None:
    decode_quarantine(raw)


# ------------------------------------------------------------------------------------------ where froms

WHERE = ["https://dl.example.com/libfoo.dylib", "https://example.com/downloads"]


def test_where_froms_binary_plist() -> None:
    urls, problem = decode_where_froms(plistlib.dumps(WHERE, fmt=plistlib.FMT_BINARY))
    assert urls == WHERE and problem is None
    assert where_froms_json(urls) == json.dumps(WHERE, separators=(",", ":"))
    assert where_froms_json([]) is None


def test_where_froms_single_string_is_accepted() -> None:
    assert decode_where_froms(plistlib.dumps(WHERE[0], fmt=plistlib.FMT_BINARY)) == ([WHERE[0]], None)


def test_where_froms_non_list_and_mixed() -> None:
    urls, problem = decode_where_froms(plistlib.dumps({"a": 1}, fmt=plistlib.FMT_BINARY))
    assert urls == [] and "dict" in (problem or "")
    urls, problem = decode_where_froms(plistlib.dumps([WHERE[0], 5, b"x"], fmt=plistlib.FMT_BINARY))
    assert urls == [WHERE[0]] and "not text" in (problem or "")


def test_where_froms_hostile_inputs() -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE plist [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><plist><array><string>&b;</string></array></plist>'
    )
    deep = plistlib.dumps([WHERE[0]], fmt=plistlib.FMT_BINARY)
    nested: object = "x"
    for _ in range(2000):
        nested = [nested]
    for raw in (b"bplist00garbage", b"\x00" * 64, laughs, deep[:-7], b"x" * (70 << 10)):
        urls, problem = decode_where_froms(raw)
        assert urls == [] and problem
    try:
        nested_raw = plistlib.dumps(nested, fmt=plistlib.FMT_BINARY)
    except RecursionError:
        return
    assert decode_where_froms(nested_raw)[0] == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_where_froms_never_raises(raw: bytes) -> None:
    urls, _ = decode_where_froms(b"bplist00" + raw)
    assert isinstance(urls, list)


# ------------------------------------------------------------------------------------------ provenance


def test_provenance_recorded_value() -> None:
    raw = bytes.fromhex("0102 00 504a22fa773c5f21".replace(" ", ""))
    assert decode_provenance(raw) == ("0x215f3c77fa224a50", None)


def test_provenance_zero_padding_and_odd_shapes() -> None:
    raw = bytes.fromhex("010200504a22fa773c5f21")
    assert decode_provenance(raw + b"\x00" * 4085) == ("0x215f3c77fa224a50", None)
    ident, problem = decode_provenance(raw + b"\x01")
    assert ident == "0x215f3c77fa224a50" and "trailing" in (problem or "")
    ident, problem = decode_provenance(b"\x01\x02\x00\x50")
    assert ident == "raw:01020050" and "4 bytes" in (problem or "")
    assert decode_provenance(b"") == (None, None)


# ------------------------------------------------------------------------------------------ xdg urls


def test_xdg_url_with_and_without_nul() -> None:
    assert decode_xdg_url(b"https://example.com/a.so") == "https://example.com/a.so"
    assert decode_xdg_url(b"https://example.com/a.so\x00") == "https://example.com/a.so"
    assert decode_xdg_url(b"x\x00\x00") == "x\x00"  # only one NUL is a terminator
    assert decode_xdg_url(b"") is None and decode_xdg_url(b"\x00") is None
    assert decode_xdg_url(b"http://\xff") == "http://\ufffd"


# ------------------------------------------------------------------------------------------ path rules

DIR = stat.S_IFDIR
REG = stat.S_IFREG


def fact(path: str, uid: int = 0, gid: int = 0, mode: int = 0o755, kind: int = DIR) -> PathFact:
    return PathFact(path, uid, gid, kind | mode)


def test_writable_reasons() -> None:
    assert writable_reason(fact("/usr/lib")) is None
    assert writable_reason(fact("/tmp", mode=0o1777)) == "world-writable, sticky"
    assert writable_reason(fact("/x/f", mode=0o666, kind=REG)) == "world-writable"
    assert writable_reason(fact("/Library/x", gid=80, mode=0o775)) == "group-writable, gid 80"  # macOS admin
    assert writable_reason(fact("/Library/x", gid=0, mode=0o775)) is None  # wheel / root group
    assert writable_reason(fact("/Users/a/lib", uid=501, mode=0o555)) == "owned by uid 501"  # owner may chmod


def test_first_writable_is_the_nearest_component() -> None:
    facts = [
        fact("/Users/a/lib/x.dylib", uid=501, mode=0o644, kind=REG),
        fact("/Users/a/lib", uid=501),
        fact("/Users", mode=0o755),
        fact("/"),
    ]
    assert first_writable(facts) == "/Users/a/lib/x.dylib (owned by uid 501)"
    assert first_writable([fact("/usr/lib/x", kind=REG), fact("/usr/lib"), fact("/usr"), fact("/")]) is None


def test_sticky_directories_protect_root_owned_entries() -> None:
    """Who can replace what loads at the path: a sticky /tmp only exposes entries root does not own."""
    root_dir = [fact("/tmp/r/x.so", mode=0o644, kind=REG), fact("/tmp/r", mode=0o700), fact("/tmp", mode=0o1777),
                fact("/")]
    assert first_writable(root_dir) is None
    user_dir = [fact("/tmp/u/x.so", mode=0o644, kind=REG), fact("/tmp/u", uid=501, mode=0o755),
                fact("/tmp", mode=0o1777), fact("/")]
    assert first_writable(user_dir) == "/tmp/u (owned by uid 501)"
    in_tmp = [fact("/tmp/x.so", mode=0o644, kind=REG), fact("/tmp", mode=0o1777), fact("/")]
    assert first_writable(in_tmp) is None  # root's file directly in /tmp: the sticky bit protects it
    user_file = [fact("/tmp/x.so", uid=501, mode=0o644, kind=REG), fact("/tmp", mode=0o1777), fact("/")]
    assert first_writable(user_file) == "/tmp/x.so (owned by uid 501)"
    # a writable non-sticky ancestor lets anyone rename the root-owned 0700 directory away
    open_parent = [fact("/srv/w/r/x.so", mode=0o644, kind=REG), fact("/srv/w/r", mode=0o700),
                   fact("/srv/w", mode=0o777), fact("/srv"), fact("/")]
    assert first_writable(open_parent) == "/srv/w (world-writable)"


DARWIN_CASES = [
    ("/System/Library/Frameworks/AppKit.framework/AppKit", True, True),
    ("/usr/lib/libSystem.B.dylib", False, True),  # in the dyld shared cache only
    ("/System/Library/PrivateFrameworks/X.framework/X", False, True),
    ("/usr/lib/dyld", True, True),
    ("/usr/bin/missing", False, False),
    ("/bin/sh", True, True),
    ("/sbin/launchd", True, True),
    ("/Library/Apple/System/Library/Frameworks/X.framework/X", True, True),
    ("/usr/local/lib/libssl.dylib", True, False),
    ("/usr/local", True, False),
    ("/opt/homebrew/lib/libssl.dylib", True, False),
    ("/Library/Frameworks/Python.framework/Python", True, False),
    ("/usrx/lib/a.dylib", True, False),
    ("/Users/a/Library/x.dylib", True, False),
]


@pytest.mark.parametrize(("path", "exists", "expected"), DARWIN_CASES)
def test_darwin_system_paths(path: str, exists: bool, expected: bool) -> None:
    assert is_system_path(path, "darwin", exists=exists) is expected


def linux_facts(path: str, **over: int) -> list[PathFact]:
    parts = path.split("/")
    dirs = ["/".join(parts[:i]) or "/" for i in range(len(parts) - 1, 0, -1)]
    return [fact(path, kind=REG, **over)] + [fact(d) for d in dirs]


def test_linux_system_path_requires_root_ownership() -> None:
    libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    assert is_system_path(libc, "linux", exists=True, facts=linux_facts(libc))
    assert is_system_path("/lib64/ld-linux-x86-64.so.2", "linux", exists=True,
                          facts=linux_facts("/lib64/ld-linux-x86-64.so.2"))
    assert is_system_path("/usr/libexec/x", "linux", exists=True, facts=linux_facts("/usr/libexec/x"))
    assert not is_system_path(libc, "linux", exists=True, facts=linux_facts(libc, uid=1000))
    assert not is_system_path(libc, "linux", exists=True, facts=linux_facts(libc, mode=0o666))
    bad_dir = linux_facts(libc)
    bad_dir[1] = fact("/usr/lib/x86_64-linux-gnu", gid=50, mode=0o775)  # group staff may write
    assert not is_system_path(libc, "linux", exists=True, facts=bad_dir)
    assert not is_system_path(libc, "linux", exists=False, facts=linux_facts(libc))
    assert not is_system_path(libc, "linux", exists=True, facts=[])
    for other in ("/usr/local/lib/x.so", "/opt/app/lib/x.so", "/home/a/x.so", "/usr/libfoo/x.so"):
        assert not is_system_path(other, "linux", exists=True, facts=linux_facts(other))


def test_mode_text_and_platform() -> None:
    assert mode_text(REG | 0o755) == "0755"
    assert mode_text(DIR | 0o1777) == "1777"
    assert mode_text(REG | 0o4755) == "4755"
    assert platform_of("darwin") == "darwin" and platform_of("linux") == "linux"
    assert platform_of("freebsd14") == "linux"

"""Pure parsing and classification of /proc/PID/maps text, and the platform-neutral finding rules."""

from __future__ import annotations

import os

import pytest

from dyldwatch.host.procmaps import MapsParseError, classify, parse_maps, parse_maps_line, parse_regions
from dyldwatch.host.regions import (
    REASON_ANON,
    REASON_DELETED,
    REASON_MEMFD,
    REASON_WX,
    Region,
    finding_reason,
    group_images,
)

# Lines as the kernel writes them (padding after the inode up to column 73, trailing space on anon).
MAPS = """\
55994c003000-55994c004000 r--p 00000000 fe:00 26723                      /usr/bin/python3.11
55994c004000-55994c005000 r-xp 00001000 fe:00 26723                      /usr/bin/python3.11
55994c005000-55994c006000 rw-p 00002000 fe:00 26723                      /usr/bin/python3.11
5632849e4000-563284a26000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000002000 rwxp 00000000 00:00 0 \n\
7f0000010000-7f0000011000 r-xp 00000000 00:00 0 \n\
7f0000020000-7f0000021000 r-xp 00000000 00:01 1026                       /memfd:dw payload (deleted)
7f0000030000-7f0000031000 r-xp 00000000 fe:00 4242                       /tmp/my dir/evil lib.so (deleted)
7f0000040000-7f0000042000 rwxs 00000000 00:01 1025                       /dev/zero (deleted)
7f0000050000-7f0000051000 r-xs 00000000 00:01 98307                      /SYSV0000002a (deleted)
7f0000060000-7f0000061000 r-xp 00000000 00:00 0                          [anon:v8 jit code]
7f0000070000-7f0000071000 r-xp 00000000 00:00 0                          [anon:libffi]
7f0000080000-7f0000081000 r-xp 00000000 00:0e 12                         anon_inode:[perf_event]
7f0000090000-7f0000091000 r--p 00000000 fe:00 5555                       /usr/lib/locale/locale-archive
7f00000a0000-7f00000a1000 r-xp 00002000 103:02 777                       /opt/app/lib with  two spaces.so
7ff05e5d1000-7ff05e5d3000 r-xp 00000000 00:00 0                          [vdso]
7ff05e5c0000-7ff05e5c2000 r--p 00000000 00:00 0                          [vvar]
7ffd0f66f000-7ffd0f690000 rwxp 00000000 00:00 0                          [stack]
7ffd0f700000-7ffd0f701000 r-xp 00000000 00:00 0                          [uprobes]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
"""


def regions_by_start() -> dict[int, Region]:
    return {r.start: r for r in parse_regions(MAPS)}


def test_line_fields_and_device_number() -> None:
    e = parse_maps_line("7f00000a0000-7f00000a1000 r-xp 00002000 103:02 777   /opt/x.so\n")
    assert (e.start, e.end, e.perms, e.offset, e.inode, e.name) == (0x7F00000A0000, 0x7F00000A1000, "r-xp", 0x2000, 777, "/opt/x.so")
    assert (e.major, e.minor) == (0x103, 0x02)
    assert e.device == os.makedev(0x103, 2)


def test_paths_keep_spaces_that_whitespace_splitting_loses() -> None:
    r = regions_by_start()
    assert r[0x7F00000A0000].path == "/opt/app/lib with  two spaces.so"
    assert r[0x7F0000030000].path == "/tmp/my dir/evil lib.so"
    assert r[0x7F0000020000].path == "/memfd:dw payload"


def test_anonymous_line_without_name_and_trailing_space() -> None:
    e = parse_maps_line("7f0000000000-7f0000002000 rwxp 00000000 00:00 0 ")
    assert e.name == "" and e.inode == 0
    e = parse_maps_line("7f0000000000-7f0000002000 rwxp 00000000 00:00 0")
    assert e.name == ""


@pytest.mark.parametrize(
    "line",
    ["", "garbage", "7f00-7f01 rwzp 00000000 00:00 0", "7f00 r-xp 0 00:00 0 /x", "7f00-7f01 r-xp 00000000 00:00 abc /x"],
)
def test_malformed_lines_raise_alone_and_are_skipped_in_bulk(line: str) -> None:
    with pytest.raises(MapsParseError):
        parse_maps_line(line)
    text = line + "\n7f0000010000-7f0000011000 r-xp 00000000 00:00 0 \n"
    assert [e.start for e in parse_maps(text)] == [0x7F0000010000]


def test_executable_only_filter_matches_full_parse() -> None:
    full = [e for e in parse_maps(MAPS) if e.perms[2] == "x"]
    assert list(parse_maps(MAPS, executable_only=True)) == full
    assert len(full) == 15
    assert len(list(parse_maps(MAPS))) == len(MAPS.splitlines()) == 20


EXPECTED = {
    # start: (region_type, anonymous, reason)
    0x55994C003000: ("file", False, None),
    0x55994C004000: ("file", False, None),
    0x5632849E4000: ("heap", True, None),
    0x7F0000000000: ("anon", True, REASON_WX),
    0x7F0000010000: ("anon", True, REASON_ANON),
    0x7F0000020000: ("memfd", False, REASON_MEMFD),
    0x7F0000030000: ("deleted", False, REASON_DELETED),
    0x7F0000040000: ("shm", True, REASON_WX),
    0x7F0000050000: ("shm", True, REASON_ANON),
    0x7F0000060000: ("jit", True, REASON_ANON),
    0x7F0000070000: ("anon", True, REASON_ANON),
    0x7F0000080000: ("anon_inode", True, REASON_ANON),
    0x7F0000090000: ("file", False, None),
    0x7F00000A0000: ("file", False, None),
    0x7FF05E5D1000: ("special", False, None),
    0x7FF05E5C0000: ("special", False, None),
    0x7FFD0F66F000: ("stack", True, REASON_WX),
    0x7FFD0F700000: ("special", False, None),
    0xFFFFFFFFFF600000: ("special", False, None),
}


@pytest.mark.parametrize("start", sorted(EXPECTED))
def test_classification_and_reason(start: int) -> None:
    r = regions_by_start()[start]
    assert (r.region_type, r.anonymous, finding_reason(r)) == EXPECTED[start]
    if r.anonymous:
        assert r.path == ""


def test_labels_and_deleted_marker() -> None:
    r = regions_by_start()
    assert r[0x5632849E4000].label == "[heap]"
    assert r[0x7F0000040000].label == "/dev/zero (deleted)"
    assert r[0x7F0000050000].label == "/SYSV0000002a (deleted)"
    assert r[0x7F0000060000].label == "[anon:v8 jit code]"
    assert r[0x7F0000030000].deleted and r[0x7F0000020000].deleted
    assert not r[0x55994C004000].deleted
    assert r[0x7F0000040000].permissions == "rwxs"


def test_stack_with_thread_id_and_unknown_bracket_names() -> None:
    stack = classify(parse_maps_line("7f00-7f01 rw-p 00000000 00:00 0   [stack:1234]"))
    assert stack.region_type == "stack" and stack.anonymous
    odd = classify(parse_maps_line("7f00-7f01 r-xp 00000000 00:00 0   [some_new_kernel_thing]"))
    assert odd.region_type == "special" and finding_reason(odd) is None


def test_file_named_like_a_memfd_only_when_slash_memfd() -> None:
    r = classify(parse_maps_line("7f00-7f01 r-xp 00000000 fe:00 9   /home/u/memfd:x"))
    assert r.region_type == "file" and finding_reason(r) is None


def test_group_images_base_at_offset_zero_and_deleted() -> None:
    images = list(group_images(parse_regions(MAPS)))
    by_path = {i.path: i for i in images}
    # The interpreter's base is its r--p header mapping, not the later r-xp text.
    assert by_path["/usr/bin/python3.11"].base_address == 0x55994C003000
    assert by_path["/usr/bin/python3.11"].inode == 26723
    assert by_path["/usr/bin/python3.11"].device == os.makedev(0xFE, 0)
    # Never-executable files and anonymous / kernel mappings are not images.
    assert "/usr/lib/locale/locale-archive" not in by_path
    assert all(i.path and i.inode for i in images)
    assert by_path["/tmp/my dir/evil lib.so"].deleted
    assert by_path["/memfd:dw payload"].deleted
    # A file mapped only from a non-zero offset gets its lowest mapping as the base.
    assert by_path["/opt/app/lib with  two spaces.so"].base_address == 0x7F00000A0000
    assert [i.path for i in images][0] == "/usr/bin/python3.11"
    assert len(images) == len({(i.device, i.inode, i.path) for i in images})


def test_group_images_keeps_same_path_with_different_inodes_apart() -> None:
    text = (
        "1000-2000 r-xp 00000000 fe:00 1   /opt/a.so\n"
        "3000-4000 r-xp 00000000 fe:00 2   /opt/a.so (deleted)\n"
        "5000-6000 r--p 00000000 fe:00 1   /opt/a.so\n"
    )
    images = list(group_images(parse_regions(text)))
    assert [(i.inode, i.base_address, i.deleted) for i in images] == [(1, 0x1000, False), (2, 0x3000, True)]


def findings(regions: list[Region]) -> list[tuple[int, str | None]]:
    return [(r.start, finding_reason(r)) for r in regions if finding_reason(r)]


def test_suspect_prefilter_keeps_every_finding() -> None:
    suspects = list(parse_regions(MAPS, suspects_only=True))
    assert findings(suspects) == findings(list(parse_regions(MAPS)))
    # Ordinary library text is dropped before any object is built.
    assert 0x55994C004000 not in {r.start for r in suspects}
    assert 0x7F00000A0000 not in {r.start for r in suspects}


def test_suspect_prefilter_agrees_with_full_parse_on_this_machine() -> None:
    checked = 0
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/maps", encoding="utf-8", errors="backslashreplace") as f:
                text = f.read()
        except OSError:
            continue
        assert findings(list(parse_regions(text, suspects_only=True))) == findings(list(parse_regions(text)))
        checked += 1
    if checked == 0:
        pytest.skip("no readable /proc/*/maps")

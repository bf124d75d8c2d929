"""Install-name resolution (@executable_path, @loader_path, @rpath) and the shared-cache path test."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dyldwatch.formats.macho import in_shared_cache_path, resolve_install_name
from dyldwatch.formats.macho.resolve import rpath_candidates

APP = "/Applications/App.app/Contents/MacOS/App"
PLUGIN = "/Applications/App.app/Contents/PlugIns/p.bundle/Contents/MacOS/p"


def on_disk(*paths: str) -> Callable[[str], bool]:
    present = set(paths)
    seen: list[str] = []

    def exists(p: str) -> bool:
        seen.append(p)
        return p in present

    exists.seen = seen  # type: ignore[attr-defined]
    return exists


def resolve(name: str, *, exe: str | None = None, loader: str = APP, rpaths: list[str] | None = None,
            exists: Callable[[str], bool] | None = None) -> tuple[str | None, bool]:
    return resolve_install_name(name, executable_path=exe, loader_path=loader, rpaths=rpaths or [],
                                exists=exists or on_disk())


def test_absolute_is_normalised_and_checked() -> None:
    assert resolve("/usr/local/lib/../lib/libz.dylib", exists=on_disk("/usr/local/lib/libz.dylib")) == (
        "/usr/local/lib/libz.dylib", True)
    assert resolve("/opt/missing.dylib") == ("/opt/missing.dylib", False)


@pytest.mark.parametrize("name", ["libfoo.dylib", "lib/foo.dylib", "@weird/foo.dylib", ""])
def test_bare_relative_and_unknown_tokens_unresolved(name: str) -> None:
    assert resolve(name, exists=on_disk("libfoo.dylib", "lib/foo.dylib")) == (None, False)


def test_loader_path_nested() -> None:
    got = resolve("@loader_path/../../../../Frameworks/F.framework/F", loader=PLUGIN)
    assert got == ("/Applications/App.app/Contents/Frameworks/F.framework/F", False)
    assert resolve("@loader_path/libx.dylib", loader="/a/b/c.dylib", exists=on_disk("/a/b/libx.dylib")) == (
        "/a/b/libx.dylib", True)


def test_executable_path_uses_the_executable_when_known() -> None:
    got = resolve("@executable_path/../Frameworks/L.dylib", exe=APP, loader=PLUGIN)
    assert got == ("/Applications/App.app/Contents/Frameworks/L.dylib", False)


def test_executable_path_defaults_to_the_loader() -> None:
    got = resolve("@executable_path/../Frameworks/L.dylib", loader=PLUGIN)
    assert got == ("/Applications/App.app/Contents/PlugIns/p.bundle/Contents/Frameworks/L.dylib", False)


def test_rpath_first_existing_wins_in_order() -> None:
    rpaths = ["/opt/a", "@loader_path/../Frameworks", "/opt/c"]
    exists = on_disk("/Applications/App.app/Contents/Frameworks/libq.dylib", "/opt/c/libq.dylib")
    got = resolve("@rpath/libq.dylib", rpaths=rpaths, exists=exists)
    assert got == ("/Applications/App.app/Contents/Frameworks/libq.dylib", True)
    assert exists.seen == ["/opt/a/libq.dylib", "/Applications/App.app/Contents/Frameworks/libq.dylib"]


def test_rpath_none_exists_gives_first_candidate() -> None:
    got = resolve("@rpath/sub/libq.dylib", rpaths=["@executable_path/../lib", "/opt/b"], exe=APP)
    assert got == ("/Applications/App.app/Contents/lib/sub/libq.dylib", False)


def test_rpath_without_rpaths_or_only_relative() -> None:
    assert resolve("@rpath/libq.dylib") == (None, False)
    assert resolve("@rpath/libq.dylib", rpaths=["relative/dir", "@rpath/loop"]) == (None, False)


def test_rpath_candidates_dedupe_and_normalise() -> None:
    got = rpath_candidates("@rpath/x.dylib", executable_path="/a/b/exe", loader_path="/a/b/lib.dylib",
                           rpaths=["@loader_path/.", "@executable_path/", "/a/b/../b", "/c//d/"])
    assert got == ["/a/b/x.dylib", "/c/d/x.dylib"]


@pytest.mark.parametrize(("path", "expected"), [
    ("/usr/lib/libSystem.B.dylib", True),
    ("/System/Library/Frameworks/Foundation.framework/Versions/C/Foundation", True),
    ("/System/iOSSupport/System/Library/Frameworks/UIKit.framework/UIKit", True),
    ("/usr/local/lib/libz.dylib", False),
    ("/usr/lib/../../tmp/evil.dylib", False),
    ("/Library/Frameworks/X.framework/X", False),
    ("usr/lib/libz.dylib", False),
    ("/usr/libexec/x", False),
])
def test_in_shared_cache_path(path: str, expected: bool) -> None:
    assert in_shared_cache_path(path) is expected


# --- dyld's rules beyond the file's own LC_RPATHs ------------------------------------------------

from dyldwatch.formats.macho.resolve import fallback_candidates, needs_fallbacks, physical_path, resolve_dylib  # noqa: E402


def test_physical_path_applies_dotdot_after_the_symlink() -> None:
    links = {"/a/link": "/srv/real/deep"}
    assert physical_path("/a/link/../x.dylib", lambda p: links.get(p, p)) == "/srv/real/x.dylib"
    assert physical_path("/a/link/../x.dylib") == "/a/x.dylib"  # lexical without a realpath


def test_rpath_stack_order_and_source() -> None:
    exists = on_disk("/main/lib/libq.dylib", "/mid/lib/libq.dylib")
    r = resolve_dylib("@rpath/libq.dylib", loader_path="/leaf/l.dylib", rpaths=["/leaf/none"], exists=exists,
                      executable_path="/main/exe",
                      rpath_stack=[("/mid/m.dylib", ["@loader_path/lib"]), ("/main/exe", ["@executable_path/lib"])])
    assert (r.path, r.exists, r.source) == ("/mid/lib/libq.dylib", True, "/mid/m.dylib")
    assert exists.seen == ["/leaf/none/libq.dylib", "/mid/lib/libq.dylib"]


def test_executable_path_chops_leading_dotdot_like_dyld() -> None:
    r = resolve_dylib("@executable_path/../../Frameworks/F", loader_path=APP, rpaths=[], exists=on_disk(),
                      realpath=lambda p: "/elsewhere")
    assert r.path == "/Applications/App.app/Frameworks/F"


@pytest.mark.parametrize(("name", "expected"), [
    ("/opt/x/libz.1.dylib", ["/usr/local/lib/libz.1.dylib", "/usr/lib/libz.1.dylib"]),
    ("@rpath/Foo.framework/Versions/A/Foo", ["/Library/Frameworks/Foo.framework/Versions/A/Foo",
                                              "/System/Library/Frameworks/Foo.framework/Versions/A/Foo"]),
])
def test_fallback_candidates(name: str, expected: list[str]) -> None:
    assert [c.path for c in fallback_candidates(name)] == expected


@pytest.mark.parametrize(("sdk", "platform", "expected"), [
    ("13.3.0", "macos", True), ("14.0.0", "macos", False), (None, None, True), ("12.0.0", "ios", False)])
def test_needs_fallbacks(sdk: str | None, platform: str | None, expected: bool) -> None:
    assert needs_fallbacks(sdk, platform) is expected


@pytest.mark.parametrize("path", [
    "/System/DriverKit/usr/lib/libc++.dylib", "/Library/Apple/usr/lib/libx.dylib",
    "/System/Cryptexes/OS/System/Library/Frameworks/WebKit.framework/WebKit",
    "/System/iOSSupport/usr/lib/swift/libswiftUIKit.dylib"])
def test_dyld_shared_cache_prefixes(path: str) -> None:
    assert in_shared_cache_path(path)


def test_one_shared_cache_list() -> None:
    from dyldwatch.formats.macho.resolve import SHARED_CACHE_PREFIXES
    from dyldwatch.formats.provenance import DARWIN_SHARED_CACHE_PREFIXES, is_system_path

    assert tuple(p.rstrip("/") for p in SHARED_CACHE_PREFIXES) == DARWIN_SHARED_CACHE_PREFIXES
    assert is_system_path("/System/DriverKit/usr/lib/libc++.dylib", "darwin", exists=False)


def test_shared_cache_path_gets_no_fallback() -> None:
    r = resolve_dylib("/usr/lib/libSystem.B.dylib", loader_path=APP, rpaths=[], exists=on_disk(), fallbacks=True)
    assert r.planting == () and [c.via for c in r.candidates] == ["absolute"]
    missing = resolve_dylib("/opt/x/libq.dylib", loader_path=APP, rpaths=[], exists=on_disk(), fallbacks=True)
    assert [c.path for c in missing.candidates][1:] == ["/usr/local/lib/libq.dylib", "/usr/lib/libq.dylib"]

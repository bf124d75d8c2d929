"""Install-name resolution (@executable_path, @loader_path, @rpath) and the shared-cache path test."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dyldwatch.macho import in_shared_cache_path, resolve_install_name
from dyldwatch.macho.resolve import rpath_candidates

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

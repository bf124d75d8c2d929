"""One source of osquery paths and flags: every shipped or generated file agrees with deploy_layout."""

from __future__ import annotations

import plistlib
import re
from pathlib import Path

import pytest

from dyldwatch import resources
from dyldwatch.deploy.install import InstallError
from dyldwatch.deploy.install import layout_for as install_layout_for
from dyldwatch.deploy.layout import LAYOUTS, extensions_load_text, flags, flags_text, layout_for

from .harness import ROOT

EXT = ROOT / "extension"
TEMPLATES = resources.templates_dir()


def test_layouts_follow_osquery_default_paths() -> None:
    """osquery/utils/config/default_paths.h: Linux home /etc/osquery, socket /var/osquery; macOS /var/osquery."""
    linux, mac = layout_for("linux"), layout_for("darwin")
    assert (linux.home, linux.socket) == ("/etc/osquery", "/var/osquery/osquery.em")
    assert (mac.home, mac.socket) == ("/var/osquery", "/var/osquery/osquery.em")
    assert linux.flags == "/etc/osquery/osquery.flags" and mac.extensions_load == "/var/osquery/extensions.load"
    assert linux.extension == mac.extension == "/usr/local/osquery/extensions/dyldwatch.ext"
    with pytest.raises(InstallError, match="no osquery layout"):
        install_layout_for("windows")


@pytest.mark.parametrize("system", sorted(LAYOUTS))
def test_flags_autoload_and_require_the_extension(system: str) -> None:
    layout = layout_for(system)
    pairs = dict(flags(layout))
    assert pairs["extensions_autoload"] == layout.extensions_load and pairs["extensions_require"] == "dyldwatch"
    assert pairs["extensions_socket"] == layout.socket
    assert int(pairs["extensions_timeout"]) > int(pairs["extensions_interval"]) > 0
    text = flags_text(layout, config=True)
    assert text.splitlines()[0] == f"--config_path={layout.config}" and text.endswith("\n")


def test_shipped_samples_are_the_generated_linux_files() -> None:
    linux = layout_for("linux")
    assert (EXT / "osquery.flags").read_text() == flags_text(linux)
    assert (EXT / "extensions.load").read_text() == extensions_load_text(linux)


def test_service_templates_take_flags_only_from_the_flagfile() -> None:
    """launchd and systemd start osqueryd with the layout's flagfile; no extension flag is repeated there."""
    mac, linux = layout_for("darwin"), layout_for("linux")
    plist = plistlib.loads((TEMPLATES / "com.dyldwatch.osqueryd.plist").read_bytes())
    args = plist["ProgramArguments"]
    assert args[0] == mac.osqueryd and f"--flagfile={mac.flags}" in args
    assert not [a for a in args if a.startswith("--extensions_")]
    unit = (TEMPLATES / "osqueryd.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*?)(?<!\\)$", unit, re.M | re.S)
    assert exec_start is not None
    command = exec_start.group(1)
    assert command.startswith(linux.osqueryd) and f"--flagfile {linux.flags}" in command
    assert "--extensions_" not in command


def test_nothing_else_spells_the_extension_flags() -> None:
    """The flags are written only by deploy/layout.py (a second writer would drift)."""
    writers = [p.relative_to(ROOT) for p in (ROOT / "src" / "dyldwatch").rglob("*.py")
               if "--extensions_timeout" in p.read_text() or "extensions_timeout=" in p.read_text()]
    assert writers == [Path("src/dyldwatch/deploy/layout.py")]

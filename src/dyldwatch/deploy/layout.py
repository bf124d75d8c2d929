"""Where osquery keeps its files on each platform, and the osquery.flags that autoload dyldwatch.

The one source of these paths and flags: `dyldwatch install`, the operator bundle, `dyldwatch
build --target osquery` and the samples in extension/ all come from here (tests compare them).

Paths follow osquery/utils/config/default_paths.h: on Linux OSQUERY_HOME (flags, extensions.load,
config) is /etc/osquery/ and the extension socket sits in OSQUERY_DB_HOME, /var/osquery/; on macOS
both are /var/osquery/. osqueryd is /opt/osquery/bin/osqueryd on Linux and inside
/opt/osquery/lib/osquery.app on macOS (osquery's install-linux.md and install-macos.md). osquery
names no extensions directory (its docs' example is /usr/lib/osquery/extensions); ours is
/usr/local/osquery/extensions on both, root-owned so that osquery's safe-permission check passes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ..packs import EVENTS_EXPIRY as PACKS_EVENTS_EXPIRY

EXTENSION_NAME = "dyldwatch"
EXTENSION_DIR = "/usr/local/osquery/extensions"

#: Seconds osqueryd waits for a required extension to register (--extensions_timeout; osquery
#: reads whole seconds). Measured start to registration: 0.2 s from a virtualenv, 0.7 s with no
#: bytecode cache, 1.5 s for the pex artifact's first start (docs/deploy.md); 10 s leaves a
#: six-fold margin over the slowest for busy or older hosts at boot.
EXTENSIONS_TIMEOUT = 10
#: Seconds between osqueryd's and the extension's liveness checks (--extensions_interval).
EXTENSIONS_INTERVAL = 3


@dataclass(frozen=True)
class Layout:
    """osquery's places on one platform (absolute paths, before any staging prefix)."""

    system: str  # "linux" | "darwin"
    folder: str  # bundle folder name: "linux" | "macos"
    home: str  # OSQUERY_HOME
    db_home: str  # OSQUERY_DB_HOME, where the extension manager socket lives
    osqueryd: str
    extension_dir: str = EXTENSION_DIR

    @property
    def extension(self) -> str:
        return f"{self.extension_dir}/{EXTENSION_NAME}.ext"

    @property
    def extensions_load(self) -> str:
        return f"{self.home}/extensions.load"

    @property
    def flags(self) -> str:
        return f"{self.home}/osquery.flags"

    @property
    def config(self) -> str:
        return f"{self.home}/osquery.conf"

    @property
    def packs_dir(self) -> str:
        return f"{self.home}/packs"

    @property
    def socket(self) -> str:
        return f"{self.db_home}/osquery.em"


LAYOUTS: dict[str, Layout] = {
    "linux": Layout("linux", "linux", "/etc/osquery", "/var/osquery", "/opt/osquery/bin/osqueryd"),
    "darwin": Layout("darwin", "macos", "/var/osquery", "/var/osquery",
                     "/opt/osquery/lib/osquery.app/Contents/MacOS/osqueryd"),
}


def layout_for(system: str | None = None) -> Layout:
    """The layout for `system` ("linux" or "darwin"; default: this host). KeyError when unknown."""
    system = system or ("darwin" if sys.platform == "darwin" else "linux")
    if system not in LAYOUTS:
        raise KeyError(f"no osquery layout for {system!r}; supported: {', '.join(LAYOUTS)}")
    return LAYOUTS[system]


#: Seconds osquery keeps event rows: what the packs need (packs.EVENTS_EXPIRY).
EVENTS_EXPIRY = PACKS_EVENTS_EXPIRY


def flags(layout: Layout, *, config: bool = False) -> list[tuple[str, str]]:
    """(flag, value) pairs that autoload dyldwatch, make osqueryd wait for its tables and keep the
    events the packs look up."""
    pairs = [("config_path", layout.config)] if config else []
    pairs += [
        ("extensions_socket", layout.socket),
        ("extensions_autoload", layout.extensions_load),
        ("extensions_timeout", str(EXTENSIONS_TIMEOUT)),
        ("extensions_interval", str(EXTENSIONS_INTERVAL)),
        ("extensions_require", EXTENSION_NAME),
        ("disable_events", "false"),
        ("events_expiry", str(EVENTS_EXPIRY)),
    ]
    if layout.folder == "macos":  # es_process_file_events needs EndpointSecurity and its FIM subscriber
        pairs += [("disable_endpointsecurity", "false"), ("disable_endpointsecurity_fim", "false")]
    return pairs


def flags_text(layout: Layout, *, config: bool = False) -> str:
    """osquery.flags content: one `--flag=value` per line."""
    return "".join(f"--{name}={value}\n" for name, value in flags(layout, config=config))


def extensions_load_text(layout: Layout) -> str:
    return layout.extension + "\n"

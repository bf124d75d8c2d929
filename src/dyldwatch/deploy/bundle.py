"""The operator bundle: artifacts + osquery/launchd/systemd/Fleet configuration + packs + SHA256SUMS + README.

Owns: the bundle's folder layout. May import: deploy.layout, deploy.artifact, packs, resources.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .. import resources
from .artifact import ARTIFACT_NAME, Artifact, PackagingError, Progress, _stderr

BUNDLE_README = """# dyldwatch for osquery: operator bundle

Built by `dyldwatch package --bundle` (dyldwatch {version}). Full guide: docs/deploy.md in the repository.

| platform | artifact | size | SHA-256 | runs with |
|---|---|---|---|---|
{rows}

Every `dyldwatch.ext` is one file (a PEX zipapp) holding dyldwatch and all its dependencies with
that platform's native wheels. The host needs only the interpreter named in its first line.
On its first start it unpacks into `~/.pex` of the user running osqueryd (root: /var/root/.pex on
macOS, /root/.pex on Linux; set PEX_ROOT to move it); later starts reuse that cache.

## Folder
- `<platform>/dyldwatch.ext`, `<platform>/dyldwatch.ext.sha256`, `SHA256SUMS` (all artifacts)
- `osquery/linux/` and `osquery/macos/`: `extensions.load` and `osquery.flags` for each layout
- `launchd/com.dyldwatch.osqueryd.plist`: osqueryd as a LaunchDaemon with those flags (macOS)
- `systemd/osqueryd.service`: osqueryd with those flags (standalone Linux hosts)
- `fleet/agent-options.yml`: the `extensions:` block for Fleet's agent options (fleetd hosts)
- `packs/osquery/`, `packs/fleetctl/`, `packs/fleet-gitops/`: the query packs, per deployment tool

## Standalone osquery host
```sh
sha256sum -c SHA256SUMS                       # macOS: shasum -a 256 -c SHA256SUMS
sudo install -d -o root -m 0755 /usr/local/osquery/extensions
sudo install -o root -m 0755 linux-x86_64/dyldwatch.ext /usr/local/osquery/extensions/dyldwatch.ext
sudo install -o root -m 0644 osquery/linux/extensions.load osquery/linux/osquery.flags /etc/osquery/
sudo systemctl restart osqueryd               # or: sudo cp systemd/osqueryd.service /etc/systemd/system/
```
macOS: the same with `macos-arm64` or `macos-x86_64`, `osquery/macos/*` into `/var/osquery/`, and
`sudo launchctl bootstrap system launchd/com.dyldwatch.osqueryd.plist` (copied to /Library/LaunchDaemons,
root:wheel 0644). `dyldwatch install --artifact <file>` does the same with every permission checked.

## Fleet (fleetd / Orbit)
Fleet starts target `extensions/<key>` as the file `<key>.ext`, with `platform` one of macos/linux, so
each architecture gets its own key, narrowed by a label (see `fleet/agent-options.yml`):
```sh
for p in macos-arm64 macos-x86_64 linux-x86_64 linux-aarch64; do
  key=dyldwatch_$(echo $p | tr - _); cp $p/dyldwatch.ext $key.ext
  fleetctl updates add --path /path/to/tuf-repo --target $key.ext --name extensions/$key \\
    --platform ${{p%%-*}} --version {version}
done
fleetctl apply -f fleet/agent-options.yml     # or merge its `extensions:` into your agent options
```
Check on a host: `SELECT name, version FROM osquery_extensions;` lists `dyldwatch`.
"""


def write_bundle(out_dir: Path, artifacts: Sequence[Artifact], *, progress: Progress = _stderr) -> list[Path]:
    """Write configuration, packs and README beside the built artifacts (the operator's one folder)."""
    from .. import __version__
    from .layout import LAYOUTS, extensions_load_text, flags_text

    out_dir = Path(out_dir)
    written: list[Path] = []

    def put(rel: str, text: str) -> None:
        p = out_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        written.append(p)

    progress("bundle: osquery, launchd, systemd and Fleet configuration")
    for layout in LAYOUTS.values():
        put(f"osquery/{layout.folder}/extensions.load", extensions_load_text(layout))
        put(f"osquery/{layout.folder}/osquery.flags", flags_text(layout))
    for rel, src in (("launchd/com.dyldwatch.osqueryd.plist", "com.dyldwatch.osqueryd.plist"),
                     ("systemd/osqueryd.service", "osqueryd.service"),
                     ("fleet/agent-options.yml", "fleet-agent-options.yml")):
        try:
            put(rel, resources.template(src).read_text())
        except FileNotFoundError as exc:
            raise PackagingError(str(exc)) from exc
    progress("bundle: packs (osquery, fleetctl, fleet-gitops)")
    written += _build_packs(out_dir / "packs")
    sums = "".join(f"{a.sha256}  {a.target.name}/{ARTIFACT_NAME}\n" for a in artifacts)
    put("SHA256SUMS", sums)
    rows = "\n".join(f"| {a.target.name} | `{a.target.name}/{ARTIFACT_NAME}` | {a.size / 1e6:.1f} MB | "
                     f"`{a.sha256}` | {a.target.shebang} |" for a in artifacts)
    put("README.md", BUNDLE_README.format(version=__version__, rows=rows))
    return written


def _build_packs(out_dir: Path) -> list[Path]:
    """The packs as `dyldwatch build` writes them, for each deployment tool (lint must pass first)."""
    from ..packs import load_packs
    from ..packs.lint import lint_paths
    from .build import build

    packs = load_packs(())
    problems = lint_paths((), None)
    if problems:
        raise PackagingError("pack lint failed; no bundle written:\n" + "\n".join(map(str, problems)))
    paths: list[Path] = []
    for target in ("osquery", "fleetctl", "fleet-gitops"):
        paths += build(packs, target, out_dir / target, None)
    return paths

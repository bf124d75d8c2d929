"""`dyldwatch build`: the packs rendered for a deployment tool, with osquery's host files.

The pack renderers are pure (packs.targets); the host files (osquery.conf, osquery.flags,
extensions.load per platform) come from deploy.layout, the one source of osquery's places.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..packs.model import Pack
from ..packs.targets import (
    TARGETS,
    Sites,
    dump_yaml,
    fleetctl_docs,
    gitops_reports,
    osquery_config,
    osquery_pack,
)
from .layout import LAYOUTS, extensions_load_text, flags_text


def build(packs: list[Pack], target: str, out_dir: str | Path, sites: Sites | None = None) -> list[Path]:
    """Write one target's files under `out_dir` and return their paths."""
    out = Path(out_dir)
    written: list[Path] = []

    def write(rel: str, text: str) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)

    if target == "osquery":
        for p in packs:
            write(f"packs/{p.pack_name}.json", json.dumps(osquery_pack(p, sites), indent=2) + "\n")
        for layout in LAYOUTS.values():  # osquery's places differ per platform (deploy_layout)
            conf = osquery_config(packs, layout.packs_dir)
            write(f"{layout.folder}/osquery.conf", json.dumps(conf, indent=2) + "\n")
            write(f"{layout.folder}/osquery.flags", flags_text(layout, config=True))
            write(f"{layout.folder}/extensions.load", extensions_load_text(layout))
    elif target == "fleetctl":
        for p in packs:
            write(f"{p.pack_name}.yml", "---\n".join(dump_yaml(d) for d in fleetctl_docs(p, sites)))
    elif target == "fleet-gitops":
        for p in packs:
            write(f"lib/dyldwatch/{p.id}.reports.yml", dump_yaml(gitops_reports(p, sites)))
        refs = [{"path": f"./lib/dyldwatch/{p.id}.reports.yml"} for p in packs]
        header = ("# dyldwatch reports: merge into default.yml (paths are relative to it; from fleets/*.yml or\n"
                  "# teams/*.yml use ../lib/...). Fleet releases before the queries->reports rename use `queries:`.\n")
        write("default.snippet.yml", header + dump_yaml({"reports": refs}))
    else:
        raise ValueError(f"unknown target {target!r} (one of {', '.join(TARGETS)})")
    return written

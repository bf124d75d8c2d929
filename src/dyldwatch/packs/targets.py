"""Build targets: osquery pack JSON, fleetctl v1 YAML, Fleet GitOps report files.

Every target carries the same rendered SQL (site knobs substituted as SQL literals), so what a
fleet runs is exactly what lint prepared and validate ran against the scenario databases.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from ..sql.facts import OUR_TABLES
from .model import Pack, Query

TARGETS = ("osquery", "fleetctl", "fleet-gitops")
#: Fleet's built-in platform labels, for fleetctl pack targets.
FLEET_LABELS = {"darwin": "macOS", "linux": "All Linux"}

Sites = Mapping[str, Mapping[str, Any]]


def _sql(pack: Pack, q: Query, sites: Sites | None) -> str:
    text = pack.render(q, (sites or {}).get(pack.id))
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _platform(platforms: list[str] | tuple[str, ...]) -> str:
    return "posix" if set(platforms) >= {"darwin", "linux"} else ",".join(platforms)


def discovery(pack: Pack) -> list[str]:
    """One query per dyldwatch table the pack reads: the pack runs only where the extension serves it."""
    used = sorted({t for q in pack.queries for t in q.tables if t in OUR_TABLES})
    return [f"SELECT 1 FROM osquery_registry WHERE registry = 'table' AND name = '{t}' AND active = 1" for t in used]


def _version(pack: Pack) -> str:
    return max((q.version for q in pack.queries), key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit()))


def osquery_pack(pack: Pack, sites: Sites | None = None) -> dict[str, Any]:
    """The osquery pack document (https://osquery.readthedocs.io, "Query packs")."""
    queries: dict[str, Any] = {}
    for q in pack.queries:
        entry: dict[str, Any] = {
            "query": _sql(pack, q, sites), "interval": q.interval, "platform": q.platform,
            "version": q.version, "description": q.description, "value": q.value, "snapshot": q.snapshot,
        }
        if not q.snapshot:
            entry["removed"] = q.removed
        queries[q.name] = entry
    return {"platform": _platform(pack.platforms), "version": _version(pack), "discovery": discovery(pack),
            "queries": queries}


def osquery_config(packs: list[Pack], install_dir: str) -> dict[str, Any]:
    """Config snippet that references the pack files (merge into osquery.conf)."""
    return {"packs": {p.pack_name: f"{install_dir}/{p.pack_name}.json" for p in packs}}


def fleetctl_docs(pack: Pack, sites: Sites | None = None) -> list[dict[str, Any]]:
    """fleetctl v1 documents: one `kind: query` per query, then the `kind: pack` that schedules them."""
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "query",
         "spec": {"name": q.name, "description": q.description, "query": _sql(pack, q, sites)}}
        for q in pack.queries
    ]
    docs.append({"apiVersion": "v1", "kind": "pack", "spec": {
        "name": pack.pack_name,
        "description": f"{pack.id}: {pack.title}",
        "targets": {"labels": [FLEET_LABELS[p] for p in pack.platforms]},
        "queries": [
            {"query": q.name, "name": q.name, "description": q.description, "interval": q.interval,
             "snapshot": q.snapshot, "removed": q.removed, "platform": q.platform, "version": q.version}
            for q in pack.queries
        ],
    }})
    return docs


def gitops_reports(pack: Pack, sites: Sites | None = None) -> list[dict[str, Any]]:
    """Fleet GitOps report (query) entries for `lib/` files referenced from default.yml or a fleet file."""
    return [
        {"name": q.name, "description": f"{pack.id} {pack.title}: {q.description}", "query": _sql(pack, q, sites),
         "platform": q.platform, "interval": q.interval, "min_osquery_version": q.version,
         "logging": q.logging, "observer_can_run": False, "automations_enabled": False, "discard_data": False}
        for q in pack.queries
    ]


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000)

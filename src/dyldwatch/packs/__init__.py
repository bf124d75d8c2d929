"""The packs: one YAML file per analytic (model), their lint, their build targets, the scenarios
they are proven on, and validation. The model's public names are re-exported here."""

from .model import (
    EVENTS_EXPIRY,
    KNOB_RE,
    PACKS_DIR,
    Expectation,
    Knob,
    Pack,
    PackError,
    Problem,
    Query,
    check_value,
    load_all,
    load_pack,
    load_packs,
    load_site,
    pack_paths,
    quote,
    sql_literal,
)

__all__ = ["EVENTS_EXPIRY", "KNOB_RE", "PACKS_DIR", "Expectation", "Knob", "Pack", "PackError", "Problem", "Query",
           "check_value", "load_all", "load_pack", "load_packs", "load_site", "pack_paths", "quote", "sql_literal"]

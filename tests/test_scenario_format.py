"""sample_dbs/scenarios/README.md specifies every field the scenario loader accepts."""

from __future__ import annotations

from dyldwatch import resources
from dyldwatch.packs import scenarios as samples


def test_readme_names_every_known_field() -> None:
    readme = (resources.scenarios_dir() / "README.md").read_text()
    known = (*samples._SCENARIO_FIELDS, *samples._GENERATE_FIELDS, *samples._FIXTURE_FIELDS, *samples.HOST_FACTS,
             *samples._MACHO_FIELDS, *samples._SIGNATURES, *samples._SIG_FIELDS, *samples._DYLIB_KINDS, *samples._ARCHS)
    missing = [f for f in known if f"`{f}`" not in readme]
    assert missing == [], f"fields missing from sample_dbs/scenarios/README.md: {missing}"

"""The macOS CI workflow loads as YAML and runs what it claims: tests, lint, selfcheck on macos-14."""

from __future__ import annotations

from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "macos.yml"


def test_macos_workflow_is_sane() -> None:
    doc = yaml.safe_load(WORKFLOW.read_text())
    job = doc["jobs"]["test"]
    assert job["runs-on"] == "macos-14"
    assert doc[True if True in doc else "on"]  # YAML 1.1 reads the `on:` key as True
    steps = job["steps"]
    assert all(("uses" in s) != ("run" in s) for s in steps), "each step either uses an action or runs a command"
    runs = " ".join(s.get("run", "") for s in steps)
    assert "pytest" in runs and "make lint" in runs and "dyldwatch selfcheck" in runs
    assert steps[0]["uses"].startswith("actions/checkout@")
    assert runs.index("make install") < runs.index("pytest") < runs.index("selfcheck")

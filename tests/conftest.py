"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The real Mach-O corpus ($DYLDWATCH_CORPUS or ~/.cache/dyldwatch-corpus); skips when absent."""
    root = Path(os.environ.get("DYLDWATCH_CORPUS") or Path.home() / ".cache" / "dyldwatch-corpus")
    if not (root / "files").is_dir():
        pytest.skip(f"Mach-O corpus not found at {root} (run `make corpus` or `dyldwatch corpus`)")
    return root

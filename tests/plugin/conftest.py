"""Helpers for the plugin tests: each runs pytest on a small project, as a team would after
``pip install pos-harness`` (the plugin comes from its ``pytest11`` entry point).

``pytester`` itself is enabled in ``tests/conftest.py``: pytest refuses ``pytest_plugins`` in a
conftest below the top level when the whole suite runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Imported here so that pytester's in-process runs find them loaded (it drops modules a run imports).
import emulator.cli
import emulator.pytest_plugin
import emulator.runner  # noqa: F401
from specs.scenario import SCENARIO_DIR


@pytest.fixture
def cause_file() -> str:
    """The built-in C40 file's text (the stuck reversal: fast, two dialects)."""
    return (Path(SCENARIO_DIR) / "C40.yaml").read_text(encoding="utf-8")

"""The whole cause-and-fix matrix, run once per test session and shared by the matrix tests."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.runner import MatrixOptions, MatrixResult, run
from specs.logs import configure_logging


@pytest.fixture(scope="session")
def matrix_result() -> MatrixResult:
    """Every scenario, both dialects where a cause applies, stub host children on port 0."""
    configure_logging(level="error")  # the terminal's link warnings are part of the scenarios
    return run(MatrixOptions(jobs=2))


@pytest.fixture(scope="session")
def matrix_data(matrix_result: MatrixResult) -> dict[str, Any]:
    return matrix_result.as_dict()

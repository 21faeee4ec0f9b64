"""The host package's docstring examples run (pytest's doctest collection covers ``specs`` only)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["host_stub.clock", "host_stub.faults", "host_stub.registry", "host_stub.settings", "host_stub.validation",
           "host_stub.wire"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    failures, attempted = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failures == 0

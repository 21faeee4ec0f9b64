"""Shared test helpers: bounded async runs, an in-process stub host on port 0.

Every async test runs through :func:`run_bounded`, so a hang fails fast with a clear timeout
instead of blocking the suite; nothing here sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest

from host_stub.clock import BusinessClock
from host_stub.host import Host
from host_stub.ledger import Ledger
from host_stub.server import HostServer
from specs.dialects import Dialect, get_dialect
from specs.framing import DEFAULT_FRAMING, Framing

T = TypeVar("T")

#: tests/plugin runs pytest on small projects (pytest refuses this line in a conftest below the top).
pytest_plugins = ["pytester"]

ASYNC_TEST_TIMEOUT_SECONDS = 20.0


def run_bounded(coro: Awaitable[T], timeout_seconds: float = ASYNC_TEST_TIMEOUT_SECONDS) -> T:
    """Run one async test body with a hard timeout, on a fresh event loop, and check no task leaks."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout_seconds):
            result = await coro
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        assert not leftover, f"tasks left running after the test: {leftover}"
        return result

    return asyncio.run(bounded())


@asynccontextmanager
async def running_host(dialect_name: str, ledger: Ledger | None = None, *, dialect: Dialect | None = None,
                       framing: Framing | None = None) -> AsyncIterator[HostServer]:
    """An in-process stub host on 127.0.0.1 port 0; ``server.port`` is the bound port.

    ``dialect`` and ``framing`` (a profile's or a packager's) replace the built-in ones of ``dialect_name``.
    """
    dialect = dialect or get_dialect(dialect_name)
    books = ledger or Ledger(":memory:")
    server = HostServer(Host(books, dialect), dialect=dialect, framing=framing or DEFAULT_FRAMING[dialect_name],
                        clock=BusinessClock())
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.stop()
        if ledger is None:
            books.close()


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester, with Locust's pytest plugin kept out of the runs it starts as it is kept out of ours
    (``-p no:locust`` in addopts: the test extra installs locust, pytester drops our addopts)."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:locust")
    return pytester


@pytest.fixture(params=["intl-ascii", "intl-bcd", "cup"])
def dialect_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _reset_logging() -> object:
    """Each test starts from structlog's defaults, whatever an earlier test configured."""
    yield
    import structlog

    structlog.reset_defaults()

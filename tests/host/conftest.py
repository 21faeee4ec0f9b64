"""Host-suite fixtures: an in-process :class:`HostRuntime` on port 0 with its control API on port 0.

Everything async runs through :func:`tests.conftest.run_bounded` (a hard timeout and a leak check);
the business clock is frozen at :data:`tests.host.helpers.NOW` unless a test moves it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from host_stub.clock import BusinessClock
from host_stub.runtime import HostRuntime
from specs.dialects import get_dialect
from specs.framing import DEFAULT_FRAMING
from tests.host.helpers import NOW, WireClient


class ControlClient:
    """JSON calls to the control API: ``await api.get("/faults")`` -> (status, body)."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session = session
        self.base = f"http://127.0.0.1:{port}"

    async def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                   content_type: str | None = None) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else ({"json": body} if body is not None else {})
        if content_type is not None:
            kwargs["headers"] = {"Content-Type": content_type}
        async with self.session.request(method, self.base + path, **kwargs) as response:
            text = await response.text()
            try:
                return response.status, await response.json(content_type=None)
            except ValueError:
                return response.status, text

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.call("GET", path)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("POST", path, body, **kwargs)

    async def put(self, path: str, body: Any) -> tuple[int, Any]:
        return await self.call("PUT", path, body)

    async def delete(self, path: str) -> tuple[int, Any]:
        return await self.call("DELETE", path)

    async def fault(self, when: Mapping[str, Any], action: Mapping[str, Any], **extra: Any) -> str:
        status, body = await self.post("/faults", {"when": dict(when), "action": dict(action), **extra})
        assert status == 201, body
        return str(body["id"])


class HostUnderTest:
    """A running host, a control client, and terminal connections to it."""

    def __init__(self, runtime: HostRuntime, api: ControlClient, dialect_name: str) -> None:
        self.runtime, self.api, self.dialect_name = runtime, api, dialect_name
        #: Working keys by TID, shared by every connection: a terminal keeps its keys across links.
        self.maks: dict[str, bytes] = {}

    @property
    def port(self) -> int:
        assert self.runtime.port is not None
        return self.runtime.port

    async def connect(self) -> WireClient:
        return await WireClient.connect(self.port, self.dialect_name, maks=self.maks)


@asynccontextmanager
async def running(dialect_name: str, *, config: Mapping[str, Any] | None = None, ledger_path: str = ":memory:",
                  clock: BusinessClock | None = None, grace_seconds: float = 2.0) -> AsyncIterator[HostUnderTest]:
    """A host (TCP port 0) and its control API (port 0), stopped on exit."""
    runtime = HostRuntime(dialect=get_dialect(dialect_name), framing=DEFAULT_FRAMING[dialect_name],
                          ledger_path=ledger_path, config=config, clock=clock or BusinessClock(lambda: NOW),
                          grace_seconds=grace_seconds)
    await runtime.start("127.0.0.1", 0, control_port=0)
    assert runtime.control_port is not None
    try:
        async with aiohttp.ClientSession() as session:
            yield HostUnderTest(runtime, ControlClient(session, runtime.control_port), dialect_name)
    finally:
        await runtime.stop()

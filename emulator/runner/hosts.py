"""The hosts the runs use: stub host children per worker, dialect and profile (or one external host),
and the shared control client called off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from emulator.control_client import ControlApiError, ControlClient
from emulator.hostproc import HostProcess, host_address, start_host
from emulator.runner.results import MatrixOptions, RunAborted

_T = TypeVar("_T")

# ============================================================================ the host's control API


async def api(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """One call of the shared control API client, off the event loop; an error answer aborts the run
    (it names the call and what the host said)."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except ControlApiError as exc:
        raise RunAborted(str(exc)) from None


@dataclass
class HostHandle:
    """One host the runs of a worker use: where its port and control API are."""

    dialect: str
    address: str
    port: int
    control: ControlClient
    process: HostProcess | None = None


class HostPool:
    """Stub host children, one per worker and dialect, started on first use (or one external host)."""

    def __init__(self, options: MatrixOptions) -> None:
        self.options = options
        self._hosts: dict[tuple[int, str, str | None], HostHandle] = {}
        self._lock = asyncio.Lock()

    async def get(self, worker: int, dialect: str, profile: str | None = None) -> HostHandle:
        o = self.options
        if o.host is not None:
            address, port = host_address(o.host)
            assert o.control_url is not None
            return HostHandle(dialect=dialect, address=address, port=port,
                              control=ControlClient(o.control_url, token=o.control_token))
        key = (worker, dialect, profile)
        if key not in self._hosts:
            async with self._lock:  # two children starting at once would only compete for the CPU
                process = await asyncio.to_thread(start_host, "serve", "--dialect", dialect, "--port", "0",
                                                  "--control-port", "0", *(("--profile", profile) if profile else ()))
            control = ControlClient(f"http://127.0.0.1:{process.ready['control_port']}")
            self._hosts[key] = HostHandle(dialect=dialect, address="127.0.0.1", port=process.port, control=control,
                                          process=process)
        return self._hosts[key]

    async def close(self) -> None:
        processes = [h.process for h in self._hosts.values() if h.process is not None]
        self._hosts.clear()
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in processes))

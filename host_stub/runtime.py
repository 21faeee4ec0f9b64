"""One running stub host: core, books, business clock, faults, journal, TCP server, control API.

The CLI (``pos-host serve``) and the tests build the same :class:`HostRuntime`, so what a test
exercises is what a user runs.  A configuration (YAML file or dict) has four optional sections::

    settings: {reversal_unknown_rc: "00", cutover: "23:00", ...}     # host_stub.settings.HostSettings
    registry: {generate: {seed: 1, cards: 5}, merchants: [...], terminals: [...], cards: [...]}
    faults:   [{when: {mti: "0200", nth: 2}, action: {type: drop_response}}, ...]
    clock:    {set: "2026-11-23T09:00:00"}

The whole configuration is checked before anything is applied; errors name the bad key with its
path (``faults[1].action(delay_response).secnds``).  ``POST /reset`` (and :meth:`HostRuntime.reset`)
returns to exactly this configuration with empty books.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
import yaml

from host_stub.clock import BusinessClock, check_within
from host_stub.faults import Fault, FaultEngine
from host_stub.host import Host
from host_stub.journal import RequestJournal
from host_stub.ledger import Ledger
from host_stub.registry import Registry
from host_stub.server import HostServer
from host_stub.settings import HostSettings
from host_stub.validation import ConfigError, check_keys, want_datetime
from specs.dialects import Dialect
from specs.framing import Framing

log = structlog.get_logger("pos_host")

CONFIG_SECTIONS = frozenset({"settings", "registry", "faults", "clock"})


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML (or JSON) configuration file.

    Raises:
        ConfigError: the file is not YAML, or not a mapping at the top.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"File is not valid YAML ({exc.__class__.__name__}: {exc})", key="", where=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Found {type(data).__name__} at the top, expecting a mapping of "
                          f"{', '.join(sorted(CONFIG_SECTIONS))}", key="", where=str(path))
    return data


class HostRuntime:
    """Everything one stub host is made of, wired together.

    Args:
        dialect, framing: what the TCP port speaks.
        ledger_path: SQLite file for the books (``":memory:"`` for throw-away books).
        config: the configuration applied at start and restored by :meth:`reset`.
        clock: the business clock (real time by default).
        grace_seconds: how long a stop lets in-flight requests finish.

    Raises:
        ConfigError: the configuration is invalid (nothing has been applied).
    """

    def __init__(self, *, dialect: Dialect, framing: Framing, ledger_path: str = ":memory:",
                 config: Mapping[str, Any] | None = None, clock: BusinessClock | None = None,
                 grace_seconds: float = 5.0) -> None:
        self.config = dict(config or {})
        self.settings, self.faults_config, self.clock_set = _checked(self.config)
        self.dialect = dialect
        self.framing = framing
        self.ledger = Ledger(ledger_path)
        self.registry = Registry(self.ledger)
        self.host = Host(self.ledger, dialect, settings=self.settings, registry=self.registry)
        self.clock = clock or BusinessClock()
        self.faults = FaultEngine()
        self.journal = RequestJournal()
        self.server = HostServer(self.host, dialect=dialect, framing=framing, clock=self.clock, faults=self.faults,
                                 journal=self.journal, grace_seconds=grace_seconds)
        self._control: Any = None
        self.control_port: int | None = None
        self._apply(fresh_books=False)

    @property
    def port(self) -> int | None:
        return self.server.port

    def _apply(self, *, fresh_books: bool) -> None:
        """Apply the configuration; keeps registry entries the books already have unless the books are fresh."""
        with self.ledger.transaction():
            self.registry.load(self.config.get("registry") or {}, overwrite=fresh_books)
        for fault in self.faults_config:
            self.faults.add(fault)
        if self.clock_set is not None:
            self.clock.set(self.clock_set)

    def reset(self) -> None:
        """Back to the configuration: empty books, configured registry, faults, settings and clock."""
        self.ledger.reset(registry=True)
        self.faults.clear()
        self.journal.clear()
        self.clock.reset()
        self.host.settings = self.settings
        self._apply(fresh_books=True)
        log.info("host reset to its configuration")
        self.server.schedule_refresh()  # faults and clock changed: listen or not (callers that can await: changed())

    async def changed(self) -> None:
        """Faults, the clock or a reset changed: the server listens or refuses connects as the
        ``refuse_connect`` faults now say (the control API calls this after each such change)."""
        await self.server.refresh_listening()

    async def start(self, bind: str = "127.0.0.1", port: int = 0, *, control_port: int | None = None,
                    control_bind: str | None = None, control_token: str | None = None) -> None:
        """Listen for terminals (and for the control API when ``control_port`` is given; 0 picks one;
        with ``control_token`` every call needs it as a bearer token)."""
        await self.server.start(bind, port)
        if control_port is not None:
            from host_stub.control import ControlApi  # aiohttp only when the API is served

            self._control = ControlApi(self, token=control_token)
            self.control_port = await self._control.start(control_bind or bind, control_port)

    async def stop(self) -> None:
        """Stop the control API, then the TCP server (in-flight requests finish), then close the books."""
        if self._control is not None:
            await self._control.stop()
            self._control = None
        await self.server.stop()
        self.ledger.close()


def _checked(config: Mapping[str, Any]) -> tuple[HostSettings, list[Fault], Any]:
    check_keys(config, CONFIG_SECTIONS, where="config")
    settings = HostSettings.from_dict(config.get("settings") or {}, where="settings")
    items = config.get("faults") or []
    if not isinstance(items, list):
        raise ConfigError(f"Found {type(items).__name__}, expecting a list of faults", key="faults", where="config")
    faults = [Fault.from_dict(item, where=f"faults[{i}]") for i, item in enumerate(items)]
    engine = FaultEngine()  # ids must be unique: check by adding to a scratch engine
    for fault in faults:
        engine.add(fault)
    registry = config.get("registry") or {}
    scratch = Registry(Ledger(":memory:"))
    scratch.load(registry, where="registry")
    scratch.store.close()
    clock_set = None
    clock = config.get("clock") or {}
    check_keys(clock, {"set"}, where="clock")
    if "set" in clock:
        clock_set = want_datetime(clock, "set", where="clock")
        try:
            check_within(clock_set)
        except ValueError as exc:
            raise ConfigError(str(exc), key="set", where="clock") from None
    return settings, faults, clock_set

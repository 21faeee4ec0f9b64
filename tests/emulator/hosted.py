"""Helpers for end-to-end tests of the terminal against the in-process stub host (real TCP, port 0).

The emulator package never imports the host; tests may, to set faults and read the ledgers.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from emulator.channel import Endpoint, run_operation
from emulator.journal import Journal
from emulator.messages import Profile
from emulator.settings import TerminalSettings
from emulator.terminal import Books, Operation, Result, Terminal
from host_stub.faults import Fault
from host_stub.ledger import Ledger
from host_stub.server import HostServer
from specs.dialects import Dialect, get_dialect
from specs.framing import DEFAULT_FRAMING, Framing

TID = "10000001"
NOW = datetime(2026, 11, 22, 9, 30, 15)
FAST = TerminalSettings(backoff_initial_seconds=0.01, backoff_max_seconds=0.02)


@dataclass
class Pos:
    """An emulated terminal speaking to ``port``; each call is one operation of a fresh core loaded
    from the journal, as one ``pos-terminal`` invocation would be."""

    dialect_name: str
    port: int
    journal: Journal = field(default_factory=lambda: Journal(":memory:"))
    settings: TerminalSettings = FAST
    timeout: float = 0.5
    tid: str = TID
    #: A dialect and framing built from a profile or packager (None: the built-in ones of dialect_name).
    wire: Dialect | None = None
    framing: Framing | None = None

    async def __call__(self, operation: Operation, **changes: Any) -> Result:
        dialect = self.wire or get_dialect(self.dialect_name)
        settings = self.settings if not changes else _with(self.settings, **changes)
        terminal = Terminal(Profile(family=dialect.family, tid=self.tid, wire=dialect.profile), self.journal.load(),
                            response_timeout_seconds=self.timeout, settings=settings)
        return await run_operation(operation, terminal=terminal, journal=self.journal,
                                   endpoint=Endpoint(host="127.0.0.1", port=self.port, connect_timeout_seconds=1.0),
                                   framing=self.framing or DEFAULT_FRAMING[self.dialect_name], dialect=dialect)

    @property
    def books(self) -> Books:
        return self.journal.load()


def _with(settings: TerminalSettings, **changes: Any) -> TerminalSettings:
    from dataclasses import replace
    return replace(settings, **changes)


def fault(server: HostServer, when: dict[str, Any], action: dict[str, Any], **extra: Any) -> Fault:
    """Activate one host fault (``When`` selector + action), as the control API would."""
    return server.faults.add(Fault.from_dict({"when": when, "action": action, **extra}))


def host_open(ledger: Ledger, tid: str = TID) -> list[tuple[str, str, int]]:
    """The host's standing records of the open batch: (STAN, kind, amount)."""
    return sorted((r["stan"], r["kind"], r["amount_minor"]) for r in ledger.open_records(tid))


def terminal_open(books: Books) -> list[tuple[str, str, int]]:
    """The terminal's counting records of the open batch: (STAN, kind, amount)."""
    return sorted((r.stan, r.kind, r.amount_minor) for r in books.records if r.counts)


def assert_books_agree(books: Books, ledger: Ledger, tid: str = TID) -> None:
    """G1/G2 on the open batch: the terminal's journal and the host's ledger hold the same
    standing records (no orphan approval, no orphan journal entry), nothing owed either way."""
    assert terminal_open(books) == host_open(ledger, tid)
    assert books.reversals == [], f"reversals still pending: {books.reversals}"
    assert books.advices == [], f"advices still queued: {books.advices}"
    assert books.open_batch_totals() == ledger.open_batch_totals(tid)


async def cli(port: int, journal: Path, *args: str, dialect: str = "intl-bcd", timeout: float = 0.5,
              expect: int | None = 0) -> tuple[int, dict[str, Any] | None, str]:
    """Run ``python -m emulator.cli`` as a child process while this event loop keeps serving the
    in-process host; returns (exit code, the JSON line or None, stderr).  The first command on a
    journal that does not exist yet creates it (``--new-journal``)."""
    import json
    create = [] if os.path.exists(journal) else ["--new-journal"]  # noqa: ASYNC240 (one stat, local disk)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emulator.cli", "--port", str(port), "--dialect", dialect, "--journal", str(journal),
        *create,
        "--timeout", str(timeout), "--json", "--set", "backoff_initial_seconds=0.01", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    code = process.returncode
    assert code is not None
    text = out.decode().strip()
    if expect is not None:
        assert code == expect, f"exit {code}, expecting {expect}: {text} {err.decode()[-2000:]}"
    return code, json.loads(text.splitlines()[-1]) if text else None, err.decode()

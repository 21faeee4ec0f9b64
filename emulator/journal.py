"""The terminal's durable state in SQLite: counters, sign-on state and the open batch's journal.

WAL with ``synchronous=FULL``: when a method returns, the change is on disk, so a power cut after
it cannot undo it.  Each method is one transaction; a row is never half-written.  A second
invocation of ``pos-terminal`` with the same file continues where the first stopped.

Like a real terminal, the journal keeps the PAN (batch upload needs it); everything that shows
the journal to a person masks it.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import asdict, fields
from typing import Any, Iterator

from emulator.terminal import (Action, AppendJournal, Books, CloseBatch, JournalRecord, SaveCounters,
                               SaveSignOn)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    invoice TEXT NOT NULL,
    stan TEXT NOT NULL,
    batch TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    pan TEXT NOT NULL,
    expiry TEXT NOT NULL,
    rrn TEXT NOT NULL,
    auth_code TEXT NOT NULL,
    local_date TEXT NOT NULL,
    local_time TEXT NOT NULL,
    settlement_date TEXT,
    settled INTEGER NOT NULL DEFAULT 0
);
"""

_RECORD_COLUMNS = [f.name for f in fields(JournalRecord)]


class Journal:
    """SQLite journal file (``":memory:"`` for tests)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def load(self) -> Books:
        """The books as the terminal core needs them."""
        counters = {r["name"]: r["value"] for r in self._db.execute("SELECT name, value FROM counters")}
        rows = self._db.execute(f"SELECT {', '.join(_RECORD_COLUMNS)} FROM journal WHERE settled = 0 ORDER BY id")
        return Books(stan=counters.get("stan", 0), invoice=counters.get("invoice", 0), batch=counters.get("batch", 1),
                     signed_on=bool(counters.get("signed_on", 0)),
                     records=[JournalRecord(**dict(r)) for r in rows])

    def apply(self, action: Action) -> None:
        """Perform one durable action of the terminal core; other actions are not ours."""
        match action:
            case SaveCounters(stan=stan, invoice=invoice, batch=batch):
                self._set_counters(stan=stan, invoice=invoice, batch=batch)
            case SaveSignOn(signed_on=signed_on):
                self._set_counters(signed_on=int(signed_on))
            case AppendJournal(record=record):
                with self._transaction() as db:
                    db.execute(f"INSERT INTO journal ({', '.join(_RECORD_COLUMNS)}) VALUES "
                               f"({', '.join(':' + c for c in _RECORD_COLUMNS)})", asdict(record))
            case CloseBatch(batch=batch):
                with self._transaction() as db:
                    db.execute("UPDATE journal SET settled = 1 WHERE batch = ? AND settled = 0", (batch,))

    def _set_counters(self, **values: int) -> None:
        with self._transaction() as db:
            db.executemany("INSERT INTO counters (name, value) VALUES (?, ?) "
                           "ON CONFLICT(name) DO UPDATE SET value = excluded.value", values.items())

    def records(self, *, include_settled: bool = False) -> list[dict[str, Any]]:
        """Journal rows (PAN in clear: mask before showing)."""
        sql = "SELECT * FROM journal" + ("" if include_settled else " WHERE settled = 0") + " ORDER BY id"
        return [dict(r) for r in self._db.execute(sql)]

"""The host's books in SQLite: every request received, and every settlement.

* ``authorizations``: one row per request (network management included), with its fate:
  ``approved``, ``declined``, later ``reversed``/``voided``; the batch it was settled in.
* ``settlements``: one row per settlement request: the terminal's totals, the host's totals, the
  result (``balanced``/``unbalanced``).

A file ledger uses WAL and ``synchronous=FULL``; every write is one transaction, so a row is either
fully there or not there at all, and a restarted host with the same file continues the same books.
``":memory:"`` gives a throw-away ledger for tests.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from specs.totals import SETTLEMENT_CLASS, Totals, totals_of

_SCHEMA = """
CREATE TABLE IF NOT EXISTS authorizations (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    mti TEXT NOT NULL,
    kind TEXT NOT NULL,
    tid TEXT NOT NULL,
    mid TEXT NOT NULL,
    stan TEXT NOT NULL,
    processing_code TEXT,
    amount_minor INTEGER,
    pan_masked TEXT,
    rrn TEXT,
    auth_code TEXT,
    rc TEXT NOT NULL,
    status TEXT NOT NULL,
    batch TEXT,
    settlement_date TEXT,
    settled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS authorizations_open ON authorizations (tid, settled, status);
CREATE TABLE IF NOT EXISTS settlements (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    tid TEXT NOT NULL,
    mid TEXT NOT NULL,
    batch TEXT NOT NULL,
    processing_code TEXT,
    terminal_totals TEXT NOT NULL,
    host_totals TEXT NOT NULL,
    result TEXT NOT NULL,
    rc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class Authorization:
    """One request as the host saw it (card data masked before it reaches the ledger)."""

    received_at: str
    mti: str
    kind: str
    tid: str
    mid: str
    stan: str
    processing_code: str | None
    amount_minor: int | None
    pan_masked: str | None
    rrn: str | None
    auth_code: str | None
    rc: str
    status: str
    batch: str | None
    settlement_date: str | None


class Ledger:
    """SQLite-backed books.  Not thread-safe: one host event loop owns it."""

    def __init__(self, path: str = ":memory:") -> None:
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

    def next_sequence(self, name: str) -> int:
        """Monotonic counter (RRNs, auth codes) that survives restarts."""
        with self._transaction() as db:
            db.execute("INSERT INTO sequences (name, value) VALUES (?, 1) "
                       "ON CONFLICT(name) DO UPDATE SET value = value + 1", (name,))
            return int(db.execute("SELECT value FROM sequences WHERE name = ?", (name,)).fetchone()[0])

    def record(self, auth: Authorization) -> int:
        """Append one request and its fate; returns the row id."""
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO authorizations (received_at, mti, kind, tid, mid, stan, processing_code, amount_minor,"
                " pan_masked, rrn, auth_code, rc, status, batch, settlement_date)"
                " VALUES (:received_at, :mti, :kind, :tid, :mid, :stan, :processing_code, :amount_minor,"
                " :pan_masked, :rrn, :auth_code, :rc, :status, :batch, :settlement_date)", asdict(auth))
            return int(cur.lastrowid or 0)

    def open_batch_totals(self, tid: str) -> Totals:
        """Totals of the terminal's approved, unsettled financial records (the host's open batch)."""
        rows = self._db.execute(
            "SELECT kind, amount_minor FROM authorizations WHERE tid = ? AND settled = 0 AND status = 'approved'"
            f" AND kind IN ({', '.join('?' * len(SETTLEMENT_CLASS))})", (tid, *SETTLEMENT_CLASS)).fetchall()
        return totals_of((r["kind"], r["amount_minor"] or 0) for r in rows)

    def record_settlement(self, *, at: str, tid: str, mid: str, batch: str, processing_code: str | None,
                          terminal: Totals, host: Totals, result: str, rc: str, close_batch: bool) -> None:
        """Record one settlement request; when ``close_batch``, mark the open batch settled, atomically."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO settlements (at, tid, mid, batch, processing_code, terminal_totals, host_totals, result, rc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (at, tid, mid, batch, processing_code, json.dumps(asdict(terminal)), json.dumps(asdict(host)), result, rc))
            if close_batch:
                db.execute("UPDATE authorizations SET settled = 1, batch = ? WHERE tid = ? AND settled = 0"
                           " AND status = 'approved'", (batch, tid))

    def authorizations(self, **filters: Any) -> list[dict[str, Any]]:
        """Rows of the authorization ledger, oldest first, filtered by equality on any column."""
        return self._select("authorizations", filters)

    def settlements(self, **filters: Any) -> list[dict[str, Any]]:
        """Rows of the settlement ledger, oldest first; totals decoded from JSON."""
        rows = self._select("settlements", filters)
        for row in rows:
            row["terminal_totals"] = json.loads(row["terminal_totals"])
            row["host_totals"] = json.loads(row["host_totals"])
        return rows

    def _select(self, table: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        columns = {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}
        unknown = sorted(set(filters) - columns)
        if unknown:
            raise ValueError(f"Unknown {table} filter {unknown[0]!r}, expecting one of {', '.join(sorted(columns))}")
        where = " AND ".join(f"{k} = ?" for k in filters)
        sql = f"SELECT * FROM {table}" + (f" WHERE {where}" if where else "") + " ORDER BY id"
        return [dict(r) for r in self._db.execute(sql, tuple(filters.values()))]

    def set_status(self, row_id: int, status: str) -> None:
        """Change one authorization's status (reversal, void; tests altering the books)."""
        with self._transaction() as db:
            db.execute("UPDATE authorizations SET status = ? WHERE id = ?", (status, row_id))

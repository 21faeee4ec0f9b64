"""The host's books in SQLite: authorizations, settlements and uploads, payouts, tombstones, registry.

Tables (docs/domain.md#funding-and-payout-ledger):

``authorizations``
    One row per request received (network management, settlement and uploads included) and its
    fate.  ``status``: ``approved`` (posted and standing), ``declined`` (not posted), ``reversed``,
    ``voided``, ``refunded`` (fully refunded; still counts in its batch), ``completed`` (a
    pre-auth consumed by its completion), ``repeat`` (an advice repeat answered 00, not posted
    again).  ``reason`` says why (``duplicate``, ``limit``, ``fault:<id>`` ...).  ``batch`` is the
    host's batch the record belongs to; ``settled`` is 1 once that batch closed.
``tombstones``
    Reversals whose original the host never saw, keyed TID + STAN + local date (field 13): an
    original arriving later is never posted.
``settlements``
    One row per terminal batch being settled: the terminal's totals, the host's totals, the
    totals rebuilt from the batch upload, the result (``balanced``, ``unbalanced`` while waiting for
    the upload, ``uploaded``, ``upload_mismatch``), when it closed, and ``posted_from_upload``: how
    many uploaded records the host did not have and posted from the upload (C13).
``uploads``
    Batch-upload rows (0320) per settlement, plus the host's verdict per record: ``matched``,
    ``amount_differs``, ``terminal_only`` (uploaded, unknown to the host) or ``host_only`` (on the
    host's books, not uploaded).
``payouts``
    Funds owed to the merchant per closed batch: gross, fee, net (also as ``amount_minor``, the
    money the merchant receives), value date, status (``pending`` until the value date, ``paid``,
    ``held``, ``failed``) with hold and failure reasons.

A file ledger uses WAL and ``synchronous=FULL``.  :meth:`Ledger.transaction` nests: the host core
wraps everything one request changes (its row, the original it reverses, card balance, batch
close, payout) in one transaction, so a request is either fully on the books or not at all, and a
restarted host with the same file continues the same books.  ``":memory:"`` gives throw-away books.

Group commit (:attr:`Ledger.group_commits`, turned on by the TCP server): each request's
transaction (:meth:`Ledger.request_transaction`) is a savepoint inside one open transaction that
the server commits once for all the requests decided in the same turn of its event loop
(:meth:`Ledger.commit_pending`), and no answer leaves before the commit that holds its writes.  A
request that fails rolls back to its savepoint only.  So the books stay as durable as with one
commit per request (``synchronous=FULL``: every answer's writes are on disk before the answer), at
one fsync per group of concurrent requests instead of one per request.  Any other transaction (the
control API, a rejected request) commits the open group first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from host_stub.validation import ConfigError
from specs.crypto import decrypt_key, encrypt_key
from specs.storage import open_books
from specs.totals import SETTLEMENT_CLASS, Totals, totals_of

#: Statuses of records that count in their batch's totals.
STANDING = ("approved", "refunded")
#: Kinds that are financial transactions (everything else is network management or settlement).
FINANCIAL_KINDS = ("balance", "sale", "void", "refund", "preauth", "preauth_void", "completion",
                   "completion_void", "offline_sale", "adjust", "reversal")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS authorizations (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    business_date TEXT NOT NULL,
    mti TEXT NOT NULL,
    kind TEXT NOT NULL,
    tid TEXT NOT NULL,
    mid TEXT NOT NULL,
    stan TEXT NOT NULL,
    processing_code TEXT,
    amount_minor INTEGER,
    currency TEXT,
    pan_masked TEXT,
    pan_token TEXT,
    local_date TEXT,
    local_time TEXT,
    rrn TEXT,
    auth_code TEXT,
    rc TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    batch TEXT,
    terminal_batch TEXT,
    settled INTEGER NOT NULL DEFAULT 0,
    settlement_date TEXT,
    original_id INTEGER,
    refunded_minor INTEGER NOT NULL DEFAULT 0,
    reversal_reason TEXT,
    faults TEXT
);
CREATE INDEX IF NOT EXISTS authorizations_open ON authorizations (tid, settled, status);
CREATE INDEX IF NOT EXISTS authorizations_rrn ON authorizations (tid, rrn);
CREATE INDEX IF NOT EXISTS authorizations_stan ON authorizations (tid, stan);
CREATE INDEX IF NOT EXISTS authorizations_card_day ON authorizations (pan_token, business_date);
CREATE INDEX IF NOT EXISTS authorizations_merchant_day ON authorizations (mid, business_date);
CREATE INDEX IF NOT EXISTS authorizations_terminal_day ON authorizations (tid, business_date);
CREATE TABLE IF NOT EXISTS tombstones (
    id INTEGER PRIMARY KEY,
    tid TEXT NOT NULL,
    stan TEXT NOT NULL,
    local_date TEXT NOT NULL,
    processing_code TEXT,
    amount_minor INTEGER,
    created_at TEXT NOT NULL,
    reversal_id INTEGER,
    UNIQUE (tid, stan, local_date)
);
CREATE TABLE IF NOT EXISTS settlements (
    id INTEGER PRIMARY KEY,
    tid TEXT NOT NULL,
    mid TEXT NOT NULL,
    batch TEXT NOT NULL,
    family TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    closed_at TEXT,
    business_date TEXT,
    terminal_totals TEXT NOT NULL,
    host_totals TEXT NOT NULL,
    uploaded_totals TEXT,
    rc TEXT NOT NULL,
    request_key TEXT,
    response_48 TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    upload_count INTEGER NOT NULL DEFAULT 0,
    end_count INTEGER,
    exceptions TEXT NOT NULL DEFAULT '{}',
    posted_from_upload INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS settlements_batch ON settlements (tid, batch);
CREATE TABLE IF NOT EXISTS uploads (
    id INTEGER PRIMARY KEY,
    settlement_id INTEGER,
    tid TEXT NOT NULL,
    batch TEXT NOT NULL,
    original_mti TEXT,
    original_stan TEXT NOT NULL,
    upload_stan TEXT,
    processing_code TEXT,
    kind TEXT,
    amount_minor INTEGER,
    pan_masked TEXT,
    pan_token TEXT,
    rrn TEXT,
    auth_code TEXT,
    invoice TEXT,
    match TEXT NOT NULL DEFAULT 'pending',
    host_record_id INTEGER,
    host_amount_minor INTEGER,
    repeats INTEGER NOT NULL DEFAULT 0,
    received_at TEXT NOT NULL,
    UNIQUE (tid, batch, original_stan)
);
CREATE TABLE IF NOT EXISTS payouts (
    id INTEGER PRIMARY KEY,
    mid TEXT NOT NULL,
    tid TEXT NOT NULL,
    batch TEXT NOT NULL,
    settlement_id INTEGER NOT NULL,
    business_date TEXT NOT NULL,
    value_date TEXT NOT NULL,
    gross_minor INTEGER NOT NULL,
    fee_minor INTEGER NOT NULL,
    net_minor INTEGER NOT NULL,
    amount_minor INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    hold_reason TEXT,
    failure_reason TEXT,
    delay_days INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    paid_at TEXT,
    released_at TEXT
);
CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS merchants (key TEXT PRIMARY KEY, document TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS terminals (key TEXT PRIMARY KEY, document TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cards (key TEXT PRIMARY KEY, document TEXT NOT NULL);
"""

_BOOK_TABLES = ("authorizations", "tombstones", "settlements", "uploads", "payouts", "sequences")
_REGISTRY_TABLES = ("merchants", "terminals", "cards")
#: Columns holding a JSON document (decoded when read): not filterable, listed as objects.
JSON_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "settlements": ("terminal_totals", "host_totals", "uploaded_totals", "exceptions")}


def _schema_columns() -> dict[str, dict[str, str]]:
    """Column -> declared SQLite type of every table, read from :data:`_SCHEMA` itself."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(_SCHEMA)
        return {table: {r[1]: r[2] for r in db.execute(f"PRAGMA table_info({table})")}
                for table in (*_BOOK_TABLES, *_REGISTRY_TABLES)}
    finally:
        db.close()


#: Column -> declared SQLite type (``TEXT``, ``INTEGER``) of each table, as :data:`_SCHEMA` has them.
COLUMNS: Mapping[str, Mapping[str, str]] = _schema_columns()

#: Filters holding a 6-digit number (field 11, the batch number): an all-digit value shorter than
#: 6 is zero-padded, so ``batch=1`` finds batch ``000001``.
SIX_DIGIT_FILTERS = frozenset({"stan", "batch", "terminal_batch"})

#: The filters of each ledger listing (``GET /ledger/<table>``, :meth:`Ledger.authorizations` ...):
#: filter -> JSON type of its value (``string`` or ``integer``).  Equality on any column but the
#: JSON documents; on settlements and payouts ``stan`` selects batches (see :data:`FILTER_NOTES`).
#: Each filter is given at most once; filters combine with AND.  The OpenAPI document is built
#: from this table.
LEDGER_FILTERS: Mapping[str, Mapping[str, str]] = {
    table: {**{column: "integer" if kind == "INTEGER" else "string" for column, kind in COLUMNS[table].items()
               if column not in JSON_COLUMNS.get(table, ())},
            **({"stan": "string"} if table != "authorizations" else {})}
    for table in ("authorizations", "settlements", "payouts")}

#: What a filter means beyond equality on its column, by (table or ``*``, filter).
FILTER_NOTES: Mapping[tuple[str, str], str] = {
    ("*", "batch"): "batch number; 1 to 6 digits, zero-padded (1 -> 000001)",
    ("*", "terminal_batch"): "the terminal's batch number; 1 to 6 digits, zero-padded",
    ("authorizations", "stan"): "field 11; 1 to 6 digits, zero-padded (2 -> 000002)",
    ("settlements", "stan"): "batches holding this STAN: a transaction of the batch (whatever its fate), its "
                             "0500, a 0320 or an uploaded record; 1 to 6 digits, zero-padded",
    ("payouts", "stan"): "payouts of batches holding this STAN: a transaction of the batch (whatever its "
                         "fate), its 0500, a 0320 or an uploaded record; 1 to 6 digits, zero-padded",
}

#: Request kinds that belong to a batch (a STAN of one of them finds the batch): transactions,
#: the settlement (0500) and the batch upload (0320); not network management.
_BATCH_KINDS = (*FINANCIAL_KINDS, "settlement", "upload")
_HOLDS_STAN = (
    "(EXISTS (SELECT 1 FROM authorizations a WHERE a.tid = {table}.tid AND a.batch = {table}.batch AND a.stan = ?"
    f" AND a.kind IN ({', '.join(repr(k) for k in _BATCH_KINDS)}))"
    " OR EXISTS (SELECT 1 FROM uploads u WHERE u.tid = {table}.tid AND u.batch = {table}.batch"
    " AND u.original_stan = ?))")


def ledger_filters(table: str, pairs: Iterable[tuple[str, Any]], *, where: str = "query") -> dict[str, Any]:
    """Check and normalise the filters of one ledger listing (see :data:`LEDGER_FILTERS`).

    Args:
        table: ``authorizations``, ``settlements`` or ``payouts``.
        pairs: (filter, value) pairs, as a query string gives them (a key may repeat there).
        where: where the filters come from, for errors.

    Returns:
        filter -> value: STAN and batch numbers zero-padded to 6 digits, integers as ``int``.

    Raises:
        ConfigError: an unknown filter (the error lists the known ones), a filter given twice, or
            a value of the wrong form; the error names the filter.

    >>> ledger_filters("authorizations", [("batch", "1"), ("stan", 12), ("amount_minor", "100")])
    {'batch': '000001', 'stan': '000012', 'amount_minor': 100}
    >>> ledger_filters("settlements", [("tid", "A"), ("tid", "B")])
    Traceback (most recent call last):
    ...
    host_stub.validation.ConfigError: Filter 'tid' is given 2 times, expecting it once (...): query.tid
    """
    allowed = LEDGER_FILTERS[table]
    pairs = list(pairs)
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key not in allowed:
            raise ConfigError(f"Unknown {table} filter {key!r}, expecting one of {', '.join(sorted(allowed))}",
                              key=key, where=where)
        if key in out:
            times = sum(1 for k, _ in pairs if k == key)
            raise ConfigError(f"Filter {key!r} is given {times} times, expecting it once (filters combine with AND)",
                              key=key, where=where)
        out[key] = _filter_value(key, allowed[key], value, where=where)
    return out


def _filter_value(key: str, kind: str, value: Any, *, where: str) -> Any:
    number = isinstance(value, int) and not isinstance(value, bool)
    if key in SIX_DIGIT_FILTERS:
        text = f"{value:06d}" if number and value >= 0 else str(value)
        if not re.fullmatch(r"[0-9]{1,6}", text):
            raise ConfigError(f"Filter {key!r} holds {text!r}, expecting 1 to 6 digits (zero-padded: 2 -> 000002)",
                              key=key, where=where)
        return text.zfill(6)
    if kind == "integer":
        text = str(value)
        if not (number or re.fullmatch(r"-?[0-9]+", text)):
            raise ConfigError(f"Filter {key!r} holds {text!r}, expecting an integer", key=key, where=where)
        return int(text)
    return str(value)


def _upgrade(db: sqlite3.Connection) -> None:
    """Books written by an older version: add the newer columns, rename old payout statuses."""
    for table, column, definition in (("settlements", "posted_from_upload", "INTEGER NOT NULL DEFAULT 0"),
                                      ("payouts", "amount_minor", "INTEGER NOT NULL DEFAULT 0")):
        have = {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            if column == "amount_minor":
                db.execute("UPDATE payouts SET amount_minor = net_minor")
    db.execute("UPDATE payouts SET status = 'pending' WHERE status = 'scheduled'")


#: Prefix of a key stored encrypted under the installation's storage key.
SEALED = "sealed:"


def _storage_key(key_file: str | None) -> bytes:
    """The installation's storage key (double-length 3DES): read from ``key_file``, made there
    (mode 0600) on first use; a random one for books without a file."""
    if key_file is None:
        return secrets.token_bytes(16)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        text = Path(key_file).read_text(encoding="ascii").strip()
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != 16:
            raise ValueError(f"key file {key_file} holds {len(text)} characters, expecting 32 hex digits "
                             "(the storage key this ledger's keys are encrypted under)") from None
        return key
    key = secrets.token_bytes(16)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.hex().upper() + "\n")
    return key


class Ledger:
    """SQLite-backed books.  Not thread-safe: one host event loop owns it."""

    def __init__(self, path: str = ":memory:", *, key_file: str | None = None) -> None:
        self.path = path
        #: Where the installation's storage key lives (None: in this process only, for ":memory:").
        self.key_file = key_file or (None if path == ":memory:" else f"{path}.key")
        self._db = open_books(path, _SCHEMA, _upgrade)
        self._depth = 0
        #: Request transactions are savepoints of a group the server commits (see the module doc).
        self.group_commits = False
        self._pending = False
        #: Registry entries already read, by (kind, key); owned by :class:`host_stub.registry.Registry`
        #: and emptied whenever a transaction rolls back or the books are reset, so it never holds a
        #: change the file does not.
        self.registry_cache: dict[tuple[str, str], Any] = {}
        self._insert_sql: dict[tuple[str, ...], str] = {}
        self._next_id: int | None = None  # the next authorization id to hand out (None: read MAX(id) first)
        self._columns: dict[str, frozenset[str]] = {
            table: frozenset(r["name"] for r in self._db.execute(f"PRAGMA table_info({table})"))
            for table in (*_BOOK_TABLES, *_REGISTRY_TABLES)}
        self._card_key = bytes.fromhex(self._secret("card_key"))
        self._storage_key = _storage_key(self.key_file)

    def seal_key(self, key_hex: str | None) -> str | None:
        """A key (TMK, working key) as these books store it: encrypted under the installation's
        storage key, which lives outside the ledger (:attr:`key_file`), so the ledger file alone
        holds no clear key."""
        if key_hex is None or key_hex.startswith(SEALED):
            return key_hex
        return SEALED + encrypt_key(self._storage_key, bytes.fromhex(key_hex)).hex().upper()

    def open_key(self, stored: str | None) -> str | None:
        """The clear key (hex) of :meth:`seal_key`; a value written before keys were sealed is clear."""
        if stored is None or not stored.startswith(SEALED):
            return stored
        return decrypt_key(self._storage_key, bytes.fromhex(stored[len(SEALED):])).hex().upper()

    def _secret(self, name: str) -> str:
        """A random secret of these books, made on first use and kept (also across a reset)."""
        with self.transaction() as db:
            db.execute("INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
                       (name, secrets.token_hex(32)))
            return str(db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()[0])

    def pan_token(self, pan: str) -> str:
        """The key a card is known by in these books (``pan_token`` columns, the card registry): an
        HMAC-SHA256 of the PAN under this ledger's own secret, so it cannot be turned back into the
        PAN (not even by trying every PAN that matches the 6+4 mask) without the ledger's secret,
        and two ledgers give the same card different tokens."""
        return hmac.new(self._card_key, b"pan:" + pan.encode("ascii"), hashlib.sha256).hexdigest()[:32]

    def pin_verifier(self, pan: str, pin: str) -> str:
        """What these books keep instead of a card's PIN: an HMAC-SHA256 of PAN and PIN under the
        ledger's secret (a PIN verification value; the PIN itself is never stored)."""
        return hmac.new(self._card_key, f"pin:{pan}:{pin}".encode("ascii"), hashlib.sha256).hexdigest()[:32]

    def close(self) -> None:
        self.commit_pending()
        self._db.close()

    # ------------------------------------------------------------------ transactions

    def transaction(self) -> _Transaction:
        """One atomic unit of writes, committed at its end; nested uses join the outermost one."""
        return _Transaction(self, grouped=False)

    def request_transaction(self) -> _Transaction:
        """The transaction of one request: a savepoint of the open group when :attr:`group_commits`
        is on (committed by :meth:`commit_pending`), else like :meth:`transaction`."""
        return _Transaction(self, grouped=self.group_commits)

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @property
    def pending_commit(self) -> bool:
        """Request writes are in the open group, not committed yet."""
        return self._pending

    def commit_pending(self) -> None:
        """Commit the open group of request transactions (nothing when none is open).

        Raises:
            sqlite3.Error: the commit failed; the whole group is rolled back.
        """
        if not self._pending:
            return
        self._pending = False
        try:
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._forget_rolled_back()
            raise

    def reset(self, *, registry: bool = True) -> None:
        """Empty the books (and the registry unless told otherwise), atomically."""
        with self.transaction() as db:
            for table in (*_BOOK_TABLES, *(_REGISTRY_TABLES if registry else ())):
                db.execute(f"DELETE FROM {table}")
        self._forget_rolled_back()

    def _forget_rolled_back(self) -> None:
        """Writes were rolled back (or the books emptied): drop what was cached of them."""
        self.registry_cache.clear()
        self._next_id = None

    def reserve_authorization_id(self) -> int:
        """The id of an authorization row about to be written (the host makes its RRN from it: one
        statement per approval fewer than a separate counter).

        Ids are handed out in order by this ledger, which alone writes the table; rows written by
        :meth:`insert_authorization` without an ``id`` take the next one too.  After a rollback the
        next id is read from the table again, so an id drawn by a rolled-back request (whose answer
        carried no RRN) is handed out again; a committed one never is, also after a restart.
        """
        if self._next_id is None:
            self._next_id = int(self._db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM authorizations").fetchone()[0])
        row_id = self._next_id
        self._next_id += 1
        return row_id

    # ------------------------------------------------------------------ authorizations

    def insert_authorization(self, row: Mapping[str, Any]) -> int:
        """Append one request and its fate; returns the row id (``row["id"]`` when reserved, see
        :meth:`reserve_authorization_id`)."""
        if "id" not in row:
            row = {**row, "id": self.reserve_authorization_id()}
        names = tuple(row)
        sql = self._insert_sql.get(names)
        if sql is None:  # every request inserts one row, mostly with the same columns: build the SQL once
            self._check_columns("authorizations", row)
            sql = self._insert_sql[names] = (f"INSERT INTO authorizations ({', '.join(names)}) VALUES "
                                             f"({', '.join(':' + n for n in names)})")
        with self.transaction() as db:
            return int(db.execute(sql, row).lastrowid or 0)

    def update_authorization(self, row_id: int, **changes: Any) -> None:
        self._check_columns("authorizations", changes)
        with self.transaction() as db:
            db.execute(f"UPDATE authorizations SET {', '.join(f'{k} = :{k}' for k in changes)} WHERE id = :id",
                       {**changes, "id": row_id})

    def set_status(self, row_id: int, status: str) -> None:
        """Change one authorization's status (tests altering the books)."""
        self.update_authorization(row_id, status=status)

    def authorization(self, row_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM authorizations WHERE id = ?", (row_id,)).fetchone()
        return dict(row) if row else None

    def replay_of(self, *, tid: str, stan: str, local_date: str | None) -> str | None:
        """Why a financial request (0100/0200) must not be posted: ``"duplicate"`` (the same TID, STAN
        and 13 already on the books, whatever its amount: a terminal never reuses a STAN within a
        day, so a second request under it is a re-send or a forgery), ``"tombstone"`` (its reversal
        came first), or None.

        One query for both, because every financial request asks.
        """
        row = self._db.execute(
            "SELECT 'duplicate' FROM authorizations WHERE tid = ? AND stan = ? AND mti IN ('0100', '0200')"
            " AND local_date IS ? AND kind != 'malformed'"
            " UNION ALL SELECT 'tombstone' FROM tombstones WHERE tid = ? AND stan = ? AND local_date = ? LIMIT 1",
            (tid, stan, local_date, tid, stan, local_date or "")).fetchone()
        return row[0] if row else None

    def find_request(self, *, tid: str, stan: str) -> dict[str, Any] | None:
        """The newest unsettled financial request (0100/0200 or an advice) with this TID and STAN."""
        row = self._db.execute(
            "SELECT * FROM authorizations WHERE tid = ? AND stan = ? AND settled = 0"
            " AND mti IN ('0100', '0200', '0220', '0221', '0120', '0121') AND kind != 'malformed'"
            " ORDER BY id DESC LIMIT 1", (tid, stan)).fetchone()
        return dict(row) if row else None

    def find_posted_advice(self, *, tid: str, stan: str, processing_code: str | None,
                           amount_minor: int | None) -> dict[str, Any] | None:
        """An advice (0220/0221, 0120/0121) already posted with the same TID, STAN, 3 and amount."""
        row = self._db.execute(
            "SELECT * FROM authorizations WHERE tid = ? AND stan = ? AND mti IN ('0220', '0221', '0120', '0121')"
            " AND processing_code IS ? AND amount_minor IS ? AND status NOT IN ('declined', 'repeat', 'dropped')"
            " ORDER BY id DESC LIMIT 1", (tid, stan, processing_code, amount_minor)).fetchone()
        return dict(row) if row else None

    def find_reversal_original(self, *, tid: str, stan: str, processing_code: str | None,
                               amount_minor: int | None) -> dict[str, Any] | None:
        """The request a reversal names: TID + STAN + 3 + amount among the terminal's unsettled requests."""
        row = self._db.execute(
            "SELECT * FROM authorizations WHERE tid = ? AND stan = ? AND settled = 0 AND mti IN ('0100', '0200')"
            " AND processing_code IS ? AND amount_minor IS ? AND kind != 'reversal'"
            # the posted original first (not a later duplicate the host declined with 94), then a reversed one
            " ORDER BY CASE WHEN status IN ('approved', 'refunded') THEN 0 WHEN status = 'reversed' THEN 1 ELSE 2 END,"
            " id DESC LIMIT 1",
            (tid, stan, processing_code, amount_minor)).fetchone()
        return dict(row) if row else None

    def find_by_rrn(self, *, tid: str, rrn: str, kinds: Iterable[str]) -> dict[str, Any] | None:
        """The newest approved-at-some-point record of one of ``kinds`` with this TID and RRN."""
        kinds = tuple(kinds)
        row = self._db.execute(
            f"SELECT * FROM authorizations WHERE tid = ? AND rrn = ? AND kind IN ({', '.join('?' * len(kinds))})"
            " AND status != 'declined' ORDER BY id DESC LIMIT 1", (tid, rrn, *kinds)).fetchone()
        return dict(row) if row else None

    def daily_usage(self, *, column: str, value: str, business_date: str, kinds: Iterable[str]) -> tuple[int, int]:
        """(count, amount) of standing records of ``kinds`` for one merchant/terminal/card on one business date."""
        if column not in ("mid", "tid", "pan_token"):
            raise ValueError(f"Daily usage by {column!r}, expecting mid, tid or pan_token")
        kinds = tuple(kinds)
        row = self._db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(amount_minor), 0) FROM authorizations WHERE {column} = ?"
            f" AND business_date = ? AND status IN ('approved', 'refunded')"
            f" AND kind IN ({', '.join('?' * len(kinds))})", (value, business_date, *kinds)).fetchone()
        return int(row[0]), int(row[1])

    def open_records(self, tid: str) -> list[dict[str, Any]]:
        """The terminal's standing, unsettled records that count in settlement totals."""
        rows = self._db.execute(
            "SELECT * FROM authorizations WHERE tid = ? AND settled = 0 AND status IN ('approved', 'refunded')"
            f" AND kind IN ({', '.join('?' * len(SETTLEMENT_CLASS))}) ORDER BY id", (tid, *SETTLEMENT_CLASS))
        return [dict(r) for r in rows]

    def open_batch_totals(self, tid: str) -> Totals:
        """Totals of the terminal's approved, unsettled financial records (the host's open batch)."""
        return totals_of((r["kind"], r["amount_minor"] or 0) for r in self.open_records(tid))

    def settle_open_records(self, *, tid: str, batch: str) -> int:
        """Mark every unsettled financial record of the terminal as belonging to the closed ``batch``."""
        with self.transaction() as db:
            cur = db.execute(
                f"UPDATE authorizations SET settled = 1, batch = ? WHERE tid = ? AND settled = 0"
                f" AND kind IN ({', '.join('?' * len(FINANCIAL_KINDS))})", (batch, tid, *FINANCIAL_KINDS))
            return cur.rowcount

    # ------------------------------------------------------------------ tombstones

    def tombstone(self, *, tid: str, stan: str, local_date: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM tombstones WHERE tid = ? AND stan = ? AND local_date = ?",
                               (tid, stan, local_date)).fetchone()
        return dict(row) if row else None

    def add_tombstone(self, *, tid: str, stan: str, local_date: str, processing_code: str | None,
                      amount_minor: int | None, created_at: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO tombstones (tid, stan, local_date, processing_code, amount_minor,"
                       " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (tid, stan, local_date, processing_code, amount_minor, created_at))

    def tombstones(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db.execute("SELECT * FROM tombstones ORDER BY id")]

    # ------------------------------------------------------------------ settlements and uploads

    def insert_settlement(self, row: Mapping[str, Any]) -> int:
        row = self._json_out("settlements", row)
        names = list(row)
        with self.transaction() as db:
            cur = db.execute(f"INSERT INTO settlements ({', '.join(names)}) VALUES "
                             f"({', '.join(':' + n for n in names)})", row)
            return int(cur.lastrowid or 0)

    def update_settlement(self, settlement_id: int, **changes: Any) -> None:
        changes = self._json_out("settlements", changes)
        with self.transaction() as db:
            db.execute(f"UPDATE settlements SET {', '.join(f'{k} = :{k}' for k in changes)} WHERE id = :id",
                       {**changes, "id": settlement_id})

    def settlement(self, settlement_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM settlements WHERE id = ?", (settlement_id,)).fetchone()
        return self._json_in("settlements", dict(row)) if row else None

    def latest_settlement(self, *, tid: str, batch: str | None = None,
                          status: str | None = None) -> dict[str, Any] | None:
        sql, args = "SELECT * FROM settlements WHERE tid = ?", [tid]
        if batch is not None:
            sql, args = sql + " AND batch = ?", [*args, batch]
        if status is not None:
            sql, args = sql + " AND status = ?", [*args, status]
        row = self._db.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return self._json_in("settlements", dict(row)) if row else None

    def upsert_upload(self, row: Mapping[str, Any]) -> bool:
        """Store one uploaded record; a second upload of the same (TID, batch, original STAN) only
        counts a repeat.  Returns True when the record is new."""
        self._check_columns("uploads", row)
        with self.transaction() as db:
            existing = db.execute("SELECT id FROM uploads WHERE tid = ? AND batch = ? AND original_stan = ?",
                                  (row["tid"], row["batch"], row["original_stan"])).fetchone()
            if existing:
                db.execute("UPDATE uploads SET repeats = repeats + 1 WHERE id = ?", (existing["id"],))
                return False
            names = list(row)
            db.execute(f"INSERT INTO uploads ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})",
                       dict(row))
            return True

    def uploads_of(self, *, tid: str, batch: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db.execute(
            "SELECT * FROM uploads WHERE tid = ? AND batch = ? AND match != 'host_only' ORDER BY id", (tid, batch))]

    def update_upload(self, upload_id: int, **changes: Any) -> None:
        self._check_columns("uploads", changes)
        with self.transaction() as db:
            db.execute(f"UPDATE uploads SET {', '.join(f'{k} = :{k}' for k in changes)} WHERE id = :id",
                       {**changes, "id": upload_id})

    def insert_upload(self, row: Mapping[str, Any]) -> int:
        self._check_columns("uploads", row)
        names = list(row)
        with self.transaction() as db:
            cur = db.execute(f"INSERT INTO uploads ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})",
                             dict(row))
            return int(cur.lastrowid or 0)

    # ------------------------------------------------------------------ payouts

    def insert_payout(self, row: Mapping[str, Any]) -> int:
        self._check_columns("payouts", row)
        names = list(row)
        with self.transaction() as db:
            cur = db.execute(f"INSERT INTO payouts ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})",
                             dict(row))
            return int(cur.lastrowid or 0)

    def update_payout(self, payout_id: int, **changes: Any) -> None:
        self._check_columns("payouts", changes)
        with self.transaction() as db:
            db.execute(f"UPDATE payouts SET {', '.join(f'{k} = :{k}' for k in changes)} WHERE id = :id",
                       {**changes, "id": payout_id})

    def payout(self, payout_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM payouts WHERE id = ?", (payout_id,)).fetchone()
        return dict(row) if row else None

    def pay_due_payouts(self, *, today: str, at: str) -> int:
        """Pending payouts whose value date has come are paid; returns how many."""
        with self.transaction() as db:
            return db.execute("UPDATE payouts SET status = 'paid', paid_at = ? WHERE status = 'pending'"
                              " AND value_date <= ?", (at, today)).rowcount

    # ------------------------------------------------------------------ reading with filters

    def authorizations(self, **filters: Any) -> list[dict[str, Any]]:
        """Rows of the authorization ledger, oldest first, filtered as :func:`ledger_filters` says."""
        return self._select("authorizations", ledger_filters("authorizations", filters.items(), where="filters"))

    def settlements(self, **filters: Any) -> list[dict[str, Any]]:
        """Settlement rows, oldest first, with their ``uploads``; ``stan`` selects the batches holding it."""
        rows = self._select("settlements", ledger_filters("settlements", filters.items(), where="filters"))
        self._attach_uploads(rows)
        return rows

    def payouts(self, **filters: Any) -> list[dict[str, Any]]:
        """Payout rows, oldest first; ``stan`` selects payouts of the batches holding it."""
        return self._select("payouts", ledger_filters("payouts", filters.items(), where="filters"))

    def uploads(self, **filters: Any) -> list[dict[str, Any]]:
        self._check_columns("uploads", filters)
        return self._select("uploads", filters)

    def filter_keys(self, table: str) -> frozenset[str]:
        """Filters a listing of ``table`` takes (:data:`LEDGER_FILTERS`)."""
        return frozenset(LEDGER_FILTERS[table])

    def listing(self, table: str, filters: Mapping[str, Any], *, limit: int,
                offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """One page of a ledger listing (filters already checked by :func:`ledger_filters`, the
        control API): at most ``limit`` rows from ``offset``, oldest first, and how many match."""
        where, args = self._where(table, filters)
        total = int(self._db.execute(f"SELECT COUNT(*) FROM {table}{where}", args).fetchone()[0])
        rows = [self._json_in(table, dict(r)) for r in self._db.execute(
            f"SELECT * FROM {table}{where} ORDER BY id LIMIT ? OFFSET ?", [*args, limit, offset])]
        if table == "settlements":
            self._attach_uploads(rows)
        return rows, total

    def _attach_uploads(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            row["uploads"] = [dict(r) for r in self._db.execute(
                "SELECT * FROM uploads WHERE settlement_id = ? ORDER BY id", (row["id"],))]

    def _select(self, table: str, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Rows of ``table`` equal to every filter (names checked by the caller); ``stan`` on a batch table
        selects the batches holding it."""
        where, args = self._where(table, filters)
        return [self._json_in(table, dict(r)) for r in self._db.execute(f"SELECT * FROM {table}{where} ORDER BY id",
                                                                        args)]

    def _where(self, table: str, filters: Mapping[str, Any]) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        for key, value in filters.items():
            if key == "stan" and table in ("settlements", "payouts"):
                clauses.append(_HOLDS_STAN.format(table=table))
                args += [value, value]
            else:
                clauses.append(f"{key} = ?")
                args.append(value)
        return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), args

    # ------------------------------------------------------------------ registry documents

    def registry_get(self, kind: str, key: str) -> dict[str, Any] | None:
        row = self._db.execute(f"SELECT document FROM {self._registry_table(kind)} WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def registry_put(self, kind: str, key: str, document: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(f"INSERT INTO {self._registry_table(kind)} (key, document) VALUES (?, ?)"
                       " ON CONFLICT(key) DO UPDATE SET document = excluded.document", (key, json.dumps(document)))

    def registry_all(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self._db.execute(
            f"SELECT document FROM {self._registry_table(kind)} ORDER BY rowid")]

    def _registry_table(self, kind: str) -> str:
        if kind not in _REGISTRY_TABLES:
            raise ValueError(f"Unknown registry kind {kind!r}, expecting one of {', '.join(_REGISTRY_TABLES)}")
        return kind

    # ------------------------------------------------------------------ helpers

    def _check_columns(self, table: str, row: Mapping[str, Any]) -> None:
        unknown = sorted(set(row) - self._columns[table])
        if unknown:
            raise ValueError(f"Unknown {table} column {unknown[0]!r}")

    def _json_out(self, table: str, row: Mapping[str, Any]) -> dict[str, Any]:
        self._check_columns(table, row)
        out = dict(row)
        for column in JSON_COLUMNS.get(table, ()):
            if column in out and out[column] is not None and not isinstance(out[column], str):
                value = out[column]
                out[column] = json.dumps(asdict(value) if isinstance(value, Totals) else value)
        return out

    def _json_in(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        for column in JSON_COLUMNS.get(table, ()):
            if row.get(column) is not None:
                row[column] = json.loads(row[column])
        return row


class _Transaction:
    """:meth:`Ledger.transaction` / :meth:`Ledger.request_transaction` (a class, not a generator:
    every request enters several, nested)."""

    __slots__ = ("grouped", "ledger")

    def __init__(self, ledger: Ledger, *, grouped: bool) -> None:
        self.ledger = ledger
        self.grouped = grouped

    def __enter__(self) -> sqlite3.Connection:
        ledger = self.ledger
        db = ledger._db
        if ledger._depth:
            ledger._depth += 1
            return db
        if self.grouped:
            if not ledger._pending:
                db.execute("BEGIN IMMEDIATE")
                ledger._pending = True
            db.execute("SAVEPOINT request")
        else:
            ledger.commit_pending()
            db.execute("BEGIN IMMEDIATE")
        ledger._depth = 1
        return db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> Literal[False]:
        ledger = self.ledger
        if ledger._depth > 1:
            ledger._depth -= 1
            return False
        ledger._depth = 0
        db = ledger._db
        if exc_type is None:
            db.execute("RELEASE request" if self.grouped else "COMMIT")
            return False
        if self.grouped:
            db.execute("ROLLBACK TO request")
            db.execute("RELEASE request")
        else:
            db.execute("ROLLBACK")
        ledger._forget_rolled_back()
        return False


def totals_from_dict(data: Mapping[str, Any]) -> Totals:
    return Totals(**{k: int(data[k]) for k in ("debit_count", "debit_minor", "credit_count", "credit_minor")})

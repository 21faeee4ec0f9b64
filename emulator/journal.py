"""The terminal's durable state in SQLite (docs/domain.md#crash-points): counters, sign-on state and working
keys, the journal J, the pending reversals R, the store-and-forward queue Q, the settlement state S
with per-record upload flags, the exception log of parked items, the closed batches with their
totals, and the wire trace.

The journal table keeps one row per approved financial request (voids, refunds and the records of
closed batches included: ``settled`` = 1), each naming its operator; ``receipt_pending`` in
:meth:`Journal.records` is a record whose receipt never printed and was not waived (C29); while an
open-batch record is pending, the terminal refuses new transactions (``reprint`` first).

The ``trace`` table is the terminal's wire trace, oldest first (:meth:`Journal.add_trace`,
:meth:`Journal.trace`): what it sent, what it received and whether it took it as its answer
(``matched``) and verified its MAC (``mac_verified``), timeouts and link events, and the crash
point it died at.  Messages are masked.  Trace rows are diagnostics, not money: they are committed
with ``synchronous=NORMAL`` (in WAL mode they survive a process crash, and only a power cut can take
the last ones), while every money-protecting write stays ``synchronous=FULL``.

WAL with ``synchronous=FULL``: when :meth:`Journal.apply` returns, the change is on disk, so a power
cut after it cannot undo it.  Each durable action of the terminal core is *one* SQLite transaction
(an approval and the deletion of its pending reversal commit together, or not at all); the core's
in-memory mirror, :meth:`emulator.terminal.Books.apply`, performs the same changes, and a test
checks that ``Journal.load()`` equals the core's books after every flow.

Like a real terminal, the journal keeps the full PAN only while its batch is open (batch upload,
voids and adjusts need it) and for approved pre-authorizations not yet completed; when a batch
closes, its records keep the masked PAN (6+4) only, so a refund of an older sale needs the card
again.  No track 2, PIN or PIN block is ever stored (reversals are stored without field 52).  The
working keys are kept only as the host sent them, encrypted under the TMK; everything that shows
the journal to a person masks it.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from emulator.terminal import (
    Action,
    Advice,
    AppendJournal,
    Books,
    CloseBatch,
    ClosedBatch,
    CommitApproval,
    DeleteReversal,
    Edit,
    JournalRecord,
    MarkUploaded,
    ParkAdvice,
    ParkReversal,
    PendingReversal,
    RemoveAdvice,
    SaveAdvice,
    SaveCounters,
    SaveMarkers,
    SaveReversal,
    SaveSettlement,
    SaveSignOn,
    SettlementStage,
    SettlementState,
    UpdateAdvice,
    UpdateJournal,
    UpdateReversal,
    purged,
)
from specs.masking import mask_message
from specs.storage import open_books

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
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
    mti TEXT NOT NULL DEFAULT '0200',
    processing_code TEXT NOT NULL DEFAULT '000000',
    condition TEXT NOT NULL DEFAULT '00',
    status TEXT NOT NULL DEFAULT 'approved',
    original_invoice TEXT,
    tip_minor INTEGER NOT NULL DEFAULT 0,
    offline INTEGER NOT NULL DEFAULT 0,
    uploaded INTEGER NOT NULL DEFAULT 0,
    printed INTEGER NOT NULL DEFAULT 0,
    settled INTEGER NOT NULL DEFAULT 0,
    operator TEXT NOT NULL DEFAULT '',
    receipt_waived INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS reversals (
    seq INTEGER PRIMARY KEY,
    stan TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    refusals INTEGER NOT NULL DEFAULT 0,
    last_rc TEXT
);
CREATE TABLE IF NOT EXISTS saf (
    seq INTEGER PRIMARY KEY,
    stan TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    invoice TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    record TEXT,
    on_accept TEXT NOT NULL,
    on_decline TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    batch TEXT NOT NULL,
    debit_count INTEGER NOT NULL,
    debit_minor INTEGER NOT NULL,
    credit_count INTEGER NOT NULL,
    credit_minor INTEGER NOT NULL,
    result TEXT NOT NULL,
    uploaded INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS trace (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    command TEXT,
    kind TEXT NOT NULL,
    mti TEXT,
    stan TEXT,
    message TEXT,
    matched INTEGER,
    mac_verified INTEGER,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS exceptions (
    id INTEGER PRIMARY KEY,
    what TEXT NOT NULL,
    stan TEXT NOT NULL,
    why TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

def _parked_detail(row: sqlite3.Row | None) -> str:
    """What the exception log keeps of a parked reversal or advice: its row, the message masked (a
    person follows it up; the card number is not needed for that and is not kept in clear)."""
    detail = dict(row) if row else {}
    if detail.get("message"):
        detail["message"] = json.dumps(mask_message(json.loads(detail["message"])))
    return json.dumps(detail)


def damaged_message(path: str, detail: str) -> str:
    """What to tell about a journal SQLite cannot read: it is damaged, and no command repairs it."""
    return (f"--journal {path} is damaged ({detail}): no command can recover it by itself. Keep the file for "
            "inspection, reconcile its open batch with the host's ledger, and start a new journal file (another "
            "--journal path) with signon")


_RECORD_COLUMNS = [f.name for f in fields(JournalRecord)]
_BOOL_COLUMNS = ("offline", "uploaded", "printed", "receipt_waived")


def _record_row(record: JournalRecord) -> dict[str, Any]:
    row = asdict(record)
    for name in _BOOL_COLUMNS:
        row[name] = int(row[name])
    return row


def _record_of(row: Mapping[str, Any]) -> JournalRecord:
    values = {c: row[c] for c in _RECORD_COLUMNS}
    for name in _BOOL_COLUMNS:
        values[name] = bool(values[name])
    return JournalRecord(**values)


def _edits_json(edits: tuple[Edit, ...]) -> str:
    return json.dumps([[invoice, dict(changes)] for invoice, changes in edits])


def _edits_of(text: str) -> tuple[Edit, ...]:
    return tuple((invoice, changes) for invoice, changes in json.loads(text))


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """A journal written by an older version lacks the newer journal columns: add them."""
    have = {r["name"] for r in db.execute("PRAGMA table_info(journal)")}
    for line in _SCHEMA.split("CREATE TABLE IF NOT EXISTS journal (", 1)[1].split(");", 1)[0].splitlines():
        name = line.strip().split(" ", 1)[0]
        if name and name not in have and ("DEFAULT" in line or "NOT NULL" not in line):
            db.execute(f"ALTER TABLE journal ADD COLUMN {line.strip().rstrip(',')}")

class JournalInUse(RuntimeError):
    """Another process holds the journal's lock for its whole invocation."""

    def __init__(self, path: str, pid: str, waited: float) -> None:
        self.path, self.pid = path, pid
        super().__init__(f"journal {path} is in use by pid {pid or 'unknown'} (waited {waited:g} s for it); "
                         "one terminal runs one command at a time")


class JournalProblem(RuntimeError):
    """The journal file is missing, damaged or belongs to another terminal identity (a usage error)."""


@contextmanager
def exclusive(path: str, *, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the journal's lock (``flock`` on ``PATH.lock`` beside it, holding our pid) for the block.

    One terminal runs one command at a time: a second invocation on the same journal waits up to
    ``wait_seconds`` and then raises :class:`JournalInUse` naming the pid that holds it.  The lock
    dies with its process (also on a crash or ``kill -9``), so a stale lock file never blocks.
    """
    if path == ":memory:":
        yield
        return
    lock_path = f"{path}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            for attempt in Retrying(stop=stop_after_delay(wait_seconds), wait=wait_fixed(0.05),
                                    retry=retry_if_exception_type(BlockingIOError), reraise=True):
                with attempt:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Path(lock_path).read_text(encoding="ascii", errors="replace").strip()
            raise JournalInUse(path, holder, wait_seconds) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def journal_exists(path: str) -> bool:
    """A journal file is there (an empty file is not a journal: SQLite would silently start afresh)."""
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


class Journal:
    """SQLite journal file (``":memory:"`` for tests)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = open_books(path, _SCHEMA, _add_missing_columns)

    def close(self) -> None:
        self._db.close()

    def check_intact(self) -> None:
        """Raise :class:`JournalProblem` when SQLite finds damaged pages (``PRAGMA quick_check``)."""
        try:
            problems = [r[0] for r in self._db.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems != ["ok"]:
            raise JournalProblem(damaged_message(self.path, "; ".join(problems)))

    def bind_identity(self, identity: Mapping[str, str], *, move: bool = False) -> None:
        """Bind the journal to the terminal identity it serves (dialect, TID, MID, host address), or
        check it is still that one: its pending reversals, advices and open batch belong to that host.

        Keys of ``identity`` that are absent (an offline command has no host) are not compared.  A
        journal written before identities were kept adopts the first one it is used with.

        Raises:
            JournalProblem: the identity differs and ``move`` is False (nothing was changed).
        """
        stored = self.identity()
        differs = {k: (stored[k], v) for k, v in identity.items() if k in stored and stored[k] != v}
        if differs and not move:
            what = ", ".join(f"{k} {old!r} (given {new!r})" for k, (old, new) in differs.items())
            raise JournalProblem(
                f"--journal {self.path} belongs to another terminal: it was created for {what}; its pending "
                "reversals, queued advices and open batch belong there. Use the journal made for this terminal, "
                "or give --move-journal to rebind this one on purpose")
        merged = {**stored, **identity}
        if merged != stored:
            with self._transaction() as db:
                self._set_state(db, identity=json.dumps(merged, sort_keys=True))

    def identity(self) -> dict[str, str]:
        """The terminal identity the journal is bound to (empty: not bound yet)."""
        row = self._db.execute("SELECT value FROM state WHERE name = 'identity'").fetchone()
        return dict(json.loads(row["value"])) if row else {}

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------- reading

    def load(self) -> Books:
        """The books as the terminal core needs them."""
        db = self._db
        counters = {r["name"]: r["value"] for r in db.execute("SELECT name, value FROM counters")}
        state = {r["name"]: r["value"] for r in db.execute("SELECT name, value FROM state")}
        columns = ", ".join(_RECORD_COLUMNS)
        records = [_record_of(r) for r in db.execute(f"SELECT {columns} FROM journal WHERE settled = 0 ORDER BY id")]
        history = [_record_of(r) for r in db.execute(f"SELECT {columns} FROM journal WHERE settled = 1 ORDER BY id")]
        reversals = [PendingReversal(stan=r["stan"], kind=r["kind"], message=json.loads(r["message"]), reason=r["reason"],
                                     attempts=r["attempts"], refusals=r["refusals"], last_rc=r["last_rc"])
                     for r in db.execute("SELECT * FROM reversals ORDER BY seq")]
        advices = [Advice(stan=r["stan"], kind=r["kind"], message=json.loads(r["message"]), invoice=r["invoice"],
                          attempts=r["attempts"],
                          record=_record_of(json.loads(r["record"])) if r["record"] else None,
                          on_accept=_edits_of(r["on_accept"]), on_decline=_edits_of(r["on_decline"]))
                   for r in db.execute("SELECT * FROM saf ORDER BY seq")]
        settlement = None
        if state.get("settlement"):
            s = json.loads(state["settlement"])
            settlement = SettlementState(batch=s["batch"], stage=SettlementStage(s["stage"]), result=s["result"],
                                         uploaded=s["uploaded"], first_rc=s["first_rc"])
        parked = [(r["what"], r["stan"], r["why"]) for r in db.execute("SELECT * FROM exceptions ORDER BY id")]
        closed = [ClosedBatch(batch=r["batch"], debit_count=r["debit_count"], debit_minor=r["debit_minor"],
                              credit_count=r["credit_count"], credit_minor=r["credit_minor"], result=r["result"],
                              uploaded=r["uploaded"])
                  for r in db.execute("SELECT * FROM batches ORDER BY id")]
        return Books(stan=counters.get("stan", 0), invoice=counters.get("invoice", 0), batch=counters.get("batch", 1),
                     signed_on=bool(counters.get("signed_on", 0)), records=records, history=history,
                     reversals=reversals, advices=advices, settlement=settlement,
                     signon_required=state.get("signon_required") == "1", param_download=state.get("param_download", ""),
                     key_block=state.get("key_block", ""), key_mode=state.get("key_mode", ""),
                     clock_offset_seconds=float(state.get("clock_offset_seconds", "0")), parked=parked,
                     signon_date=state.get("signon_date", ""), daily_signon=state.get("daily_signon") == "1",
                     closed_batches=closed)

    def records(self, *, include_settled: bool = False) -> list[dict[str, Any]]:
        """Journal rows, one per approved financial request (PAN in clear: mask before showing), with
        ``receipt_pending`` (the receipt never printed)."""
        sql = "SELECT * FROM journal" + ("" if include_settled else " WHERE settled = 0") + " ORDER BY id"
        rows = [dict(r) for r in self._db.execute(sql)]
        for row in rows:
            row["receipt_pending"] = not row["printed"] and not row["receipt_waived"]
        return rows

    # ------------------------------------------------------------------- the wire trace

    def add_trace(self, *, at: str, kind: str, command: str | None = None, message: Mapping[str, str] | None = None,
                  matched: bool | None = None, mac_verified: bool | None = None, detail: str | None = None) -> int:
        """Append one trace event (``message`` already masked); returns its sequence number."""
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._transaction() as db:
                cur = db.execute(
                    "INSERT INTO trace (at, command, kind, mti, stan, message, matched, mac_verified, detail)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (at, command, kind, message.get("t") if message else None, message.get("11") if message else None,
                     json.dumps(dict(message)) if message is not None else None,
                     None if matched is None else int(matched), None if mac_verified is None else int(mac_verified),
                     detail))
                return int(cur.lastrowid or 0)
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def trace(self, *, since: int = 0) -> list[dict[str, Any]]:
        """Trace events after sequence number ``since``, oldest first: ``seq``, ``at``, ``command``,
        ``kind`` (sent, received, timeout, link_lost, unreadable, connect_failed, crash), ``message``,
        ``matched`` and ``mac_verified`` (received only), ``detail``."""
        out = []
        for r in self._db.execute("SELECT * FROM trace WHERE seq > ? ORDER BY seq", (since,)):
            row = dict(r)
            row["message"] = json.loads(row["message"]) if row["message"] is not None else None
            for name in ("matched", "mac_verified"):
                row[name] = None if row[name] is None else bool(row[name])
            out.append(row)
        return out

    def last_trace_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM trace").fetchone()[0])

    def exceptions(self) -> list[dict[str, Any]]:
        """Parked reversals and advices (manual follow-up), oldest first."""
        rows = [dict(r) for r in self._db.execute("SELECT * FROM exceptions ORDER BY id")]
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows

    # ------------------------------------------------------------------- writing

    def apply(self, action: Action) -> None:
        """Perform one durable action of the terminal core, as one transaction; other actions are
        not ours and are ignored."""
        match action:
            case SaveCounters(stan=stan, invoice=invoice, batch=batch):
                with self._transaction() as db:
                    self._set_counters(db, stan=stan, invoice=invoice, batch=batch)
            case SaveSignOn(signed_on=signed_on, key_block=block, key_mode=mode, clock_offset_seconds=offset,
                            signon_date=day):
                with self._transaction() as db:
                    self._set_counters(db, signed_on=int(signed_on))
                    self._set_state(db, key_block=block, key_mode=mode,
                                    **({"clock_offset_seconds": repr(offset)} if offset is not None else {}),
                                    **({"signon_date": day} if day is not None else {}))
            case SaveMarkers(signon_required=required, param_download=param, daily_signon=daily):
                values = {}
                if required is not None:
                    values["signon_required"] = "1" if required else "0"
                if param is not None:
                    values["param_download"] = param
                if daily is not None:
                    values["daily_signon"] = "1" if daily else "0"
                with self._transaction() as db:
                    self._set_state(db, **values)
            case AppendJournal(record=record):
                with self._transaction() as db:
                    self._insert_record(db, record)
            case CommitApproval(record=record, reversal_stan=stan, edits=edits):
                with self._transaction() as db:
                    self._insert_record(db, record)
                    self._edit(db, edits)
                    if stan is not None:
                        db.execute("DELETE FROM reversals WHERE stan = ?", (stan,))
            case UpdateJournal(edits=edits):
                with self._transaction() as db:
                    self._edit(db, edits)
            case SaveReversal(reversal=r):
                with self._transaction() as db:
                    db.execute("INSERT INTO reversals (stan, kind, message, reason, attempts, refusals, last_rc) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(stan) DO UPDATE SET message = excluded.message,"
                               " reason = excluded.reason, attempts = excluded.attempts, refusals = excluded.refusals,"
                               " last_rc = excluded.last_rc",
                               (r.stan, r.kind, json.dumps(dict(r.message)), r.reason, r.attempts, r.refusals,
                                r.last_rc))
            case UpdateReversal(stan=stan, changes=changes):
                allowed = {"reason", "attempts", "refusals", "last_rc"}
                assert set(changes) <= allowed, f"reversal changes {sorted(changes)}, expecting {sorted(allowed)}"
                with self._transaction() as db:
                    db.execute(f"UPDATE reversals SET {', '.join(f'{k} = ?' for k in changes)} WHERE stan = ?",
                               (*changes.values(), stan))
            case DeleteReversal(stan=stan):
                with self._transaction() as db:
                    db.execute("DELETE FROM reversals WHERE stan = ?", (stan,))
            case ParkReversal(stan=stan, why=why):
                with self._transaction() as db:
                    row = db.execute("SELECT * FROM reversals WHERE stan = ?", (stan,)).fetchone()
                    db.execute("INSERT INTO exceptions (what, stan, why, detail) VALUES ('reversal', ?, ?, ?)",
                               (stan, why, _parked_detail(row)))
                    db.execute("DELETE FROM reversals WHERE stan = ?", (stan,))
            case SaveAdvice(advice=a, record=record, edits=edits):
                with self._transaction() as db:
                    if record is not None:
                        self._insert_record(db, record)
                    self._edit(db, edits)
                    db.execute("INSERT INTO saf (stan, kind, message, invoice, attempts, record, on_accept, on_decline)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               (a.stan, a.kind, json.dumps(dict(a.message)), a.invoice, a.attempts,
                                json.dumps(_record_row(a.record)) if a.record else None,
                                _edits_json(a.on_accept), _edits_json(a.on_decline)))
            case UpdateAdvice(stan=stan, attempts=attempts):
                with self._transaction() as db:
                    db.execute("UPDATE saf SET attempts = ? WHERE stan = ?", (attempts, stan))
            case RemoveAdvice(stan=stan, record=record, edits=edits):
                with self._transaction() as db:
                    db.execute("DELETE FROM saf WHERE stan = ?", (stan,))
                    if record is not None:
                        self._insert_record(db, record)
                    self._edit(db, edits)
            case ParkAdvice(stan=stan, why=why):
                with self._transaction() as db:
                    row = db.execute("SELECT * FROM saf WHERE stan = ?", (stan,)).fetchone()
                    db.execute("INSERT INTO exceptions (what, stan, why, detail) VALUES ('advice', ?, ?, ?)",
                               (stan, why, _parked_detail(row)))
                    db.execute("DELETE FROM saf WHERE stan = ?", (stan,))
            case SaveSettlement(state=s):
                with self._transaction() as db:
                    self._set_state(db, settlement=json.dumps(
                        {"batch": s.batch, "stage": s.stage.value, "result": s.result, "uploaded": s.uploaded,
                         "first_rc": s.first_rc}) if s else "")
            case MarkUploaded(invoices=invoices):
                with self._transaction() as db:
                    db.executemany("UPDATE journal SET uploaded = 1 WHERE invoice = ? AND settled = 0",
                                   [(i,) for i in invoices])
            case CloseBatch(next_batch=next_batch, closed=closed):
                with self._transaction() as db:
                    db.execute("UPDATE journal SET settled = 1 WHERE settled = 0")
                    # What a closed batch no longer needs: the full PAN (an open pre-auth keeps it).
                    columns = ", ".join(_RECORD_COLUMNS)
                    rows = [(r["id"], _record_of(r)) for r in db.execute(
                        f"SELECT id, {columns} FROM journal WHERE pan NOT LIKE '%*%'")]
                    db.executemany("UPDATE journal SET pan = ? WHERE id = ?",
                                   [(purged(record).pan, row_id) for row_id, record in rows
                                    if purged(record) is not record])
                    self._set_state(db, settlement="")
                    self._set_counters(db, batch=next_batch)
                    if closed is not None:
                        db.execute("INSERT INTO batches (batch, debit_count, debit_minor, credit_count, credit_minor,"
                                   " result, uploaded) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   (closed.batch, closed.debit_count, closed.debit_minor, closed.credit_count,
                                    closed.credit_minor, closed.result, closed.uploaded))

    @staticmethod
    def _set_counters(db: sqlite3.Connection, **values: int) -> None:
        db.executemany("INSERT INTO counters (name, value) VALUES (?, ?) "
                       "ON CONFLICT(name) DO UPDATE SET value = excluded.value", values.items())

    @staticmethod
    def _set_state(db: sqlite3.Connection, **values: str) -> None:
        db.executemany("INSERT INTO state (name, value) VALUES (?, ?) "
                       "ON CONFLICT(name) DO UPDATE SET value = excluded.value", values.items())

    @staticmethod
    def _insert_record(db: sqlite3.Connection, record: JournalRecord) -> None:
        db.execute(f"INSERT INTO journal ({', '.join(_RECORD_COLUMNS)}) VALUES "
                   f"({', '.join(':' + c for c in _RECORD_COLUMNS)})", _record_row(record))

    @staticmethod
    def _edit(db: sqlite3.Connection, edits: tuple[Edit, ...]) -> None:
        for invoice, changes in edits:
            unknown = set(changes) - set(_RECORD_COLUMNS)
            assert not unknown, f"journal edit of unknown columns {sorted(unknown)}"
            values = {k: int(v) if isinstance(v, bool) else v for k, v in changes.items()}
            db.execute(f"UPDATE journal SET {', '.join(f'{k} = ?' for k in values)} WHERE invoice = ?",
                       (*values.values(), invoice))

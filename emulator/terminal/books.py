"""The terminal's durable books as the core sees them: journal records (J), pending reversals (R),
store-and-forward advices (Q), the settlement state (S), closed batches and working keys, and
:class:`Books`, which applies each durable action the way the SQLite journal does."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from emulator.messages import (
    Original,
)
from emulator.terminal.events import (
    Action,
    AppendJournal,
    CloseBatch,
    CommitApproval,
    DeleteReversal,
    MarkUploaded,
    ParkAdvice,
    ParkReversal,
    RemoveAdvice,
    SaveAdvice,
    SaveCounters,
    SaveMarkers,
    SaveReversal,
    SaveSettlement,
    SaveSignOn,
    UpdateAdvice,
    UpdateJournal,
    UpdateReversal,
)
from specs.masking import mask_pan
from specs.totals import (
    SETTLEMENT_CLASS,
    Totals,
    totals_of,
)

#: CUP header 处理要求 values asking for a download (parameters, IC parameters, TMS software).
PARAMETER_DOWNLOADS: Mapping[str, str] = {"1": "a parameter download", "5": "an IC parameter download",
                                          "6": "a software (TMS) download"}


class TerminalUsageError(RuntimeError):
    """The terminal was driven wrongly by its local user (not by the host)."""


class State(enum.Enum):
    #: No operation in progress.
    IDLE = "idle"
    #: The running flow needs the link to the host; waiting for Connected or ConnectFailed.
    CONNECTING = "connecting"
    #: A request is on the wire; the response timer runs.
    AWAITING_RESPONSE = "awaiting_response"
    #: Waiting before a repeat (reversal, advice); TimerExpired ends the pause.
    BACKING_OFF = "backing_off"
    #: A receipt is at the printer; waiting for Printed or PrinterFailed.
    PRINTING = "printing"
    #: No operation in progress, but an approval's receipt never printed (a crash after the journal
    #: commit, a printer failure): new transactions are refused until it is reprinted or dismissed
    #: (with ``block_sales_while_receipt_pending``).  Its durable marker is the journal record's
    #: ``printed`` flag.
    RECEIPT_PENDING = "receipt_pending"
    #: Outcome decided; see :attr:`Terminal.result`.
    DONE = "done"


# --------------------------------------------------------------------------- durable books

#: Journal record statuses: the record stands / a void of it was approved / the pre-auth was
#: completed / the host finally declined the (offline) advice that carried it.
APPROVED, VOIDED, COMPLETED, DECLINED = "approved", "voided", "completed", "declined"


@dataclass(frozen=True, kw_only=True, slots=True)
class JournalRecord:
    """One transaction of the terminal's journal, as the terminal journals it."""

    invoice: str
    stan: str
    batch: str
    kind: str
    amount_minor: int
    pan: str
    expiry: str
    rrn: str
    auth_code: str
    local_date: str
    local_time: str
    settlement_date: str | None = None
    mti: str = "0200"
    processing_code: str = "000000"
    condition: str = "00"
    status: str = APPROVED
    original_invoice: str | None = None
    tip_minor: int = 0
    offline: bool = False
    uploaded: bool = False
    printed: bool = False
    #: Who did it (CUP 63.1): every record names its operator (C14).
    operator: str = ""
    #: No receipt is owed for it although it never printed: the operator dismissed it
    #: (``dismiss-receipt``), or it was journalled later, when the host took its queued advice.
    receipt_waived: bool = False

    @property
    def receipt_pending(self) -> bool:
        """Journalled, never printed and not waived: the customer holds no proof of it."""
        return not self.printed and not self.receipt_waived

    @property
    def counts(self) -> bool:
        """Counts in the settlement totals (and is uploaded): approved and of a settlement class."""
        return self.status == APPROVED and self.kind in SETTLEMENT_CLASS

    def original(self) -> Original:
        return Original(rrn=self.rrn, auth_code=self.auth_code, batch=self.batch, stan=self.stan,
                        local_date=self.local_date)

    @property
    def keeps_pan(self) -> bool:
        """Still needs the full PAN after its batch closed: an approved pre-authorization not yet
        completed or voided (its completion may come in a later batch).  Every other record keeps
        only the masked PAN once its batch is closed (:func:`purged`)."""
        return self.kind == "preauth" and self.status == APPROVED

    @property
    def pan_purged(self) -> bool:
        return "*" in self.pan


def purged(record: JournalRecord) -> JournalRecord:
    """The record as kept once its batch closed: the PAN masked unless :attr:`~JournalRecord.keeps_pan`."""
    return record if record.keeps_pan or record.pan_purged else replace(record, pan=mask_pan(record.pan))


@dataclass(frozen=True, kw_only=True, slots=True)
class PendingReversal:
    """R: a reversal owed to the host for one financial request (docs/domain.md#f7)."""

    stan: str
    kind: str
    #: The 0400 as built from the original request: no 52, no 64 (recomputed per send), no 39.
    message: Mapping[str, str]
    reason: str = "98"
    attempts: int = 0
    #: Answers that were neither final nor "try later" (e.g. 25 when only 00 is final).
    refusals: int = 0
    last_rc: str | None = None


#: (invoice, changes) applied to one journal record.
Edit = tuple[str, Mapping[str, Any]]


@dataclass(frozen=True, kw_only=True, slots=True)
class Advice:
    """Q: one store-and-forward advice (0220 / 0120), repeated with the repeat MTI (docs/domain.md#f6)."""

    stan: str
    kind: str
    #: First-attempt form (MTI 0220/0120), no 64.
    message: Mapping[str, str]
    #: The journal record the advice is about (the offline sale, the adjusted sale, the refund).
    invoice: str = ""
    attempts: int = 0
    #: Journal record to add when the host accepts (online advices: CUP refund, INTL completion
    #: and pre-auth void); None when the journal already holds it (offline sale, adjust).
    record: JournalRecord | None = None
    on_accept: tuple[Edit, ...] = ()
    on_decline: tuple[Edit, ...] = ()


class SettlementStage(enum.Enum):
    #: S persisted; the 0500 with our totals is (re)sent next.
    STARTED = "started"
    #: The host said unbalanced; records without an upload flag are uploaded next.
    UPLOADING = "uploading"
    #: Upload done (or CUP balanced); the closing message (INTL 960000, CUP 202/207) is next.
    ENDING = "ending"
    #: The host closed the batch; only the local close is left.
    HOST_CLOSED = "host_closed"


@dataclass(frozen=True, kw_only=True, slots=True)
class SettlementState:
    """S: an unfinished settlement (docs/domain.md#crash-points); blocks new transactions until closed."""

    batch: str
    stage: SettlementStage
    #: ``balanced`` / ``unbalanced`` once the host compared the totals.
    result: str | None = None
    #: Records uploaded so far in this settlement.
    uploaded: int = 0
    #: The first settlement answer's response code.
    first_rc: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ClosedBatch:
    """A batch the terminal closed: the totals it closed with and how the host agreed."""

    batch: str
    debit_count: int
    debit_minor: int
    credit_count: int
    credit_minor: int
    #: ``balanced`` / ``unbalanced`` (uploaded, or closed without upload by the flawed terminal).
    result: str
    uploaded: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "debit_count": self.debit_count, "debit_minor": self.debit_minor,
                "credit_count": self.credit_count, "credit_minor": self.credit_minor, "result": self.result,
                "uploaded": self.uploaded}


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkingKeys:
    pik: bytes
    mak: bytes
    tdk: bytes | None = None


@dataclass(kw_only=True, slots=True)
class Books:
    """The terminal's durable state as loaded from its journal (and mirrored by :meth:`apply`)."""

    stan: int = 0
    invoice: int = 0
    batch: int = 1
    signed_on: bool = False
    #: The open batch's journal records.
    records: list[JournalRecord] = field(default_factory=list)
    #: Records of closed batches (for refunds, completions of older pre-auths).
    history: list[JournalRecord] = field(default_factory=list)
    reversals: list[PendingReversal] = field(default_factory=list)
    advices: list[Advice] = field(default_factory=list)
    settlement: SettlementState | None = None
    #: The host told us to sign on again (header 处理要求 3, or 77/A0/99 with auto sign-on).
    signon_required: bool = False
    #: CUP header 处理要求 1/5/6: a parameter download the host asked for (shown in ``status``).
    param_download: str = ""
    #: The 0810 field-62 key block as received (keys under the TMK) and its 60.3 layout.
    key_block: str = ""
    key_mode: str = ""
    clock_offset_seconds: float = 0.0
    #: Reversals and advices set aside for manual follow-up: (what, stan, why).
    parked: list[tuple[str, str, str]] = field(default_factory=list)
    #: Business date (ISO) of the last approved sign-on, by the clock synced at that sign-on.
    signon_date: str = ""
    #: The host told us it wants a sign-on every business day (it answered 22 once).
    daily_signon: bool = False
    #: Batches closed so far, oldest first.
    closed_batches: list[ClosedBatch] = field(default_factory=list)

    def open_batch_totals(self) -> Totals:
        return totals_of((r.kind, r.amount_minor) for r in self.records if r.counts)

    def find(self, invoice: str) -> JournalRecord | None:
        return next((r for r in (*self.records, *self.history) if r.invoice == invoice), None)

    def apply(self, action: Action) -> None:
        """Mirror one durable action in memory, exactly as :meth:`emulator.journal.Journal.apply`
        performs it on disk (a test checks that the two agree)."""
        match action:
            case SaveCounters(stan=stan, invoice=invoice, batch=batch):
                self.stan, self.invoice, self.batch = stan, invoice, batch
            case SaveSignOn(signed_on=signed_on, key_block=block, key_mode=mode, clock_offset_seconds=offset,
                            signon_date=day):
                self.signed_on, self.key_block, self.key_mode = signed_on, block, mode
                if offset is not None:
                    self.clock_offset_seconds = offset
                if day is not None:
                    self.signon_date = day
            case SaveMarkers(signon_required=required, param_download=param, daily_signon=daily):
                if required is not None:
                    self.signon_required = required
                if param is not None:
                    self.param_download = param
                if daily is not None:
                    self.daily_signon = daily
            case AppendJournal(record=record):
                self.records.append(record)
            case CommitApproval(record=record, reversal_stan=stan, edits=edits):
                self.records.append(record)
                self._edit(edits)
                self.reversals = [r for r in self.reversals if r.stan != stan]
            case UpdateJournal(edits=edits):
                self._edit(edits)
            case SaveReversal(reversal=reversal):
                self.reversals = [r for r in self.reversals if r.stan != reversal.stan] + [reversal]
            case UpdateReversal(stan=stan, changes=changes):
                self.reversals = [replace(r, **changes) if r.stan == stan else r for r in self.reversals]
            case DeleteReversal(stan=stan):
                self.reversals = [r for r in self.reversals if r.stan != stan]
            case ParkReversal(stan=stan, why=why):
                self.reversals = [r for r in self.reversals if r.stan != stan]
                self.parked.append(("reversal", stan, why))
            case SaveAdvice(advice=advice, record=record, edits=edits):
                if record is not None:
                    self.records.append(record)
                self._edit(edits)
                self.advices = [a for a in self.advices if a.stan != advice.stan] + [advice]
            case UpdateAdvice(stan=stan, attempts=attempts):
                self.advices = [replace(a, attempts=attempts) if a.stan == stan else a for a in self.advices]
            case RemoveAdvice(stan=stan, record=record, edits=edits):
                self.advices = [a for a in self.advices if a.stan != stan]
                if record is not None:
                    self.records.append(record)
                self._edit(edits)
            case ParkAdvice(stan=stan, why=why):
                self.advices = [a for a in self.advices if a.stan != stan]
                self.parked.append(("advice", stan, why))
            case SaveSettlement(state=state):
                self.settlement = state
            case MarkUploaded(invoices=invoices):
                self._edit(tuple((i, {"uploaded": True}) for i in invoices))
            case CloseBatch(next_batch=next_batch, closed=closed):
                self.history = [purged(r) for r in (*self.history, *self.records)]
                self.records = []
                self.settlement = None
                self.batch = next_batch
                if closed is not None:
                    self.closed_batches.append(closed)
            case _:
                raise TerminalUsageError(f"{type(action).__name__} is not a durable action")

    def _edit(self, edits: tuple[Edit, ...]) -> None:
        for invoice, changes in edits:
            self.records = [replace(r, **changes) if r.invoice == invoice else r for r in self.records]
            self.history = [replace(r, **changes) if r.invoice == invoice else r for r in self.history]

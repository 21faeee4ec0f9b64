"""What goes into the core and what comes out: operations (one per command), inputs from the outside
world, the actions the shell performs in order (durable ones first), and the operation's outcome and result."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from specs.cards import Card
from specs.codec import Message

if TYPE_CHECKING:  # annotations only: the books import these actions at run time
    from emulator.terminal.books import (
        Advice,
        ClosedBatch,
        Edit,
        JournalRecord,
        PendingReversal,
        SettlementState,
    )

# --------------------------------------------------------------------------- inputs: operations
#
# Every operation carries ``now``, the terminal's clock (the business time: synced from the host's
# 12/13 at sign-on, or the time the caller injects), and ``operator``, who does it (CUP 63.1; None:
# the default operator of the settings, see ``TerminalSettings.default_operator``).


@dataclass(frozen=True, kw_only=True, slots=True)
class Reference:
    """Which original a void, refund, completion or adjust refers to; both None = the last eligible."""

    invoice: str | None = None
    rrn: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SignOn:
    now: datetime
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SignOff:
    now: datetime
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Echo:
    now: datetime
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Sale:
    now: datetime
    amount_minor: int
    card: Card
    pin: str | None = None
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Balance:
    now: datetime
    card: Card
    pin: str | None = None
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class PreAuth:
    now: datetime
    amount_minor: int
    card: Card
    pin: str | None = None
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class PreAuthVoid:
    now: datetime
    original: Reference = Reference()
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Completion:
    now: datetime
    amount_minor: int
    original: Reference = Reference()
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CompletionVoid:
    now: datetime
    original: Reference = Reference()
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Void:
    now: datetime
    original: Reference = Reference()
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Refund:
    now: datetime
    amount_minor: int
    original: Reference = Reference()
    #: The card, when the original's batch is closed (its PAN is no longer kept in full).
    card: Card | None = None
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class OfflineSale:
    now: datetime
    amount_minor: int
    card: Card
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Adjust:
    """Tip adjust of a sale in the open batch: give the tip or the new total."""

    now: datetime
    original: Reference = Reference()
    tip_minor: int | None = None
    new_amount_minor: int | None = None
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Settle:
    now: datetime
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Reverse:
    """Send the pending reversals now, even one that is stuck."""

    now: datetime
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Reprint:
    """Print a receipt again (``invoice`` None: the oldest pending one, else the last record)."""

    now: datetime
    invoice: str | None = None
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class DismissReceipt:
    """Waive a pending receipt without printing it (``invoice`` None: every pending one)."""

    now: datetime
    invoice: str | None = None
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Idle:
    """The terminal is idle: deliver what is owed (pending reversals)."""

    now: datetime
    operator: str | None = None


Financial = (
    Sale | Balance | PreAuth | PreAuthVoid | Completion | CompletionVoid | Void | Refund | OfflineSale | Adjust
)
Operation = SignOn | SignOff | Echo | Financial | Settle | Reverse | Reprint | DismissReceipt | Idle

#: Operation -> transaction kind of :mod:`specs.transactions`.
KIND_OF: Mapping[type, str] = {
    Sale: "sale", Balance: "balance", PreAuth: "preauth", PreAuthVoid: "preauth_void", Completion: "completion",
    CompletionVoid: "completion_void", Void: "void", Refund: "refund", OfflineSale: "offline_sale",
    Adjust: "adjust",
}

COMMAND_NAMES: Mapping[type, str] = {
    SignOn: "signon", SignOff: "signoff", Echo: "echo", Sale: "sale", Balance: "balance", PreAuth: "preauth",
    PreAuthVoid: "preauth-void", Completion: "completion", CompletionVoid: "completion-void", Void: "void",
    Refund: "refund", OfflineSale: "offline-sale", Adjust: "adjust", Settle: "settle", Reverse: "reverse",
    Reprint: "reprint", DismissReceipt: "dismiss-receipt", Idle: "idle",
}

# --------------------------------------------------------------------------- inputs: the outside world


@dataclass(frozen=True, kw_only=True, slots=True)
class Connected:
    """The link to the host is up."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectFailed:
    """No link could be made; nothing was written."""

    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageReceived:
    """A decoded message arrived (the shell has not judged whether it is ours).

    Attributes:
        message: the decoded message.
        mac_valid: whether field 64 verified under the MAK the request was sent with; None when
            the request carried no MAC.
        processing_requirement: CUP header 处理要求 of the frame, when framed with a CUP header.
    """

    message: Message
    mac_valid: bool | None = None
    processing_requirement: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageUnreadable:
    """Bytes arrived that could not be framed or decoded."""

    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TimerExpired:
    """The response timer or a backoff pause ran out."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectionLost:
    """The peer closed or reset the link."""

    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Printed:
    """The receipt came out of the printer."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PrinterFailed:
    """The printer failed (paper out, jam)."""

    reason: str = "printer failure"


# Produced by _classify from MessageReceived; the table is keyed on these, never on MessageReceived.
@dataclass(frozen=True, kw_only=True, slots=True)
class ResponseMatched:
    message: Message
    mac_valid: bool | None = None
    processing_requirement: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ResponseStray:
    message: Message
    why: str


RemoteInput = (
    Connected | ConnectFailed | MessageReceived | MessageUnreadable | TimerExpired | ConnectionLost | Printed |
    PrinterFailed
)
Input = Operation | RemoteInput

# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, kw_only=True, slots=True)
class Connect:
    """Open the link to the host; answer with Connected or ConnectFailed."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Disconnect:
    """Close the link (after a failed exchange, and at the end of the operation)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Send:
    """Write one request.  With ``mac_key`` the shell puts the MAC in field 64 first, and verifies
    the answer's MAC with the same key (``MessageReceived.mac_valid``)."""

    message: Message
    mac_key: bytes | None = None
    mac_algorithm: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class StartTimer:
    seconds: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Backoff:
    """Pause before repeat number ``attempt`` (1 = the first repeat); the shell computes the wait
    with tenacity and answers TimerExpired."""

    attempt: int
    purpose: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Print:
    """Print a receipt; answer with Printed or PrinterFailed."""

    lines: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class CrashPoint:
    """A crash point of docs/domain.md#crash-points ("a".."g"): the shell dies here when armed for it."""

    point: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SaveCounters:
    """Persist STAN, invoice and batch numbers (before the message that uses them leaves)."""

    stan: int
    invoice: int
    batch: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SaveSignOn:
    """Persist the sign-on state: keys (as received, under the TMK), the clock offset and the
    business date of the sign-on (None = unchanged)."""

    signed_on: bool
    key_block: str = ""
    key_mode: str = ""
    clock_offset_seconds: float | None = None
    signon_date: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SaveMarkers:
    """Persist host instructions: sign on again; parameter download required; the host wants a
    sign-on every business day (None = unchanged)."""

    signon_required: bool | None = None
    param_download: str | None = None
    daily_signon: bool | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AppendJournal:
    record: JournalRecord


@dataclass(frozen=True, kw_only=True, slots=True)
class CommitApproval:
    """One transaction: journal the approved record, apply its edits to originals (voided,
    completed) and clear its pending reversal (``reversal_stan``, or None)."""

    record: JournalRecord
    reversal_stan: str | None = None
    edits: tuple[Edit, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class UpdateJournal:
    edits: tuple[Edit, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class SaveReversal:
    reversal: PendingReversal


@dataclass(frozen=True, kw_only=True, slots=True)
class UpdateReversal:
    stan: str
    changes: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class DeleteReversal:
    stan: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ParkReversal:
    """Move a reversal the host keeps refusing to the exception log (manual follow-up)."""

    stan: str
    why: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SaveAdvice:
    """One transaction: queue the advice; journal ``record`` (offline sale) and apply ``edits``
    (tip adjust) at the same time."""

    advice: Advice
    record: JournalRecord | None = None
    edits: tuple[Edit, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class UpdateAdvice:
    stan: str
    attempts: int


@dataclass(frozen=True, kw_only=True, slots=True)
class RemoveAdvice:
    """One transaction: the advice is done (accepted or finally declined): dequeue it, journal
    ``record`` if any, apply ``edits``."""

    stan: str
    record: JournalRecord | None = None
    edits: tuple[Edit, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ParkAdvice:
    stan: str
    why: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SaveSettlement:
    """Persist the settlement state S (None: no settlement in progress)."""

    state: SettlementState | None


@dataclass(frozen=True, kw_only=True, slots=True)
class MarkUploaded:
    invoices: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class CloseBatch:
    """One transaction: the open batch's records become history, S is cleared, batch := next, and
    the closed batch's totals are kept (``closed``)."""

    batch: str
    next_batch: int
    closed: ClosedBatch | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Observed:
    """The core's verdict on a message that arrived (for the wire trace; nothing to perform).

    Attributes:
        message: the message as received.
        matched: True when the terminal took it as the answer to its outstanding request (MTI + 10,
            same 11 and 41, while waiting), False when it set it aside as stray.
        mac_verified: True / False when the terminal checked field 64 of its answer and it verified /
            failed; None when it did not check (no MAC sent, verification off, or a stray message).
        why: why a stray message was set aside.
    """

    message: Message
    matched: bool
    mac_verified: bool | None = None
    why: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Finish:
    result: Result


DURABLE_ACTIONS = (SaveCounters, SaveSignOn, SaveMarkers, AppendJournal, CommitApproval, UpdateJournal, SaveReversal,
                   UpdateReversal, DeleteReversal, ParkReversal, SaveAdvice, UpdateAdvice, RemoveAdvice, ParkAdvice,
                   SaveSettlement, MarkUploaded, CloseBatch)

Action = (
    Connect | Disconnect | Send | StartTimer | Backoff | Print | CrashPoint | SaveCounters | SaveSignOn |
    SaveMarkers | AppendJournal | CommitApproval | UpdateJournal | SaveReversal | UpdateReversal | DeleteReversal |
    ParkReversal | SaveAdvice | UpdateAdvice | RemoveAdvice | ParkAdvice | SaveSettlement | MarkUploaded |
    CloseBatch | Observed | Finish
)


class Outcome(enum.StrEnum):
    """How an operation ended.  A string enum: it compares equal to its value and prints as it.

    >>> Outcome.APPROVED == "approved", f"{Outcome.NO_ANSWER}", Outcome("declined") is Outcome.DECLINED
    (True, 'no_answer', True)
    """

    #: The host approved (or the terminal approved offline).
    APPROVED = "approved"
    #: The host answered with a decline code.
    DECLINED = "declined"
    #: Settlement: the host's totals equal ours; batch closed.
    BALANCED = "balanced"
    #: Settlement: the host's totals differ (INTL 95, CUP 对账应答码 2/3).
    UNBALANCED = "unbalanced"
    #: The request went out and no matching answer came (timeout, link lost, garbage).
    NO_ANSWER = "no_answer"
    #: No link could be made; nothing was sent.
    CONNECT_FAILED = "connect_failed"
    #: An approval arrived whose MAC did not verify: not committed, reversal A0 owed.
    MAC_FAILED = "mac_failed"
    #: Refused by the terminal itself; nothing was sent.
    REFUSED = "refused"
    #: Nothing was owed (``reverse``/idle with no pending reversal).
    NOTHING_PENDING = "nothing_pending"

    @property
    def completed(self) -> bool:
        """The exchange completed (the host answered), whatever it said."""
        return self in (Outcome.APPROVED, Outcome.DECLINED, Outcome.BALANCED, Outcome.UNBALANCED,
                        Outcome.NOTHING_PENDING)


@dataclass(frozen=True, kw_only=True, slots=True)
class Result:
    """What the operator sees, and what ``--json`` prints.

    ``mti``, ``response_mti``, ``rc`` and ``stan`` describe the operation's own request (the 0200 of
    a sale, the first 0500 of a settlement), not the housekeeping around it (reversals, advices,
    uploads), which ``details`` reports.
    """

    command: str
    outcome: Outcome
    mti: str | None
    response_mti: str | None
    rc: str | None
    stan: str | None
    text: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"command": self.command, "outcome": self.outcome.value, "mti": self.mti,
                "response_mti": self.response_mti, "rc": self.rc, "stan": self.stan, "text": self.text,
                **self.details}

"""The POS terminal as a pure state machine: inputs in, actions out.

Rules (after h11 ``_state.py``):

1. Everything that decides what the terminal does lives in this file: the transition table first,
   then the flows (one per operation, written as the domain spec writes them) and their guards.
2. No sockets, no asyncio, no clock, no SQLite, no codec.  Time arrives inside the operator's input
   (``now``) and as :class:`TimerExpired`; bytes, MACs on the wire and printing are the shell's
   business; durable writes leave as actions (:class:`SaveReversal`, :class:`CommitApproval`, ...)
   that the shell performs *in the order given*.  The order of actions is the crash-safety
   contract: the pending reversal is stored before the request that needs it is sent, an approval
   is journalled before the receipt is printed, the batch is closed only after the host closed it.
   :class:`CrashPoint` markers sit at the points of docs/domain.md#crash-points where a power cut is
   interesting; the shell dies there when told to (``--crash-at``).
3. Local misuse raises :class:`TerminalUsageError` (starting an operation while one is running).
   Anything the host, the network or the printer does is an input and never raises: a stray, late
   or foreign answer is :class:`ResponseStray`, garbage is :class:`MessageUnreadable`.

Theory of operation.  The table below is about *waiting*: which inputs each state accepts and where
they lead.  An operation (sale, settle, ...) is a *flow*: a generator that reads like the flows
F4-F10 of docs/domain.md — "send pending reversals; sign on if told to; store R; send the 0200; on 00 commit, then
print; trickle one advice".  Each time a flow needs the outside world it yields what it waits for:

* an exchange (a request and its answer)  -> CONNECTING / AWAITING_RESPONSE
* a receipt at the printer                -> PRINTING
* a pause before a repeat (backoff)       -> BACKING_OFF

and the table's ``FLOW`` entries hand the matching input back to it.  When the flow returns its
:class:`Result`, the state is DONE.  The link is kept across the exchanges of one operation and
dropped after any exchange that failed (timeout, lost link, garbage), so a late answer can never
reach a later exchange.

A response matches when its MTI is the request MTI + 10 and fields 11 (STAN) and 41 (TID) equal
the request's (docs/domain.md#requestresponse-matching-and-timers, jPOS QMUX key "41, 11").  Anything else is stray: ignored here and
never taken for an approval; the timer keeps running.

What the flows guarantee (docs/domain.md#invariants): no pending reversal is left behind when a financial
request goes out (G5: reversals first, and a new STAN for every request); a financial request is
never sent twice (only reversals, advices and uploads are repeated); an approval whose MAC fails
is never committed and is reversed with reason A0; queued advices and pending reversals are gone
before the 0500; the settlement state and the upload flags are durable, so an interrupted
settlement resumes where it stopped.
"""

from __future__ import annotations

from emulator.terminal.books import (
    APPROVED,
    COMPLETED,
    DECLINED,
    PARAMETER_DOWNLOADS,
    VOIDED,
    Advice,
    Books,
    ClosedBatch,
    Edit,
    JournalRecord,
    PendingReversal,
    SettlementStage,
    SettlementState,
    State,
    TerminalUsageError,
    WorkingKeys,
    purged,
)
from emulator.terminal.events import (
    COMMAND_NAMES,
    DURABLE_ACTIONS,
    KIND_OF,
    Action,
    Adjust,
    AppendJournal,
    Backoff,
    Balance,
    CloseBatch,
    CommitApproval,
    Completion,
    CompletionVoid,
    Connect,
    Connected,
    ConnectFailed,
    ConnectionLost,
    CrashPoint,
    DeleteReversal,
    Disconnect,
    DismissReceipt,
    Echo,
    Financial,
    Finish,
    Idle,
    Input,
    MarkUploaded,
    MessageReceived,
    MessageUnreadable,
    Observed,
    OfflineSale,
    Operation,
    Outcome,
    ParkAdvice,
    ParkReversal,
    PreAuth,
    PreAuthVoid,
    Print,
    Printed,
    PrinterFailed,
    Reference,
    Refund,
    RemoteInput,
    RemoveAdvice,
    Reprint,
    ResponseMatched,
    ResponseStray,
    Result,
    Reverse,
    Sale,
    SaveAdvice,
    SaveCounters,
    SaveMarkers,
    SaveReversal,
    SaveSettlement,
    SaveSignOn,
    Send,
    Settle,
    SignOff,
    SignOn,
    StartTimer,
    TimerExpired,
    UpdateAdvice,
    UpdateJournal,
    UpdateReversal,
    Void,
)
from emulator.terminal.flows import (
    SUPERVISOR_OPERATIONS,
    Flow,
    Terminal,
    mismatch,
)
from emulator.terminal.table import (
    EXTERNAL,
    FLOW,
    OPERATIONS,
    TRANSITIONS,
)

__all__ = [
    "APPROVED",
    "COMMAND_NAMES",
    "COMPLETED",
    "DECLINED",
    "DURABLE_ACTIONS",
    "EXTERNAL",
    "FLOW",
    "KIND_OF",
    "OPERATIONS",
    "PARAMETER_DOWNLOADS",
    "SUPERVISOR_OPERATIONS",
    "TRANSITIONS",
    "VOIDED",
    "Action",
    "Adjust",
    "Advice",
    "AppendJournal",
    "Backoff",
    "Balance",
    "Books",
    "CloseBatch",
    "ClosedBatch",
    "CommitApproval",
    "Completion",
    "CompletionVoid",
    "Connect",
    "ConnectFailed",
    "Connected",
    "ConnectionLost",
    "CrashPoint",
    "DeleteReversal",
    "Disconnect",
    "DismissReceipt",
    "Echo",
    "Edit",
    "Financial",
    "Finish",
    "Flow",
    "Idle",
    "Input",
    "JournalRecord",
    "MarkUploaded",
    "MessageReceived",
    "MessageUnreadable",
    "Observed",
    "OfflineSale",
    "Operation",
    "Outcome",
    "ParkAdvice",
    "ParkReversal",
    "PendingReversal",
    "PreAuth",
    "PreAuthVoid",
    "Print",
    "Printed",
    "PrinterFailed",
    "Reference",
    "Refund",
    "RemoteInput",
    "RemoveAdvice",
    "Reprint",
    "ResponseMatched",
    "ResponseStray",
    "Result",
    "Reverse",
    "Sale",
    "SaveAdvice",
    "SaveCounters",
    "SaveMarkers",
    "SaveReversal",
    "SaveSettlement",
    "SaveSignOn",
    "Send",
    "Settle",
    "SettlementStage",
    "SettlementState",
    "SignOff",
    "SignOn",
    "StartTimer",
    "State",
    "Terminal",
    "TerminalUsageError",
    "TimerExpired",
    "UpdateAdvice",
    "UpdateJournal",
    "UpdateReversal",
    "Void",
    "WorkingKeys",
    "mismatch",
    "purged",
]

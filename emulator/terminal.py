"""The POS terminal as a pure state machine: inputs in, actions out.

Rules (after h11 ``_state.py``):

1. Everything that decides a transition lives in this file: the table first, then the few guards
   that do not fit it (response matching, which outcome a response code means).
2. No sockets, no asyncio, no clock, no SQLite.  Time arrives inside the operator's input (``now``)
   and as :class:`TimerExpired`; bytes are the shell's business; durable writes leave as actions
   (:class:`SaveCounters`, :class:`AppendJournal`, ...) that the shell performs *in the order
   given*, so the order of actions is the crash-safety contract: a counter is saved before the
   message that uses it is sent, an approval is journalled before the operation finishes.
3. Local misuse raises :class:`TerminalUsageError` (starting an operation while one is running).
   Anything the host or the network does is an input and never raises: a stray, late or foreign
   answer is :class:`ResponseStray`, garbage is :class:`MessageUnreadable`.

Theory of operation.  One operator operation (sign-on, echo, sale, settlement) is one exchange::

    IDLE --operation--> CONNECTING --Connected--> AWAITING_RESPONSE --ResponseMatched--> DONE
                             |                          |
                             +--ConnectFailed--> DONE   +--TimerExpired / ConnectionLost--> DONE

A response matches when its MTI is the request MTI + 10 and fields 11 (STAN) and 41 (TID) equal
the request's (domain.md §1.4, jPOS QMUX key "41, 11").  Anything else is stray: logged by the
shell and ignored here, never taken for an approval.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Union

from specs import codes
from specs.cards import Card
from specs.codec import Message
from specs.dialects import response_mti
from specs.totals import CUP_BALANCED, Totals, parse_cup_field_48, totals_of

from emulator.messages import Profile, network_request, sale_request, settlement_request


class TerminalUsageError(RuntimeError):
    """The terminal was driven wrongly by its local user (not by the host)."""


class State(enum.Enum):
    #: No operation in progress.
    IDLE = "idle"
    #: An operation was started; waiting for the link to the host.
    CONNECTING = "connecting"
    #: Request written; response timer running.
    AWAITING_RESPONSE = "awaiting_response"
    #: Outcome decided; see :attr:`Terminal.result`.
    DONE = "done"


# --------------------------------------------------------------------------- durable books


@dataclass(frozen=True, kw_only=True, slots=True)
class JournalRecord:
    """One approved financial transaction of the open batch, as the terminal journals it."""

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


@dataclass(kw_only=True, slots=True)
class Books:
    """The terminal's durable state as loaded from its journal."""

    stan: int = 0
    invoice: int = 0
    batch: int = 1
    signed_on: bool = False
    records: list[JournalRecord] = field(default_factory=list)

    def open_batch_totals(self) -> Totals:
        return totals_of((r.kind, r.amount_minor) for r in self.records)


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, kw_only=True, slots=True)
class SignOn:
    now: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class SignOff:
    now: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class Echo:
    now: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class Sale:
    now: datetime
    amount_minor: int
    card: Card


@dataclass(frozen=True, kw_only=True, slots=True)
class Settle:
    now: datetime


Operation = Union[SignOn, SignOff, Echo, Sale, Settle]


@dataclass(frozen=True, kw_only=True, slots=True)
class Connected:
    """The link to the host is up."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectFailed:
    """No link could be made; nothing was written."""

    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageReceived:
    """A decoded message arrived (the shell has not judged whether it is ours)."""

    message: Message


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageUnreadable:
    """Bytes arrived that could not be framed or decoded."""

    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TimerExpired:
    """The response timer ran out."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectionLost:
    """The peer closed or reset the link."""

    reason: str = ""


# Produced by _classify from MessageReceived; the table is keyed on these, never on MessageReceived.
@dataclass(frozen=True, kw_only=True, slots=True)
class ResponseMatched:
    message: Message


@dataclass(frozen=True, kw_only=True, slots=True)
class ResponseStray:
    message: Message
    why: str


RemoteInput = Union[Connected, ConnectFailed, MessageReceived, MessageUnreadable, TimerExpired, ConnectionLost]
Input = Union[Operation, RemoteInput]

# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, kw_only=True, slots=True)
class Connect:
    """Open the link to the host; answer with Connected or ConnectFailed."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Send:
    message: Message


@dataclass(frozen=True, kw_only=True, slots=True)
class StartTimer:
    seconds: float


@dataclass(frozen=True, kw_only=True, slots=True)
class SaveCounters:
    """Persist STAN, invoice and batch numbers (before the message that uses them leaves)."""

    stan: int
    invoice: int
    batch: int


@dataclass(frozen=True, kw_only=True, slots=True)
class SaveSignOn:
    signed_on: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class AppendJournal:
    record: JournalRecord


@dataclass(frozen=True, kw_only=True, slots=True)
class CloseBatch:
    """The host agreed the batch: clear the journal's open batch."""

    batch: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Finish:
    result: "Result"


Action = Union[Connect, Send, StartTimer, SaveCounters, SaveSignOn, AppendJournal, CloseBatch, Finish]


class Outcome(enum.Enum):
    #: The host approved (sign-on, echo, sale).
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

    @property
    def completed(self) -> bool:
        """The exchange completed (the host answered), whatever it said."""
        return self not in (Outcome.NO_ANSWER, Outcome.CONNECT_FAILED)


@dataclass(frozen=True, kw_only=True, slots=True)
class Result:
    """What the operator sees, and what ``--json`` prints."""

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


# --------------------------------------------------------------------------- the table

_LOCAL = (SignOn, SignOff, Echo, Sale, Settle)
_REMOTE_IGNORED = (Connected, ConnectFailed, ResponseStray, MessageUnreadable, TimerExpired, ConnectionLost)

TRANSITIONS: dict[State, dict[type, State]] = {
    State.IDLE: {
        **{op: State.CONNECTING for op in _LOCAL},
        **{remote: State.IDLE for remote in _REMOTE_IGNORED},
    },
    State.CONNECTING: {
        Connected: State.AWAITING_RESPONSE,  # entry: save counters, Send, StartTimer
        ConnectFailed: State.DONE,  # CONNECT_FAILED; nothing was written
        ConnectionLost: State.DONE,
        TimerExpired: State.DONE,
        ResponseStray: State.CONNECTING,
        MessageUnreadable: State.CONNECTING,
    },
    State.AWAITING_RESPONSE: {
        ResponseMatched: State.DONE,
        ResponseStray: State.AWAITING_RESPONSE,  # recorded by the shell and ignored; timer keeps running
        MessageUnreadable: State.DONE,  # NO_ANSWER: a garbled answer is no answer
        TimerExpired: State.DONE,
        ConnectionLost: State.DONE,
        Connected: State.AWAITING_RESPONSE,
        ConnectFailed: State.AWAITING_RESPONSE,
    },
    State.DONE: {remote: State.DONE for remote in (*_REMOTE_IGNORED, ResponseMatched)},
}

_COMMAND_NAMES = {SignOn: "signon", SignOff: "signoff", Echo: "echo", Sale: "sale", Settle: "settle"}


class Terminal:
    """One terminal's transaction engine for one operation at a time.

    Args:
        profile: identity and conventions (TID, MID, family, NII).
        books: durable state loaded by the shell; updated in memory as actions are emitted.
        response_timeout_seconds: how long to wait for a matching answer.
    """

    def __init__(self, profile: Profile, books: Books, *, response_timeout_seconds: float = 60.0) -> None:
        self.profile = profile
        self.books = books
        self.response_timeout_seconds = response_timeout_seconds
        self.state = State.IDLE
        self.result: Result | None = None
        self._operation: Operation | None = None
        self._request: Message | None = None

    def handle(self, event: Input) -> list[Action]:
        """Apply one input; return the actions the shell must perform, in order.

        Raises:
            TerminalUsageError: a local operation in a state that cannot take it.
        """
        event = self._classify(event)
        try:
            new_state = TRANSITIONS[self.state][type(event)]
        except KeyError:
            raise TerminalUsageError(f"can't handle {type(event).__name__} in state {self.state.name}") from None
        old_state, self.state = self.state, new_state
        return self._actions(old_state, event)

    def start_next_operation(self) -> None:
        """Return to IDLE after DONE, ready for the next operation."""
        if self.state is not State.DONE:
            raise TerminalUsageError(f"can't start the next operation in state {self.state.name}")
        self.state, self.result, self._operation, self._request = State.IDLE, None, None, None

    # ------------------------------------------------------------------- guards and entry actions

    def _classify(self, event: Input) -> Any:
        if not isinstance(event, MessageReceived):
            return event
        message, request = event.message, self._request
        if request is None:
            return ResponseStray(message=message, why="no request outstanding")
        expected = response_mti(request["t"])
        if message.get("t") != expected:
            return ResponseStray(message=message, why=f"MTI {message.get('t')}, expecting {expected}")
        if message.get("11") != request["11"]:
            return ResponseStray(message=message, why=f"STAN {message.get('11')!r}, expecting {request['11']}")
        if message.get("41") != request["41"]:
            return ResponseStray(message=message, why=f"TID {message.get('41')!r}, expecting {request['41']}")
        return ResponseMatched(message=message)

    def _actions(self, old: State, event: Any) -> list[Action]:
        if isinstance(event, _LOCAL):
            self._operation = event
            return [Connect()]
        if old is State.CONNECTING and isinstance(event, Connected):
            return self._send_request()
        if self.state is State.DONE and old is not State.DONE:
            return self._finish(event)
        return []

    def _send_request(self) -> list[Action]:
        op, books, profile = self._operation, self.books, self.profile
        assert op is not None
        books.stan = books.stan % 999_999 + 1
        stan, batch = f"{books.stan:06d}", f"{books.batch:06d}"
        if isinstance(op, Sale):
            books.invoice = books.invoice % 999_999 + 1
            request = sale_request(profile, op.card, amount_minor=op.amount_minor, stan=stan,
                                   invoice=f"{books.invoice:06d}", batch=batch, now=op.now)
        elif isinstance(op, Settle):
            request = settlement_request(profile, books.open_batch_totals(), stan=stan, batch=batch, now=op.now)
        else:
            purpose = {SignOn: "sign_on", SignOff: "sign_off", Echo: "echo"}[type(op)]
            request = network_request(profile, purpose, stan=stan, batch=batch, now=op.now)
        self._request = request
        return [SaveCounters(stan=books.stan, invoice=books.invoice, batch=books.batch), Send(message=request),
                StartTimer(seconds=self.response_timeout_seconds)]

    def _finish(self, event: Any) -> list[Action]:
        op, request = self._operation, self._request
        assert op is not None
        command = _COMMAND_NAMES[type(op)]
        if isinstance(event, ResponseMatched):
            actions, result = self._on_response(op, command, event.message)
        elif request is None:
            reason = getattr(event, "reason", "") or "connect timed out"
            actions, result = [], Result(command=command, outcome=Outcome.CONNECT_FAILED, mti=None, response_mti=None,
                                         rc=None, stan=None, text=f"connection failed: {reason}")
        else:
            why = {TimerExpired: f"no answer within {self.response_timeout_seconds:g} s",
                   ConnectionLost: "connection lost before the answer",
                   MessageUnreadable: "unreadable answer"}[type(event)]
            detail = getattr(event, "reason", "")
            actions, result = [], Result(command=command, outcome=Outcome.NO_ANSWER, mti=request["t"], response_mti=None,
                                         rc=None, stan=request["11"], text=why + (f": {detail}" if detail else ""))
        self.result = result
        return [*actions, Finish(result=result)]

    def _on_response(self, op: Operation, command: str, response: Message) -> tuple[list[Action], Result]:
        request = self._request
        assert request is not None
        rc = response.get("39", "")
        entry = codes.lookup(rc)
        base = Result(command=command, outcome=Outcome.APPROVED if entry.approved else Outcome.DECLINED,
                      mti=request["t"], response_mti=response["t"], rc=rc, stan=request["11"],
                      text=entry.meaning)
        actions: list[Action] = []
        if isinstance(op, SignOn) and entry.approved:
            self.books.signed_on = True
            if self.profile.family == "cup" and len(response.get("60", "")) >= 8:
                self.books.batch = int(response["60"][2:8])  # adopt the host's batch number (60.2)
            actions = [SaveCounters(stan=self.books.stan, invoice=self.books.invoice, batch=self.books.batch),
                       SaveSignOn(signed_on=True)]
        elif isinstance(op, SignOff) and entry.approved:
            self.books.signed_on = False
            actions = [SaveSignOn(signed_on=False)]
        elif isinstance(op, Sale):
            details = {"amount_minor": op.amount_minor, "invoice": request.get("62") or f"{self.books.invoice:06d}"}
            if entry.approved:
                record = JournalRecord(
                    invoice=details["invoice"], stan=request["11"], batch=f"{self.books.batch:06d}", kind="sale",
                    amount_minor=op.amount_minor, pan=op.card.pan, expiry=op.card.expiry,
                    rrn=response.get("37", ""), auth_code=response.get("38", ""), local_date=request["13"],
                    local_time=request["12"], settlement_date=response.get("15"))
                self.books.records.append(record)
                actions = [AppendJournal(record=record)]
                details.update(rrn=record.rrn, auth_code=record.auth_code)
            base = replace(base, details=details)
        elif isinstance(op, Settle):
            actions, base = self._on_settlement(response, base)
        return actions, base

    def _on_settlement(self, response: Message, base: Result) -> tuple[list[Action], Result]:
        totals = self.books.open_batch_totals()
        batch = f"{self.books.batch:06d}"
        if self.profile.family == "cup":
            try:
                _, flag = parse_cup_field_48(response.get("48", ""))
            except ValueError:
                flag = "3"
            balanced = base.rc == codes.APPROVED and flag == CUP_BALANCED
        else:
            balanced = base.rc == codes.APPROVED
        details = {"batch": batch, "settlement_result": "balanced" if balanced else "unbalanced",
                   "sale_count": totals.debit_count, "sale_amount_minor": totals.debit_minor,
                   "refund_count": totals.credit_count, "refund_amount_minor": totals.credit_minor}
        if not balanced:
            return [], replace(base, outcome=Outcome.UNBALANCED, details=details,
                               text="settlement unbalanced: host totals differ" + (f" ({base.text})" if base.rc else ""))
        self.books.records.clear()
        self.books.batch = self.books.batch % 999_999 + 1
        details["next_batch"] = f"{self.books.batch:06d}"
        return ([CloseBatch(batch=batch),
                 SaveCounters(stan=self.books.stan, invoice=self.books.invoice, batch=self.books.batch)],
                replace(base, outcome=Outcome.BALANCED, details=details, text="settlement balanced, batch closed"))

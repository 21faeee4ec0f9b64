"""The terminal core (sans-IO): :class:`Terminal` runs each operation as a flow, a generator that
yields what it waits for (an exchange, a print, a pause) and emits actions; the pure helpers it uses."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from emulator.messages import (
    INTL_SETTLE_AFTER_UPLOAD,
    INTL_SETTLE_FIRST,
    Profile,
    UploadItem,
    cup_record_upload,
    cup_upload_end,
    cup_upload_request,
    device_info,
    financial_request,
    intl_upload_request,
    network_request,
    repeat_mti,
    reversal_request,
    settlement_request,
)
from emulator.settings import TerminalSettings
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
)
from emulator.terminal.events import (
    COMMAND_NAMES,
    DURABLE_ACTIONS,
    KIND_OF,
    Action,
    Adjust,
    Backoff,
    CloseBatch,
    CommitApproval,
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
    Operation,
    Outcome,
    ParkAdvice,
    ParkReversal,
    PreAuthVoid,
    Print,
    Printed,
    Reference,
    Refund,
    RemoveAdvice,
    Reprint,
    ResponseMatched,
    ResponseStray,
    Result,
    Reverse,
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
from emulator.terminal.table import FLOW, OPERATIONS, TRANSITIONS
from specs import codes
from specs.codec import Message
from specs.crypto import KEY_BLOCK_LAYOUT, check_pin, default_mac_algorithm, parse_key_block, pin_block
from specs.dialects import response_mti
from specs.masking import mask_pan
from specs.totals import (
    CUP_BALANCED,
    CUP_UPLOAD_MAX_RECORDS,
    SETTLEMENT_CLASS,
    Totals,
    parse_cup_field_48,
    parse_cup_field_48_foreign,
)
from specs.transactions import layout

# --------------------------------------------------------------------------- what flows wait for


@dataclass(frozen=True, kw_only=True, slots=True)
class _Exchange:
    request: Message
    purpose: str
    timeout_seconds: float
    mac: bool
    before_send: tuple[Action, ...] = ()
    after_send: tuple[Action, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class _Print:
    lines: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class _Pause:
    attempt: int
    purpose: str


@dataclass(frozen=True, kw_only=True, slots=True)
class _Answered:
    request: Message
    message: Message
    #: False only when we sent a MAC, verification is on and the answer's MAC is missing or wrong.
    mac_ok: bool

    @property
    def rc(self) -> str:
        return self.message.get("39", "")


@dataclass(frozen=True, kw_only=True, slots=True)
class _NoAnswer:
    request: Message
    why: str
    #: Reversal reason this failure implies: 98 nothing received in time, 06 something unusable.
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class _NotConnected:
    reason: str


_Wait = _Exchange | _Print | _Pause
_Answer = _Answered | _NoAnswer | _NotConnected
Flow = Generator[_Wait, Any, Result]

#: Operations only a supervisor may do when operator roles are enforced (C14).
SUPERVISOR_OPERATIONS: tuple[type, ...] = (Void, PreAuthVoid, CompletionVoid, Refund, Settle, DismissReceipt)
#: Operations a pending receipt does not block: housekeeping and getting the receipt out.
_NOT_BLOCKED_BY_RECEIPT: tuple[type, ...] = (SignOn, SignOff, Echo, Settle, Reverse, Reprint, DismissReceipt, Idle)

#: Kinds whose original must be in the open batch / may be in any batch, and which kinds qualify.
_ORIGINALS: Mapping[str, tuple[tuple[str, ...], bool]] = {
    "void": (("sale",), True),
    "completion_void": (("completion",), True),
    "adjust": (("sale", "offline_sale"), True),
    "preauth_void": (("preauth",), False),
    "completion": (("preauth",), False),
    "refund": (("sale", "completion", "offline_sale"), False),
}
#: What an approved transaction does to its original.
_ORIGINAL_BECOMES: Mapping[str, str] = {"void": VOIDED, "completion_void": VOIDED, "preauth_void": VOIDED,
                                        "completion": COMPLETED}


class Terminal:
    """One terminal's transaction engine, one operation at a time.

    Args:
        profile: identity and conventions (TID, MID, family, NII).
        books: durable state loaded by the shell; kept in step with every durable action emitted.
        response_timeout_seconds: how long to wait for a matching answer.
        settings: fix toggles, limits, keys and terminal-side faults.
    """

    def __init__(self, profile: Profile, books: Books, *, response_timeout_seconds: float = 60.0,
                 settings: TerminalSettings | None = None) -> None:
        self.profile = profile
        self.books = books
        self.response_timeout_seconds = response_timeout_seconds
        self.settings = settings or TerminalSettings()
        self.state = self._resting_state()
        self.result: Result | None = None
        self._flow: Flow | None = None
        self._exchange: _Exchange | None = None
        self._operator = self.settings.default_operator
        self._linked = False
        self._out: list[Action] = []
        self._notes: dict[str, Any] = {}
        #: This operation's last answer to each reversal (STAN -> answer), for its result.
        self._reversal_answers: dict[str, _Answered] = {}
        #: Interim (09) answers to the request outstanding; bounded by ``max_interim_answers``.
        self._interims = 0
        self._keys = self._load_keys()
        # Counters in use: a STAN or invoice number is taken here and reaches the books (and the
        # journal) with the SaveCounters that goes out before the message using it; a number
        # taken for a request that never left (connect failed) is simply skipped.
        self._stan, self._invoice = books.stan, books.invoice

    # ------------------------------------------------------------------- the machine

    def handle(self, event: Input) -> list[Action]:
        """Apply one input; return the actions the shell must perform, in order.

        Raises:
            TerminalUsageError: a local operation in a state that cannot take it.
        """
        received = event if isinstance(event, MessageReceived) else None
        event = self._classify(event)
        if received is None:
            return self._transition(event)
        observed = self._observed(received, event)
        return [observed, *self._transition(event)]

    def _transition(self, event: Any) -> list[Action]:
        try:
            target = TRANSITIONS[self.state][type(event)]
        except KeyError:
            raise TerminalUsageError(f"can't handle {type(event).__name__} in state {self.state.name}") from None
        if target != FLOW:
            old, self.state = self.state, State(target)
            if old is State.CONNECTING and isinstance(event, Connected):
                self._linked = True
                return self._write_request()
            return []
        if isinstance(event, OPERATIONS):
            self._notes, self._reversal_answers = {}, {}
            self._flow = self._start(event)  # type: ignore[arg-type]
            return self._resume(None)
        if self.state is State.PRINTING:
            return self._resume(isinstance(event, Printed))
        if self.state is State.BACKING_OFF:
            return self._resume(None)
        if isinstance(event, ResponseMatched) and event.message.get("39") == codes.REQUEST_IN_PROGRESS:
            return self._interim()
        return self._resume(self._answer_for(event))

    def _interim(self) -> list[Action]:
        """An interim answer (39=09, "request in progress"): not the host's verdict, so nothing is
        decided on it (the pending reversal stays).  Up to ``max_interim_answers`` of them restart
        the response timer; past that the timer runs out as if they had not come."""
        exchange = self._exchange
        assert exchange is not None
        self._interims += 1
        if self._interims > self.settings.max_interim_answers:
            return []
        return [StartTimer(seconds=exchange.timeout_seconds)]

    def reverse_at_idle_after(self, operation: Operation, result: Result) -> bool:
        """Does the reversal at idle follow this operation's ``result`` ("at idle", ``reverse_at_idle``)?

        Yes when a pending reversal is left behind that the operation did not just try: not after a
        ``reverse`` or an idle run itself, nor when no link could be made (the host is not there now).
        """
        return bool(self.settings.reverse_at_idle and self.books.reversals
                    and not isinstance(operation, (Reverse, Idle)) and result.outcome is not Outcome.CONNECT_FAILED
                    and not result.details.get("reversal_sent"))

    @staticmethod
    def with_idle(result: Result, idle: Result) -> Result:
        """``result`` with the fate of the reversal at idle that followed it folded in
        (``reversal_sent``, ``reversal_cleared``, ``reversal_rc``, ``reversal_parked``, ``reversal_pending``,
        ``idle``)."""
        details = dict(result.details)
        details["reversal_sent"] = bool(idle.details.get("reversal_sent"))
        for key in ("reversal_cleared", "reversal_rc", "reversal_parked"):
            if key in idle.details:
                details[key] = idle.details[key]
        details["reversal_pending"] = not idle.details.get("reversal_cleared", False) and not idle.details.get(
            "reversal_parked", False)
        details["idle"] = {"outcome": idle.outcome.value, "text": idle.text, "rc": idle.rc}
        return replace(result, details=details)

    def start_next_operation(self) -> None:
        """Return to IDLE after DONE, ready for the next operation."""
        if self.state is not State.DONE:
            raise TerminalUsageError(f"can't start the next operation in state {self.state.name}")
        self.state, self.result, self._flow, self._exchange = self._resting_state(), None, None, None

    def _resting_state(self) -> State:
        """IDLE, or RECEIPT_PENDING while an open-batch approval's receipt never printed."""
        if self.settings.block_sales_while_receipt_pending and self.pending_receipts:
            return State.RECEIPT_PENDING
        return State.IDLE

    @property
    def pending_receipts(self) -> list[JournalRecord]:
        """Records of the open batch whose receipt never printed and was not waived, oldest first."""
        return [r for r in self.books.records if r.receipt_pending]

    def _classify(self, event: Input) -> Any:
        if not isinstance(event, MessageReceived):
            return event
        message = event.message
        request = self._exchange.request if self._exchange and self.state is State.AWAITING_RESPONSE else None
        if request is None:
            return ResponseStray(message=message, why="no request outstanding")
        why = mismatch(request, message)
        if why is not None:
            return ResponseStray(message=message, why=why)
        return ResponseMatched(message=message, mac_valid=event.mac_valid,
                               processing_requirement=event.processing_requirement)

    def _observed(self, received: MessageReceived, event: Any) -> Observed:
        """The verdict on a received message, for the wire trace (G8: matched, MAC checked)."""
        if not isinstance(event, ResponseMatched):
            return Observed(message=received.message, matched=False, why=getattr(event, "why", ""))
        exchange = self._exchange
        checked = bool(exchange and exchange.mac and self._mak is not None and self.settings.verify_response_mac)
        return Observed(message=received.message, matched=True,
                        mac_verified=received.mac_valid is True if checked else None)

    def _answer_for(self, event: Any) -> _Answer:
        exchange = self._exchange
        assert exchange is not None
        if isinstance(event, (ConnectFailed, ConnectionLost)) and not self._linked:
            return _NotConnected(reason=event.reason or "connection lost")
        if isinstance(event, ResponseMatched):
            sent_mac = exchange.mac and self._mak is not None
            mac_ok = not (sent_mac and self.settings.verify_response_mac and event.mac_valid is not True)
            self._observe(event, exchange)
            return _Answered(request=exchange.request, message=event.message, mac_ok=mac_ok)
        self._drop_link()
        if isinstance(event, TimerExpired):
            return _NoAnswer(request=exchange.request, why=f"no answer within {exchange.timeout_seconds:g} s",
                             reason="98")
        if isinstance(event, ConnectionLost):
            detail = f": {event.reason}" if event.reason else ""
            return _NoAnswer(request=exchange.request, why=f"connection lost before the answer{detail}", reason="98")
        assert isinstance(event, MessageUnreadable)
        return _NoAnswer(request=exchange.request, why=f"unreadable answer: {event.reason}", reason="06")

    def _resume(self, value: Any) -> list[Action]:
        assert self._flow is not None
        try:
            waiting = self._flow.send(value)
        except StopIteration as stop:
            result: Result = stop.value
            self.result, self.state = result, State.DONE
            self._drop_link()
            return [*self._take(), Finish(result=result)]
        if isinstance(waiting, _Print):
            self.state = State.PRINTING
            return [*self._take(), Print(lines=waiting.lines)]
        if isinstance(waiting, _Pause):
            self.state = State.BACKING_OFF
            self._drop_link()
            return [*self._take(), Backoff(attempt=waiting.attempt, purpose=waiting.purpose)]
        self._exchange = waiting
        if self._linked:
            self.state = State.AWAITING_RESPONSE
            return [*self._take(), *self._write_request()]
        self.state = State.CONNECTING
        return [*self._take(), Connect()]

    def _write_request(self) -> list[Action]:
        exchange = self._exchange
        assert exchange is not None
        for action in exchange.before_send:
            self._emit(action)
        mak = self._mak if exchange.mac else None
        self._emit(Send(message=exchange.request, mac_key=mak, mac_algorithm=self._mac_algorithm if mak else ""))
        for action in exchange.after_send:
            self._emit(action)
        self._emit(StartTimer(seconds=exchange.timeout_seconds))
        self._interims = 0
        return self._take()

    def _emit(self, action: Action) -> None:
        if isinstance(action, DURABLE_ACTIONS):
            self.books.apply(action)
        self._out.append(action)

    def _take(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _drop_link(self) -> None:
        if self._linked:
            self._out.append(Disconnect())
            self._linked = False

    # ------------------------------------------------------------------- keys and host instructions

    def _load_keys(self) -> WorkingKeys | None:
        if not self.books.key_block:
            return None
        try:
            return _parse_keys(self.settings, self.books.key_block, self.books.key_mode or "003")
        except ValueError:
            return None  # keys no longer check (TMK changed): the terminal must sign on again

    @property
    def has_keys(self) -> bool:
        """Working keys from the last sign-on are loaded (and check against the TMK)."""
        return self._keys is not None

    @property
    def working_keys(self) -> WorkingKeys | None:
        """The working keys of the last sign-on, as loaded from the books (None: none, or they no
        longer check against the TMK)."""
        return self._keys

    @property
    def _mak(self) -> bytes | None:
        return self._keys.mak if self._keys else None

    @property
    def _mac_algorithm(self) -> str:
        return self.settings.mac_algorithm or default_mac_algorithm(self.profile.family)

    def _observe(self, event: ResponseMatched, exchange: _Exchange) -> None:
        """Act on what every answer may carry: CUP header 处理要求, re-sign-on response codes.

        With ``auto_signon_on_77`` the terminal signs on again after 77, 22, A0, 99 or 处理要求 3 (C09);
        without it, it records nothing and carries on as it was.  A 22 also teaches it that this host
        wants a sign-on every business day.
        """
        auto = self.settings.auto_signon_on_77
        requirement = event.processing_requirement
        if requirement == "3" and exchange.purpose != "sign_on":
            if auto:
                self._emit(SaveMarkers(signon_required=True))
        elif requirement in PARAMETER_DOWNLOADS:
            self._emit(SaveMarkers(param_download=requirement))
        elif requirement == "0" and exchange.purpose == "sign_on" and self.books.param_download:
            self._emit(SaveMarkers(param_download=""))
        rc = event.message.get("39", "")
        if exchange.purpose == "sign_on" or not rc:
            return
        if rc == codes.SUSPECTED_MALFUNCTION and not self.books.daily_signon:
            self._emit(SaveMarkers(daily_signon=True))
        if codes.lookup(rc).action is codes.TerminalAction.RESIGN_ON and auto:
            self._emit(SaveMarkers(signon_required=True))

    def _sign_on_reason(self, now: datetime) -> str | None:
        """Why the terminal must sign on before this operation, or None."""
        books, s = self.books, self.settings
        if not books.signed_on:
            return "the terminal is not signed on"
        if books.signon_required:
            return "the host asked for a sign-on"
        if books.key_block and self._keys is None:
            return "the working keys no longer check"
        if (s.auto_signon_on_77 and (s.daily_signon or books.daily_signon) and books.signon_date
                and now.date().isoformat() > books.signon_date):
            return f"first transaction of business day {now.date().isoformat()} (last sign-on {books.signon_date})"
        return None

    # ------------------------------------------------------------------- small helpers for flows

    def _take_stan(self) -> str:
        self._stan = self._stan % 999_999 + 1
        return f"{self._stan:06d}"

    def _take_invoice(self) -> str:
        self._invoice = self._invoice % 999_999 + 1
        return f"{self._invoice:06d}"

    def _counters(self, batch: int | None = None) -> SaveCounters:
        return SaveCounters(stan=self._stan, invoice=self._invoice, batch=self.books.batch if batch is None else batch)

    @property
    def _batch(self) -> str:
        return f"{self.books.batch:06d}"

    def _exchange_of(self, request: Message, purpose: str, *, mac: bool | None = None, timeout_factor: float = 1.0,
                     before: tuple[Action, ...] = (), after: tuple[Action, ...] = ()) -> _Exchange:
        """One request/answer exchange; ``mac`` None: the host profile says whether this MTI carries 64."""
        if mac is None:
            mac = self.profile.layout.carries_mac(request["t"])
        return _Exchange(request=request, purpose=purpose, mac=mac, before_send=before, after_send=after,
                         timeout_seconds=self.response_timeout_seconds * timeout_factor)

    def _result(self, op: Operation, outcome: Outcome, text: str, *, answer: _Answer | None = None,
                request: Message | None = None, **details: Any) -> Result:
        request = request if request is not None else getattr(answer, "request", None)
        message = answer.message if isinstance(answer, _Answered) else None
        return Result(command=COMMAND_NAMES[type(op)], outcome=outcome, mti=request["t"] if request else None,
                      response_mti=message["t"] if message else None,
                      rc=message.get("39") if message is not None else None,
                      stan=request["11"] if request else None, text=text, details={**details, **self._notes})

    def _failure(self, op: Operation, answer: _Answer, what: str = "") -> Result:
        """The result of an exchange that did not complete."""
        if isinstance(answer, _NotConnected):
            return self._result(op, Outcome.CONNECT_FAILED, f"connection failed: {answer.reason}")
        if isinstance(answer, _NoAnswer):
            return self._result(op, Outcome.NO_ANSWER, answer.why + (f" ({what})" if what else ""), answer=answer)
        return self._result(op, Outcome.DECLINED, _rc_text(answer.rc) + (f" ({what})" if what else ""), answer=answer)

    def _refused(self, op: Operation, text: str) -> Result:
        return self._result(op, Outcome.REFUSED, text)

    def _exchange_once(self, exchange: _Exchange) -> Generator[_Wait, Any, _Answer]:
        answer: _Answer = yield exchange
        return answer

    # ------------------------------------------------------------------- flows

    def _start(self, op: Operation) -> Flow:
        self._operator = op.operator or self.settings.default_operator
        self._notes["operator"] = self._operator
        refusal = self._operator_refusal(op)
        if refusal is None and self.state is State.RECEIPT_PENDING and not isinstance(op, _NOT_BLOCKED_BY_RECEIPT):
            refusal = _receipt_pending_text(self.pending_receipts)
        if refusal is not None:
            return self._refusal_flow(op, refusal)
        if isinstance(op, (Reprint, DismissReceipt)):
            return self._receipt_flow(op)
        if isinstance(op, (SignOn, SignOff, Echo)):
            return self._network_flow(op)
        if isinstance(op, Settle):
            return self._settle_flow(op)
        if isinstance(op, (Reverse, Idle)):
            return self._reverse_flow(op)
        return self._financial_flow(op)

    def _operator_refusal(self, op: Operation) -> str | None:
        """C14: with ``enforce_operator_roles``, an operator the table does not know may do nothing,
        and voids, refunds and settlement need a supervisor."""
        s = self.settings
        if not s.enforce_operator_roles or isinstance(op, Idle):
            return None
        role = s.role_of(self._operator)
        command = COMMAND_NAMES[type(op)]
        if role is None:
            return (f"operator {self._operator} is not in the operator table ({', '.join(s.operators)}): "
                    f"{command} refused")
        if isinstance(op, SUPERVISOR_OPERATIONS) and role != "supervisor":
            supervisors = [o for o, r in s.operators.items() if r == "supervisor"]
            return (f"{command} needs a supervisor, operator {self._operator} is a {role}"
                    + (f" (supervisors: {', '.join(supervisors)})" if supervisors else ""))
        return None

    def _refusal_flow(self, op: Operation, text: str) -> Flow:
        return self._refused(op, text)
        yield  # a generator that ends at once: nothing is sent

    def _receipt_flow(self, op: Reprint | DismissReceipt) -> Flow:
        """Reprint a receipt (the same RRN and auth code), or waive the pending ones; no traffic."""
        pending = self.pending_receipts
        if op.invoice is not None:
            wanted = op.invoice.zfill(6)
            found = self.books.find(wanted)
            if found is None:
                return self._refused(op, f"no record with invoice {wanted} in the journal")
            records = [found]
        elif isinstance(op, DismissReceipt) or pending:
            records = pending if isinstance(op, DismissReceipt) else pending[:1]
        else:
            last = self.books.records[-1:] or self.books.history[-1:]
            records = list(last)
        if not records:
            return self._refused(op, "no receipt to " + ("dismiss" if isinstance(op, DismissReceipt) else "reprint"))
        invoices = [r.invoice for r in records]
        if isinstance(op, DismissReceipt):
            self._emit(UpdateJournal(edits=tuple((i, {"receipt_waived": True}) for i in invoices)))
            return self._result(op, Outcome.APPROVED, f"receipt of invoice {', '.join(invoices)} dismissed "
                                "(never printed)", invoices=invoices)
        record = records[0]
        printed = yield _Print(lines=("*** REPRINT ***", *_receipt(self.profile, record)))
        details: dict[str, Any] = {"invoice": record.invoice, "rrn": record.rrn, "auth_code": record.auth_code,
                   "amount_minor": record.amount_minor, "printed": bool(printed)}
        if not printed:
            return self._refused(op, f"printer failed: the receipt of invoice {record.invoice} is still pending")
        self._emit(UpdateJournal(edits=((record.invoice, {"printed": True}),)))
        return self._result(op, Outcome.APPROVED, f"receipt of invoice {record.invoice} reprinted", **details)

    def _network_flow(self, op: SignOn | SignOff | Echo) -> Flow:
        if isinstance(op, SignOn):
            answer = yield from self._sign_on(op.now)
            if not isinstance(answer, _Answered):
                return self._failure(op, answer)
            return self._sign_on_result(op, answer)
        purpose = "sign_off" if isinstance(op, SignOff) else "echo"
        stan = self._take_stan()
        request = network_request(self.profile, purpose, stan=stan, batch=self._batch, now=op.now)
        answer = yield from self._exchange_once(self._exchange_of(request, purpose, before=(self._counters(),)))
        if not isinstance(answer, _Answered):
            return self._failure(op, answer)
        approved = answer.rc == codes.APPROVED
        if approved and isinstance(op, SignOff):
            self._emit(SaveSignOn(signed_on=False))
            self._keys = None
        return self._result(op, Outcome.APPROVED if approved else Outcome.DECLINED, _rc_text(answer.rc),
                            answer=answer)

    def _sign_on(self, now: datetime) -> Generator[_Wait, Any, _Answer]:
        """F1: 0800, then verify and load the working keys, adopt the batch, sync the clock."""
        stan = self._take_stan()
        mode = self.settings.key_mode if self.profile.family == "cup" else "003"
        device = (device_info(self.profile, self.settings.software_version)
                  if self.profile.family == "cup" and self.settings.send_device_info else None)
        request = network_request(self.profile, "sign_on", stan=stan, batch=self._batch, now=now, key_mode=mode,
                                  operator=self._operator, device=device)
        answer: _Answer = yield from self._exchange_once(self._exchange_of(request, "sign_on", mac=False,
                                                                           before=(self._counters(),)))
        if not isinstance(answer, _Answered):
            return answer
        response = answer.message
        if answer.rc != codes.APPROVED:
            if self.settings.auto_signon_on_77:
                self._emit(SaveMarkers(signon_required=True))  # still not signed on: try again before the next transaction
            return answer
        block = response.get("62", "")
        if self.profile.family == "intl" and block:
            block = block.upper()  # INTL carries the 003 key block as hex text
        keys = None
        if block:
            try:
                keys = _parse_keys(self.settings, block, mode)
            except ValueError as exc:
                self._emit(SaveSignOn(signed_on=False))
                self._emit(SaveMarkers(signon_required=True))
                self._keys = None
                self._notes["key_error"] = str(exc)
                return answer
        batch = None
        if self.profile.family == "cup" and len(response.get("60", "")) >= 8 and response["60"][2:8].isdigit():
            batch = int(response["60"][2:8])  # adopt the host's batch number (60.2)
        self._emit(self._counters(batch))
        offset = _clock_offset(now, response)
        host_now = now + timedelta(seconds=offset) if offset is not None else now  # the clock as synced now
        self._emit(SaveSignOn(signed_on=True, key_block=block if keys else "", key_mode=mode if keys else "",
                              clock_offset_seconds=offset, signon_date=host_now.date().isoformat()))
        self._emit(SaveMarkers(signon_required=False))
        self._keys = keys
        self._notes["signed_on"] = True
        return answer

    def _sign_on_result(self, op: Operation, answer: _Answered) -> Result:
        if answer.rc == codes.APPROVED and "key_error" in self._notes:
            return self._result(op, Outcome.DECLINED, f"key check failed, still signed off: {self._notes['key_error']}",
                                answer=answer, batch=self._batch, keys_loaded=False)
        outcome = Outcome.APPROVED if answer.rc == codes.APPROVED else Outcome.DECLINED
        return self._result(op, outcome, _rc_text(answer.rc) + self._download_hint(), answer=answer,
                            batch=self._batch, keys_loaded=self._keys is not None)

    def _download_hint(self) -> str:
        """What the host asks the operator to download (CUP 处理要求 1/5/6), for the operator's text."""
        code = self.books.param_download
        return f"; the host asks for {PARAMETER_DOWNLOADS[code]} (处理要求 {code})" if code in PARAMETER_DOWNLOADS else ""

    def _sign_on_if_required(self, op: Operation, now: datetime) -> Generator[_Wait, Any, Result | None]:
        """Sign on first when the host told us to (or a new business day needs it); None when the
        terminal may go on."""
        reason = self._sign_on_reason(now)
        if reason is None:
            return None
        if not self.books.signed_on and not self.settings.auto_signon_on_77:
            return self._refused(op, f"{reason}: sign on first (no financial message leaves without working keys)")
        answer = yield from self._sign_on(now)
        self._notes["signed_on_again"] = True
        self._notes["signon_reason"] = reason
        if isinstance(answer, _Answered) and answer.rc == codes.APPROVED and "key_error" not in self._notes:
            return None
        if isinstance(answer, _Answered):
            why = self._notes.get("key_error") or _rc_text(answer.rc) + self._download_hint()
            return self._result(op, Outcome.DECLINED, f"sign-on required by the host failed: {why}", answer=answer)
        return self._failure(op, answer, "sign-on required by the host")

    # ---- reversals (F7) ----------------------------------------------------------------------

    def _stuck(self, reversal: PendingReversal) -> bool:
        return reversal.refusals >= self.settings.reversal_max_attempts

    def _reversals_first(self, op: Operation, *, force: bool = False) -> Generator[_Wait, Any, Result | None]:
        """Deliver every pending reversal (F7); None when none is left, else the blocking result."""
        for reversal in list(self.books.reversals):
            if self._stuck(reversal) and not force and not self.settings.park_stuck_reversal:
                return self._refused(op, _stuck_text(reversal))
            blocked = yield from self._deliver_reversal(op, reversal, force=force)
            if blocked is not None:
                return blocked
        return None

    def _deliver_reversal(self, op: Operation, reversal: PendingReversal, *, force: bool
                          ) -> Generator[_Wait, Any, Result | None]:
        s = self.settings
        last: _Answer | None = None
        for attempt in range(s.reversal_max_attempts):
            if attempt:
                yield _Pause(attempt=attempt, purpose="reversal")
            request = dict(reversal.message)
            if self.profile.family == "cup":
                request["39"] = reversal.reason
            last = yield from self._exchange_once(self._exchange_of(request, "reversal"))
            if isinstance(last, _NotConnected):
                return self._failure(op, last, f"reversal of STAN {reversal.stan} pending")
            reversal = replace(reversal, attempts=reversal.attempts + 1)
            self._emit(UpdateReversal(stan=reversal.stan, changes={"attempts": reversal.attempts}))
            self._notes["reversal_sent"] = True
            if isinstance(last, _NoAnswer):
                continue
            rc = last.rc
            self._notes["reversal_rc"] = rc
            self._reversal_answers[reversal.stan] = last
            if rc in s.final_reversal_codes and (rc != codes.APPROVED or last.mac_ok):
                self._emit(DeleteReversal(stan=reversal.stan))
                self._notes["reversal_cleared"] = True
                return None
            if self.books.signon_required and s.auto_signon_on_77:
                # The host refused the reversal for our keys or state (A0, 99, 77, 22 or 处理要求 3):
                # sign on now and repeat it under the new keys, rather than under the old ones (C03).
                blocked = yield from self._sign_on_if_required(op, op.now)
                if blocked is not None:
                    return replace(blocked, text=f"{blocked.text}; pending reversal of STAN {reversal.stan} "
                                                 "not cleared")
                continue
            if rc in s.reversal_retry_codes or not last.mac_ok:
                continue
            reversal = replace(reversal, refusals=reversal.refusals + 1, last_rc=rc)
            self._emit(UpdateReversal(stan=reversal.stan, changes={"refusals": reversal.refusals, "last_rc": rc}))
            if self._stuck(reversal) and not force:
                break
        if self._stuck(reversal) and s.park_stuck_reversal:
            self._emit(ParkReversal(stan=reversal.stan, why=f"refused {reversal.refusals} times, last rc {reversal.last_rc}"))
            self._notes["reversal_parked"] = True
            return None
        self._notes["reversal_cleared"] = False
        assert last is not None
        what = f"pending reversal of STAN {reversal.stan} not cleared"
        if isinstance(last, _Answered):
            return self._result(op, Outcome.DECLINED, f"{what}: host answered {last.rc} "
                                                      f"({_rc_text(last.rc)}), not final", answer=last)
        assert isinstance(last, _NoAnswer)
        return self._result(op, Outcome.NO_ANSWER, f"{what}: {last.why}", answer=last)

    def _reverse_flow(self, op: Reverse | Idle) -> Flow:
        self._notes["reversal_sent"] = False
        if not self.books.reversals:
            return self._result(op, Outcome.NOTHING_PENDING, "no reversal pending")
        force = isinstance(op, Reverse)
        if isinstance(op, Idle) and all(self._stuck(r) for r in self.books.reversals) \
                and not self.settings.park_stuck_reversal:
            return self._result(op, Outcome.NOTHING_PENDING, "only stuck reversals pending (run reverse)")
        blocked = yield from self._sign_on_if_required(op, op.now)
        if blocked is not None:
            return blocked
        first = self.books.reversals[0]
        blocked = yield from self._reversals_first(op, force=force)
        if blocked is not None:
            return blocked
        if self._notes.get("reversal_parked"):
            return self._result(op, Outcome.DECLINED, f"reversal of STAN {first.stan} refused by the host, parked for "
                                "manual follow-up", request={"t": "0400", "11": first.stan},
                                answer=self._reversal_answers.get(first.stan))
        return self._result(op, Outcome.APPROVED, f"reversal of STAN {first.stan} accepted",
                            request={"t": "0400", "11": first.stan}, answer=self._reversal_answers.get(first.stan))

    # ---- advices (F6) ------------------------------------------------------------------------

    def _deliver_advices(self, op: Operation, *, limit: int | None, retry: bool
                         ) -> Generator[_Wait, Any, Result | None]:
        """Send queued advices in order: ``limit`` of them (None: all), repeating each with backoff
        when ``retry``; None unless the link failed."""
        s = self.settings
        queue = list(self.books.advices)
        for advice in queue[:limit] if limit is not None else queue:
            repeats = 0
            while True:
                if repeats:
                    yield _Pause(attempt=repeats, purpose="advice")
                request = dict(advice.message)
                if advice.attempts:
                    request["t"] = repeat_mti(request["t"])
                original = self.books.find(advice.invoice) if advice.kind == "adjust" else None
                if original is not None and original.rrn:
                    # A tip adjust of an offline sale was queued before the host gave the sale its RRN
                    # (in the sale's 0230); the host finds originals by RRN, so it goes in now.
                    request["37"] = original.rrn
                # The attempt is counted as soon as the advice is written, so that after a crash the
                # next attempt still goes out with the repeat MTI.
                sent = UpdateAdvice(stan=advice.stan, attempts=advice.attempts + 1)
                answer = yield from self._exchange_once(self._exchange_of(request, "advice", after=(sent,)))
                if isinstance(answer, _NotConnected):
                    return self._failure(op, answer, "queued advices not delivered")
                advice = replace(advice, attempts=sent.attempts)
                self._notes["advices_sent"] = self._notes.get("advices_sent", 0) + 1
                if isinstance(answer, _Answered) and answer.mac_ok and answer.rc in s.saf_valid_codes:
                    response, edits, record = answer.message, advice.on_accept, advice.record
                    if record is not None:  # an online advice: journalled now that the host took it
                        record = replace(record, rrn=response.get("37", ""), auth_code=response.get("38", ""),
                                         settlement_date=response.get("15"), receipt_waived=True)
                    elif advice.kind == "offline_sale" and response.get("37"):
                        edits = (*edits, (advice.invoice, {"rrn": response["37"]}))
                    self._emit(RemoveAdvice(stan=advice.stan, record=record, edits=edits))
                    break
                if (isinstance(answer, _Answered) and answer.mac_ok and answer.rc not in s.saf_retry_codes):
                    self._emit(RemoveAdvice(stan=advice.stan, edits=advice.on_decline))
                    self._notes["advices_declined"] = self._notes.get("advices_declined", 0) + 1
                    break
                if advice.attempts >= s.saf_max_attempts:
                    why = answer.why if isinstance(answer, _NoAnswer) else f"rc {answer.rc}"
                    self._emit(ParkAdvice(stan=advice.stan, why=f"{advice.attempts} attempts, last: {why}"))
                    break
                if not retry:
                    return None
                repeats += 1
        return None

    # ---- financial transactions (F4, F5, F6, F8) ---------------------------------------------

    def _find_original(self, kind: str, ref: Reference) -> JournalRecord | None:
        kinds, open_batch_only = _ORIGINALS[kind]
        pool = self.books.records if open_batch_only else [*self.books.history, *self.books.records]
        eligible = [r for r in pool if r.kind in kinds and r.status == APPROVED
                    and not (kind == "adjust" and r.uploaded)]
        if ref.invoice is not None:
            eligible = [r for r in eligible if r.invoice == ref.invoice.zfill(6)]
        if ref.rrn is not None:
            eligible = [r for r in eligible if r.rrn == ref.rrn]
        return eligible[-1] if eligible else None

    def _local_refusal(self, op: Financial, kind: str, amount: int) -> str | None:
        """Reasons to refuse without any traffic (docs/domain.md#f4 pre-conditions)."""
        s, books = self.settings, self.books
        if books.settlement is not None and s.block_sales_while_settling:
            return (f"settlement of batch {books.settlement.batch} is pending ({books.settlement.stage.value}): "
                    "run settle to finish it before new transactions")
        stuck = next((r for r in books.reversals if self._stuck(r)), None)
        if stuck is not None and not s.park_stuck_reversal and s.reversal_first:
            return _stuck_text(stuck)
        if kind != "balance" and s.max_tranlog and len(books.records) >= s.max_tranlog:
            return f"batch full: {len(books.records)} of {s.max_tranlog} records; settle first"
        if SETTLEMENT_CLASS.get(kind) == "debit" and s.max_batch_amount_minor:
            total = books.open_batch_totals().debit_minor
            if total + amount > s.max_batch_amount_minor:
                return (f"batch amount cap reached: {_money(total)} + {_money(amount)} exceeds "
                        f"{_money(s.max_batch_amount_minor)}; settle first")
        return None

    def _financial_flow(self, op: Financial) -> Flow:
        kind = KIND_OF[type(op)]
        self._notes["reversal_sent"] = False
        lay = layout(kind, self.profile.family)
        original: JournalRecord | None = None
        if kind in _ORIGINALS:
            original = self._find_original(kind, op.original)  # type: ignore[union-attr]
            if original is None:
                kinds = " or ".join(_ORIGINALS[kind][0])
                where = "in the open batch" if _ORIGINALS[kind][1] else "in the journal"
                wanted = (f" with invoice {op.original.invoice}" if op.original.invoice  # type: ignore[union-attr]
                          else f" with RRN {op.original.rrn}" if op.original.rrn else "")  # type: ignore[union-attr]
                return self._refused(op, f"no eligible {kinds}{wanted} {where} for {COMMAND_NAMES[type(op)]}")
        amount, tip = _amounts(op, original)
        if kind == "refund" and original is not None and amount > original.amount_minor:
            return self._refused(op, f"refund of {_money(amount)} exceeds the original {_money(original.amount_minor)}")
        if isinstance(op, Adjust) and amount < (original.amount_minor - original.tip_minor if original else 0):
            return self._refused(op, "adjusted amount is below the original sale amount")
        refusal = self._local_refusal(op, kind, amount)
        if refusal is not None:
            return self._refused(op, refusal)
        card = getattr(op, "card", None)
        if card is None and original is not None and original.pan_purged:
            return self._refused(op, f"the card number of invoice {original.invoice} was purged when batch "
                                 f"{original.batch} closed (only {original.pan} is kept): present the card again "
                                 "(--pan, --expiry)")
        pan, expiry = (card.pan, card.expiry) if card else (original.pan, original.expiry)  # type: ignore[union-attr]
        pin = getattr(op, "pin", None)
        if pin is not None:
            try:
                check_pin(pin)
            except ValueError as exc:
                return self._refused(op, str(exc))
        if kind in ("offline_sale", "adjust"):
            return (yield from self._offline_flow(op, kind, lay.mti, amount, tip, pan, expiry, original))
        blocked = yield from self._sign_on_if_required(op, op.now)
        if blocked is not None:
            return blocked
        if pin and self._keys is None:
            return self._refused(op, "a PIN needs the PIN key from sign-on, and the host loaded none")
        if self.settings.reversal_first:
            blocked = yield from self._reversals_first(op)
            if blocked is not None:
                return blocked
        if lay.advice:
            return (yield from self._online_advice_flow(op, kind, amount, pan, expiry, original))
        return (yield from self._online_flow(op, kind, amount, pan, expiry, original, pin))

    def _online_flow(self, op: Financial, kind: str, amount: int, pan: str, expiry: str,
                     original: JournalRecord | None, pin: str | None) -> Flow:
        """F4: a reversible (or inquiry) 0100/0200 with reversal-first and commit-before-print."""
        s = self.settings
        lay = layout(kind, self.profile.family)
        journaled = kind != "balance"
        stan = self._take_stan()
        invoice = self._take_invoice() if journaled else None
        request = financial_request(
            self.profile, kind, stan=stan, batch=self._batch, now=op.now,
            amount_minor=amount if kind != "balance" else None, pan=pan, expiry=expiry, invoice=invoice,
            original=original.original() if original else None, operator=self._operator,
            pin_block=pin_block(pin, pan, self._keys.pik).hex().upper() if pin and self._keys else None)
        before: list[Action] = [self._counters()]
        after: list[Action] = [CrashPoint(point="b")]
        reversal = None
        if lay.reversible:
            reversal = PendingReversal(stan=stan, kind=kind,
                                       message=reversal_request(request, self.profile.family, reason="98"))
            (before if s.save_reversal_before_send else after).append(SaveReversal(reversal=reversal))
        before.append(CrashPoint(point="a"))
        answer = yield from self._exchange_once(self._exchange_of(request, kind, before=tuple(before),
                                                                  after=tuple(after)))
        details: dict[str, Any] = {"amount_minor": amount} if journaled else {}
        if invoice:
            details["invoice"] = invoice
        if isinstance(answer, _NotConnected):
            return self._failure(op, answer)
        if isinstance(answer, _NoAnswer) and not s.never_resend_financial:
            # The flawed terminal (C10): the very same request again, same STAN, instead of a
            # reversal.  A host that posted the first answers 94, and the decline below drops R.
            self._notes["resent"] = True
            answer = yield from self._exchange_once(self._exchange_of(request, kind))
            if isinstance(answer, _NotConnected):
                return self._failure(op, answer)
        if isinstance(answer, _NoAnswer):
            if reversal is not None and answer.reason != reversal.reason:
                self._emit(UpdateReversal(stan=stan, changes={"reason": answer.reason}))
            return self._result(op, Outcome.NO_ANSWER, answer.why, answer=answer,
                                reversal_pending=reversal is not None, **details)
        rc = answer.rc
        if rc != codes.APPROVED:
            if reversal is not None:
                self._emit(DeleteReversal(stan=stan))
            result_text = _rc_text(rc) + self._download_hint()
            if self.books.signon_required and self.settings.auto_signon_on_77:
                blocked = yield from self._sign_on_if_required(op, op.now)
                result_text += "; signed on again" if blocked is None else f"; {blocked.text}"
            yield from self._trickle(op)
            return self._result(op, Outcome.DECLINED, result_text, answer=answer, **details)
        if not answer.mac_ok:
            if reversal is not None:
                self._emit(UpdateReversal(stan=stan, changes={"reason": "A0"}))
            return self._result(op, Outcome.MAC_FAILED, "approval with a bad MAC: not committed, to be reversed with reason A0"
                                if reversal is not None else "answer with a bad MAC ignored",
                                answer=answer, reversal_pending=reversal is not None, **details)
        response = answer.message
        if not journaled:
            yield from self._trickle(op)
            return self._result(op, Outcome.APPROVED, _rc_text(rc), answer=answer,
                                balance=response.get("54", ""))
        self._emit(CrashPoint(point="c"))
        if s.card_removed_after_approval and reversal is not None:
            self._emit(UpdateReversal(stan=stan, changes={"reason": "96"}))
            return self._result(op, Outcome.DECLINED, "approved by the host but the card was removed: "
                                "not committed, reversal 96 pending", answer=answer, reversal_pending=True,
                                **details)
        assert invoice is not None
        record = JournalRecord(
            invoice=invoice, stan=stan, batch=self._batch, kind=kind, amount_minor=amount, pan=pan, expiry=expiry,
            rrn=response.get("37", ""), auth_code=response.get("38", ""), local_date=request["13"],
            local_time=request["12"], settlement_date=response.get("15"), mti=lay.mti,
            processing_code=lay.processing_code, condition=lay.condition,
            original_invoice=original.invoice if original else None, operator=self._operator)
        edits = _original_edits(kind, original)
        details.update(rrn=record.rrn, auth_code=record.auth_code)
        printed = yield from self._commit_and_print(record, reversal_stan=stan if reversal else None, edits=edits)
        if printed is None:
            return self._result(op, Outcome.DECLINED, "printer failure before the journal commit: transaction not "
                                "recorded", answer=answer, committed=False, printed=False, **details)
        yield from self._trickle(op)
        return self._result(op, Outcome.APPROVED, _rc_text(rc) + ("" if printed else "; printer failed: PLEASE "
                                                                                       "REPRINT"),
                            answer=answer, printed=printed, **details)

    def _commit_and_print(self, record: JournalRecord, *, reversal_stan: str | None,
                          edits: tuple[Edit, ...]) -> Generator[_Wait, Any, bool | None]:
        """5d: journal, clear R, then print (C29).  Returns whether it printed; None when the
        flawed order (print first) lost the transaction to a printer failure."""
        lines = _receipt(self.profile, record)
        if self.settings.commit_before_print:
            self._emit(CommitApproval(record=record, reversal_stan=reversal_stan, edits=edits))
            self._emit(CrashPoint(point="d"))
            printed = yield _Print(lines=lines)
            if printed:
                self._emit(UpdateJournal(edits=((record.invoice, {"printed": True}),)))
            return bool(printed)
        if reversal_stan is not None:
            self._emit(DeleteReversal(stan=reversal_stan))  # the flawed terminal clears R on 00 ...
        printed = yield _Print(lines=lines)  # ... and prints before it journals
        if not printed:
            return None
        self._emit(CommitApproval(record=replace(record, printed=True), reversal_stan=None, edits=edits))
        self._emit(CrashPoint(point="d"))
        return True

    def _trickle(self, op: Operation) -> Generator[_Wait, Any, None]:
        """After an online transaction that got an answer: at most one queued advice (F6)."""
        if self.settings.trickle_saf and self.books.advices and self._linked:
            yield from self._deliver_advices(op, limit=1, retry=False)

    def _online_advice_flow(self, op: Financial, kind: str, amount: int, pan: str, expiry: str,
                            original: JournalRecord | None) -> Flow:
        """An advice sent at once (CUP refund, INTL completion and pre-auth void): queued durably
        before it is sent, journalled when the host accepts it, repeated as 0221 when unanswered."""
        lay = layout(kind, self.profile.family)
        stan, invoice = self._take_stan(), self._take_invoice()
        request = financial_request(self.profile, kind, stan=stan, batch=self._batch, now=op.now,
                                    amount_minor=amount, pan=pan, expiry=expiry, invoice=invoice,
                                    original=original.original() if original else None, operator=self._operator)
        record = JournalRecord(invoice=invoice, stan=stan, batch=self._batch, kind=kind, amount_minor=amount, pan=pan,
                               expiry=expiry, rrn="", auth_code="", local_date=request["13"],
                               local_time=request["12"], mti=lay.mti, processing_code=lay.processing_code,
                               condition=lay.condition, original_invoice=original.invoice if original else None,
                               operator=self._operator)
        advice = Advice(stan=stan, kind=kind, message=request, invoice=invoice, record=record,
                        on_accept=_original_edits(kind, original))
        answer = yield from self._exchange_once(self._exchange_of(
            request, kind, before=(self._counters(), SaveAdvice(advice=advice), CrashPoint(point="a")),
            after=(UpdateAdvice(stan=stan, attempts=1), CrashPoint(point="b"))))
        details: dict[str, Any] = {"amount_minor": amount, "invoice": invoice}
        if isinstance(answer, _NotConnected):
            return self._failure(op, answer)
        s = self.settings
        if isinstance(answer, _NoAnswer):
            return self._result(op, Outcome.NO_ANSWER, f"{answer.why}; advice stored, repeated later as "
                                f"{repeat_mti(request['t'])}", answer=answer, advice_queued=True, **details)
        rc = answer.rc
        if not answer.mac_ok or rc in s.saf_retry_codes:
            why = "answer with a bad MAC" if not answer.mac_ok else _rc_text(rc)
            return self._result(op, Outcome.NO_ANSWER if not answer.mac_ok else Outcome.DECLINED,
                                f"{why}; advice stored, repeated later as {repeat_mti(request['t'])}",
                                answer=answer, advice_queued=True, **details)
        if rc not in s.saf_valid_codes:
            self._emit(RemoveAdvice(stan=stan))
            yield from self._trickle(op)
            return self._result(op, Outcome.DECLINED, _rc_text(rc), answer=answer, **details)
        record = replace(record, rrn=answer.message.get("37", ""), auth_code=answer.message.get("38", ""),
                         settlement_date=answer.message.get("15"))
        self._emit(CrashPoint(point="c"))
        self._emit(RemoveAdvice(stan=stan, record=record, edits=advice.on_accept))
        self._emit(CrashPoint(point="d"))
        printed = yield _Print(lines=_receipt(self.profile, record))
        if printed:
            self._emit(UpdateJournal(edits=((invoice, {"printed": True}),)))
        yield from self._trickle(op)
        details.update(rrn=record.rrn, auth_code=record.auth_code, printed=bool(printed))
        return self._result(op, Outcome.APPROVED, _rc_text(rc) + ("" if printed else "; printer failed: PLEASE "
                                                                                      "REPRINT"), answer=answer,
                            **details)

    def _offline_flow(self, op: Financial, kind: str, mti: str, amount: int, tip: int, pan: str, expiry: str,
                      original: JournalRecord | None) -> Flow:
        """F6: offline sale and tip adjust: approved by the terminal, journalled and queued in one
        durable step, sent later (trickle after the next online transaction, drain before 0500)."""
        now = op.now
        stan = self._take_stan()
        if kind == "offline_sale":
            invoice = self._take_invoice()
            auth_code = f"Y{stan[-5:]}"  # the terminal's own approval code (Y = offline approved)
            request = financial_request(self.profile, kind, stan=stan, batch=self._batch, now=now, amount_minor=amount,
                                        pan=pan, expiry=expiry, invoice=invoice, auth_code=auth_code,
                                        operator=self._operator)
            record = JournalRecord(invoice=invoice, stan=stan, batch=self._batch, kind=kind, amount_minor=amount,
                                   pan=pan, expiry=expiry, rrn="", auth_code=auth_code, local_date=request["13"],
                                   local_time=request["12"], mti=mti, processing_code=request["3"],
                                   condition=request["25"], offline=True, operator=self._operator)
            advice = Advice(stan=stan, kind=kind, message=request, invoice=invoice,
                            on_decline=((invoice, {"status": DECLINED}),))
            save = SaveAdvice(advice=advice, record=record)
        else:
            assert original is not None
            invoice = original.invoice
            request = financial_request(self.profile, kind, stan=stan, batch=self._batch, now=now, amount_minor=amount,
                                        pan=pan, expiry=expiry, invoice=invoice, original=original.original(),
                                        original_amount_minor=original.amount_minor
                                        if self.profile.family == "intl" else None, operator=self._operator)
            record = replace(original, amount_minor=amount, tip_minor=tip)
            advice = Advice(stan=stan, kind=kind, message=request, invoice=invoice,
                            on_decline=((invoice, {"amount_minor": original.amount_minor,
                                                   "tip_minor": original.tip_minor}),))
            save = SaveAdvice(advice=advice, edits=((invoice, {"amount_minor": amount, "tip_minor": tip}),))
        self._emit(self._counters())
        self._emit(save)
        self._emit(CrashPoint(point="d"))
        printed = yield _Print(lines=_receipt(self.profile, record))
        if printed:
            self._emit(UpdateJournal(edits=((invoice, {"printed": True}),)))
        return self._result(op, Outcome.APPROVED, "approved offline; advice queued" + (
            "" if printed else "; printer failed: PLEASE REPRINT"), request=request, amount_minor=amount,
            invoice=invoice, auth_code=record.auth_code, advice_queued=True, printed=bool(printed),
            **_adjust_details(kind, tip))

    # ---- settlement (F9, F10) ----------------------------------------------------------------

    def _settle_flow(self, op: Settle) -> Flow:
        s, books = self.settings, self.books
        state = books.settlement
        blocked = yield from self._sign_on_if_required(op, op.now)
        if blocked is not None:
            return blocked
        fresh = state is None
        if state is None:
            state = SettlementState(batch=self._batch, stage=SettlementStage.STARTED)
        else:
            self._notes["resumed"] = state.stage.value
        self._notes["reversal_sent"] = False
        if s.reversal_first:
            blocked = yield from self._reversals_first(op)
            if blocked is not None:
                return replace(blocked, text=f"{blocked.text}; settlement not started, batch {state.batch} pending")
        if s.drain_saf_before_settle and books.advices and state.stage is SettlementStage.STARTED:
            blocked = yield from self._deliver_advices(op, limit=None, retry=True)
            if blocked is not None:
                return replace(blocked, text=f"{blocked.text}; settlement not started, batch {state.batch} pending")
        first: _Answered | None = None
        if state.stage is SettlementStage.STARTED:
            stan = self._take_stan()
            request = settlement_request(self.profile, books.open_batch_totals(), stan=stan, batch=state.batch,
                                         now=op.now, processing_code=INTL_SETTLE_FIRST,
                                         operator=self._operator)
            # S is durable before the 0500 leaves: from then on new transactions are refused.
            before = (self._counters(), *((SaveSettlement(state=state),) if fresh else ()))
            answer = yield from self._exchange_once(self._exchange_of(request, "settlement", before=before,
                                                                      timeout_factor=s.settlement_timeout_factor))
            if not isinstance(answer, _Answered) or not answer.mac_ok:
                return self._settle_failure(op, answer, state)
            first = answer
            verdict = self._verdict(answer)
            if verdict is None:
                return self._settle_failure(op, answer, state)
            state = replace(state, result=verdict, first_rc=answer.rc)
            if verdict == "balanced":
                stage = SettlementStage.ENDING if self.profile.family == "cup" else SettlementStage.HOST_CLOSED
                state = replace(state, stage=stage)
                self._emit(SaveSettlement(state=state))
            elif s.batch_upload_on_unbalanced:
                state = replace(state, stage=SettlementStage.UPLOADING)
                self._emit(SaveSettlement(state=state))
                self._emit(CrashPoint(point="e"))
            else:  # the flawed terminal closes its batch without telling the host anything more
                state = replace(state, stage=SettlementStage.HOST_CLOSED)
                self._emit(SaveSettlement(state=state))
                self._notes["closed_without_upload"] = True
        if state.stage is SettlementStage.UPLOADING:
            done = yield from self._upload(op, state)
            if isinstance(done, Result):
                return self._with_first(done, first)
            state = replace(done, stage=SettlementStage.ENDING)
            self._emit(SaveSettlement(state=state))
        if state.stage is SettlementStage.ENDING:
            ended = yield from self._end_settlement(op, state)
            if isinstance(ended, Result):
                return self._with_first(ended, first)
            state = replace(state, stage=SettlementStage.HOST_CLOSED)
            self._emit(SaveSettlement(state=state))
        return (yield from self._close_batch(op, state, first))

    def _verdict(self, answer: _Answered) -> str | None:
        """``balanced`` / ``unbalanced`` from the first 0510, None when it is neither (declined)."""
        if answer.rc == codes.RECONCILE_ERROR:
            return "unbalanced"  # INTL 95, and the CUP hosts that signal imbalance with 39=95
        if answer.rc != codes.APPROVED:
            return None
        if self.profile.family == "cup":
            try:
                _, flag = parse_cup_field_48(answer.message.get("48", ""))
                _, foreign_flag = parse_cup_field_48_foreign(answer.message.get("48", ""))
            except ValueError:
                flag = "3"  # unreadable totals: 对账错
                foreign_flag = "3"
            # balanced when the domestic part is, and the foreign part is too (or was not compared: 0)
            return "balanced" if flag == CUP_BALANCED and foreign_flag in ("0", CUP_BALANCED) else "unbalanced"
        return "balanced"

    def _upload_items(self) -> list[JournalRecord]:
        return [r for r in self.books.records if r.counts and not r.uploaded]

    def _upload_groups(self) -> list[list[JournalRecord]]:
        """The records to upload, one group per 0320: INTL one record each; CUP online sales and
        completions up to 8 in the field-48 list, then each refund and offline record on its own."""
        pending = self._upload_items()
        if self.profile.family == "intl":
            return [[r] for r in pending]
        listed = [r for r in pending if not _cup_full_upload(r)]
        groups = [listed[i:i + CUP_UPLOAD_MAX_RECORDS] for i in range(0, len(listed), CUP_UPLOAD_MAX_RECORDS)]
        return groups + [[r] for r in pending if _cup_full_upload(r)]

    def _upload(self, op: Settle, state: SettlementState) -> Generator[_Wait, Any, SettlementState | Result]:
        """Batch upload of every counting record without an upload flag (flag set after its 0330)."""
        for batch_items in self._upload_groups():
            stan = self._take_stan()
            items = [_upload_item(r) for r in batch_items]
            if self.profile.family == "intl":
                request = intl_upload_request(self.profile, items[0], stan=stan, now=op.now)
            elif _cup_full_upload(batch_items[0]):
                request = cup_record_upload(self.profile, items[0], stan=stan, batch=state.batch,
                                            original_batch=batch_items[0].batch, now=op.now)
            else:
                request = cup_upload_request(self.profile, items, stan=stan, batch=state.batch, now=op.now)
            answer = yield from self._exchange_once(self._exchange_of(request, "upload", before=(self._counters(),)))
            if not isinstance(answer, _Answered) or not answer.mac_ok or answer.rc != codes.APPROVED:
                return self._settle_failure(op, answer, state, what="batch upload interrupted")
            state = replace(state, uploaded=state.uploaded + len(batch_items))
            self._emit(MarkUploaded(invoices=tuple(r.invoice for r in batch_items)))
            self._emit(SaveSettlement(state=state))
            self._emit(CrashPoint(point="f"))
        return state

    def _end_settlement(self, op: Settle, state: SettlementState) -> Generator[_Wait, Any, Result | None]:
        stan = self._take_stan()
        if self.profile.family == "intl":
            request = settlement_request(self.profile, self.books.open_batch_totals(), stan=stan, batch=state.batch,
                                         now=op.now, processing_code=INTL_SETTLE_AFTER_UPLOAD,
                                         operator=self._operator)
        else:
            request = cup_upload_end(self.profile, stan=stan, batch=state.batch, now=op.now,
                                     balanced=state.result == "balanced", uploaded=state.uploaded)
        answer = yield from self._exchange_once(self._exchange_of(request, "settlement_end", before=(self._counters(),),
                                                                  timeout_factor=self.settings.settlement_timeout_factor))
        if not isinstance(answer, _Answered) or not answer.mac_ok:
            return self._settle_failure(op, answer, state, what="closing message")
        if answer.rc == codes.RECONCILE_ERROR and self.profile.family == "intl":
            self._notes["unbalanced_after_upload"] = True  # PAX: "RECONCILE ERROR", closes anyway
            return None
        if answer.rc != codes.APPROVED:
            return self._settle_failure(op, answer, state, what="closing message")
        return None

    def _close_batch(self, op: Settle, state: SettlementState, first: _Answered | None) -> Flow:
        totals = self.books.open_batch_totals()
        self._emit(CrashPoint(point="g"))
        next_batch = self.books.batch % 999_999 + 1
        closed = ClosedBatch(batch=state.batch, debit_count=totals.debit_count, debit_minor=totals.debit_minor,
                             credit_count=totals.credit_count, credit_minor=totals.credit_minor,
                             result=state.result or "balanced", uploaded=state.uploaded)
        self._emit(CloseBatch(batch=state.batch, next_batch=next_batch, closed=closed))
        printed = yield _Print(lines=(f"SETTLEMENT batch {state.batch}", f"result {state.result}",
                                      f"sales {totals.debit_count} {_money(totals.debit_minor)}",
                                      f"refunds {totals.credit_count} {_money(totals.credit_minor)}"))
        balanced = state.result == "balanced"
        if balanced:
            text = "settlement balanced, batch closed"
        elif self._notes.get("closed_without_upload"):
            text = "settlement unbalanced: batch closed without upload"
        elif self._notes.get("unbalanced_after_upload"):
            text = (f"settlement unbalanced: {state.uploaded} records uploaded, the host still disagrees, "
                    "batch closed anyway")
        else:  # one line that says what happened in order: the host disagreed, got the records, agreed
            text = (f"settlement unbalanced at first{f' (rc {first.rc})' if first is not None else ''}: "
                    f"{state.uploaded} records uploaded, the host agreed, batch closed")
        if not printed:
            text += "; printer failed: PLEASE REPRINT"
        details: dict[str, Any] = {"batch": state.batch, "settlement_result": state.result, "uploaded": state.uploaded,
                   "batch_closed": True, "next_batch": f"{next_batch:06d}", **_totals_details(totals)}
        if first is None:
            return self._result(op, Outcome.BALANCED if balanced else Outcome.UNBALANCED, text, **details)
        return self._result(op, Outcome.BALANCED if balanced else Outcome.UNBALANCED, text, answer=first, **details)

    def _settle_failure(self, op: Settle, answer: _Answer, state: SettlementState, *, what: str = "") -> Result:
        base = self._failure(op, answer, what)
        if isinstance(answer, _Answered) and not answer.mac_ok:
            base = replace(base, outcome=Outcome.NO_ANSWER, text=f"answer with a bad MAC ignored ({what or 'settlement'})")
        pending = self.books.settlement is not None
        details = {"batch": state.batch, "settlement_result": state.result or "pending", "uploaded": state.uploaded,
                   "batch_closed": False, "settlement_pending": pending,
                   **_totals_details(self.books.open_batch_totals())}
        text = base.text + (f"; settlement of batch {state.batch} pending: run settle again" if pending else "")
        return replace(base, text=text, details={**base.details, **details})

    def _with_first(self, result: Result, first: _Answered | None) -> Result:
        """A failure after the first 0510 of this run, reported under the first 0500's identity (its
        MTI, STAN and answer): the outcome stays the host's verdict when it said unbalanced, and
        ``failed_step`` names the exchange that failed; the batch stays open (``batch_closed``)."""
        if first is None:
            return result
        verdict = result.details.get("settlement_result")
        return replace(result, outcome=Outcome.UNBALANCED if verdict == "unbalanced" else result.outcome,
                       mti=first.request["t"], response_mti=first.message["t"], rc=first.rc, stan=first.request["11"],
                       details={**result.details, "failed_step": {"mti": result.mti, "rc": result.rc,
                                                                   "stan": result.stan,
                                                                   "outcome": result.outcome.value}})


# --------------------------------------------------------------------------- pure helpers


def mismatch(request: Message, message: Message) -> str | None:
    """Why ``message`` is not the answer to ``request`` (MTI + 10, the same STAN and TID), or None.

    >>> mismatch({"t": "0200", "11": "000002", "41": "10000001"}, {"t": "0210", "11": "000003", "41": "10000001"})
    "STAN '000003', expecting 000002"
    """
    expected = response_mti(request["t"])
    if message.get("t") != expected:
        return f"MTI {message.get('t')}, expecting {expected}"
    if message.get("11") != request["11"]:
        return f"STAN {message.get('11')!r}, expecting {request['11']}"
    if message.get("41") != request["41"]:
        return f"TID {message.get('41')!r}, expecting {request['41']}"
    return None


def _parse_keys(settings: TerminalSettings, block_hex: str, mode: str) -> WorkingKeys:
    """Decrypt and check the working keys of a sign-on key block.

    Raises:
        ValueError: not hex, wrong length or count, or a check value mismatch (KeyCheckError).
    """
    try:
        block = bytes.fromhex(block_hex)
    except ValueError:
        raise ValueError(f"Key block is not hex ({len(block_hex)} characters)") from None
    key_length, count = KEY_BLOCK_LAYOUT[mode]
    keys = parse_key_block(settings.tmk_bytes, block, key_length, ("PIK", "MAK", "TDK")[:count])
    if len(keys) != count:
        raise ValueError(f"Key block holds {len(keys)} keys, expecting {count} for layout {mode}")
    return WorkingKeys(pik=keys[0], mak=keys[1], tdk=keys[2] if count > 2 else None)


def _clock_offset(now: datetime, response: Message) -> float | None:
    """Seconds to add to the terminal's clock to read the host's 12/13 (None when absent or bad)."""
    time, date = response.get("12", ""), response.get("13", "")
    if len(time) != 6 or len(date) != 4 or not (time + date).isdigit():
        return None
    try:
        host = now.replace(month=int(date[:2]), day=int(date[2:]), hour=int(time[:2]), minute=int(time[2:4]),
                           second=int(time[4:]), microsecond=0)
    except ValueError:
        return None
    return (host - now.replace(microsecond=0)).total_seconds()


def _amounts(op: Financial, original: JournalRecord | None) -> tuple[int, int]:
    """(field 4 amount, tip) of an operation; voids and pre-auth voids take the original's amount."""
    if isinstance(op, Adjust):
        assert original is not None
        base = original.amount_minor - original.tip_minor
        if op.new_amount_minor is not None:
            return op.new_amount_minor, op.new_amount_minor - base
        tip = op.tip_minor or 0
        return base + tip, tip
    amount = getattr(op, "amount_minor", None)
    if amount is None:
        return (original.amount_minor if original else 0), 0
    return amount, 0


def _original_edits(kind: str, original: JournalRecord | None) -> tuple[Edit, ...]:
    if original is None or kind not in _ORIGINAL_BECOMES:
        return ()
    return ((original.invoice, {"status": _ORIGINAL_BECOMES[kind]}),)


def _cup_full_upload(r: JournalRecord) -> bool:
    """CUP uploads refunds and offline records as full 0320 messages, not in the field-48 list."""
    return r.offline or SETTLEMENT_CLASS.get(r.kind) == "credit" or r.kind == "offline_sale"


def _upload_item(r: JournalRecord) -> UploadItem:
    return UploadItem(mti=r.mti, processing_code=r.processing_code, stan=r.stan, invoice=r.invoice, kind=r.kind,
                      amount_minor=r.amount_minor, pan=r.pan, expiry=r.expiry, rrn=r.rrn, auth_code=r.auth_code,
                      local_date=r.local_date, local_time=r.local_time, condition=r.condition)


def _receipt(profile: Profile, r: JournalRecord) -> tuple[str, ...]:
    return (f"TID {profile.tid} MID {profile.mid}", f"{r.kind.upper()} {_money(r.amount_minor)}",
            f"CARD {mask_pan(r.pan)}", f"BATCH {r.batch} INVOICE {r.invoice} STAN {r.stan}",
            f"RRN {r.rrn or '-'} AUTH {r.auth_code or '-'}")


def _receipt_pending_text(pending: list[JournalRecord]) -> str:
    first = pending[0]
    more = f" (and {len(pending) - 1} more)" if len(pending) > 1 else ""
    return (f"the receipt of an approved {first.kind} never printed: invoice {first.invoice} STAN {first.stan} "
            f"{_money(first.amount_minor)} RRN {first.rrn or '-'} auth {first.auth_code or '-'}{more}; the customer "
            "was charged: run reprint (or dismiss-receipt) before a new transaction; do not ring it up again")


def _adjust_details(kind: str, tip: int) -> dict[str, Any]:
    return {"tip_minor": tip} if kind == "adjust" else {}


def _totals_details(t: Totals) -> dict[str, Any]:
    return {"sale_count": t.debit_count, "sale_amount_minor": t.debit_minor, "refund_count": t.credit_count,
            "refund_amount_minor": t.credit_minor}


def _rc_text(rc: str) -> str:
    return codes.lookup(rc).meaning


def _money(minor: int) -> str:
    return f"{minor / 100:.2f}"


def _stuck_text(r: PendingReversal) -> str:
    return (f"reversal of STAN {r.stan} stuck: refused {r.refusals} times (last rc {r.last_rc}); sales are "
            "blocked until it clears: run reverse, or ask the acquirer")

"""Drive the pure terminal core without sockets: a scripted host and a loop standing in for the shell.

:func:`drive` plays the shell's part (connect, send, print, back off) against a :class:`FakeHost`
whose answers are plain functions of the request, so every flow can be run, and every action order
checked, in microseconds.  Every durable action is also applied to an in-memory SQLite
:class:`~emulator.journal.Journal`, and :func:`drive` checks after each operation that the journal
on "disk" and the core's books agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from emulator.journal import Journal
from emulator.messages import Profile
from emulator.settings import TerminalSettings
from emulator.terminal import (
    DURABLE_ACTIONS,
    Action,
    Backoff,
    Books,
    Connect,
    Connected,
    ConnectFailed,
    ConnectionLost,
    CrashPoint,
    Finish,
    MessageReceived,
    MessageUnreadable,
    Observed,
    Operation,
    Print,
    Printed,
    PrinterFailed,
    Result,
    SaveSignOn,
    Send,
    Terminal,
    TimerExpired,
)
from specs import codes
from specs.cards import Card
from specs.codec import Message
from specs.crypto import DEFAULT_TEST_TMK, build_key_block, derive_test_key
from specs.dialects import response_mti
from specs.totals import CUP_BALANCED, CUP_UNBALANCED, Totals, cup_field_48

NOW = datetime(2026, 11, 22, 9, 30, 15)
VISA = Card(pan="4761739001010010", expiry="3012")
UNIONPAY = Card(pan="6229141777631700", expiry="3012")
PIK = derive_test_key("PIK test")
MAK = derive_test_key("MAK test")

#: What a scripted host may do instead of answering.
NO_ANSWER, UNREADABLE, CLOSE = "no answer", "unreadable", "close"


@dataclass
class Reply:
    """An answer with its MAC verdict and CUP header 处理要求 (as the shell would report them)."""

    message: Message
    mac_valid: bool | None = True
    requirement: str | None = None


Answer = Message | Reply | str | None


def card_for(family: str) -> Card:
    return UNIONPAY if family == "cup" else VISA


@dataclass
class FakeHost:
    """A host answering by rules: approves everything unless told otherwise.

    Attributes:
        family: ``intl`` or ``cup``.
        rules: ``rule(request) -> Answer`` tried in order; the first non-None wins (a string
            constant NO_ANSWER / UNREADABLE / CLOSE, a Reply, or a message).
        balanced: the settlement verdict (INTL 00 vs 95, CUP 对账应答码 1 vs 2).
        down: connecting fails.
    """

    family: str = "intl"
    rules: list[Callable[[Message], Answer]] = field(default_factory=list)
    balanced: bool = True
    down: bool = False
    received: list[Message] = field(default_factory=list)
    key_block: str = field(default_factory=lambda: build_key_block(DEFAULT_TEST_TMK, [PIK, MAK]).hex().upper())
    rrn_seq: int = 0

    def answer(self, request: Message) -> Answer:
        self.received.append(request)
        for rule in self.rules:
            answer = rule(request)
            if answer is not None:
                return answer
        return self.approve(request)

    def approve(self, request: Message, rc: str = codes.APPROVED) -> Message:
        response: Message = {"t": response_mti(request["t"]), "11": request["11"], "41": request["41"], "39": rc}
        for k in ("3", "4", "42", "60"):
            if k in request:
                response[k] = request[k]
        mti = request["t"]
        if mti == "0800" and rc == codes.APPROVED:
            response["62"] = self.key_block
            response["12"], response["13"] = "101500", "1122"
        if mti[:2] in ("01", "02") and rc == codes.APPROVED:
            self.rrn_seq += 1
            response.update({"37": f"26326{self.rrn_seq:07d}", "38": f"{self.rrn_seq * 7:06d}", "15": "1122"})
        if mti == "0500":
            if self.family == "cup":
                response["48"] = cup_field_48(Totals(), flag=CUP_BALANCED if self.balanced else CUP_UNBALANCED)
            elif not self.balanced and request.get("3") == "920000":
                response["39"] = codes.RECONCILE_ERROR
        if mti == "0400":
            response.pop("4", None)
        return response


def when(mti: str, answer: Answer | Callable[[Message], Answer], *, times: int | None = None,
         field: tuple[str, str] | None = None) -> Callable[[Message], Answer]:
    """A rule: for requests with this MTI (and field value), give ``answer`` (at most ``times`` times)."""
    left = [times]

    def rule(request: Message) -> Answer:
        if request["t"] != mti or (field and request.get(field[0]) != field[1]):
            return None
        if left[0] is not None:
            if left[0] <= 0:
                return None
            left[0] -= 1
        return answer(request) if callable(answer) else answer
    return rule


def declined(rc: str) -> Callable[[Message], Message]:
    return lambda request: FakeHost().approve(request, rc)


@dataclass
class Run:
    """One operation driven to its end: the result, every action in order, the requests sent."""

    result: Result
    actions: list[Action]
    sent: list[Message]

    def kinds(self) -> list[str]:
        """Action names in order, with Send shown as its MTI and CrashPoint as its point (the
        core's verdicts on received messages, ``Observed``, are left out: see :meth:`observed`)."""
        out = []
        for a in self.actions:
            if isinstance(a, Observed):
                continue
            if isinstance(a, Send):
                out.append(f"Send {a.message['t']}")
            elif isinstance(a, CrashPoint):
                out.append(f"Crash {a.point}")
            else:
                out.append(type(a).__name__)
        return out

    def observed(self) -> list[Observed]:
        return [a for a in self.actions if isinstance(a, Observed)]

    def mtis(self) -> list[str]:
        return [m["t"] for m in self.sent]

    def sends(self) -> list[Send]:
        return [a for a in self.actions if isinstance(a, Send)]


class Rig:
    """A terminal core, its in-memory journal and a fake host."""

    def __init__(self, family: str = "intl", *, settings: TerminalSettings | None = None, timeout: float = 0.5,
                 host: FakeHost | None = None, books: Books | None = None, signed_on: bool = True) -> None:
        """``signed_on``: the journal starts signed on to a host that loaded no working keys (no MAC),
        so that a flow test starts at its own first message; False starts from a fresh journal."""
        self.family = family
        self.profile = Profile(family=family)
        self.settings = settings or TerminalSettings(backoff_initial_seconds=0.0, backoff_max_seconds=0.0)
        self.timeout = timeout
        self.host = host or FakeHost(family=family)
        self.journal = Journal(":memory:")
        if signed_on and books is None:
            self.journal.apply(SaveSignOn(signed_on=True))
        self.terminal = Terminal(self.profile, books or self.journal.load(), response_timeout_seconds=timeout,
                                 settings=self.settings)
        self.printer_ok = True

    @property
    def books(self) -> Books:
        return self.terminal.books

    def restart(self, settings: TerminalSettings | None = None) -> None:
        """A new core from what the journal holds (as after a power cut or a new invocation)."""
        if settings is not None:
            self.settings = settings
        self.terminal = Terminal(self.profile, self.journal.load(), response_timeout_seconds=self.timeout,
                                 settings=self.settings)

    def run(self, op: Operation) -> Run:
        if self.terminal.state.name == "DONE":
            self.terminal.start_next_operation()
        actions = self.terminal.handle(op)
        log: list[Action] = []
        sent: list[Message] = []
        pending: Send | None = None
        while True:
            follow: Any = None
            for action in actions:
                log.append(action)
                if isinstance(action, DURABLE_ACTIONS):
                    self.journal.apply(action)
                if isinstance(action, Connect):
                    follow = ConnectFailed(reason="refused") if self.host.down else Connected()
                elif isinstance(action, Send):
                    pending = action
                    sent.append(action.message)
                elif isinstance(action, Backoff):
                    follow = TimerExpired()
                elif isinstance(action, Print):
                    follow = Printed() if self.printer_ok else PrinterFailed()
                elif isinstance(action, Finish):
                    assert self.journal.load() == self.terminal.books, "journal and core books disagree"
                    return Run(result=action.result, actions=log, sent=sent)
            if follow is None:
                assert pending is not None
                follow = self._reply(pending)
            actions = self.terminal.handle(follow)

    def _reply(self, send: Send) -> Any:
        answer = self.host.answer(send.message)
        if answer is None or answer == NO_ANSWER:
            return TimerExpired()
        if answer == UNREADABLE:
            return MessageUnreadable(reason="Field 39 holds '0\\x00': field 39 pos 40 mti 0210")
        if answer == CLOSE:
            return ConnectionLost(reason="closed by host")
        if isinstance(answer, Reply):
            return MessageReceived(message=answer.message, mac_valid=answer.mac_valid if send.mac_key else None,
                                   processing_requirement=answer.requirement)
        assert isinstance(answer, dict)
        return MessageReceived(message=answer, mac_valid=True if send.mac_key else None)

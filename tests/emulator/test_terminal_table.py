"""The transition table: every remote input is accepted in every state; only local misuse raises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from emulator.messages import Profile
from emulator.settings import TerminalSettings
from emulator.terminal import (
    EXTERNAL,
    FLOW,
    OPERATIONS,
    TRANSITIONS,
    Books,
    Connected,
    ConnectFailed,
    ConnectionLost,
    Finish,
    JournalRecord,
    MessageReceived,
    MessageUnreadable,
    Observed,
    PendingReversal,
    Print,
    Printed,
    PrinterFailed,
    Reverse,
    Sale,
    Send,
    Settle,
    State,
    Terminal,
    TerminalUsageError,
    TimerExpired,
)
from tests.emulator.helpers import NOW, VISA, FakeHost

PROFILE = Profile(family="intl")
SETTINGS = TerminalSettings(backoff_initial_seconds=0.0)


def _sale() -> Sale:
    return Sale(now=NOW, amount_minor=1000, card=VISA)


def _last_send(actions: list[Any]) -> dict[str, str]:
    return next(a.message for a in reversed(actions) if isinstance(a, Send))


def _at(state: State) -> tuple[Terminal, dict[str, str] | None]:
    """A fresh terminal brought into ``state`` by real inputs; with the request on the wire, if any."""
    books = Books(signed_on=True)  # signed on to a host that loaded no keys: the flows start at once
    if state is State.BACKING_OFF:
        books.reversals.append(PendingReversal(stan="000009", kind="sale", message={
            "t": "0400", "3": "000000", "4": "000000001000", "11": "000009", "41": "10000001",
            "42": "123456789012345"}))
    if state is State.RECEIPT_PENDING:  # an approval journalled whose receipt never printed
        books.records.append(JournalRecord(invoice="000001", stan="000001", batch="000001", kind="sale",
                                           amount_minor=1000, pan=VISA.pan, expiry="2812", rrn="1",
                                           auth_code="1", local_date="1122", local_time="093015"))
    terminal = Terminal(PROFILE, books, response_timeout_seconds=0.5, settings=SETTINGS)
    if state in (State.IDLE, State.RECEIPT_PENDING):
        assert terminal.state is state
        return terminal, None
    if state is State.BACKING_OFF:
        terminal.handle(Reverse(now=NOW))
        actions = terminal.handle(Connected())
        terminal.handle(TimerExpired())  # no answer to the 0400: pause before the repeat
        assert terminal.state is State.BACKING_OFF
        return terminal, _last_send(actions)
    terminal.handle(_sale())
    if state is State.CONNECTING:
        return terminal, None
    if state is State.DONE:
        terminal.handle(ConnectFailed(reason="refused"))
        assert terminal.state is State.DONE
        return terminal, None
    actions = terminal.handle(Connected())
    request = _last_send(actions)
    if state is State.AWAITING_RESPONSE:
        return terminal, request
    assert state is State.PRINTING
    actions = terminal.handle(MessageReceived(message=FakeHost().approve(request)))
    assert any(isinstance(a, Print) for a in actions) and terminal.state is State.PRINTING
    return terminal, request


def _remote_inputs(request: dict[str, str] | None) -> list[tuple[str, Callable[[], Any]]]:
    answer = FakeHost().approve(request) if request else {"t": "0210", "11": "000001", "41": "10000001", "39": "00"}
    return [
        ("connected", lambda: Connected()),
        ("connect failed", lambda: ConnectFailed(reason="refused")),
        ("matching answer", lambda: MessageReceived(message=answer)),
        ("answer with bad MAC", lambda: MessageReceived(message=answer, mac_valid=False)),
        ("stray: wrong STAN", lambda: MessageReceived(message={**answer, "11": "999999"})),
        ("stray: no TID", lambda: MessageReceived(message={k: v for k, v in answer.items() if k != "41"})),
        ("stray: wrong MTI", lambda: MessageReceived(message={**answer, "t": "0810"})),
        ("unreadable", lambda: MessageUnreadable(reason="garbage")),
        ("timer", lambda: TimerExpired()),
        ("connection lost", lambda: ConnectionLost(reason="reset")),
        ("printed", lambda: Printed()),
        ("printer failed", lambda: PrinterFailed()),
    ]


def test_every_external_input_has_an_entry_in_every_state() -> None:
    for state in State:
        missing = [t.__name__ for t in EXTERNAL if t not in TRANSITIONS[state]]
        assert not missing, f"{state.name} has no entry for {missing}"


def test_operations_are_accepted_only_when_at_rest() -> None:
    """IDLE and RECEIPT_PENDING take every operation (in RECEIPT_PENDING a new transaction's flow
    refuses at once); no other state takes any."""
    at_rest = (State.IDLE, State.RECEIPT_PENDING)
    for state, row in TRANSITIONS.items():
        accepted = [op for op in OPERATIONS if op in row]
        assert accepted == (list(OPERATIONS) if state in at_rest else []), state
        if state in at_rest:
            assert all(row[op] == FLOW for op in OPERATIONS)


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.name)
def test_no_remote_input_raises_in_any_state(state: State) -> None:
    """Feed each remote input (to a fresh terminal in ``state``): none raises, and the terminal
    is always in a known state afterwards (then feed the rest of the inputs in a row)."""
    for name, make in _remote_inputs(_at(state)[1]):
        terminal, _ = _at(state)
        actions = terminal.handle(make())
        assert terminal.state in State, name
        assert all(not isinstance(a, Finish) or a.result.command for a in actions)
    terminal, request = _at(state)
    for name, make in _remote_inputs(request) * 2:
        terminal.handle(make())
        assert terminal.state in State, name


@pytest.mark.parametrize("state", [s for s in State if s not in (State.IDLE, State.RECEIPT_PENDING)],
                         ids=lambda s: s.name)
def test_starting_an_operation_while_busy_is_local_misuse(state: State) -> None:
    terminal, _ = _at(state)
    with pytest.raises(TerminalUsageError, match=f"can't handle Settle in state {state.name}"):
        terminal.handle(Settle(now=NOW))


def test_start_next_operation_only_after_done() -> None:
    terminal, _ = _at(State.AWAITING_RESPONSE)
    with pytest.raises(TerminalUsageError, match="can't start the next operation in state AWAITING_RESPONSE"):
        terminal.start_next_operation()
    done, _ = _at(State.DONE)
    done.start_next_operation()
    assert done.state is State.IDLE and done.result is None


def test_a_stray_answer_keeps_the_timer_running_and_is_never_an_approval() -> None:
    terminal, request = _at(State.AWAITING_RESPONSE)
    assert request is not None
    approval = FakeHost().approve(request)
    strays = ({**approval, "11": "999999"}, {**approval, "41": "99999999"}, replace_mti(approval, "0110"))
    for stray, why in zip(strays, ("STAN '999999', expecting 000001", "TID '99999999', expecting 10000001",
                                   "MTI 0110, expecting 0210")):
        # Nothing to do but note the verdict for the wire trace.
        assert terminal.handle(MessageReceived(message=stray, mac_valid=True)) == [
            Observed(message=stray, matched=False, mac_verified=None, why=why)]
        assert terminal.state is State.AWAITING_RESPONSE
    actions = terminal.handle(TimerExpired())
    [finish] = [a for a in actions if isinstance(a, Finish)]
    assert finish.result.outcome.value == "no_answer"
    assert terminal.books.records == [] and [r.stan for r in terminal.books.reversals] == [request["11"]]


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.name)
def test_every_received_message_gets_a_verdict_first(state: State) -> None:
    """G8 needs, per received message, whether it was taken as the answer and whether its MAC was checked."""
    terminal, request = _at(state)
    answer = FakeHost().approve(request) if request else {"t": "0210", "11": "000001", "41": "10000001", "39": "00"}
    first = terminal.handle(MessageReceived(message=answer, mac_valid=None))[0]
    assert isinstance(first, Observed) and first.message == answer
    assert first.matched is (state is State.AWAITING_RESPONSE)
    assert first.mac_verified is None  # no MAC was sent: nothing to check
    if not first.matched:
        assert first.why == "no request outstanding"


def replace_mti(message: dict[str, str], mti: str) -> dict[str, str]:
    return {**message, "t": mti}


def test_table_targets_are_states_or_flow() -> None:
    for row in TRANSITIONS.values():
        assert all(target == FLOW or isinstance(target, State) for target in row.values())

"""The transition table: which inputs each state of the core accepts, and where they lead."""

from __future__ import annotations

from emulator.terminal.books import State
from emulator.terminal.events import (
    Adjust,
    Balance,
    Completion,
    CompletionVoid,
    Connected,
    ConnectFailed,
    ConnectionLost,
    DismissReceipt,
    Echo,
    Idle,
    MessageUnreadable,
    OfflineSale,
    PreAuth,
    PreAuthVoid,
    Printed,
    PrinterFailed,
    Refund,
    Reprint,
    ResponseMatched,
    ResponseStray,
    Reverse,
    Sale,
    Settle,
    SignOff,
    SignOn,
    TimerExpired,
    Void,
)

# --------------------------------------------------------------------------- the table

#: Table target: hand the input to the running flow; the next state is what the flow waits for
#: next (CONNECTING, AWAITING_RESPONSE, BACKING_OFF, PRINTING) or DONE when it returns.
FLOW = "flow"

OPERATIONS: tuple[type, ...] = (SignOn, SignOff, Echo, Sale, Balance, PreAuth, PreAuthVoid, Completion,
                                CompletionVoid, Void, Refund, OfflineSale, Adjust, Settle, Reverse, Reprint,
                                DismissReceipt, Idle)
#: Everything that can happen outside the operator's control, after _classify.
EXTERNAL: tuple[type, ...] = (Connected, ConnectFailed, ResponseMatched, ResponseStray, MessageUnreadable,
                              TimerExpired, ConnectionLost, Printed, PrinterFailed)


def _ignore_in(state: State, *inputs: type) -> dict[type, State | str]:
    return dict.fromkeys(inputs, state)


TRANSITIONS: dict[State, dict[type, State | str]] = {
    State.IDLE: {
        **dict.fromkeys(OPERATIONS, FLOW),
        **_ignore_in(State.IDLE, *EXTERNAL),  # late answers, link events and printer noise between operations
    },
    # Every operation starts its flow; a new transaction's flow refuses at once (see _start).
    State.RECEIPT_PENDING: {
        **dict.fromkeys(OPERATIONS, FLOW),
        **_ignore_in(State.RECEIPT_PENDING, *EXTERNAL),
    },
    State.CONNECTING: {
        Connected: State.AWAITING_RESPONSE,  # entry: durable writes, Send, StartTimer
        ConnectFailed: FLOW,  # nothing was written
        ConnectionLost: FLOW,
        **_ignore_in(State.CONNECTING, ResponseMatched, ResponseStray, MessageUnreadable, TimerExpired, Printed,
                     PrinterFailed),
    },
    State.AWAITING_RESPONSE: {
        ResponseMatched: FLOW,
        MessageUnreadable: FLOW,  # a garbled answer is no answer (reversal reason 06)
        TimerExpired: FLOW,  # no answer in time (reversal reason 98)
        ConnectionLost: FLOW,
        # A stray answer is recorded by the shell and ignored; the timer keeps running.
        **_ignore_in(State.AWAITING_RESPONSE, ResponseStray, Connected, ConnectFailed, Printed, PrinterFailed),
    },
    State.BACKING_OFF: {
        TimerExpired: FLOW,
        **_ignore_in(State.BACKING_OFF, Connected, ConnectFailed, ResponseMatched, ResponseStray, MessageUnreadable,
                     ConnectionLost, Printed, PrinterFailed),
    },
    State.PRINTING: {
        Printed: FLOW,
        PrinterFailed: FLOW,
        **_ignore_in(State.PRINTING, Connected, ConnectFailed, ResponseMatched, ResponseStray, MessageUnreadable,
                     TimerExpired, ConnectionLost),
    },
    State.DONE: _ignore_in(State.DONE, *EXTERNAL),
}

"""asyncio shell around :class:`emulator.terminal.Terminal`: owns the socket, the timers, the MAC on
the wire, the printer and nothing else.

It turns I/O outcomes into the core's inputs (``Connected``, ``ConnectFailed``, ``MessageReceived``,
``MessageUnreadable``, ``TimerExpired``, ``ConnectionLost``, ``Printed``, ``PrinterFailed``) and
performs the core's actions in order: durable ones through the :class:`~emulator.journal.Journal`
(each one on disk before the next action runs), wire ones on the socket.

Retries and backoff are tenacity's: connecting retries refused or timed-out attempts
(``AsyncRetrying``), and the pause before a repeated reversal or advice is tenacity's
``wait_exponential`` for that attempt number.  The core counts the attempts against its limits,
because the count must survive a restart (it is durable, in the journal).

A :class:`~emulator.terminal.CrashPoint` the settings arm (``crash_at``) ends the process on the
spot with :func:`os._exit`: no ``finally``, no flush, no socket close — a power cut.  What the
journal committed before it survives; the next invocation recovers from there.

The wire trace.  Every request written (``sent``, with its MAC), every message received with the
core's verdict on it (``received``: ``matched``, ``mac_verified``, from the core's
:class:`~emulator.terminal.Observed`), every timeout, lost link, unreadable answer and failed
connect, and the crash point the process dies at, go into the journal's ``trace`` table, masked
(:meth:`emulator.journal.Journal.trace`), and into the log as ``send`` / ``receive`` / ``link event``
/ ``crash`` events.  CUP frames carry the settings' ``software_version`` in the header's 软件分版本号.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential

from emulator.journal import Journal
from emulator.messages import Profile
from emulator.settings import TerminalSettings
from emulator.terminal import (
    COMMAND_NAMES,
    Backoff,
    Connect,
    Connected,
    ConnectFailed,
    ConnectionLost,
    CrashPoint,
    Disconnect,
    Finish,
    Idle,
    Input,
    MessageReceived,
    MessageUnreadable,
    Observed,
    Operation,
    Print,
    Printed,
    PrinterFailed,
    Result,
    Send,
    StartTimer,
    Terminal,
    TimerExpired,
)
from specs.codec import CodecError, decode, encode
from specs.crypto import sign, verify
from specs.dialects import Dialect
from specs.framing import CupHeader, Frame, FrameReader, Framing, FramingError, Tpdu, pack
from specs.masking import mask_message

log = structlog.get_logger("pos_terminal")

READ_CHUNK_BYTES = 4096

#: Exit status of a process that died at an armed crash point (as if killed by SIGKILL).
CRASH_EXIT_CODE = 137


@dataclass(frozen=True, kw_only=True, slots=True)
class Endpoint:
    """Where the host listens and how to reach it."""

    host: str
    port: int
    connect_timeout_seconds: float = 10.0
    connect_attempts: int = 2

    @classmethod
    def for_timeout(cls, host: str, port: int, response_timeout_seconds: float) -> Endpoint:
        """The endpoint every tool uses for a terminal with this response timeout: connecting may take
        twice the response timeout, at least 1 s and at most 10 s (real terminals: 10 s).

        >>> Endpoint.for_timeout("h", 1, 60).connect_timeout_seconds, Endpoint.for_timeout("h", 1, 0.2).connect_timeout_seconds
        (10.0, 1.0)
        """
        return cls(host=host, port=port, connect_timeout_seconds=min(10.0, max(1.0, 2 * response_timeout_seconds)))


class FrameTap(Protocol):
    """Sees every frame a :class:`Link` writes or reads, as the framed bytes on the wire (the pcap
    writer, :mod:`emulator.pcap`).  A connection is named by its local port."""

    def connected(self, local_port: int, remote_port: int) -> None: ...

    def frame(self, local_port: int, *, sent: bool, data: bytes) -> None: ...

    def disconnected(self, local_port: int) -> None: ...


class RequestNotBuilt(ValueError):
    """The core asked for a request the dialect cannot encode (a value no check caught before).

    Raised before any durable action of the request's batch is applied: no pending reversal, SAF
    entry or counter is stored for a message that could never leave, and nothing is written.
    """


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request ready for the socket: the message as sent (field 64 set), its bytes, its MAC key."""

    message: dict[str, str]
    data: bytes
    mac: tuple[bytes, str] | None


def prepare(send: Send, dialect: Dialect, framing: Framing, tpdu: Tpdu | None, header: CupHeader | None) -> Prepared:
    """Sign (when ``send`` carries a MAC key), encode and frame ``send.message``."""
    message, mac = send.message, None
    if send.mac_key is not None:
        message = sign(message, dialect, send.mac_key, send.mac_algorithm)
        mac = (send.mac_key, send.mac_algorithm)
    return Prepared(message=message, data=pack(Frame(message=encode(message, dialect), tpdu=tpdu, header=header),
                                                 framing), mac=mac)


class Link:
    """One TCP connection speaking framed ISO 8583."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, framing: Framing,
                 dialect: Dialect, tpdu: Tpdu | None, header: CupHeader | None = None,
                 tap: FrameTap | None = None) -> None:
        self.reader, self.writer = reader, writer
        self.framing, self.dialect, self.tpdu = framing, dialect, tpdu
        self.header = header if header is not None or not framing.cup_header else CupHeader()
        self.frames = FrameReader(framing)
        self._pending: list[Frame] = []
        self._mac: tuple[bytes, str] | None = None
        self.tap = tap
        sockname, peername = writer.get_extra_info("sockname"), writer.get_extra_info("peername")
        self.local_port = int(sockname[1]) if sockname else 0
        if tap is not None:
            tap.connected(self.local_port, int(peername[1]) if peername else 0)
        #: Whether any byte arrived since the last request was written (a close before any is a hint
        #: that the host could not read the request: another dialect or framing).
        self._heard = False

    @classmethod
    async def open(cls, endpoint: Endpoint, framing: Framing, dialect: Dialect, tpdu: Tpdu | None,
                   header: CupHeader | None = None, tap: FrameTap | None = None) -> Link:
        """Connect, retrying refused or timed-out attempts with backoff (tenacity)."""
        async for attempt in AsyncRetrying(stop=stop_after_attempt(endpoint.connect_attempts),
                                           wait=wait_exponential(multiplier=0.05, max=1.0),
                                           retry=retry_if_exception_type((OSError, TimeoutError)), reraise=True):
            with attempt:
                async with asyncio.timeout(endpoint.connect_timeout_seconds):
                    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        return cls(reader, writer, framing, dialect, tpdu, header, tap)

    async def send(self, request: Prepared) -> None:
        """Write one prepared request; its MAC key then verifies the answer's MAC."""
        self._mac = request.mac
        self._heard = False
        self.writer.write(request.data)
        if self.tap is not None:
            self.tap.frame(self.local_port, sent=True, data=request.data)
        await self.writer.drain()

    async def next_input(self, deadline: float | None) -> Input:
        """Wait for the next thing that happens on the wire and name it as an input."""
        try:
            async with asyncio.timeout_at(deadline):
                while not self._pending:
                    data = await self.reader.read(READ_CHUNK_BYTES)
                    if not data:
                        self.frames.close()
                        return ConnectionLost(reason="closed by host" if self._heard else self.mismatch_hint())
                    self._heard = True
                    frames = self.frames.feed(data)
                    if self.tap is not None:
                        for each in frames:
                            self.tap.frame(self.local_port, sent=False, data=pack(each, self.framing))
                    self._pending.extend(frames)
        except TimeoutError:
            return TimerExpired()
        except FramingError as exc:
            return MessageUnreadable(reason=str(exc))
        except ConnectionError as exc:
            return ConnectionLost(reason=repr(exc))
        frame = self._pending.pop(0)
        try:
            message = decode(frame.message, self.dialect)
        except CodecError as exc:
            return MessageUnreadable(reason=str(exc))
        mac_valid = verify(message, self.dialect, *self._mac) if self._mac is not None else None
        return MessageReceived(message=message, mac_valid=mac_valid,
                               processing_requirement=frame.header.processing_requirement if frame.header else None)

    def mismatch_hint(self) -> str:
        """What a close without any answer most often means, and what this terminal sent."""
        return ("the host closed the connection without answering: check --dialect / --tpdu / --length-prefix "
                f"(this terminal sends {self.dialect.describe()} with {self.framing.describe()})")

    async def close(self) -> None:
        if self.tap is not None:
            self.tap.disconnected(self.local_port)
            self.tap = None
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def backoff_seconds(settings: TerminalSettings, attempt: int) -> float:
    """tenacity's exponential wait before repeat number ``attempt`` (1 = the first repeat).

    >>> s = TerminalSettings(backoff_initial_seconds=0.5, backoff_max_seconds=3.0)
    >>> [backoff_seconds(s, n) for n in (1, 2, 3, 4)]
    [0.5, 1.0, 2.0, 3.0]
    """
    strategy = wait_exponential(multiplier=settings.backoff_initial_seconds, max=settings.backoff_max_seconds)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return float(strategy(state))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def crash_now(point: str) -> None:
    """Die like a power cut: no cleanup of any kind (docs/domain.md#crash-points crash points)."""
    os.write(2, f"pos-terminal: crashed at point {point} (--crash-at)\n".encode())
    os._exit(CRASH_EXIT_CODE)


def frame_parts(profile: Profile, settings: TerminalSettings, framing: Framing) -> tuple[Tpdu | None, CupHeader | None]:
    """The TPDU (to the profile's NII) and CUP header (with the software version) this terminal's
    requests carry, when ``framing`` has them."""
    tpdu = Tpdu(destination=profile.nii.zfill(4), source="0000") if framing.tpdu else None
    header = CupHeader(software_version=settings.software_version) if framing.cup_header else None
    return tpdu, header


async def run_operation(operation: Operation, *, terminal: Terminal, journal: Journal, endpoint: Endpoint,
                        framing: Framing, dialect: Dialect, tap: FrameTap | None = None) -> Result:
    """Drive one operator operation to its result.

    Args:
        operation: the local input (SignOn, Sale, Settle, ...).
        terminal: the core, in state IDLE.
        journal: where durable actions are applied, before any later action runs.
        endpoint, framing, dialect: how to talk to the host.
        tap: sees every frame written and read (``--pcap``).

    Returns:
        The core's result (also available as ``terminal.result``).
    """
    settings = terminal.settings
    tpdu, header = frame_parts(terminal.profile, settings, framing)
    command = COMMAND_NAMES[type(operation)]
    link: Link | None = None
    deadline: float | None = None
    last_mac_valid: bool | None = None

    def trace(kind: str, **fields: object) -> None:
        journal.add_trace(at=_now_iso(), kind=kind, command=command, **fields)  # type: ignore[arg-type]

    actions = terminal.handle(operation)
    try:
        while True:
            follow_up: Input | None = None
            # Every request of this batch is built before any of its durable actions is applied:
            # a message that cannot be encoded must not leave a pending reversal or SAF entry behind.
            try:
                prepared = {id(a): prepare(a, dialect, framing, tpdu, header) for a in actions if isinstance(a, Send)}
            except ValueError as exc:  # a CodecError, or a MAC key of the wrong length
                raise RequestNotBuilt(f"{command}: the request cannot be built, nothing of it was stored or "
                                      f"sent: {exc}") from None
            for action in actions:
                match action:
                    case Connect():
                        try:
                            link = await Link.open(endpoint, framing, dialect, tpdu, header, tap)
                            follow_up = Connected()
                        except (OSError, TimeoutError) as exc:
                            follow_up = ConnectFailed(reason=f"{endpoint.host}:{endpoint.port}: "
                                                             f"{getattr(exc, 'strerror', None) or exc or 'timed out'}")
                            trace("connect_failed", detail=follow_up.reason)
                    case Disconnect():
                        if link is not None:
                            await link.close()
                            link = None
                    case Send():
                        assert link is not None
                        request = prepared[id(action)]
                        try:
                            await link.send(request)
                            shown = mask_message(request.message)  # masked here too: callers may not configure logging
                            log.info("send", message=shown)
                            trace("sent", message=shown)
                        except ConnectionError as exc:
                            follow_up = ConnectionLost(reason=repr(exc))
                            trace("link_lost", detail=follow_up.reason)
                    case Observed(message=message, matched=matched, mac_verified=mac_verified, why=why):
                        shown = mask_message(message)
                        log.info("receive", message=shown, mac_valid=last_mac_valid, matched=matched,
                                 mac_verified=mac_verified, **({"why": why} if why else {}))
                        trace("received", message=shown, matched=matched, mac_verified=mac_verified,
                              detail=why or None)
                    case StartTimer(seconds=seconds):
                        deadline = asyncio.get_running_loop().time() + seconds
                    case Backoff(attempt=attempt, purpose=purpose):
                        pause = backoff_seconds(settings, attempt)
                        log.info("backoff", purpose=purpose, attempt=attempt, seconds=pause)
                        await asyncio.sleep(pause)
                        follow_up = TimerExpired()
                    case Print(lines=lines):
                        if settings.printer_fails:
                            log.warning("printer failed", lines=list(lines))
                            follow_up = PrinterFailed(reason="out of paper")
                        else:
                            log.info("receipt", lines=list(lines))
                            follow_up = Printed()
                    case CrashPoint(point=point):
                        if point == settings.crash_at:
                            log.warning("crash", point=point)
                            trace("crash", detail=f"crash point {point}")
                            crash_now(point)
                    case Finish(result=result):
                        log.info("result", **result.as_dict())
                        return result
                    case _:
                        journal.apply(action)
            if follow_up is None:
                assert link is not None, "the core waits for the wire only after connecting"
                follow_up = await link.next_input(deadline)
                if isinstance(follow_up, MessageReceived):
                    last_mac_valid = follow_up.mac_valid  # logged with the core's verdict (Observed)
                elif isinstance(follow_up, TimerExpired):
                    trace("timeout", detail=f"no answer by the deadline ({terminal.response_timeout_seconds:g} s timer)")
                else:
                    log.warning("link event", event_type=type(follow_up).__name__, reason=getattr(follow_up, "reason", ""))
                    trace("link_lost" if isinstance(follow_up, ConnectionLost) else "unreadable",
                          detail=getattr(follow_up, "reason", "") or None)
            actions = terminal.handle(follow_up)
    finally:
        if link is not None:
            await link.close()


async def run_invocation(operation: Operation, *, terminal: Terminal, journal: Journal, endpoint: Endpoint,
                         framing: Framing, dialect: Dialect, idle_now: Callable[[], datetime],
                         tap: FrameTap | None = None) -> Result:
    """One operation as one ``pos-terminal`` invocation runs it: the operation, then the reversal at
    idle when the core says one follows (:meth:`Terminal.reverse_at_idle_after`), its fate folded into
    the result (:meth:`Terminal.with_idle`).

    Args:
        idle_now: the terminal's clock for the reversal at idle, read after the operation.
        tap: sees every frame written and read (``--pcap``).
    """
    result = await run_operation(operation, terminal=terminal, journal=journal, endpoint=endpoint,
                                 framing=framing, dialect=dialect, tap=tap)
    if not terminal.reverse_at_idle_after(operation, result):
        return result
    terminal.start_next_operation()
    idle = await run_operation(Idle(now=idle_now()), terminal=terminal, journal=journal, endpoint=endpoint,
                               framing=framing, dialect=dialect, tap=tap)
    return terminal.with_idle(result, idle)

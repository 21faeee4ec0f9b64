"""asyncio shell around :class:`emulator.terminal.Terminal`: owns the socket, the timer and nothing else.

It turns I/O outcomes into the core's inputs (``Connected``, ``ConnectFailed``, ``MessageReceived``,
``MessageUnreadable``, ``TimerExpired``, ``ConnectionLost``) and performs the core's actions in
order: durable ones through the :class:`~emulator.journal.Journal`, wire ones on the socket.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from specs.codec import CodecError, decode, encode
from specs.dialects import Dialect
from specs.framing import CupHeader, Frame, FrameReader, Framing, FramingError, Tpdu, pack

from emulator.journal import Journal
from emulator.terminal import (Connect, ConnectFailed, Connected, ConnectionLost, Finish, Input, MessageReceived,
                               MessageUnreadable, Operation, Result, Send, StartTimer, Terminal, TimerExpired)

log = structlog.get_logger("pos_terminal")

READ_CHUNK_BYTES = 4096


@dataclass(frozen=True, kw_only=True, slots=True)
class Endpoint:
    """Where the host listens and how to reach it."""

    host: str
    port: int
    connect_timeout_seconds: float = 10.0
    connect_attempts: int = 2


class Link:
    """One TCP connection speaking framed ISO 8583."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, framing: Framing,
                 dialect: Dialect, tpdu: Tpdu | None) -> None:
        self.reader, self.writer = reader, writer
        self.framing, self.dialect, self.tpdu = framing, dialect, tpdu
        self.frames = FrameReader(framing)
        self._pending: list[Frame] = []

    @classmethod
    async def open(cls, endpoint: Endpoint, framing: Framing, dialect: Dialect, tpdu: Tpdu | None) -> "Link":
        """Connect, retrying refused or timed-out attempts with backoff (tenacity)."""
        async for attempt in AsyncRetrying(stop=stop_after_attempt(endpoint.connect_attempts),
                                           wait=wait_exponential(multiplier=0.05, max=1.0),
                                           retry=retry_if_exception_type((OSError, TimeoutError)), reraise=True):
            with attempt:
                async with asyncio.timeout(endpoint.connect_timeout_seconds):
                    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        return cls(reader, writer, framing, dialect, tpdu)

    async def send(self, message: dict[str, str]) -> None:
        header = CupHeader() if self.framing.cup_header else None
        self.writer.write(pack(Frame(message=encode(message, self.dialect), tpdu=self.tpdu, header=header),
                               self.framing))
        await self.writer.drain()

    async def next_input(self, deadline: float | None) -> Input:
        """Wait for the next thing that happens on the wire and name it as an input."""
        try:
            async with asyncio.timeout_at(deadline):
                while not self._pending:
                    data = await self.reader.read(READ_CHUNK_BYTES)
                    if not data:
                        self.frames.close()
                        return ConnectionLost(reason="closed by host")
                    self._pending.extend(self.frames.feed(data))
        except TimeoutError:
            return TimerExpired()
        except FramingError as exc:
            return MessageUnreadable(reason=str(exc))
        except ConnectionError as exc:
            return ConnectionLost(reason=repr(exc))
        frame = self._pending.pop(0)
        try:
            return MessageReceived(message=decode(frame.message, self.dialect))
        except CodecError as exc:
            return MessageUnreadable(reason=str(exc))

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


async def run_operation(operation: Operation, *, terminal: Terminal, journal: Journal, endpoint: Endpoint,
                        framing: Framing, dialect: Dialect) -> Result:
    """Drive one operator operation to its result.

    Args:
        operation: the local input (SignOn, Sale, Settle, ...).
        terminal: the core, in state IDLE.
        journal: where durable actions are applied, before any later action runs.
        endpoint, framing, dialect: how to talk to the host.

    Returns:
        The core's result (also available as ``terminal.result``).
    """
    tpdu = Tpdu(destination=terminal.profile.nii.zfill(4), source="0000") if framing.tpdu else None
    link: Link | None = None
    deadline: float | None = None
    actions = terminal.handle(operation)
    try:
        while True:
            follow_up: Input | None = None
            for action in actions:
                match action:
                    case Connect():
                        try:
                            link = await Link.open(endpoint, framing, dialect, tpdu)
                            follow_up = Connected()
                        except (OSError, TimeoutError) as exc:
                            follow_up = ConnectFailed(reason=f"{endpoint.host}:{endpoint.port}: "
                                                             f"{getattr(exc, 'strerror', None) or exc or 'timed out'}")
                    case Send(message=message):
                        assert link is not None
                        log.info("send", message=message)
                        try:
                            await link.send(message)
                        except ConnectionError as exc:
                            follow_up = ConnectionLost(reason=repr(exc))
                    case StartTimer(seconds=seconds):
                        deadline = asyncio.get_running_loop().time() + seconds
                    case Finish(result=result):
                        log.info("result", **result.as_dict())
                        return result
                    case _:
                        journal.apply(action)
            if follow_up is None:
                assert link is not None, "the core waits for the wire only after connecting"
                follow_up = await link.next_input(deadline)
                if isinstance(follow_up, MessageReceived):
                    log.info("receive", message=follow_up.message)
                elif not isinstance(follow_up, TimerExpired):
                    log.warning("link event", event_type=type(follow_up).__name__, reason=getattr(follow_up, "reason", ""))
            actions = terminal.handle(follow_up)
    finally:
        if link is not None:
            await link.close()

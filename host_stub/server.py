"""asyncio TCP server around :class:`host_stub.host.Host`: frames in, answers out.

Each connection has its own :class:`~specs.framing.FrameReader`; one bad connection (bad framing,
an undecodable message, a peer that vanishes) is logged and closed, and never stops the server or
delays another connection.  An answer carries the request's TPDU with source and destination
swapped and the request's CUP header.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import structlog

from specs import codes
from specs.codec import CodecError, Message, decode, decode_unvalidated, encode
from specs.dialects import Dialect, is_request, response_mti
from specs.framing import Frame, FrameReader, Framing, FramingError, pack

from host_stub.clock import BusinessClock
from host_stub.host import Host

log = structlog.get_logger("pos_host")

READ_CHUNK_BYTES = 4096


class HostServer:
    """Serves one host core on one TCP port."""

    def __init__(self, host: Host, *, dialect: Dialect, framing: Framing, clock: BusinessClock) -> None:
        self.host = host
        self.dialect = dialect
        self.framing = framing
        self.clock = clock
        self._server: asyncio.Server | None = None
        self.port: int | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, bind: str = "127.0.0.1", port: int = 0) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(self._serve_connection, bind, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop accepting, let in-flight answers finish, then close every connection."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        bound = log.bind(peer=f"{peer[0]}:{peer[1]}" if peer else "?")
        frames = FrameReader(self.framing)
        try:
            while True:
                data = await reader.read(READ_CHUNK_BYTES)
                if not data:
                    frames.close()  # raises on a truncated frame
                    bound.debug("connection closed by peer")
                    return
                for frame in frames.feed(data):
                    answer = self._answer(frame, bound)
                    if answer is None:
                        return
                    writer.write(answer)
                    await writer.drain()
        except FramingError as exc:
            bound.warning("bad frame, closing connection", error=str(exc))
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            bound.info("connection lost", error=repr(exc))
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass

    def _answer(self, frame: Frame, bound: structlog.typing.FilteringBoundLogger) -> bytes | None:
        """Bytes to send back for one frame, or None to close the connection."""
        try:
            request = decode(frame.message, self.dialect)
        except CodecError as exc:
            bound.warning("undecodable message", error=str(exc))
            return self._format_error(frame, exc)
        if not is_request(request["t"]):
            bound.warning("not a request, closing connection", mti=request["t"])
            return None
        now: datetime = self.clock.now()
        bound.info("request", message=request)
        response = self.host.handle(request, now=now)
        bound.info("response", message=response)
        return self._frame(response, frame)

    def _format_error(self, frame: Frame, exc: CodecError) -> bytes | None:
        """Answer 30 when the MTI, STAN and TID could be read; otherwise close (None)."""
        try:
            partial = decode_unvalidated(frame.message, self.dialect)
        except CodecError:
            return None
        if not (partial.get("t") and is_request(partial["t"]) and "11" in partial and "41" in partial):
            return None
        response: Message = {"t": response_mti(partial["t"]), "11": partial["11"], "41": partial["41"],
                             "39": codes.FORMAT_ERROR}
        for k in self.dialect.mandatory.get(response["t"], ()):
            if k not in response and k in partial:
                response[k] = partial[k]
        try:
            return self._frame(response, frame)
        except CodecError:
            return None

    def _frame(self, response: Message, request_frame: Frame) -> bytes:
        return pack(Frame(message=encode(response, self.dialect),
                          tpdu=request_frame.tpdu.swapped() if request_frame.tpdu else None,
                          header=request_frame.header), self.framing)


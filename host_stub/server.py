"""asyncio TCP server around :class:`host_stub.host.Host`: frames in, the fault plan's steps out.

Each connection has its own task and :class:`~specs.framing.FrameReader`; a fault's delay sleeps
in that task only, so a slow or faulted connection never delays another.  One bad connection (bad
framing, an undecodable message, a peer that vanishes) is logged, masked, and closed, and never
stops the server.  For every request:

1. decode (repeat MTIs 0221/0401 accepted); an undecodable message gets ``30`` when its MTI, STAN
   and TID can still be read, otherwise the connection is closed;
2. the fault engine folds the faults firing on it into a :class:`~host_stub.faults.Plan`;
3. unless the plan closes first, the core decides and posts (one ledger transaction, a savepoint
   of the group the server commits once per turn of the event loop: group commit, see
   :mod:`host_stub.ledger`);
4. once the group holding its writes is committed, the answer (TPDU swapped, the request's CUP
   header, 处理要求 as the core or the plan says) is written by the plan's steps (write / sleep /
   close).

Connections under abuse (settings of :class:`~host_stub.settings.HostSettings`): a connection that
sends nothing between frames for ``idle_timeout_seconds`` is closed, and so is one whose frame is
not complete ``frame_deadline_seconds`` after its first byte (a peer trickling one byte a second
holds its own connection only, and not for long); past ``max_connections`` a new connection is
accepted and closed at once.  One timer sweeps every connection (the read loop only notes the time
of each read), so the limits cost the hot path nothing.  When accept() fails because descriptors
ran out (EMFILE), asyncio stops accepting for a second and tries again; the host logs that once
per ``accept_error_log_seconds`` (with how many it kept quiet) instead of a traceback each time.
Each such close is logged and journalled (``idle_timeout``, ``frame_deadline``, ``connection_limit``).

Stopping (SIGTERM): no new connections; a connection in the middle of a request finishes it (its
ledger transaction and its answer, within ``grace_seconds``); idle connections are closed.

Refusing connects (the ``refuse_connect`` fault, a host that is down): while such a fault is active
the listening socket is closed, so the kernel refuses connects (ECONNREFUSED) and the terminal sends
nothing; when none is active any more the server listens again on the same port (``SO_REUSEADDR``),
so the port of the ready line stays valid.  Established connections and their in-flight requests are
never touched.  :meth:`HostServer.refresh_listening` re-evaluates: the control API calls it after
every change of faults, clock or a reset, and a timer calls it at the next window boundary of the
business clock (rescheduled on every evaluation, cancelled at stop).  Each close and reopen is logged
and journalled (``listener_closed`` / ``listener_reopened``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

import structlog

from host_stub.clock import BusinessClock
from host_stub.faults import Close, FaultEngine, Plan, Sleep, Write, steps
from host_stub.host import Host, classify
from host_stub.journal import RequestJournal
from host_stub.wire import encode_response, encode_signed
from specs import codes
from specs.codec import CodecError, Message, decode, decode_unvalidated
from specs.crypto import default_mac_algorithm
from specs.dialects import Dialect, is_request, response_mti
from specs.framing import Frame, FrameReader, Framing, FramingError, pack
from specs.masking import mask_message

log = structlog.get_logger("pos_host")

READ_CHUNK_BYTES = 4096
#: Accept errors that mean "out of descriptors or buffers": asyncio pauses accepting and retries.
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: How many more turns of the event loop a group commit may wait while requests keep joining it.
GROUP_COMMIT_MAX_WAITS = 3
#: How soon to try again when the port could not be bound again (another process took it meanwhile).
RELISTEN_RETRY_SECONDS = 1.0


class _Connection:
    """What the sweeper needs to know of one connection (the read loop keeps it up to date)."""

    __slots__ = ("expired", "frame_started", "last_activity", "peer", "task")

    def __init__(self, task: asyncio.Task[None], peer: str, now: float) -> None:
        self.task = task
        self.peer = peer
        self.last_activity = now  # last byte received or last answer written (loop time)
        self.frame_started: float | None = None  # first byte of the incomplete frame, if any
        self.expired: str | None = None


class _Throttled:
    """Log a recurring problem at most once per interval, counting the occurrences kept quiet."""

    __slots__ = ("last", "quiet")

    def __init__(self) -> None:
        self.last: float | None = None
        self.quiet = 0

    def due(self, now: float, interval: float) -> int | None:
        """None: stay quiet; else how many occurrences were kept quiet since the last line."""
        if self.last is not None and now - self.last < interval:
            self.quiet += 1
            return None
        quiet, self.last, self.quiet = self.quiet, now, 0
        return quiet


async def _next_change(waiters: list[asyncio.Future[None]]) -> None:
    """Wait for the next :func:`_changed` of ``waiters``."""
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        await waiter
    finally:
        if waiter in waiters:
            waiters.remove(waiter)


def _changed(waiters: list[asyncio.Future[None]]) -> None:
    """Wake everything waiting in :func:`_next_change` on ``waiters``."""
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
    waiters.clear()


class HostServer:
    """Serves one host core on one TCP port.

    Args:
        host: the core.
        dialect, framing: how messages are encoded and framed on this port.
        clock: the business clock (``now`` for the core and the faults).
        faults: the active faults (empty by default).
        journal: where received requests are logged (masked).
        grace_seconds: how long :meth:`stop` lets in-flight requests finish.
    """

    def __init__(self, host: Host, *, dialect: Dialect, framing: Framing, clock: BusinessClock,
                 faults: FaultEngine | None = None, journal: RequestJournal | None = None,
                 grace_seconds: float = 5.0) -> None:
        self.host = host
        self.dialect = dialect
        self.framing = framing
        self.clock = clock
        self.faults = faults if faults is not None else FaultEngine()
        self.journal = journal if journal is not None else RequestJournal()
        self.grace_seconds = grace_seconds
        self._server: asyncio.Server | None = None
        self.port: int | None = None
        self._connections: dict[asyncio.Task[None], _Connection] = {}
        self._busy: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._stopping = False
        self._commit_waiter: asyncio.Future[None] | None = None
        self._group_size = 0  # requests waiting for the scheduled group commit
        self._group_seen = 0  # ... as the commit callback last saw them
        self._group_waits = 0
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._limit_log = _Throttled()
        self._accept_log = _Throttled()
        self._previous_exception_handler: Any = None
        self._started = False
        self._bind = "127.0.0.1"
        self._retired: list[asyncio.Server] = []  # listeners closed by refuse_connect; their connections live on
        self._listen_lock = asyncio.Lock()
        self._boundary_timer: asyncio.TimerHandle | None = None
        self._refreshes: set[asyncio.Task[None]] = set()
        self._listening_waiters: list[asyncio.Future[None]] = []
        self._closed_waiters: list[asyncio.Future[None]] = []

    @property
    def listening(self) -> bool:
        """False while a ``refuse_connect`` fault keeps the listening socket closed (or before start / after stop)."""
        return self._server is not None

    async def until_listening(self, listening: bool = True) -> None:
        """Return once the server listens (``listening``) or refuses connects (not ``listening``): lets a
        test or a tool wait for a window boundary without polling."""
        while self.listening is not listening:
            if listening and self._stopping:
                raise RuntimeError("the server has stopped: it will not listen again")
            await _next_change(self._listening_waiters)

    async def until_connections_at_most(self, count: int) -> None:
        """Return once at most ``count`` connections are being served (a test or a tool waits for the
        host to have noticed closes without polling)."""
        while len(self._connections) > count:
            await _next_change(self._closed_waiters)

    def _listening_changed(self) -> None:
        _changed(self._listening_waiters)

    async def start(self, bind: str = "127.0.0.1", port: int = 0) -> int:
        """Start listening; returns the bound port (useful with port 0).

        The port is bound even when a ``refuse_connect`` fault is active at start (so it is known and
        stays valid); the listener is then closed at once.
        """
        # Group commit saves fsyncs; throw-away books in memory have none to save.
        self.host.ledger.group_commits = self.host.ledger.path != ":memory:"
        self._bind = bind
        loop = asyncio.get_running_loop()
        self._previous_exception_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_exception)
        self._server = await asyncio.start_server(self._serve_connection, bind, port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._started = True
        await self.refresh_listening()
        return self.port

    async def refresh_listening(self) -> None:
        """Listen or not, as the ``refuse_connect`` faults say at the business clock's now, and schedule
        the next look at the next window boundary.  Call after any change of faults or clock (the
        control API does; code that changes :attr:`faults` or :attr:`clock` directly must too)."""
        if not self._started or self._stopping:
            return
        async with self._listen_lock:
            if self._stopping:
                return
            now = self.clock.now()
            refusing = self.faults.refusing_connects(now)
            retry = False
            if refusing and self._server is not None:
                self._close_listener(refusing)
            elif not refusing and self._server is None:
                retry = not await self._reopen_listener()
            self._schedule_boundary(now, retry=retry)

    def schedule_refresh(self) -> None:
        """:meth:`refresh_listening` soon, from code that cannot await (a task the server keeps and stop awaits)."""
        if not self._started or self._stopping:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop runs here: the server cannot be running in it either
            return
        task = loop.create_task(self.refresh_listening())
        self._refreshes.add(task)
        task.add_done_callback(self._refresh_done)

    def _refresh_done(self, task: asyncio.Task[None]) -> None:
        self._refreshes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("re-evaluating the listener failed", error=repr(task.exception()))

    def _close_listener(self, faults: tuple[str, ...]) -> None:
        server, self._server = self._server, None
        assert server is not None
        server.close()  # the listening sockets only: accepted connections keep running
        self._retired.append(server)
        log.info("listener closed: refusing connects (fault)", port=self.port, faults=list(faults))
        self.journal.add(at=self._at(), peer=self._address(), outcome="listener_closed", faults=faults)
        self._listening_changed()

    async def _reopen_listener(self) -> bool:
        """Listen on the same port again; False (logged, journalled) when the port cannot be bound."""
        try:
            self._server = await asyncio.start_server(self._serve_connection, self._bind, self.port,
                                                      reuse_address=True)
        except OSError as exc:
            log.error("listener could not be reopened; trying again", port=self.port, error=repr(exc))
            self.journal.add(at=self._at(), peer=self._address(), outcome="listener_reopen_failed", error=repr(exc))
            return False
        log.info("listener reopened: accepting connects again", port=self.port)
        self.journal.add(at=self._at(), peer=self._address(), outcome="listener_reopened")
        self._listening_changed()
        return True

    def _schedule_boundary(self, now: datetime, *, retry: bool) -> None:
        """(Re)arm the one timer: at the next ``refuse_connect`` window boundary (the business clock runs
        in real time, so the business delay is the real delay), sooner when a reopen must be retried."""
        if self._boundary_timer is not None:
            self._boundary_timer.cancel()
            self._boundary_timer = None
        boundary = self.faults.next_connect_boundary(now)
        delays = [RELISTEN_RETRY_SECONDS] if retry else []
        if boundary is not None:
            delays.append(max(0.0, (boundary - now).total_seconds()))
        if delays:
            self._boundary_timer = asyncio.get_running_loop().call_later(min(delays), self._at_boundary)

    def _at_boundary(self) -> None:
        self._boundary_timer = None
        self.schedule_refresh()

    def _address(self) -> str:
        return f"{self._bind}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (within the grace period), close every connection.

        Works whether the server is listening or refusing connects (``refuse_connect``).
        """
        if not self._started:
            return
        self._stopping = True
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        if self._boundary_timer is not None:
            self._boundary_timer.cancel()
            self._boundary_timer = None
        async with self._listen_lock:  # a reopen in progress completes first; none starts after this
            pass
        await asyncio.gather(*self._refreshes, return_exceptions=True)
        servers = [*self._retired, *([self._server] if self._server is not None else [])]
        if self._server is not None:
            self._server.close()
        for task in list(set(self._connections) - self._busy):
            task.cancel()
        if self._busy:
            try:
                async with asyncio.timeout(self.grace_seconds):
                    while self._busy:
                        self._idle.clear()
                        await self._idle.wait()
            except TimeoutError:
                log.warning("in-flight requests cut off at stop", connections=len(self._busy))
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in servers:
            await server.wait_closed()
        self._server = None
        self._retired.clear()
        self._started = False
        self._listening_changed()
        self.host.ledger.commit_pending()
        self.host.ledger.group_commits = False
        loop = asyncio.get_running_loop()
        if loop.get_exception_handler() == self._loop_exception:
            loop.set_exception_handler(self._previous_exception_handler)

    # ------------------------------------------------------------------ connections under abuse

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The event loop's exception handler while serving: accept() out of descriptors is logged
        once per interval (asyncio retries by itself); anything else goes to the handler before us."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS and "accept" in str(context.get("message", "")):
            quiet = self._accept_log.due(loop.time(), self.host.settings.accept_error_log_seconds)
            if quiet is not None:
                log.warning("cannot accept connections: out of descriptors; accepting again shortly",
                            error=errno.errorcode.get(exc.errno or 0, str(exc.errno)), connections=len(self._connections),
                            repeats_not_logged=quiet)
            return
        if self._previous_exception_handler is not None:
            self._previous_exception_handler(loop, context)
        else:
            loop.default_exception_handler(context)

    def _schedule_sweep(self) -> None:
        if self._sweep_timer is not None or self._stopping or not self._connections:
            return
        settings = self.host.settings
        interval = min(1.0, max(0.01, min(settings.idle_timeout_seconds, settings.frame_deadline_seconds) / 4))
        self._sweep_timer = asyncio.get_running_loop().call_later(interval, self._sweep)

    def _sweep(self) -> None:
        """Close the connections idle too long or stuck inside a frame (a connection being answered is left alone)."""
        self._sweep_timer = None
        settings = self.host.settings
        now = asyncio.get_running_loop().time()
        for conn in list(self._connections.values()):
            if conn.expired or conn.task in self._busy:
                continue
            if conn.frame_started is not None:
                if now - conn.frame_started >= settings.frame_deadline_seconds:
                    self._expire(conn, "frame_deadline", f"frame not complete within {settings.frame_deadline_seconds:g} s")
            elif now - conn.last_activity >= settings.idle_timeout_seconds:
                self._expire(conn, "idle_timeout", f"nothing received for {settings.idle_timeout_seconds:g} s")
        self._schedule_sweep()

    def _expire(self, conn: _Connection, outcome: str, why: str) -> None:
        conn.expired = outcome
        log.info("closing connection: " + why, peer=conn.peer, outcome=outcome)
        self.journal.add(at=self._at(), peer=conn.peer, outcome=outcome, error=why)
        conn.task.cancel()

    def _over_limit(self, peer: str) -> bool:
        """True (logged at most once per interval, journalled) when a new connection exceeds ``max_connections``."""
        limit = self.host.settings.max_connections
        if len(self._connections) < limit:
            return False
        quiet = self._limit_log.due(asyncio.get_running_loop().time(), self.host.settings.accept_error_log_seconds)
        if quiet is not None:
            log.warning("connection limit reached: closing new connections", limit=limit, peer=peer,
                        repeats_not_logged=quiet)
        self.journal.add(at=self._at(), peer=peer, outcome="connection_limit", error=f"{limit} connections open")
        return True

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        if self._over_limit(peer):
            writer.close()
            return
        loop = asyncio.get_running_loop()
        conn = self._connections[task] = _Connection(task, peer, loop.time())
        self._schedule_sweep()
        bound = log.bind(peer=peer)
        frames = FrameReader(self.framing)
        try:
            refusing = self.faults.refuses_connection(self.clock.now())
            if refusing:
                bound.info("connection refused by fault", fault=refusing)
                self.journal.add(at=self._at(), peer=peer, outcome="refused", faults=(refusing,))
                return
            while not self._stopping:
                data = await reader.read(READ_CHUNK_BYTES)
                now = conn.last_activity = loop.time()
                if not data:
                    frames.close()  # raises on a truncated frame
                    bound.debug("connection closed by peer")
                    return
                complete = frames.feed(data)
                if not frames.buffered:
                    conn.frame_started = None
                elif complete or conn.frame_started is None:
                    conn.frame_started = now  # a new frame began in this read
                for frame in complete:
                    self._busy.add(task)
                    try:
                        keep_open = await self._serve_frame(frame, writer, bound, peer)
                    finally:
                        self._busy.discard(task)
                        self._idle.set()
                        conn.last_activity = loop.time()
                    if not keep_open:
                        return
        except FramingError as exc:
            bound.warning("bad frame, closing connection", error=str(exc), expected=self.expects)
            self.journal.add(at=self._at(), peer=peer, outcome="bad_frame", error=str(exc))
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            bound.info("connection lost", error=repr(exc))
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass
            self._connections.pop(task, None)  # last: stop() waits for connections still closing
            _changed(self._closed_waiters)

    async def _serve_frame(self, frame: Frame, writer: asyncio.StreamWriter, bound: Any, peer: str) -> bool:
        """Answer one frame by its plan; returns False when the connection must close."""
        now = self.clock.now()
        try:
            request = decode(frame.message, self.dialect)
        except CodecError as exc:
            bound.warning("undecodable message", error=str(exc), expected=self.expects)
            answer = self._format_error(frame, exc, now, peer)
            if answer is None:
                return False
            writer.write(answer)
            await writer.drain()
            return True
        if not is_request(request["t"]):
            bound.warning("not a request, closing connection", mti=request["t"])
            self.journal.add(at=now.isoformat(timespec="seconds"), peer=peer, outcome="not_a_request", request=request)
            return False
        kind = classify(request, self.dialect)
        plan = self.faults.plan_for(request, kind=kind, now=now)
        fault_ids = plan.directives.fault_ids
        logging_requests = bound.is_enabled_for(logging.INFO)  # masking every message costs: only when shown
        if logging_requests:
            bound.info("request", message=mask_message(request), faults=list(fault_ids))
        if not plan.process:
            bound.info("closing before processing (fault)", faults=list(fault_ids))
            self.journal.add(at=now.isoformat(timespec="seconds"), peer=peer, outcome="closed_before_processing",
                             request=request, faults=fault_ids)
            return False
        requirement: str | None = None
        mac_key: str | None = None
        try:
            answer_ = self.host.answer(request, now=now, directives=plan.directives, kind=kind, raw=frame.message,
                                       software_version=frame.header.software_version if frame.header else None)
            response, requirement, mac_key = answer_.response, answer_.processing_requirement, answer_.mac_key
        except Exception as exc:  # a bug in the core must not take the server down: answer 96
            bound.error("host core failed; answering 96", error=repr(exc), exc_info=True)
            response = {"t": response_mti(request["t"]), **{k: request[k] for k in ("3", "11", "41", "42", "60")
                                                             if k in request}, "39": codes.SYSTEM_MALFUNCTION}
        if requirement is not None and plan.processing_requirement is None:  # a fault's 处理要求 wins
            plan = replace(plan, processing_requirement=requirement)
        try:
            await self._durable()
        except Exception as exc:  # the books could not be written: nothing may be answered
            bound.error("ledger commit failed; closing without an answer", error=repr(exc))
            self.journal.add(at=now.isoformat(timespec="seconds"), peer=peer, outcome="commit_failed",
                             request=request, error=repr(exc))
            return False
        if mac_key is not None:  # MACed while encoded: one encoding
            message_bytes, mac = encode_signed(response, self.dialect, bytes.fromhex(mac_key),
                                               default_mac_algorithm(self.dialect.family))
            response = {**response, "64": mac}
            answer = self._frame(response, frame, plan, encoded=message_bytes)
        else:
            answer = self._frame(response, frame, plan)
        interim = self._interim(response, frame, plan) if plan.interim_count else None
        outcome = "answered" if plan.send else ("closed_after_processing" if plan.close_after else "dropped")
        self.journal.add(at=now.isoformat(timespec="seconds"), peer=peer, outcome=outcome, request=request,
                         response=response, faults=fault_ids)
        if logging_requests:
            bound.info("response", message=mask_message(response), outcome=outcome)
        for step in steps(plan, answer, self.framing, interim=interim):
            match step:
                case Write(data=data):
                    writer.write(data)
                    await writer.drain()
                case Sleep(seconds=seconds):
                    await asyncio.sleep(seconds)
                case Close():
                    return False
        return True

    async def _durable(self) -> None:
        """Wait until the group holding this request's writes is committed (group commit: the
        first request of a turn of the event loop schedules the commit; every request decided in
        that turn waits for the same one)."""
        if not self.host.ledger.pending_commit:
            return
        if self._commit_waiter is None:
            loop = asyncio.get_running_loop()
            self._commit_waiter = loop.create_future()
            self._group_size = self._group_seen = self._group_waits = 0
            loop.call_soon(self._commit_group)
        self._group_size += 1
        await asyncio.shield(self._commit_waiter)

    def _commit_group(self) -> None:
        """Commit the group, unless it grew since the last look: then wait one more turn of the loop
        (at most :data:`GROUP_COMMIT_MAX_WAITS`), so that requests whose bytes arrived meanwhile share
        the fsync.  A turn costs microseconds; an fsync tens of them."""
        if self._group_size > self._group_seen and self._group_waits < GROUP_COMMIT_MAX_WAITS:
            self._group_seen = self._group_size
            self._group_waits += 1
            asyncio.get_running_loop().call_soon(self._commit_group)
            return
        waiter, self._commit_waiter = self._commit_waiter, None
        assert waiter is not None
        try:
            self.host.ledger.commit_pending()
        except Exception as exc:
            waiter.set_exception(exc)
            waiter.exception()  # retrieved here too: a waiter cancelled meanwhile must not leave it unseen
        else:
            waiter.set_result(None)

    def _format_error(self, frame: Frame, exc: CodecError, now: datetime, peer: str) -> bytes | None:
        """Answer 30 when the MTI, STAN and TID could be read; otherwise close (None)."""
        try:
            partial = decode_unvalidated(frame.message, self.dialect)
        except CodecError:
            partial = {}
        if not (partial.get("t") and is_request(partial["t"]) and "11" in partial and "41" in partial):
            self.journal.add(at=now.isoformat(timespec="seconds"), peer=peer, outcome="undecodable", error=str(exc))
            return None
        response: Message = {"t": response_mti(partial["t"]), "11": partial["11"], "41": partial["41"],
                             "39": codes.FORMAT_ERROR}
        for k in self.dialect.mandatory.get(response["t"], ()):
            if k not in response and k in partial:
                response[k] = partial[k]
        try:
            answer = self._frame(response, frame, Plan())
        except CodecError:
            self.journal.add(at=now.isoformat(timespec="seconds"), peer=peer, outcome="undecodable", error=str(exc))
            return None
        self.host.record_rejected(partial, reason=exc.msg, now=now)
        self.journal.add(at=now.isoformat(timespec="seconds"), peer=peer, outcome="format_error",
                         request=partial, response=response, error=str(exc))
        return answer

    def _frame(self, response: Message, request_frame: Frame, plan: Plan, *, encoded: bytes | None = None) -> bytes:
        header = request_frame.header
        if header is not None and plan.processing_requirement is not None:
            header = replace(header, processing_requirement=plan.processing_requirement)
        return pack(Frame(message=encoded if encoded is not None else encode_response(response, self.dialect),
                          tpdu=request_frame.tpdu.swapped() if request_frame.tpdu else None,
                          header=header), self.framing)

    def _interim(self, response: Message, request_frame: Frame, plan: Plan) -> bytes:
        """An interim answer: the response without approval data or MAC, 39 = 09 (request in progress)."""
        interim = {k: v for k, v in response.items() if k not in ("15", "37", "38", "54", "62", "64")}
        interim["39"] = codes.REQUEST_IN_PROGRESS
        return self._frame(interim, request_frame, plan)

    @property
    def expects(self) -> str:
        """What this port reads, for the log of a frame or message it could not: a terminal with
        another dialect or framing is the usual cause."""
        return f"{self.dialect.describe()} with {self.framing.describe()}"

    def _at(self) -> str:
        return self.clock.now().isoformat(timespec="seconds")

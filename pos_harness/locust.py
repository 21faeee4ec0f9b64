"""Locust users that are real pos-harness terminals, so ``locust -f`` spreads terminal load over machines.

Install with ``pip install 'pos-harness[load]'``.  A locustfile subclasses :class:`PosTerminalUser`
(the class itself is abstract, so importing it adds no user of its own)::

    # locustfile.py
    from pos_harness.locust import PosTerminalUser

    class Till(PosTerminalUser):
        mix = {"sale": 80, "void": 5, "refund": 5, "balance": 10}

    $ locust -f locustfile.py --headless -u 200 -r 20 -t 5m --host 10.0.0.5:8583
    $ locust -f locustfile.py --master ...   and on each machine:   locust -f locustfile.py --worker ...

Each user is one terminal with its own TID and its own in-memory journal: it signs on when it starts,
runs one operation of its mix per task (sale, void, refund, balance, offline_sale, echo: exactly as
``pos-terminal load`` runs them, pending reversals first and a lost answer reversed at once) and
settles when it stops.  Every operation is reported as one Locust request: ``request_type`` is the
request's MTI (``0200``), ``name`` the operation (``sale``), ``response_time`` in milliseconds; it
fails (``exception``) when no trustworthy answer came, when the terminal refused it itself, when a
settlement did not close, and, with ``declines_are_failures``, when the host declined.  TIDs are
``first_tid + 10000 * worker index + n``, so workers never share one.

Locust runs users as gevent greenlets; the terminal's channel is asyncio.  The operations therefore
run on one asyncio event loop in a real thread per process, and each greenlet waits for its own
operation's result without blocking the others.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from typing import Any, ClassVar, TypeVar

import gevent
from gevent import monkey
from gevent.event import AsyncResult
from locust import User, constant, task

from emulator.channel import Endpoint
from emulator.hostproc import host_address
from emulator.load import DEFAULT_MIX, MIX_KINDS, UNANSWERED, LoadTerminal
from emulator.messages import DEFAULT_MID
from emulator.runner import outcome_of
from emulator.settings import TerminalSettings
from emulator.terminal import Operation, Outcome, Result, Settle, SignOn
from specs.framing import DEFAULT_FRAMING
from specs.logs import configure_logging

# The terminals log as pos-terminal does by default: warnings and errors only, on stderr, masked.
configure_logging(level="warning")

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_numbers = itertools.count(0)


class TerminalFailure(Exception):
    """An operation a Locust user counts as failed: no answer, refused, declined (when asked), not settled."""


def _event_loop() -> asyncio.AbstractEventLoop:
    """This process's asyncio loop, running in a real (not monkey-patched) thread."""
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
        thread = monkey.get_original("threading", "Thread")(target=_loop.run_forever, name="pos-harness-asyncio",
                                                           daemon=True)
        thread.start()
    return _loop


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the asyncio thread; only the calling greenlet waits for it."""
    future: Future[T] = asyncio.run_coroutine_threadsafe(coro, _event_loop())
    waiter: AsyncResult = AsyncResult()
    hub = gevent.get_hub()

    def hand_over(done: Future[T]) -> None:  # runs on the asyncio thread: wake the hub safely
        error = done.exception()
        if error is not None:
            hub.loop.run_callback_threadsafe(waiter.set_exception, error)
        else:
            hub.loop.run_callback_threadsafe(waiter.set, done.result())

    future.add_done_callback(hand_over)
    return waiter.get()  # type: ignore[no-any-return]


class PosTerminalUser(User):
    """One emulated terminal as a Locust user.  Set the class attributes in a subclass.

    Attributes:
        dialect: ``intl-ascii``, ``intl-bcd`` or ``cup`` (framing: the dialect's default).
        response_timeout: the terminal's response timeout, seconds.
        mix: operation type -> weight (percent), as ``pos-terminal load --mix``.
        declines_are_failures: report a host decline as a failed request.
        first_tid: the TID of worker 0's first user.
        settings: the terminal's settings (fix toggles, limits).
    """

    abstract = True
    wait_time = constant(0)
    dialect: ClassVar[str] = "intl-bcd"
    response_timeout: ClassVar[float] = 2.0
    mix: ClassVar[Mapping[str, float]] = DEFAULT_MIX
    declines_are_failures: ClassVar[bool] = False
    first_tid: ClassVar[int] = 40000001
    settings: ClassVar[TerminalSettings] = TerminalSettings()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        unknown = set(self.mix) - set(MIX_KINDS)
        if unknown:
            raise ValueError(f"{type(self).__name__}.mix names {', '.join(sorted(unknown))}, expecting one of "
                             f"{', '.join(MIX_KINDS)}")
        if not self.host:
            raise ValueError("no host: give locust --host HOST:PORT (the acquirer host's ISO 8583 port)")
        address, port = host_address(self.host, "--host")
        worker = int(getattr(self.environment.runner, "worker_index", 0) or 0)
        tid = f"{self.first_tid + 10_000 * worker + next(_numbers):08d}"
        endpoint = Endpoint.for_timeout(address, port, self.response_timeout)

        async def make() -> LoadTerminal:  # made on the asyncio thread: its SQLite journal is used there
            return LoadTerminal(tid=tid, mid=DEFAULT_MID, dialect_name=self.dialect, endpoint=endpoint,
                                framing=DEFAULT_FRAMING[self.dialect], timeout_seconds=self.response_timeout,
                                settings=self.settings)

        self.terminal: LoadTerminal = run_coroutine(make())
        self._kinds, self._weights = zip(*((k, w) for k, w in self.mix.items() if w > 0), strict=True)

    def on_start(self) -> None:
        self._perform("signon", lambda: SignOn(now=self.terminal.now()))

    @task
    def transaction(self) -> None:
        kind = self.terminal.rng.choices(self._kinds, self._weights)[0]
        self._perform(kind.replace("_", "-"), lambda: self.terminal.operation(kind))

    def on_stop(self) -> None:
        self._perform("settle", lambda: Settle(now=self.terminal.now()))

        async def close() -> None:
            self.terminal.close()

        run_coroutine(close())

    def _perform(self, name: str, make: Callable[[], Operation]) -> None:
        started = time.perf_counter()
        result: Result | None = run_coroutine(self.terminal.run(make))
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self.environment.events.request.fire(
            request_type=(result.mti if result is not None else None) or "----", name=name,
            response_time=elapsed_ms, response_length=0, exception=self._failure(result),
            context={"tid": self.terminal.tid, "stan": result.stan if result else None,
                     "rc": result.rc if result else None})

    def _failure(self, result: Result | None) -> TerminalFailure | None:
        if result is None:
            return TerminalFailure(self.terminal.errors[-1] if self.terminal.errors else "the operation did not run")
        what = f"TID {self.terminal.tid} STAN {result.stan or '-'}: {result.outcome.value} ({result.text})"
        if result.outcome in UNANSWERED or result.outcome is Outcome.REFUSED:
            return TerminalFailure(what)
        if result.outcome is Outcome.DECLINED and self.declines_are_failures:
            return TerminalFailure(f"{what}, rc {result.rc}")
        if result.command == "settle" and outcome_of(result.as_dict()) != "balanced":
            return TerminalFailure(what)
        return None

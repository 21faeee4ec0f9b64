"""Load: many real terminals from one process against one host, with faults, then the books checked.

Every load terminal is the emulator's own terminal: a :class:`emulator.terminal.Terminal` core with
its own journal (counters, working keys, journal J, pending reversals R, SAF queue Q, settlement
state S), driven by :func:`emulator.channel.run_invocation` exactly as one ``pos-terminal`` command
is (the reversal a lost answer leaves behind goes at once).  A run has three phases:

1. **sign-on**: every terminal signs on (at most ``concurrency`` at a time);
2. **load**: operations of the transaction mix arrive on a schedule (open loop: ``rate`` per second,
   each on a terminal picked at random, queued there while that terminal is busy; its latency runs
   from the *scheduled* time, so a stalled host shows up as latency instead of fewer requests), or
   back to back per terminal (closed loop).  Bounded by a duration or a count.  The fault mix is
   added to the host through its control API before this phase and removed after it;
3. **settlement**: every terminal settles (pending reversals and queued advices first, as the
   terminal always does), then the host's ledgers are read through the control API and the
   invariants are checked per terminal (G1-G5, G8) and per merchant (G6).  G7 compares a run that
   was interrupted with one that was not; a load run has no such twin, so it is reported as not
   applicable.

Journals live in memory: one in-memory SQLite database per terminal (:class:`Journal` on
``":memory:"``), the same code and schema as a journal file, without a file descriptor or an fsync
per terminal.  ``journal_dir`` gives each terminal a file there instead (``<TID>.sqlite``, kept
after the run), with the durability of a real terminal: each money-protecting write is fsynced.

Latency is recorded in microseconds in one HDR histogram per operation type (``hdrhistogram``);
the timeline keeps, per second of the run, the latencies of the operations that finished in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from hdrh.histogram import HdrHistogram

from emulator.channel import Endpoint, RequestNotBuilt, run_invocation
from emulator.control_client import ControlClient
from emulator.hostproc import HostProcess, host_address, start_host
from emulator.invariants import INVARIANTS, Evidence, InvariantResult, check_all, check_g6
from emulator.journal import Journal
from emulator.messages import DEFAULT_MID, Profile
from emulator.runner import (
    RunView,
    StepRecord,
    TraceItem,
    normalise_payout,
    normalise_settlement,
    outcome_of,
)
from emulator.settings import TerminalSettings
from emulator.terminal import (
    Balance,
    Echo,
    OfflineSale,
    Operation,
    Outcome,
    Reference,
    Refund,
    Result,
    Sale,
    Settle,
    SignOn,
    State,
    Terminal,
    TerminalUsageError,
    Void,
)
from specs.cards import Card, seeded_card
from specs.dialects import get_dialect
from specs.framing import DEFAULT_FRAMING, Framing

log = structlog.get_logger("pos_terminal.load")

#: Operation types a transaction mix may name.
MIX_KINDS = ("sale", "void", "refund", "balance", "offline_sale", "echo")
DEFAULT_MIX: Mapping[str, float] = {"sale": 80.0, "void": 5.0, "refund": 5.0, "balance": 10.0}
#: Outcomes of a request that went out and got no trustworthy answer, or could not go out.
UNANSWERED = frozenset({Outcome.NO_ANSWER, Outcome.CONNECT_FAILED, Outcome.MAC_FAILED})
#: Invariants checked per terminal; G6 is checked per merchant over all terminals.
PER_TERMINAL_INVARIANTS = ("G1", "G2", "G3", "G4", "G5", "G8")
#: Latency range of the histograms, microseconds (1 µs .. 1 hour, 3 significant digits).
HISTOGRAM_MAX_US = 3_600_000_000
#: First TID of a run (each terminal gets the next number).
DEFAULT_FIRST_TID = 30000001


class LoadError(ValueError):
    """Bad load options (a mix, a fault mix, a bound), named with what was expected."""


def parse_mix(text: str, *, option: str = "--mix", allowed: Sequence[str] | None = MIX_KINDS) -> dict[str, float]:
    """``"sale=80,void=5"`` -> ``{"sale": 80.0, "void": 5.0}``.

    >>> parse_mix("sale=80, balance=20")
    {'sale': 80.0, 'balance': 20.0}
    >>> parse_mix("sale=80,tip=5")
    Traceback (most recent call last):
    emulator.load.LoadError: --mix names 'tip', expecting one of sale, void, refund, balance, offline_sale, echo

    Raises:
        LoadError: an item is not NAME=NUMBER, a number is negative, a name is not allowed.
    """
    out: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            number = float(value) if sep else float("nan")
        except ValueError:
            number = float("nan")
        if not name or number != number or number < 0:
            raise LoadError(f"{option} item {item!r} is not NAME=PERCENT, expecting e.g. sale=80")
        if allowed is not None and name not in allowed:
            raise LoadError(f"{option} names {name!r}, expecting one of {', '.join(allowed)}")
        out[name] = number
    return out


@dataclass(frozen=True, kw_only=True)
class LoadOptions:
    """One load run.

    Attributes:
        terminals: how many terminals (distinct TIDs from ``first_tid`` on).
        rate: open loop, operations per second over all terminals; None: closed loop.
        duration_seconds, count: the bound of the load phase (one of them at least).
        mix: operation type -> weight (percent).
        faults: host fault action type -> percent of the mix's requests it fires on.
        fault_delay_seconds: how late ``delay_response`` answers (None: 1.5 x the response timeout,
            so the answer arrives after the terminal gave up and reversed).
        host, control_url, control_token: an external host (HOST:PORT) and its control API; None:
            a stub host child is started.
        host_ledger: the child's ledger file (None: a file in a temporary directory).
        journal_dir: one journal file per terminal in this directory (None: in memory).
        timeout_seconds: the terminals' response timeout.
        concurrency: terminals signing on or settling at once.
        seed: seeds the schedule, the mix, the amounts and the fault draws.
        settings: the terminals' settings (fix toggles; all on by default).
    """

    terminals: int = 10
    rate: float | None = None
    duration_seconds: float | None = None
    count: int | None = None
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    faults: Mapping[str, float] = field(default_factory=dict)
    fault_delay_seconds: float | None = None
    dialect: str = "intl-bcd"
    host: str | None = None
    control_url: str | None = None
    control_token: str | None = None
    host_ledger: str | None = None
    journal_dir: str | None = None
    timeout_seconds: float = 2.0
    concurrency: int = 100
    seed: int = 0
    first_tid: int = DEFAULT_FIRST_TID
    mid: str = DEFAULT_MID
    settings: TerminalSettings = field(default_factory=TerminalSettings)

    def validate(self) -> None:
        """Raises LoadError naming the first bad option."""
        if self.terminals < 1:
            raise LoadError(f"terminals is {self.terminals}, expecting at least 1")
        if self.duration_seconds is None and self.count is None:
            raise LoadError("the load needs a bound: a duration or a count")
        if self.rate is not None and self.rate <= 0:
            raise LoadError(f"rate is {self.rate}, expecting a positive number of operations per second")
        if not self.mix or sum(self.mix.values()) <= 0:
            raise LoadError("the mix has no operation with a weight above 0, expecting e.g. sale=80,balance=20")
        unknown = set(self.mix) - set(MIX_KINDS)
        if unknown:
            raise LoadError(f"the mix names {', '.join(sorted(unknown))}, expecting one of {', '.join(MIX_KINDS)}")
        for name, percent in self.faults.items():
            if not 0 <= percent <= 100:
                raise LoadError(f"fault {name}={percent:g} is not a percentage, expecting 0 to 100")
        if self.host is not None:
            host_address(self.host)
            if self.control_url is None:
                raise LoadError("an external host needs its control API URL too (--control): the fault mix is set "
                                "and the books are checked through it")
        if self.first_tid + self.terminals - 1 > 99_999_999:
            raise LoadError(f"{self.terminals} terminals from TID {self.first_tid} do not fit 8 digits")

    @property
    def planned(self) -> int | None:
        """Operations the load phase schedules, when known in advance (the smaller bound when both are given)."""
        bounds = [self.count] if self.count is not None else []
        if self.rate is not None and self.duration_seconds is not None:
            bounds.append(int(self.rate * self.duration_seconds))
        return min(bounds) if bounds else None


# ============================================================================ statistics


@dataclass
class TypeStats:
    """One operation type: count, outcomes, response codes, latency histogram."""

    name: str
    mti: str | None = None
    histogram: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, HISTOGRAM_MAX_US, 3))
    outcomes: Counter[str] = field(default_factory=Counter)
    rcs: Counter[str] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return sum(self.outcomes.values())

    def record(self, result: Result | None, latency_seconds: float) -> None:
        self.mti = self.mti or (result.mti if result is not None else None)
        self.outcomes[result.outcome.value if result is not None else "error"] += 1
        if result is not None and result.rc:
            self.rcs[result.rc] += 1
        self.histogram.record_value(min(HISTOGRAM_MAX_US, max(1, round(latency_seconds * 1_000_000))))

    def percentile_ms(self, percentile: float) -> float:
        return float(self.histogram.get_value_at_percentile(percentile)) / 1000.0

    def as_dict(self, seconds: float) -> dict[str, Any]:
        h = self.histogram
        return {"type": self.name, "mti": self.mti, "count": self.count, "outcomes": dict(self.outcomes),
                "rc": dict(sorted(self.rcs.items())),
                "latency_ms": {"p50": self.percentile_ms(50), "p90": self.percentile_ms(90),
                               "p99": self.percentile_ms(99), "max": h.get_max_value() / 1000.0,
                               "mean": round(h.get_mean_value() / 1000.0, 3)},
                "per_second": round(self.count / seconds, 2) if seconds > 0 else None,
                "hdr_histogram": h.encode().decode("ascii")}


@dataclass
class Timeline:
    """Per second of the run: latencies (ms) of the operations that finished in it, and failures."""

    latencies: dict[int, list[float]] = field(default_factory=dict)
    failures: Counter[int] = field(default_factory=Counter)

    def add(self, at_seconds: float, latency_seconds: float, failed: bool) -> None:
        second = int(at_seconds)
        self.latencies.setdefault(second, []).append(latency_seconds * 1000.0)
        if failed:
            self.failures[second] += 1

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for second in sorted(self.latencies):
            values = sorted(self.latencies[second])
            out.append({"second": second, "count": len(values), "failed": self.failures[second],
                        "p50_ms": round(values[len(values) // 2], 3),
                        "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))], 3),
                        "max_ms": round(values[-1], 3)})
        return out


# ============================================================================ one terminal


class LoadTerminal:
    """One real terminal of a load: its core, its journal, its card, its operations.

    The core is kept from one operation to the next (as in a terminal that stays on); every durable
    action goes to its journal before the next action runs, as in any ``pos-terminal`` command.
    """

    def __init__(self, *, tid: str, mid: str, dialect_name: str, endpoint: Endpoint, framing: Framing,
                 timeout_seconds: float, settings: TerminalSettings, journal_path: str = ":memory:",
                 seed: int = 0) -> None:
        self.dialect = get_dialect(dialect_name)
        self.tid = tid
        self.endpoint, self.framing = endpoint, framing
        self.journal = Journal(journal_path)
        profile = Profile(tid=tid, mid=mid, family=self.dialect.family)
        self.terminal = Terminal(profile, self.journal.load(), response_timeout_seconds=timeout_seconds,
                                 settings=settings)
        self.card: Card = seeded_card(seed=int(tid) if tid.isdigit() else seed,
                                      scheme="unionpay" if self.dialect.family == "cup" else "visa")
        self.rng = random.Random(f"{seed}:{tid}")
        #: (trace sequence number it follows, pending reversal STANs, queued advice STANs), on change.
        self.snapshots: list[tuple[int, tuple[str, ...], tuple[str, ...], str]] = []
        #: One step per operation whose request is that of an intended purchase (G3).
        self.steps: dict[str, StepRecord] = {}
        self.errors: list[str] = []

    def now(self) -> datetime:
        return datetime.now() + timedelta(seconds=self.terminal.books.clock_offset_seconds)

    def operation(self, kind: str) -> Operation:
        """The next operation of ``kind``; a void or refund refers to a sale of this terminal's journal."""
        now, books = self.now(), self.terminal.books
        amount = self.rng.randint(100, 20_000)
        standing = [r for r in books.records if r.kind == "sale" and r.status == "approved"]
        match kind:
            case "sale":
                return Sale(now=now, amount_minor=amount, card=self.card)
            case "balance":
                return Balance(now=now, card=self.card)
            case "offline_sale":
                return OfflineSale(now=now, amount_minor=amount, card=self.card)
            case "echo":
                return Echo(now=now)
            case "void":  # none standing: the terminal refuses it itself, as it would at the counter
                return Void(now=now, original=Reference(invoice=standing[-1].invoice) if standing else Reference())
            case "refund":
                if not standing:
                    return Refund(now=now, amount_minor=amount, original=Reference())
                original = self.rng.choice(standing)
                return Refund(now=now, amount_minor=max(1, original.amount_minor // 2),
                              original=Reference(invoice=original.invoice))
        raise LoadError(f"operation {kind!r}, expecting one of {', '.join(MIX_KINDS)}")

    async def run(self, make: Operation | Callable[[], Operation]) -> Result | None:
        """Run one operation as ``pos-terminal`` runs one command; None when it could not run at all
        (the reason is in :attr:`errors`)."""
        if self.terminal.state is State.DONE:
            self.terminal.start_next_operation()
        operation = make() if callable(make) else make
        try:
            result = await run_invocation(operation, terminal=self.terminal, journal=self.journal,
                                          endpoint=self.endpoint, framing=self.framing, dialect=self.dialect,
                                          idle_now=self.now)
        except (RequestNotBuilt, TerminalUsageError, OSError, sqlite3.Error) as exc:
            self.errors.append(f"TID {self.tid} {type(operation).__name__}: {exc}")
            log.error("load operation failed", tid=self.tid, error=str(exc))
            self.terminal = Terminal(self.terminal.profile, self.journal.load(),
                                     response_timeout_seconds=self.terminal.response_timeout_seconds,
                                     settings=self.terminal.settings)
            return None
        if isinstance(operation, Sale) and result.stan and result.mti == "0200":
            self.steps[f"s{len(self.steps) + 1}"] = StepRecord(
                index=len(self.steps), kind="terminal", label=None, name="sale", command="sale",
                intent=f"{self.tid}-sale-{len(self.steps) + 1}", stan=result.stan)
        self._snapshot()
        return result

    def _snapshot(self) -> None:
        books = self.terminal.books
        state = (tuple(r.stan for r in books.reversals), tuple(a.stan for a in books.advices),
                 "idle" if books.settlement is None else books.settlement.stage.value)
        last = self.snapshots[-1][1:] if self.snapshots else ((), (), "idle")
        if state != last:
            self.snapshots.append((self.journal.last_trace_seq(), *state))

    def trace(self) -> list[TraceItem]:
        """The terminal's wire trace from its journal, with its state snapshots in place."""
        items: list[TraceItem] = []
        snapshots = iter(self.snapshots)
        pending = next(snapshots, None)

        def add_status(upto: int) -> None:
            nonlocal pending
            while pending is not None and pending[0] <= upto:
                items.append(TraceItem(seq=len(items) + 1, at_ms=0.0, kind="status", step=None, step_index=None,
                                       pending_reversals=pending[1], saf_queue=pending[2],
                                       settlement_state=pending[3]))
                pending = next(snapshots, None)

        for row in self.journal.trace():
            add_status(int(row["seq"]) - 1)
            message = row.get("message")
            items.append(TraceItem(seq=len(items) + 1, at_ms=0.0, kind=str(row["kind"]), step=None, step_index=None,
                                   message=dict(message) if isinstance(message, Mapping) else None,
                                   matched=row.get("matched"), mac_verified=row.get("mac_verified")))
        add_status(1 << 62)
        return items

    def evidence(self, host: HostBooks) -> Evidence:
        """This terminal's books against the host's rows for its TID."""
        books = self.terminal.books
        view = RunView(family=self.dialect.family, tid=self.tid, trace=self.trace(), steps=self.steps,
                       authorizations=host.authorizations.get(self.tid, []),
                       settlements=host.settlements.get(self.tid, []), payouts=[], host_journal=[], books=books,
                       closed_batches=[c.as_dict() for c in books.closed_batches],
                       business_date=host.business_date, holidays=host.holidays,
                       final_reversal_codes=tuple(self.terminal.settings.final_reversal_codes))
        return view.evidence()

    def close(self) -> None:
        self.journal.close()


@dataclass
class HostBooks:
    """The host's ledgers as the control API returned them, grouped by TID."""

    authorizations: dict[str, list[dict[str, Any]]]
    settlements: dict[str, list[dict[str, Any]]]
    all_authorizations: list[dict[str, Any]]
    payouts: list[dict[str, Any]]
    business_date: date | None
    holidays: frozenset[date]

    @classmethod
    async def read(cls, control: ControlClient) -> HostBooks:
        authorizations, settlements, payouts = await asyncio.gather(
            *(asyncio.to_thread(control.ledger, t) for t in ("authorizations", "settlements", "payouts")))
        clock, settings = await asyncio.gather(asyncio.to_thread(control.clock), asyncio.to_thread(control.settings))
        by_tid: dict[str, list[dict[str, Any]]] = {}
        for row in authorizations:
            by_tid.setdefault(str(row.get("tid")), []).append(row)
        settled: dict[str, list[dict[str, Any]]] = {}
        for row in settlements:
            settled.setdefault(str(row.get("tid")), []).append(normalise_settlement(row))
        return cls(authorizations=by_tid, settlements=settled, all_authorizations=authorizations,
                   payouts=[normalise_payout(p) for p in payouts],
                   business_date=date.fromisoformat(clock["business_date"]) if clock.get("business_date") else None,
                   holidays=frozenset(date.fromisoformat(d) for d in settings.get("holidays") or ()))


# ============================================================================ the run


@dataclass
class LoadResult:
    """What a load run did and found."""

    options: LoadOptions
    stats: dict[str, TypeStats]
    timeline: Timeline
    wire: dict[str, Counter[str]]
    load_seconds: float
    wall_seconds: float
    scheduled: int
    settled: int
    not_settled: list[str]
    invariants: dict[str, list[str]]
    errors: list[str]
    unanswered: int
    nofile_limit: tuple[int, int]
    #: Seconds of the sign-on and settlement phases.
    phase_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def books_equal(self) -> bool:
        return not any(self.invariants.values()) and not self.not_settled

    @property
    def ok(self) -> bool:
        """Books equal, every terminal settled, nothing errored, and with no fault mix every request answered."""
        return self.books_equal and not self.errors and (bool(self.options.faults) or self.unanswered == 0)

    def load_stats(self) -> list[TypeStats]:
        return [s for name, s in self.stats.items() if name not in ("signon", "settle")]

    def as_dict(self) -> dict[str, Any]:
        o = self.options
        operations = sum(s.count for s in self.load_stats())
        return {"schema": "pos-harness/load/1", "ok": self.ok, "books_equal": self.books_equal,
                "options": {"terminals": o.terminals, "rate": o.rate, "closed_loop": o.rate is None,
                            "duration_seconds": o.duration_seconds, "count": o.count, "mix": dict(o.mix),
                            "faults": dict(o.faults), "dialect": o.dialect, "timeout_seconds": o.timeout_seconds,
                            "journals": o.journal_dir or "memory", "seed": o.seed,
                            "host": o.host or "stub host child"},
                "scheduled": self.scheduled, "operations": operations, "unanswered": self.unanswered,
                "load_seconds": round(self.load_seconds, 3), "wall_seconds": round(self.wall_seconds, 3),
                "throughput_per_second": round(operations / self.load_seconds, 2) if self.load_seconds else None,
                "types": [s.as_dict(self.phase_seconds.get(s.name, self.load_seconds)) for s in self.stats.values()],
                "phase_seconds": {k: round(v, 3) for k, v in self.phase_seconds.items()},
                "wire": {mti: dict(sorted(c.items())) for mti, c in sorted(self.wire.items())},
                "settlement": {"settled": self.settled, "terminals": o.terminals, "not_settled": self.not_settled},
                "invariants": {g: {"title": INVARIANTS[g][0], "holds": not f, "findings": f}
                               for g, f in self.invariants.items()},
                "invariant_g7": "not applicable: a load run has no uninterrupted twin to compare with",
                "errors": self.errors, "nofile_limit": list(self.nofile_limit), "timeline": self.timeline.rows()}


def raise_nofile_limit(wanted: int) -> tuple[int, int]:
    """Raise the soft open-file limit towards the hard limit when ``wanted`` descriptors may not fit.

    Returns:
        The (soft, hard) limit in force afterwards.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = hard if hard == resource.RLIM_INFINITY else min(hard, max(wanted, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft, hard


@contextlib.asynccontextmanager
async def _host(options: LoadOptions) -> AsyncIterator[tuple[str, int, str]]:
    """The host to load and its control API: the external one, or a stub host child (stopped on exit)."""
    if options.host is not None:
        address, port = host_address(options.host)
        assert options.control_url is not None, "validate() requires the control API of an external host"
        yield address, port, options.control_url
        return
    framing = DEFAULT_FRAMING[options.dialect]
    with tempfile.TemporaryDirectory(prefix="pos-harness-load-") as tmp:
        ledger = options.host_ledger or str(Path(tmp) / "host.sqlite")
        process: HostProcess = await asyncio.to_thread(
            start_host, "--log-level", "warning", "serve", "--dialect", options.dialect, "--port", "0",
            "--control-port", "0", "--ledger", ledger, "--length-prefix", framing.length_prefix,
            "--tpdu" if framing.tpdu else "--no-tpdu", "--cup-header" if framing.cup_header else "--no-cup-header")
        try:
            yield "127.0.0.1", process.port, f"http://127.0.0.1:{process.ready['control_port']}"
        finally:
            await asyncio.to_thread(process.stop)


class _Progress:
    """tqdm on stderr, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def start(self, description: str, total: int | None) -> None:
        self.close()
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, unit="op", mininterval=0.5, leave=False, dynamic_ncols=True)

    def update(self, failed: int) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if failed:
                self.bar.set_postfix(failed=failed, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


async def run_load(options: LoadOptions, *, progress: bool = False) -> LoadResult:
    """Sign on every terminal, run the load with its fault mix, settle every terminal, check the books.

    Raises:
        LoadError: bad options.
        emulator.hostproc.HostStartError: the stub host child did not start.
        emulator.control_client.ControlApiError: the control API refused a request (e.g. an unknown fault type).
        emulator.control_client.ControlApiUnreachable: the control API could not be reached.
    """
    options.validate()
    wall_start = time.monotonic()
    nofile = raise_nofile_limit(options.terminals * (4 if options.journal_dir else 1) + 256)
    bar = _Progress(progress)
    async with _host(options) as (address, port, control_url):
        control = ControlClient(control_url, token=options.control_token, timeout_seconds=120.0)
        endpoint = Endpoint.for_timeout(address, port, options.timeout_seconds)
        framing = DEFAULT_FRAMING[options.dialect]
        if options.journal_dir:
            await asyncio.to_thread(Path(options.journal_dir).mkdir, parents=True, exist_ok=True)
        terminals = [LoadTerminal(tid=f"{options.first_tid + i:08d}", mid=options.mid, dialect_name=options.dialect,
                                  endpoint=endpoint, framing=framing, timeout_seconds=options.timeout_seconds,
                                  settings=options.settings, seed=options.seed,
                                  journal_path=str(Path(options.journal_dir) / f"{options.first_tid + i:08d}.sqlite")
                                  if options.journal_dir else ":memory:")
                     for i in range(options.terminals)]
        stats: dict[str, TypeStats] = {}
        timeline = Timeline()
        phase_seconds: dict[str, float] = {}
        failed = 0

        def record(result: Result | None, name: str, latency: float) -> None:
            nonlocal failed
            if name not in stats:
                stats[name] = TypeStats(name)
            stats[name].record(result, latency)
            if result is None or result.outcome in UNANSWERED:
                failed += 1

        async def each(phase: str, make: Callable[[LoadTerminal], Operation]) -> dict[str, Result | None]:
            limit = asyncio.Semaphore(options.concurrency)
            results: dict[str, Result | None] = {}
            bar.start(phase, len(terminals))
            phase_start = time.monotonic()

            async def one(t: LoadTerminal) -> None:
                async with limit:
                    started = time.monotonic()
                    results[t.tid] = result = await t.run(make(t))
                    record(result, phase, time.monotonic() - started)
                    bar.update(failed)

            await asyncio.gather(*(one(t) for t in terminals))
            phase_seconds[phase] = time.monotonic() - phase_start
            return results

        try:
            await each("signon", lambda t: SignOn(now=t.now()))
            fault_ids: list[str] = []
            load_start = time.monotonic()
            try:
                await _add_faults(control, options, fault_ids)
                load_start = time.monotonic()
                scheduled = await _load_phase(options, terminals, record, timeline, bar, lambda: failed)
            finally:
                load_seconds = time.monotonic() - load_start
                for fault_id in fault_ids:
                    await asyncio.to_thread(control.remove_fault, fault_id)
            settled = await each("settle", lambda t: Settle(now=t.now()))
            bar.close()
            not_settled = [f"TID {tid}: {r.outcome.value if r else 'error'} ({r.text if r else 'did not run'})"
                           for tid, r in settled.items() if r is None or outcome_of(r.as_dict()) != "balanced"]
            invariants = await _check_books(control, terminals)
            wire = _wire_counts(terminals)
            errors = [e for t in terminals for e in t.errors]
        finally:
            bar.close()
            for t in terminals:
                t.close()
    unanswered = sum(n for name, s in stats.items() if name not in ("signon", "settle")
                     for o, n in s.outcomes.items() if o == "error" or Outcome(o) in UNANSWERED)
    signon = stats["signon"].outcomes
    errors += [f"{n} terminals did not sign on: {outcome}" for outcome, n in signon.items() if outcome != "approved"]
    return LoadResult(options=options, stats=stats, timeline=timeline, wire=wire, load_seconds=load_seconds,
                      wall_seconds=time.monotonic() - wall_start, scheduled=scheduled,
                      settled=len(terminals) - len(not_settled), not_settled=not_settled, invariants=invariants,
                      errors=errors, unanswered=unanswered, nofile_limit=nofile, phase_seconds=phase_seconds)


async def _add_faults(control: ControlClient, options: LoadOptions, ids: list[str]) -> None:
    """One host fault per entry of the fault mix, on the mix's own requests, at its seeded percentage;
    each one's id goes to ``ids`` as soon as the host took it (so that it is removed whatever follows)."""
    kinds = sorted(options.mix)
    for number, (action, percent) in enumerate(sorted(options.faults.items())):
        if percent <= 0:
            continue
        body: dict[str, Any] = {"when": {"kind": kinds, "probability": percent / 100.0, "seed": options.seed + number},
                                "action": {"type": action}}
        if action == "delay_response":
            body["action"]["seconds"] = options.fault_delay_seconds if options.fault_delay_seconds is not None \
                else 1.5 * options.timeout_seconds
        ids.append(await asyncio.to_thread(control.add_fault, **body))


async def _load_phase(options: LoadOptions, terminals: list[LoadTerminal],
                      record: Callable[[Result | None, str, float], None], timeline: Timeline,
                      bar: _Progress, failures: Callable[[], int]) -> int:
    """Open or closed loop over the terminals; returns how many operations were scheduled."""
    rng = random.Random(options.seed)
    kinds, weights = zip(*((k, w) for k, w in options.mix.items() if w > 0), strict=True)
    loop = asyncio.get_running_loop()
    start = loop.time()
    bar.start("load", options.planned)

    async def perform(t: LoadTerminal, kind: str, since: float) -> None:
        result = await t.run(lambda: t.operation(kind))
        done = loop.time()
        name = result.command if result is not None else kind.replace("_", "-")
        record(result, name, done - since)
        timeline.add(done - start, done - since, result is None or result.outcome in UNANSWERED)
        bar.update(failures())

    if options.rate is None:  # closed loop: each terminal waits for its answer, then goes again
        budget = [options.count if options.count is not None else -1]
        deadline = start + options.duration_seconds if options.duration_seconds is not None else None

        async def closed(t: LoadTerminal) -> int:
            done = 0
            while budget[0] != 0 and (deadline is None or loop.time() < deadline):
                budget[0] -= 1
                done += 1
                await perform(t, t.rng.choices(kinds, weights)[0], loop.time())
            return done

        return sum(await asyncio.gather(*(closed(t) for t in terminals)))

    total = options.planned
    assert total is not None
    queues: list[asyncio.Queue[tuple[float, str] | None]] = [asyncio.Queue() for _ in terminals]

    async def worker(t: LoadTerminal, queue: asyncio.Queue[tuple[float, str] | None]) -> None:
        while (arrival := await queue.get()) is not None:
            due, kind = arrival
            await perform(t, kind, due)

    workers = [asyncio.create_task(worker(t, q)) for t, q in zip(terminals, queues, strict=True)]
    try:
        interval = 1.0 / options.rate
        for i in range(total):
            due = start + i * interval
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            queues[rng.randrange(len(queues))].put_nowait((due, rng.choices(kinds, weights)[0]))
        for q in queues:
            q.put_nowait(None)
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
    return total


async def _check_books(control: ControlClient, terminals: list[LoadTerminal]) -> dict[str, list[str]]:
    """Invariants per terminal (G1-G5, G8) and per merchant (G6), findings naming TIDs and STANs."""
    host = await HostBooks.read(control)
    findings: dict[str, list[str]] = {g: [] for g in (*PER_TERMINAL_INVARIANTS, "G6")}
    for t in terminals:
        results: list[InvariantResult] = check_all(t.evidence(host), PER_TERMINAL_INVARIANTS)
        for r in results:
            findings[r.id].extend(r.findings)
    funding = Evidence(tid="", authorizations=tuple(host.all_authorizations), payouts=tuple(host.payouts),
                       business_date=host.business_date, holidays=host.holidays)
    findings["G6"] = check_g6(funding).findings
    return {g: findings[g] for g in sorted(findings)}


def _wire_counts(terminals: list[LoadTerminal]) -> dict[str, Counter[str]]:
    """Per request MTI on the wire: how many were sent, and the response codes of their matched answers."""
    out: dict[str, Counter[str]] = {}
    for t in terminals:
        sent: dict[str, str] = {}  # STAN -> MTI of the last request with it (a 0221 is answered 0230)
        for row in t.journal.trace():
            message = row.get("message") or {}
            mti = str(message.get("t", ""))
            if row["kind"] == "sent":
                out.setdefault(mti, Counter())["sent"] += 1
                sent[str(message.get("11"))] = mti
            elif row["kind"] == "received" and row.get("matched"):
                request = sent.get(str(message.get("11")), mti)
                out.setdefault(request, Counter())[f"rc {message.get('39', '--')}"] += 1
            elif row["kind"] in ("timeout", "link_lost", "unreadable"):
                out.setdefault("(no answer)", Counter())[str(row["kind"])] += 1
    return out


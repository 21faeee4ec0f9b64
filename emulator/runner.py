"""The cause-and-fix matrix runner: every scenario of ``specs/scenarios`` shown broken and shown fixed.

For each runnable scenario and each of its dialects the runner makes two runs (three or four when
the file has crash points):

* the **flawed run** (``broken``): the terminal settings real fleets have; the symptom must appear
  (``expect.broken``: the invariants that break, the messages missing, the codes seen, outcomes);
* the **fixed run** (``fixed``): the fix applied; the invariants of ``expect.fixed`` must hold;
* for a file with ``crash_at`` steps, each run also gets an **uninterrupted** twin (every
  ``crash_at`` replaced by its ``then`` step, ``restart`` steps left out), the reference G7
  compares the crashed run's end state with.

The host is a stub host child process (``pos-host serve --port 0 --control-port 0``, one per
worker and dialect) or an external host given by address; the runner talks to it only over TCP
(the terminal's messages) and its HTTP control API (reset, settings, registry, faults, clock,
ledgers, journal).  It never imports ``host_stub``.

The terminal runs in-process: each terminal step is one operation of a fresh core loaded from the
run's journal, exactly like one ``pos-terminal`` invocation (including the reversal sent "at idle"
afterwards).  A ``crash_at`` step instead runs ``python -m emulator.cli ... --crash-at X`` as a
child process that dies at the point like a power cut; the following ``restart`` step reopens the
journal in-process and recovers (pending reversals first, an interrupted settlement resumed).
Response timeouts are scaled down (``response_timeout_seconds``, sub-second) and every fault delay
given as a multiple of the timeout scales with it; no step is ever skipped to save time.

Each run yields an :class:`emulator.invariants.Evidence` (terminal journal and state, host ledgers
through the control API, the wire trace with status snapshots, the STANs of each intent) and the
verdict of the file's expectations.  The rows (one per cause) feed :mod:`emulator.report`.

>>> outcome_of({"outcome": "unbalanced", "batch_closed": True, "uploaded": 3})
'balanced'
>>> outcome_of({"outcome": "declined", "rc": "00"})
'not_completed'
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import structlog
import yaml

from emulator.channel import CRASH_EXIT_CODE, Endpoint, run_invocation
from emulator.control_client import ControlApiError, ControlApiUnreachable, ControlClient
from emulator.hostproc import HostProcess, host_address, start_host
from emulator.invariants import INVARIANTS, Evidence, InvariantResult, TraceEvent, check_all, host_net_minor
from emulator.journal import Journal
from emulator.messages import DEFAULT_MID, DEFAULT_TID, Profile
from emulator.pcap import PcapWriter
from emulator.settings import SETTING_NAMES, TerminalSettings
from emulator.terminal import (
    Adjust,
    Balance,
    Books,
    Completion,
    CompletionVoid,
    Echo,
    Idle,
    OfflineSale,
    Operation,
    Outcome,
    PreAuth,
    PreAuthVoid,
    Reference,
    Refund,
    Result,
    Reverse,
    Sale,
    Settle,
    SignOff,
    SignOn,
    Terminal,
    Void,
)
from specs.cards import Card, seeded_card
from specs.cliopts import link_of
from specs.logs import configure_logging
from specs.masking import mask_message, mask_pan, mask_value
from specs.scenario import (
    SCENARIO_DIR,
    TERMINAL_FAULTS,
    TERMINAL_SETTINGS,
    TOGGLES,
    Check,
    ClockStep,
    CrashAt,
    ExpectStep,
    HostFaultStep,
    HostRegistryStep,
    HostSettingsStep,
    MessagePattern,
    OperatorNote,
    Registry,
    Restart,
    RowCheck,
    RunExpectation,
    Scenario,
    Step,
    TerminalSettingsStep,
    TerminalStep,
    host_settings_body,
    load_all,
)
from specs.transactions import layout

#: Default response timeout of the matrix runs (the terminal's 60 s scaled down).
_T = TypeVar("_T")

DEFAULT_RESPONSE_TIMEOUT_SECONDS = 0.5
#: Backoff between repeated reversals and advices, scaled down like the timeout.
FAST_BACKOFF = {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.04}
#: How long one crash-point child process may take before it is killed.
CHILD_TIMEOUT_SECONDS = 30.0
#: Run names, in the order they are made for one scenario and dialect.
RUN_NAMES = ("broken_uninterrupted", "broken", "fixed_uninterrupted", "fixed")

_COMMAND_OPS: Mapping[str, type] = MappingProxyType({
    "signon": SignOn, "signoff": SignOff, "echo": Echo, "sale": Sale, "balance": Balance, "preauth": PreAuth,
    "preauth_void": PreAuthVoid, "completion": Completion, "completion_void": CompletionVoid, "void": Void,
    "refund": Refund, "offline_sale": OfflineSale, "adjust": Adjust, "settle": Settle, "reverse": Reverse,
})
#: The command's own request MTI when it is not a transaction kind of :mod:`specs.transactions`.
_COMMAND_MTIS: Mapping[str, str] = MappingProxyType({"signon": "0800", "signoff": "0800", "echo": "0800",
                                                      "settle": "0500", "reverse": "0400"})


class MatrixError(RuntimeError):
    """The matrix could not be run at all (no scenarios selected, host unreachable ...)."""


class RunAborted(RuntimeError):
    """A run cannot be made faithfully (a setting the terminal or host does not offer yet)."""


# ============================================================================ options and results


@dataclass(frozen=True, kw_only=True)
class MatrixOptions:
    """What to run and how.

    Attributes:
        only: cause ids to run (empty: all); a merged stub brings in the file that covers it.
        dialects: dialects to run (empty: every dialect a file lists).
        jobs: scenario/dialect units run in parallel (one stub host child per worker and dialect).
        host, control_url: an external host (``host:port``) and its control API; None starts children.
        control_token: the bearer token of that control API (default: ``POS_HOST_CONTROL_TOKEN``).
        response_timeout_seconds: the terminal's response timeout in every run.
        scenario_dir: where the ``C01.yaml`` … files are.
        scenarios: the scenarios to run, already loaded (e.g. a team's own copies of a few cause
            files, by the pytest plugin); None loads every file of ``scenario_dir`` (which must
            cover C01–C42).  Ids must be unique; ``only`` and ``dialects`` still apply.
        pcap_dir: write one pcap per run into this directory (``C01-intl-bcd-fixed.pcap``); the
            crash-point children append to their run's file.
    """

    only: tuple[str, ...] = ()
    dialects: tuple[str, ...] = ()
    jobs: int = 2
    host: str | None = None
    control_url: str | None = None
    control_token: str | None = None
    response_timeout_seconds: float = DEFAULT_RESPONSE_TIMEOUT_SECONDS
    scenario_dir: Path = SCENARIO_DIR
    scenarios: tuple[Scenario, ...] | None = None
    pcap_dir: Path | None = None


@dataclass
class StepRecord:
    """What one step did: its outcome as the scenario names outcomes, its own request's STAN."""

    index: int
    kind: str
    label: str | None
    name: str
    command: str | None = None
    intent: str | None = None
    outcome: str | None = None
    rc: str | None = None
    stan: str | None = None
    tid: str | None = None
    text: str = ""
    started_ms: float = 0.0
    ended_ms: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "label": self.label, "name": self.name,
                "command": self.command, "intent": self.intent, "outcome": self.outcome, "rc": self.rc,
                "stan": self.stan, "tid": self.tid, "text": self.text, "started_ms": round(self.started_ms, 1),
                "ended_ms": round(self.ended_ms, 1), "details": mask_value(self.details)}


@dataclass
class TraceItem:
    """One thing on the terminal's side of the wire, in order (the message ladder's rows)."""

    seq: int
    at_ms: float
    kind: str  # sent, received, timeout, link_lost, unreadable, connect_failed, status, crash, restart, note, child
    step: str | None
    step_index: int | None
    message: dict[str, str] | None = None
    matched: bool | None = None
    mac_verified: bool | None = None
    mac: bool | None = None
    text: str = ""
    pending_reversals: tuple[str, ...] = ()
    saf_queue: tuple[str, ...] = ()
    settlement_state: str | None = None
    faults: tuple[str, ...] = ()
    #: The host's business clock when it happened (matches the host journal's ``at``).
    business_at: datetime | None = None

    def as_event(self) -> TraceEvent:
        return TraceEvent(kind=self.kind, message=self.message, matched=self.matched, mac_verified=self.mac_verified,
                          pending_reversals=self.pending_reversals, saf_queue=self.saf_queue,
                          settlement_state=self.settlement_state, step=self.step)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "at_ms": round(self.at_ms, 1), "kind": self.kind, "step": self.step}
        if self.business_at is not None:
            out["business_at"] = self.business_at.isoformat(timespec="seconds")
        if self.message is not None:
            out.update(mti=self.message.get("t"), stan=self.message.get("11"), rc=self.message.get("39"),
                       message=self.message)
        for name in ("matched", "mac_verified", "mac"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.text:
            out["text"] = self.text
        if self.kind == "status":
            out.update(pending_reversals=list(self.pending_reversals), saf_queue=list(self.saf_queue),
                       settlement_state=self.settlement_state)
        if self.faults:
            out["faults"] = list(self.faults)
        return out


@dataclass
class CheckResult:
    """One expectation of a run and whether it was met."""

    what: str
    passed: bool
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "passed": self.passed, "detail": self.detail}


@dataclass
class RunResult:
    """One run of one scenario in one dialect."""

    name: str
    variant: str
    dialect: str
    passed: bool = False
    failures: list[str] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    trace: list[TraceItem] = field(default_factory=list)
    invariants: list[InvariantResult] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    host: dict[str, Any] = field(default_factory=dict)
    terminal: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    evidence: Evidence | None = None
    #: Faults still on the host at the end of the run that never applied ("id: action"): a fault that
    #: never fired tested nothing, so the report flags it (a note, not a failure).
    unfired_faults: list[str] = field(default_factory=list)

    def as_dict(self, expectation: RunExpectation | None = None) -> dict[str, Any]:
        expected_broken = set(expectation.invariants_broken) if expectation else set()
        expected_hold = set(expectation.invariants_hold) if expectation else set()
        unclaimed = dict(expectation.unclaimed) if expectation else {}
        return {
            "name": self.name, "variant": self.variant, "dialect": self.dialect, "passed": self.passed,
            "failures": self.failures, "seconds": round(self.seconds, 3),
            "steps": [s.as_dict() for s in self.steps],
            "invariants": [{"id": r.id, "title": INVARIANTS[r.id][0], "holds": r.holds, "applicable": r.applicable,
                            "findings": r.findings,
                            "expected": "break" if r.id in expected_broken else "hold" if r.id in expected_hold
                            else None, **({"unclaimed": unclaimed[r.id]} if r.id in unclaimed else {})}
                           for r in self.invariants],
            "checks": [c.as_dict() for c in self.checks],
            "messages": [t.as_dict() for t in self.trace],
            "host": self.host, "terminal": self.terminal, "unfired_faults": self.unfired_faults,
        }


@dataclass
class DialectResult:
    """Both runs of one scenario in one dialect."""

    dialect: str
    runs: dict[str, RunResult] = field(default_factory=dict)
    seconds: float = 0.0
    #: False for a regression file: it has no flawed run, only the one that must meet its expectations.
    expects_symptom: bool = True

    @property
    def passed(self) -> bool:
        """Did this dialect behave as the file expects (symptom with the fix off, if any; held with it on)?"""
        return self.resolved and (self.symptom_reproduced or not self.expects_symptom)

    @property
    def symptom_reproduced(self) -> bool:
        run = self.runs.get("broken")
        return run is not None and run.passed

    @property
    def resolved(self) -> bool:
        run = self.runs.get("fixed")
        return run is not None and run.passed

    @property
    def failures(self) -> list[str]:
        return [f"{name}: {failure}" for name, run in self.runs.items() if name in ("broken", "fixed")
                for failure in run.failures]


@dataclass
class CauseRow:
    """One row of the matrix: one cause, all its dialects."""

    scenario: Scenario
    dialects: list[DialectResult] = field(default_factory=list)
    merged_target: CauseRow | None = None

    @property
    def status(self) -> str:
        """``resolved`` (a cause shown broken and fixed), ``passed`` (a regression file met its
        expectations), ``failed``, ``outside``; a merged stub takes the status of the file covering it."""
        if self.scenario.status == "outside":
            return "outside"
        if self.merged_target is not None:
            return self.merged_target.status
        if not self.dialects or not all(d.passed for d in self.dialects):
            return "failed"
        return "passed" if self.scenario.status == "regression" else "resolved"

    @property
    def symptom_reproduced(self) -> bool:
        if self.merged_target is not None:
            return self.merged_target.symptom_reproduced
        return bool(self.dialects) and all(d.symptom_reproduced for d in self.dialects)

    @property
    def resolved(self) -> bool:
        if self.merged_target is not None:
            return self.merged_target.resolved
        return bool(self.dialects) and all(d.resolved for d in self.dialects)

    @property
    def seconds(self) -> float:
        return sum(d.seconds for d in self.dialects)

    @property
    def ok(self) -> bool:
        """The row behaves as its file expects."""
        return self.status in ("resolved", "passed", "outside")

    def as_dict(self) -> dict[str, Any]:
        s = self.scenario
        row: dict[str, Any] = {
            "id": s.id, "title": s.title, "kind": s.status if s.status == "regression" else "cause",
            "cause": s.reported_as.en if s.reported_as else None, "cause_zh": s.reported_as.zh if s.reported_as else None,
            "reports": list(s.reports), "scope": list(s.scope), "status": self.status,
            "symptom_reproduced": self.symptom_reproduced if s.status in ("runnable", "merged") else False,
            "resolved": self.resolved if s.status != "outside" else False,
            "seconds": round(self.seconds, 3), "runbook": s.runbook,
        }
        if s.status == "outside":
            row["reason"] = s.reason
            return row
        if s.status == "merged":
            row["merged_into"] = s.merged_into
            row["reason"] = f"covered by {s.merged_into}.yaml (same mechanism)"
            return row
        assert s.expect is not None
        row.update(fix=fix_summary(s), fix_description=s.fix.description,
                   symptom=s.expect.broken.symptom if s.expect.broken else None,
                   dialects=list(s.dialects), merges=[m.id for m in s.merges])
        row["runs"] = {d.dialect: {
            "symptom_reproduced": d.symptom_reproduced, "resolved": d.resolved, "failures": d.failures,
            "seconds": round(d.seconds, 3),
            **{name: run.as_dict(s.expect.broken if run.variant == "broken" and name == "broken" else
                                 s.expect.fixed if name == "fixed" else None) for name, run in d.runs.items()},
        } for d in self.dialects}
        failures = [f"{d.dialect} {f}" for d in self.dialects for f in d.failures]
        if failures:
            row["failures"] = failures
        return row


@dataclass
class MatrixResult:
    """Every row, and how long the whole matrix took."""

    rows: list[CauseRow]
    wall_seconds: float
    started_at: datetime
    options: MatrixOptions

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    def as_dict(self) -> dict[str, Any]:
        rows = [row.as_dict() for row in self.rows]
        return {
            "generated_at": self.started_at.isoformat(timespec="seconds"),
            "wall_seconds": round(self.wall_seconds, 2),
            "ok": self.ok,
            "options": {"only": list(self.options.only), "dialects": list(self.options.dialects),
                        "jobs": 1 if self.options.host is not None else self.options.jobs,
                        "host": self.options.host,
                        "response_timeout_seconds": self.options.response_timeout_seconds},
            "summary": {status: sum(1 for r in rows if r["status"] == status)
                        for status in ("resolved", "passed", "failed", "outside")},
            "rows": rows,
        }


def fix_summary(s: Scenario) -> str:
    """How the fixed run differs, in a few words (the table's "fix" column)."""
    if s.status == "regression":
        return "regression: one run, no fix to show"
    parts = []
    if s.fix.toggles:
        parts.append("toggles " + ", ".join(s.fix.toggles))
    if s.fix.terminal_settings:
        parts.append("terminal settings " + ", ".join(s.fix.terminal_settings))
    if s.fix.host_settings:
        parts.append("host settings " + ", ".join(s.fix.host_settings))
    if s.fix.host_registry:
        parts.append("host registry")
    if s.fix.steps is not None:
        parts.append("operator steps")
    return "; ".join(parts)


def outcome_of(result: Mapping[str, Any]) -> str:
    """A terminal result (``Result.as_dict()`` or ``pos-terminal --json`` output) as a scenario outcome.

    * an approval the terminal could not complete (bad MAC, card pulled, print-before-commit
      failure) is ``not_completed``;
    * a settlement that closed after the batch upload the host asked for is ``balanced`` (the batch
      closed with the host's agreement); one closed without an upload, or still open, ``unbalanced``;
    * ``reverse`` with nothing pending is ``approved``.
    """
    outcome = str(result.get("outcome"))
    if outcome == Outcome.MAC_FAILED.value:
        return "not_completed"
    if outcome == Outcome.DECLINED.value and result.get("rc") == "00":
        return "not_completed"
    if outcome == Outcome.UNBALANCED.value:
        agreed = (result.get("batch_closed") and not result.get("closed_without_upload")
                  and not result.get("unbalanced_after_upload") and not result.get("failed_step"))
        return "balanced" if agreed else "unbalanced"
    if outcome == Outcome.NOTHING_PENDING.value:
        return "approved"
    return outcome


def _money_text(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _is_response(mti: str) -> bool:
    return len(mti) == 4 and mti[2] in "13579"


# ============================================================================ the host's control API


async def api(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """One call of the shared control API client, off the event loop; an error answer aborts the run
    (it names the call and what the host said)."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except ControlApiError as exc:
        raise RunAborted(str(exc)) from None


@dataclass
class HostHandle:
    """One host the runs of a worker use: where its port and control API are."""

    dialect: str
    address: str
    port: int
    control: ControlClient
    process: HostProcess | None = None


class HostPool:
    """Stub host children, one per worker and dialect, started on first use (or one external host)."""

    def __init__(self, options: MatrixOptions) -> None:
        self.options = options
        self._hosts: dict[tuple[int, str, str | None], HostHandle] = {}
        self._lock = asyncio.Lock()

    async def get(self, worker: int, dialect: str, profile: str | None = None) -> HostHandle:
        o = self.options
        if o.host is not None:
            address, port = host_address(o.host)
            assert o.control_url is not None
            return HostHandle(dialect=dialect, address=address, port=port,
                              control=ControlClient(o.control_url, token=o.control_token))
        key = (worker, dialect, profile)
        if key not in self._hosts:
            async with self._lock:  # two children starting at once would only compete for the CPU
                process = await asyncio.to_thread(start_host, "serve", "--dialect", dialect, "--port", "0",
                                                  "--control-port", "0", *(("--profile", profile) if profile else ()))
            control = ControlClient(f"http://127.0.0.1:{process.ready['control_port']}")
            self._hosts[key] = HostHandle(dialect=dialect, address="127.0.0.1", port=process.port, control=control,
                                          process=process)
        return self._hosts[key]

    async def close(self) -> None:
        processes = [h.process for h in self._hosts.values() if h.process is not None]
        self._hosts.clear()
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in processes))


# ============================================================================ the run's trace


class _Recorder:
    """Collects the trace of one run: messages, link events, status snapshots, notes."""

    def __init__(self, pans: Iterable[str], clock: Callable[[], datetime] = datetime.now) -> None:
        self.items: list[TraceItem] = []
        self.start = time.monotonic()
        self.wall_start = time.time()  # the terminal's own trace is stamped with wall-clock time
        self.clock = clock
        self.step: str | None = None
        self.step_index: int | None = None
        #: Every PAN the run may put on the wire, longest first: masked wherever it appears (CUP
        #: upload field 48 carries PANs inside a longer digit string that field masking cannot see).
        self._pans = sorted({p for p in pans if p}, key=len, reverse=True)

    def now_ms(self) -> float:
        return (time.monotonic() - self.start) * 1000.0

    def scrub(self, message: Mapping[str, Any]) -> dict[str, str]:
        masked = mask_message(message)
        for key, value in masked.items():
            if isinstance(value, str):
                for pan in self._pans:
                    if pan in value:
                        value = value.replace(pan, mask_pan(pan))
                masked[key] = value
        return masked

    def scrub_value(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            if "t" in value and all(isinstance(k, str) and (k == "t" or k.isdigit()) for k in value):
                return self.scrub(value)
            return {k: self.scrub_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub_value(v) for v in value]
        if isinstance(value, str):
            for pan in self._pans:
                if pan in value:
                    value = value.replace(pan, mask_pan(pan))
            return mask_value(value)
        return value

    def add(self, kind: str, *, at_ms: float | None = None, **values: Any) -> TraceItem:
        now_ms = self.now_ms()
        at = now_ms if at_ms is None else at_ms
        business_at = self.clock() - timedelta(milliseconds=now_ms - at)
        item = TraceItem(seq=len(self.items) + 1, at_ms=at, kind=kind, step=self.step, step_index=self.step_index,
                         business_at=business_at, **values)
        self.items.append(item)
        return item


# ============================================================================ one run


def _terminal_setting_name(name: str) -> str:
    kind = TOGGLES.get(name) or TERMINAL_SETTINGS.get(name)
    return f"{name}_minor" if kind in ("money", "money0") else name


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def uninterrupted_steps(steps: Sequence[Step]) -> tuple[Step, ...]:
    """The steps without crashes: each ``crash_at`` replaced by its ``then`` step, ``restart`` left out."""
    out: list[Step] = []
    for step in steps:
        if isinstance(step, CrashAt):
            out.append(step.then)
        elif not isinstance(step, Restart):
            out.append(step)
    return tuple(out)


def has_crash(steps: Sequence[Step]) -> bool:
    return any(isinstance(s, CrashAt) for s in steps)


class _Run:
    """One run of one scenario in one dialect against one host."""

    def __init__(self, scenario: Scenario, dialect: str, name: str, host: HostHandle, options: MatrixOptions,
                 work_dir: Path) -> None:
        self.scenario = scenario
        self.dialect_name = dialect
        # a scenario's host profile (checked when the file was loaded) shapes both sides' wire
        self.dialect, self.framing = link_of(dialect, scenario.profile)
        self.family = self.dialect.family
        self.name = name
        self.variant = "broken" if name.startswith("broken") else "fixed"
        self.uninterrupted = name.endswith("_uninterrupted")
        self.host = host
        self.options = options
        self.work_dir = work_dir
        self.timeout = options.response_timeout_seconds
        steps = scenario.steps_for(self.variant)
        self.steps = uninterrupted_steps(steps) if self.uninterrupted else tuple(steps)
        self.result = RunResult(name=name, variant=self.variant, dialect=dialect)
        self.pans = scenario.card_pans()
        self.expiries = self._card_expiries()
        # terminal configuration: scenario + variant settings and toggles, then terminal_settings steps
        self.config: dict[str, Any] = dict(scenario.terminal_config(self.variant))
        self.tid = str(self.config.pop("tid", DEFAULT_TID))
        self.mid = str(self.config.pop("mid", DEFAULT_MID))
        default = self._default_card()
        self.clock_base: tuple[datetime, float] | None = None
        self.recorder = _Recorder([*self.pans.values(), default.pan], clock=self.now)
        self.journal_path = ":memory:"
        if has_crash(self.steps):
            self.journal_path = str(work_dir / f"{scenario.id}-{dialect}-{name}.sqlite")
        self.journal = Journal(self.journal_path)
        self.pcap: PcapWriter | None = None
        if options.pcap_dir is not None:
            options.pcap_dir.mkdir(parents=True, exist_ok=True)
            path = options.pcap_dir / f"{scenario.id}-{dialect}-{name}.pcap"
            path.unlink(missing_ok=True)  # one file per run, not appended to an earlier matrix's
            self.pcap = PcapWriter(path, dialect=self.dialect, framing=self.framing)
        self.records: dict[str, StepRecord] = {}
        self.trace_seq = 0
        self.expect_checks: list[CheckResult] = []

    # ---------------------------------------------------------------- terminal settings and identity

    def _card_expiries(self) -> dict[str, str]:
        """Card alias -> the expiry the registry gives it (the card the customer holds has it too)."""
        out: dict[str, str] = {}
        for registry in self._registries():
            for alias, entry in registry.cards.items():
                if "expiry" in entry.values:
                    out[alias] = str(entry.values["expiry"])
        return out

    def _default_card(self) -> Card:
        return seeded_card(seed=int(self.tid) if self.tid.isdigit() else 8583,
                           scheme="unionpay" if self.family == "cup" else "visa")

    def _card(self, alias: str | None) -> Card:
        if alias is None:
            return self._default_card()
        pan = self.pans[alias]
        seeded = next((seeded_card(seed=e.values["seed"], scheme=e.values.get("scheme", "visa"))
                       for r in self._registries() for a, e in r.cards.items() if a == alias and "seed" in e.values),
                      None)
        expiry = self.expiries.get(alias) or (seeded.expiry if seeded else "3012")
        return Card(pan=pan, expiry=expiry)

    def _registries(self) -> Iterable[Registry]:
        yield self.scenario.host.registry
        yield self.scenario.fix.host_registry
        for s in (*self.scenario.steps, *(self.scenario.fix.steps or ())):
            if isinstance(s, HostRegistryStep):
                yield s.registry

    def settings(self, extra: Mapping[str, Any] | None = None) -> TerminalSettings:
        """The terminal settings now; a name the terminal does not offer aborts the run."""
        values: dict[str, Any] = dict(FAST_BACKOFF)
        missing = []
        for name, value in {**self.config, **(extra or {})}.items():
            if name not in SETTING_NAMES:
                missing.append(name)
                continue
            values[name] = tuple(value) if isinstance(value, list) else value
        if missing:
            raise RunAborted("terminal setting" + ("s " if len(missing) > 1 else " ") + ", ".join(sorted(missing))
                             + " not offered by the terminal (emulator/settings.py) yet")
        return dataclasses.replace(TerminalSettings(), **values)

    def settings_file_values(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        settings = self.settings(extra)
        default = TerminalSettings()
        return {f.name: _plain(getattr(settings, f.name)) for f in dataclasses.fields(settings)
                if getattr(settings, f.name) != getattr(default, f.name)}

    def profile(self) -> Profile:
        return Profile(tid=self.tid, mid=self.mid, family=self.family, wire=self.dialect.profile)

    def now(self) -> datetime:
        """The host's business clock as the terminal follows it (synced from 12/13 at sign-on)."""
        if self.clock_base is None:
            return datetime.now()
        base, at = self.clock_base
        return base + timedelta(seconds=time.monotonic() - at)

    # ---------------------------------------------------------------- the run

    async def execute(self) -> RunResult:
        started = time.monotonic()
        try:
            await self._prepare_host()
            self.settings()  # fail fast on a setting the terminal does not offer
            for index, step in enumerate(self.steps):
                await self._step(index, step)
            await self._collect()
        except RunAborted as exc:
            self.result.failures.append(f"cannot run faithfully: {exc}")
        except (OSError, ValueError, KeyError, TimeoutError) as exc:
            # One run going wrong must not take the matrix down: the row fails and says why.
            where = self.result.steps[-1].name if self.result.steps else "preparing the host"
            self.result.failures.append(f"runner error at {where}: {type(exc).__name__}: {exc}")
        finally:
            self.journal.close()
            self.result.seconds = time.monotonic() - started
            self.result.trace = self.recorder.items
        return self.result

    async def _prepare_host(self) -> None:
        control = self.host.control
        await api(control.reset)
        s = self.scenario
        variant = s.variant(self.variant)
        settings = {**s.host.settings, **variant.host_settings}
        if settings:
            await self._put_settings(settings)
        for registry in (s.host.registry, variant.host_registry):
            await self._put_registry(registry)
        for fault in s.host.faults:
            await api(control.add_fault, **fault.control_body(pans=self.pans, response_timeout_seconds=self.timeout))

    async def _put_settings(self, settings: Mapping[str, Any]) -> None:
        try:
            await api(self.host.control.put_settings, **host_settings_body(settings))
        except RunAborted as exc:
            raise RunAborted(f"host settings {', '.join(sorted(settings))} not accepted by the host ({exc})") from None

    async def _put_registry(self, registry: Registry) -> None:
        control = self.host.control
        for mid, entry in registry.merchants.items():
            await api(control.put_registry, "merchants", mid, **entry.control_body())
        for tid, entry in registry.terminals.items():
            await api(control.put_registry, "terminals", tid, **entry.control_body())
        for alias, entry in registry.cards.items():
            await api(control.put_registry, "cards", self.pans[alias], **entry.control_body())

    def _record(self, index: int, step: Step, kind: str, label: str | None, name: str) -> StepRecord:
        record = StepRecord(index=index, kind=kind, label=label, name=name, started_ms=self.recorder.now_ms(),
                            tid=self.tid)
        self.result.steps.append(record)
        self.recorder.step, self.recorder.step_index = label or name, index
        # by label, or by name (``refund#2``: never a label) so an unlabelled step's intent counts too
        self.records[label or name] = record
        return record

    async def _step(self, index: int, step: Step) -> None:
        handler = _STEP_HANDLERS[type(step)]
        record = await handler(self, index, step)
        record.ended_ms = self.recorder.now_ms()

    async def _on_terminal(self, index: int, step: TerminalStep) -> StepRecord:
        record = self._record(index, step, "terminal", step.label, step.label or f"{step.command}#{index}")
        await self._terminal_step(step, record)
        return record

    async def _on_crash_at(self, index: int, step: CrashAt) -> StepRecord:
        then = step.then
        record = self._record(index, step, "crash_at", then.label, then.label or f"{then.command}#{index}")
        record.text = f"crash point {step.point} armed"
        await self._crash_step(step, record)
        return record

    async def _on_restart(self, index: int, step: Restart) -> StepRecord:
        record = self._record(index, step, "restart", step.label, step.label or f"restart#{index}")
        await self._restart(record)
        return record

    async def _on_clock(self, index: int, step: ClockStep) -> StepRecord:
        record = self._record(index, step, "clock", None, f"clock#{index}")
        control = self.host.control
        answer = await (api(control.set_clock, step.set) if step.set is not None
                        else api(control.advance_clock, step.advance_seconds))
        self.clock_base = (datetime.fromisoformat(answer["now"]), time.monotonic())
        record.text = f"host clock {answer['now']} (business date {answer.get('business_date')})"
        self.recorder.add("note", text=f"clock: {record.text}")
        return record

    async def _on_host_fault(self, index: int, step: HostFaultStep) -> StepRecord:
        record = self._record(index, step, "host_fault", None, f"host_fault#{index}")
        control = self.host.control
        if step.add is not None:
            await api(control.add_fault, **step.add.control_body(pans=self.pans, response_timeout_seconds=self.timeout))
            record.text = f"fault {step.add.id or ''} added: {step.add.action.type}".replace("  ", " ")
        elif step.clear == "all":
            await api(control.clear_faults)
            record.text = "all faults cleared"
        else:
            assert step.clear is not None
            await api(control.remove_fault, step.clear)
            record.text = f"fault {step.clear} cleared"
        self.recorder.add("note", text=f"host: {record.text}")
        return record

    async def _on_host_registry(self, index: int, step: HostRegistryStep) -> StepRecord:
        record = self._record(index, step, "host_registry", None, f"host_registry#{index}")
        await self._put_registry(step.registry)
        record.text = "registry changed: " + ", ".join(
            [*(f"merchant {k} {dict(v.control_body())}" for k, v in step.registry.merchants.items()),
             *(f"terminal {k} {dict(v.control_body())}" for k, v in step.registry.terminals.items()),
             *(f"card {k}" for k in step.registry.cards)])
        self.recorder.add("note", text=f"host: {record.text}")
        return record

    async def _on_host_settings(self, index: int, step: HostSettingsStep) -> StepRecord:
        record = self._record(index, step, "host_settings", None, f"host_settings#{index}")
        await self._put_settings(step.settings)
        record.text = "settings changed: " + ", ".join(step.settings)
        self.recorder.add("note", text=f"host: {record.text}")
        return record

    async def _on_terminal_settings(self, index: int, step: TerminalSettingsStep) -> StepRecord:
        record = self._record(index, step, "terminal_settings", None, f"terminal_settings#{index}")
        for name, value in step.settings.items():
            if name == "tid":
                self.tid = str(value)
            elif name == "mid":
                self.mid = str(value)
            else:
                self.config[_terminal_setting_name(name)] = _plain(value)
        self.settings()
        record.text = "terminal settings: " + ", ".join(f"{k}={_plain(v)}" for k, v in step.settings.items())
        self.recorder.add("note", text=record.text)
        return record

    async def _on_operator(self, index: int, step: OperatorNote) -> StepRecord:
        record = self._record(index, step, "operator", None, f"operator#{index}")
        record.text = step.note
        self.recorder.add("note", text=f"operator: {step.note}")
        return record

    async def _on_expect(self, index: int, step: ExpectStep) -> StepRecord:
        record = self._record(index, step, "expect", None, f"expect#{index}")
        if step.runs in ("both", self.variant) and not self.uninterrupted:
            view = await self._view()
            results = evaluate_check(step.check, view, self.family)
            for c in results:
                c.what = f"at step {index}: {c.what}"
            self.expect_checks.extend(results)
            failed = [c for c in results if not c.passed]
            record.outcome = "passed" if not failed else "failed"
            record.text = "; ".join(f"{c.what}: {c.detail}" for c in failed) or "checks passed"
        return record

    # ---------------------------------------------------------------- terminal commands in-process

    def _skip_reason(self, step: TerminalStep) -> str | None:
        if step.retry_of is None:
            return None
        original = self.records.get(step.retry_of)
        if original is None or original.outcome is None:
            return f"{step.retry_of} did not run"
        if original.outcome == "skipped":
            return f"{step.retry_of} was skipped"
        if original.outcome == "approved":
            return f"{step.retry_of} was approved"
        return None

    def _reference(self, label: str | None, books: Books) -> Reference:
        if label is None:
            return Reference()
        original = self.records.get(label)
        invoice = original.details.get("invoice") if original else None
        if invoice is None and original is not None and original.stan:
            record = next((r for r in (*books.records, *books.history) if r.stan == original.stan), None)
            invoice = record.invoice if record else None
        return Reference(invoice=invoice or "999999")  # an original that never made it: nothing eligible

    def operation(self, step: TerminalStep, books: Books) -> Operation:
        now = self.now()
        kwargs: dict[str, Any] = {"now": now}
        op_type = _COMMAND_OPS[step.command]
        names = {f.name for f in dataclasses.fields(op_type)}
        if "amount_minor" in names:
            kwargs["amount_minor"] = step.amount_minor
        if "card" in names:
            kwargs["card"] = self._card(step.card)
        if "original" in names:
            kwargs["original"] = self._reference(step.original, books)
        if step.command == "adjust":
            kwargs["tip_minor"] = step.tip_minor
        if step.operator is not None and "operator" in names:
            kwargs["operator"] = step.operator
        if step.entry is not None and "entry" in names:
            kwargs["entry"] = step.entry
        return op_type(**kwargs)  # type: ignore[no-any-return]

    async def _operate(self, operation: Operation, settings: TerminalSettings) -> Result:
        terminal = Terminal(self.profile(), self.journal.load(), response_timeout_seconds=self.timeout,
                            settings=settings)
        endpoint = Endpoint.for_timeout(self.host.address, self.host.port, self.timeout)
        framing = self.framing
        try:
            # As ``pos-terminal`` runs one command: a reversal this one left behind goes at once.
            return await run_invocation(operation, terminal=terminal, journal=self.journal, endpoint=endpoint,
                                        framing=framing, dialect=self.dialect, idle_now=self.now, tap=self.pcap)
        finally:
            self._pull_trace()

    def _pull_trace(self) -> int:
        """Move what the terminal wrote to its journal's wire trace since last time onto the ladder:
        requests sent, answers received with the core's own verdict (``matched``, ``mac_verified``),
        timeouts, lost links, unreadable answers, failed connects, the crash point it died at.
        Returns how many crash events came with it."""
        crashes = 0
        for row in self.journal.trace(since=self.trace_seq):
            self.trace_seq = max(self.trace_seq, int(row["seq"]))
            try:
                epoch = datetime.fromisoformat(str(row["at"]).replace("Z", "+00:00")).timestamp()
                at_ms = max(0.0, (epoch - self.recorder.wall_start) * 1000.0)
            except ValueError:
                at_ms = None
            kind, message = str(row["kind"]), row.get("message")
            values: dict[str, Any] = {"text": str(row.get("detail") or "")}
            if isinstance(message, Mapping):
                values["message"] = self.recorder.scrub(message)
                if kind == "sent":
                    values["mac"] = "64" in message
            if kind == "received":
                values["matched"] = row.get("matched")
                values["mac_verified"] = row.get("mac_verified")
            if kind == "crash":
                crashes += 1
            self.recorder.add(kind, at_ms=at_ms, **values)
        return crashes

    def _own_mti(self, command: str | None) -> str | None:
        if command is None or command == "restart":
            return None
        return _COMMAND_MTIS.get(command) or layout(command, self.family).mti

    def _apply_result(self, record: StepRecord, result: Mapping[str, Any]) -> None:
        record.outcome = outcome_of(result)
        record.rc = result.get("rc")
        # The step's own request: a sale blocked by a reversal it could not clear reports the
        # reversal (0400, the original's STAN); that STAN is not the sale's.
        own = self._own_mti(record.command)
        record.stan = result.get("stan") if own is None or result.get("mti") == own else None
        record.text = str(result.get("text", ""))
        record.details = {k: v for k, v in result.items()
                          if k not in ("command", "outcome", "rc", "stan", "text", "trace")}

    def _status(self) -> None:
        books = self.journal.load()
        self.recorder.add("status", pending_reversals=tuple(r.stan for r in books.reversals),
                          saf_queue=tuple(a.stan for a in books.advices),
                          settlement_state="idle" if books.settlement is None else books.settlement.stage.value)

    async def _terminal_step(self, step: TerminalStep, record: StepRecord) -> None:
        record.command, record.intent = step.command, step.intent
        why = self._skip_reason(step)
        if why is not None:
            record.outcome, record.text = "skipped", why
            return
        extra = {TERMINAL_FAULTS[step.terminal_fault]: True} if step.terminal_fault else {}
        settings = self.settings(extra)
        books = self.journal.load()
        result = await self._operate(self.operation(step, books), settings)
        self._apply_result(record, result.as_dict())
        self._status()

    async def _restart(self, record: StepRecord) -> None:
        """Boot from the journal: pending reversals first, then an interrupted settlement resumed."""
        self.recorder.add("restart", text="terminal restarted from its journal")
        settings = self.settings()
        books = self.journal.load()
        results = []
        if books.reversals:
            results.append(await self._operate(Idle(now=self.now()), settings))
        if self.journal.load().settlement is not None:
            results.append(await self._operate(Settle(now=self.now()), settings))
        record.command = "restart"
        if results:
            self._apply_result(record, results[-1].as_dict())
            record.text = "; ".join(f"{r.command}: {r.text}" for r in results)
        else:
            record.outcome, record.text = "approved", "nothing owed"
        self._status()

    # ---------------------------------------------------------------- crash points in a child process

    def cli_arguments(self, step: TerminalStep, books: Books) -> list[str]:
        """``pos-terminal`` arguments for one terminal step (after the common options)."""
        command = step.command.replace("_", "-")
        args = [command]
        if step.amount_minor is not None:
            args.append(_money_text(step.amount_minor))
        if step.command in ("sale", "balance", "preauth", "offline_sale"):
            card = self._card(step.card)
            args += ["--pan", card.pan, "--expiry", card.expiry]
        if step.original is not None:
            reference = self._reference(step.original, books)
            if reference.invoice:
                args += ["--invoice", reference.invoice]
        if step.command == "adjust" and step.tip_minor is not None:
            args += ["--tip", _money_text(step.tip_minor)]
        return args

    async def _crash_step(self, step: CrashAt, record: StepRecord) -> None:
        then = step.then
        record.command, record.intent = then.command, then.intent
        why = self._skip_reason(then)
        if why is not None:
            record.outcome, record.text = "skipped", why
            return
        extra = {TERMINAL_FAULTS[then.terminal_fault]: True} if then.terminal_fault else {}
        config_path = self.work_dir / f"{self.scenario.id}-{self.dialect_name}-{self.name}-{record.index}.yaml"
        config_path.write_text(yaml.safe_dump(self.settings_file_values(extra)), encoding="utf-8")
        books_before = self.journal.load()
        command = [sys.executable, "-m", "emulator.cli", "--log-level", "error",
                   "--host", self.host.address, "--port", str(self.host.port), "--dialect", self.dialect_name,
                   *(("--profile", self.scenario.profile) if self.scenario.profile else ()),
                   "--journal", self.journal_path, "--tid", self.tid, "--mid", self.mid,
                   "--timeout", str(self.timeout), "--config", str(config_path), "--crash-at", step.point,
                   "--now", self.now().isoformat(timespec="seconds"), "--json",
                   *(("--pcap", str(self.pcap.path)) if self.pcap is not None else ()),
                   *(("--operator", then.operator) if then.operator else ()), *self.cli_arguments(then, books_before)]
        self.recorder.add("child", text=f"pos-terminal --crash-at {step.point} "
                                        f"{' '.join(self.cli_arguments_shown(then))}")
        process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(CHILD_TIMEOUT_SECONDS):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RunAborted(
                f"pos-terminal child for step {record.name} did not finish in {CHILD_TIMEOUT_SECONDS:g} s") from None
        crashes = self._pull_trace()  # the child wrote its wire trace into the same journal
        if process.returncode == CRASH_EXIT_CODE:
            record.outcome = "crashed"
            sent = [t for t in self.recorder.items if t.kind == "sent" and t.step_index == record.index]
            record.stan = self._own_stan(then, sent, books_before)
            record.text = f"died at crash point {step.point} (exit {CRASH_EXIT_CODE})"
            if not crashes:
                self.recorder.add("crash", text=f"terminal died at crash point {step.point}")
        else:
            try:
                result = json.loads(out.decode().strip().splitlines()[-1])
            except (ValueError, IndexError):
                raise RunAborted(f"pos-terminal child for step {record.name} exited {process.returncode} without a "
                                 f"result: {err.decode()[-300:]}") from None
            self._apply_result(record, result)
        self._status()

    def cli_arguments_shown(self, step: TerminalStep) -> list[str]:
        args = self.cli_arguments(step, Books())
        return [mask_pan(a) if a in self.pans.values() or a == self._default_card().pan else a for a in args]

    def _own_stan(self, step: TerminalStep, sent: list[TraceItem], books_before: Books) -> str | None:
        """The STAN of the step's own request (not the reversals or sign-on around it)."""
        mti = self._own_mti(step.command)
        for item in sent:
            if item.message and item.message.get("t") == mti:
                return item.message.get("11")
        books = self.journal.load()
        if books.stan != books_before.stan:  # counters saved, nothing sent (crash point a)
            return f"{books.stan:06d}"
        return None

    # ---------------------------------------------------------------- evidence and verdict

    async def _view(self) -> RunView:
        control = self.host.control
        authorizations, settlements, payouts, journal, clock, host_settings = await asyncio.gather(
            api(control.ledger, "authorizations"), api(control.ledger, "settlements"), api(control.ledger, "payouts"),
            api(control.journal), api(control.clock), api(control.settings))
        books = self.journal.load()
        return RunView(
            family=self.family, tid=self.tid, trace=list(self.recorder.items), steps=dict(self.records),
            authorizations=[self.recorder.scrub_value(r) for r in authorizations],
            settlements=[normalise_settlement(self.recorder.scrub_value(r)) for r in settlements],
            payouts=[normalise_payout(r) for r in payouts],
            host_journal=[self.recorder.scrub_value(e) for e in journal],
            books=books, closed_batches=[c.as_dict() for c in books.closed_batches],
            business_date=date.fromisoformat(clock["business_date"]) if clock.get("business_date") else None,
            holidays=frozenset(date.fromisoformat(d) for d in host_settings.get("holidays") or ()),
            final_reversal_codes=tuple(self.settings().final_reversal_codes))

    async def _collect(self) -> None:
        view = await self._view()
        self.result.unfired_faults = [f"{f['id']}: {f['action']['type']}" for f in await api(self.host.control.faults)
                                      if not f.get("fired") and f["action"]["type"] != "refuse_connect"]
        self._annotate_faults(view.host_journal)
        view.trace = list(self.recorder.items)
        self.result.evidence = view.evidence()
        self.result.host = {"authorizations": view.authorizations, "settlements": view.settlements,
                            "payouts": view.payouts, "journal": view.host_journal}
        self.result.terminal = view.terminal_state()
        self.view = view

    def _annotate_faults(self, host_journal: list[dict[str, Any]]) -> None:
        """Mark each request on the ladder with the faults the host applied to it.

        The host journal lists what reached the host, in order, stamped with the business clock;
        a request is paired with the next entry of the same MTI, STAN and TID (or a connection the
        host refused before reading anything) stamped within two seconds of it.
        """
        entries = []
        for entry in host_journal:
            try:
                at = datetime.fromisoformat(str(entry.get("at")))
            except ValueError:
                continue
            entries.append((at, entry))
        used: set[int] = set()
        start = 0
        for item in self.recorder.items:
            if item.kind != "sent" or item.message is None or item.business_at is None:
                continue
            key = (item.message.get("t"), item.message.get("11"), item.message.get("41"))
            for position in range(start, len(entries)):
                at, entry = entries[position]
                if position in used or abs((at - item.business_at).total_seconds()) > 2.0:
                    continue
                same = (entry.get("mti"), entry.get("stan"), entry.get("tid")) == key
                if same or entry.get("mti") is None:
                    used.add(position)
                    while start in used:
                        start += 1
                    item.faults = tuple(str(f) for f in entry.get("faults") or ())
                    if entry.get("outcome") not in (None, "answered"):
                        item.text = f"host: {entry.get('outcome')}"
                    break

    def judge(self, expectation: RunExpectation | None, uninterrupted: Evidence | None) -> None:
        """Evaluate the invariants and the expectations of this run (None: a reference run)."""
        run = self.result
        if run.evidence is None:
            run.passed = False
            return
        evidence = dataclasses.replace(run.evidence, uninterrupted=uninterrupted)
        run.evidence = evidence
        run.invariants = check_all(evidence)
        if expectation is None:
            run.passed = not run.failures
            return
        run.checks.extend(expectation_checks(expectation, run.invariants, self.view, self.family))
        if self.variant == "fixed":
            run.checks.extend(claim_checks(expectation, run.invariants))
        run.checks.extend(self.expect_checks)
        run.failures.extend(f"{c.what}: {c.detail}" if c.detail else c.what for c in run.checks if not c.passed)
        run.passed = not run.failures



#: Step type -> the :class:`_Run` method that performs it (each returns the step's record).
_STEP_HANDLERS: Mapping[type, Callable[[_Run, int, Any], Awaitable[StepRecord]]] = MappingProxyType({
    TerminalStep: _Run._on_terminal, CrashAt: _Run._on_crash_at, Restart: _Run._on_restart, ClockStep: _Run._on_clock,
    HostFaultStep: _Run._on_host_fault, HostRegistryStep: _Run._on_host_registry,
    HostSettingsStep: _Run._on_host_settings, TerminalSettingsStep: _Run._on_terminal_settings,
    OperatorNote: _Run._on_operator, ExpectStep: _Run._on_expect,
})


def expectation_checks(expectation: RunExpectation, invariants: Sequence[InvariantResult], view: RunView,
                       family: str) -> list[CheckResult]:
    """One run's expectation against what it showed: each invariant that must break or hold, then
    each check (outcomes, messages, codes, ledgers, terminal state, host net)."""
    out = []
    by_id = {r.id: r for r in invariants}
    for g in expectation.invariants_broken:
        result = by_id[g]
        ok = not result.holds and result.applicable
        what, detail = f"{g} ({INVARIANTS[g][0]}) breaks", "; ".join(result.findings[:3]) if ok else "it holds"
        pattern = expectation.findings_expected.get(g)
        if pattern is not None:
            what += f" with a finding like {pattern!r}"
            if ok and not any(pattern in f or fnmatch.fnmatchcase(f, pattern) for f in result.findings):
                ok, detail = False, "it breaks otherwise: " + detail
        out.append(CheckResult(what=what, passed=ok, detail=detail))
    for g in expectation.invariants_hold:
        result = by_id[g]
        ok = result.holds and result.applicable
        out.append(CheckResult(what=f"{g} ({INVARIANTS[g][0]}) holds", passed=ok,
                               detail="; ".join(result.findings[:3]) if not result.holds
                               else "" if result.applicable else "not applicable"))
    out.extend(evaluate_check(expectation.check, view, family))
    return out


def claim_checks(expectation: RunExpectation, invariants: Sequence[InvariantResult]) -> list[CheckResult]:
    """A fixed (or regression) run claims every invariant that applies to it, or its file says why not:
    an unclaimed invariant is a check nobody asked for, and a regression it would have caught goes by."""
    named = {*expectation.invariants_hold, *expectation.invariants_broken, *expectation.unclaimed}
    return [CheckResult(what=f"{r.id} ({INVARIANTS[r.id][0]}) claimed", passed=False,
                        detail=f"it applies to this run and {'holds' if r.holds else 'breaks'}, but the file neither "
                               "claims it (invariants_hold) nor says why not (unclaimed)")
            for r in invariants if r.applicable and r.id not in named]


def normalise_settlement(row: Mapping[str, Any]) -> dict[str, Any]:
    """A settlement row with ``host_totals`` the totals the host closed the batch with: after a
    batch upload (result ``uploaded``) those rebuilt from the upload; the totals of its first
    answer are kept as ``host_totals_first_answer`` (G4: "after batch upload if needed")."""
    out = dict(row)
    if out.get("result") == "uploaded" and isinstance(out.get("uploaded_totals"), Mapping):
        out["host_totals_first_answer"] = out.get("host_totals")
        out["host_totals"] = out["uploaded_totals"]
    return out


def normalise_payout(row: Mapping[str, Any]) -> dict[str, Any]:
    """A payout row in the names the scenarios and G6 use: ``amount_minor`` is the net paid to the
    merchant, ``pending`` the status of a payout scheduled for its value date."""
    out = dict(row)
    if "amount_minor" not in out and "net_minor" in out:
        out["amount_minor"] = out["net_minor"]
    if out.get("status") == "scheduled":
        out["status"] = "pending"
    return out


# ============================================================================ checks


@dataclass
class RunView:
    """What the expectations of a run look at, at one moment."""

    family: str
    tid: str
    trace: list[TraceItem]
    steps: dict[str, StepRecord]
    authorizations: list[dict[str, Any]]
    settlements: list[dict[str, Any]]
    payouts: list[dict[str, Any]]
    host_journal: list[dict[str, Any]]
    books: Books
    closed_batches: list[dict[str, Any]]
    business_date: date | None
    holidays: frozenset[date]
    final_reversal_codes: tuple[str, ...]

    def journal_rows(self) -> list[dict[str, Any]]:
        rows = []
        for settled, records in ((False, self.books.records), (True, self.books.history)):
            for r in records:
                rows.append({"stan": r.stan, "batch": r.batch, "kind": r.kind,
                             "status": "adjusted" if r.tip_minor and r.status == "approved" else r.status,
                             "invoice": r.invoice, "rrn": r.rrn, "auth_code": r.auth_code,
                             "operator": getattr(r, "operator", None), "receipt_pending": r.receipt_pending,
                             "settled": settled, "amount_minor": r.amount_minor,
                             "entry_mode": getattr(r, "entry_mode", None), "tid": self.tid})
        return rows

    def reversal_rows(self) -> list[dict[str, Any]]:
        rows = [{"stan": r.stan, "reason": r.reason, "kind": r.kind, "parked": False,
                 "amount_minor": int(r.message.get("4", "0") or 0), "tid": self.tid} for r in self.books.reversals]
        rows += [{"stan": stan, "reason": why, "kind": None, "parked": True, "amount_minor": None, "tid": self.tid}
                 for what, stan, why in self.books.parked if what == "reversal"]
        return rows

    def saf_rows(self) -> list[dict[str, Any]]:
        return [{"stan": a.stan, "kind": a.kind, "mti": a.message.get("t"), "attempts": a.attempts,
                 "amount_minor": int(a.message.get("4", "0") or 0), "tid": self.tid} for a in self.books.advices]

    def table(self, name: str) -> list[dict[str, Any]]:
        return {"authorizations": lambda: self.authorizations, "settlements": lambda: self.settlements,
                "payouts": lambda: self.payouts, "journal": self.journal_rows, "reversals": self.reversal_rows,
                "saf": self.saf_rows}[name]()

    def intents(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {}
        for record in self.steps.values():
            if record.intent and record.stan:
                out.setdefault(record.intent, []).append(record.stan)
        return {k: tuple(dict.fromkeys(v)) for k, v in out.items()}

    def terminal_state(self) -> dict[str, Any]:
        b = self.books
        return {"pending_reversals": len(b.reversals),
                "parked_reversals": sum(1 for what, _, _ in b.parked if what == "reversal"),
                "saf_queue": len(b.advices), "open_records": len(b.records),
                "receipt_pending": sum(1 for r in (*b.records, *b.history) if r.receipt_pending),
                "batches_closed": len(self.closed_batches), "signed_on": b.signed_on,
                "settlement_state": "idle" if b.settlement is None else "pending",
                "batch": f"{b.batch:06d}", "stan": f"{b.stan:06d}",
                "parked": [{"what": w, "stan": s, "why": y} for w, s, y in b.parked]}

    def evidence(self) -> Evidence:
        b = self.books
        return Evidence(
            tid=self.tid, family=self.family, journal=tuple(self.journal_rows()),
            pending_reversals=tuple(r for r in self.reversal_rows() if not r["parked"]),
            saf_queue=tuple(self.saf_rows()),
            settlement_state="idle" if b.settlement is None else b.settlement.stage.value,
            closed_batches=tuple(self.closed_batches), counters={"batch": f"{b.batch:06d}"},
            authorizations=tuple(self.authorizations), settlements=tuple(self.settlements),
            payouts=tuple(self.payouts),
            uploads=tuple({"tid": u.get("tid"), "batch": u.get("batch"), "stan": u.get("original_stan")}
                          for row in self.settlements for u in row.get("uploads") or ()),
            host_journal=tuple({**e, "message": e.get("request") or {}} for e in self.host_journal),
            trace=tuple(t.as_event() for t in self.trace), intents=self.intents(),
            final_reversal_codes=self.final_reversal_codes, business_date=self.business_date, holidays=self.holidays)


def _pattern_text(p: MessagePattern) -> str:
    parts = [p.mti]
    parts += [f"{k}={v}" for k, v in p.fields.items()]
    if p.stan_of:
        parts.append(f"STAN of {p.stan_of}")
    if p.during:
        parts.append(f"during {p.during}")
    return " ".join(parts)


def _matching(view: RunView, p: MessagePattern) -> list[TraceItem]:
    direction = "received" if _is_response(p.mti) else "sent"
    stan = None
    if p.stan_of is not None:
        record = view.steps.get(p.stan_of)
        stan = record.stan if record else None
        if stan is None:
            return []
    out = []
    for item in view.trace:
        if item.kind != direction or item.message is None:
            continue
        if not p.matches(item.message):
            continue
        if stan is not None and item.message.get("11") != stan:
            continue
        if p.during is not None and item.step != p.during:
            continue
        out.append(item)
    return out


def _where_matches(view: RunView, table: str, row: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    for key, want in where.items():
        if key in ("step", "intent"):
            if key == "step":
                record = view.steps.get(want)
                stans = {record.stan} if record and record.stan else set()
            else:
                stans = set(view.intents().get(want, ()))
            if str(row.get("stan")) not in stans:
                return False
            continue
        have = row.get(key)
        if want is None:
            if have not in (None, ""):
                return False
        elif isinstance(want, bool):
            if bool(have) != want:
                return False
        elif have is None or str(have) != str(want):
            return False
    return True


def _describe_where(check: RowCheck) -> str:
    where = ", ".join(f"{k}={'null' if v is None else v}" for k, v in check.where.items())
    return f"{check.table}" + (f" where {where}" if where else "")


def evaluate_check(check: Check, view: RunView, family: str) -> list[CheckResult]:
    """Each observation of ``check`` against ``view`` (patterns of another family are left out)."""
    out: list[CheckResult] = []
    for oc in check.outcomes:
        if oc.family and oc.family != family:
            continue
        record = view.steps.get(oc.step)
        got = record.outcome if record else None
        ok = got in oc.outcome and (oc.rc is None or (record is not None and record.rc == oc.rc))
        wanted = "/".join(oc.outcome) + (f" rc {oc.rc}" if oc.rc else "")
        seen = f"{got or 'not run'}" + (f" rc {record.rc}" if record and record.rc else "")
        out.append(CheckResult(what=f"step {oc.step} ends {wanted}", passed=ok,
                               detail=f"found {seen}" + (f" ({record.text})" if record and record.text and not ok else "")))
    for p in check.messages_present:
        if p.family and p.family != family:
            continue
        found = _matching(view, p)
        ok = len(found) == p.count if p.count is not None else bool(found)
        how_many = f"exactly {p.count}" if p.count is not None else "at least one"
        out.append(CheckResult(what=f"{how_many} {_pattern_text(p)} on the wire", passed=ok, detail=f"found {len(found)}"))
    for p in check.messages_missing:
        if p.family and p.family != family:
            continue
        found = _matching(view, p)
        out.append(CheckResult(what=f"no {_pattern_text(p)} on the wire", passed=not found,
                               detail=f"found {len(found)}" + (f" (STAN {found[0].message.get('11')})"
                                                               if found and found[0].message else "")))
    if check.messages_in_order:
        patterns = [p for p in check.messages_in_order if not p.family or p.family == family]
        position, ok, missing = 0, True, ""
        for p in patterns:
            candidates = [item.seq for item in _matching(view, p) if item.seq > position]
            if not candidates:
                ok, missing = False, _pattern_text(p)
                break
            position = min(candidates)
        out.append(CheckResult(what="in order: " + " -> ".join(_pattern_text(p) for p in patterns), passed=ok,
                               detail=f"{missing} not found after the previous one" if not ok else ""))
    received = [t.message for t in view.trace if t.kind == "received" and t.message is not None]
    for cs in check.codes_seen:
        if cs.family and cs.family != family:
            continue
        ok = any(m.get("39") == cs.code for m in received)
        codes = sorted({m.get("39", "") for m in received if m.get("39")})
        out.append(CheckResult(what=f"response code {cs.code} seen", passed=ok, detail=f"seen {', '.join(codes)}"))
    for rc in check.ledger:
        rows = [r for r in view.table(rc.table) if _where_matches(view, rc.table, r, rc.where)]
        problems = []
        if rc.count is not None and len(rows) != rc.count:
            problems.append(f"expected {rc.count} rows, found {len(rows)}")
        for column, want_minor in rc.sums_minor.items():
            sum_minor = sum(int(r.get(column) or 0) for r in rows)
            if sum_minor != want_minor:
                problems.append(f"sum of {column[:-6]} {_money_text(sum_minor)}, expected {_money_text(want_minor)}")
        what = f"{_describe_where(rc)}: " + ", ".join(
            ([f"{rc.count} rows"] if rc.count is not None else [])
            + [f"{c[:-6]} {_money_text(v)}" for c, v in rc.sums_minor.items()])
        out.append(CheckResult(what=what, passed=not problems, detail="; ".join(problems)))
    state = view.terminal_state()
    for name, want in check.terminal.items():
        got = state.get(name)
        out.append(CheckResult(what=f"terminal {name} is {want}", passed=got == want, detail=f"found {got}"))
    if check.host_net_minor:
        evidence = Evidence(tid=view.tid, family=view.family, authorizations=tuple(view.authorizations),
                            intents=view.intents())
        for intent, net_minor in check.host_net_minor.items():
            found_minor = host_net_minor(evidence, intent)
            out.append(CheckResult(what=f"host net for {intent} is {_money_text(net_minor)}",
                                   passed=found_minor == net_minor, detail=f"found {_money_text(found_minor)}"))
    return out


# ============================================================================ the matrix


@dataclass
class _Unit:
    scenario: Scenario
    dialect: str
    result: DialectResult

    @property
    def cost(self) -> float:
        """Rough relative duration, to start the long units first."""
        steps = self.scenario.steps
        crash = has_crash(steps) or has_crash(self.scenario.fix.steps or ())
        return len(steps) + (40 if crash else 0)


def select_scenarios(scenarios: Sequence[Scenario], only: Sequence[str]) -> list[Scenario]:
    """The scenarios to run: all, or those named, in any letter case (a merged stub brings its
    covering file)."""
    if not only:
        return list(scenarios)
    by_id = {s.id.casefold(): s for s in scenarios}
    unknown = [c for c in only if c.casefold() not in by_id]
    if unknown:
        ids = [s.id for s in scenarios]
        shown = f"{ids[0]} ... {ids[-1]}" if len(ids) > 6 else ", ".join(ids)
        raise MatrixError(f"unknown scenario id {', '.join(unknown)}, expecting one of {shown}")
    wanted = {by_id[c.casefold()].id for c in only}
    for name in list(wanted):
        target = by_id[name.casefold()].merged_into
        if target:
            wanted.add(target)
    return [s for s in scenarios if s.id in wanted]


def run_names(s: Scenario) -> list[str]:
    """The runs one scenario makes in one dialect, in order: the flawed run unless it is a regression
    file, the fixed run, each preceded by its uninterrupted reference when it has a crash step."""
    names = []
    for name in RUN_NAMES:
        variant = "broken" if name.startswith("broken") else "fixed"
        if variant == "broken" and (s.expect is None or s.expect.broken is None):
            continue
        if name.endswith("_uninterrupted") and not has_crash(s.steps_for(variant)):
            continue
        names.append(name)
    return names


async def run_unit(unit: _Unit, host: HostHandle, options: MatrixOptions, work_dir: Path,
                   on_run: Callable[[_Unit, RunResult], None] | None = None) -> None:
    """The runs of one scenario in one dialect, one after the other on one host."""
    s = unit.scenario
    assert s.expect is not None
    started = time.monotonic()
    references: dict[str, Evidence | None] = {}
    for name in run_names(s):
        variant = "broken" if name.startswith("broken") else "fixed"
        run = _Run(s, unit.dialect, name, host, options, work_dir)
        result = await run.execute()
        if name.endswith("_uninterrupted"):
            if result.evidence is not None:
                run.judge(None, None)
            references[variant] = result.evidence
        else:
            expectation = s.expect.fixed if variant == "fixed" else s.expect.broken
            assert expectation is not None
            if result.evidence is not None:
                run.judge(expectation, references.get(variant))
            else:
                result.passed = False
        if name == "fixed" and result.evidence is not None and s.expect.broken is not None:
            # The symptom must be the flaw's: the flawed run's expectation must not also be met
            # by the fixed run (else the "fix" changed nothing the file can see).
            still = expectation_checks(s.expect.broken, result.invariants, run.view, run.family)
            if all(c.passed for c in still):
                result.failures.append("the symptom's checks also pass with the fix on: "
                                       + "; ".join(c.what for c in still[:4]))
                result.passed = False
        result.evidence = None  # not kept: the report has what it needs
        unit.result.runs[name] = result
        if on_run is not None:
            on_run(unit, result)
    unit.result.seconds = time.monotonic() - started


async def run_matrix(options: MatrixOptions, *, progress: Callable[[str], None] | None = None) -> MatrixResult:
    """Run the selected scenarios, ``options.jobs`` units at a time.

    Args:
        options: what to run and how.
        progress: called with one line per finished run (for stderr).

    Returns:
        One row per selected cause, with every run's evidence, checks and messages.

    Raises:
        MatrixError: nothing to run, an unknown cause id or dialect, a host that does not answer.
    """
    started_at = datetime.now()
    wall_start = time.monotonic()
    if options.host is not None and options.control_url is None:
        raise MatrixError("--host needs --control (the host's control API URL)")
    if options.host is not None and len(options.dialects) != 1:
        raise MatrixError("--host needs exactly one --dialect (the dialect that host speaks)")
    if options.host is not None:
        try:
            host_address(options.host)
        except ValueError as exc:
            raise MatrixError(str(exc)) from None
    if options.scenarios is None:
        loaded = load_all(options.scenario_dir)
    else:
        loaded = sorted(options.scenarios, key=lambda s: s.id)
        twice = sorted({s.id for s in loaded if sum(1 for o in loaded if o.id == s.id) > 1})
        if twice:
            raise MatrixError(f"scenario {', '.join(twice)} given more than once, expecting each id once per run")
    scenarios = select_scenarios(loaded, options.only)
    rows = {s.id: CauseRow(scenario=s) for s in scenarios}
    units: list[_Unit] = []
    for s in scenarios:
        if not s.runs:
            continue
        dialects = [d for d in s.dialects if not options.dialects or d in options.dialects]
        for d in dialects:
            unit = _Unit(scenario=s, dialect=d,
                         result=DialectResult(dialect=d, expects_symptom=s.status == "runnable"))
            rows[s.id].dialects.append(unit.result)
            units.append(unit)
    for row in rows.values():
        if row.scenario.status == "merged" and row.scenario.merged_into in rows:
            row.merged_target = rows[row.scenario.merged_into]
    # runnable files none of whose dialects was selected are left out
    shown = [r for r in rows.values() if not r.scenario.runs or r.dialects]
    if not units and not any(r.scenario.status == "outside" for r in shown):
        raise MatrixError("no scenario to run with the given --only / --dialect")
    units.sort(key=lambda u: u.cost, reverse=True)
    total_runs = sum(sum(1 for name in run_names(u.scenario) if not name.endswith("_uninterrupted")) for u in units)
    done = 0

    def on_run(unit: _Unit, run: RunResult) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            verdict = "ok" if run.passed else "FAILED"
            first = f" — {run.failures[0]}" if run.failures and not run.passed else ""
            progress(f"[{done:3d}/{total_runs}] {unit.scenario.id} {unit.dialect:<8} {run.name:<21} {verdict:<6} "
                     f"{run.seconds:5.1f} s{first}")

    jobs = 1 if options.host is not None else max(1, options.jobs)
    work_dir = Path(tempfile.mkdtemp(prefix="pos-harness-matrix-"))
    queue: asyncio.Queue[_Unit] = asyncio.Queue()
    for unit in units:
        queue.put_nowait(unit)
    try:
        pool = HostPool(options)

        async def worker(number: int) -> None:
            while True:
                try:
                    unit = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                host = await pool.get(number, unit.dialect, unit.scenario.profile)
                await run_unit(unit, host, options, work_dir, on_run)

        try:
            await asyncio.gather(*(worker(n) for n in range(jobs)))
        finally:
            await pool.close()
    except ControlApiUnreachable as exc:
        raise MatrixError(f"host control API unreachable: {exc}") from None
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return MatrixResult(rows=[rows[s.id] for s in scenarios if rows[s.id] in shown],
                        wall_seconds=time.monotonic() - wall_start, started_at=started_at, options=options)


def run(options: MatrixOptions, *, progress: Callable[[str], None] | None = None) -> MatrixResult:
    """:func:`run_matrix` on a fresh event loop.

    When the caller has not configured logging, it is configured here (errors only, masked): the
    terminal core logs every message it sends, and structlog's defaults would print card data.
    """
    if not structlog.is_configured():
        configure_logging(level="error")
    return asyncio.run(run_matrix(options, progress=progress))

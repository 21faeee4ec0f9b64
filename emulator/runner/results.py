"""The matrix's options and results: what one run, one dialect, one cause row and the whole matrix
showed, each with ``as_dict()`` for the reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from emulator.invariants import INVARIANTS, Evidence, InvariantResult, TraceEvent
from emulator.terminal import (
    Adjust,
    Balance,
    Completion,
    CompletionVoid,
    Echo,
    OfflineSale,
    Outcome,
    PreAuth,
    PreAuthVoid,
    Refund,
    Reverse,
    Sale,
    Settle,
    SignOff,
    SignOn,
    Void,
)
from specs.masking import mask_value
from specs.scenario import (
    SCENARIO_DIR,
    RunExpectation,
    Scenario,
)

#: Default response timeout of the matrix runs (the terminal's 60 s scaled down).
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

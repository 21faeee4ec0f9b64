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

from emulator.runner.checks import (
    RunView,
    evaluate_check,
)
from emulator.runner.hosts import (
    HostHandle,
    HostPool,
    api,
)
from emulator.runner.matrix import (
    run,
    run_matrix,
    run_names,
    run_unit,
    select_scenarios,
)
from emulator.runner.results import (
    CHILD_TIMEOUT_SECONDS,
    DEFAULT_RESPONSE_TIMEOUT_SECONDS,
    FAST_BACKOFF,
    RUN_NAMES,
    CauseRow,
    CheckResult,
    DialectResult,
    MatrixError,
    MatrixOptions,
    MatrixResult,
    RunAborted,
    RunResult,
    StepRecord,
    TraceItem,
    fix_summary,
    outcome_of,
)
from emulator.runner.runs import (
    _STEP_HANDLERS,
    _Run,
    claim_checks,
    expectation_checks,
    has_crash,
    normalise_payout,
    normalise_settlement,
    uninterrupted_steps,
)

__all__ = [
    "CHILD_TIMEOUT_SECONDS",
    "DEFAULT_RESPONSE_TIMEOUT_SECONDS",
    "FAST_BACKOFF",
    "RUN_NAMES",
    "_STEP_HANDLERS",
    "CauseRow",
    "CheckResult",
    "DialectResult",
    "HostHandle",
    "HostPool",
    "MatrixError",
    "MatrixOptions",
    "MatrixResult",
    "RunAborted",
    "RunResult",
    "RunView",
    "StepRecord",
    "TraceItem",
    "_Run",
    "api",
    "claim_checks",
    "evaluate_check",
    "expectation_checks",
    "fix_summary",
    "has_crash",
    "normalise_payout",
    "normalise_settlement",
    "outcome_of",
    "run",
    "run_matrix",
    "run_names",
    "run_unit",
    "select_scenarios",
    "uninterrupted_steps",
]

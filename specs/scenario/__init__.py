"""The cause-and-fix matrix as data: schema, loader and validation of ``specs/scenarios/C01.yaml`` ….

One YAML file per cause of docs/domain.md#cause-matrix (C01–C42).  A *runnable* file says how to reproduce the cause
(host registry, faults and settings, terminal settings, the operator's steps), which settings make
the terminal flawed (``broken``) and which fix it (``fix``), and what must be observed in each of the
two runs (``expect.broken``: the symptom; ``expect.fixed``: the invariants G1–G8 that must hold).  An
*outside* file says why a cause has no wire or ledger effect; a *merged* file points to the file
that covers it.  ``specs/scenarios/README.md`` documents every key with an example.

Everything is validated on load, and every error names the file, the line and the key::

    C07.yaml line 12: key 'steps[3].amount': expected a decimal string like '12.34', found 12.345

Paths count list items from 0 and leave the step type out (``steps[3].amount``, not
``steps[3].sale.amount``).  Unknown keys are errors.

Conventions that keep YAML's surprises out:

* money is a decimal string with at most two places (``"12.34"``), under a name without
  ``_minor``; the loader converts it to minor units (``amount_minor``, ``daily_amount_minor``);
* codes, MTIs, STAN-like digit strings and report ids are read from the YAML source text, so an
  unquoted ``00``, ``0200`` or ``003`` keeps its leading zeros (YAML itself would read a number);
* times of day (``"23:00"``) are read from the source text too (YAML 1.1 reads 23:00 as 1380).

>>> scenario = parse_scenario('''
... id: C35
... title: Market competition
... reported_as: {zh: 市场竞争, en: competition from other payment methods}
... reports: ["000", "004"]
... scope: OUT
... status: outside
... reason: No message or ledger row changes when a competitor wins a customer.
... runbook: Nothing to do at the terminal.
... ''', name="C35.yaml")
>>> scenario.status, scenario.scope, scenario.reports
('outside', ('OUT',), ('000', '004'))
>>> parse_scenario("id: C35\\nstatus: outsde\\n", name="C35.yaml")
Traceback (most recent call last):
...
specs.scenario.ScenarioError: C35.yaml line 2: key 'status': expected one of runnable, outside, merged, regression, found outsde
"""

from __future__ import annotations

from specs.scenario.model import (
    STEP_TYPES,
    Check,
    ClockStep,
    CodeSeen,
    CrashAt,
    Expectations,
    ExpectStep,
    Fault,
    FaultAction,
    FeeRule,
    HostFaultStep,
    HostRegistryStep,
    HostSettingsStep,
    HostSetup,
    Limits,
    Merge,
    MessagePattern,
    OperatorNote,
    OutcomeCheck,
    Registry,
    RegistryEntry,
    ReportedAs,
    Restart,
    RowCheck,
    RunExpectation,
    Scenario,
    ScenarioError,
    Step,
    TerminalSettingsStep,
    TerminalStep,
    Variant,
    When,
    api_action,
    field_value,
    host_settings_body,
)
from specs.scenario.parser import (
    CAUSE_REQUIRED,
    CHECK_KEYS,
    SCENARIO_DIR,
    TOP_KEYS,
    TOP_REQUIRED,
    load_all,
    load_files,
    load_scenario,
    parse_scenario,
)
from specs.scenario.vocabulary import (
    ACTION_PARAMS,
    CARD_SCHEMES,
    CARD_STATUSES,
    CAUSE_IDS,
    DIALECT_FAMILIES,
    ENTRY_MODES,
    FAULT_ACTIONS,
    FAULT_KINDS,
    FILE_PARAM_API_NAMES,
    HOST_SETTINGS,
    INVARIANT_IDS,
    LEDGER_TABLES,
    MAPPING_KEYS,
    MERCHANT_STATUSES,
    ORIGINAL_KINDS,
    OUTCOMES,
    PROPOSED_HOST_SETTINGS,
    PROPOSED_TERMINAL_SETTINGS,
    REPORT_IDS,
    SCOPES,
    STATUSES,
    TEAM_ID,
    TERMINAL_CHECKS,
    TERMINAL_COMMANDS,
    TERMINAL_FAULTS,
    TERMINAL_IDENTITY_SETTINGS,
    TERMINAL_SETTINGS,
    TERMINAL_STATUSES,
    TOGGLES,
    WHERE_REFERENCES,
)

# The public name of the loader's error (as tracebacks and pickles show it) is specs.scenario.ScenarioError.
ScenarioError.__module__ = __name__

__all__ = [
    "ACTION_PARAMS",
    "CARD_SCHEMES",
    "CARD_STATUSES",
    "CAUSE_IDS",
    "CAUSE_REQUIRED",
    "CHECK_KEYS",
    "DIALECT_FAMILIES",
    "ENTRY_MODES",
    "FAULT_ACTIONS",
    "FAULT_KINDS",
    "FILE_PARAM_API_NAMES",
    "HOST_SETTINGS",
    "INVARIANT_IDS",
    "LEDGER_TABLES",
    "MAPPING_KEYS",
    "MERCHANT_STATUSES",
    "ORIGINAL_KINDS",
    "OUTCOMES",
    "PROPOSED_HOST_SETTINGS",
    "PROPOSED_TERMINAL_SETTINGS",
    "REPORT_IDS",
    "SCENARIO_DIR",
    "SCOPES",
    "STATUSES",
    "STEP_TYPES",
    "TEAM_ID",
    "TERMINAL_CHECKS",
    "TERMINAL_COMMANDS",
    "TERMINAL_FAULTS",
    "TERMINAL_IDENTITY_SETTINGS",
    "TERMINAL_SETTINGS",
    "TERMINAL_STATUSES",
    "TOGGLES",
    "TOP_KEYS",
    "TOP_REQUIRED",
    "WHERE_REFERENCES",
    "Check",
    "ClockStep",
    "CodeSeen",
    "CrashAt",
    "ExpectStep",
    "Expectations",
    "Fault",
    "FaultAction",
    "FeeRule",
    "HostFaultStep",
    "HostRegistryStep",
    "HostSettingsStep",
    "HostSetup",
    "Limits",
    "Merge",
    "MessagePattern",
    "OperatorNote",
    "OutcomeCheck",
    "Registry",
    "RegistryEntry",
    "ReportedAs",
    "Restart",
    "RowCheck",
    "RunExpectation",
    "Scenario",
    "ScenarioError",
    "Step",
    "TerminalSettingsStep",
    "TerminalStep",
    "Variant",
    "When",
    "api_action",
    "field_value",
    "host_settings_body",
    "load_all",
    "load_files",
    "load_scenario",
    "parse_scenario",
]

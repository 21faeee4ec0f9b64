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

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

from specs.cards import seeded_card
from specs.transactions import KINDS as TRANSACTION_KINDS
from specs.vocabulary import CRASH_POINTS, OPERATOR_ROLES, SUBFIELDS

# ============================================================================ vocabularies

#: Every cause of docs/domain.md#cause-matrix
CAUSE_IDS: tuple[str, ...] = tuple(f"C{n:02d}" for n in range(1, 43))
#: The five merchant problem reports of docs/domain.md#cause-matrix
REPORT_IDS = ("000", "001", "002", "003", "004")
#: Scope tags of docs/domain.md#cause-matrix: protocol, protocol-adjacent, outside the protocol.
SCOPES = ("P", "PA", "OUT")
STATUSES = ("runnable", "outside", "merged", "regression")
#: A team scenario's own id (``ACME-7``): a letter, then letters, digits, ``-``, ``_`` or ``.``; at most 40.
TEAM_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$")
DIALECT_FAMILIES: Mapping[str, str] = MappingProxyType({"intl-ascii": "intl", "intl-bcd": "intl", "cup": "cup"})
INVARIANT_IDS = ("G1", "G2", "G3", "G4", "G5", "G6", "G7", "G8")

#: What a terminal step ended with, as the operator sees it.
OUTCOMES: Mapping[str, str] = MappingProxyType({
    "approved": "the host approved (sign-on, echo, sale ...)",
    "declined": "the host answered with a decline code",
    "not_completed": "the host approved but the terminal could not complete (bad MAC, card removed) and owes a reversal",
    "no_answer": "the request went out and no matching answer came (timeout, link lost, garbage, unmatched)",
    "connect_failed": "no link could be made; nothing was sent",
    "refused": "the terminal refused locally and sent no financial request (batch full, cap, settlement "
               "pending, a reversal it could not clear, operator not allowed)",
    "balanced": "settlement: the batch closed with the host's agreement (directly or after batch upload)",
    "unbalanced": "settlement: the host's totals differ and the batch did not close in agreement",
    "crashed": "the terminal died at the armed crash point",
    "skipped": "a retry_of step not needed because the step it retries was approved",
})

#: Terminal operations (one ``pos-terminal`` command each) -> (allowed params, required params).
TERMINAL_COMMANDS: Mapping[str, tuple[frozenset[str], frozenset[str]]] = MappingProxyType({
    name: (frozenset(allowed) | {"label", "retry_of", "operator"}, frozenset(required))
    for name, allowed, required in (
        ("signon", (), ()),
        ("signoff", (), ()),
        ("echo", (), ()),
        ("sale", ("amount", "intent", "card", "entry", "terminal_fault"), ("amount",)),
        ("balance", ("card", "entry"), ()),
        ("preauth", ("amount", "intent", "card", "entry", "terminal_fault"), ("amount",)),
        ("preauth_void", ("original", "intent"), ()),
        ("completion", ("amount", "original", "intent", "terminal_fault"), ("amount",)),
        ("completion_void", ("original", "intent"), ()),
        ("void", ("original", "intent", "terminal_fault"), ()),
        ("refund", ("amount", "original", "intent", "card"), ("amount",)),
        ("offline_sale", ("amount", "intent", "card", "entry"), ("amount",)),
        ("adjust", ("original", "tip", "intent"), ("tip",)),
        ("settle", ("terminal_fault",), ()),
        ("reverse", (), ()),
    )
})
#: Commands whose step may carry ``original`` pointing at these commands' steps.
ORIGINAL_KINDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "preauth_void": ("preauth",), "completion": ("preauth",), "completion_void": ("completion",),
    "void": ("sale",), "refund": ("sale", "offline_sale", "completion"), "adjust": ("sale", "offline_sale"),
})
ENTRY_MODES = ("manual", "swipe", "chip", "contactless")
#: Terminal-side faults a step may carry; the runner sets the named terminal setting for that command only.
TERMINAL_FAULTS: Mapping[str, str] = MappingProxyType({
    "printer_failure": "printer_fails",
    "card_removed": "card_removed_after_approval",
})

# Value kinds used by the settings tables below (see _Reader.value_of).
_BOOL, _CODES, _MONEY, _MONEY0, _POS_NUMBER, _INT0, _INT1 = "bool", "codes", "money", "money0", "posnum", "int0", "int1"

#: Fix toggles: the terminal's protective behaviours (default on in the terminal).  Names as in
#: ``emulator/settings.py`` unless listed in :data:`PROPOSED_TERMINAL_SETTINGS`.
TOGGLES: Mapping[str, str] = MappingProxyType({
    "save_reversal_before_send": _BOOL,
    "reversal_first": _BOOL,
    "reverse_at_idle": _BOOL,
    "final_reversal_codes": _CODES,
    "park_stuck_reversal": _BOOL,
    "drain_saf_before_settle": _BOOL,
    "trickle_saf": _BOOL,
    "commit_before_print": _BOOL,
    "auto_signon_on_77": _BOOL,
    "verify_response_mac": _BOOL,
    "batch_upload_on_unbalanced": _BOOL,
    "block_sales_while_settling": _BOOL,
    "block_sales_while_receipt_pending": _BOOL,
    "settlement_timeout_factor": _POS_NUMBER,
    "never_resend_financial": _BOOL,
    "enforce_operator_roles": _BOOL,
})

#: Other terminal settings a scenario may set (``terminal.settings``, ``terminal_settings`` steps).
TERMINAL_SETTINGS: Mapping[str, str] = MappingProxyType({
    "max_tranlog": _INT0,
    "max_batch_amount": _MONEY,
    "reversal_max_attempts": _INT1,
    "reversal_retry_codes": _CODES,
    "saf_max_attempts": _INT1,
    "saf_valid_codes": _CODES,
    "saf_retry_codes": _CODES,
    "key_mode": "key_mode",
    "tid": "tid",
    "mid": "mid",
    "software_version": "digits6",
    "send_device_info": _BOOL,
    "operators": "operators",
})

#: Names the scenarios need that the terminal does not offer yet (the runner's wish list, specs/scenarios/README.md §8).
PROPOSED_TERMINAL_SETTINGS: frozenset[str] = frozenset()
#: Terminal identity: ``pos-terminal --tid/--mid`` options rather than settings.
TERMINAL_IDENTITY_SETTINGS = frozenset({"tid", "mid"})

#: Host settings (``host.settings``, ``fix.host_settings``, ``host_settings`` steps): ``host_stub/settings.py``.
HOST_SETTINGS: Mapping[str, str] = MappingProxyType({
    "strict_registry": _BOOL,
    "strict_batch": _BOOL,
    "require_daily_signon": _BOOL,
    "require_mac": _BOOL,
    "reversal_unknown_rc": "reversal_rc",
    "late_original_rc": "code",
    "cup_unbalanced_mode": "cup_unbalanced_mode",
    "allowed_regions": "str_list",
    "mac_failure_limit": _INT1,
    "cutover": "time",
    "cutover_window_seconds": _INT0,
    "holidays": "date_list",
    "payout_days": _INT0,
    "fee_schedule": "fee_schedule",
    "min_software_version": "digits6",
    "required_fields": "required_fields",
    "fee_date_basis": "fee_date_basis",
})
#: Host settings the scenarios need that the host does not offer yet (specs/scenarios/README.md §8).
PROPOSED_HOST_SETTINGS: frozenset[str] = frozenset()

MERCHANT_STATUSES = ("active", "frozen", "frozen_payout", "disabled")
TERMINAL_STATUSES = ("active", "frozen", "disabled")
CARD_STATUSES = ("active", "restricted", "lost", "frozen", "fraud")
CARD_SCHEMES = ("visa", "mastercard", "unionpay")

#: Request kinds a fault's ``when.kind`` may name (``host_stub.host.classify``).  A transaction kind
#: matches the original request only; its reversal is ``reversal``, its batch-upload record ``upload``.
FAULT_KINDS: tuple[str, ...] = (*TRANSACTION_KINDS, "sign_on", "sign_off", "echo", "settlement", "upload",
                                "reversal")

# Fault action type -> {param: value kind}, and the params that must be given (docs/domain.md#fault-primitives).
ACTION_PARAMS: dict[str, tuple[dict[str, str], frozenset[str]]] = {
    "drop_response": ({}, frozenset()),
    "close_before_processing": ({}, frozenset()),
    "close_after_processing": ({}, frozenset()),
    "delay_response": ({"seconds": "number0", "timeout_multiple": _POS_NUMBER}, frozenset()),
    "interim_09": ({"count": _INT1, "interval_seconds": "number0", "interval_timeout_multiple": "number0"},
                   frozenset()),
    "partial_write": ({"bytes": _INT0}, frozenset()),
    "garbled_frame": ({}, frozenset()),
    "bad_length_prefix": ({"declared": _INT0}, frozenset()),
    "duplicate_response": ({"copies": _INT1}, frozenset()),
    "respond_rc": ({"rc": "code"}, frozenset({"rc"})),
    "omit_fields": ({"fields": "field_list"}, frozenset({"fields"})),
    "stan_offset": ({"offset": "nonzero_int"}, frozenset({"offset"})),
    "corrupt_mac": ({}, frozenset()),
    "rotate_keys": ({}, frozenset()),
    "header_processing_requirement": ({"value": "processing_requirement"}, frozenset({"value"})),
    "totals_delta": ({"debit_count": "int", "debit_amount": "signed_money", "credit_count": "int",
                      "credit_amount": "signed_money"}, frozenset()),
    "drop_advice_posting": ({}, frozenset()),
    "upload_interrupt": ({"after": _INT0}, frozenset({"after"})),
    "maintenance_window": ({"mode": "maintenance_mode", "rc": "maintenance_rc"}, frozenset({"mode"})),
    "refuse_connect": ({}, frozenset()),
    "reversal_rc_for_unknown_original": ({"rc": "reversal_rc"}, frozenset({"rc"})),
    "payout_delay": ({"days": _INT1}, frozenset({"days"})),
    "payout_hold": ({"reason": "text"}, frozenset({"reason"})),
    "payout_failure": ({"reason": "text"}, frozenset({"reason"})),
}
FAULT_ACTIONS: tuple[str, ...] = tuple(ACTION_PARAMS)
#: Fault parameters a file writes in its own terms -> the name the control API (``host_stub.faults``)
#: takes: delays as multiples of the terminal's response timeout, money as decimal strings.  Every
#: other parameter has the same name in both (a test holds the two tables to this).
FILE_PARAM_API_NAMES: Mapping[str, str] = MappingProxyType({
    "timeout_multiple": "seconds", "interval_timeout_multiple": "interval_seconds",
    "debit_amount": "debit_minor", "credit_amount": "credit_minor",
})

#: Ledger tables an expectation may count rows in, and the columns ``where`` may name.  The host's
#: tables are read through the control API (``/ledger/...``); the terminal's are its journal (J),
#: pending reversals (R) and SAF queue (Q).
LEDGER_TABLES: Mapping[str, frozenset[str]] = MappingProxyType({
    "authorizations": frozenset({"tid", "mid", "stan", "batch", "kind", "status", "mti", "rc", "rrn", "auth_code",
                                 "settled", "settlement_date", "processing_code", "amount_minor"}),
    "settlements": frozenset({"tid", "mid", "batch", "result", "rc", "processing_code"}),
    "payouts": frozenset({"mid", "batch", "status", "value_date", "hold_reason", "failure_reason",
                          "amount_minor", "fee_minor", "gross_minor"}),
    "journal": frozenset({"stan", "batch", "kind", "status", "invoice", "rrn", "auth_code", "operator",
                          "receipt_pending", "settled", "amount_minor", "entry_mode"}),
    "reversals": frozenset({"stan", "reason", "kind", "parked", "amount_minor"}),
    "saf": frozenset({"stan", "kind", "mti", "attempts", "amount_minor"}),
})
#: ``where`` keys that name a scenario object instead of a column.
WHERE_REFERENCES = frozenset({"step", "intent"})

TERMINAL_CHECKS: Mapping[str, str] = MappingProxyType({
    "pending_reversals": _INT0, "parked_reversals": _INT0, "saf_queue": _INT0, "open_records": _INT0,
    "receipt_pending": _INT0, "batches_closed": _INT0, "signed_on": _BOOL, "settlement_state": "settlement_state",
})

#: The keys of every mapping a scenario file holds besides the top level and the settings tables: the one
#: source for the parser and the JSON Schema (:mod:`specs.scenario_schema`).
MAPPING_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "reported_as": ("zh", "en"),
    "merge": ("id", "citation"),
    "host": ("registry", "faults", "settings"),
    "terminal": ("settings",),
    "registry": ("merchants", "terminals", "cards"),
    "limits": ("daily_amount", "daily_count", "per_txn_max"),
    "merchant": ("name", "status", "region", "mcc", "limits", "available_balance", "payout_days", "payout_hold",
                 "bank_account_valid", "fee_schedule"),
    "terminal_entry": ("mid", "status", "region", "limits", "batch"),
    "card": ("seed", "scheme", "expiry", "status", "balance", "pin", "limits"),
    "fee_rule": ("effective_from", "rate_bps", "fixed"),
    "fault": ("id", "when", "action", "times"),
    "when": ("mti", "processing_code", "kind", "tid", "mid", "card", "bin", "fields", "amount_min", "amount_max",
             "nth", "between", "probability", "seed"),
    "clock": ("set", "advance_seconds"),
    "crash_at": ("point", "then"),
    "restart": ("label",),
    "host_fault": ("add", "clear"),
    "operator": ("note",),
    "broken": ("toggles", "terminal_settings", "host_settings"),
    "fix": ("toggles", "terminal_settings", "host_settings", "description", "host_registry", "steps"),
    "outcome": ("step", "outcome", "rc", "family"),
    "pattern": ("mti", "fields", "stan_of", "during", "family", "count"),
    "code_seen": ("code", "family"),
    "row_check": ("table", "where", "count", "sum"),
    "invariant_finding": ("id", "finding"),
})

_LABEL = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_MONEY_TEXT = re.compile(r"^\d+(\.\d{1,2})?$")
_SIGNED_MONEY_TEXT = re.compile(r"^[+-]?\d+(\.\d{1,2})?$")
_MAX_MINOR = 999_999_999_999


# ============================================================================ errors


class ScenarioError(ValueError):
    """A scenario file is malformed.

    The text reads ``"<file> line <n>: key '<path>': <what was expected, what was found>"``; the same
    facts are attributes.

    Attributes:
        file: the file name (not the directory).
        line: 1-based line in the file.
        key: dotted path of the offending key (``steps[3].amount``), or None for file-level errors.
        msg: what was expected and found.
    """

    def __init__(self, msg: str, *, file: str, line: int, key: str | None) -> None:
        where = f"{file} line {line}" + (f": key '{key}'" if key is not None else "")
        super().__init__(f"{where}: {msg}")
        self.file = file
        self.line = line
        self.key = key
        self.msg = msg

    def __reduce__(self):  # type: ignore[no-untyped-def]  # keep the keyword-only ctor picklable
        return _rebuild_error, (self.msg, self.file, self.line, self.key)


def _rebuild_error(msg: str, file: str, line: int, key: str | None) -> ScenarioError:
    return ScenarioError(msg, file=file, line=line, key=key)


# ============================================================================ the model


def _frozen(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportedAs:
    """The cause in the merchants' words (report 000–004) and in English."""

    zh: str
    en: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Merge:
    """Another cause this file also covers, and where docs/domain.md says it is the same mechanism."""

    id: str
    citation: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Daily limits (reset at the business-day cutover) and a per-transaction cap; None = unchanged/none."""

    daily_amount_minor: int | None = None
    daily_count: int | None = None
    per_txn_max_minor: int | None = None

    def control_body(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("daily_amount_minor", "daily_count", "per_txn_max_minor")
                if getattr(self, k) is not None}


@dataclass(frozen=True, kw_only=True, slots=True)
class RegistryEntry:
    """A merchant, terminal or card as the scenario sets it (a partial update: only given keys change).

    ``values`` holds the host's own names and units (``available_balance_minor``, ``limits``, ``batch``
    as an int); for cards also ``seed`` and ``scheme``, which only the scenario uses to make the PAN.
    """

    values: Mapping[str, Any]
    line: int

    def control_body(self) -> dict[str, Any]:
        """The body of ``PUT /registry/<table>/<key>`` (card seed and scheme left out)."""
        out = {}
        for k, v in self.values.items():
            if k in ("seed", "scheme"):
                continue
            out[k] = v.control_body() if isinstance(v, Limits) else [r.control_body() for r in v] \
                if isinstance(v, tuple) else v
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class Registry:
    """Host registry entries: merchants by MID, terminals by TID, cards by alias."""

    merchants: Mapping[str, RegistryEntry] = field(default_factory=_frozen)
    terminals: Mapping[str, RegistryEntry] = field(default_factory=_frozen)
    cards: Mapping[str, RegistryEntry] = field(default_factory=_frozen)

    def __bool__(self) -> bool:
        return bool(self.merchants or self.terminals or self.cards)


@dataclass(frozen=True, kw_only=True, slots=True)
class FeeRule:
    """A merchant discount rate in force from ``effective_from``."""

    effective_from: date
    rate_bps: int = 0
    fixed_minor: int = 0

    def control_body(self) -> dict[str, Any]:
        return {"effective_from": self.effective_from.isoformat(), "rate_bps": self.rate_bps,
                "fixed_minor": self.fixed_minor}


@dataclass(frozen=True, kw_only=True, slots=True)
class When:
    """Which requests a host fault applies to (every criterion given must hold; lists mean any of).

    Attributes mirror ``host_stub.faults.When``; ``card`` names a card alias of the registry and
    ``amount_*_minor`` are minor units.
    """

    mti: tuple[str, ...] = ()
    processing_code: tuple[str, ...] = ()
    kind: tuple[str, ...] = ()
    tid: tuple[str, ...] = ()
    mid: tuple[str, ...] = ()
    card: tuple[str, ...] = ()
    bin: tuple[str, ...] = ()
    fields: Mapping[str, tuple[str, ...]] = field(default_factory=_frozen)
    amount_min_minor: int | None = None
    amount_max_minor: int | None = None
    nth: int | None = None
    between: tuple[time, time] | tuple[datetime, datetime] | None = None
    probability: float | None = None
    seed: int | None = None

    def control_body(self, *, pans: Mapping[str, str]) -> dict[str, Any]:
        """The ``when`` of a ``POST /faults`` body; ``pans`` maps card aliases to PANs."""
        out: dict[str, Any] = {}
        for name in ("mti", "processing_code", "kind", "tid", "mid", "bin"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        if self.card:
            out["pan"] = [pans[alias] for alias in self.card]
        if self.fields:
            out["fields"] = {k: list(v) for k, v in self.fields.items()}
        if self.amount_min_minor is not None:
            out["amount_min"] = self.amount_min_minor
        if self.amount_max_minor is not None:
            out["amount_max"] = self.amount_max_minor
        for name in ("nth", "probability", "seed"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.between is not None:
            out["between"] = [self.between[0].isoformat(), self.between[1].isoformat()]
        return out


#: A selector that selects nothing in particular (every criterion at its default).
_NO_SELECTOR = When()


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultAction:
    """What a fault does: ``type`` as in docs/domain.md#fault-primitives and ``host_stub.faults``, and its parameters.

    Money parameters are stored in minor units under ``<name>_minor`` (``debit_amount`` ->
    ``debit_amount_minor``); delays may be given as multiples of the terminal's response timeout.
    """

    type: str
    params: Mapping[str, Any] = field(default_factory=_frozen)

    def control_body(self, *, response_timeout_seconds: float) -> dict[str, Any]:
        """The ``action`` of a ``POST /faults`` body, delays in seconds for this run's timeout."""
        out: dict[str, Any] = {"type": self.type}
        for name, value in self.params.items():
            file_name = name.removesuffix("_minor")
            api_name = FILE_PARAM_API_NAMES.get(file_name, name)
            if file_name.endswith("timeout_multiple"):
                out[api_name] = round(value * response_timeout_seconds, 6)
            else:
                out[api_name] = list(value) if isinstance(value, tuple) else value
        return out


def api_action(action: Mapping[str, Any], *, response_timeout_seconds: float) -> dict[str, Any]:
    """A fault action written in a scenario file's terms (``timeout_multiple``, ``debit_amount: "1.00"``)
    as the control API takes it (``seconds``, ``debit_minor``); the API's own names pass through.

    >>> api_action({"type": "delay_response", "timeout_multiple": 2}, response_timeout_seconds=0.5)
    {'type': 'delay_response', 'seconds': 1.0}
    >>> api_action({"type": "totals_delta", "debit_amount": "-1.50"}, response_timeout_seconds=0.5)
    {'type': 'totals_delta', 'debit_minor': -150}
    """
    out: dict[str, Any] = {}
    for name, value in action.items():
        api_name = FILE_PARAM_API_NAMES.get(name)
        if api_name is None:
            out[name] = value
        elif name.endswith("timeout_multiple"):
            out[api_name] = round(float(value) * response_timeout_seconds, 6)
        else:
            text = str(value)
            if not _SIGNED_MONEY_TEXT.match(text):
                raise ValueError(f"fault parameter {name!r} holds {value!r}, expecting a decimal string like '12.34'")
            out[api_name] = int(Decimal(text) * 100)
    return out


@dataclass(frozen=True, kw_only=True, slots=True)
class Fault:
    """One host fault rule: an optional ``id`` (to clear it later), a selector, an action, a cap."""

    id: str | None
    when: When
    action: FaultAction
    times: int | None
    line: int

    def control_body(self, *, pans: Mapping[str, str], response_timeout_seconds: float) -> dict[str, Any]:
        """The JSON body of ``POST /faults``."""
        body: dict[str, Any] = {"when": self.when.control_body(pans=pans),
                                "action": self.action.control_body(response_timeout_seconds=response_timeout_seconds)}
        if self.id is not None:
            body["id"] = self.id
        if self.times is not None:
            body["times"] = self.times
        return body


@dataclass(frozen=True, kw_only=True, slots=True)
class HostSetup:
    """The stub host before the first step: registry, settings, faults (installed in order)."""

    registry: Registry = field(default_factory=Registry)
    settings: Mapping[str, Any] = field(default_factory=_frozen)
    faults: tuple[Fault, ...] = ()


# ---------------------------------------------------------------------------- steps


@dataclass(frozen=True, kw_only=True, slots=True)
class TerminalStep:
    """One operator command at the terminal (``pos-terminal <command>``).

    Attributes:
        command: ``sale``, ``void``, ``settle`` … (:data:`TERMINAL_COMMANDS`).
        label: names the step for ``original``, ``retry_of`` and expectations.
        amount_minor, tip_minor: money in minor units.
        intent: the purchase this step serves (G3 counts net debits per intent).
        card: a card alias of the host registry (default: the terminal's test card).
        original: the label of the earlier step this one voids, completes, refunds or adjusts.
        retry_of: run this step only if the labelled step ran and did not end ``approved`` (the
            operator retries a purchase that failed); skipped, like its original, when that step
            was itself skipped.
        operator: operator id (CUP 63.1; roles in terminal setting ``operators``).
        entry: card entry mode (manual entry carries 22 = 01x and 14).
        terminal_fault: a terminal-side fault during this command (:data:`TERMINAL_FAULTS`).
    """

    command: str
    line: int
    label: str | None = None
    amount_minor: int | None = None
    tip_minor: int | None = None
    intent: str | None = None
    card: str | None = None
    original: str | None = None
    retry_of: str | None = None
    operator: str | None = None
    entry: str | None = None
    terminal_fault: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ClockStep:
    """Set or advance the host's business clock (the terminal follows it, as if synced from 12/13)."""

    line: int
    set: datetime | None = None
    advance_seconds: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CrashAt:
    """Arm crash point ``point`` for the terminal step ``then``: the terminal dies there, like a power cut.

    For G7 the runner also runs the scenario uninterrupted: each ``crash_at`` replaced by its
    ``then`` step and ``restart`` steps left out.
    """

    point: str
    then: TerminalStep
    line: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Restart:
    """The terminal starts again from its journal and recovers (pending reversal first, resume settlement)."""

    line: int
    label: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class HostFaultStep:
    """Add a host fault now (its ``nth`` counts from here), or clear one by id (or ``all``)."""

    line: int
    add: Fault | None = None
    clear: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class HostRegistryStep:
    """Change host registry entries now (``PUT /registry/...``): a freeze, a top-up, a released hold."""

    registry: Registry
    line: int


@dataclass(frozen=True, kw_only=True, slots=True)
class HostSettingsStep:
    """Change host settings now (e.g. the acquirer enables a region)."""

    settings: Mapping[str, Any]
    line: int


@dataclass(frozen=True, kw_only=True, slots=True)
class TerminalSettingsStep:
    """Change terminal settings now (the operator corrects the configuration, installs an update)."""

    settings: Mapping[str, Any]
    line: int


@dataclass(frozen=True, kw_only=True, slots=True)
class OperatorNote:
    """What the operator does or sees that has no effect on the wire (shown in the report's ladder)."""

    note: str
    line: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ExpectStep:
    """A mid-scenario check, in both runs or only one (``runs``)."""

    runs: str
    check: Check
    line: int


Step = (
    TerminalStep | ClockStep | CrashAt | Restart | HostFaultStep | HostRegistryStep | HostSettingsStep |
    TerminalSettingsStep | OperatorNote | ExpectStep
)

#: YAML step type -> what it becomes (terminal commands become :class:`TerminalStep`).
STEP_TYPES: tuple[str, ...] = (*TERMINAL_COMMANDS, "clock", "crash_at", "restart", "host_fault", "host_registry",
                               "host_settings", "terminal_settings", "operator", "expect")


# ---------------------------------------------------------------------------- expectations


@dataclass(frozen=True, kw_only=True, slots=True)
class OutcomeCheck:
    """Step ``step`` ended with one of ``outcome`` (and response code ``rc`` when given)."""

    step: str
    outcome: tuple[str, ...]
    rc: str | None
    family: str | None
    line: int


@dataclass(frozen=True, kw_only=True, slots=True)
class MessagePattern:
    """Messages on the terminal's wire trace: requests it sent, responses it received.

    Attributes:
        mti: the MTI (requests are looked for among sent messages, responses among received ones).
        fields: field number or CUP sub-field (``60.3``) -> value; ``*`` and ``?`` are wildcards,
            ``"*"`` alone means "present".
        stan_of: field 11 equals the STAN of that step's own request (a reversal carries its
            original's STAN, so ``{mti: "0400", stan_of: first}`` is the reversal of step ``first``).
        during: the message was exchanged while that step ran.
        count: exact number of matching messages (``messages_present`` only; default: at least one).
        family: the pattern applies only to dialects of that family.
    """

    mti: str
    fields: Mapping[str, str]
    stan_of: str | None
    during: str | None
    count: int | None
    family: str | None
    line: int

    def matches(self, message: Mapping[str, str]) -> bool:
        """MTI and field patterns only (``stan_of`` and ``during`` need the runner's step records).

        >>> p = MessagePattern(mti="0320", fields={"60.3": "202"}, stan_of=None, during=None, count=None,
        ...                    family="cup", line=1)
        >>> p.matches({"t": "0320", "60": "00000001202"}), p.matches({"t": "0320", "60": "00000001207"})
        (True, False)
        """
        if message.get("t") != self.mti:
            return False
        for name, pattern in self.fields.items():
            value = field_value(message, name)
            if value is None or not fnmatch.fnmatchcase(value, pattern):
                return False
        return True


@dataclass(frozen=True, kw_only=True, slots=True)
class CodeSeen:
    """Response code ``code`` appears in field 39 of a response the terminal received."""

    code: str
    family: str | None
    line: int


@dataclass(frozen=True, kw_only=True, slots=True)
class RowCheck:
    """Rows of one ledger table that match ``where``: how many, and sums of money columns.

    ``where`` values: a column value, None (column empty), or for the references ``step`` (rows of
    that step's STAN) and ``intent`` (rows of every STAN the intent used).
    """

    table: str
    where: Mapping[str, Any]
    count: int | None
    sums_minor: Mapping[str, int]
    line: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Check:
    """Observations to make at the end of a run (or at an ``expect`` step)."""

    outcomes: tuple[OutcomeCheck, ...] = ()
    messages_present: tuple[MessagePattern, ...] = ()
    messages_missing: tuple[MessagePattern, ...] = ()
    messages_in_order: tuple[MessagePattern, ...] = ()
    codes_seen: tuple[CodeSeen, ...] = ()
    ledger: tuple[RowCheck, ...] = ()
    terminal: Mapping[str, Any] = field(default_factory=_frozen)
    host_net_minor: Mapping[str, int] = field(default_factory=_frozen)

    def __bool__(self) -> bool:
        return bool(self.outcomes or self.messages_present or self.messages_missing or self.messages_in_order
                    or self.codes_seen or self.ledger or self.terminal or self.host_net_minor)


@dataclass(frozen=True, kw_only=True, slots=True)
class RunExpectation:
    """What one run must show: for ``broken`` the symptom and the invariants that break; for
    ``fixed`` the invariants that hold; for both, further checks."""

    symptom: str | None
    invariants_broken: tuple[str, ...]
    invariants_hold: tuple[str, ...]
    check: Check
    line: int
    #: For an invariant of ``invariants_broken`` written ``{id: G4, finding: "..."}``: the finding
    #: (text, or a shell-style pattern) that must be among its findings: the break the file means.
    findings_expected: Mapping[str, str] = field(default_factory=_frozen)
    #: Invariants a fixed run does not claim although they apply, each with the file's reason.
    unclaimed: Mapping[str, str] = field(default_factory=_frozen)


@dataclass(frozen=True, kw_only=True, slots=True)
class Expectations:
    """A cause's two runs; a regression file has only the one run (``fixed``) and no ``broken``."""

    broken: RunExpectation | None
    fixed: RunExpectation


@dataclass(frozen=True, kw_only=True, slots=True)
class Variant:
    """Settings for one run.  ``broken`` uses only toggles and settings; ``fix`` may also change the
    host registry and replace the steps (causes fixed on the host side or by operator action)."""

    toggles: Mapping[str, Any] = field(default_factory=_frozen)
    terminal_settings: Mapping[str, Any] = field(default_factory=_frozen)
    host_settings: Mapping[str, Any] = field(default_factory=_frozen)
    host_registry: Registry = field(default_factory=Registry)
    steps: tuple[Step, ...] | None = None
    description: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Scenario:
    """One file of ``specs/scenarios``.

    ``status`` decides which attributes are set: a ``runnable`` scenario has steps, variants and
    expectations; an ``outside`` one a ``reason``; a ``merged`` one ``merged_into``.
    """

    id: str
    file: str
    title: str
    status: str
    reported_as: ReportedAs | None = None
    reports: tuple[str, ...] = ()
    scope: tuple[str, ...] = ()
    reason: str | None = None
    merged_into: str | None = None
    merges: tuple[Merge, ...] = ()
    related: tuple[str, ...] = ()
    dialects: tuple[str, ...] = ()
    #: Host profile both sides run with: a shipped profile's name or a file's absolute path.
    profile: str | None = None
    host: HostSetup = field(default_factory=HostSetup)
    terminal_settings: Mapping[str, Any] = field(default_factory=_frozen)
    steps: tuple[Step, ...] = ()
    broken: Variant = field(default_factory=Variant)
    fix: Variant = field(default_factory=Variant)
    expect: Expectations | None = None
    runbook: str | None = None

    @property
    def is_cause(self) -> bool:
        """Is this a file of one of the matrix's causes (C01–C42), or a team's own situation?"""
        return self.id in CAUSE_IDS

    @property
    def runs(self) -> bool:
        """Does this file make runs (``runnable``: a flawed and a fixed one; ``regression``: one)?"""
        return self.status in ("runnable", "regression")

    @property
    def covers(self) -> tuple[str, ...]:
        """The cause ids this file stands for (itself and what it merges)."""
        return (self.id, *(m.id for m in self.merges)) if self.status != "merged" else ()

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(DIALECT_FAMILIES[d] for d in self.dialects))

    def variant(self, run: str) -> Variant:
        """``broken`` or ``fix`` settings for run ``broken`` / ``fixed``."""
        return {"broken": self.broken, "fixed": self.fix}[run]

    def steps_for(self, run: str) -> tuple[Step, ...]:
        """The steps of run ``broken`` or ``fixed`` (``fix.steps`` replace ``steps`` in the fixed run)."""
        if run == "fixed" and self.fix.steps is not None:
            return self.fix.steps
        return self.steps

    def terminal_config(self, run: str) -> dict[str, Any]:
        """Terminal settings for a run, in the terminal's names and units (``--config FILE``).

        Scenario settings first, then the run's settings and toggles; money settings become
        ``<name>_minor``.  Identity (``tid``, ``mid``) is left in: it maps to ``--tid`` / ``--mid``.
        """
        variant = self.variant(run)
        merged = {**self.terminal_settings, **variant.terminal_settings, **variant.toggles}
        return {_terminal_name(k): (list(v) if isinstance(v, tuple) else v) for k, v in merged.items()}

    def card_pans(self) -> dict[str, str]:
        """Card alias -> PAN (seeded, Luhn-valid) for every card the scenario defines."""
        cards: dict[str, Mapping[str, Any]] = {}
        for registry in _all_registries(self):
            for alias, entry in registry.cards.items():
                cards.setdefault(alias, entry.values)
        return {alias: seeded_card(seed=v["seed"], scheme=v.get("scheme", "visa")).pan for alias, v in cards.items()}


def _terminal_name(name: str) -> str:
    kind = TOGGLES.get(name) or TERMINAL_SETTINGS.get(name)
    return f"{name}_minor" if kind in (_MONEY, _MONEY0) else name


def _all_registries(s: Scenario) -> Iterable[Registry]:
    yield s.host.registry
    yield s.fix.host_registry
    for steps in (s.steps, s.fix.steps or ()):
        for step in steps:
            if isinstance(step, HostRegistryStep):
                yield step.registry


def host_settings_body(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Host settings as JSON (``PUT /settings``, ``--config``): times ``HH:MM:SS``, dates ISO, fee
    rules as objects, tuples as lists.

    >>> host_settings_body({"cutover": time(23, 0), "holidays": (date(2024, 10, 1),), "strict_batch": True})
    {'cutover': '23:00:00', 'holidays': ['2024-10-01'], 'strict_batch': True}
    """
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, (time, date)):
            out[key] = value.isoformat()
        elif isinstance(value, tuple):
            out[key] = [v.control_body() if isinstance(v, FeeRule) else v.isoformat() if isinstance(v, date)
                        else v for v in value]
        elif isinstance(value, Mapping):
            out[key] = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
        else:
            out[key] = value
    return out


def field_value(message: Mapping[str, str], name: str) -> str | None:
    """A field or CUP sub-field (``60.3``) of a decoded message, or None when absent."""
    if name in SUBFIELDS:
        number, start, end = SUBFIELDS[name]
        value = message.get(number)
        return value[start:end] if value is not None and len(value) >= end else None
    return message.get(name)


# ============================================================================ located YAML


@dataclass(frozen=True, slots=True)
class _Y:
    """A YAML value and where it came from: mappings hold ``_Y`` values, lists ``_Y`` items."""

    value: Any
    line: int
    text: str | None = None  # scalars: the source text, as written
    key_lines: Mapping[str, int] | None = None  # mappings: the line of each key

    @property
    def is_scalar(self) -> bool:
        return self.key_lines is None and not isinstance(self.value, list)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _compose(text: str, file: str) -> _Y:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ScenarioError(f"YAML syntax error: {exc.problem or exc.context}", file=file,
                            line=mark.line + 1 if mark else 1, key=None) from None
    except yaml.YAMLError as exc:  # unmarked: the reader refuses a character (a control byte, say)
        position = getattr(exc, "position", None)  # the reader knows the character, not the line
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else 1
        raise ScenarioError(f"YAML syntax error: {exc}", file=file, line=line, key=None) from None
    if node is None:
        raise ScenarioError("the file is empty, expected a mapping with id, title, status ...", file=file, line=1,
                            key=None)
    constructor = yaml.constructor.SafeConstructor()

    def build(node: yaml.Node, path: str, active: frozenset[int]) -> _Y:
        line = node.start_mark.line + 1
        if id(node) in active:
            raise ScenarioError("an alias refers to itself, expected plain data", file=file, line=line, key=path or None)
        if isinstance(node, yaml.MappingNode):
            values: dict[str, _Y] = {}
            lines: dict[str, int] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                if key_node.tag == _MERGE_TAG:
                    raise ScenarioError("merge keys (<<) are not supported, expected plain keys", file=file,
                                        line=key_line, key=path or None)
                if not isinstance(key_node, yaml.ScalarNode):
                    raise ScenarioError("expected a plain key, found a mapping or list used as a key", file=file,
                                        line=key_line, key=path or None)
                key = str(key_node.value)
                child = f"{path}.{key}" if path else key
                if key in values:
                    raise ScenarioError(f"duplicate key, first given on line {lines[key]}", file=file,
                                        line=key_line, key=child)
                lines[key] = key_line
                values[key] = build(value_node, child, active | {id(node)})
            return _Y(values, line, None, MappingProxyType(lines))
        if isinstance(node, yaml.SequenceNode):
            return _Y([build(item, f"{path}[{i}]", active | {id(node)}) for i, item in enumerate(node.value)], line)
        try:
            value = constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise ScenarioError(f"expected a valid YAML value, found {node.value} ({exc.problem})", file=file,
                                line=line, key=path or None) from None
        return _Y(value, line, str(node.value))

    return build(node, "", frozenset())


# ============================================================================ the reader


def _found(y: _Y) -> str:
    if y.key_lines is not None:
        return "a mapping"
    if isinstance(y.value, list):
        return "a list"
    if y.value is None:
        return "nothing"
    return y.text if y.text else "an empty string"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Reader:
    """Turns located YAML into model objects for one file; every check raises :class:`ScenarioError`."""

    def __init__(self, file: str) -> None:
        self.file = file

    # ---------------------------------------------------------------- errors

    def fail(self, y: _Y, path: str, msg: str) -> NoReturn:
        raise ScenarioError(msg, file=self.file, line=y.line, key=path or None)

    def expected(self, y: _Y, path: str, what: str) -> NoReturn:
        self.fail(y, path, f"expected {what}, found {_found(y)}")

    # ---------------------------------------------------------------- structure

    def mapping(self, y: _Y, path: str, *, allowed: Iterable[str], required: Iterable[str] = (),
                what: str = "") -> dict[str, _Y]:
        """The mapping's entries after checking for unknown and missing keys."""
        allowed = frozenset(allowed)
        if y.key_lines is None:
            self.expected(y, path, f"a mapping{' (' + what + ')' if what else ''}")
        for key, key_line in y.key_lines.items():
            if key not in allowed:
                for_what = f" for {what}" if what else ""
                raise ScenarioError(f"unknown key{for_what}, expected one of {', '.join(sorted(allowed))}",
                                    file=self.file, line=key_line, key=_join(path, key))
        for key in required:
            if key not in y.value:
                needs = f"{what} needs it" if what else "it is required"
                self.fail(y, _join(path, key), f"missing, {needs}")
        return dict(y.value)

    def free_mapping(self, y: _Y, path: str, what: str) -> dict[str, _Y]:
        if y.key_lines is None:
            self.expected(y, path, what)
        return dict(y.value)

    def seq(self, y: _Y, path: str, *, what: str = "a list", allow_scalar: bool = False) -> list[_Y]:
        if isinstance(y.value, list):
            return list(y.value)
        if allow_scalar and y.is_scalar and y.value is not None:
            return [y]
        self.expected(y, path, what)

    def key_line(self, y: _Y, key: str) -> int:
        return (y.key_lines or {}).get(key, y.line)

    # ---------------------------------------------------------------- scalars

    def text(self, y: _Y, path: str, *, what: str = "a text") -> str:
        if not y.is_scalar or y.value is None or not y.text or not y.text.strip():
            self.expected(y, path, what)
        assert y.text is not None
        return y.text.strip() if not isinstance(y.value, str) else y.value.strip()

    def choice(self, y: _Y, path: str, choices: Iterable[str]) -> str:
        choices = tuple(choices)
        if not y.is_scalar or y.text not in choices:
            self.expected(y, path, f"one of {', '.join(choices)}")
        assert y.text is not None
        return y.text

    def label(self, y: _Y, path: str, what: str = "a name") -> str:
        if not y.is_scalar or not isinstance(y.value, str) or not _LABEL.match(y.value):
            self.expected(y, path, f"{what} in lower case letters, digits and _ (like first_sale)")
        return str(y.value)

    def code(self, y: _Y, path: str) -> str:
        """A 2-character response code, read from the source text (``00`` stays ``00``)."""
        if not y.is_scalar or not y.text or len(y.text) != 2 or not y.text.isalnum() or y.text != y.text.upper():
            self.expected(y, path, "a 2-character response code like '00' or 'A0'")
        assert y.text is not None
        return y.text

    def digits(self, y: _Y, path: str, n: int, what: str) -> str:
        if not y.is_scalar or not y.text or len(y.text) != n or not y.text.isdigit():
            self.expected(y, path, what)
        assert y.text is not None
        return y.text

    def mti(self, y: _Y, path: str) -> str:
        return self.digits(y, path, 4, "a 4-digit MTI like '0200'")

    def boolean(self, y: _Y, path: str) -> bool:
        if not isinstance(y.value, bool):
            self.expected(y, path, "true or false")
        return bool(y.value)

    def integer(self, y: _Y, path: str, *, minimum: int | None = None, what: str = "a whole number") -> int:
        text = y.text or ""
        if isinstance(y.value, bool) or not isinstance(y.value, int) or re.match(r"^[+-]?0\d", text) \
                or not re.match(r"^[+-]?\d+$", text):
            self.expected(y, path, what)
        if minimum is not None and y.value < minimum:
            self.expected(y, path, f"{what} of at least {minimum}")
        return int(y.value)

    def number(self, y: _Y, path: str, *, positive: bool = False) -> float:
        if isinstance(y.value, bool) or not isinstance(y.value, (int, float)) or (positive and y.value <= 0) \
                or y.value < 0:
            self.expected(y, path, "a number above 0" if positive else "a number of 0 or more")
        return float(y.value)

    def money(self, y: _Y, path: str, *, zero: bool = False, signed: bool = False) -> int:
        """Minor units of a decimal string with at most two places (``"12.34"`` -> 1234)."""
        text = y.text if y.is_scalar and y.value is not None else None
        pattern = _SIGNED_MONEY_TEXT if signed else _MONEY_TEXT
        if text is None or isinstance(y.value, bool) or not pattern.match(text):
            self.expected(y, path, "a signed decimal string like '-12.34'" if signed
                          else "a decimal string like '12.34'")
        minor = int(Decimal(text) * 100)
        if abs(minor) > _MAX_MINOR:
            self.expected(y, path, "an amount that fits 12 digits of minor units")
        if not zero and not signed and minor == 0:
            self.expected(y, path, "an amount above zero like '12.34'")
        if signed and minor == 0:
            self.expected(y, path, "a non-zero amount like '-12.34'")
        return minor

    def timestamp(self, y: _Y, path: str) -> datetime:
        if isinstance(y.value, datetime):
            return y.value.replace(tzinfo=None)
        try:
            if isinstance(y.value, str) and "T" in y.value:
                return datetime.fromisoformat(y.value).replace(tzinfo=None)
        except ValueError:
            pass
        self.expected(y, path, "a date and time like 2024-06-03T10:00:00")

    def day(self, y: _Y, path: str) -> date:
        if isinstance(y.value, date) and not isinstance(y.value, datetime):
            return y.value
        try:
            if isinstance(y.value, str):
                return date.fromisoformat(y.value)
        except ValueError:
            pass
        self.expected(y, path, "a date like 2024-10-01")

    def time_of_day(self, y: _Y, path: str) -> time:
        try:
            if y.is_scalar and y.text and re.match(r"^\d\d:\d\d(:\d\d)?$", y.text):
                return time.fromisoformat(y.text)
        except ValueError:
            pass
        self.expected(y, path, "a time of day like '23:00'")

    def str_or_list(self, y: _Y, path: str, item: Callable[[_Y, str], str]) -> tuple[str, ...]:
        items = self.seq(y, path, what="a value or a list of values", allow_scalar=True)
        if not items:
            self.expected(y, path, "at least one value")
        out = []
        for i, it in enumerate(items):
            out.append(item(it, f"{path}[{i}]" if isinstance(y.value, list) else path))
        return tuple(out)

    def code_list(self, y: _Y, path: str) -> tuple[str, ...]:
        return self.str_or_list(y, path, self.code)

    def field_name(self, y: _Y, path: str) -> str:
        text = y.text if y.is_scalar else None
        if text is None or not (text in SUBFIELDS or (text.isdigit() and 2 <= int(text) <= 128 and text[0] != "0")):
            self.expected(y, path, "a field number 2-128 or a CUP sub-field like 60.3")
        assert text is not None
        return text

    def family(self, y: _Y, path: str, scenario_families: tuple[str, ...]) -> str:
        value = self.choice(y, path, ("intl", "cup"))
        if scenario_families and value not in scenario_families:
            self.expected(y, path, f"a family of this scenario's dialects ({', '.join(scenario_families)})")
        return value

    # ---------------------------------------------------------------- typed values of the settings tables

    def value_of(self, kind: str, y: _Y, path: str) -> Any:
        if kind == _BOOL:
            return self.boolean(y, path)
        if kind == _CODES:
            return self.code_list(y, path)
        if kind in (_MONEY, _MONEY0):
            return self.money(y, path, zero=kind == _MONEY0)
        if kind == "signed_money":
            return self.money(y, path, signed=True)
        if kind == _POS_NUMBER:
            return self.number(y, path, positive=True)
        if kind == "number0":
            return self.number(y, path)
        if kind == _INT0:
            return self.integer(y, path, minimum=0)
        if kind == _INT1:
            return self.integer(y, path, minimum=1)
        if kind == "int":
            return self.integer(y, path)
        if kind == "nonzero_int":
            value = self.integer(y, path)
            if value == 0:
                self.expected(y, path, "a whole number other than 0")
            return value
        if kind == "code":
            return self.code(y, path)
        if kind == "reversal_rc":
            return self.choice(y, path, ("25", "12", "00"))
        if kind == "maintenance_rc":
            return self.choice(y, path, ("91", "96"))
        if kind == "maintenance_mode":
            return self.choice(y, path, ("refuse", "rc"))
        if kind == "processing_requirement":
            return self.choice(y, path, tuple("012345678"))
        if kind == "cup_unbalanced_mode":
            return self.choice(y, path, ("flag", "rc95"))
        if kind == "fee_date_basis":
            return self.choice(y, path, ("transaction", "settlement"))
        if kind == "key_mode":
            return self.choice(y, path, ("001", "003", "004"))
        if kind == "settlement_state":
            return self.choice(y, path, ("idle", "pending"))
        if kind == "digits6":
            return self.digits(y, path, 6, "6 digits like '310000'")
        if kind == "tid":
            return self.identity(y, path, 8, "a TID of 8 characters like '10000001'")
        if kind == "mid":
            return self.identity(y, path, 15, "a MID of 15 characters like '123456789012345'")
        if kind == "text":
            return self.text(y, path)
        if kind == "str_list":
            return self.str_or_list(y, path, lambda it, p: self.text(it, p))
        if kind == "date_list":
            return tuple(self.day(it, f"{path}[{i}]") for i, it in enumerate(self.seq(y, path, what="a list of dates")))
        if kind == "time":
            return self.time_of_day(y, path)
        if kind == "field_list":
            return self.str_or_list(y, path, self.field_name)
        if kind == "fee_schedule":
            return self.fee_schedule(y, path)
        if kind == "required_fields":
            required: dict[str, tuple[str, ...]] = {}
            for key, item in self.free_mapping(y, path, "a mapping of MTI to field numbers").items():
                mti_text = self.mti(_Y(key, self.key_line(y, key), key), _join(path, key))
                required[mti_text] = self.str_or_list(item, _join(path, key), self.field_name)
            return _frozen(required)
        if kind == "operators":
            roles: dict[str, str] = {}
            for key, item in self.free_mapping(y, path, "a mapping of operator id to role").items():
                self.digits(_Y(key, self.key_line(y, key), key), _join(path, key), 3, "a 3-digit operator id like '001'")
                roles[key] = self.choice(item, _join(path, key), OPERATOR_ROLES)
            return _frozen(roles)
        raise AssertionError(f"unknown value kind {kind}")  # a value-kind table names a kind this method lacks

    def identity(self, y: _Y, path: str, n: int, what: str) -> str:
        if not y.is_scalar or not y.text or len(y.text) != n or not y.text.isprintable():
            self.expected(y, path, what)
        assert y.text is not None
        return y.text

    def fee_schedule(self, y: _Y, path: str) -> tuple[FeeRule, ...]:
        rules = []
        for i, item in enumerate(self.seq(y, path, what="a list of fee rules")):
            p = f"{path}[{i}]"
            entries = self.mapping(item, p, allowed=MAPPING_KEYS["fee_rule"], required=("effective_from",), what="a fee rule")
            rules.append(FeeRule(effective_from=self.day(entries["effective_from"], _join(p, "effective_from")),
                                 rate_bps=self.integer(entries["rate_bps"], _join(p, "rate_bps"), minimum=0)
                                 if "rate_bps" in entries else 0,
                                 fixed_minor=self.money(entries["fixed"], _join(p, "fixed"), zero=True)
                                 if "fixed" in entries else 0))
        return tuple(rules)

    def settings(self, y: _Y, path: str, table: Mapping[str, str], what: str) -> Mapping[str, Any]:
        entries = self.mapping(y, path, allowed=table, what=what)
        return _frozen({k: self.value_of(table[k], v, _join(path, k)) for k, v in entries.items()})


# ============================================================================ the scenario parser


_TOP_COMMON = ("id", "title", "reported_as", "reports", "scope", "status", "related")
TOP_KEYS = {
    "runnable": frozenset(_TOP_COMMON + ("merges", "dialects", "profile", "host", "terminal", "steps", "broken", "fix",
                                         "expect", "runbook")),
    "outside": frozenset(_TOP_COMMON + ("reason", "runbook")),
    "merged": frozenset(_TOP_COMMON + ("merged_into",)),
    "regression": frozenset(_TOP_COMMON + ("dialects", "profile", "host", "terminal", "steps", "expect", "runbook")),
}
TOP_REQUIRED = {
    "runnable": ("dialects", "steps", "fix", "expect"),
    "outside": ("reason",),
    "merged": ("merged_into",),
    "regression": ("dialects", "steps", "expect"),
}
#: What a file of one of the matrix's causes must say besides (a team's own file may leave them out).
CAUSE_REQUIRED = {
    "runnable": ("reported_as", "reports", "scope", "runbook"),
    "outside": ("reported_as", "reports", "scope", "runbook"),
    "merged": ("reported_as", "reports", "scope"),
    "regression": ("reported_as", "reports", "scope"),
}
CHECK_KEYS = frozenset({"outcomes", "messages_present", "messages_missing", "messages_in_order", "codes_seen",
                         "ledger", "terminal", "host_net"})


@dataclass(kw_only=True)
class _StepScope:
    """What the steps of one run define, for checking references in order."""

    labels: dict[str, TerminalStep] = field(default_factory=dict)
    intents: set[str] = field(default_factory=set)
    fault_ids: set[str] = field(default_factory=set)
    cards: set[str] = field(default_factory=set)
    has_crash: bool = False


class _Parser(_Reader):
    def __init__(self, file: str, directory: Path | None = None) -> None:
        super().__init__(file)
        self.directory = directory
        self.families: tuple[str, ...] = ()

    def scenario(self, root: _Y) -> Scenario:
        if root.key_lines is None:
            self.expected(root, "", "a mapping with id, title, status ...")
        top = dict(root.value)
        status = self.choice(top["status"], "status", STATUSES) if "status" in top else None
        if status is None:
            self.fail(root, "status", f"missing, expected one of {', '.join(STATUSES)}")
        entries = self.mapping(root, "", allowed=TOP_KEYS[status], what=f"a {status} scenario")
        for key in ("id", "title", *TOP_REQUIRED[status]):
            if key not in entries:
                self.fail(root, key, f"missing, a {status} scenario needs it")
        scenario_id = self.scenario_id(entries["id"])
        if scenario_id in CAUSE_IDS:
            for key in CAUSE_REQUIRED[status]:
                if key not in entries:
                    self.fail(root, key, f"missing, a {status} file of cause {scenario_id} needs it (a team's own "
                                         "scenario, with an id of its own, may leave it out)")
        common: dict[str, Any] = dict(
            id=scenario_id, file=self.file, status=status,
            title=self.text(entries["title"], "title"),
            reported_as=self.reported_as(entries["reported_as"]) if "reported_as" in entries else None,
            reports=self.reports(entries["reports"]) if "reports" in entries else (),
            scope=self.scope(entries["scope"]) if "scope" in entries else (),
            related=self.cause_list(entries["related"], "related", exclude=scenario_id) if "related" in entries else (),
            runbook=self.text(entries["runbook"], "runbook") if "runbook" in entries else None,
        )
        if status == "outside":
            return Scenario(**common, reason=self.text(entries["reason"], "reason"))
        if status == "merged":
            target = entries["merged_into"]
            return Scenario(**common, merged_into=self.cause_id(target, "merged_into", exclude=scenario_id))
        if status == "regression":
            return self.regression(entries, common)
        return self.runnable(entries, common)

    # ---------------------------------------------------------------- header

    def scenario_id(self, y: _Y) -> str:
        """A cause id (``C07``, in the file of that name) or a team's own id (``ACME-7``, any file name)."""
        if not y.is_scalar or not TEAM_ID.match(y.text or ""):
            self.expected(y, "id", "a cause id C01 to C42 or a scenario id of your own (a letter, then letters, "
                                   "digits, '-', '_' or '.', at most 40)")
        value = y.text
        assert value is not None
        stem = Path(self.file).stem
        if value in CAUSE_IDS and stem != value:
            self.expected(y, "id", f"{stem} (the file name of a cause's file; a scenario of your own takes an id "
                                   "that is not C01 to C42)")
        if re.fullmatch(r"[Cc]\d\d", value) and value not in CAUSE_IDS:
            self.expected(y, "id", "a cause id C01 to C42 (ids of the form Cnn are the matrix's; use an id of your "
                                   "own such as ACME-7)")
        return value

    def cause_id(self, y: _Y, path: str, *, exclude: str | None = None) -> str:
        if not y.is_scalar or y.text not in CAUSE_IDS or y.text == exclude:
            self.expected(y, path, "a cause id C01 to C42" + (f" other than {exclude}" if exclude else ""))
        assert y.text is not None
        return y.text

    def cause_list(self, y: _Y, path: str, *, exclude: str) -> tuple[str, ...]:
        ids = self.str_or_list(y, path, lambda it, p: self.cause_id(it, p, exclude=exclude))
        return tuple(dict.fromkeys(ids))

    def reported_as(self, y: _Y) -> ReportedAs:
        e = self.mapping(y, "reported_as", allowed=MAPPING_KEYS["reported_as"], required=("zh", "en"),
                         what="the merchants' phrase (zh) and English (en)")
        return ReportedAs(zh=self.text(e["zh"], "reported_as.zh"), en=self.text(e["en"], "reported_as.en"))

    def reports(self, y: _Y) -> tuple[str, ...]:
        def one(it: _Y, p: str) -> str:
            if not it.is_scalar or it.text not in REPORT_IDS:
                self.expected(it, p, f"a report id ({', '.join(REPORT_IDS)})")
            assert it.text is not None
            return it.text
        return self.unique(y, "reports", self.str_or_list(y, "reports", one))

    def scope(self, y: _Y) -> tuple[str, ...]:
        return self.unique(y, "scope", self.str_or_list(y, "scope", lambda it, p: self.choice(it, p, SCOPES)))

    def unique(self, y: _Y, path: str, values: tuple[str, ...]) -> tuple[str, ...]:
        seen = set()
        for i, v in enumerate(values):
            if v in seen:
                item = y.value[i] if isinstance(y.value, list) else y
                self.fail(item, f"{path}[{i}]", f"expected each value once, found {v} twice")
            seen.add(v)
        return values

    # ---------------------------------------------------------------- runnable

    def body(self, e: dict[str, _Y]) -> tuple[dict[str, Any], _StepScope, _StepScope]:
        """What a file that runs has whatever its kind: dialects, host, terminal settings, steps; and
        the scopes its variants start from and its steps end with."""
        dialects = self.unique(e["dialects"], "dialects", self.str_or_list(
            e["dialects"], "dialects", lambda it, p: self.choice(it, p, tuple(DIALECT_FAMILIES))))
        self.families = tuple(dict.fromkeys(DIALECT_FAMILIES[d] for d in dialects))
        profile = self.profile_ref(e["profile"], dialects) if "profile" in e else None
        host = self.host(e["host"]) if "host" in e else HostSetup()
        terminal_settings: Mapping[str, Any] = _frozen()
        if "terminal" in e:
            t = self.mapping(e["terminal"], "terminal", allowed=MAPPING_KEYS["terminal"], what="the terminal")
            if "settings" in t:
                terminal_settings = self.settings(t["settings"], "terminal.settings", TERMINAL_SETTINGS,
                                                  "terminal settings")
        base = _StepScope(cards=set(host.registry.cards), fault_ids={f.id for f in host.faults if f.id})
        steps, scope = self.steps(e["steps"], "steps", base)
        return (dict(dialects=dialects, profile=profile, host=host, terminal_settings=terminal_settings, steps=steps),
                base, scope)

    def runnable(self, e: dict[str, _Y], common: dict[str, Any]) -> Scenario:
        merges = self.merges(e["merges"], common["id"]) if "merges" in e else ()
        body, base, broken_scope = self.body(e)
        broken, _ = self.variant(e["broken"], "broken", fix=False, base=base) if "broken" in e else (Variant(), None)
        fix, fix_scope = self.variant(e["fix"], "fix", fix=True, base=base)
        self.check_variants_differ(e["fix"], broken, fix)
        expect = self.expectations(e["expect"], broken_scope, fix_scope or broken_scope)
        return Scenario(**common, **body, merges=merges, broken=broken, fix=fix, expect=expect)

    def regression(self, e: dict[str, _Y], common: dict[str, Any]) -> Scenario:
        """One run that must meet its expectations ("this must work"): no flawed run, no fix."""
        body, _, scope = self.body(e)
        expect = self.run_expectation(e["expect"], "expect", scope, broken=False)
        return Scenario(**common, **body, expect=Expectations(broken=None, fixed=expect))

    def profile_ref(self, y: _Y, dialects: tuple[str, ...]) -> str:
        """A host profile: a file next to the scenario file (its absolute path), or a shipped name.
        It is loaded and checked here, and must start from the scenario's one dialect."""
        from specs.profile import load_profile  # specs.profile reads YAML with this module

        text = self.text(y, "profile", what="a profile name or file")
        local = self.directory / text if self.directory is not None else None
        ref = str(local.resolve()) if local is not None and local.is_file() else text
        try:
            wire = load_profile(ref)
        except ScenarioError as exc:
            self.fail(y, "profile", f"profile {text}: {exc}")
        if any(d != wire.base for d in dialects):
            self.expected(y, "profile", f"a profile of the scenario's dialect (profile {text} starts from "
                                        f"{wire.base}, dialects are {', '.join(dialects)})")
        return ref

    def merges(self, y: _Y, own: str) -> tuple[Merge, ...]:
        out = []
        for i, item in enumerate(self.seq(y, "merges", what="a list of {id, citation}")):
            p = f"merges[{i}]"
            m = self.mapping(item, p, allowed=MAPPING_KEYS["merge"], required=("id", "citation"), what="a merge")
            citation = self.text(m["citation"], f"{p}.citation")
            if "domain.md" not in citation:
                self.expected(m["citation"], f"{p}.citation",
                              "a sentence citing docs/domain.md (e.g. 'docs/domain.md#c37: ...')")
            out.append(Merge(id=self.cause_id(m["id"], f"{p}.id", exclude=own), citation=citation))
        return tuple(out)

    # ---------------------------------------------------------------- host

    def host(self, y: _Y) -> HostSetup:
        e = self.mapping(y, "host", allowed=MAPPING_KEYS["host"], what="the host")
        registry = self.registry(e["registry"], "host.registry", known_cards=set()) if "registry" in e else Registry()
        settings = self.settings(e["settings"], "host.settings", HOST_SETTINGS, "host settings") \
            if "settings" in e else _frozen()
        faults: list[Fault] = []
        ids: set[str] = set()
        if "faults" in e:
            for i, item in enumerate(self.seq(e["faults"], "host.faults", what="a list of faults")):
                fault = self.fault(item, f"host.faults[{i}]", cards=set(registry.cards))
                if fault.id is not None:
                    if fault.id in ids:
                        self.expected(item.value["id"], f"host.faults[{i}].id", "an id not used by another fault")
                    ids.add(fault.id)
                faults.append(fault)
        return HostSetup(registry=registry, settings=settings, faults=tuple(faults))

    def registry(self, y: _Y, path: str, *, known_cards: set[str]) -> Registry:
        e = self.mapping(y, path, allowed=MAPPING_KEYS["registry"], what="the host registry")
        empty = _Y({}, y.line, None, MappingProxyType({}))
        merchants_y, terminals_y, cards_y = (e.get(k, empty) for k in ("merchants", "terminals", "cards"))
        merchants = {}
        for mid, entry in self.free_mapping(merchants_y, _join(path, "merchants"), "a mapping of MID to merchant").items():
            mp = _join(_join(path, "merchants"), mid)
            self.identity(_Y(mid, self.key_line(merchants_y, mid), mid), mp, 15,
                          "a MID of 15 characters like '123456789012345'")
            merchants[mid] = self.merchant(entry, mp)
        terminals = {}
        for tid, entry in self.free_mapping(terminals_y, _join(path, "terminals"), "a mapping of TID to terminal").items():
            tp = _join(_join(path, "terminals"), tid)
            self.identity(_Y(tid, self.key_line(terminals_y, tid), tid), tp, 8, "a TID of 8 characters like '10000001'")
            terminals[tid] = self.terminal_entry(entry, tp)
        cards = {}
        for alias, entry in self.free_mapping(cards_y, _join(path, "cards"), "a mapping of card alias to card").items():
            cp = _join(_join(path, "cards"), alias)
            self.label(_Y(alias, self.key_line(cards_y, alias), alias), cp, "a card alias")
            cards[alias] = self.card(entry, cp, new=alias not in known_cards)
        return Registry(merchants=_frozen(merchants), terminals=_frozen(terminals), cards=_frozen(cards))

    def limits(self, y: _Y, path: str) -> Limits:
        e = self.mapping(y, path, allowed=MAPPING_KEYS["limits"], what="limits")
        return Limits(daily_amount_minor=self.money(e["daily_amount"], _join(path, "daily_amount"))
                      if "daily_amount" in e else None,
                      daily_count=self.integer(e["daily_count"], _join(path, "daily_count"), minimum=1)
                      if "daily_count" in e else None,
                      per_txn_max_minor=self.money(e["per_txn_max"], _join(path, "per_txn_max"))
                      if "per_txn_max" in e else None)

    def merchant(self, y: _Y, path: str) -> RegistryEntry:
        e = self.mapping(y, path, allowed=MAPPING_KEYS["merchant"], what="a merchant")
        v: dict[str, Any] = {}
        for k, item in e.items():
            p = _join(path, k)
            if k == "status":
                v[k] = self.choice(item, p, MERCHANT_STATUSES)
            elif k in ("name", "region"):
                v[k] = self.text(item, p)
            elif k == "mcc":
                v[k] = self.digits(item, p, 4, "a 4-digit MCC like '5812'")
            elif k == "limits":
                v[k] = self.limits(item, p)
            elif k == "available_balance":
                v["available_balance_minor"] = self.money(item, p, zero=True)
            elif k == "payout_days":
                v[k] = self.integer(item, p, minimum=0)
            elif k == "payout_hold":
                v[k] = None if item.value is None else self.text(item, p, what="a hold reason or null")
            elif k == "bank_account_valid":
                v[k] = self.boolean(item, p)
            else:
                v[k] = self.fee_schedule(item, p)
        return RegistryEntry(values=_frozen(v), line=y.line)

    def terminal_entry(self, y: _Y, path: str) -> RegistryEntry:
        e = self.mapping(y, path, allowed=MAPPING_KEYS["terminal_entry"], what="a terminal")
        v: dict[str, Any] = {}
        for k, item in e.items():
            p = _join(path, k)
            if k == "mid":
                v[k] = self.identity(item, p, 15, "a MID of 15 characters like '123456789012345'")
            elif k == "status":
                v[k] = self.choice(item, p, TERMINAL_STATUSES)
            elif k == "region":
                v[k] = self.text(item, p)
            elif k == "limits":
                v[k] = self.limits(item, p)
            else:
                if not item.is_scalar or not item.text or not item.text.isdigit() or len(item.text) > 6:
                    self.expected(item, p, "a batch number of up to 6 digits like '000005'")
                v[k] = int(item.text)
        return RegistryEntry(values=_frozen(v), line=y.line)

    def card(self, y: _Y, path: str, *, new: bool) -> RegistryEntry:
        e = self.mapping(y, path, allowed=MAPPING_KEYS["card"], required=("seed",) if new else (), what="a card")
        v: dict[str, Any] = {}
        for k, item in e.items():
            p = _join(path, k)
            if k == "seed":
                if not new:
                    self.fail(item, p, "expected no seed: the card is already defined, its PAN cannot change")
                v[k] = self.integer(item, p, minimum=0)
            elif k == "scheme":
                v[k] = self.choice(item, p, CARD_SCHEMES)
            elif k == "expiry":
                text = self.digits(item, p, 4, "an expiry YYMM like '2712'")
                if not 1 <= int(text[2:]) <= 12:
                    self.expected(item, p, "an expiry YYMM with a month 01-12")
                v[k] = text
            elif k == "status":
                v[k] = self.choice(item, p, CARD_STATUSES)
            elif k == "balance":
                v["balance_minor"] = self.money(item, p, zero=True)
            elif k == "pin":
                if not item.is_scalar or not item.text or not item.text.isdigit() or not 4 <= len(item.text) <= 12:
                    self.expected(item, p, "a PIN of 4 to 12 digits")
                v[k] = item.text
            else:
                v[k] = self.limits(item, p)
        return RegistryEntry(values=_frozen(v), line=y.line)

    # ---------------------------------------------------------------- faults

    def fault(self, y: _Y, path: str, *, cards: set[str]) -> Fault:
        e = self.mapping(y, path, allowed=MAPPING_KEYS["fault"], required=("action",), what="a fault")
        fault_id = self.label(e["id"], _join(path, "id"), "a fault id") if "id" in e else None
        when = self.when(e["when"], _join(path, "when"), cards=cards) if "when" in e else When()
        action = self.action(e["action"], _join(path, "action"))
        times = self.integer(e["times"], _join(path, "times"), minimum=1) if "times" in e else None
        if action.type == "maintenance_window" and when.between is None:
            self.fail(e.get("when", y), _join(path, "when.between"),
                      "missing, a maintenance_window fault needs its window [start, end]")
        if action.type == "refuse_connect":  # refused connects never reach the host: nothing to select or count
            given = [f.name.removesuffix("_minor") for f in fields(When)
                     if f.name != "between" and getattr(when, f.name) != getattr(_NO_SELECTOR, f.name)]
            if given:
                self.fail(e["when"], _join(path, "when"), "expected only between for refuse_connect (a refused "
                          f"connect carries no message to select and is never counted), found {', '.join(given)}")
            if times is not None:
                self.fail(e["times"], _join(path, "times"), "not allowed for refuse_connect, which is active while "
                          "its window holds")
        return Fault(id=fault_id, when=when, action=action, times=times, line=y.line)

    def when(self, y: _Y, path: str, *, cards: set[str]) -> When:
        e = self.mapping(y, path, allowed=MAPPING_KEYS["when"], what="a fault selector")
        kw: dict[str, Any] = {}
        for k, item in e.items():
            p = _join(path, k)
            if k == "mti":
                kw[k] = self.str_or_list(item, p, self.mti)
            elif k == "processing_code":
                kw[k] = self.str_or_list(item, p, lambda it, q: self.digits(it, q, 6, "a 6-digit processing code"))
            elif k == "kind":
                kw[k] = self.str_or_list(item, p, lambda it, q: self.choice(it, q, FAULT_KINDS))
            elif k == "tid":
                kw[k] = self.str_or_list(item, p, lambda it, q: self.value_of("tid", it, q))
            elif k == "mid":
                kw[k] = self.str_or_list(item, p, lambda it, q: self.value_of("mid", it, q))
            elif k == "card":
                def alias(it: _Y, q: str) -> str:
                    name = self.label(it, q, "a card alias")
                    if name not in cards:
                        self.expected(it, q, f"a card alias of host.registry.cards ({', '.join(sorted(cards)) or 'none defined'})")
                    return name
                kw[k] = self.str_or_list(item, p, alias)
            elif k == "bin":
                def bin_(it: _Y, q: str) -> str:
                    if not it.is_scalar or not it.text or not it.text.isdigit() or not 1 <= len(it.text) <= 8:
                        self.expected(it, q, "a card number prefix of 1 to 8 digits")
                    assert it.text is not None
                    return it.text
                kw[k] = self.str_or_list(item, p, bin_)
            elif k == "fields":
                fields_: dict[str, tuple[str, ...]] = {}
                for name, value in self.free_mapping(item, p, "a mapping of field to value").items():
                    fp = _join(p, name)
                    number = self.field_name(_Y(name, self.key_line(item, name), name), fp)
                    fields_[number] = self.str_or_list(value, fp, lambda it, q: self.text(it, q, what="a field value"))
                kw[k] = _frozen(fields_)
            elif k in ("amount_min", "amount_max"):
                kw[f"{k}_minor"] = self.money(item, p, zero=True)
            elif k == "nth":
                kw[k] = self.integer(item, p, minimum=1)
            elif k == "seed":
                kw[k] = self.integer(item, p, minimum=0)
            elif k == "probability":
                probability = self.number(item, p)
                if probability > 1:
                    self.expected(item, p, "a probability from 0 to 1")
                kw[k] = probability
            else:
                kw[k] = self.between(item, p)
        if "probability" in kw and "seed" not in kw:
            self.fail(y, _join(path, "seed"), "missing, a probability needs a seed (faults are deterministic)")
        if kw.get("amount_min_minor") is not None and kw.get("amount_max_minor") is not None \
                and kw["amount_min_minor"] > kw["amount_max_minor"]:
            self.expected(e["amount_max"], _join(path, "amount_max"), "an amount not below amount_min")
        return When(**kw)

    def between(self, y: _Y, path: str) -> tuple[time, time] | tuple[datetime, datetime]:
        items = self.seq(y, path, what="a window [start, end]")
        if len(items) != 2:
            self.expected(y, path, "a window [start, end] of two times ('23:00') or two date-times")
        absolute = any(isinstance(it.value, datetime) or (isinstance(it.value, str) and "T" in it.value)
                       for it in items)
        if absolute:
            start, end = (self.timestamp(it, f"{path}[{i}]") for i, it in enumerate(items))
            if end <= start:
                self.expected(items[1], f"{path}[1]", f"an end after the start {start.isoformat()}")
            return (start, end)
        return (self.time_of_day(items[0], f"{path}[0]"), self.time_of_day(items[1], f"{path}[1]"))

    def action(self, y: _Y, path: str) -> FaultAction:
        if y.key_lines is None:
            self.expected(y, path, "a mapping with type and its parameters")
        if "type" not in y.value:
            self.fail(y, _join(path, "type"), f"missing, expected one of {', '.join(FAULT_ACTIONS)}")
        kind = self.choice(y.value["type"], _join(path, "type"), FAULT_ACTIONS)
        spec, required = ACTION_PARAMS[kind]
        e = self.mapping(y, path, allowed=("type", *spec), required=required, what=f"a {kind} action")
        params: dict[str, Any] = {}
        for k, item in e.items():
            if k == "type":
                continue
            value = self.value_of(spec[k], item, _join(path, k))
            params[f"{k}_minor" if spec[k] == "signed_money" else k] = value
        if kind == "delay_response" and len(params) != 1:
            self.fail(y, _join(path, "seconds"), "expected exactly one of seconds or timeout_multiple")
        if kind == "interim_09" and "interval_seconds" in params and "interval_timeout_multiple" in params:
            self.fail(e["interval_seconds"], _join(path, "interval_seconds"),
                      "expected one of interval_seconds or interval_timeout_multiple, found both")
        if kind == "totals_delta" and not params:
            self.fail(y, _join(path, "debit_count"), "missing, a totals_delta needs at least one count or amount")
        if kind == "maintenance_window" and params.get("mode") == "rc" and "rc" not in params:
            self.fail(y, _join(path, "rc"), "missing, a maintenance_window in mode rc answers 91 or 96")
        if kind == "maintenance_window" and params.get("mode") == "refuse" and "rc" in params:
            self.fail(e["rc"], _join(path, "rc"), "expected no rc when mode is refuse (connections are closed)")
        return FaultAction(type=kind, params=_frozen(params))

    # ---------------------------------------------------------------- steps

    def steps(self, y: _Y, path: str, base: _StepScope) -> tuple[tuple[Step, ...], _StepScope]:
        scope = _StepScope(labels={}, intents=set(), fault_ids=set(base.fault_ids), cards=set(base.cards))
        items = self.seq(y, path, what="a list of steps")
        if not items:
            self.expected(y, path, "at least one step")
        out = [self.step(item, f"{path}[{i}]", scope) for i, item in enumerate(items)]
        return tuple(out), scope

    def step(self, y: _Y, path: str, scope: _StepScope, *, inner: bool = False) -> Step:
        types = STEP_TYPES if not inner else tuple(TERMINAL_COMMANDS)
        if y.is_scalar and isinstance(y.value, str):
            kind, params = y.value, _Y(None, y.line, "")
        elif y.key_lines is not None and len(y.value) == 1:
            kind, params = next(iter(y.value.items()))
        elif y.key_lines is not None:
            self.fail(y, path, f"expected one step type per list item, found {' and '.join(y.value)}")
        else:
            self.expected(y, path, "a step such as sale: {amount: '12.34'} or settle")
        if kind not in types:
            self.fail(y, path, f"expected a {'terminal operation' if inner else 'step type'} "
                               f"({', '.join(types)}), found {kind}")
        if params.value is None and kind in TERMINAL_COMMANDS:
            params = _Y({}, params.line, None, MappingProxyType({}))
        if kind in TERMINAL_COMMANDS:
            return self.terminal_step(kind, params, path, scope)
        if kind == "restart":
            e = self.mapping(params, path, allowed=MAPPING_KEYS["restart"], what="a restart step") if params.value is not None else {}
            label = self.new_label(e["label"], _join(path, "label"), scope, None) if "label" in e else None
            return Restart(line=y.line, label=label)
        if kind == "clock":
            e = self.mapping(params, path, allowed=MAPPING_KEYS["clock"], what="a clock step")
            if len(e) != 1:
                self.fail(params, path, "expected exactly one of set or advance_seconds")
            if "set" in e:
                return ClockStep(line=y.line, set=self.timestamp(e["set"], _join(path, "set")))
            return ClockStep(line=y.line, advance_seconds=self.integer(e["advance_seconds"],
                                                                       _join(path, "advance_seconds"), minimum=1))
        if kind == "crash_at":
            e = self.mapping(params, path, allowed=MAPPING_KEYS["crash_at"], required=("point", "then"),
                             what="a crash_at step")
            point = self.choice(e["point"], _join(path, "point"), tuple(CRASH_POINTS))
            then = self.step(e["then"], _join(path, "then"), scope, inner=True)
            assert isinstance(then, TerminalStep)
            scope.has_crash = True
            return CrashAt(point=point, then=then, line=y.line)
        if kind == "host_fault":
            e = self.mapping(params, path, allowed=MAPPING_KEYS["host_fault"], what="a host_fault step")
            if len(e) != 1:
                self.fail(params, path, "expected exactly one of add or clear")
            if "add" in e:
                fault = self.fault(e["add"], _join(path, "add"), cards=scope.cards)
                if fault.id is not None:
                    if fault.id in scope.fault_ids:
                        self.expected(e["add"].value["id"], _join(path, "add.id"), "an id not used by another fault")
                    scope.fault_ids.add(fault.id)
                return HostFaultStep(line=y.line, add=fault)
            clear = e["clear"]
            name = "all" if clear.value == "all" else self.label(clear, _join(path, "clear"), "a fault id")
            if name != "all" and name not in scope.fault_ids:
                self.expected(clear, _join(path, "clear"),
                              f"all or the id of a fault added earlier ({', '.join(sorted(scope.fault_ids)) or 'none'})")
            if name != "all":
                scope.fault_ids.discard(name)
            return HostFaultStep(line=y.line, clear=name)
        if kind == "host_registry":
            registry = self.registry(params, path, known_cards=scope.cards)
            scope.cards |= set(registry.cards)
            return HostRegistryStep(registry=registry, line=y.line)
        if kind == "host_settings":
            return HostSettingsStep(settings=self.settings(params, path, HOST_SETTINGS, "host settings"), line=y.line)
        if kind == "terminal_settings":
            return TerminalSettingsStep(settings=self.settings(params, path, TERMINAL_SETTINGS, "terminal settings"),
                                        line=y.line)
        if kind == "operator":
            e = self.mapping(params, path, allowed=MAPPING_KEYS["operator"], required=("note",), what="an operator step")
            return OperatorNote(note=self.text(e["note"], _join(path, "note")), line=y.line)
        e = self.mapping(params, path, allowed=("runs", *CHECK_KEYS), what="an expect step")
        runs = self.choice(e["runs"], _join(path, "runs"), ("both", "broken", "fixed")) if "runs" in e else "both"
        check = self.check({k: v for k, v in e.items() if k != "runs"}, path, scope)
        if not check:
            self.fail(params, path, f"expected at least one check ({', '.join(sorted(CHECK_KEYS))})")
        return ExpectStep(runs=runs, check=check, line=y.line)

    def new_label(self, y: _Y, path: str, scope: _StepScope, step: TerminalStep | None) -> str:
        name = self.label(y, path, "a step label")
        if name in scope.labels:
            self.expected(y, path, "a label not used by an earlier step")
        scope.labels[name] = step  # type: ignore[assignment]  # restart labels map to None
        return name

    def earlier(self, y: _Y, path: str, scope: _StepScope, *, commands: tuple[str, ...] | None = None) -> str:
        name = self.label(y, path, "a step label")
        step = scope.labels.get(name)
        if step is None or (commands and step.command not in commands):
            candidates = [k for k, s in scope.labels.items() if s is not None and (not commands or s.command in commands)]
            kinds = f"{'/'.join(commands)} " if commands else ""
            self.expected(y, path, f"the label of an earlier {kinds}step ({', '.join(candidates) or 'none'})")
        return name

    def terminal_step(self, command: str, params: _Y, path: str, scope: _StepScope) -> TerminalStep:
        allowed, required = TERMINAL_COMMANDS[command]
        e = self.mapping(params, path, allowed=allowed, required=required, what=f"a {command} step")
        kw: dict[str, Any] = {}
        for k, item in e.items():
            p = _join(path, k)
            if k == "amount":
                kw["amount_minor"] = self.money(item, p)
            elif k == "tip":
                kw["tip_minor"] = self.money(item, p)
            elif k == "intent":
                kw[k] = self.label(item, p, "an intent name")
            elif k == "card":
                alias = self.label(item, p, "a card alias")
                if alias not in scope.cards:
                    self.expected(item, p, f"a card alias of the host registry ({', '.join(sorted(scope.cards)) or 'none defined'})")
                kw[k] = alias
            elif k == "original":
                kw[k] = self.earlier(item, p, scope, commands=ORIGINAL_KINDS[command])
            elif k == "retry_of":
                kw[k] = self.earlier(item, p, scope, commands=(command,))
            elif k == "operator":
                kw[k] = self.digits(item, p, 3, "a 3-digit operator id like '001'")
            elif k == "entry":
                kw[k] = self.choice(item, p, ENTRY_MODES)
            elif k == "terminal_fault":
                kw[k] = self.choice(item, p, tuple(TERMINAL_FAULTS))
        label = None
        if "label" in e:
            label = self.label(e["label"], _join(path, "label"), "a step label")
            if label in scope.labels:
                self.expected(e["label"], _join(path, "label"), "a label not used by an earlier step")
        step = TerminalStep(command=command, line=params.line, label=label, **kw)
        if label is not None:
            scope.labels[label] = step
        if step.intent:
            scope.intents.add(step.intent)
        return step

    # ---------------------------------------------------------------- variants

    def variant(self, y: _Y, path: str, *, fix: bool, base: _StepScope) -> tuple[Variant, _StepScope | None]:
        """The run's settings, and the scope of its own steps when it replaces them."""
        e = self.mapping(y, path, allowed=MAPPING_KEYS["fix" if fix else "broken"], required=("description",) if fix else (),
                         what="the fix" if fix else "the flawed run's settings")
        kw: dict[str, Any] = {}
        if "toggles" in e:
            kw["toggles"] = self.settings(e["toggles"], _join(path, "toggles"), TOGGLES, "fix toggles")
        if "terminal_settings" in e:
            kw["terminal_settings"] = self.settings(e["terminal_settings"], _join(path, "terminal_settings"),
                                                    TERMINAL_SETTINGS, "terminal settings")
        if "host_settings" in e:
            kw["host_settings"] = self.settings(e["host_settings"], _join(path, "host_settings"), HOST_SETTINGS,
                                                "host settings")
        if "description" in e:
            kw["description"] = self.text(e["description"], _join(path, "description"))
        if "host_registry" in e:
            kw["host_registry"] = self.registry(e["host_registry"], _join(path, "host_registry"),
                                                known_cards=base.cards)
        scope = None
        if "steps" in e:
            registry: Registry = kw.get("host_registry", Registry())
            scope_base = _StepScope(cards=base.cards | set(registry.cards), fault_ids=set(base.fault_ids))
            kw["steps"], scope = self.steps(e["steps"], _join(path, "steps"), scope_base)
        return Variant(**kw), scope

    def check_variants_differ(self, y: _Y, broken: Variant, fix: Variant) -> None:
        for name in ("toggles", "terminal_settings", "host_settings"):
            broken_values, fix_values = getattr(broken, name), getattr(fix, name)
            for key, value in broken_values.items():
                if name == "toggles" and key not in fix_values:
                    self.fail(y, f"fix.toggles.{key}", f"missing, the flawed run sets {key}: the fix must set it back")
                if key in fix_values and fix_values[key] == value:
                    self.fail(y, f"fix.{name}.{key}", "expected a value other than the flawed run's, found the same")
        differs = any(broken.toggles.get(k) != v for k, v in fix.toggles.items()) \
            or any(broken.terminal_settings.get(k) != v for k, v in fix.terminal_settings.items()) \
            or any(broken.host_settings.get(k) != v for k, v in fix.host_settings.items()) \
            or bool(fix.host_registry) or fix.steps is not None
        if not differs:
            self.fail(y, "fix", "expected toggles, settings, host_registry or steps that make the fixed run differ "
                                "from the flawed one, found none")

    # ---------------------------------------------------------------- expectations

    def expectations(self, y: _Y, broken_scope: _StepScope, fixed_scope: _StepScope) -> Expectations:
        e = self.mapping(y, "expect", allowed=("broken", "fixed"), required=("broken", "fixed"),
                         what="the expected outcome of both runs")
        return Expectations(broken=self.run_expectation(e["broken"], "expect.broken", broken_scope, broken=True),
                            fixed=self.run_expectation(e["fixed"], "expect.fixed", fixed_scope, broken=False))

    def run_expectation(self, y: _Y, path: str, scope: _StepScope, *, broken: bool) -> RunExpectation:
        allowed = {"invariants_hold", *CHECK_KEYS} | ({"symptom", "invariants_broken"} if broken else {"unclaimed"})
        e = self.mapping(y, path, allowed=allowed, required=("symptom",) if broken else ("invariants_hold",),
                         what="the flawed run" if broken else "the fixed run")
        symptom = self.text(e["symptom"], _join(path, "symptom")) if "symptom" in e else None
        findings: dict[str, str] = {}
        broken_ids = self.invariants(e["invariants_broken"], _join(path, "invariants_broken"), scope,
                                     findings=findings) if "invariants_broken" in e else ()
        hold_ids = self.invariants(e["invariants_hold"], _join(path, "invariants_hold"), scope) \
            if "invariants_hold" in e else ()
        if not broken and not hold_ids:
            self.expected(e["invariants_hold"], _join(path, "invariants_hold"), "at least one invariant")
        for i, g in enumerate(hold_ids):
            if g in broken_ids:
                self.fail(e["invariants_hold"], f"{path}.invariants_hold[{i}]",
                          f"expected an invariant not listed in invariants_broken, found {g}")
        check = self.check({k: v for k, v in e.items() if k in CHECK_KEYS}, path, scope)
        if broken and not broken_ids and not check:
            self.fail(y, _join(path, "invariants_broken"),
                      "missing, the flawed run must show its symptom: an invariant that breaks or a check "
                      f"({', '.join(sorted(CHECK_KEYS))})")
        unclaimed: dict[str, str] = {}
        if "unclaimed" in e:
            up = _join(path, "unclaimed")
            for g, reason in self.free_mapping(e["unclaimed"], up, "a mapping of invariant id to the reason").items():
                key_y = _Y(g, self.key_line(e["unclaimed"], g), g)
                self.choice(key_y, _join(up, g), INVARIANT_IDS)
                if g in hold_ids:
                    self.fail(key_y, _join(up, g), f"expected an invariant not claimed in invariants_hold, found {g}")
                unclaimed[g] = self.text(reason, _join(up, g), what="the reason the run does not claim it")
        return RunExpectation(symptom=symptom, invariants_broken=broken_ids, invariants_hold=hold_ids, check=check,
                              line=y.line, findings_expected=_frozen(findings), unclaimed=_frozen(unclaimed))

    def invariants(self, y: _Y, path: str, scope: _StepScope, *,
                   findings: dict[str, str] | None = None) -> tuple[str, ...]:
        """Invariant ids; where ``findings`` is given (a flawed run's ``invariants_broken``), an item may
        be ``{id: G4, finding: "batch number not advanced*"}``: the break the file means."""
        def one(it: _Y, p: str) -> str:
            if findings is None or it.key_lines is None:
                return self.choice(it, p, INVARIANT_IDS)
            e = self.mapping(it, p, allowed=MAPPING_KEYS["invariant_finding"], required=("id", "finding"),
                             what="an invariant and the finding expected")
            g = self.choice(e["id"], _join(p, "id"), INVARIANT_IDS)
            findings[g] = self.text(e["finding"], _join(p, "finding"), what="a finding's text or pattern")
            return g

        ids = self.unique(y, path, self.str_or_list(y, path, one))
        if "G7" in ids and not scope.has_crash:
            i = ids.index("G7")
            item = y.value[i] if isinstance(y.value, list) else y
            self.expected(item, f"{path}[{i}]", "G7 only in a run with a crash_at step (it compares with the "
                                                "uninterrupted run)")
        return ids

    def check(self, e: dict[str, _Y], path: str, scope: _StepScope) -> Check:
        kw: dict[str, Any] = {}
        for k, item in e.items():
            p = _join(path, k)
            if k == "outcomes":
                kw[k] = tuple(self.outcome(it, f"{p}[{i}]", scope)
                              for i, it in enumerate(self.seq(item, p, what="a list of outcomes")))
            elif k in ("messages_present", "messages_missing", "messages_in_order"):
                patterns = tuple(self.pattern(it, f"{p}[{i}]", scope, count_allowed=k == "messages_present")
                                 for i, it in enumerate(self.seq(item, p, what="a list of message patterns")))
                if k == "messages_in_order" and len(patterns) < 2:
                    self.expected(item, p, "at least two messages in order")
                kw[k] = patterns
            elif k == "codes_seen":
                kw[k] = tuple(self.code_seen(it, f"{p}[{i}]")
                              for i, it in enumerate(self.seq(item, p, what="a list of response codes")))
            elif k == "ledger":
                kw[k] = tuple(self.row_check(it, f"{p}[{i}]", scope)
                              for i, it in enumerate(self.seq(item, p, what="a list of ledger checks")))
            elif k == "terminal":
                kw[k] = self.settings(item, p, TERMINAL_CHECKS, "a terminal state check")
            elif k == "host_net":
                nets = {}
                for intent, value in self.free_mapping(item, p, "a mapping of intent to net amount").items():
                    ip = _join(p, intent)
                    if intent not in scope.intents:
                        self.fail(_Y(intent, self.key_line(item, intent), intent), ip,
                                  f"expected an intent used by a step of this run ({', '.join(sorted(scope.intents)) or 'none'}), found {intent}")
                    nets[intent] = self.money(value, ip, zero=True)
                kw["host_net_minor"] = _frozen(nets)
        return Check(**kw)

    def step_ref(self, y: _Y, path: str, scope: _StepScope) -> str:
        name = self.label(y, path, "a step label")
        if scope.labels.get(name) is None:
            labels = [k for k, s in scope.labels.items() if s is not None]
            self.expected(y, path, f"the label of a terminal step of this run ({', '.join(labels) or 'none'})")
        return name

    def outcome(self, y: _Y, path: str, scope: _StepScope) -> OutcomeCheck:
        e = self.mapping(y, path, allowed=MAPPING_KEYS["outcome"], required=("step", "outcome"),
                         what="an outcome")
        return OutcomeCheck(step=self.step_ref(e["step"], _join(path, "step"), scope),
                            outcome=self.str_or_list(e["outcome"], _join(path, "outcome"),
                                                     lambda it, p: self.choice(it, p, tuple(OUTCOMES))),
                            rc=self.code(e["rc"], _join(path, "rc")) if "rc" in e else None,
                            family=self.family(e["family"], _join(path, "family"), self.families)
                            if "family" in e else None, line=y.line)

    def pattern(self, y: _Y, path: str, scope: _StepScope, *, count_allowed: bool) -> MessagePattern:
        if y.is_scalar:
            return MessagePattern(mti=self.mti(y, path), fields=_frozen(), stan_of=None, during=None, count=None,
                                  family=None, line=y.line)
        allowed = tuple(k for k in MAPPING_KEYS["pattern"] if count_allowed or k != "count")
        e = self.mapping(y, path, allowed=allowed, required=("mti",), what="a message pattern")
        fields_: dict[str, str] = {}
        if "fields" in e:
            for name, value in self.free_mapping(e["fields"], _join(path, "fields"), "a mapping of field to value").items():
                fp = _join(_join(path, "fields"), name)
                number = self.field_name(_Y(name, self.key_line(e["fields"], name), name), fp)
                fields_[number] = self.text(value, fp, what="a field value or pattern")
        return MessagePattern(mti=self.mti(e["mti"], _join(path, "mti")), fields=_frozen(fields_),
                              stan_of=self.step_ref(e["stan_of"], _join(path, "stan_of"), scope)
                              if "stan_of" in e else None,
                              during=self.step_ref(e["during"], _join(path, "during"), scope) if "during" in e else None,
                              count=self.integer(e["count"], _join(path, "count"), minimum=1) if "count" in e else None,
                              family=self.family(e["family"], _join(path, "family"), self.families)
                              if "family" in e else None, line=y.line)

    def code_seen(self, y: _Y, path: str) -> CodeSeen:
        if y.is_scalar:
            return CodeSeen(code=self.code(y, path), family=None, line=y.line)
        e = self.mapping(y, path, allowed=MAPPING_KEYS["code_seen"], required=("code",), what="a response code")
        return CodeSeen(code=self.code(e["code"], _join(path, "code")),
                        family=self.family(e["family"], _join(path, "family"), self.families)
                        if "family" in e else None, line=y.line)

    def row_check(self, y: _Y, path: str, scope: _StepScope) -> RowCheck:
        e = self.mapping(y, path, allowed=MAPPING_KEYS["row_check"], required=("table",),
                         what="a ledger check")
        table = self.choice(e["table"], _join(path, "table"), tuple(LEDGER_TABLES))
        columns = LEDGER_TABLES[table]
        where: dict[str, Any] = {}
        if "where" in e:
            wp = _join(path, "where")
            entries = self.mapping(e["where"], wp, allowed=columns | WHERE_REFERENCES, what=f"a {table} row")
            for k, item in entries.items():
                p = _join(wp, k)
                if k == "step":
                    where[k] = self.step_ref(item, p, scope)
                elif k == "intent":
                    name = self.label(item, p, "an intent name")
                    if name not in scope.intents:
                        self.expected(item, p, f"an intent used by a step of this run ({', '.join(sorted(scope.intents)) or 'none'})")
                    where[k] = name
                elif k.endswith("_minor"):
                    self.fail(item, p, f"expected the column without _minor and a decimal string, like "
                                       f"{k[:-6]}: '12.34'")
                elif item.value is None or isinstance(item.value, bool):
                    where[k] = item.value
                elif k == "value_date":
                    where[k] = self.day(item, p).isoformat()
                else:
                    where[k] = self.text(item, p, what="a column value")
        sums: dict[str, int] = {}
        if "sum" in e:
            sp = _join(path, "sum")
            money_columns = {c[:-6] for c in columns if c.endswith("_minor")}
            for k, item in self.mapping(e["sum"], sp, allowed=money_columns, what=f"sums of {table} money columns").items():
                sums[f"{k}_minor"] = self.money(item, _join(sp, k), zero=True)
        if "count" not in e and not sums:
            self.fail(y, _join(path, "count"), "missing, a ledger check needs a count or a sum")
        return RowCheck(table=table, where=_frozen(where),
                        count=self.integer(e["count"], _join(path, "count"), minimum=0) if "count" in e else None,
                        sums_minor=_frozen(sums), line=y.line)


# ============================================================================ entry points


def parse_scenario(text: str, *, name: str, directory: Path | None = None) -> Scenario:
    """Validate one scenario given as text.

    Args:
        text: the YAML document.
        name: the file name used in errors and checked against ``id`` (``"C07.yaml"``).
        directory: where the file lives (a ``profile`` file is looked for there).

    Raises:
        ScenarioError: naming the file, line and key of the first problem.
    """
    return _Parser(name, directory).scenario(_compose(text, name))


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate one scenario file.

    Raises:
        ScenarioError: the file is malformed (file, line and key named).
        OSError: the file cannot be read.
    """
    path = Path(path)
    return parse_scenario(path.read_text(encoding="utf-8"), name=path.name, directory=path.parent)


def load_files(paths: Iterable[str | Path]) -> list[Scenario]:
    """Load and validate scenario files given together (a team's directory): each file on its own,
    then each id once and every ``merged_into`` among them.

    Returns:
        The scenarios sorted by id.

    Raises:
        ScenarioError: the first problem found.
        OSError: a file cannot be read.
    """
    scenarios: dict[str, Scenario] = {}
    for path in paths:
        s = load_scenario(path)
        if s.id in scenarios:
            raise ScenarioError(f"expected each scenario id once, found {s.id} also in {scenarios[s.id].file}",
                                file=s.file, line=1, key="id")
        scenarios[s.id] = s
    for s in scenarios.values():
        if s.status == "merged" and s.merged_into not in scenarios:
            raise ScenarioError(f"expected {s.merged_into}.yaml among the files given, found no such file",
                                file=s.file, line=1, key="merged_into")
    return sorted(scenarios.values(), key=lambda s: s.id)


def load_all(directory: str | Path) -> list[Scenario]:
    """Load every ``*.yaml`` file of ``directory`` and check them against each other.

    Besides each file's own checks: every cause C01–C42 is covered exactly once (by its own runnable
    or outside file, or by the ``merges`` of another file whose stub says ``merged_into`` it).

    Returns:
        The scenarios sorted by id.

    Raises:
        ScenarioError: the first problem found.
    """
    directory = Path(directory)
    scenarios = [load_scenario(p) for p in sorted(directory.glob("*.yaml"))]
    by_id = {s.id: s for s in scenarios}
    covered: dict[str, Scenario] = {}
    for s in scenarios:
        for cause in s.covers:
            if cause in covered:
                other = covered[cause]
                raise ScenarioError(f"expected each cause covered once, found {cause} also covered by {other.file}",
                                    file=s.file, line=1, key="merges" if cause != s.id else "id")
            covered[cause] = s
    for s in scenarios:
        if s.status == "merged":
            target = by_id.get(s.merged_into or "")
            if target is None or s.id not in {m.id for m in target.merges}:
                raise ScenarioError(f"expected {s.merged_into}.yaml to list {s.id} under merges, "
                                    f"found {'no such file' if target is None else 'no such merge'}",
                                    file=s.file, line=1, key="merged_into")
        for m in s.merges:
            stub = by_id.get(m.id)
            if stub is not None and stub.merged_into != s.id:
                raise ScenarioError(f"expected {m.id}.yaml to be a merged_into: {s.id} stub, found status {stub.status}",
                                    file=s.file, line=1, key="merges")
    missing = [c for c in CAUSE_IDS if c not in covered]
    if missing:
        raise ScenarioError(f"expected a file (or a merge) for every cause, found none for {', '.join(missing)}",
                            file=directory.name or str(directory), line=1, key=None)
    return sorted(scenarios, key=lambda s: s.id)


#: Where the matrix lives in a source checkout.
SCENARIO_DIR = Path(__file__).parent / "scenarios"

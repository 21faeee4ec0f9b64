"""The scenario files' vocabularies, each defined once: statuses, ids, step types and their
parameters, settings tables with their value kinds, fault actions, ledger columns, and the keys of every
mapping a file holds (the loader and the JSON Schema both read them)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from specs.transactions import KINDS as TRANSACTION_KINDS

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

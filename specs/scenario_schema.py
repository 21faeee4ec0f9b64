"""The scenario file format as JSON Schema (draft 2020-12), for editor completion and checks in CI.

Built from the vocabularies of :mod:`specs.scenario` (statuses and their keys, step types, settings
tables and their value kinds, fault actions and their parameters, the keys of every mapping), so the
schema and the loader cannot drift apart: a key the loader accepts is in the schema, a key it refuses
is not.  The loader stays the judge of what the schema cannot say (a label used before it is defined,
a fix that changes nothing, a G7 without a crash step); the schema catches what an editor can show
while the file is typed.

``pos-terminal scenario schema`` prints it, and the package ships it as ``specs/scenario.schema.json``
(kept equal by a test); point an editor at it, e.g. with the YAML language server's first line
``# yaml-language-server: $schema=scenario.schema.json``.

>>> schema = json_schema()
>>> schema["$schema"], sorted(schema["$defs"]["step"]["oneOf"][0]["enum"])[:3]
('https://json-schema.org/draft/2020-12/schema', ['adjust', 'balance', 'completion'])
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from specs import scenario as s
from specs import vocabulary

SCHEMA_ID = "https://pos-harness.invalid/scenario.schema.json"

# YAML reads an unquoted 00 or 0200 as a number; the loader reads such values from the source text, so
# the schema takes both a string and a whole number wherever digits are meant.
_DIGITS: dict[str, Any] = {"type": ["string", "integer"]}
_CODE: dict[str, Any] = {"type": ["string", "integer"], "description": "a response code such as '00' or 'A0'"}
_MONEY: dict[str, Any] = {"type": ["string", "number"], "pattern": r"^\d+(\.\d{1,2})?$", "minimum": 0,
                          "description": "a decimal string with at most two places, like '12.34'"}
_SIGNED_MONEY: dict[str, Any] = {"type": ["string", "number"], "pattern": r"^[+-]?\d+(\.\d{1,2})?$"}
_TIME: dict[str, Any] = {"type": "string", "pattern": r"^\d{1,2}:\d{2}(:\d{2})?$", "description": "a time like '23:00'"}
_DATE: dict[str, Any] = {"type": "string", "format": "date"}
_TEXT: dict[str, Any] = {"type": "string", "minLength": 1}
_LABEL: dict[str, Any] = {"type": "string", "pattern": r"^[a-z][a-z0-9_]{0,39}$"}
_FIELD: dict[str, Any] = {"type": ["string", "integer"], "description": "a field number 2-128 or a CUP sub-field like 60.3"}


def _one_or_many(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"anyOf": [dict(item), {"type": "array", "items": dict(item), "minItems": 1}]}


def _enum(values: Iterable[Any]) -> dict[str, Any]:
    return {"enum": list(values)}


def _digits_enum(values: Iterable[str]) -> dict[str, Any]:
    """Codes as the file may write them: quoted, or unquoted when YAML would read a number."""
    out: list[Any] = []
    for v in values:
        out.append(v)
        if v.isdigit():
            out.append(int(v))
    return {"enum": list(dict.fromkeys(out))}


def _object(properties: Mapping[str, Any], *, keys: Iterable[str] | None = None, required: Iterable[str] = (),
            description: str | None = None) -> dict[str, Any]:
    """A mapping with exactly ``keys`` (default: those of ``properties``); unknown keys refused."""
    names = list(keys) if keys is not None else list(properties)
    missing = [k for k in names if k not in properties]
    if missing:  # a vocabulary key the schema has no value shape for: this module is behind specs.scenario
        raise AssertionError(f"no schema for key(s) {', '.join(missing)}")
    out: dict[str, Any] = {"type": "object", "properties": {k: properties[k] for k in names},
                           "additionalProperties": False}
    if required:
        out["required"] = list(required)
    if description:
        out["description"] = description
    return out


def _value_kind(kind: str) -> dict[str, Any]:
    """The schema of one value kind of the settings tables and fault parameters."""
    simple: dict[str, dict[str, Any]] = {
        "bool": {"type": "boolean"},
        "codes": _one_or_many(_CODE),
        "money": _MONEY,
        "money0": _MONEY,
        "signed_money": _SIGNED_MONEY,
        "posnum": {"type": "number", "exclusiveMinimum": 0},
        "number0": {"type": "number", "minimum": 0},
        "int0": {"type": "integer", "minimum": 0},
        "int1": {"type": "integer", "minimum": 1},
        "int": {"type": "integer"},
        "nonzero_int": {"type": "integer", "not": {"const": 0}},
        "code": _CODE,
        "reversal_rc": _digits_enum(("25", "12", "00")),
        "maintenance_rc": _digits_enum(("91", "96")),
        "maintenance_mode": _enum(("refuse", "rc")),
        "processing_requirement": _digits_enum(tuple("012345678")),
        "cup_unbalanced_mode": _enum(("flag", "rc95")),
        "fee_date_basis": _enum(("transaction", "settlement")),
        "key_mode": _digits_enum(("001", "003", "004")),
        "settlement_state": _enum(("idle", "pending")),
        "digits6": {**_DIGITS, "description": "6 digits like '310000'"},
        "tid": {"type": ["string", "integer"], "description": "a TID of 8 characters like '10000001'"},
        "mid": {"type": ["string", "integer"], "description": "a MID of 15 characters like '123456789012345'"},
        "text": _TEXT,
        "str_list": _one_or_many(_TEXT),
        "date_list": {"type": "array", "items": _DATE},
        "time": _TIME,
        "field_list": _one_or_many(_FIELD),
        "fee_schedule": {"type": "array", "items": {"$ref": "#/$defs/fee_rule"}},
        "required_fields": {"type": "object", "additionalProperties": _one_or_many(_FIELD),
                            "description": "MTI -> field numbers a request must carry"},
        "operators": {"type": "object", "additionalProperties": _enum(vocabulary.OPERATOR_ROLES),
                      "description": "3-digit operator id -> role"},
    }
    if kind not in simple:
        raise AssertionError(f"no schema for value kind {kind}")
    return simple[kind]


def _settings(table: Mapping[str, str], description: str) -> dict[str, Any]:
    return _object({k: _value_kind(v) for k, v in table.items()}, description=description)


def _action(kind: str) -> dict[str, Any]:
    params, required = s.ACTION_PARAMS[kind]
    properties = {"type": {"const": kind}, **{k: _value_kind(v) for k, v in params.items()}}
    return _object(properties, required=("type", *sorted(required)))


def _steps() -> dict[str, Any]:
    def command(name: str) -> dict[str, Any]:
        allowed, required = s.TERMINAL_COMMANDS[name]
        shapes = {"amount": _MONEY, "tip": _MONEY, "intent": _LABEL, "card": _LABEL, "original": _LABEL,
                  "retry_of": _LABEL, "label": _LABEL, "operator": {**_DIGITS, "description": "a 3-digit operator id"},
                  "entry": _enum(s.ENTRY_MODES), "terminal_fault": _enum(s.TERMINAL_FAULTS)}
        return {"anyOf": [{"type": "null"}, _object(shapes, keys=sorted(allowed), required=sorted(required))]}

    keyed: dict[str, dict[str, Any]] = {name: command(name) for name in s.TERMINAL_COMMANDS}
    keys = s.MAPPING_KEYS
    keyed.update({
        "clock": _object({"set": {"type": "string"}, "advance_seconds": {"type": "integer", "minimum": 1}},
                         keys=keys["clock"]),
        "crash_at": _object({"point": _enum(vocabulary.CRASH_POINTS), "then": {"$ref": "#/$defs/terminal_step"}},
                            keys=keys["crash_at"], required=("point", "then")),
        "restart": {"anyOf": [{"type": "null"}, _object({"label": _LABEL}, keys=keys["restart"])]},
        "host_fault": _object({"add": {"$ref": "#/$defs/fault"}, "clear": {"type": "string"}}, keys=keys["host_fault"]),
        "host_registry": {"$ref": "#/$defs/registry"},
        "host_settings": {"$ref": "#/$defs/host_settings"},
        "terminal_settings": {"$ref": "#/$defs/terminal_settings"},
        "operator": _object({"note": _TEXT}, keys=keys["operator"], required=("note",)),
        "expect": _object({"runs": _enum(("both", "broken", "fixed")), **_check_properties()},
                          keys=("runs", *sorted(s.CHECK_KEYS))),
    })
    missing = [t for t in s.STEP_TYPES if t not in keyed]
    if missing:
        raise AssertionError(f"no schema for step type(s) {', '.join(missing)}")
    bare = [t for t in s.STEP_TYPES if t in s.TERMINAL_COMMANDS or t == "restart"]
    return {"oneOf": [_enum(bare), *({"type": "object", "properties": {t: keyed[t]}, "required": [t],
                                      "additionalProperties": False} for t in s.STEP_TYPES)]}


def _check_properties() -> dict[str, Any]:
    keys = s.MAPPING_KEYS
    family = _enum(("intl", "cup"))
    pattern = _object({"mti": _DIGITS, "fields": {"type": "object", "additionalProperties": {"type": ["string", "integer"]}},
                       "stan_of": _LABEL, "during": _LABEL, "family": family, "count": {"type": "integer", "minimum": 1}},
                      keys=keys["pattern"], required=("mti",))
    columns = sorted({c for cols in s.LEDGER_TABLES.values() for c in cols} | s.WHERE_REFERENCES)
    return {
        "outcomes": {"type": "array", "items": _object(
            {"step": _LABEL, "outcome": _one_or_many(_enum(s.OUTCOMES)), "rc": _CODE, "family": family},
            keys=keys["outcome"], required=("step", "outcome"))},
        "messages_present": {"type": "array", "items": {"anyOf": [_DIGITS, pattern]}},
        "messages_missing": {"type": "array", "items": {"anyOf": [_DIGITS, pattern]}},
        "messages_in_order": {"type": "array", "items": {"anyOf": [_DIGITS, pattern]}, "minItems": 2},
        "codes_seen": {"type": "array", "items": {"anyOf": [_CODE, _object({"code": _CODE, "family": family},
                                                                            keys=keys["code_seen"],
                                                                            required=("code",))]}},
        "ledger": {"type": "array", "items": _object(
            {"table": _enum(s.LEDGER_TABLES),
             "where": {"type": "object", "propertyNames": _enum(columns)},
             "count": {"type": "integer", "minimum": 0},
             "sum": {"type": "object", "additionalProperties": _MONEY}},
            keys=keys["row_check"], required=("table",))},
        "terminal": _settings(s.TERMINAL_CHECKS, "the terminal's state at the end of the run"),
        "host_net": {"type": "object", "additionalProperties": _MONEY,
                     "description": "intent -> the host's net amount for it"},
    }


def _run_expectation(*, broken: bool) -> dict[str, Any]:
    invariant = _enum(s.INVARIANT_IDS)
    invariants = {"type": "array", "items": invariant, "uniqueItems": True}
    properties: dict[str, Any] = {"invariants_hold": invariants, **_check_properties()}
    if broken:
        with_finding = _object({"id": invariant, "finding": _TEXT}, keys=s.MAPPING_KEYS["invariant_finding"],
                               required=("id", "finding"))
        properties = {"symptom": _TEXT, "invariants_broken": {"type": "array", "items": {
            "anyOf": [invariant, with_finding]}}, **properties}
    else:
        properties["unclaimed"] = {"type": "object", "propertyNames": invariant, "additionalProperties": _TEXT,
                                   "description": "invariants that apply but the run does not claim, and why"}
    return _object(properties, required=("symptom",) if broken else ("invariants_hold",))


def _defs() -> dict[str, Any]:
    keys = s.MAPPING_KEYS
    limits = _object({"daily_amount": _MONEY, "daily_count": {"type": "integer", "minimum": 1}, "per_txn_max": _MONEY},
                     keys=keys["limits"])
    merchant = _object({"name": _TEXT, "status": _enum(s.MERCHANT_STATUSES), "region": _TEXT, "mcc": _DIGITS,
                        "limits": limits, "available_balance": _MONEY, "payout_days": {"type": "integer", "minimum": 0},
                        "payout_hold": {"type": ["string", "null"]}, "bank_account_valid": {"type": "boolean"},
                        "fee_schedule": _value_kind("fee_schedule")}, keys=keys["merchant"])
    terminal = _object({"mid": _value_kind("mid"), "status": _enum(s.TERMINAL_STATUSES), "region": _TEXT,
                        "limits": limits, "batch": _DIGITS}, keys=keys["terminal_entry"])
    card = _object({"seed": {"type": "integer", "minimum": 0}, "scheme": _enum(s.CARD_SCHEMES),
                    "expiry": {**_DIGITS, "description": "YYMM like '2712'"}, "status": _enum(s.CARD_STATUSES),
                    "balance": _MONEY, "pin": {**_DIGITS, "description": "4 to 12 digits"}, "limits": limits},
                   keys=keys["card"])
    when = _object({"mti": _one_or_many(_DIGITS), "processing_code": _one_or_many(_DIGITS),
                    "kind": _one_or_many(_enum(s.FAULT_KINDS)), "tid": _one_or_many(_value_kind("tid")),
                    "mid": _one_or_many(_value_kind("mid")), "card": _one_or_many(_LABEL),
                    "bin": _one_or_many(_DIGITS), "fields": {"type": "object"}, "amount_min": _MONEY,
                    "amount_max": _MONEY, "nth": {"type": "integer", "minimum": 1},
                    "between": {"type": "array", "minItems": 2, "maxItems": 2},
                    "probability": {"type": "number", "minimum": 0, "maximum": 1},
                    "seed": {"type": "integer", "minimum": 0}}, keys=keys["when"])
    variant_shapes = {"toggles": {"$ref": "#/$defs/toggles"}, "terminal_settings": {"$ref": "#/$defs/terminal_settings"},
                      "host_settings": {"$ref": "#/$defs/host_settings"}, "description": _TEXT,
                      "host_registry": {"$ref": "#/$defs/registry"}, "steps": {"$ref": "#/$defs/steps"}}
    return {
        "toggles": _settings(s.TOGGLES, "fix toggles: the terminal's protective behaviours"),
        "terminal_settings": _settings(s.TERMINAL_SETTINGS, "other terminal settings"),
        "host_settings": _settings(s.HOST_SETTINGS, "the stub host's policy"),
        "fee_rule": _object({"effective_from": _DATE, "rate_bps": {"type": "integer", "minimum": 0}, "fixed": _MONEY},
                            keys=keys["fee_rule"], required=("effective_from",)),
        "registry": _object({"merchants": {"type": "object", "additionalProperties": merchant},
                             "terminals": {"type": "object", "additionalProperties": terminal},
                             "cards": {"type": "object", "additionalProperties": card}}, keys=keys["registry"]),
        "action": {"oneOf": [_action(kind) for kind in s.FAULT_ACTIONS]},
        "fault": _object({"id": _LABEL, "when": when, "action": {"$ref": "#/$defs/action"},
                          "times": {"type": "integer", "minimum": 1}}, keys=keys["fault"], required=("action",)),
        "host": _object({"registry": {"$ref": "#/$defs/registry"},
                         "faults": {"type": "array", "items": {"$ref": "#/$defs/fault"}},
                         "settings": {"$ref": "#/$defs/host_settings"}}, keys=keys["host"]),
        "terminal_step": {"oneOf": [o for o in _steps()["oneOf"] if o.get("type") == "object"
                                    and next(iter(o["properties"])) in s.TERMINAL_COMMANDS]
                          + [_enum(s.TERMINAL_COMMANDS)]},
        "step": _steps(),
        "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 1},
        "broken": _object(variant_shapes, keys=keys["broken"]),
        "fix": _object(variant_shapes, keys=keys["fix"], required=("description",)),
        "run_broken": _run_expectation(broken=True),
        "run_fixed": _run_expectation(broken=False),
    }


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (a cause's file, or a team's own: runnable pair or regression)."""
    keys = s.MAPPING_KEYS
    top: dict[str, Any] = {
        "id": {"type": "string", "pattern": s.TEAM_ID.pattern,
               "description": "C01 ... C42 (a cause, in the file of that name) or an id of your own"},
        "title": _TEXT,
        "status": _enum(s.STATUSES),
        "reported_as": _object({"zh": _TEXT, "en": _TEXT}, keys=keys["reported_as"], required=("zh", "en")),
        "reports": _one_or_many(_digits_enum(s.REPORT_IDS)),
        "scope": _one_or_many(_enum(s.SCOPES)),
        "related": _one_or_many(_enum(s.CAUSE_IDS)),
        "reason": _TEXT, "runbook": _TEXT,
        "merged_into": _enum(s.CAUSE_IDS),
        "merges": {"type": "array", "items": _object({"id": _enum(s.CAUSE_IDS), "citation": _TEXT},
                                                     keys=keys["merge"], required=("id", "citation"))},
        "dialects": _one_or_many(_enum(s.DIALECT_FAMILIES)),
        "profile": {**_TEXT, "description": "a host profile: a shipped name or a YAML file beside this one"},
        "host": {"$ref": "#/$defs/host"},
        "terminal": _object({"settings": {"$ref": "#/$defs/terminal_settings"}}, keys=keys["terminal"]),
        "steps": {"$ref": "#/$defs/steps"},
        "broken": {"$ref": "#/$defs/broken"},
        "fix": {"$ref": "#/$defs/fix"},
    }
    variants = []
    for status in s.STATUSES:
        properties = dict(top)
        properties["status"] = {"const": status}
        if status == "runnable":
            properties["expect"] = _object({"broken": {"$ref": "#/$defs/run_broken"},
                                            "fixed": {"$ref": "#/$defs/run_fixed"}}, required=("broken", "fixed"))
        elif status == "regression":
            properties["expect"] = {"$ref": "#/$defs/run_fixed"}
        variant = _object(properties, keys=sorted(s.TOP_KEYS[status]),
                          required=("id", "title", "status", *s.TOP_REQUIRED[status]))
        cause_required = s.CAUSE_REQUIRED[status]
        variant["if"] = {"properties": {"id": _enum(s.CAUSE_IDS)}}
        variant["then"] = {"required": list(cause_required)}
        variants.append(variant)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "pos-harness scenario file", "oneOf": variants, "$defs": _defs()}


def schema_text() -> str:
    """:func:`json_schema` as the text of ``scenario.schema.json``."""
    return json.dumps(json_schema(), indent=1, ensure_ascii=False) + "\n"

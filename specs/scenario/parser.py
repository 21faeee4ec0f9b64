"""The scenario parser (every key checked, references resolved in order) and the entry points
:func:`parse_scenario`, :func:`load_scenario`, :func:`load_files`, :func:`load_all`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, time
from pathlib import Path
from types import MappingProxyType
from typing import Any

from specs.scenario.model import (
    _NO_SELECTOR,
    STEP_TYPES,
    Check,
    ClockStep,
    CodeSeen,
    CrashAt,
    Expectations,
    ExpectStep,
    Fault,
    FaultAction,
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
    _frozen,
)
from specs.scenario.reader import _Y, _compose, _join, _Reader
from specs.scenario.vocabulary import (
    ACTION_PARAMS,
    CARD_SCHEMES,
    CARD_STATUSES,
    CAUSE_IDS,
    DIALECT_FAMILIES,
    ENTRY_MODES,
    FAULT_ACTIONS,
    FAULT_KINDS,
    HOST_SETTINGS,
    INVARIANT_IDS,
    LEDGER_TABLES,
    MAPPING_KEYS,
    MERCHANT_STATUSES,
    ORIGINAL_KINDS,
    OUTCOMES,
    REPORT_IDS,
    SCOPES,
    STATUSES,
    TEAM_ID,
    TERMINAL_CHECKS,
    TERMINAL_COMMANDS,
    TERMINAL_FAULTS,
    TERMINAL_SETTINGS,
    TERMINAL_STATUSES,
    TOGGLES,
    WHERE_REFERENCES,
)
from specs.vocabulary import CRASH_POINTS

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
SCENARIO_DIR = Path(__file__).parent.parent / "scenarios"

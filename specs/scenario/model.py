"""The scenario model: frozen dataclasses for a loaded file (host setup, steps, variants,
expectations) and the small helpers that turn them into control-API bodies."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from specs.cards import seeded_card
from specs.scenario.vocabulary import (
    _MONEY,
    _MONEY0,
    _SIGNED_MONEY_TEXT,
    CAUSE_IDS,
    DIALECT_FAMILIES,
    FILE_PARAM_API_NAMES,
    TERMINAL_COMMANDS,
    TERMINAL_SETTINGS,
    TOGGLES,
)
from specs.vocabulary import SUBFIELDS

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

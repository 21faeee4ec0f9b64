"""The terminal's settings: fix toggles, limits, keys and terminal-side faults.

Every protective behaviour is a named toggle, default on, so that a scenario can run the flawed
terminal real fleets have (``docs/architecture.md``: how to add a terminal setting).  Settings
come from a YAML file (``--config FILE``) and from ``--set name=value`` (repeatable, applied after
the file), and are checked eagerly: an unknown name or a value of the wrong kind is an error that
names the setting and what was expected.

>>> s = load_settings(overrides=["final_reversal_codes=00", "reversal_first=false"])
>>> s.final_reversal_codes, s.reversal_first, s.save_reversal_before_send
(('00',), False, True)
>>> try:
...     load_settings(overrides=["reversal_frist=false"])
... except SettingsError as exc:
...     print(str(exc)[:64])
Unknown setting 'reversal_frist' (from --set), expecting one of:
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from specs.crypto import DEFAULT_TEST_TMK, KEY_BLOCK_LAYOUT, MAC_ALGORITHMS
from specs.vocabulary import CRASH_POINTS, OPERATOR_ROLES

#: The operator of a terminal without an operator table (CUP 63.1 an3).
DEFAULT_OPERATOR = "001"


class SettingsError(ValueError):
    """A setting is unknown or holds a value of the wrong kind.

    Attributes:
        name: the setting's name.
        source: where it came from (the config file path or ``--set``).
    """

    def __init__(self, msg: str, *, name: str, source: str) -> None:
        super().__init__(msg)
        self.name = name
        self.source = source


@dataclass(frozen=True, kw_only=True, slots=True)
class TerminalSettings:
    """Everything an operator or a scenario can set on the emulated terminal."""

    # ---- fix toggles: default on; off reproduces a known flawed terminal -------------------
    #: Store the pending reversal durably *before* the financial request is written (off: after,
    #: the PAX window where a crash leaves an approval the terminal never reverses).
    save_reversal_before_send: bool = True
    #: Send every pending reversal before a new financial message and before settlement.
    reversal_first: bool = True
    #: After an operation that left a reversal pending, send it at once ("at idle").
    reverse_at_idle: bool = True
    #: Reversal answers that clear the pending reversal (["00"] blocks sales on a host answering 25).
    final_reversal_codes: tuple[str, ...] = ("00", "12", "25")
    #: After ``reversal_max_attempts`` refusals, park the reversal for manual follow-up instead of
    #: blocking every sale.
    park_stuck_reversal: bool = True
    #: Deliver every queued advice before the settlement request.
    drain_saf_before_settle: bool = True
    #: After each online transaction, send at most one queued advice.
    trickle_saf: bool = True
    #: Commit the approval to the journal before printing (off: print first; a printer failure then
    #: loses an approval the host has).
    commit_before_print: bool = True
    #: On 77, 22, A0 or 99 and on CUP header 处理要求 3, sign on again at once (and before the next
    #: transaction); before the first transaction of a new business day when the host requires a
    #: daily sign-on; after a sign-on the host declined, before the next transaction.
    auto_signon_on_77: bool = True
    #: Verify the MAC of every answer; an approval whose MAC fails is never committed.
    verify_response_mac: bool = True
    #: On an unbalanced settlement, upload the batch (off: close the batch locally without upload).
    batch_upload_on_unbalanced: bool = True
    #: Refuse new transactions while a settlement is unfinished.
    block_sales_while_settling: bool = True
    #: Refuse new transactions while an approval's receipt never printed (a crash after the journal
    #: commit, a printer failure) until ``reprint`` or ``dismiss-receipt`` (off: the next sale goes
    #: ahead and the cashier, seeing no receipt, may ring it up again).
    block_sales_while_receipt_pending: bool = True
    #: Never send a financial request twice: a 0100/0200 without an answer is reversed (off: it is
    #: sent again once with the same STAN, as buggy terminals do; a host that posted the first
    #: answers 94 and the terminal drops its reversal: C10).
    never_resend_financial: bool = True
    #: Voids, refunds and settlement need an operator whose role in ``operators`` is ``supervisor``;
    #: an operator missing from a non-empty ``operators`` table may do nothing (C14).
    enforce_operator_roles: bool = True

    # ---- limits --------------------------------------------------------------------------------
    #: Settlement waits this many times the response timeout (PAX EDC: +50 %).
    settlement_timeout_factor: float = 1.5
    #: Interim answers (39=09, "request in progress") that restart the response timer while the host
    #: works on a request; further ones are ignored and the timer runs out (then: reversal).
    max_interim_answers: int = 3
    #: Reversal attempts per delivery run; also the refusals after which a reversal is stuck.
    reversal_max_attempts: int = 3
    #: Answers to a reversal that mean "try again later" (not counted as refusals).
    reversal_retry_codes: tuple[str, ...] = ("09", "90", "91", "92", "96", "98")
    #: Attempts per advice (0220, then 0221 repeats) before it is parked for manual follow-up.
    saf_max_attempts: int = 6
    #: Advice answers that complete the advice.
    saf_valid_codes: tuple[str, ...] = ("00",)
    #: Advice answers after which the advice is repeated later; any other answer is a final decline.
    saf_retry_codes: tuple[str, ...] = ("09", "90", "91", "92", "96", "98")
    #: Exponential backoff between repeats (tenacity ``wait_exponential``): first wait, cap.
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 8.0
    #: Maximum journal records in the open batch ("batch full"); 0 = no limit.
    max_tranlog: int = 500
    #: Maximum debit total of the open batch in minor units ("batch amount cap"); 0 = no cap.
    max_batch_amount_minor: int = 0

    # ---- operators and identity on the wire ------------------------------------------------------
    #: Operator id (3 digits, CUP 63.1) -> role (``cashier`` or ``supervisor``).  Empty: no operator
    #: table, every operator may do everything.  A command without ``--operator`` runs as the first
    #: supervisor of the table (the merchant's own login), or as operator 001 without a table.
    operators: dict[str, str] = dataclasses.field(default_factory=dict)
    #: CUP header 软件分版本号 (N6) this terminal's software reports in every message (C07).
    software_version: str = "310000"
    #: CUP sign-on (0800) carries the terminal's device information in field 62 (用法十九, C33).
    send_device_info: bool = True
    #: The acquirer requires a sign-on every business day: with ``auto_signon_on_77`` the terminal signs
    #: on before the first transaction of a later day than its last sign-on.  The terminal also
    #: learns this rule the first time the host answers 22 (POS state differs, sign on again).
    daily_signon: bool = False

    # ---- keys ----------------------------------------------------------------------------------
    #: CUP sign-on 60.3: 001 single-length PIK+MAK, 003 double-length, 004 with TDK (INTL: 003).
    key_mode: str = "003"
    #: Terminal master key, hex (a test key by default).
    tmk: str = DEFAULT_TEST_TMK.hex().upper()
    #: MAC algorithm; empty = the family's default (INTL x9.19, CUP cup-ecb).
    mac_algorithm: str = ""

    # ---- terminal-side faults --------------------------------------------------------------
    #: Die at this crash point like a power cut (one of ``CRASH_POINTS``); empty = never.
    crash_at: str = ""
    #: The receipt printer fails (out of paper) on every print.
    printer_fails: bool = False
    #: The card is pulled after an online approval: the terminal cannot complete (reversal 96).
    card_removed_after_approval: bool = False

    def __post_init__(self) -> None:
        _check(self)
        # A plain dict, sorted, whatever mapping came in (a scenario passes a read-only view).
        object.__setattr__(self, "operators", {str(k): str(v) for k, v in sorted(dict(self.operators).items())})

    def role_of(self, operator: str) -> str | None:
        """The operator's role, or None when the table is not empty and does not list the operator
        (with no table every operator is a supervisor)."""
        if not self.operators:
            return "supervisor"
        return self.operators.get(operator)

    @property
    def default_operator(self) -> str:
        """Who runs a command given without an operator: the table's first supervisor, else 001."""
        return next((op for op, role in self.operators.items() if role == "supervisor"), DEFAULT_OPERATOR)

    @property
    def tmk_bytes(self) -> bytes:
        return bytes.fromhex(self.tmk)


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(TerminalSettings))


def _check(s: TerminalSettings) -> None:
    """Range checks that the types alone do not express."""
    problems = []
    if s.key_mode not in KEY_BLOCK_LAYOUT:
        problems.append(("key_mode", f"{s.key_mode!r}, expecting one of {', '.join(KEY_BLOCK_LAYOUT)}"))
    if len(s.tmk) not in (16, 32, 48) or any(c not in string.hexdigits for c in s.tmk):
        problems.append(("tmk", f"{len(s.tmk)} characters, expecting 16, 32 or 48 hex digits"))
    if s.mac_algorithm and s.mac_algorithm not in MAC_ALGORITHMS:
        problems.append(("mac_algorithm", f"{s.mac_algorithm!r}, expecting one of {', '.join(MAC_ALGORITHMS)}"))
    if s.crash_at and s.crash_at not in CRASH_POINTS:
        problems.append(("crash_at", f"{s.crash_at!r}, expecting one of {', '.join(CRASH_POINTS)}"))
    for name in ("reversal_max_attempts", "saf_max_attempts"):
        if getattr(s, name) < 1:
            problems.append((name, f"{getattr(s, name)}, expecting at least 1"))
    for name in ("max_tranlog", "max_batch_amount_minor", "backoff_initial_seconds", "backoff_max_seconds"):
        if getattr(s, name) < 0:
            problems.append((name, f"{getattr(s, name)}, expecting 0 or more"))
    for operator, role in dict(s.operators).items():
        if not (isinstance(operator, str) and len(operator) == 3 and operator.isdigit()):
            problems.append(("operators", f"keyed by {operator!r}, expecting 3-digit operator ids like '001'"))
        elif role not in OPERATOR_ROLES:
            problems.append(("operators", f"giving operator {operator} the role {role!r}, expecting one of "
                                          f"{', '.join(OPERATOR_ROLES)}"))
    if len(s.software_version) != 6 or not s.software_version.isdigit():
        problems.append(("software_version", f"{s.software_version!r}, expecting 6 digits like '310000'"))
    if s.settlement_timeout_factor <= 0:
        problems.append(("settlement_timeout_factor", f"{s.settlement_timeout_factor}, expecting more than 0"))
    if problems:
        name, what = problems[0]
        raise SettingsError(f"Setting {name} is {what}", name=name, source="settings")


def _response_code(value: Any, *, name: str, source: str) -> str:
    """A response code from YAML/--set: '00' stays '00'; YAML's 0 or 12 (ints) become '00', '12'."""
    if isinstance(value, bool):
        raise SettingsError(f"Setting {name} holds {value!r}, expecting 2-character response codes",
                            name=name, source=source)
    text = f"{value:02d}" if isinstance(value, int) else str(value).strip().strip("'\"")
    if len(text) != 2 or not text.isalnum():
        raise SettingsError(f"Setting {name} holds {text!r}, expecting 2-character response codes such as 00 or A0",
                            name=name, source=source)
    return text.upper()


def _coerce(name: str, value: Any, source: str) -> Any:
    field = next(f for f in fields(TerminalSettings) if f.name == name)
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise SettingsError(f"Setting {name} holds {value!r}, expecting true or false", name=name, source=source)
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise SettingsError(f"Setting {name} holds {value!r}, expecting a whole number", name=name, source=source)
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(str(value))
        except ValueError:
            raise SettingsError(f"Setting {name} holds {value!r}, expecting a number", name=name,
                                source=source) from None
    if kind == "tuple[str, ...]":
        if isinstance(value, str):
            items: Iterable[Any] = [v for v in value.strip().strip("[]").split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = value
        else:
            raise SettingsError(f"Setting {name} holds {value!r}, expecting a list of response codes",
                                name=name, source=source)
        return tuple(_response_code(v, name=name, source=source) for v in items)
    if kind == "dict[str, str]":
        return _operators(value, name=name, source=source)
    if value is None:
        return ""
    if name == "software_version" and isinstance(value, int) and not isinstance(value, bool):
        return f"{value:06d}"  # YAML reads 310000 as a number
    return str(value)


def _operators(value: Any, *, name: str, source: str) -> dict[str, str]:
    """An operator table from YAML (a mapping) or ``--set`` (``001:cashier,099:supervisor``).

    >>> _operators("001:cashier, 099:supervisor", name="operators", source="--set")
    {'001': 'cashier', '099': 'supervisor'}
    """
    if isinstance(value, str):
        pairs = [item.partition(":") for item in value.strip().strip("{}").split(",") if item.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise SettingsError(f"Setting {name} holds {value!r}, expecting id:role pairs such as "
                                "001:cashier,099:supervisor", name=name, source=source)
        value = {k.strip().strip("'\""): v.strip().strip("'\"") for k, _, v in pairs}
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SettingsError(f"Setting {name} holds {value!r}, expecting a mapping of operator id to role",
                            name=name, source=source)
    return {f"{k:03d}" if isinstance(k, int) and not isinstance(k, bool) else str(k): str(v) for k, v in value.items()}


def load_settings(config_path: str | Path | None = None, overrides: Iterable[str] = (),
                  base: TerminalSettings | None = None) -> TerminalSettings:
    """Settings from a YAML file and ``name=value`` overrides, on top of ``base`` (the defaults).

    Args:
        config_path: a YAML mapping of setting names to values, or None.
        overrides: ``name=value`` strings, applied in order after the file.
        base: starting point (default: every setting at its default).

    Returns:
        The settings.

    Raises:
        SettingsError: unreadable file, not a mapping, unknown name, or a value of the wrong kind.
    """
    values: dict[str, Any] = {}
    if config_path is not None:
        source = str(config_path)
        try:
            loaded = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"Config file {source} cannot be read: {exc}", name="", source=source) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise SettingsError(f"Config file {source} holds a {type(loaded).__name__}, expecting a mapping "
                                "of setting names to values", name="", source=source)
        for name, value in loaded.items():
            known = _known(str(name), source)  # before _coerce, which looks the name up
            values[known] = _coerce(known, value, source)
    for item in overrides:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep:
            raise SettingsError(f"--set {item!r} has no '=', expecting name=value", name=name, source="--set")
        given: Any = raw.strip()
        if _kind(_known(name, "--set")) in ("bool", "int", "float"):
            given = yaml.safe_load(raw) if raw.strip() else raw
        values[name] = _coerce(name, given, "--set")
    try:
        return dataclasses.replace(base or TerminalSettings(), **values)
    except SettingsError as exc:
        raise SettingsError(str(exc), name=exc.name, source=str(config_path or "--set")) from None


def _kind(name: str) -> str:
    field = next(f for f in fields(TerminalSettings) if f.name == name)
    return field.type if isinstance(field.type, str) else str(field.type)


def _known(name: str, source: str) -> str:
    if name not in SETTING_NAMES:
        raise SettingsError(f"Unknown setting {name!r} (from {source}), expecting one of: {', '.join(SETTING_NAMES)}",
                            name=name, source=source)
    return name


def describe(settings: TerminalSettings) -> dict[str, Any]:
    """The settings as plain data (for ``status`` and reports); the TMK is never shown."""
    data = {f.name: getattr(settings, f.name) for f in fields(settings)}
    data["operators"] = dict(settings.operators)
    data["tmk"] = f"*({len(settings.tmk)})"
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

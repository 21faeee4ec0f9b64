"""Located YAML: a document composed with the line of every node, and a reader whose every error
names the file, the line and the dotted key (also used by ``specs.profile``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

from specs.scenario.model import FeeRule, ScenarioError, _frozen
from specs.scenario.vocabulary import (
    _BOOL,
    _CODES,
    _INT0,
    _INT1,
    _LABEL,
    _MAX_MINOR,
    _MONEY,
    _MONEY0,
    _MONEY_TEXT,
    _POS_NUMBER,
    _SIGNED_MONEY_TEXT,
    MAPPING_KEYS,
)
from specs.vocabulary import OPERATOR_ROLES, SUBFIELDS

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

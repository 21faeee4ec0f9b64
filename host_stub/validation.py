"""Checking plain dicts (YAML config, control-API bodies) against what a dataclass accepts.

Every error names the bad key, what was found and what was expected, and where (``where`` is the
path of the object, e.g. ``faults[2].when``); the key is also the :attr:`ConfigError.key`
attribute so that the control API can return it as JSON without parsing text.

>>> check_keys({"mti": "0200", "tdi": "x"}, {"mti", "tid"}, where="when")
Traceback (most recent call last):
...
host_stub.validation.ConfigError: Unknown key 'tdi', expecting one of mti, tid: when.tdi
>>> want_int({"n": "3"}, "n", where="when")
Traceback (most recent call last):
...
host_stub.validation.ConfigError: Key 'n' holds '3' (str), expecting an integer: when.n
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from datetime import date, datetime, time
from typing import Any


class ConfigError(ValueError):
    """A configuration or request body is wrong.

    Attributes:
        msg: what was found and what was expected.
        key: the offending key (last path element).
        where: dotted path of the object holding the key.
        path: where the bad value is (``where.key`` unless told, e.g. ``faults[2]`` for a whole item).
    """

    def __init__(self, msg: str, *, key: str, where: str, path: str | None = None) -> None:
        if path is None:
            path = f"{where}.{key}" if where and key else (where or key)
        super().__init__(f"{msg}: {path}")
        self.msg = msg
        self.key = key
        self.where = where
        self.path = path


def key_of(where: str) -> str:
    """The key that holds the object at ``where``: its last path element, without index or type.

    >>> key_of("body.when"), key_of("faults[2]"), key_of("fault.action(delay_response)"), key_of("")
    ('when', 'faults', 'action', '')
    """
    return re.sub(r"[\[(].*$", "", where.rsplit(".", 1)[-1])


def want_object(data: Any, *, where: str, expecting: str = "an object") -> Mapping[str, Any]:
    """``data`` itself, when it is a mapping; else an error naming the key that holds it.

    >>> want_object("0200", where="body.when")
    Traceback (most recent call last):
    ...
    host_stub.validation.ConfigError: Key 'when' holds '0200' (str), expecting an object: body.when
    """
    if not isinstance(data, Mapping):
        key = key_of(where)
        parent = where.rsplit(".", 1)[0] if "." in where else ""
        raise ConfigError(f"Key {key!r} holds {_found(data)}, expecting {expecting}", key=key, where=parent,
                          path=where)
    return data


def check_keys(data: Mapping[str, Any], allowed: Collection[str], *, where: str) -> None:
    """Reject a value that is not an object, and any key not in ``allowed``."""
    want_object(data, where=where)
    for key in data:
        if key not in allowed:
            raise ConfigError(f"Unknown key {key!r}, expecting one of {', '.join(sorted(allowed))}",
                              key=str(key), where=where)


def _found(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


#: The largest integer a body or configuration may hold anywhere (12 digits: field 4's amounts).
MAX_INT = 999_999_999_999


def _shown(value: float) -> str:
    """A bound or value as an error shows it (a huge integer is not printed digit by digit)."""
    if isinstance(value, int):
        return str(value) if abs(value) < 10**20 else f"a {value.bit_length()}-bit integer"
    return f"{value:g}" if not value.is_integer() or abs(value) >= 1e16 else str(int(value))


def _within(key: str, value: float, minimum: float | None, maximum: float, *, where: str) -> None:
    if minimum is not None and value < minimum:
        raise ConfigError(f"Key {key!r} holds {_shown(value)}, expecting at least {_shown(minimum)}", key=key,
                          where=where)
    if value > maximum:
        raise ConfigError(f"Key {key!r} holds {_shown(value)}, expecting at most {_shown(maximum)}", key=key,
                          where=where)


def want_int(data: Mapping[str, Any], key: str, *, where: str, minimum: int | None = None,
             maximum: int = MAX_INT) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"Key {key!r} holds {_found(value)}, expecting an integer", key=key, where=where)
    _within(key, value, minimum, maximum, where=where)
    return value


def want_number(data: Mapping[str, Any], key: str, *, where: str, minimum: float | None = None,
                maximum: float = float(MAX_INT)) -> float:
    """A finite number within bounds (NaN, infinities and 1e300 are refused).

    >>> want_number({"s": 1e300}, "s", where="action", maximum=3600)
    Traceback (most recent call last):
    ...
    host_stub.validation.ConfigError: Key 's' holds 1e+300, expecting at most 3600: action.s
    """
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"Key {key!r} holds {_found(value)}, expecting a number", key=key, where=where)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"Key {key!r} holds {value!r}, expecting a finite number", key=key, where=where)
    _within(key, value, minimum, maximum, where=where)
    return float(value)


def want_bool(data: Mapping[str, Any], key: str, *, where: str) -> bool:
    value = data[key]
    if not isinstance(value, bool):
        raise ConfigError(f"Key {key!r} holds {_found(value)}, expecting true or false", key=key, where=where)
    return value


def want_str(data: Mapping[str, Any], key: str, *, where: str, choices: Collection[str] | None = None,
             digits: int | None = None) -> str:
    value = data[key]
    if isinstance(value, int) and not isinstance(value, bool) and digits is not None:
        value = f"{value:0{digits}d}"  # YAML reads 0200 as an int: accept numbers for digit strings
    if not isinstance(value, str):
        raise ConfigError(f"Key {key!r} holds {_found(value)}, expecting a string", key=key, where=where)
    if choices is not None and value not in choices:
        raise ConfigError(f"Key {key!r} holds {value!r}, expecting one of {', '.join(sorted(choices))}",
                          key=key, where=where)
    if digits is not None and (len(value) != digits or not value.isdigit()):
        raise ConfigError(f"Key {key!r} holds {value!r}, expecting {digits} digits", key=key, where=where)
    return value


def want_str_list(data: Mapping[str, Any], key: str, *, where: str) -> tuple[str, ...]:
    """A string or a list of strings (numbers accepted and turned into strings)."""
    value = data[key]
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ConfigError(f"Key {key!r} holds {_found(item)}, expecting a string or a list of strings",
                              key=key, where=where)
        out.append(str(item))
    return tuple(out)


def want_date(data: Mapping[str, Any], key: str, *, where: str) -> date:
    value = data[key]
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"Key {key!r} holds {value!r}, expecting an ISO date YYYY-MM-DD",
                          key=key, where=where) from None


def want_datetime(data: Mapping[str, Any], key: str, *, where: str) -> datetime:
    value = data[key]
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    try:
        return datetime.fromisoformat(str(value)).replace(tzinfo=None)
    except ValueError:
        raise ConfigError(f"Key {key!r} holds {value!r}, expecting an ISO datetime YYYY-MM-DDTHH:MM[:SS]",
                          key=key, where=where) from None


def want_time(data: Mapping[str, Any], key: str, *, where: str) -> time:
    value = data[key]
    if isinstance(value, int) and not isinstance(value, bool):  # YAML 1.1 reads 23:00 as 1380 (sexagesimal)
        return time(value // 60 % 24, value % 60)
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"Key {key!r} holds {value!r}, expecting a time HH:MM[:SS]", key=key, where=where) from None

"""Deterministic fault injection: a :class:`When` selector plus an action, folded into a :class:`Plan`.

Rules (after Toxiproxy's toxics and pymodbus's manipulator):

1. A fault is attributes only: a frozen :class:`Fault` holding a :class:`When` and one action
   dataclass.  Actions do one thing each: ``apply(plan)`` returns a new plan.  Faults that match a
   request are applied in the order they were added ("faults compose in order").
2. Nothing here does I/O or reads a clock: ``now`` (the business clock) comes in as an argument,
   and the plan comes out as data.  :func:`steps` turns a plan and the answer's bytes into
   :class:`Write` / :class:`Sleep` / :class:`Close` steps that the server executes; whether the
   request is posted at all is :attr:`Plan.process`.
3. Nothing is random unless seeded: ``When(probability=p, seed=s)`` draws from a hash of the seed
   and the occurrence number, so the same run fires on the same messages every time.

Selection.  A fault's :class:`When` lists criteria that must all hold for a request (an empty
``When`` matches every request).  Each request meeting the criteria is one *occurrence* of that
fault; ``nth`` picks one occurrence (1-based), ``probability`` thins them out, and ``times``
limits how often the fault fires in total.

``refuse_connect`` is not about requests: a refused connect never reaches the host, so nothing can
be counted, drawn or matched.  It is *active* while it exists and its ``when.between`` window (if
any) covers the business clock (:func:`refuses_connects`); the server stops listening while any is
active and asks :meth:`FaultEngine.next_connect_boundary` when to look again.

The actions (docs/domain.md#fault-primitives; ``type`` is the name used in YAML and the control API):

==================================  ===================================================================
type                                effect
==================================  ===================================================================
drop_response                       posted, no answer (the connection stays open)
close_before_processing             connection closed, nothing posted
close_after_processing              posted, connection closed without an answer
delay_response (seconds)            answer after a delay (this connection only)
interim_09 (count, interval)        ``count`` interim answers with 39=09 before the real one
partial_write (bytes)               the first ``bytes`` of the answer (default half), then close
garbled_frame                       the answer's message bytes inverted (length and TPDU intact)
bad_length_prefix (declared)        the answer's length prefix says ``declared`` (default: too long)
duplicate_response (copies)         the answer written ``1 + copies`` times
respond_rc (rc)                     answer ``rc`` without posting (C05, C11, C15-C20)
omit_fields (fields)                response without these fields, e.g. 41 (C41)
stan_offset (offset)                response STAN shifted (C41)
corrupt_mac                         response field 64 wrong (C08)
rotate_keys                         the terminal's working keys stop being valid (C03, C08)
header_processing_requirement (v)   CUP header 处理要求 of the answer set to ``v`` (C07, C09, C33)
totals_delta (debit_count, ...)     the host's totals differ by this much (C22)
drop_advice_posting                 advice answered 00 but not posted (C13)
upload_interrupt (after)            connection closed at the 0320 after ``after`` answered ones (C23)
maintenance_window (mode, rc)       ``refuse``: each connection accepted, then closed unread (accept-then-close,
                                    the terminal has already sent: close_immediately); ``rc``: answer 91/96
                                    (C03, C28).  A host that is down is ``refuse_connect``
refuse_connect                      the listening socket closed: connects refused (ECONNREFUSED), nothing
                                    sent, so no reversal owed; ``when`` may hold only ``between`` (C03, C06)
reversal_rc_for_unknown_original    answer for a reversal whose original is unknown (C40)
payout_delay (days)                 payout value date later by ``days`` business days (C25)
payout_hold (reason)                payout created held (C11, C36)
payout_failure (reason)             payout created failed (C25)
==================================  ===================================================================

>>> engine = FaultEngine()
>>> fault = engine.add(Fault.from_dict({"when": {"mti": "0200", "nth": 2}, "action": {"type": "drop_response"}}))
>>> sale = {"t": "0200", "3": "000000", "4": "000000001000", "11": "000001", "41": "10000001"}
>>> [engine.plan_for(sale, kind="sale", now=NOON).send for _ in range(3)]
[True, False, True]
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import datetime, time, timedelta
from functools import reduce
from typing import Any, ClassVar

from host_stub.host import Directives
from host_stub.validation import (
    ConfigError,
    check_keys,
    want_datetime,
    want_int,
    want_number,
    want_object,
    want_str,
    want_time,
)
from specs import codes
from specs.codec import Message
from specs.dialects import DIALECTS, is_request
from specs.framing import Framing
from specs.masking import mask_pan
from specs.totals import Totals
from specs.transactions import KINDS as TRANSACTION_KINDS
from specs.vocabulary import SUBFIELDS

NOON = datetime(2026, 1, 1, 12, 0)

#: Request MTIs a ``When.mti`` may name: every request MTI some dialect accepts.
REQUEST_MTIS: tuple[str, ...] = tuple(sorted({mti for dialect in DIALECTS.values() for mti in dialect.known_mtis
                                              if is_request(mti)}))
#: Request kinds a ``When.kind`` may name: what :func:`host_stub.host.classify` returns.
REQUEST_KINDS: tuple[str, ...] = (*TRANSACTION_KINDS, "sign_on", "sign_off", "echo", "settlement", "upload",
                                  "reversal", "unsupported")


# ---------------------------------------------------------------------------------------- selection


@dataclass(frozen=True, kw_only=True, slots=True)
class Window:
    """A business-clock window: daily (times of day, may wrap midnight) or absolute (datetimes).

    Start inclusive, end exclusive.

    >>> Window(start=time(23, 55), end=time(0, 5)).contains(datetime(2026, 1, 1, 0, 1))
    True
    """

    start: time | datetime
    end: time | datetime

    def contains(self, now: datetime) -> bool:
        if isinstance(self.start, datetime) and isinstance(self.end, datetime):
            return self.start <= now < self.end
        start, end, t = self.start, self.end, now.time()
        assert isinstance(start, time) and isinstance(end, time)
        return start <= t < end if start <= end else (t >= start or t < end)

    def as_list(self) -> list[str]:
        return [self.start.isoformat(), self.end.isoformat()]

    def next_boundary(self, now: datetime) -> datetime | None:
        """The first instant after ``now`` at which the window starts or ends (None: it never will again).

        >>> Window(start=time(23, 55), end=time(0, 5)).next_boundary(datetime(2026, 1, 1, 23, 55))
        datetime.datetime(2026, 1, 2, 0, 5)
        """
        if isinstance(self.start, datetime) and isinstance(self.end, datetime):
            return min((edge for edge in (self.start, self.end) if edge > now), default=None)
        edges = []
        for edge in (self.start, self.end):
            assert isinstance(edge, time)
            at = datetime.combine(now.date(), edge)
            edges.append(at if at > now else at + timedelta(days=1))
        return min(edges)


@dataclass(frozen=True, kw_only=True, slots=True)
class When:
    """Which requests a fault applies to.  Every criterion given must hold; lists mean "any of".

    Attributes:
        mti, processing_code, kind, tid, mid, pan, bin: request MTI, field 3, transaction kind
            (``sale``, ``reversal``, ``settlement``, ``upload``, ``sign_on`` ...), 41, 42, the PAN
            (2 or track 2) and a PAN prefix.
        fields: field number (or CUP sub-field ``60.1``, ``60.3``, ``61.2``...) -> value(s).
        amount_min, amount_max: field 4 in minor units, inclusive.
        nth: only the nth occurrence (1-based) of a request meeting the criteria above.
        between: a business-clock window; connection-level refusal (``maintenance_window`` with
            ``mode: refuse``) uses only this and probability, ``refuse_connect`` only this.
        probability, seed: fire on a seeded, reproducible fraction of occurrences.
    """

    mti: tuple[str, ...] = ()
    processing_code: tuple[str, ...] = ()
    kind: tuple[str, ...] = ()
    tid: tuple[str, ...] = ()
    mid: tuple[str, ...] = ()
    pan: tuple[str, ...] = ()
    bin: tuple[str, ...] = ()
    fields: tuple[tuple[str, tuple[str, ...]], ...] = ()
    amount_min: int | None = None
    amount_max: int | None = None
    nth: int | None = None
    between: Window | None = None
    probability: float | None = None
    seed: int = 0

    @property
    def message_level(self) -> bool:
        """True when a criterion needs the request (so it cannot decide at connect time)."""
        return bool(self.mti or self.processing_code or self.kind or self.tid or self.mid or self.pan or self.bin
                    or self.fields or self.amount_min is not None or self.amount_max is not None
                    or self.nth is not None)

    def matches(self, request: Message, *, kind: str, now: datetime) -> bool:
        """The static criteria (not ``nth`` or ``probability``, which depend on the occurrence)."""
        pan = request.get("2") or request.get("35", "").split("=")[0]
        amount = int(request["4"]) if request.get("4", "").isdigit() else None
        checks = (
            (self.mti, request.get("t")), (self.processing_code, request.get("3")), (self.kind, kind),
            (self.tid, request.get("41")), (self.mid, request.get("42")), (self.pan, pan),
        )
        if any(wanted and value not in wanted for wanted, value in checks):
            return False
        if self.bin and not any(pan.startswith(prefix) for prefix in self.bin):
            return False
        for name, wanted in self.fields:
            if _field_value(request, name) not in wanted:
                return False
        if self.amount_min is not None and (amount is None or amount < self.amount_min):
            return False
        if self.amount_max is not None and (amount is None or amount > self.amount_max):
            return False
        return self.between is None or self.between.contains(now)

    def admits(self, occurrence: int) -> bool:
        """Whether the ``occurrence``-th matching request passes ``nth`` and the seeded draw."""
        if self.nth is not None and occurrence != self.nth:
            return False
        return self.probability is None or _draw(self.seed, occurrence) < self.probability

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("mti", "processing_code", "kind", "tid", "mid", "pan", "bin"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        if self.fields:
            out["fields"] = {k: list(v) for k, v in self.fields}
        for name in ("amount_min", "amount_max", "nth", "probability"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.probability is not None:
            out["seed"] = self.seed
        if self.between is not None:
            out["between"] = self.between.as_list()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, where: str = "when") -> When:
        """Read a selector, refusing every criterion that could never match a request.

        Raises:
            ConfigError: naming the key, what it holds and what it must hold (an MTI the host
                knows, a 6-digit processing code, a kind the host classifies, an 8-character TID,
                a 15-character MID, strings for field values, ``amount_min <= amount_max``, a
                window that is not empty ...).
        """
        data = {} if data is None else want_object(data, where=where)
        check_keys(data, {f.name for f in fields(cls)}, where=where)
        kwargs: dict[str, Any] = {}
        for name, check in _CRITERIA.items():
            if name in data:
                kwargs[name] = _criterion(data, name, check, where=where)
        if "fields" in data:
            spot = f"{where}.fields"
            check_keys(data["fields"], _field_names(), where=spot)
            kwargs["fields"] = tuple((str(k), _criterion(data["fields"], k, _field_value_check, where=spot))
                                     for k in data["fields"])
        for name in ("amount_min", "amount_max", "seed"):
            if name in data:
                kwargs[name] = want_int(data, name, where=where, minimum=0)
        if "amount_min" in kwargs and "amount_max" in kwargs and kwargs["amount_min"] > kwargs["amount_max"]:
            raise ConfigError(f"Key 'amount_max' holds {kwargs['amount_max']}, expecting at least amount_min "
                              f"({kwargs['amount_min']}): no amount could match", key="amount_max", where=where)
        if "nth" in data:
            kwargs["nth"] = want_int(data, "nth", where=where, minimum=1)
        if "probability" in data:
            p = want_number(data, "probability", where=where)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"Key 'probability' holds {p}, expecting 0 to 1", key="probability", where=where)
            kwargs["probability"] = p
        if "between" in data:
            kwargs["between"] = _window(data["between"], where=where)
        return cls(**kwargs)


def _field_names() -> set[str]:
    return {str(n) for n in range(2, 129)} | set(SUBFIELDS)


# Checks of the string criteria: each returns the value (normalised) or what was expected.
_Check = Callable[[Any], str | tuple[None, str]]


def _mti_check(value: Any) -> str | tuple[None, str]:
    expected = f"a request MTI the host knows ({', '.join(REQUEST_MTIS)})"
    if isinstance(value, int) and not isinstance(value, bool):
        mti = f"{value:04d}"  # JSON 200 for 0200; but YAML reads an unquoted 0200 as the octal number 128
        return mti if mti in REQUEST_MTIS else (None, f"{expected}; quote MTIs in YAML (0200 unquoted is 128)")
    return value if isinstance(value, str) and value in REQUEST_MTIS else (None, expected)


def _text_check(length: int | tuple[int, int], what: str, *, digits: bool) -> _Check:
    low, high = (length, length) if isinstance(length, int) else length
    size = f"{low}" if low == high else f"{low}-{high}"
    expected = f"{'a string of ' if not digits else ''}{size} {'digits' if digits else 'characters'} ({what})"

    def check(value: Any) -> str | tuple[None, str]:
        ok = isinstance(value, str) and low <= len(value) <= high and (not digits or _is_digits(value))
        return value if ok else (None, expected + ("; a number is not one (quote it in YAML)"
                                                   if isinstance(value, int) else ""))
    return check


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _kind_check(value: Any) -> str | tuple[None, str]:
    return value if value in REQUEST_KINDS else (None, f"a request kind ({', '.join(REQUEST_KINDS)})")


def _field_value_check(value: Any) -> str | tuple[None, str]:
    return value if isinstance(value, str) else (None, "a string (field values are text, e.g. \"00\")")


#: ``When`` criteria that are strings (or lists of strings, meaning any of), and how each is checked.
_CRITERIA: Mapping[str, _Check] = {
    "mti": _mti_check,
    "processing_code": _text_check(6, "field 3", digits=True),
    "kind": _kind_check,
    "tid": _text_check(8, "field 41", digits=False),
    "mid": _text_check(15, "field 42", digits=False),
    "pan": _text_check((12, 19), "a card number", digits=True),
    "bin": _text_check((1, 19), "a card number prefix", digits=True),
}


def _criterion(data: Mapping[str, Any], key: str, check: _Check, *, where: str) -> tuple[str, ...]:
    """A string criterion: one value or a non-empty list of values (any of), each checked."""
    value = data[key]
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(f"Key {key!r} holds [], expecting a value or a non-empty list (an empty list matches "
                          f"nothing)", key=str(key), where=where)
    out = []
    for item in items:
        checked = check(item)
        if isinstance(checked, tuple):
            shown = repr(mask_pan(str(item))) if key == "pan" else repr(item)  # card data: never in clear
            raise ConfigError(f"Key {key!r} holds {shown} ({type(item).__name__}), expecting {checked[1]}",
                              key=str(key), where=where)
        out.append(checked)
    return tuple(out)


def _field_value(request: Message, name: str) -> str | None:
    if name in SUBFIELDS:
        number, start, end = SUBFIELDS[name]
        value = request.get(number)
        return value[start:end] if value is not None and len(value) >= end else None
    return request.get(name)


def _window(value: Any, *, where: str) -> Window:
    if not (isinstance(value, list) and len(value) == 2):
        raise ConfigError(f"Key 'between' holds {value!r}, expecting [start, end] (times HH:MM or ISO datetimes)",
                          key="between", where=where)
    pair = {"start": value[0], "end": value[1]}
    absolute = any(isinstance(v, datetime) or (isinstance(v, str) and ("T" in v or "-" in v)) for v in value)
    window = (Window(start=want_datetime(pair, "start", where=f"{where}.between"),
                     end=want_datetime(pair, "end", where=f"{where}.between")) if absolute else
              Window(start=want_time(pair, "start", where=f"{where}.between"),
                     end=want_time(pair, "end", where=f"{where}.between")))
    if window.start == window.end or (absolute and window.start > window.end):  # type: ignore[operator]
        raise ConfigError(f"Key 'between' holds {value!r}, an empty window, expecting start before end "
                          f"(start inclusive, end exclusive; a daily window may wrap midnight)",
                          key="between", where=where)
    return window


def _draw(seed: int, occurrence: int) -> float:
    """A reproducible number in [0, 1) for one occurrence (no ``random``: a hash of seed and count)."""
    digest = hashlib.sha256(f"{seed}:{occurrence}".encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# ---------------------------------------------------------------------------------------- plan and steps


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """What to do with one request: whether to post it, what the core is asked, how to answer.

    The default plan processes the request and writes the answer once.
    """

    process: bool = True
    send: bool = True
    close_after: bool = False
    delay_seconds: float = 0.0
    interim_count: int = 0
    interim_interval_seconds: float = 0.0
    partial_bytes: int | None = None
    partial: bool = False
    garble: bool = False
    bad_length: bool = False
    declared_length: int | None = None
    copies: int = 0
    processing_requirement: str | None = None
    directives: Directives = field(default_factory=Directives)

    def directing(self, **changes: Any) -> Plan:
        return replace(self, directives=replace(self.directives, **changes))


#: The plan of a request no fault fires on (plans are frozen: one instance serves them all).
NO_FAULT_PLAN = Plan()


@dataclass(frozen=True, kw_only=True, slots=True)
class Write:
    """Write these bytes to the connection."""

    data: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class Sleep:
    """Wait (this connection only)."""

    seconds: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Close:
    """Close the connection; later steps and requests on it are abandoned."""


Step = Write | Sleep | Close


def steps(plan: Plan, answer: bytes, framing: Framing, *, interim: bytes | None = None) -> list[Step]:
    """The I/O steps that carry out ``plan`` for the framed ``answer``.

    Args:
        plan: the folded plan (``plan.process`` must be True: an unprocessed request only closes).
        answer: the complete framed answer (length prefix, TPDU, header, message).
        framing: the link's framing (where the message starts, how long the prefix is).
        interim: a framed interim answer (39=09) when the plan sends interim answers.

    >>> framing = Framing()
    >>> steps(Plan(delay_seconds=0.5, copies=1), b"\\x00\\x04ABCD", framing)
    [Sleep(seconds=0.5), Write(data=b'\\x00\\x04ABCD'), Write(data=b'\\x00\\x04ABCD')]
    >>> steps(Plan(partial=True), b"\\x00\\x04ABCD", framing)
    [Write(data=b'\\x00\\x04A'), Close()]
    """
    if not plan.process:
        return [Close()]
    out: list[Step] = []
    for _ in range(plan.interim_count if interim is not None else 0):
        out += [Sleep(seconds=plan.interim_interval_seconds), Write(data=interim or b"")]
    if plan.delay_seconds > 0:
        out.append(Sleep(seconds=plan.delay_seconds))
    if not plan.send:
        return out + ([Close()] if plan.close_after else [])
    data = answer
    if plan.garble:
        data = garbled(data, framing)
    if plan.bad_length:
        data = with_length_prefix(data, framing, plan.declared_length)
    if plan.partial:
        cut = plan.partial_bytes if plan.partial_bytes is not None else len(data) // 2
        return out + [Write(data=data[:max(0, min(cut, len(data) - 1))]), Close()]
    out += [Write(data=data)] * (1 + plan.copies)
    if plan.close_after:
        out.append(Close())
    return out


def garbled(frame: bytes, framing: Framing) -> bytes:
    """The frame with every message byte inverted; length prefix, TPDU and header left intact.

    >>> garbled(b"\\x00\\x020\\x01", Framing())
    b'\\x00\\x02\\xcf\\xfe'
    """
    keep = framing.prefix_size + framing.overhead
    return frame[:keep] + bytes(b ^ 0xFF for b in frame[keep:])


def with_length_prefix(frame: bytes, framing: Framing, declared: int | None) -> bytes:
    """The frame with a length prefix that lies: ``declared``, or the largest the prefix can hold.

    >>> with_length_prefix(b"0004ABCD", Framing(length_prefix="ascii4"), None)
    b'9999ABCD'
    """
    body = frame[framing.prefix_size:]
    if framing.length_prefix == "binary2":
        return (0xFFFF if declared is None else declared % 0x10000).to_bytes(2, "big") + body
    return f"{9999 if declared is None else declared % 10000:04d}".encode("ascii") + body


# ---------------------------------------------------------------------------------------- actions


@dataclass(frozen=True, kw_only=True, slots=True)
class DropResponse:
    """Post the request, never answer it; the connection stays open (C01, C13, C23)."""

    type: ClassVar[str] = "drop_response"

    def apply(self, plan: Plan) -> Plan:
        return replace(plan, send=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class CloseBeforeProcessing:
    """Close the connection without posting the request (C01)."""

    type: ClassVar[str] = "close_before_processing"

    def apply(self, plan: Plan) -> Plan:
        return replace(plan, process=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class CloseAfterProcessing:
    """Post the request, then close the connection without an answer (C01)."""

    type: ClassVar[str] = "close_after_processing"

    def apply(self, plan: Plan) -> Plan:
        return replace(plan, send=False, close_after=True)


@dataclass(frozen=True, kw_only=True, slots=True)
class DelayResponse:
    """Answer ``seconds`` late (after posting); only this connection waits (C02, C04)."""

    type: ClassVar[str] = "delay_response"
    seconds: float = 1.0

    def apply(self, plan: Plan) -> Plan:
        return replace(plan, delay_seconds=plan.delay_seconds + self.seconds)


@dataclass(frozen=True, kw_only=True, slots=True)
class Interim09:
    """Send ``count`` interim answers (39=09, "request in progress") every ``interval_seconds`` first (C04)."""

    type: ClassVar[str] = "interim_09"
    count: int = 1
    interval_seconds: float = 0.0

    def apply(self, plan: Plan) -> Plan:
        return replace(plan, interim_count=plan.interim_count + self.count,
                       interim_interval_seconds=self.interval_seconds)


@dataclass(frozen=True, kw_only=True, slots=True)
class PartialWrite:
    """Write only the first ``bytes`` of the answer (default: half), then close (C01, C07)."""

    type: ClassVar[str] = "partial_write"
    bytes: int | None = None

    def apply(self, plan: Plan) -> Plan:
        return replace(plan, partial=True, partial_bytes=self.bytes)


@dataclass(frozen=True, kw_only=True, slots=True)
class GarbledFrame:
    """Answer with the message bytes inverted: a frame that does not decode (C01, C07)."""

    type: ClassVar[str] = "garbled_frame"

    def apply(self, plan: Plan) -> Plan:
        return replace(plan, garble=True)


@dataclass(frozen=True, kw_only=True, slots=True)
class BadLengthPrefix:
    """Answer with a length prefix of ``declared`` (default: the largest the prefix holds) (C07)."""

    type: ClassVar[str] = "bad_length_prefix"
    declared: int | None = None

    def apply(self, plan: Plan) -> Plan:
        return replace(plan, bad_length=True, declared_length=self.declared)


@dataclass(frozen=True, kw_only=True, slots=True)
class DuplicateResponse:
    """Write the answer ``1 + copies`` times (C41-style stray answers)."""

    type: ClassVar[str] = "duplicate_response"
    copies: int = 1

    def apply(self, plan: Plan) -> Plan:
        return replace(plan, copies=plan.copies + self.copies)


@dataclass(frozen=True, kw_only=True, slots=True)
class RespondRc:
    """Answer with ``rc`` and do not post (a decline chosen by rule: C05, C11, C15-C20)."""

    type: ClassVar[str] = "respond_rc"
    rc: str = codes.DO_NOT_HONOR

    def apply(self, plan: Plan) -> Plan:
        return plan.directing(respond_rc=self.rc)


@dataclass(frozen=True, kw_only=True, slots=True)
class OmitFields:
    """Leave these fields out of the answer, e.g. ``["41"]`` (C41)."""

    type: ClassVar[str] = "omit_fields"
    fields: tuple[str, ...] = ("41",)

    def apply(self, plan: Plan) -> Plan:
        return plan.directing(omit_fields=tuple(dict.fromkeys((*plan.directives.omit_fields, *self.fields))))


@dataclass(frozen=True, kw_only=True, slots=True)
class StanOffset:
    """Answer with the STAN shifted by ``offset`` (C41)."""

    type: ClassVar[str] = "stan_offset"
    offset: int = 1

    def apply(self, plan: Plan) -> Plan:
        return plan.directing(stan_offset=plan.directives.stan_offset + self.offset)


@dataclass(frozen=True, kw_only=True, slots=True)
class CorruptMac:
    """Answer with a wrong field 64 (C08)."""

    type: ClassVar[str] = "corrupt_mac"

    def apply(self, plan: Plan) -> Plan:
        return plan.directing(corrupt_mac=True)


@dataclass(frozen=True, kw_only=True, slots=True)
class RotateKeys:
    """The terminal's working keys stop being valid: MACed requests get A0 until a sign-on (C03, C08)."""

    type: ClassVar[str] = "rotate_keys"

    def apply(self, plan: Plan) -> Plan:
        return plan.directing(rotate_keys=True)


@dataclass(frozen=True, kw_only=True, slots=True)
class HeaderProcessingRequirement:
    """Set the CUP header 处理要求 of the answer (3 = sign on again, 1/6 = downloads) (C07, C09, C33)."""

    type: ClassVar[str] = "header_processing_requirement"
    value: str = "3"

    def apply(self, plan: Plan) -> Plan:
        return replace(plan, processing_requirement=self.value)


@dataclass(frozen=True, kw_only=True, slots=True)
class TotalsDelta:
    """The host's settlement totals differ from its books by this much (C22)."""

    type: ClassVar[str] = "totals_delta"
    debit_count: int = 0
    debit_minor: int = 0
    credit_count: int = 0
    credit_minor: int = 0

    def apply(self, plan: Plan) -> Plan:
        old = plan.directives.totals_delta or Totals()
        return plan.directing(totals_delta=Totals(
            debit_count=old.debit_count + self.debit_count, debit_minor=old.debit_minor + self.debit_minor,
            credit_count=old.credit_count + self.credit_count, credit_minor=old.credit_minor + self.credit_minor))


@dataclass(frozen=True, kw_only=True, slots=True)
class DropAdvicePosting:
    """Answer advices 00 without posting them (C13 ``ack_advice_but_drop``)."""

    type: ClassVar[str] = "drop_advice_posting"

    def apply(self, plan: Plan) -> Plan:
        return plan.directing(drop_advice_posting=True)


@dataclass(frozen=True, kw_only=True, slots=True)
class UploadInterrupt:
    """Close the connection at the 0320 that follows ``after`` answered ones; fires once by default (C23)."""

    type: ClassVar[str] = "upload_interrupt"
    after: int = 0

    def apply(self, plan: Plan) -> Plan:
        return replace(plan, process=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class MaintenanceWindow:
    """During ``When.between``: accept connections and close them (``refuse``) or answer ``rc`` 91/96 (C03, C28).

    ``refuse`` is accept-then-close (close_immediately): the terminal has connected and written its
    request before it sees the close, so it owes a reversal.  A host that is down refuses the
    connect itself: that is :class:`RefuseConnect`.
    """

    type: ClassVar[str] = "maintenance_window"
    mode: str = "rc"
    rc: str = codes.ISSUER_INOPERATIVE

    def apply(self, plan: Plan) -> Plan:
        if self.mode == "refuse":
            return replace(plan, process=False)
        return plan.directing(respond_rc=self.rc)


@dataclass(frozen=True, kw_only=True, slots=True)
class ReversalRcForUnknownOriginal:
    """Answer a reversal whose original is unknown with ``rc`` (25, 12 or 00) (C40)."""

    type: ClassVar[str] = "reversal_rc_for_unknown_original"
    rc: str = codes.UNABLE_TO_LOCATE_RECORD

    def apply(self, plan: Plan) -> Plan:
        return plan.directing(reversal_unknown_rc=self.rc)


@dataclass(frozen=True, kw_only=True, slots=True)
class PayoutDelay:
    """A payout created by this request is paid ``days`` business days later (C25)."""

    type: ClassVar[str] = "payout_delay"
    days: int = 1

    def apply(self, plan: Plan) -> Plan:
        return plan.directing(payout_delay_days=plan.directives.payout_delay_days + self.days)


@dataclass(frozen=True, kw_only=True, slots=True)
class PayoutHold:
    """A payout created by this request is held with ``reason`` (C11, C36)."""

    type: ClassVar[str] = "payout_hold"
    reason: str = "risk"

    def apply(self, plan: Plan) -> Plan:
        return plan.directing(payout_hold=self.reason)


@dataclass(frozen=True, kw_only=True, slots=True)
class PayoutFailure:
    """A payout created by this request fails with ``reason`` (C25)."""

    type: ClassVar[str] = "payout_failure"
    reason: str = "bank account invalid"

    def apply(self, plan: Plan) -> Plan:
        return plan.directing(payout_failure=self.reason)


@dataclass(frozen=True, kw_only=True, slots=True)
class RefuseConnect:
    """Refuse TCP connects (listening socket closed) while active; when: between only (C03, C06).

    A host that is down: the terminal's connect fails with ECONNREFUSED, nothing is sent, no reversal
    is owed.  Established connections are kept.  Active while the fault exists and its
    ``when.between`` covers the business clock (:func:`refuses_connects`); the server, not the plan,
    carries it out, so ``apply`` changes nothing (the engine never folds it into a plan).
    """

    type: ClassVar[str] = "refuse_connect"

    def apply(self, plan: Plan) -> Plan:
        return plan


Action = (
    DropResponse | CloseBeforeProcessing | CloseAfterProcessing | DelayResponse | Interim09 | PartialWrite |
    GarbledFrame | BadLengthPrefix | DuplicateResponse | RespondRc | OmitFields | StanOffset | CorruptMac |
    RotateKeys | HeaderProcessingRequirement | TotalsDelta | DropAdvicePosting | UploadInterrupt |
    MaintenanceWindow | ReversalRcForUnknownOriginal | PayoutDelay | PayoutHold | PayoutFailure | RefuseConnect
)

#: Action type name -> class: the registry the YAML config and the control API use.
ACTIONS: Mapping[str, type] = {cls.type: cls for cls in (
    DropResponse, CloseBeforeProcessing, CloseAfterProcessing, DelayResponse, Interim09, PartialWrite, GarbledFrame,
    BadLengthPrefix, DuplicateResponse, RespondRc, OmitFields, StanOffset, CorruptMac, RotateKeys,
    HeaderProcessingRequirement, TotalsDelta, DropAdvicePosting, UploadInterrupt, MaintenanceWindow,
    ReversalRcForUnknownOriginal, PayoutDelay, PayoutHold, PayoutFailure, RefuseConnect)}


@dataclass(frozen=True, kw_only=True, slots=True)
class _Param:
    """How one action parameter is read (``read(data, name, where)``) and its JSON schema."""

    read: Callable[[Mapping[str, Any], str, str], Any]
    schema: Mapping[str, Any]


#: Bounds of fault parameters: a delay of at most an hour, at most this many copies, repeats, days.
MAX_FAULT_SECONDS = 3600.0
MAX_FAULT_COUNT = 1000


def _read_seconds(data: Mapping[str, Any], name: str, where: str) -> float:
    return want_number(data, name, where=where, minimum=0, maximum=MAX_FAULT_SECONDS)


def _read_count(data: Mapping[str, Any], name: str, where: str) -> int:
    return want_int(data, name, where=where, minimum=0, maximum=MAX_FAULT_COUNT)


def _read_optional_count(data: Mapping[str, Any], name: str, where: str) -> int | None:
    return None if data[name] is None else _read_count(data, name, where)


def _read_signed(data: Mapping[str, Any], name: str, where: str) -> int:
    return want_int(data, name, where=where)


def _read_field_numbers(data: Mapping[str, Any], name: str, where: str) -> tuple[str, ...]:
    value = data[name]
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        number = str(item) if isinstance(item, (str, int)) and not isinstance(item, bool) else ""
        if not (_is_digits(number) and number == str(int(number)) and 1 <= int(number) <= 128):
            raise ConfigError(f"Key {name!r} holds {item!r} ({type(item).__name__}), expecting field numbers "
                              f"1-128 (e.g. [\"41\"])", key=name, where=where)
        out.append(number)
    if not out:
        raise ConfigError(f"Key {name!r} holds [], expecting at least one field number", key=name, where=where)
    return tuple(out)


def _read_rc(data: Mapping[str, Any], name: str, where: str) -> str:
    rc = want_str(data, name, where=where)
    if len(rc) != 2 or not rc.isalnum():
        raise ConfigError(f"Key 'rc' holds {rc!r}, expecting a 2-character response code", key=name, where=where)
    return rc


def _read_text(data: Mapping[str, Any], name: str, where: str) -> str:
    return want_str(data, name, where=where)


def _choice(*choices: str) -> _Param:
    return _Param(read=lambda data, name, where: want_str(data, name, where=where, choices=choices),
                  schema={"type": "string", "enum": list(choices)})


_SECONDS = _Param(read=_read_seconds, schema={"type": "number", "minimum": 0})
_COUNT = _Param(read=_read_count, schema={"type": "integer", "minimum": 0})
_OPTIONAL_COUNT = _Param(read=_read_optional_count, schema={"type": "integer", "minimum": 0, "nullable": True})
_SIGNED = _Param(read=_read_signed, schema={"type": "integer"})
_FIELD_NUMBER = {"type": "string", "pattern": "^[1-9][0-9]{0,2}$", "description": "a field number, 1-128"}

#: Every action parameter by name: how it is read and what it accepts (the OpenAPI document shows these).
_PARAMS: Mapping[str, _Param] = {
    "seconds": _SECONDS, "interval_seconds": _SECONDS,
    "count": _COUNT, "copies": _COUNT, "after": _COUNT, "days": _COUNT,
    "bytes": _OPTIONAL_COUNT, "declared": _OPTIONAL_COUNT,
    "offset": _SIGNED, "debit_count": _SIGNED, "debit_minor": _SIGNED, "credit_count": _SIGNED,
    "credit_minor": _SIGNED,
    "fields": _Param(read=_read_field_numbers, schema={"oneOf": [
        _FIELD_NUMBER, {"type": "array", "minItems": 1, "items": _FIELD_NUMBER}]}),
    "rc": _Param(read=_read_rc, schema={"type": "string", "pattern": "^[0-9A-Za-z]{2}$"}),
    "mode": _choice("refuse", "rc"),
    "value": _choice(*"012345678"),
    "reason": _Param(read=_read_text, schema={"type": "string"}),
}

#: Response codes an action's ``rc`` is limited to, where it is (docs/domain.md#fault-primitives).
_RC_CHOICES: Mapping[str, tuple[str, ...]] = {
    "reversal_rc_for_unknown_original": ("00", "12", "25"),
    "maintenance_window": ("91", "96"),
}


#: Actions that limit the rest of their fault: the only ``when`` keys they take, and whether ``times``
#: applies.  ``refuse_connect`` acts on the listening socket: a refused connect is never seen by the
#: host, so no message criterion, occurrence (``nth``), draw (``probability``, ``seed``) or count
#: (``times``) can apply to it, only the business-clock window.
_FAULT_LIMITS: Mapping[str, tuple[frozenset[str], bool]] = {
    "refuse_connect": (frozenset({"between"}), False),
}


def _check_limits(kind: str, data: Mapping[str, Any], *, where: str) -> None:
    """Refuse the ``when`` keys (and ``times``) that cannot apply to an action of ``kind``."""
    limits = _FAULT_LIMITS.get(kind)
    if limits is None:
        return
    allowed, times = limits
    why = "refused connects never reach the host" if kind == "refuse_connect" else "it acts on no request"
    when = data.get("when")
    if isinstance(when, Mapping):
        for key in when:
            if key not in allowed:
                raise ConfigError(f"Key {key!r} cannot apply to {kind} ({why}), expecting only "
                                  f"{', '.join(sorted(allowed))}", key=str(key), where=f"{where}.when")
    if not times and data.get("times") is not None:
        raise ConfigError(f"Key 'times' holds {data['times']!r}, expecting it absent: it cannot apply to "
                          f"{kind} ({why})", key="times", where=where)


def action_from_dict(data: Any, *, where: str = "action") -> Action:
    """Build an action from ``{"type": name, attribute: value, ...}``, naming any bad key.

    Raises:
        ConfigError: ``data`` is not an object with a known ``type``, or a parameter is unknown or
            out of range (the error names it and what it accepts).
    """
    example = f"an object like {{\"type\": \"drop_response\"}} (type one of {', '.join(sorted(ACTIONS))})"
    if isinstance(data, str) and data in ACTIONS:
        example = f"an object like {{\"type\": \"{data}\"}}"
    data = want_object(data, where=where, expecting=example)
    if "type" not in data:
        raise ConfigError(f"Missing key 'type', expecting {example}", key="type", where=where)
    kind = data["type"]
    cls = ACTIONS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError(f"Key 'type' holds {kind!r}, expecting one of {', '.join(sorted(ACTIONS))}",
                          key="type", where=where)
    spot = f"{where}({kind})"
    check_keys(data, {"type", *(f.name for f in fields(cls))}, where=spot)
    kwargs: dict[str, Any] = {}
    for name in data:
        if name == "type":
            continue
        kwargs[name] = _PARAMS[name].read(data, name, spot)
        choices = _RC_CHOICES.get(kind) if name == "rc" else None
        if choices is not None and kwargs[name] not in choices:
            raise ConfigError(f"Key 'rc' holds {kwargs[name]!r}, expecting one of {', '.join(choices)}",
                              key=name, where=spot)
    action: Action = cls(**kwargs)
    return action


def action_schemas() -> dict[str, dict[str, Any]]:
    """The JSON schema of each action type's object, from :data:`ACTIONS` and the parameter table."""
    out: dict[str, dict[str, Any]] = {}
    for kind, cls in sorted(ACTIONS.items()):
        properties: dict[str, Any] = {"type": {"type": "string", "enum": [kind]}}
        for f in fields(cls):
            schema = dict(_PARAMS[f.name].schema)
            if f.name == "rc" and kind in _RC_CHOICES:
                schema = {"type": "string", "enum": list(_RC_CHOICES[kind])}
            default = f.default
            if default is not MISSING:
                schema["default"] = list(default) if isinstance(default, tuple) else default
            properties[f.name] = schema
        out[kind] = {"type": "object", "description": (cls.__doc__ or "").strip().splitlines()[0],
                     "required": ["type"], "properties": properties, "additionalProperties": False}
    return out


def when_schema() -> dict[str, Any]:
    """The JSON schema of a ``when`` selector (its keys, and what each accepts)."""
    def one_or_many(item: dict[str, Any]) -> dict[str, Any]:
        return {"oneOf": [item, {"type": "array", "minItems": 1, "items": item}]}

    field_value = {"type": "string"}
    return {"type": "object", "additionalProperties": False,
            "description": "Every criterion given must hold; a list means any of its values. Empty: every request.",
            "properties": {
                "mti": one_or_many({"type": "string", "enum": list(REQUEST_MTIS)}),
                "processing_code": one_or_many({"type": "string", "pattern": "^[0-9]{6}$"}),
                "kind": one_or_many({"type": "string", "enum": list(REQUEST_KINDS)}),
                "tid": one_or_many({"type": "string", "minLength": 8, "maxLength": 8}),
                "mid": one_or_many({"type": "string", "minLength": 15, "maxLength": 15}),
                "pan": one_or_many({"type": "string", "pattern": "^[0-9]{12,19}$"}),
                "bin": one_or_many({"type": "string", "pattern": "^[0-9]{1,19}$"}),
                "fields": {"type": "object", "description": "field number 2-128 or CUP sub-field "
                                                            f"({', '.join(SUBFIELDS)}) -> value(s)",
                           "additionalProperties": one_or_many(field_value)},
                "amount_min": {"type": "integer", "minimum": 0, "description": "field 4, minor units, inclusive"},
                "amount_max": {"type": "integer", "minimum": 0, "description": "at least amount_min"},
                "nth": {"type": "integer", "minimum": 1},
                "between": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "string"},
                            "description": "[start, end): times HH:MM (daily, may wrap midnight) or ISO datetimes"},
                "probability": {"type": "number", "minimum": 0, "maximum": 1},
                "seed": {"type": "integer", "minimum": 0},
            }}


def action_as_dict(action: Action) -> dict[str, Any]:
    out: dict[str, Any] = {"type": action.type}
    for f in fields(action):
        value = getattr(action, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


# ---------------------------------------------------------------------------------------- faults and engine


@dataclass(frozen=True, kw_only=True, slots=True)
class Fault:
    """One rule: where it applies, what it does, how often it may fire (None: every time)."""

    id: str = ""
    when: When = field(default_factory=When)
    action: Action = field(default_factory=DropResponse)
    times: int | None = None

    def fires_on(self, occurrence: int) -> bool:
        if isinstance(self.action, UploadInterrupt):
            return occurrence == self.action.after + 1 and self.when.admits(occurrence)
        return self.when.admits(occurrence)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "when": self.when.as_dict(), "action": action_as_dict(self.action), "times": self.times}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "fault") -> Fault:
        check_keys(data, {"id", "when", "action", "times"}, where=where)
        if "action" not in data:
            raise ConfigError("Missing key 'action'", key="action", where=where)
        action = action_from_dict(data["action"], where=f"{where}.action")
        _check_limits(action.type, data, where=where)
        when = When.from_dict(data.get("when"), where=f"{where}.when")
        if isinstance(action, UploadInterrupt) and not when.mti:
            when = replace(when, mti=("0320",))
        times = None
        if data.get("times") is not None:
            times = want_int(data, "times", where=where, minimum=1)
        elif isinstance(action, UploadInterrupt):
            times = 1
        fault_id = want_str(data, "id", where=where) if data.get("id") is not None else ""
        return cls(id=fault_id, when=when, action=action, times=times)


@dataclass(kw_only=True, slots=True)
class _Counter:
    occurrences: int = 0
    fired: int = 0


class FaultEngine:
    """The active faults, in order, with their occurrence counters (deterministic, no I/O)."""

    def __init__(self) -> None:
        self._faults: dict[str, Fault] = {}
        self._counters: dict[str, _Counter] = {}
        self._next_id = 1

    def add(self, fault: Fault) -> Fault:
        """Activate a fault; gives it the next id (``f1``, ``f2``...) unless it has one.

        Raises:
            ConfigError: the id is already taken.
        """
        if not fault.id:
            while f"f{self._next_id}" in self._faults:
                self._next_id += 1
            fault = replace(fault, id=f"f{self._next_id}")
            self._next_id += 1
        if fault.id in self._faults:
            raise ConfigError(f"Key 'id' holds {fault.id!r}, which is already in use", key="id", where="fault")
        self._faults[fault.id] = fault
        self._counters[fault.id] = _Counter()
        return fault

    def remove(self, fault_id: str) -> Fault:
        """Deactivate one fault.

        Raises:
            KeyError: no such fault.
        """
        fault = self._faults.pop(fault_id)
        del self._counters[fault_id]
        return fault

    def clear(self) -> None:
        self._faults.clear()
        self._counters.clear()
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._faults)

    def describe(self) -> list[dict[str, Any]]:
        """Every fault with its counters, in order."""
        return [{**f.as_dict(), "occurrences": self._counters[f.id].occurrences, "fired": self._counters[f.id].fired}
                for f in self._faults.values()]

    def plan_for(self, request: Message, *, kind: str, now: datetime) -> Plan:
        """Fold every fault that fires on this request, in order, into one plan."""
        fired: list[Fault] = []
        for fault in self._faults.values():
            if isinstance(fault.action, RefuseConnect):  # carried out by the listening socket, not per request
                continue
            counter = self._counters[fault.id]
            if fault.times is not None and counter.fired >= fault.times:
                continue
            if not fault.when.matches(request, kind=kind, now=now):
                continue
            counter.occurrences += 1
            if fault.fires_on(counter.occurrences):
                counter.fired += 1
                fired.append(fault)
        if not fired:
            return NO_FAULT_PLAN
        plan = reduce(lambda p, f: f.action.apply(p), fired, Plan())
        return plan.directing(fault_ids=tuple(f.id for f in fired))

    def refusing_connects(self, now: datetime) -> tuple[str, ...]:
        """The ids of the ``refuse_connect`` faults active at ``now`` (the host must not listen while any is)."""
        return tuple(f.id for f in self._faults.values() if refuses_connects(f, now))

    def next_connect_boundary(self, now: datetime) -> datetime | None:
        """The first instant after ``now`` at which a ``refuse_connect`` window starts or ends (None: none will)."""
        edges = [f.when.between.next_boundary(now) for f in self._faults.values()
                 if isinstance(f.action, RefuseConnect) and f.when.between is not None]
        return min((edge for edge in edges if edge is not None), default=None)

    def refuses_connection(self, now: datetime) -> str | None:
        """The id of a maintenance fault that closes accepted connections right now (no message criteria), or None.

        This is ``maintenance_window`` with ``mode: refuse`` (accept-then-close); a connect that is
        refused outright is :func:`refuses_connects`.
        """
        for fault in self._faults.values():
            action = fault.action
            if not (isinstance(action, MaintenanceWindow) and action.mode == "refuse") or fault.when.message_level:
                continue
            counter = self._counters[fault.id]
            if fault.times is not None and counter.fired >= fault.times:
                continue
            if fault.when.between is not None and not fault.when.between.contains(now):
                continue
            counter.occurrences += 1
            if fault.when.admits(counter.occurrences):
                counter.fired += 1
                return fault.id
        return None


def refuses_connects(fault: Fault, now: datetime) -> bool:
    """Whether ``fault`` makes the host refuse connects at ``now``: a ``refuse_connect`` whose window
    (if it has one) covers ``now``.  Pure: the rule the server applies.

    >>> down = Fault.from_dict({"when": {"between": ["02:00", "03:00"]}, "action": {"type": "refuse_connect"}})
    >>> refuses_connects(down, NOON.replace(hour=2, minute=30)), refuses_connects(down, NOON)
    (True, False)
    """
    if not isinstance(fault.action, RefuseConnect):
        return False
    return fault.when.between is None or fault.when.between.contains(now)


def load_faults(items: Any, engine: FaultEngine, *, where: str = "faults") -> list[Fault]:
    """Add the faults of a config's ``faults`` list; every item is checked before any is added."""
    if not isinstance(items, list):
        raise ConfigError(f"Found {type(items).__name__}, expecting a list of faults", key="faults", where="")
    faults = [Fault.from_dict(item, where=f"{where}[{i}]") for i, item in enumerate(items)]
    return [engine.add(f) for f in faults]


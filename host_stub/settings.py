"""Host policy switches: acquirer conventions that differ between real hosts (docs/domain.md#fault-primitives, docs/domain.md).

These are *settings*, not faults: they describe how a host behaves all the time (how it answers
a reversal whose original it never saw, how CUP imbalance is signalled, whether unknown terminals
are enrolled on first sight).  Faults (:mod:`host_stub.faults`) are rules that make it misbehave
for selected messages.

>>> s = HostSettings.from_dict({"reversal_unknown_rc": "00", "cutover": "23:00", "cutover_window_seconds": 300})
>>> s.reversal_unknown_rc, s.calendar.cutover
('00', datetime.time(23, 0))
>>> HostSettings.from_dict({"reversal_unknown_rc": "05"})
Traceback (most recent call last):
...
host_stub.validation.ConfigError: Key 'reversal_unknown_rc' holds '05', expecting one of 00, 12, 25: settings.reversal_unknown_rc
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, time
from typing import Any

from host_stub.clock import Calendar
from host_stub.validation import (
    ConfigError,
    check_keys,
    want_bool,
    want_date,
    want_int,
    want_number,
    want_str,
    want_str_list,
    want_time,
)


@dataclass(frozen=True, kw_only=True, slots=True)
class FeeRule:
    """A merchant discount rate in force from ``effective_from`` (docs/domain.md#c34)."""

    effective_from: date
    rate_bps: int = 0
    fixed_minor: int = 0

    def fee(self, amount_minor: int) -> int:
        """Fee for one debit: fixed part plus ``rate_bps`` basis points, rounded half up.

        >>> FeeRule(effective_from=date(2024, 1, 1), rate_bps=60, fixed_minor=1).fee(10_000)
        61
        """
        return self.fixed_minor + (amount_minor * self.rate_bps + 5_000) // 10_000

    def as_dict(self) -> dict[str, Any]:
        return {"effective_from": self.effective_from.isoformat(), "rate_bps": self.rate_bps,
                "fixed_minor": self.fixed_minor}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str) -> FeeRule:
        check_keys(data, {"effective_from", "rate_bps", "fixed_minor"}, where=where)
        if "effective_from" not in data:
            raise ConfigError("Missing key 'effective_from'", key="effective_from", where=where)
        return cls(effective_from=want_date(data, "effective_from", where=where),
                   rate_bps=want_int(data, "rate_bps", where=where, minimum=0) if "rate_bps" in data else 0,
                   fixed_minor=want_int(data, "fixed_minor", where=where, minimum=0) if "fixed_minor" in data else 0)


def fee_rule_at(schedule: tuple[FeeRule, ...], day: date) -> FeeRule | None:
    """The rule in force on ``day``: the latest ``effective_from`` not after it."""
    in_force = [r for r in schedule if r.effective_from <= day]
    return max(in_force, key=lambda r: r.effective_from) if in_force else None


REVERSAL_UNKNOWN_CODES = ("25", "12", "00")
#: Connection settings holding a number of seconds (above 0).
_POSITIVE_SECONDS = ("idle_timeout_seconds", "frame_deadline_seconds", "accept_error_log_seconds")
#: How the fee schedule is applied to a batch's debits: at each transaction's business date (as the
#: published schedule promises) or at the date the batch settled (C34's flawed acquirer).
FEE_DATE_BASES = ("transaction", "settlement")


@dataclass(frozen=True, kw_only=True, slots=True)
class HostSettings:
    """How this host behaves (every field can be set from YAML and with ``PUT /settings``).

    Attributes:
        strict_registry: unknown TID -> 97, unknown MID -> 03, unknown card -> 14.  Off: unknown
            terminals and merchants are enrolled on first sight, unknown cards are accepted.
        strict_batch: CUP financial request whose 60.2 differs from the host's batch -> 77
            (docs/domain.md#dialects-and-framing, C09 ``force_batch``).
        require_daily_signon: financial request from a terminal not signed on this business day -> 22.
        reversal_unknown_rc: answer to a reversal whose original is unknown (C40): 25, 12 or 00.
        late_original_rc: answer to an original that arrives after its reversal (never posted).
        cup_unbalanced_mode: CUP imbalance as 对账应答码 2 in field 48 (``flag``), as ``39=95`` (``rc95``,
            with flag 2 too), or as 对账应答码 3 "对账错" (``error``).
        allowed_regions: merchant/terminal regions allowed to transact (58 otherwise); None for all.
        mac_failure_limit: consecutive MAC failures after which every request gets A0 until sign-on.
        require_mac: a request other than network management (0800/0820) from a terminal holding
            valid working keys must carry field 64: without it, A0 (nothing posted, not counted as a
            MAC failure).  On by default; off: an unsigned request is taken as it is.
        cutover, cutover_window_seconds, holidays: the business calendar (:class:`Calendar`).
        payout_days: T+n business days from batch close to payout value date.
        fee_schedule: merchant discount rates with effective dates (a merchant may have its own).
        fee_date_basis: which date picks the rule of ``fee_schedule`` for a debit: its own business
            date (``transaction``) or the business date its batch settled (``settlement``) (C34).
        min_software_version: CUP header 软件分版本号 (N6) a terminal must run: financial requests
            from an older version are answered 30, and every answer to such a terminal carries
            header 处理要求 6 (TMS download) (C07).  None: no gate.
        required_fields: per request MTI, data elements that must be present (a new rule, C33): a
            request without one is answered 30 with header 处理要求 1 (download parameters).
        idle_timeout_seconds: a connection that sends nothing for this long between frames is closed.
        frame_deadline_seconds: a frame must be complete this long after its first byte arrived, or
            the connection is closed (a peer trickling bytes never holds a connection for long).
        max_connections: connections this host serves at once; one more is accepted and closed at once.
        accept_error_log_seconds: when accepting fails for want of descriptors (EMFILE), or connections
            are over ``max_connections``, at most one log line per this many seconds (the host keeps
            serving and accepts again when it can).
    """

    strict_registry: bool = False
    strict_batch: bool = False
    require_daily_signon: bool = False
    reversal_unknown_rc: str = "25"
    late_original_rc: str = "94"
    cup_unbalanced_mode: str = "flag"
    allowed_regions: tuple[str, ...] | None = None
    mac_failure_limit: int = 3
    require_mac: bool = True
    cutover: time = time(0, 0)
    cutover_window_seconds: int = 0
    holidays: tuple[date, ...] = ()
    payout_days: int = 1
    fee_schedule: tuple[FeeRule, ...] = field(default=())
    fee_date_basis: str = "transaction"
    min_software_version: str | None = None
    required_fields: tuple[tuple[str, tuple[str, ...]], ...] = ()
    idle_timeout_seconds: float = 300.0
    frame_deadline_seconds: float = 10.0
    max_connections: int = 1024
    accept_error_log_seconds: float = 10.0

    def required_for(self, mti: str) -> tuple[str, ...]:
        """Fields ``required_fields`` demands in a request with this MTI (a repeat MTI counts as its original)."""
        for wanted, names in self.required_fields:
            if wanted == mti or (wanted[:3] == mti[:3] and mti[3] == "1" and wanted[3] == "0"):
                return names
        return ()

    @property
    def calendar(self) -> Calendar:
        return Calendar(cutover=self.cutover, cutover_window_seconds=self.cutover_window_seconds,
                        holidays=frozenset(self.holidays))

    def as_dict(self) -> dict[str, Any]:
        return {"strict_registry": self.strict_registry, "strict_batch": self.strict_batch,
                "require_daily_signon": self.require_daily_signon, "reversal_unknown_rc": self.reversal_unknown_rc,
                "late_original_rc": self.late_original_rc, "cup_unbalanced_mode": self.cup_unbalanced_mode,
                "allowed_regions": list(self.allowed_regions) if self.allowed_regions is not None else None,
                "mac_failure_limit": self.mac_failure_limit, "require_mac": self.require_mac, "cutover": self.cutover.strftime("%H:%M:%S"),
                "cutover_window_seconds": self.cutover_window_seconds,
                "holidays": [d.isoformat() for d in self.holidays], "payout_days": self.payout_days,
                "fee_schedule": [r.as_dict() for r in self.fee_schedule], "fee_date_basis": self.fee_date_basis,
                "min_software_version": self.min_software_version,
                "required_fields": {mti: list(names) for mti, names in self.required_fields},
                "idle_timeout_seconds": self.idle_timeout_seconds, "frame_deadline_seconds": self.frame_deadline_seconds,
                "max_connections": self.max_connections, "accept_error_log_seconds": self.accept_error_log_seconds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "settings") -> HostSettings:
        return cls().updated(data, where=where)

    def updated(self, data: Mapping[str, Any], *, where: str = "settings") -> HostSettings:
        """A copy with the keys of ``data`` changed (a partial update, as ``PUT /settings`` takes)."""
        check_keys(data, _FIELDS, where=where)
        changes: dict[str, Any] = {}
        for key in data:
            if key in ("strict_registry", "strict_batch", "require_daily_signon", "require_mac"):
                changes[key] = want_bool(data, key, where=where)
            elif key == "reversal_unknown_rc":
                changes[key] = want_str(data, key, where=where, choices=REVERSAL_UNKNOWN_CODES)
            elif key == "late_original_rc":
                changes[key] = want_str(data, key, where=where)
                if len(changes[key]) != 2:
                    raise ConfigError(f"Key {key!r} holds {changes[key]!r}, expecting a 2-character response code",
                                      key=key, where=where)
            elif key == "cup_unbalanced_mode":
                changes[key] = want_str(data, key, where=where, choices=("flag", "rc95", "error"))
            elif key == "allowed_regions":
                changes[key] = None if data[key] is None else want_str_list(data, key, where=where)
            elif key in _POSITIVE_SECONDS:
                changes[key] = want_number(data, key, where=where)
                if not changes[key] > 0:
                    raise ConfigError(f"Key {key!r} holds {changes[key]!r}, expecting a number of seconds above 0",
                                      key=key, where=where)
            elif key in ("mac_failure_limit", "max_connections"):
                changes[key] = want_int(data, key, where=where, minimum=1)
            elif key in ("cutover_window_seconds", "payout_days"):
                changes[key] = want_int(data, key, where=where, minimum=0)
            elif key == "cutover":
                changes[key] = want_time(data, key, where=where)
            elif key == "holidays":
                if not isinstance(data[key], list):
                    raise ConfigError(f"Key 'holidays' holds {data[key]!r}, expecting a list of ISO dates",
                                      key=key, where=where)
                changes[key] = tuple(want_date({"holidays": d}, "holidays", where=where) for d in data[key])
            elif key == "fee_schedule":
                if not isinstance(data[key], list):
                    raise ConfigError(f"Key 'fee_schedule' holds {data[key]!r}, expecting a list of fee rules",
                                      key=key, where=where)
                changes[key] = tuple(FeeRule.from_dict(r, where=f"{where}.fee_schedule[{i}]")
                                     for i, r in enumerate(data[key]))
            elif key == "fee_date_basis":
                changes[key] = want_str(data, key, where=where, choices=FEE_DATE_BASES)
            elif key == "min_software_version":
                changes[key] = None if data[key] is None else want_str(data, key, where=where, digits=6)
            elif key == "required_fields":
                changes[key] = _required_fields(data[key], where=f"{where}.required_fields")
        return replace(self, **changes)


def _required_fields(value: Any, *, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``{MTI: [field, ...]}`` -> ``(("0800", ("62",)), ...)``; MTIs 4 digits, fields 2-128.

    >>> _required_fields({"0800": ["62"], 200: [63]}, where="settings.required_fields")
    (('0800', ('62',)), ('0200', ('63',)))
    >>> _required_fields({"0800": ["1"]}, where="settings.required_fields")
    Traceback (most recent call last):
    ...
    host_stub.validation.ConfigError: Key '0800' holds '1', expecting data element numbers 2 to 128: settings.required_fields.0800
    """
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ConfigError(f"Found {value!r}, expecting a mapping of MTI to a list of field numbers",
                          key="", where=where)
    out = []
    for raw_mti, names in value.items():
        mti = want_str({"mti": raw_mti}, "mti", where=where, digits=4) if isinstance(raw_mti, int) \
            else str(raw_mti)
        if len(mti) != 4 or not mti.isdigit():
            raise ConfigError(f"Key {raw_mti!r} is not an MTI, expecting 4 digits such as 0800", key=str(raw_mti),
                              where=where)
        fields_ = want_str_list({mti: names}, mti, where=where)
        bad = next((f for f in fields_ if not (f.isdigit() and 2 <= int(f) <= 128)), None)
        if bad is not None:
            raise ConfigError(f"Key {mti!r} holds {bad!r}, expecting data element numbers 2 to 128", key=mti,
                              where=where)
        out.append((mti, tuple(str(int(f)) for f in fields_)))
    return tuple(out)


_FIELDS = frozenset(HostSettings.__dataclass_fields__)

"""Host policy switches: acquirer conventions that differ between real hosts (domain.md §9, §10).

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

from dataclasses import dataclass, field, replace
from datetime import date, time
from typing import Any, Mapping

from host_stub.clock import Calendar
from host_stub.validation import (ConfigError, check_keys, want_bool, want_date, want_int, want_str, want_str_list,
                                  want_time)


@dataclass(frozen=True, kw_only=True, slots=True)
class FeeRule:
    """A merchant discount rate in force from ``effective_from`` (domain.md §C34)."""

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
    def from_dict(cls, data: Mapping[str, Any], *, where: str) -> "FeeRule":
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


@dataclass(frozen=True, kw_only=True, slots=True)
class HostSettings:
    """How this host behaves (every field can be set from YAML and with ``PUT /settings``).

    Attributes:
        strict_registry: unknown TID -> 97, unknown MID -> 03, unknown card -> 14.  Off: unknown
            terminals and merchants are enrolled on first sight, unknown cards are accepted.
        strict_batch: CUP financial request whose 60.2 differs from the host's batch -> 77
            (domain.md §4, C09 ``force_batch``).
        require_daily_signon: financial request from a terminal not signed on this business day -> 22.
        reversal_unknown_rc: answer to a reversal whose original is unknown (C40): 25, 12 or 00.
        late_original_rc: answer to an original that arrives after its reversal (never posted).
        cup_unbalanced_mode: CUP imbalance as 对账应答码 2 in field 48 (``flag``), as ``39=95`` (``rc95``,
            with flag 2 too), or as 对账应答码 3 "对账错" (``error``).
        allowed_regions: merchant/terminal regions allowed to transact (58 otherwise); None for all.
        mac_failure_limit: consecutive MAC failures after which every request gets A0 until sign-on.
        cutover, cutover_window_seconds, holidays: the business calendar (:class:`Calendar`).
        payout_days: T+n business days from batch close to payout value date.
        fee_schedule: merchant discount rates with effective dates (a merchant may have its own).
    """

    strict_registry: bool = False
    strict_batch: bool = False
    require_daily_signon: bool = False
    reversal_unknown_rc: str = "25"
    late_original_rc: str = "94"
    cup_unbalanced_mode: str = "flag"
    allowed_regions: tuple[str, ...] | None = None
    mac_failure_limit: int = 3
    cutover: time = time(0, 0)
    cutover_window_seconds: int = 0
    holidays: tuple[date, ...] = ()
    payout_days: int = 1
    fee_schedule: tuple[FeeRule, ...] = field(default=())

    @property
    def calendar(self) -> Calendar:
        return Calendar(cutover=self.cutover, cutover_window_seconds=self.cutover_window_seconds,
                        holidays=frozenset(self.holidays))

    def as_dict(self) -> dict[str, Any]:
        return {"strict_registry": self.strict_registry, "strict_batch": self.strict_batch,
                "require_daily_signon": self.require_daily_signon, "reversal_unknown_rc": self.reversal_unknown_rc,
                "late_original_rc": self.late_original_rc, "cup_unbalanced_mode": self.cup_unbalanced_mode,
                "allowed_regions": list(self.allowed_regions) if self.allowed_regions is not None else None,
                "mac_failure_limit": self.mac_failure_limit, "cutover": self.cutover.strftime("%H:%M:%S"),
                "cutover_window_seconds": self.cutover_window_seconds,
                "holidays": [d.isoformat() for d in self.holidays], "payout_days": self.payout_days,
                "fee_schedule": [r.as_dict() for r in self.fee_schedule]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "settings") -> "HostSettings":
        return cls().updated(data, where=where)

    def updated(self, data: Mapping[str, Any], *, where: str = "settings") -> "HostSettings":
        """A copy with the keys of ``data`` changed (a partial update, as ``PUT /settings`` takes)."""
        check_keys(data, _FIELDS, where=where)
        changes: dict[str, Any] = {}
        for key in data:
            if key in ("strict_registry", "strict_batch", "require_daily_signon"):
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
            elif key in ("mac_failure_limit",):
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
        return replace(self, **changes)


_FIELDS = frozenset(HostSettings.__dataclass_fields__)

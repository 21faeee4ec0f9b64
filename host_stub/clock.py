"""The host's business clock and business calendar.

:class:`BusinessClock` is real time plus an offset that tests and the control API can move; only the
I/O shell (server, control API) reads it, and the core receives ``now`` as an argument.

:class:`Calendar` is pure: it turns a business-clock instant into the *business date* (which moves
at the cutover, 日切, not at midnight: docs/domain.md#c18, #c26), tells whether an instant lies inside
the cutover window (answer ``90``), and computes payout value dates over a calendar of weekends and
holidays (T+n business days, docs/domain.md#funding-and-payout-ledger).

>>> cal = Calendar(cutover=time(23, 0), cutover_window_seconds=300, holidays=frozenset({date(2024, 5, 1)}))
>>> cal.business_date(datetime(2024, 4, 30, 22, 59)), cal.business_date(datetime(2024, 4, 30, 23, 0))
(datetime.date(2024, 4, 30), datetime.date(2024, 5, 1))
>>> cal.in_cutover_window(datetime(2024, 4, 30, 23, 4, 59)), cal.in_cutover_window(datetime(2024, 4, 30, 23, 5))
(True, False)
>>> cal.value_date(date(2024, 4, 30), days=1)  # 1 May is a holiday
datetime.date(2024, 5, 2)
>>> cal.value_date(date(2024, 5, 3), days=1)  # Friday -> Monday
datetime.date(2024, 5, 6)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

MIDNIGHT = time(0, 0)


#: The range the business clock may be set or advanced to: far enough from datetime's limits that
#: value dates (T+n), cutovers and every terminal's time stay representable.
EARLIEST = datetime(2000, 1, 1)
LATEST = datetime(2999, 12, 31, 23, 59, 59)


def check_within(when: datetime) -> None:
    if not EARLIEST <= when <= LATEST:
        raise ValueError(f"business clock {when.isoformat()} is outside {EARLIEST.isoformat()} .. "
                         f"{LATEST.isoformat()}")


class BusinessClock:
    """Local business time = ``source()`` + offset."""

    def __init__(self, source: Callable[[], datetime] = datetime.now) -> None:
        self._source = source
        self._offset = timedelta()

    def now(self) -> datetime:
        return self._source() + self._offset

    def set(self, when: datetime) -> None:
        """Make ``now()`` read ``when`` at this instant; time keeps running from there.

        Raises:
            ValueError: ``when`` lies outside :data:`EARLIEST` .. :data:`LATEST`.
        """
        check_within(when)
        self._offset = when - self._source()

    def advance(self, seconds: float) -> None:
        """Move the clock by ``seconds`` (negative: back).

        Raises:
            ValueError: the clock would leave :data:`EARLIEST` .. :data:`LATEST` (unchanged).
        """
        try:
            step = timedelta(seconds=seconds)
            target = self.now() + step
        except OverflowError:
            raise ValueError(f"advancing by {seconds:g} s leaves the business clock's range "
                             f"{EARLIEST.isoformat()} .. {LATEST.isoformat()}") from None
        check_within(target)
        self._offset += step

    def reset(self) -> None:
        """Back to real time."""
        self._offset = timedelta()


@dataclass(frozen=True, kw_only=True, slots=True)
class Calendar:
    """Cutover, cutover window and the business-day calendar used for value dates.

    Attributes:
        cutover: local time at which the business date moves to the next day (``00:00``: at midnight).
        cutover_window_seconds: how long after the cutover the host answers ``90``; 0 for never.
        holidays: dates on which no payout is made.
        weekend: ``date.weekday()`` numbers that are not business days (5, 6 = Saturday, Sunday).
    """

    cutover: time = MIDNIGHT
    cutover_window_seconds: int = 0
    holidays: frozenset[date] = frozenset()
    weekend: frozenset[int] = frozenset({5, 6})

    def business_date(self, now: datetime) -> date:
        """The clearing day ``now`` belongs to: after the cutover, tomorrow's."""
        if self.cutover != MIDNIGHT and now.time() >= self.cutover:
            return now.date() + timedelta(days=1)
        return now.date()

    def in_cutover_window(self, now: datetime) -> bool:
        """True during the ``cutover_window_seconds`` that follow the cutover instant."""
        if self.cutover_window_seconds <= 0:
            return False
        elapsed = (now - datetime.combine(now.date(), self.cutover)).total_seconds()
        return 0 <= elapsed < self.cutover_window_seconds

    def is_business_day(self, day: date) -> bool:
        return day.weekday() not in self.weekend and day not in self.holidays

    def value_date(self, business_date: date, *, days: int) -> date:
        """The payout date of a batch closed on ``business_date``: T+``days`` business days.

        T+0 on a non-business day moves to the next business day.
        """
        day = business_date
        remaining = days
        while remaining > 0 or not self.is_business_day(day):
            day += timedelta(days=1)
            if self.is_business_day(day):
                remaining -= 1
        return day

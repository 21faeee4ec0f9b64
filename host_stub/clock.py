"""The host's business clock: real time plus an offset that tests and the control API can move.

Drives fields 12/13/15, and later the cutover window, daily-limit resets and payout value dates.
Only the server reads it; the core receives ``now`` as an argument.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable


class BusinessClock:
    """Local business time = ``source()`` + offset."""

    def __init__(self, source: Callable[[], datetime] = datetime.now) -> None:
        self._source = source
        self._offset = timedelta()

    def now(self) -> datetime:
        return self._source() + self._offset

    def set(self, when: datetime) -> None:
        """Make ``now()`` read ``when`` at this instant; time keeps running from there."""
        self._offset = when - self._source()

    def advance(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)

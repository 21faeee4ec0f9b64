"""Words the terminal, the host and the scenario files share, each defined once here.

* :data:`CRASH_POINTS`: where an armed terminal dies like a power cut (``pos-terminal --crash-at``,
  scenario ``crash_at`` steps); the full story of each point is in ``docs/domain.md`` (crash points).
* :data:`OPERATOR_ROLES`: the roles of a terminal's operator table (CUP 主管 = supervisor).
* :data:`SUBFIELDS`: the CUP sub-fields a fault selector or a message pattern may name (``60.3``), as
  slices of their field.

>>> list(CRASH_POINTS), OPERATOR_ROLES, SUBFIELDS["60.3"]
(['a', 'b', 'c', 'd', 'e', 'f', 'g'], ('cashier', 'supervisor'), ('60', 8, 11))
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

CRASH_POINTS: Mapping[str, str] = MappingProxyType({
    "a": "before the financial request is sent (pending reversal already stored when the fix is on)",
    "b": "after the financial request is sent, before the pending reversal is stored (PAX window)",
    "c": "after the approval is received, before the journal commit",
    "d": "after the journal commit, before the receipt is printed",
    "e": "between the unbalanced 0510 and the batch upload",
    "f": "in the middle of the batch upload (after the first acknowledged 0320)",
    "g": "after the host closed the batch (last 0330/0510), before the local batch close",
})

OPERATOR_ROLES: tuple[str, ...] = ("cashier", "supervisor")

SUBFIELDS: Mapping[str, tuple[str, int, int]] = MappingProxyType({
    "60.1": ("60", 0, 2), "60.2": ("60", 2, 8), "60.3": ("60", 8, 11),
    "61.1": ("61", 0, 6), "61.2": ("61", 6, 12), "61.3": ("61", 12, 16),
})

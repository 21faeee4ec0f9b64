"""Settlement totals: which transactions count, and how each dialect carries the totals.

Terminal and host must count the same way, or every settlement is unbalanced by construction
(domain.md §F10: "make the debit/credit class mapping a dialect parameter used identically by
terminal and host").  Both import this module.

* INTL 0500 field 63 (domain.md §F9): sale count N3 + sale amount N12 + refund count N3 +
  refund amount N12, then 60 zeros (90 characters).
* CUP 0500/0510 field 48 (domain.md §F10): domestic debit amount N12 + debit count N3 + credit
  amount N12 + credit count N3 + 对账应答码 N1, then the same 31 digits for foreign cards.

>>> t = Totals(debit_count=3, debit_minor=6000, credit_count=0, credit_minor=0)
>>> intl_field_63(t)[:30]
'003000000006000000000000000000'
>>> parse_intl_field_63(intl_field_63(t)) == t
True
>>> cup_field_48(t, flag="1")[:31]
'0000000060000030000000000000001'
>>> parse_cup_field_48(cup_field_48(t, flag="2"))
(Totals(debit_count=3, debit_minor=6000, credit_count=0, credit_minor=0), '2')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

#: Transaction kinds and the settlement class they count in; kinds not listed do not count
#: (balance inquiry, pre-auth and its void, and voids, which instead remove their original).
SETTLEMENT_CLASS: dict[str, Literal["debit", "credit"]] = {
    "sale": "debit",
    "completion": "debit",
    "offline_sale": "debit",
    "refund": "credit",
}

#: CUP 对账应答码 values in field 48 of the 0510.
CUP_BALANCED = "1"
CUP_UNBALANCED = "2"
CUP_ERROR = "3"

INTL_FIELD_63_LENGTH = 90
CUP_FIELD_48_LENGTH = 62


@dataclass(frozen=True, kw_only=True, slots=True)
class Totals:
    """Counts and amounts (minor units) of one batch, per settlement class."""

    debit_count: int = 0
    debit_minor: int = 0
    credit_count: int = 0
    credit_minor: int = 0


def totals_of(records: Iterable[tuple[str, int]]) -> Totals:
    """Totals of ``(kind, amount_minor)`` pairs of records that stand (approved, not reversed or voided)."""
    dc = dm = cc = cm = 0
    for kind, amount in records:
        cls = SETTLEMENT_CLASS.get(kind)
        if cls == "debit":
            dc, dm = dc + 1, dm + amount
        elif cls == "credit":
            cc, cm = cc + 1, cm + amount
    return Totals(debit_count=dc, debit_minor=dm, credit_count=cc, credit_minor=cm)


def intl_field_63(t: Totals) -> str:
    return f"{t.debit_count:03d}{t.debit_minor:012d}{t.credit_count:03d}{t.credit_minor:012d}" + "0" * 60


def parse_intl_field_63(value: str) -> Totals:
    """Read INTL 0500 field 63.

    Raises:
        ValueError: naming the length or the non-digit found.
    """
    if len(value) < 30 or not value[:30].isdigit():
        raise ValueError(f"Field 63 totals {value[:30]!r} are not 30 digits (N3 N12 N3 N12)")
    return Totals(debit_count=int(value[0:3]), debit_minor=int(value[3:15]),
                  credit_count=int(value[15:18]), credit_minor=int(value[18:30]))


def cup_field_48(t: Totals, *, flag: str = "0") -> str:
    domestic = f"{t.debit_minor:012d}{t.debit_count:03d}{t.credit_minor:012d}{t.credit_count:03d}{flag}"
    return domestic + "0" * 30 + flag


def parse_cup_field_48(value: str) -> tuple[Totals, str]:
    """Read CUP field 48 (domestic part) and the 对账应答码 at offset 30.

    Raises:
        ValueError: naming the length or the non-digit found.
    """
    if len(value) < 31 or not value[:31].isdigit():
        raise ValueError(f"Field 48 totals {value[:31]!r} are not 31 digits (N12 N3 N12 N3 N1)")
    return (Totals(debit_minor=int(value[0:12]), debit_count=int(value[12:15]),
                   credit_minor=int(value[15:27]), credit_count=int(value[27:30])), value[30])

"""Settlement totals: which transactions count, and how each dialect carries the totals.

Terminal and host must count the same way, or every settlement is unbalanced by construction
(docs/domain.md#f10: "make the debit/credit class mapping a dialect parameter used identically by
terminal and host").  Both import this module.

* INTL 0500 field 63 (docs/domain.md#f9): sale count N3 + sale amount N12 + refund count N3 +
  refund amount N12, then 60 zeros (90 characters).
* CUP 0500/0510 field 48 (docs/domain.md#f10): domestic debit amount N12 + debit count N3 + credit
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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

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


def intl_totals_field(t: Totals, layout: str = "pax90") -> str:
    """INTL 0500 field 63 in a host's layout: ``pax90`` (the 30 digits and 60 zeros, PAX EDC) or
    ``short30`` (the 30 digits alone).

    >>> len(intl_totals_field(Totals(), "pax90")), len(intl_totals_field(Totals(), "short30"))
    (90, 30)
    """
    full = intl_field_63(t)
    return full if layout == "pax90" else full[:30]


def _cup_part(t: Totals, flag: str) -> str:
    return f"{t.debit_minor:012d}{t.debit_count:03d}{t.credit_minor:012d}{t.credit_count:03d}{flag}"


def cup_field_48(t: Totals, *, flag: str = "0", foreign: Totals | None = None, foreign_flag: str = "0") -> str:
    """CUP field 48 totals: domestic part (``t``, ``flag``) then the foreign part, each with its own
    对账应答码 (the foreign one comes from comparing the foreign totals, never from the domestic).

    >>> cup_field_48(Totals(debit_count=1, debit_minor=100), flag="1", foreign_flag="1")[30::31]
    '11'
    """
    return _cup_part(t, flag) + _cup_part(foreign or Totals(), foreign_flag)


def parse_cup_field_48(value: str) -> tuple[Totals, str]:
    """Read CUP field 48 (domestic part) and the 对账应答码 at offset 30.

    Raises:
        ValueError: naming the length or the non-digit found.
    """
    return _parse_cup_part(value[:31], "domestic")


def parse_cup_field_48_foreign(value: str) -> tuple[Totals, str]:
    """Read the foreign part of CUP field 48 (offsets 31-61) and its 对账应答码; zeros and '0' when
    the field stops after the domestic part.

    Raises:
        ValueError: naming the non-digit found.
    """
    part = value[31:62]
    return _parse_cup_part(part, "foreign") if part else (Totals(), "0")


def _parse_cup_part(value: str, which: str) -> tuple[Totals, str]:
    if len(value) < 31 or not value[:31].isdigit():
        raise ValueError(f"Field 48 {which} totals {value[:31]!r} are not 31 digits (N12 N3 N12 N3 N1)")
    return (Totals(debit_minor=int(value[0:12]), debit_count=int(value[12:15]),
                   credit_minor=int(value[15:27]), credit_count=int(value[27:30])), value[30])


# --------------------------------------------------------------------------- batch upload (0320)
#
# INTL (docs/domain.md#f9 step 5): one 0320 per record, processing code = original's with the last
# digit '1', field 60 = original MTI (4) + original STAN (6) + 12 spaces, 62 = original invoice,
# 37/38 = original RRN / approval code; the host answers 0330; then 0500 with 3 = 960000.
#
# CUP (docs/domain.md#f10 step 3): 0320 with 60.3 = 201 and field 48 = count N2 (<= 8) followed by
# count records of 40 digits: card organisation N2 ('00' CUP, '01' foreign) + original STAN N6 +
# PAN N20 (zero-left-padded) + amount N12; the end message is 0320 with 60.3 = 202 (after an
# unbalanced 0510) or 207 (balanced), field 48 = total records uploaded N4.

CUP_UPLOAD_MAX_RECORDS = 8
CUP_UPLOAD_RECORD_LENGTH = 40
CUP_UPLOAD_DATA = "201"
CUP_UPLOAD_END_UNBALANCED = "202"
CUP_UPLOAD_END_BALANCED = "207"


@dataclass(frozen=True, kw_only=True, slots=True)
class UploadRecord:
    """One CUP magstripe upload record (field 48 of a 0320 with 60.3 = 201)."""

    stan: str
    pan: str
    amount_minor: int
    card_org: str = "00"


def intl_upload_processing_code(original: str) -> str:
    """The original processing code with its last digit set to '1' (PAX EDC ``TransUpLoad``).

    >>> intl_upload_processing_code("000000")
    '000001'
    """
    return original[:5] + "1"


def intl_upload_field_60(original_mti: str, original_stan: str) -> str:
    """Field 60 of an INTL 0320.

    >>> intl_upload_field_60("0200", "000123")
    '0200000123            '
    """
    return f"{original_mti}{original_stan}" + " " * 12


def parse_intl_upload_field_60(value: str) -> tuple[str, str]:
    """(original MTI, original STAN) from an INTL 0320 field 60.

    Raises:
        ValueError: not 4 + 6 digits at the start.
    """
    if len(value) < 10 or not value[:10].isdigit():
        raise ValueError(f"Field 60 {value[:10]!r} is not original MTI N4 + original STAN N6")
    return value[:4], value[4:10]


def cup_upload_field_48(records: list[UploadRecord]) -> str:
    """Field 48 of a CUP 0320 with 60.3 = 201.

    >>> cup_upload_field_48([UploadRecord(stan="000002", pan="6229141777631700", amount_minor=1000)])
    '010000000200006229141777631700000000001000'
    """
    if not 1 <= len(records) <= CUP_UPLOAD_MAX_RECORDS:
        raise ValueError(f"{len(records)} upload records, expecting 1 to {CUP_UPLOAD_MAX_RECORDS}")
    return f"{len(records):02d}" + "".join(
        f"{r.card_org}{r.stan}{r.pan.zfill(20)}{r.amount_minor:012d}" for r in records)


def parse_cup_upload_field_48(value: str) -> list[UploadRecord]:
    """Records of a CUP 0320 201 field 48.

    Raises:
        ValueError: count and length disagree, or a non-digit.
    """
    if len(value) < 2 or not value.isdigit():
        raise ValueError(f"Field 48 upload data {value[:12]!r}... is not digits starting with a count N2")
    count = int(value[:2])
    expected = 2 + count * CUP_UPLOAD_RECORD_LENGTH
    if len(value) != expected:
        raise ValueError(f"Field 48 announces {count} records ({expected} digits), holds {len(value)} digits")
    out = []
    for i in range(count):
        rec = value[2 + i * 40: 2 + (i + 1) * 40]
        out.append(UploadRecord(card_org=rec[:2], stan=rec[2:8], pan=rec[8:28].lstrip("0"), amount_minor=int(rec[28:40])))
    return out

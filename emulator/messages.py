"""Request messages a terminal builds, per dialect family (pure functions of the terminal's books).

INTL (domain.md §F1, §F2, §F4, §F9; D-zy and PAX EDC templates):

* sign-on ``0800 70=001``, echo ``0800 70=301``, sign-off ``0800 70=002``; 24 = NII;
* sale ``0200 3=000000`` with 2/14 (manual entry, 22=012), 24, 25=00, 62 = invoice;
* settlement ``0500 3=920000`` with 60 = batch and 63 = totals.

CUP (domain.md §F1, §F2, §F10, §4):

* sign-on ``0800`` 60 = "00" + batch + "003", 63 = operator; echo ``0820`` 60.3 = 301;
* sale ``0200 3=000000`` 25=00, 49=156, 60 = "22" + batch + "000";
* settlement ``0500`` 48 = totals, 49, 60 = "00" + batch + "201", 63 = operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from specs.cards import Card
from specs.codec import Message
from specs.totals import Totals, cup_field_48, intl_field_63


@dataclass(frozen=True, kw_only=True, slots=True)
class Profile:
    """Who this terminal is and which conventions it follows."""

    tid: str = "10000001"
    mid: str = "123456789012345"
    family: str = "intl"
    nii: str = "112"
    currency: str = "156"
    operator: str = "001"


def _base(profile: Profile, mti: str, stan: str, now: datetime) -> Message:
    message: Message = {"t": mti, "11": stan, "12": f"{now:%H%M%S}", "13": f"{now:%m%d}", "41": profile.tid,
                        "42": profile.mid}
    if profile.family == "intl":
        message["24"] = profile.nii
    return message


def network_request(profile: Profile, purpose: str, *, stan: str, batch: str, now: datetime) -> Message:
    """Sign-on, sign-off or echo: ``purpose`` is ``sign_on``, ``sign_off`` or ``echo``."""
    if profile.family == "cup":
        code = {"sign_on": "003", "sign_off": "002", "echo": "301"}[purpose]
        message = _base(profile, "0800" if purpose == "sign_on" else "0820", stan, now)
        message["60"] = "00" + batch + code
        if purpose == "sign_on":
            message["63"] = profile.operator
        return message
    message = _base(profile, "0800", stan, now)
    message["70"] = {"sign_on": "001", "sign_off": "002", "echo": "301"}[purpose]
    return message


def sale_request(profile: Profile, card: Card, *, amount_minor: int, stan: str, invoice: str, batch: str,
                 now: datetime) -> Message:
    message = _base(profile, "0200", stan, now)
    message.update({"2": card.pan, "3": "000000", "4": f"{amount_minor:012d}", "14": card.expiry, "22": "012",
                    "25": "00"})
    if profile.family == "cup":
        message.update({"49": profile.currency, "60": "22" + batch + "000"})
    else:
        message["62"] = invoice
    return message


def settlement_request(profile: Profile, totals: Totals, *, stan: str, batch: str, now: datetime) -> Message:
    message = _base(profile, "0500", stan, now)
    if profile.family == "cup":
        message.update({"48": cup_field_48(totals), "49": profile.currency, "60": "00" + batch + "201",
                        "63": profile.operator})
    else:
        message.update({"3": "920000", "60": batch, "63": intl_field_63(totals)})
    return message

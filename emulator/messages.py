"""Request messages a terminal builds, per dialect family: pure functions of the terminal's books.

The MTI, processing code, CUP 60.1 and field 25 of every transaction come from
:func:`specs.transactions.layout`, the table the host recognises requests with, so the two sides
cannot drift apart.  What this module adds is which data elements each request carries
(docs/domain.md#message-flows, F1-F10 and the wire contract shared with the host):

* network management: INTL ``0800`` 70 = 001 sign-on / 002 sign-off / 301 echo, 24 = NII;
  CUP sign-on ``0800`` 60 = "00" + batch + 001|003|004, 63 = operator, 62 = device information
  (用法十九, when the terminal sends it: :func:`device_info`); CUP sign-off and echo ``0820``
  60.3 = 002 / 301;
* financial requests: 2/14 (manual entry, 22 = 012, or 011 with a PIN in 52), 3, 4, 11, 12, 13,
  25, 41, 42; INTL adds 24 = NII and 62 = invoice; CUP adds 49 = currency,
  60 = 60.1 + batch + "000" + 60.4 read capability + 60.5 IC condition and 63 = operator (63.1);
* references to an original (void, completion void, pre-auth void, completion, refund, adjust):
  37 = original RRN, 38 = original approval code; CUP also 61 = original batch N6 + original STAN
  N6 + original date MMDD N4;
* reversal ``0400``: a copy of the original with MTI 0400, 52 and 64 removed (64 is recomputed at
  send), the same STAN; CUP puts the reversal reason in 39 (98 / 96 / A0 / 06), INTL has no 39;
* advice repeats: MTI last digit 1 (0220 -> 0221), same STAN;
* settlement: INTL ``0500`` 3 = 920000 (960000 after batch upload), 60 = batch, 63 = totals;
  CUP ``0500`` 48 = totals, 60 = "00" + batch + "201", 63 = operator;
* batch upload: INTL ``0320`` per record (3 = original code ending in 1, 60 = original MTI +
  STAN + 12 spaces, 62 = invoice); CUP ``0320`` 60.3 = 201 with up to 8 online sales in 48, and
  one full ``0320`` per refund or offline record (:func:`cup_record_upload`), then the end
  ``0320`` 60.3 = 202 (unbalanced) or 207 (balanced) with 48 = records uploaded, N4.

What differs between hosts of one family (the INTL sign-on form, the totals layout, the batch
field, optional fields per MTI) is asked of the wire profile (:class:`specs.profile.WireProfile`)
the terminal's :class:`Profile` carries.

>>> p = Profile(family="cup")
>>> sale = financial_request(p, "sale", stan="000002", batch="000001", now=datetime(2026, 11, 22, 9, 30),
...                          amount_minor=1234, pan="6229141777631700", expiry="3012", invoice="000001")
>>> sale["t"], sale["3"], sale["25"], sale["60"]
('0200', '000000', '00', '2200000100050')
>>> rev = reversal_request({**sale, "52": "00" * 8, "64": "11" * 8}, "cup", reason="98")
>>> rev["t"], rev["11"], rev["39"], "52" in rev, "64" in rev
('0400', '000002', '98', False, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from specs.codec import Message
from specs.profile import WireProfile, default_profile
from specs.totals import (
    CUP_UPLOAD_DATA,
    CUP_UPLOAD_END_BALANCED,
    CUP_UPLOAD_END_UNBALANCED,
    Totals,
    UploadRecord,
    cup_field_48,
    cup_upload_field_48,
    intl_totals_field,
    intl_upload_field_60,
    intl_upload_processing_code,
)
from specs.transactions import layout

#: The emulated terminal's identity unless told otherwise (``pos-terminal``, the matrix, the plugin).
DEFAULT_TID, DEFAULT_MID, DEFAULT_NII = "10000001", "123456789012345", "112"

@dataclass(frozen=True, kw_only=True, slots=True)
class Profile:
    """Who this terminal is and which conventions it follows."""

    tid: str = DEFAULT_TID
    mid: str = DEFAULT_MID
    family: str = "intl"
    nii: str = DEFAULT_NII
    currency: str = "156"
    operator: str = "001"
    #: CUP 60.4 terminal read capability (5: contact IC and magstripe) and 60.5 IC condition code
    #: (0: no IC fallback) of financial requests.
    read_capability: str = "5"
    ic_condition: str = "0"
    #: The host's wire profile; None: the family's built-in layout.
    wire: WireProfile | None = None

    @property
    def layout(self) -> WireProfile:
        """The wire profile in force (the family's default when none was given)."""
        return self.wire or default_profile("cup" if self.family == "cup" else "intl-bcd")


@dataclass(frozen=True, kw_only=True, slots=True)
class Original:
    """What a request must say about the transaction it refers to (void, refund, completion...)."""

    rrn: str
    auth_code: str
    batch: str
    stan: str
    local_date: str  # MMDD


#: CUP 0800/0820 60.3 network management codes (docs/domain.md#message-flows).
CUP_SIGN_OFF = "002"
CUP_ECHO = "301"
#: INTL field 70 network management codes.
INTL_NMIC = {"sign_on": "001", "sign_off": "002", "echo": "301"}
#: INTL settlement processing codes; 920000 is also the sign-on code of hosts that sign on with
#: field 3 instead of field 70 (profile ``intl_sign_on: "3=920000"``).
INTL_SETTLE_FIRST = "920000"
INTL_SIGN_ON_BY_CODE = "3=920000"
INTL_SETTLE_AFTER_UPLOAD = "960000"


def _base(profile: Profile, mti: str, stan: str, now: datetime) -> Message:
    message: Message = {"t": mti, "11": stan, "12": f"{now:%H%M%S}", "13": f"{now:%m%d}", "41": profile.tid,
                        "42": profile.mid}
    if profile.family == "intl":
        message["24"] = profile.nii
    return message


def _shaped(profile: Profile, message: Message, now: datetime) -> Message:
    """The optional fields the host's profile adds to (or omits from) this MTI."""
    values = {"12": f"{now:%H%M%S}", "13": f"{now:%m%d}", "24": profile.nii, "42": profile.mid,
              "49": profile.currency}
    return profile.layout.shape(message, values)


def device_info(profile: Profile, software_version: str) -> str:
    """CUP 0800 field 62 device information (用法十九), as the hex of its bytes (field 62 is binary).

    The emulator's layout: tag-length-value items in ASCII, ``01`` terminal serial (the TID),
    ``02`` model, ``03`` software version (the header's 软件分版本号).

    >>> bytes.fromhex(device_info(Profile(family="cup"), "310000")).decode("ascii")
    '010810000001020APOSHARNESS0306310000'
    """
    items = (("01", profile.tid), ("02", "POSHARNESS"), ("03", software_version))
    return "".join(tag + f"{len(value):02X}" + value for tag, value in items).encode("ascii").hex().upper()


def network_request(profile: Profile, purpose: str, *, stan: str, batch: str, now: datetime,
                    key_mode: str = "003", operator: str | None = None, device: str | None = None) -> Message:
    """Sign-on, sign-off or echo: ``purpose`` is ``sign_on``, ``sign_off`` or ``echo``.

    CUP sign-on asks for the key layout ``key_mode`` in 60.3 (001, 003 or 004), names the operator in
    63 and, given ``device`` (:func:`device_info`), carries it in 62.
    """
    if profile.family == "cup":
        code = {"sign_on": key_mode, "sign_off": CUP_SIGN_OFF, "echo": CUP_ECHO}[purpose]
        message = _base(profile, "0800" if purpose == "sign_on" else "0820", stan, now)
        message["60"] = "00" + batch + code
        if purpose == "sign_on":
            message["63"] = operator or profile.operator
            if device is not None:
                message["62"] = device
        return _shaped(profile, message, now)
    message = _base(profile, "0800", stan, now)
    if purpose == "sign_on" and profile.layout.intl_sign_on == INTL_SIGN_ON_BY_CODE:
        message["3"] = INTL_SETTLE_FIRST  # hosts that sign on with processing code 920000
    else:
        message["70"] = INTL_NMIC[purpose]
    return _shaped(profile, message, now)


def financial_request(profile: Profile, kind: str, *, stan: str, batch: str, now: datetime,
                      amount_minor: int | None, pan: str, expiry: str, invoice: str | None,
                      original: Original | None = None, pin_block: str | None = None,
                      auth_code: str | None = None, original_amount_minor: int | None = None,
                      operator: str | None = None) -> Message:
    """Any transaction kind of :mod:`specs.transactions` (sale, void, refund, pre-auth, advices...).

    Args:
        kind: the transaction kind (``sale``, ``balance``, ``void``...).
        amount_minor: field 4; None for a balance inquiry.
        pan, expiry: fields 2 and 14.
        invoice: INTL field 62 (CUP carries no invoice).
        original: the referenced transaction (37, 38; CUP 61).
        pin_block: field 52 as hex, when a PIN was entered.
        auth_code: field 38 of an offline sale (the terminal's own approval code).
        original_amount_minor: INTL tip adjust: the amount before the adjust, in field 60.
        operator: CUP 63.1 (default: the profile's operator).
    """
    lay = layout(kind, profile.family)
    message = _base(profile, lay.mti, stan, now)
    message.update({"2": pan, "3": lay.processing_code, "14": expiry, "22": "011" if pin_block else "012",
                    "25": lay.condition})
    if amount_minor is not None:
        message["4"] = f"{amount_minor:012d}"
    if pin_block:
        message["52"] = pin_block
        if profile.family == "cup":
            message["26"] = "12"  # PIN capture: up to 12 digits
            message["53"] = "2600000000000000"  # ANSI X9.8 format (with PAN), double-length key
    if original is not None:
        if original.rrn:
            message["37"] = original.rrn
        if original.auth_code:
            message["38"] = original.auth_code
        if profile.family == "cup":
            message["61"] = original.batch + original.stan + original.local_date
    if auth_code is not None:
        message["38"] = auth_code
    if profile.family == "cup":
        message.update({"49": profile.currency,
                        "60": f"{lay.cup_type}{batch}000{profile.read_capability}{profile.ic_condition}",
                        "63": operator or profile.operator})
    else:
        if invoice is not None:
            message["62"] = invoice
        if original_amount_minor is not None:
            message["60"] = f"{original_amount_minor:012d}"
    return _shaped(profile, message, now)


def reversal_request(original_request: Message, family: str, *, reason: str) -> Message:
    """The 0400 for an original request: same fields and STAN, MTI 0400, no 52 (PIN) and no 64.

    CUP carries the reversal reason in field 39 (98 no answer, 96 approved but not completed,
    A0 approval with a bad MAC, 06 other); INTL has no 39 in the reversal.
    """
    message = {k: v for k, v in original_request.items() if k not in ("52", "64", "39")}
    message["t"] = "0400"
    if family == "cup":
        message["39"] = reason
    return message


def repeat_mti(mti: str) -> str:
    """The repeat (retransmission) MTI of an advice: last digit 1 (0220 -> 0221, 0120 -> 0121)."""
    return mti[:3] + "1"


def settlement_request(profile: Profile, totals: Totals, *, stan: str, batch: str, now: datetime,
                       processing_code: str = INTL_SETTLE_FIRST, operator: str | None = None) -> Message:
    """INTL 0500 (920000, or 960000 after a batch upload) with 63 totals; CUP 0500 with 48 totals
    and 63 = operator."""
    message = _base(profile, "0500", stan, now)
    if profile.family == "cup":
        message.update({"48": cup_field_48(totals), "49": profile.currency, "60": "00" + batch + CUP_UPLOAD_DATA,
                        "63": operator or profile.operator})
    else:
        layout_ = profile.layout
        message.update({"3": processing_code, layout_.batch_field: batch,
                        "63": intl_totals_field(totals, layout_.intl_totals)})
    return _shaped(profile, message, now)


@dataclass(frozen=True, kw_only=True, slots=True)
class UploadItem:
    """One journal record as a batch upload needs it."""

    mti: str
    processing_code: str
    stan: str
    invoice: str
    kind: str
    amount_minor: int
    pan: str
    expiry: str
    rrn: str
    auth_code: str
    local_date: str
    local_time: str
    condition: str


def intl_upload_request(profile: Profile, item: UploadItem, *, stan: str, now: datetime) -> Message:
    """INTL 0320 for one record (docs/domain.md#f9 step 5)."""
    message = _base(profile, "0320", stan, now)
    message.update({"2": item.pan, "3": intl_upload_processing_code(item.processing_code),
                    "4": f"{item.amount_minor:012d}", "12": item.local_time, "13": item.local_date,
                    "14": item.expiry, "22": "012", "25": item.condition,
                    "60": intl_upload_field_60(item.mti, item.stan), "62": item.invoice})
    if item.rrn:
        message["37"] = item.rrn
    if item.auth_code:
        message["38"] = item.auth_code
    return _shaped(profile, message, now)


def cup_card_org(pan: str) -> str:
    """CUP upload card organisation: '00' for UnionPay (BIN 62), '01' for foreign cards."""
    return "00" if pan.startswith("62") else "01"


def cup_upload_request(profile: Profile, items: list[UploadItem], *, stan: str, batch: str,
                       now: datetime) -> Message:
    """CUP 0320 60.3 = 201 carrying up to 8 records in field 48 (docs/domain.md#f10 step 3)."""
    message = _base(profile, "0320", stan, now)
    records = [UploadRecord(stan=i.stan, pan=i.pan, amount_minor=i.amount_minor, card_org=cup_card_org(i.pan))
               for i in items]
    message.update({"48": cup_upload_field_48(records), "60": "00" + batch + CUP_UPLOAD_DATA})
    return _shaped(profile, message, now)


def cup_record_upload(profile: Profile, item: UploadItem, *, stan: str, batch: str, original_batch: str,
                      now: datetime) -> Message:
    """CUP 0320 60.3 = 201 for one refund or offline record, as a full message (the field-48 list
    holds online sales only): 2, 3, 4, 14, 22, 25 and 37/38 of the original, 12/13 its local time
    and date, 49, 60.1 = the original's transaction type, 61 = original batch + STAN + date."""
    lay = layout(item.kind, "cup")
    message = _base(profile, "0320", stan, now)
    message.update({"2": item.pan, "3": item.processing_code, "4": f"{item.amount_minor:012d}",
                    "12": item.local_time, "13": item.local_date, "14": item.expiry, "22": "012",
                    "25": item.condition, "49": profile.currency,
                    "60": f"{lay.cup_type}{batch}{CUP_UPLOAD_DATA}",
                    "61": original_batch + item.stan + item.local_date})
    if item.rrn:
        message["37"] = item.rrn
    if item.auth_code:
        message["38"] = item.auth_code
    return _shaped(profile, message, now)


def cup_upload_end(profile: Profile, *, stan: str, batch: str, now: datetime, balanced: bool,
                   uploaded: int) -> Message:
    """CUP end of batch upload: 0320 60.3 = 207 (balanced) or 202 (unbalanced), 48 = count N4."""
    code = CUP_UPLOAD_END_BALANCED if balanced else CUP_UPLOAD_END_UNBALANCED
    message = _base(profile, "0320", stan, now)
    message.update({"48": f"{uploaded:04d}", "60": "00" + batch + code})
    return _shaped(profile, message, now)

"""Masking of card data and keys for logs, traces, journals shown to people, and reports.

Rules (domain.md; jPOS ``ProtectedLogListener protect="2 35 45 55"``):

* the PAN (field 2, or any ``pan`` value) keeps its first 6 and last 4 digits;
* track data (35, 36, 45), the PIN block (52), ICC data (55) and working keys (field 62 of the
  network-management messages 08xx, and any value under a key-like name) are never shown, only
  their length;
* free text is scanned for Luhn-valid 13-19 digit runs, which are masked as PANs.

>>> mask_pan("4761739001010010")
'476173******0010'
>>> mask_message({"t": "0200", "2": "4761739001010010", "35": "4761739001010010=2512", "4": "000000001234"})
{'t': '0200', '2': '476173******0010', '35': '*(21)', '4': '000000001234'}
>>> mask_text("card 4761739001010010 declined")
'card 476173******0010 declined'
"""

from __future__ import annotations

import re
from typing import Any, Mapping

#: Data elements whose content must never appear in clear outside the wire itself.
SENSITIVE_FIELDS = frozenset({"2", "35", "36", "45", "52", "55", "62"})

#: Names under which a log event, a config or a control-API body may carry secrets.
SECRET_NAMES = frozenset({"pan", "track2", "track_2", "pin", "pin_block", "icc_data", "tmk", "mak",
                          "pik", "tdk", "key", "keys", "working_keys", "master_key"})

_DIGIT_RUN = re.compile(r"(?<!\d)\d{13,19}(?!\d)")


def hidden(value: str) -> str:
    """Replace a secret by its length only: ``*(16)``."""
    return f"*({len(value)})"


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits, stars between; short values are fully hidden."""
    if len(pan) < 13:
        return hidden(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def luhn_valid(digits: str) -> bool:
    """ISO/IEC 7812 check digit test.

    >>> luhn_valid("4761739001010010"), luhn_valid("4761739001010011")
    (True, False)
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def mask_text(text: str) -> str:
    """Mask every Luhn-valid 13-19 digit run (a PAN by its shape) inside free text."""
    return _DIGIT_RUN.sub(lambda m: mask_pan(m.group()) if luhn_valid(m.group()) else m.group(), text)


def mask_field(number: str, value: str, mti: str | None = None) -> str:
    """Mask one data element's decoded value."""
    if number == "2":
        return mask_pan(value)
    if number == "62" and not (mti or "").startswith("08"):
        return value  # field 62 holds keys only in sign-on (08xx); elsewhere it is an invoice number
    if number in SENSITIVE_FIELDS:
        return hidden(value)
    return value


def mask_message(message: Mapping[str, str]) -> dict[str, str]:
    """A copy of a decoded message with every sensitive field masked.

    The PANs inside a CUP batch-upload record list (0320 with 60.3 = 201, field 48: count N2 then
    40-digit records of org N2 + STAN N6 + PAN N20 + amount N12) are masked in place, so the STANs
    and amounts stay readable:

    >>> mask_message({"t": "0320", "48": "01" + "00" + "000007" + "00006229141777631700" + "000000001000",
    ...               "60": "00000001201"})["48"]
    '01000000070000622914******1700000000001000'
    """
    mti = message.get("t")
    masked = dict(message)
    for number in SENSITIVE_FIELDS.intersection(message):  # only the sensitive fields present: a hot path
        if isinstance(message[number], str):
            masked[number] = mask_field(number, message[number], mti)
    if mti == "0320" and str(message.get("60", ""))[8:11] == "201" and isinstance(message.get("48"), str):
        masked["48"] = _mask_upload_records(message["48"])
    return masked


def _mask_upload_records(data: str) -> str:
    out, i = [data[:2]], 2
    while i + 40 <= len(data):
        record = data[i:i + 40]
        pan = record[8:28]
        digits = pan.lstrip("0")
        shown = pan[:len(pan) - len(digits)] + mask_pan(digits) if len(digits) >= 13 else "*" * len(pan)
        out.append(record[:8] + shown + record[28:])
        i += 40
    out.append(data[i:])
    return "".join(out)


def mask_value(value: Any) -> Any:
    """Mask a nested structure: dicts (messages and event dicts), lists and strings."""
    if isinstance(value, Mapping):
        if "t" in value and all(isinstance(k, str) and (k == "t" or k.isdigit()) for k in value):
            return mask_message(value)
        return {k: (hidden(v) if isinstance(v, str) and str(k).lower() in SECRET_NAMES and k != "pan"
                    else mask_pan(v) if k == "pan" and isinstance(v, str)
                    else mask_value(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_value(v) for v in value)
    if isinstance(value, str):
        return mask_text(value)
    return value

"""Masking of card data and keys for logs, traces, journals shown to people, and reports.

Rules (docs/domain.md; jPOS ``ProtectedLogListener protect="2 35 45 55"``):

* the PAN (field 2, or any ``pan`` value) keeps its first 6 and last 4 digits;
* track data (35, 36, 45), the PIN block (52), ICC data (55) and working keys (field 62 of the
  network-management messages 08xx, and any value under a key-like name) are never shown, only
  their length;
* free text is scanned for Luhn-valid 13-19 digit runs, which are masked as PANs, and for track-2
  shapes (12-19 digits, ``=`` or ``D``, digits), which are hidden;
* a value carried under a name (a log event's key, a dict key) is masked by that name: ``pan`` keeps
  first 6 / last 4, the secret names of :data:`SECRET_NAMES` are hidden whatever they hold;
* rendered exceptions and error texts (:func:`mask_error_text`) are masked harder: also
  ``name=value`` pairs of secret names, reprs of sensitive message fields, and hex runs shaped like
  keys or PIN blocks.

Masking is idempotent: masking a masked value changes nothing (``*(16)`` stays ``*(16)``, it does
not become ``*(5)``), so a message masked by its producer and again by the log processor or the
control API still shows the real length.

>>> mask_pan("4761739001010010")
'476173******0010'
>>> mask_message({"t": "0200", "2": "4761739001010010", "35": "4761739001010010=2512", "4": "000000001234"})
{'t': '0200', '2': '476173******0010', '35': '*(21)', '4': '000000001234'}
>>> mask_text("card 4761739001010010 declined")
'card 476173******0010 declined'
>>> mask_message(mask_message({"t": "0200", "52": "0123456789ABCDEF"}))
{'t': '0200', '52': '*(16)'}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

#: Data elements whose content must never appear in clear outside the wire itself.
SENSITIVE_FIELDS = frozenset({"2", "35", "36", "45", "52", "55", "62"})

#: Names under which a log event, a config or a control-API body may carry secrets.
SECRET_NAMES = frozenset({"pan", "track2", "track_2", "pin", "pin_block", "icc_data", "tmk", "mak",
                          "pik", "tdk", "key", "keys", "working_keys", "master_key"})

#: Names (of :data:`SECRET_NAMES`) whose value is a PAN: first 6 and last 4 digits shown.
PAN_NAMES = frozenset({"pan"})

_DIGIT_RUN = re.compile(r"(?<!\d)\d{13,19}(?!\d)")
# Track 2 (ISO/IEC 7813): PAN, separator "=" (or "D" when shown as BCD nibbles), YYMM, service code,
# discretionary data (may hold the CVV/PVV).  The PAN part may already be masked.
_TRACK2 = re.compile(r"(?<![0-9A-Za-z*])(?:\d{12,19}|\d{6}\*{2,9}\d{4})[=D]\d{4,}(?![0-9A-Za-z])")
_HIDDEN = re.compile(r"\*\(\d+\)")
# In error texts: name=value / 'name': 'value' pairs of secret names whose value is shaped like card
# data or a key (hex digits, "=", or already masked; a source line such as "key = self._key" stays),
# reprs of sensitive message fields ('52': '...'), and standalone runs of 16, 32 or 48 hex digits
# with a letter among them (single/double/triple-length DES keys, PIN blocks; all-digit runs are
# left to the PAN rule).
_NAMED_IN_TEXT = re.compile(
    r"(?<![0-9A-Za-z_])(?P<q>['\"]?)(?P<name>" + "|".join(sorted(SECRET_NAMES, key=len, reverse=True))
    + r")(?P=q)(?P<sep>\s*[:=]\s*)(?P<vq>['\"]?)(?P<value>[0-9A-Fa-f=*]+)(?P=vq)(?![(0-9A-Za-z])", re.IGNORECASE)
_FIELD_IN_TEXT = re.compile(r"(?P<q>['\"])(?P<name>2|35|36|45|52|55|62)(?P=q)(?P<sep>\s*:\s*)(?P<vq>['\"])"
                            r"(?P<value>[^'\"]*)(?P=vq)")
_HEX_KEY = re.compile(r"(?<![0-9A-Za-z])(?=[0-9]*[A-Fa-f])(?:[0-9A-Fa-f]{16}){1,3}(?![0-9A-Za-z])")


def hidden(value: str) -> str:
    """Replace a secret by its length only: ``*(16)``.  A value already hidden is left alone.

    >>> hidden("0123456789ABCDEF"), hidden(hidden("0123456789ABCDEF"))
    ('*(16)', '*(16)')
    """
    if _HIDDEN.fullmatch(value):
        return value
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
    """Mask every Luhn-valid 13-19 digit run (a PAN by its shape) inside free text, and hide track-2 data.

    >>> mask_text("track 4761739001010010=25121010000012300000 read")
    'track *(37) read'
    """
    text = _TRACK2.sub(lambda m: hidden(m.group()), text)
    return _DIGIT_RUN.sub(lambda m: mask_pan(m.group()) if luhn_valid(m.group()) else m.group(), text)


def mask_error_text(text: str) -> str:
    """Mask a rendered exception (a traceback) or an error message, which may quote anything.

    On top of :func:`mask_text`: the values of ``name=value`` and ``'name': 'value'`` pairs whose
    name is a secret name, sensitive message fields in a message's repr, and hex runs shaped like
    keys or PIN blocks (16, 32 or 48 hex digits, at least one a letter).

    >>> mask_error_text("ValueError: bad key tmk='0123456789ABCDEFFEDCBA9876543210' for 4761739001010010")
    "ValueError: bad key tmk='*(32)' for 476173******0010"
    >>> mask_error_text("KeyError: {'t': '0200', '52': '1234'}, PIN block 0412AC89ABCDEF67")
    "KeyError: {'t': '0200', '52': '*(4)'}, PIN block *(16)"
    """
    def named(m: re.Match[str]) -> str:
        name, value = m.group("name"), m.group("value")
        shown = mask_pan(value) if name.lower() in PAN_NAMES or name == "2" else hidden(value)
        return f"{m.group('q')}{name}{m.group('q')}{m.group('sep')}{m.group('vq')}{shown}{m.group('vq')}"

    text = _FIELD_IN_TEXT.sub(named, _NAMED_IN_TEXT.sub(named, text))
    return _HEX_KEY.sub(lambda m: hidden(m.group()), mask_text(text))


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


def mask_message_encodable(message: Mapping[str, str]) -> dict[str, str]:
    """A copy of a decoded message with the same card data masked as :func:`mask_message` masks, but
    with zeros, so that the copy still encodes in every dialect (BCD has no ``*``): the PAN keeps its
    first 6 and last 4 digits, track data keeps its separators, PIN block, ICC data and sign-on keys
    become zeros of the same length.  For files that tools decode again (``--pcap``).

    >>> mask_message_encodable({"t": "0200", "2": "4761739001010010", "35": "4761739001010010=2512101",
    ...                         "52": "0123456789ABCDEF", "62": "000001"})
    {'t': '0200', '2': '4761730000000010', '35': '0000000000000000=0000000', '52': '0000000000000000', '62': '000001'}
    """
    mti = message.get("t")
    masked = dict(message)
    for number in SENSITIVE_FIELDS.intersection(message):
        value = message[number]
        if not isinstance(value, str) or (number == "62" and not (mti or "").startswith("08")):
            continue
        if number == "2":
            masked[number] = _zero_pan(value)
        elif number in ("35", "36", "45"):
            masked[number] = re.sub(r"[0-9A-Za-z]", "0", value)
        else:
            masked[number] = "0" * len(value)
    if mti == "0320" and str(message.get("60", ""))[8:11] == "201" and isinstance(message.get("48"), str):
        masked["48"] = _mask_upload_records(message["48"], _zero_pan)
    return masked


def _zero_pan(pan: str) -> str:
    return pan[:6] + "0" * (len(pan) - 10) + pan[-4:] if len(pan) > 10 else "0" * len(pan)


def _mask_upload_records(data: str, mask: Callable[[str], str] = mask_pan) -> str:
    out, i = [data[:2]], 2
    while i + 40 <= len(data):
        record = data[i:i + 40]
        pan = record[8:28]
        digits = pan.lstrip("0")
        hide = "*" if mask is mask_pan else "0"
        shown = pan[:len(pan) - len(digits)] + mask(digits) if len(digits) >= 13 else hide * len(pan)
        out.append(record[:8] + shown + record[28:])
        i += 40
    out.append(data[i:])
    return "".join(out)


def mask_value(value: Any) -> Any:
    """Mask a nested structure: dicts (messages and event dicts), lists and strings.

    A dict's values are masked by their key (:func:`mask_named`); a dict whose keys are ``t`` and
    field numbers is a message (:func:`mask_message`).
    """
    if isinstance(value, Mapping):
        if "t" in value and all(isinstance(k, str) and (k == "t" or k.isdigit()) for k in value):
            return mask_message(value)
        return {k: mask_named(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_value(v) for v in value)
    if isinstance(value, str):
        return mask_text(value)
    return value


def mask_named(name: Any, value: Any) -> Any:
    """Mask a value by the name it is carried under (a dict key, a log event's key).

    A PAN name (``pan``) keeps the first 6 and last 4 digits, a secret name (``tmk``, ``pin``,
    ``track2``, ``keys`` …, case-insensitive) is hidden; either way every leaf is masked, whatever
    its type (a number, bytes, a list or a dict of them).  Any other name: :func:`mask_value`.

    >>> mask_named("TMK", "0123456789ABCDEF"), mask_named("pan", 4761739001010010)
    ('*(16)', '476173******0010')
    >>> mask_named("keys", {"mak": "0123456789ABCDEF", "kcv": None})
    {'mak': '*(16)', 'kcv': None}
    """
    lowered = str(name).lower()
    if lowered in PAN_NAMES:
        return _mask_leaves(value, mask_pan)
    if lowered in SECRET_NAMES:
        return _mask_leaves(value, hidden)
    return mask_value(value)


def _mask_leaves(value: Any, mask: Callable[[str], str]) -> Any:
    if value is None or isinstance(value, bool):
        return value  # absent / a flag: nothing secret to show
    if isinstance(value, Mapping):
        return {k: _mask_leaves(v, mask) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_mask_leaves(v, mask) for v in value)
    if isinstance(value, (bytes, bytearray)):
        return mask(value.hex().upper())
    return mask(value if isinstance(value, str) else str(value))
